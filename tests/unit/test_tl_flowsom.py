"""tl.flowsom and FlowSOMModel on small simulated data with known labels."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.metrics import f1_hungarian

import itme
from itme.core.annotate.phenotypes import parse_phenotypes
from itme.datasets._cells import simulate_cells
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError
from itme.tl import FlowSOMModel

TABLE = parse_phenotypes(
    """
name: five
lineages:
  T:
    markers: {CD3: hi, CD19: lo, CD14: lo}
    subsets:
      CD4 T: {markers: {CD4: hi, CD8: lo}}
      CD8 T: {markers: {CD4: lo, CD8: hi}}
  B:
    markers: {CD3: lo, CD19: hi, CD14: lo}
    subsets:
      B cells: {}
  NK:
    markers: {CD3: lo, CD19: lo, CD14: lo, CD56: hi}
    subsets:
      NK cells: {}
  Mono:
    markers: {CD3: lo, CD19: lo, CD14: hi, CD56: lo}
    subsets:
      Monocytes: {}
"""
)
TYPE = ["CD3", "CD4", "CD8", "CD19", "CD14", "CD56"]
STATE = ["CD69"]
PROPS = {"CD4 T": 0.35, "CD8 T": 0.2, "B cells": 0.1, "NK cells": 0.1, "Monocytes": 0.25}


def make_cells(n=4000, seed=0, n_samples=2):
    rng = np.random.default_rng(seed)
    raw, labels = simulate_cells(TABLE, TYPE + STATE, n, PROPS, rng=rng)
    adata = ad.AnnData(np.arcsinh(raw / 5).astype(np.float32))
    adata.var_names = TYPE + STATE
    adata.var["marker_class"] = pd.Categorical(["type"] * len(TYPE) + ["state"])
    sample = np.array([f"s{i % n_samples}" for i in range(n)])
    adata.obs["sample_id"] = pd.Categorical(sample)
    adata.obs["patient_id"] = pd.Categorical(np.char.replace(sample, "s", "p"))
    adata.obs["truth"] = labels
    adata.uns["arcsinh"] = {"cofactor": np.full(len(TYPE) + len(STATE), 5.0)}
    return adata


@pytest.fixture(scope="module")
def clustered():
    adata = make_cells()
    itme.tl.flowsom(adata, grid=(6, 6), n_metaclusters=5, rng=7)
    return adata


def test_recovers_known_populations(clustered):
    mean, _ = f1_hungarian(clustered.obs["truth"], clustered.obs["metacluster"])
    assert mean > 0.95


def test_keys_follow_data_model(clustered):
    obs, info = clustered.obs, clustered.uns["flowsom"]
    assert isinstance(obs["som_node"].dtype, pd.CategoricalDtype)
    assert list(obs["som_node"].cat.categories) == [str(i) for i in range(36)]
    assert list(obs["metacluster"].cat.categories) == ["1", "2", "3", "4", "5"]
    assert info["codes"].shape == (36, len(TYPE))
    assert list(info["markers"]) == TYPE  # type markers only, not the state marker
    assert info["node_sizes"].sum() == clustered.n_obs
    np.testing.assert_array_equal(
        info["node_sizes"], np.bincount(obs["som_node"].cat.codes, minlength=36)
    )
    # metacluster of every event = metacluster of its node
    node_meta = info["node_metacluster"][obs["som_node"].cat.codes]
    np.testing.assert_array_equal(node_meta.astype(str), obs["metacluster"].astype(str))
    assert info["seed"] == 7
    assert info["train_cells"] == clustered.n_obs
    assert isinstance(info["flowsom_version"], str)
    assert info["merges"].empty


def test_h5ad_roundtrip(clustered, tmp_path):
    path = tmp_path / "cells.h5ad"
    clustered.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_series_equal(back.obs["metacluster"], clustered.obs["metacluster"])
    np.testing.assert_array_equal(back.uns["flowsom"]["codes"], clustered.uns["flowsom"]["codes"])
    assert back.uns["flowsom"]["seed"] == 7
    assert list(back.uns["flowsom"]["markers"]) == TYPE


def test_same_seed_same_labels_and_global_state_untouched():
    a, b = make_cells(seed=3), make_cells(seed=3)
    np.random.seed(123)  # noqa: NPY002  (checks that flowsom does not leak global seeding)
    before = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    itme.tl.flowsom(a, grid=(5, 5), n_metaclusters=5, train_cells=1500, rng=11)
    assert np.random.random() == before  # noqa: NPY002
    itme.tl.flowsom(b, grid=(5, 5), n_metaclusters=5, train_cells=1500, rng=11)
    pd.testing.assert_series_equal(a.obs["som_node"], b.obs["som_node"])
    pd.testing.assert_series_equal(a.obs["metacluster"], b.obs["metacluster"])
    gen = np.random.default_rng(5)
    c = itme.tl.flowsom(make_cells(seed=3), grid=(5, 5), n_metaclusters=5, rng=gen, copy=True)
    d = itme.tl.flowsom(
        make_cells(seed=3), grid=(5, 5), n_metaclusters=5, rng=np.random.default_rng(5), copy=True
    )
    assert c.uns["flowsom"]["seed"] == d.uns["flowsom"]["seed"]
    pd.testing.assert_series_equal(c.obs["metacluster"], d.obs["metacluster"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_accuracy_for_any_seed_with_subsampled_training(seed):
    adata = make_cells(n=6000, seed=seed)
    itme.tl.flowsom(adata, grid=(6, 6), n_metaclusters=5, train_cells=1000, rng=seed)
    assert adata.uns["flowsom"]["train_cells"] == 1000
    assert f1_hungarian(adata.obs["truth"], adata.obs["metacluster"])[0] > 0.9


def test_reproduces_flowsom_package_with_the_same_seed():
    """Independent reference: flowsom.FlowSOM itself (same SOM, same seed, all events)."""
    import flowsom
    from loguru import logger

    logger.remove()
    adata = make_cells(n=3000, seed=4)
    X = adata.X[:, :6].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = flowsom.FlowSOM(ad.AnnData(X), n_clusters=5, xdim=6, ydim=6, seed=21)
    model = FlowSOMModel(
        grid=(6, 6), n_metaclusters=5, train_cells=None, metaclustering="hierarchical", rng=21
    )
    model.fit(X)
    np.testing.assert_allclose(model.codes_, ref.model.codes, rtol=1e-6)
    np.testing.assert_array_equal(model.nodes_, ref.get_cell_data().obs["clustering"].to_numpy())
    ct = pd.crosstab(model.labels_, ref.get_cell_data().obs["metaclustering"].to_numpy())
    assert ((ct > 0).sum(axis=1) == 1).all() and ((ct > 0).sum(axis=0) == 1).all()


def test_model_predicts_new_files():
    train, new = make_cells(seed=5), make_cells(seed=6)
    model = FlowSOMModel(grid=(6, 6), n_metaclusters=5, rng=2).fit(train.X, columns=list(range(6)))
    np.testing.assert_array_equal(model.predict(train.X, columns=list(range(6))), model.labels_)
    pred = model.predict(new.X[:, :6])
    # the label of each known population in the training data carries over to the new file
    key = pd.crosstab(train.obs["truth"], model.labels_).idxmax(axis=1)
    assert np.mean(pred == key[new.obs["truth"]].to_numpy()) > 0.95
    with pytest.raises(ItmeParameterError, match="6 markers"):
        model.predict(new.X)
    with pytest.raises(ItmeStateError, match="not fitted"):
        FlowSOMModel().predict(new.X)


def test_model_rebuilt_from_uns_after_h5ad_maps_new_files(clustered, tmp_path):
    clustered.write_h5ad(tmp_path / "cells.h5ad")
    info = ad.read_h5ad(tmp_path / "cells.h5ad").uns["flowsom"]
    model = FlowSOMModel.from_uns(info)
    assert list(model.feature_names_in_) == TYPE
    cols = clustered.var_names.get_indexer(list(model.feature_names_in_))
    np.testing.assert_array_equal(
        model.predict(clustered.X, columns=cols).astype(str),
        clustered.obs["metacluster"].astype(str),
    )
    with pytest.raises(ItmeInputError, match="keys written by itme.tl.flowsom"):
        FlowSOMModel.from_uns({"codes": info["codes"]})


def test_merge_floor_merges_and_reports():
    adata = make_cells(n=5000, seed=8, n_samples=4)
    itme.tl.flowsom(adata, grid=(6, 6), n_metaclusters=20, merge_floor=8.0, rng=3)
    info = adata.uns["flowsom"]
    merges = info["merges"]
    assert len(merges) == 20 - info["n_metaclusters_final"] > 0
    assert list(merges.columns) == [
        "step",
        "cluster",
        "into",
        "median_pct",
        "floor_pct",
        "distance",
        "n_events",
    ]
    assert (merges["median_pct"] < 8.0).all()
    pct = pd.crosstab(adata.obs["sample_id"], adata.obs["metacluster"], normalize="index") * 100
    assert pct.median(axis=0).min() >= 8.0
    assert info["merge_floor"] == 8.0
    # merging only joins metaclusters: each unmerged metacluster lies in one merged one
    joined = pd.crosstab(info["node_metacluster_unmerged"], info["node_metacluster"])
    assert ((joined > 0).sum(axis=1) == 1).all()


def test_doublet_rate_floor_needs_qc_accounting():
    adata = make_cells()
    with pytest.raises(ItmeStateError, match="pp.clean"):
        itme.tl.flowsom(adata, grid=(5, 5), merge_floor="doublet_rate")
    adata.uns["qc"] = {
        "accounting": pd.DataFrame(
            {"sample_id": ["s0", "s1"], "events_in": [1000, 1000], "doublet": [40, 60]}
        )
    }
    itme.tl.flowsom(adata, grid=(5, 5), n_metaclusters=15, merge_floor="doublet_rate", rng=1)
    assert adata.uns["flowsom"]["merge_floor"] == pytest.approx(5.0)


def test_only_kept_events_train_and_count():
    adata = make_cells(n=3000)
    qc = np.where(np.arange(3000) % 3 == 0, "doublet", "kept")
    adata.obs["itme_qc"] = pd.Categorical(qc)
    itme.tl.flowsom(adata, grid=(5, 5), n_metaclusters=5, rng=1)
    assert adata.uns["flowsom"]["node_sizes"].sum() == 2000
    assert adata.obs["metacluster"].notna().all()


def test_key_added_prefixes_obs_keys():
    adata = make_cells(n=2000)
    itme.tl.flowsom(adata, grid=(4, 4), n_metaclusters=4, key_added="fs2", rng=1)
    assert {"fs2_som_node", "fs2_metacluster"} <= set(adata.obs.columns)
    assert "fs2" in adata.uns and "metacluster" not in adata.obs


def test_input_errors():
    adata = make_cells(n=500)
    with pytest.raises(ItmeParameterError, match="CD33"):
        itme.tl.flowsom(adata, markers=["CD3", "CD33"])
    with pytest.raises(ItmeParameterError, match="n_metaclusters"):
        itme.tl.flowsom(adata, grid=(3, 3), n_metaclusters=10)
    with pytest.raises(ItmeParameterError, match="metaclustering"):
        itme.tl.flowsom(adata, grid=(3, 3), n_metaclusters=3, metaclustering="kmeans")
    no_class = adata.copy()
    del no_class.var["marker_class"]
    with pytest.raises(ItmeInputError, match="marker_class"):
        itme.tl.flowsom(no_class)
    with pytest.raises(ItmeInputError, match="at least 100 events"):
        itme.tl.flowsom(adata[:50].copy())
    bad = adata.copy()
    bad.X[0, 0] = np.nan
    with pytest.raises(ItmeInputError, match="finite"):
        itme.tl.flowsom(bad, grid=(3, 3), n_metaclusters=3, train_cells=None)


def test_warns_on_untransformed_data():
    adata = make_cells(n=500)
    del adata.uns["arcsinh"]
    adata.X = np.sinh(adata.X) * 5
    with pytest.warns(itme.errors.ItmeInputWarning, match="arcsinh"):
        itme.tl.flowsom(adata, grid=(3, 3), n_metaclusters=3)


def test_copy_leaves_input_alone():
    adata = make_cells(n=500)
    out = itme.tl.flowsom(adata, grid=(3, 3), n_metaclusters=3, copy=True)
    assert "metacluster" in out.obs and "metacluster" not in adata.obs


@pytest.mark.parametrize("lazy", [False, True], ids=["in_memory", "dask"])
def test_empty_metaclusters_are_not_categories_and_are_listed_in_uns(lazy, tmp_path):
    import dask.array as da

    adata = make_cells(n=3000)
    if lazy:  # the cohort store's events: X a dask array
        adata.X = da.from_array(np.asarray(adata.X), chunks=(700, -1))
    itme.tl.flowsom(adata, grid=(10, 10), n_metaclusters=40, rng=7)
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for data in (adata, back):
        labels, info = data.obs["metacluster"], data.uns["flowsom"]
        sizes = labels.value_counts()
        assert (sizes > 0).all()  # every category holds events
        empty = [int(i) for i in info["empty_metaclusters"]]
        assert empty  # a 10x10 grid over five populations leaves nodes, and metaclusters, empty
        held = sorted(int(c) for c in labels.cat.categories)
        assert sorted(held + empty) == list(range(1, info["n_metaclusters_final"] + 1))
        # the numbering stays that of node_metacluster, categories in numeric order
        assert held == [int(c) for c in labels.cat.categories]
        node_meta = info["node_metacluster"][data.obs["som_node"].cat.codes]
        np.testing.assert_array_equal(node_meta.astype(str), labels.astype(str))
