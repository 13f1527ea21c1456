"""Category colours: stored the scanpy way and the same in every figure (issue 14, item 6)."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgb
from scipy.spatial.distance import pdist

import itme
from itme._colors import UNASSIGNED_COLOR, category_colors, palette
from itme.errors import ItmeStatisticsWarning

#: colours chosen by a user: every figure must use these, not a palette of its own
CHOSEN = ["#e41a1c", "#377eb8", "#4daf4a"]


def test_palette_has_40_distinct_readable_colours():
    colours = palette(40)
    rgb = np.array([to_rgb(c) for c in colours])
    assert len(set(colours)) == 40
    assert pdist(rgb).min() > 0.08  # no two alike (tab20 repeats after 20)
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert luminance.max() <= 0.75  # nothing as pale as yellow on white


def test_stored_colours_win_and_extra_categories_get_new_ones():
    obs = pd.DataFrame({"g": pd.Categorical(["x", "y", "x"])}, index=["a", "b", "c"])
    a = ad.AnnData(obs=obs)
    a.uns["g_colors"] = np.array(["#000000", "#ffffff"], dtype=object)
    got = category_colors(a, "g", ["y", "x", "z"])
    assert got["x"] == "#000000" and got["y"] == "#ffffff"
    assert got["z"] not in ("#000000", "#ffffff")


@pytest.fixture
def clustered():
    adata, _ = simulate_patients(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    yield adata
    plt.close("all")


def test_patient_clusters_store_colours_that_survive_h5ad(clustered, tmp_path):
    stored = list(clustered.uns["itme_cluster_colors"])
    assert len(stored) == 3 and len(set(stored)) == 3
    clustered.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    assert list(back.uns["itme_cluster_colors"]) == stored


def _hex(color) -> str:
    return to_hex(color, keep_alpha=False)


def test_every_patient_figure_uses_the_stored_cluster_colours(clustered):
    clustered.uns["itme_cluster_colors"] = np.array(CHOSEN, dtype=object)
    want = dict(zip(["1", "2", "3"], CHOSEN, strict=True))

    fig = itme.pl.patient_heatmap(clustered)
    bar = next(
        ax for ax in fig.axes if [t.get_text() for t in ax.get_yticklabels()] == ["itme_cluster"]
    )
    pixels = bar.images[0].get_array()[0]
    order = clustered.uns["itme_cluster"]["leaf_order"]
    labels = clustered.obs["itme_cluster"].astype(str).to_numpy()[order]
    assert [_hex(p) for p in pixels] == [want[c] for c in labels]
    # dendrogram: links inside one cluster in its colour, every cluster's colour present
    links = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    drawn = {_hex(c) for coll in links for c in coll.get_colors()}
    assert set(CHOSEN) <= drawn and drawn <= {*CHOSEN, "#808080"}

    res = itme.stats.compare_groups(clustered, groupby="itme_cluster")
    fig = itme.pl.subset_boxplots(clustered, results=res)
    boxes = [p for p in fig.axes[0].patches]
    assert [_hex(p.get_facecolor()) for p in boxes] == CHOSEN

    clinical = simulate_clinical(clustered, 0)
    itme.io.add_clinical(clustered, clinical, columns=["os_months", "os_event"])
    itme.stats.kaplan_meier(clustered, groupby="itme_cluster")
    fig = itme.pl.kaplan_meier(clustered)
    steps = [ln for ln in fig.axes[0].get_lines() if ln.get_drawstyle() == "steps-post"]
    assert [_hex(ln.get_color()) for ln in steps] == CHOSEN


def test_embedding_uses_the_stored_subset_colours():
    rng = np.random.default_rng(0)
    names = [f"T{i}" for i in range(1, 30)] + ["unassigned"]
    labels = pd.Categorical(rng.choice(names, 600), categories=names)
    obs = pd.DataFrame({"subset": labels}, index=[f"c{i}" for i in range(600)])
    a = ad.AnnData(X=np.zeros((600, 1), dtype=np.float32), obs=obs)
    a.obsm["X_itme_umap"] = rng.normal(size=(600, 2))
    a.uns["subset_colors"] = np.array(palette(29) + [UNASSIGNED_COLOR], dtype=object)
    fig = itme.pl.embedding(a, color="subset")
    want = dict(zip(names, a.uns["subset_colors"], strict=True))
    for coll in fig.axes[0].collections:
        assert _hex(coll.get_facecolor()[0]) == want[coll.get_label()]
    assert len({_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections}) == 30
