"""tl.annotate: cluster names from a marker table, thresholds, manual mapping."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import itme
from itme.core.annotate.naming import assign_clusters, auto_thresholds
from itme.core.annotate.phenotypes import parse_phenotypes
from itme.core.otsu import otsu_threshold
from itme.datasets._cells import simulate_cells
from itme.errors import ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.io import read_phenotypes

PANEL = pd.read_csv(
    __import__("pathlib").Path(__file__).resolve().parents[2]
    / "itme"
    / "data"
    / "panels"
    / "lymphoid_visram2021.csv"
)

SMALL = parse_phenotypes(
    """
name: small
lineages:
  T:
    markers: {CD3: hi, CD19: lo}
    other: T other
    subsets:
      CD4 T: {markers: {CD4: hi, CD8: lo}}
      CD8 T: {markers: {CD4: lo, CD8: hi}}
  B:
    markers: {CD3: lo, CD19: hi}
    subsets:
      B cells: {}
"""
)


def medians(rows):
    return pd.DataFrame(
        rows, columns=["CD3", "CD19", "CD4", "CD8"], index=[str(i) for i in range(len(rows))]
    )


THR = pd.Series({"CD3": 2.0, "CD19": 2.0, "CD4": 2.0, "CD8": 2.0})


def test_hierarchical_assignment_and_unassigned():
    med = medians(
        [
            [4.0, 0.1, 3.5, 0.2],  # CD4 T
            [4.0, 0.1, 0.3, 3.0],  # CD8 T
            [4.0, 0.1, 3.0, 3.0],  # CD4+CD8+: both subsets half-fit -> lineage "other"
            [0.2, 4.0, 0.1, 0.1],  # B
            [0.2, 0.1, 0.1, 0.1],  # nothing fits
            [4.0, 4.0, 3.0, 0.1],  # T-B doublet: no lineage fully fits
        ]
    )
    out = assign_clusters(med, SMALL, THR)
    assert list(out["subset"]) == [
        "CD4 T",
        "CD8 T",
        "T other",
        "B cells",
        "unassigned",
        "unassigned",
    ]
    assert list(out["lineage"]) == ["T", "T", "T", "B", "", ""]
    assert out.loc["0", "score"] == 1.0
    assert out.loc["2", "subset_score"] == 0.5
    assert out.loc["4", "failed"] in ("CD3 hi", "CD19 hi")


def test_min_score_allows_one_mismatch():
    med = medians([[4.0, 0.1, 3.5, 2.5]])  # CD4 T with CD8 a little above threshold
    assert assign_clusters(med, SMALL, THR, min_score=1.0)["subset"].iloc[0] == "T other"
    out = assign_clusters(med, SMALL, THR, min_score=0.5)
    assert out["subset"].iloc[0] == "CD4 T"  # CD4 margin decides over CD8 T
    assert out["score"].iloc[0] == pytest.approx(3 / 4)
    assert out["failed"].iloc[0] == "CD8 lo"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_brute_force(seed):
    """Independent reference: the cut maximising between-class variance, by enumeration."""
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.normal(0.3, 0.3, 30), rng.normal(3.5, 0.5, 12)])
    s = np.sort(v)
    best, cut = -1.0, None
    for i in range(1, s.size):
        a, b = s[:i], s[i:]
        var = a.size * b.size * (a.mean() - b.mean()) ** 2
        if var > best:
            best, cut = var, (s[i - 1] + s[i]) / 2
    assert otsu_threshold(v) == pytest.approx(cut)
    assert 1.0 < otsu_threshold(v) < 3.0


def test_weighted_otsu_equals_otsu_on_repeated_values():
    """Weights are event counts: the same cut as Otsu on the values repeated that often."""
    rng = np.random.default_rng(4)
    v = np.concatenate([rng.normal(0.2, 0.2, 8), [1.6, 1.9], rng.normal(3.4, 0.3, 6)])
    w = rng.integers(1, 40, v.size)
    assert otsu_threshold(v, w) == pytest.approx(otsu_threshold(np.repeat(v, w), bins=10**6))
    # small intermediate clusters do not drag a weighted cut into the negative side
    med = pd.DataFrame({"CD3": [0.1, 0.2, 1.7, 1.9, 3.3, 3.6]})
    n = np.array([5000, 4000, 300, 200, 9000, 8000])
    assert (
        auto_thresholds(med, n).loc["CD3", "threshold"]
        > auto_thresholds(med).loc["CD3", "threshold"]
    )


def test_auto_thresholds_fall_back_without_a_split():
    med = pd.DataFrame(
        {"CD3": [0.1, 4.0, 3.8, 0.3], "CD103": [0.1, 0.4, 0.2, 0.3], "CD45": [4.0, 4.2, 4.5, 4.1]}
    )
    thr = auto_thresholds(med, min_spread=1.0, fallback=1.5)
    assert thr.loc["CD3", "method"] == "otsu" and 0.3 < thr.loc["CD3", "threshold"] < 3.8
    assert thr.loc["CD103", "method"] == "fallback" and thr.loc["CD103", "threshold"] == 1.5
    assert thr.loc["CD45", "method"] == "fallback"  # all positive: every cluster is hi


def make_adata(table, channels, n, props, seed, classes=None):
    rng = np.random.default_rng(seed)
    raw, labels = simulate_cells(table, channels, n, props, rng=rng)
    adata = ad.AnnData(np.arcsinh(raw / 5).astype(np.float32))
    adata.var_names = list(channels)
    adata.var["marker_class"] = pd.Categorical(
        classes if classes is not None else ["type"] * len(channels)
    )
    adata.obs["sample_id"] = pd.Categorical(np.where(np.arange(n) % 2, "s1", "s2"))
    adata.obs["truth"] = labels
    return adata


@pytest.fixture(scope="module")
def small_adata():
    adata = make_adata(
        SMALL,
        ["CD3", "CD19", "CD4", "CD8", "CD45"],
        3000,
        {"CD4 T": 3, "CD8 T": 2, "B cells": 1},
        0,
    )
    adata.obs["metacluster"] = pd.Categorical(
        adata.obs["truth"].map({"CD4 T": "1", "CD8 T": "2", "B cells": "3"})
    )
    return adata


def test_annotate_writes_documented_keys(small_adata, tmp_path):
    adata = small_adata.copy()
    itme.tl.annotate(adata, phenotypes=SMALL)
    assert (adata.obs["subset"].astype(str) == adata.obs["truth"]).all()
    # categories: the names with events, in the table's order (scanpy's group-wise tools need
    # every category to have events); every name the table gives is in uns["subset"]["names"]
    assert list(adata.obs["subset"].cat.categories) == ["CD4 T", "CD8 T", "B cells"]
    info = adata.uns["subset"]
    assert list(info["names"]) == ["CD4 T", "CD8 T", "B cells", "T other", "unassigned"]
    assert list(info["clusters"].columns) == [
        "subset", "lineage", "score", "lineage_score", "subset_score", "margin", "failed", "method", "n_events",
    ]  # fmt: skip
    assert info["clusters"]["n_events"].sum() == adata.n_obs
    assert set(info["thresholds"]["marker"]) == {"CD3", "CD19", "CD4", "CD8"}
    assert "CD45" in info["medians"].columns
    assert info["phenotypes"] == SMALL.text
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(
        back.uns["subset"]["clusters"], info["clusters"], check_dtype=False
    )
    pd.testing.assert_series_equal(back.obs["subset"], adata.obs["subset"])
    assert list(back.uns["subset"]["names"]) == list(info["names"])


def test_subsets_without_events_are_zero_columns_of_abundance(small_adata):
    adata = small_adata.copy()
    adata.obs["sample_id"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "s1", "s0"))
    itme.tl.annotate(adata, phenotypes=SMALL)
    assert "T other" not in adata.obs["subset"].cat.categories
    out = itme.tl.abundance(adata)
    assert list(out.var_names) == list(adata.uns["subset"]["names"])
    counts = pd.DataFrame(out.layers["counts"], index=out.obs_names, columns=out.var_names)
    assert (counts[["T other", "unassigned"]] == 0).all().all()
    assert counts.sum().sum() == adata.n_obs


def test_annotate_stores_subset_colours_scanpy_way(small_adata, tmp_path):
    from itme._colors import UNASSIGNED_COLOR

    adata = small_adata.copy()
    labels = adata.obs["metacluster"].astype(str).to_numpy()
    labels[:5] = "4"  # a sliver: unassigned (too small), so "unassigned" has events
    adata.obs["metacluster"] = pd.Categorical(labels)
    itme.tl.annotate(adata, phenotypes=SMALL)
    cats = list(adata.obs["subset"].cat.categories)
    colours = list(adata.uns["subset_colors"])
    assert cats == ["CD4 T", "CD8 T", "B cells", "unassigned"]  # T other: no events
    assert len(colours) == len(cats) and len(set(colours)) == len(cats)
    assert colours[cats.index("unassigned")] == UNASSIGNED_COLOR
    adata.write_h5ad(tmp_path / "c.h5ad")
    assert list(ad.read_h5ad(tmp_path / "c.h5ad").uns["subset_colors"]) == colours


def test_tiny_metaclusters_are_not_named(small_adata):
    adata = small_adata.copy()
    labels = adata.obs["metacluster"].astype(str).to_numpy()
    sliver = np.flatnonzero(labels == "1")[:5]  # 5 CD4 T events in a metacluster of their own
    labels[sliver] = "4"
    adata.obs["metacluster"] = pd.Categorical(labels, categories=["1", "2", "3", "4"])
    itme.tl.annotate(adata, phenotypes=SMALL)
    clusters = adata.uns["subset"]["clusters"]
    assert clusters.loc["4", "subset"] == "unassigned"
    assert clusters.loc["4", "method"] == "too small" and clusters.loc["4", "n_events"] == 5
    assert (adata.obs["subset"].to_numpy()[sliver] == "unassigned").all()
    assert clusters.loc["1", "subset"] == "CD4 T"  # the big clusters keep their names
    assert adata.uns["subset"]["min_events"] == 20
    named = itme.tl.annotate(adata, phenotypes=SMALL, min_events=0, copy=True)
    assert named.uns["subset"]["clusters"].loc["4", "subset"] == "CD4 T"
    with pytest.raises(ItmeParameterError, match="min_events"):
        itme.tl.annotate(adata, phenotypes=SMALL, min_events=-1)


def test_cluster_phenotypes_equal_pandas_median(small_adata):
    table = itme.tl.cluster_phenotypes(small_adata, groupby="metacluster")
    ref = small_adata.to_df().groupby(small_adata.obs["metacluster"].to_numpy()).median()
    pd.testing.assert_frame_equal(
        table.rename_axis(None), ref.astype(float), check_names=False, rtol=1e-6
    )


def test_manual_mapping_and_given_thresholds(small_adata):
    adata = small_adata.copy()
    itme.tl.annotate(
        adata, phenotypes=SMALL, mapping={"3": "plasmablasts"}, thresholds={"CD4": 9.0}
    )
    clusters = adata.uns["subset"]["clusters"]
    assert clusters.loc["3", "subset"] == "plasmablasts" and clusters.loc["3", "method"] == "manual"
    assert clusters.loc["1", "subset"] == "T other"  # no event reaches CD4 > 9
    thr = adata.uns["subset"]["thresholds"].set_index("marker")
    assert thr.loc["CD4", "method"] == "given" and thr.loc["CD3", "method"] == "otsu"
    assert "plasmablasts" in adata.obs["subset"].cat.categories
    manual = itme.tl.annotate(small_adata, phenotypes=None, mapping={"1": "CD4 T"}, copy=True)
    assert (manual.obs["subset"] == "unassigned").sum() == (
        small_adata.obs["metacluster"] != "1"
    ).sum()


def test_unmeasured_markers_warn(small_adata):
    adata = small_adata[:, ["CD3", "CD19", "CD4"]].copy()
    with pytest.warns(ItmeInputWarning, match="CD8"):
        itme.tl.annotate(adata, phenotypes=SMALL)


def test_annotate_errors(small_adata):
    with pytest.raises(ItmeStateError, match="tl.flowsom"):
        itme.tl.annotate(small_adata, phenotypes=SMALL, groupby="som_node")
    with pytest.raises(ItmeParameterError, match="mapping"):
        itme.tl.annotate(small_adata, phenotypes=SMALL, mapping={"99": "x"})
    with pytest.raises(ItmeParameterError, match="phenotypes"):
        itme.tl.annotate(small_adata, phenotypes=None)
    with pytest.raises(ItmeParameterError, match="min_score"):
        itme.tl.annotate(small_adata, phenotypes=SMALL, min_score=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_simulated_lymphoid_sample_is_named_correctly(seed):
    """Evidence: >= 95 % of events of a sample following the shipped table get the right name."""
    table = read_phenotypes("lymphoid_visram2021")
    panel = PANEL[PANEL["marker_class"].isin(["type", "state"])]
    rng = np.random.default_rng(100 + seed)
    props = {s.name: rng.uniform(0.5, 3.0) for s in table.subsets}
    props.update({"Monocytes": 15.0, "Other CD45+": 10.0, "CD4 T other": 2.0, "NK other": 1.0})
    adata = make_adata(table, panel["antigen"], 40_000, props, seed, classes=panel["marker_class"])
    itme.tl.flowsom(adata, n_metaclusters=60, rng=seed)
    itme.tl.annotate(adata, phenotypes="lymphoid_visram2021")
    correct = np.mean(adata.obs["subset"].astype(str).to_numpy() == adata.obs["truth"].to_numpy())
    assert correct >= 0.95


def test_plain_string_clusters_are_ordered_as_numbers():
    """Labels read back as strings (the cohort store) keep flowsom's order 1, 2, ..., 10."""
    labels = np.array(["10", "2", "1", "2", "10", "1"], dtype=object)
    a = ad.AnnData(
        X=np.arange(12, dtype=np.float32).reshape(6, 2),
        obs=pd.DataFrame({"metacluster": labels}, index=[f"e{i}" for i in range(6)]),
        var=pd.DataFrame(index=["CD3", "CD19"]),
    )
    table = itme.tl.cluster_phenotypes(a, groupby="metacluster")
    assert list(table.index) == ["1", "2", "10"]
    assert table.loc["10", "CD3"] == np.median([0, 8])
