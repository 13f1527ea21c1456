"""scanpy's standard workflow on itme's own output (issue 14, items 2 and 3).

The pipeline runs on a small simulated cohort up to ``cells.h5ad``; scanpy's default workflow
on that file (``pp.neighbors`` with the default representation and transformer on ≥ 8,192
events, ``tl.leiden``, ``tl.umap``, ``tl.rank_genes_groups``, ``pl.umap``,
``pl.matrixplot``, ``get.aggregate``) must find the marker-defined populations, not the
acquisition time: before ``cells.h5ad`` held only the markers in ``X``, Leiden clusters
agreed with itme's subsets on ~25 % of events.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from itme.datasets import simulate_cohort
from itme.pipeline import demo_config_text, run

matplotlib.use("Agg")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cells_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scanpy_demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate_cohort(out / "input", n_patients=12, cells_per_sample=1200, n_genes=5000, rng=5)
        config = yaml.safe_load(demo_config_text())
        config["seed"] = 5
        config["downsample"]["min_events"] = 300
        (out / "config.yaml").write_text(yaml.safe_dump(config))
        result = run(out / "config.yaml", out=out, until_stage="annotate")
    assert {s.name: s.status for s in result.stages}["annotate"] == "done"
    return out / "cells.h5ad"


@pytest.fixture
def cells(cells_file) -> ad.AnnData:
    return ad.read_h5ad(cells_file)


def majority_agreement(clusters: pd.Series, labels: pd.Series) -> float:
    """Share of events whose cluster's most frequent label is their own label."""
    table = pd.crosstab(clusters, labels)
    return float(table.max(axis=1).sum() / table.to_numpy().sum())


def test_x_holds_the_markers_and_the_rest_is_kept(cells):
    classes = set(cells.var["marker_class"].astype(str))
    assert classes == {"type", "state"}
    other = cells.obsm["other_channels"]
    assert {"Time", "DNA1", "DNA2", "Event_length", "beads"} <= set(other.columns)
    # Time still runs over the acquisition, event by event
    assert float(other["Time"].max()) > 1000 * float(np.abs(cells.X).max())


# scanpy 1.11.5's scatter plots call Colormap.set_bad, deprecated in matplotlib 3.11 (scanpy's
# code, not itme's)
@pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")
# rank_genes_groups inserts 3-4 columns per group one by one: pandas warns from ~26 groups
@pytest.mark.filterwarnings(
    "ignore:DataFrame is highly fragmented:pandas.errors.PerformanceWarning"
)
def test_scanpy_default_workflow_finds_itme_subsets(cells):
    import scanpy as sc

    assert cells.n_obs >= 8_192  # scanpy's pynndescent path (the default transformer)
    provenance = dict(cells.uns["itme_umap"])
    itme_coords = cells.obsm["X_itme_umap"].copy()
    sc.pp.neighbors(cells, random_state=0)
    sc.tl.leiden(cells, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    agreement = majority_agreement(cells.obs["leiden"], cells.obs["subset"])
    assert agreement >= 0.95, agreement
    sc.tl.umap(cells, random_state=0)
    # scanpy's embedding of every event and itme's of a subsample, with its provenance
    assert np.isfinite(cells.obsm["X_umap"]).all()
    np.testing.assert_array_equal(cells.obsm["X_itme_umap"], itme_coords)
    assert cells.uns["itme_umap"]["seed"] == provenance["seed"]

    # obs["subset"] has only subsets with events as categories, so scanpy's group-wise tools
    # run on it as written (no remove_unused_categories first), and its colours are itme's
    colours = list(cells.uns["subset_colors"])
    sc.tl.rank_genes_groups(cells, groupby="subset", method="wilcoxon")
    top = sc.get.rank_genes_groups_df(cells, group="B").head(3)["names"]
    assert {"CD19", "CD20"} & set(top), list(top)
    means = sc.get.aggregate(cells, by="subset", func="mean")
    mean = pd.DataFrame(means.layers["mean"], index=means.obs_names, columns=means.var_names)
    assert mean["CD19"].idxmax() == "B"
    assert mean["CD14"].idxmax() == "Monocytes"

    ax = sc.pl.umap(cells, color="subset", show=False)
    assert len(ax.collections[0].get_offsets()) == cells.n_obs
    grid = sc.pl.matrixplot(cells, ["CD3", "CD19", "CD14"], groupby="subset", show=False)
    assert "mainplot_ax" in grid
    # one row per subset with events (an empty category would be a row of NaN)
    rows = grid["mainplot_ax"].get_yticklabels()
    assert [t.get_text() for t in rows] == list(cells.obs["subset"].cat.categories)
    assert list(cells.uns["subset_colors"]) == colours  # scanpy kept itme's colours
    import matplotlib.pyplot as plt

    plt.close("all")
