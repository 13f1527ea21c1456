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


def test_kaplan_meier_draws_the_stored_fit(clustered):
    clinical = simulate_clinical(clustered, 0)
    with pytest.raises(ItmeStateError, match=r"uns\['kaplan_meier_os'\].*stats.kaplan_meier"):
        itme.pl.kaplan_meier(clustered)
    itme.io.add_clinical(clustered, clinical, columns=["os_months", "os_event"])
    table = itme.stats.kaplan_meier(clustered, groupby="itme_cluster")
    fig = itme.pl.kaplan_meier(clustered, times=[0, 12, 24])
    curves, risk = fig.axes
    steps = [ln for ln in curves.get_lines() if ln.get_drawstyle() == "steps-post"]
    assert len(steps) == 3
    # the drawn curves are the stored ones (nothing refitted)
    stored = clustered.uns["kaplan_meier_os"]["curves"]
    for line, group in zip(steps, ["1", "2", "3"], strict=True):
        np.testing.assert_allclose(
            line.get_ydata()[1:], stored.loc[stored["group"] == group, "surv"]
        )
    pvalue = clustered.uns["kaplan_meier_os"]["logrank_pvalue"]
    assert f"log-rank p = {pvalue:.3g}" in curves.get_title()
    at = {t.get_position(): int(t.get_text()) for t in risk.texts}
    obs = clustered.obs
    for i, group in enumerate(["1", "2", "3"]):
        months = obs.loc[obs["itme_cluster"] == group, "os_months"]
        for t in (0, 12, 24):
            assert at[(t, 3 - i - 0.5)] == int((months >= t).sum())
    assert sorted(at[(0, y)] for y in (0.5, 1.5, 2.5)) == sorted(table["n"].tolist())
    with pytest.raises(ItmeParameterError, match=r"parameter 'times'"):
        itme.pl.kaplan_meier(clustered, times=[])
    with pytest.raises(ItmeParameterError, match=r"parameter 'adata'"):
        itme.pl.kaplan_meier(clinical)


def test_figures_read_groups_from_obs_only(clustered):
    with pytest.raises(ItmeParameterError, match=r"parameter 'groupby'.*\['risk'\].*add_clinical"):
        itme.pl.compartment_bars(clustered, groupby="risk")
    res = itme.stats.compare_groups(clustered, groupby="itme_cluster")
    with pytest.raises(ItmeParameterError, match=r"parameter 'groupby'.*add_clinical"):
        itme.pl.subset_boxplots(clustered, results=res, groupby="risk")


def test_kaplan_meier_ticks_at_round_months(clustered):
    from itme.pl._patients import month_ticks

    np.testing.assert_array_equal(month_ticks(62.3), [0, 12, 24, 36, 48, 60])
    np.testing.assert_array_equal(month_ticks(17.0), [0, 3, 6, 9, 12, 15])
    np.testing.assert_array_equal(month_ticks(130.0), [0, 24, 48, 72, 96, 120])
    clinical = simulate_clinical(clustered, 0)
    itme.io.add_clinical(clustered, clinical, columns=["os_months", "os_event"])
    itme.stats.kaplan_meier(clustered, groupby="itme_cluster")
    ticks = itme.pl.kaplan_meier(clustered).axes[0].get_xticks()
    step = ticks[1] - ticks[0]
    assert step in (1, 2, 3, 6, 12, 24, 36, 60, 120, 240)
    assert np.all(np.mod(ticks, step) == 0)
