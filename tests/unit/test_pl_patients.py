"""Patient-level figures: they return Figures drawn from the documented keys."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from matplotlib.figure import Figure

import itme
from itme.errors import ItmeParameterError, ItmeStateError, ItmeStatisticsWarning


@pytest.fixture
def clustered():
    adata, _ = simulate_patients(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    yield adata
    plt.close("all")


def test_heatmap_columns_follow_the_dendrogram_and_clusters_read_left_to_right(clustered):
    fig = itme.pl.patient_heatmap(clustered)
    assert isinstance(fig, Figure)
    heat = [ax for ax in fig.axes if ax.get_xticklabels() and ax.get_xticklabels()[0].get_text()][0]
    order = clustered.uns["itme_cluster"]["leaf_order"]
    assert [t.get_text() for t in heat.get_xticklabels()] == list(clustered.obs_names[order])
    cluster_bar = [
        ax for ax in fig.axes if [t.get_text() for t in ax.get_yticklabels()] == ["itme_cluster"]
    ][0]
    assert [t.get_text() for t in cluster_bar.texts] == ["1", "2", "3"]
    assert any(
        [t.get_text() for t in ax.get_yticklabels()] == ["disease_status"] for ax in fig.axes
    )


def test_heatmap_needs_clusters():
    adata, _ = simulate_patients(0)
    with pytest.raises(ItmeStateError, match="run itme.tl.patient_clusters"):
        itme.pl.patient_heatmap(adata)


def test_boxplots_show_the_significant_subsets_with_q_values(clustered):
    res = itme.stats.compare_groups(clustered, groupby="itme_cluster")
    fig = itme.pl.subset_boxplots(clustered, results=res)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    sig = res[res["padj"] < 0.05].sort_values("padj")
    assert len(titles) == len(sig)
    assert titles[0] == f"{sig.iloc[0]['feature']}\nq = {sig.iloc[0]['padj']:.2g}"
    with pytest.raises(ItmeParameterError, match="parameter 'results'.*without column.*padj"):
        itme.pl.subset_boxplots(clustered, results=res.drop(columns="padj"))
    with pytest.raises(ItmeParameterError, match="parameter 'results'.*got 'list without"):
        itme.pl.subset_boxplots(clustered, results=[])


def test_compartment_bars_are_shares_of_100(clustered):
    fig = itme.pl.compartment_bars(clustered)
    assert [ax.get_title() for ax in fig.axes] == ["CD4+ T cells", "CD8+ T cells"]
    for ax in fig.axes:
        heights = np.zeros(3)
        for patch in ax.patches:
            heights[int(round(patch.get_x() + patch.get_width() / 2))] += patch.get_height()
        np.testing.assert_allclose(heights, 100.0)
    with pytest.raises(ItmeParameterError, match=r"parameter 'compartments'.*'T99'"):
        itme.pl.compartment_bars(clustered, compartments={"CD4": {"Tn": ["T1", "T99"]}})


def test_kaplan_meier_curves_and_risk_table(clustered):
    clinical = simulate_clinical(clustered, 0)
    fig = itme.pl.kaplan_meier(clustered, clinical=clinical, times=[0, 12, 24])
    curves, risk = fig.axes
    assert len([ln for ln in curves.get_lines() if ln.get_drawstyle() == "steps-post"]) == 3
    assert "log-rank p =" in curves.get_title()
    sizes = clustered.obs["itme_cluster"].value_counts()
    at_zero = sorted(int(t.get_text()) for t in risk.texts if t.get_position()[0] == 0)
    assert at_zero == sorted(sizes.tolist())
