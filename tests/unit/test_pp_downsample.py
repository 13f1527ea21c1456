"""pp.downsample: equal events per sample, exclusions listed, reproducible with rng."""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import stats

import itme
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError


def _adata(sizes=(500, 300, 40), qc_removed: int = 0) -> AnnData:
    sid = np.repeat([f"P{i + 1}" for i in range(len(sizes))], sizes)
    n = sid.size
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    obs = pd.DataFrame(
        {"sample_id": pd.Categorical(sid), "patient_id": pd.Categorical(sid)},
        index=[f"e{i}" for i in range(n)],
    )
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=["a", "b", "c"]), layers={"raw": X})
    if qc_removed:
        labels = np.array(["kept"] * n, dtype=object)
        labels[:qc_removed] = "debris"
        adata.obs["itme_qc"] = pd.Categorical(labels, categories=["kept", "debris"])
    return adata


def test_equal_events_per_sample_with_smallest_as_default():
    adata = _adata()
    out = itme.pp.downsample(adata, rng=0)
    counts = out.obs["sample_id"].value_counts()
    assert counts.to_dict() == {"P1": 40, "P2": 40, "P3": 40}
    assert out.uns["downsample"]["n"] == 40
    assert out.uns["downsample"]["excluded"] == []
    # original order is kept and every drawn event is a real event of its sample
    pos = adata.obs_names.get_indexer(out.obs_names)
    assert np.all(np.diff(pos) > 0)
    np.testing.assert_array_equal(out.X, adata.X[pos])
    assert out.X is out.layers["raw"]
    assert adata.n_obs == 840  # input untouched


def test_small_samples_are_excluded_with_a_warning_and_listed():
    adata = _adata()
    with pytest.warns(ItmeExclusionWarning, match=r"excluded 1 of 3 samples .* P3 \(40\)"):
        out = itme.pp.downsample(adata, min_events=100, rng=1)
    assert out.obs["sample_id"].value_counts().to_dict() == {"P1": 300, "P2": 300, "P3": 0}
    info = out.uns["downsample"]
    assert info["excluded"] == ["P3"] and info["n"] == 300 and info["min_events"] == 100
    acc = info["accounting"].set_index("sample_id")
    assert acc.loc["P3", "status"] == "excluded" and acc.loc["P3", "events_out"] == 0
    assert acc.loc["P2", "status"] == "all_events" and acc.loc["P1", "status"] == "downsampled"


def test_small_samples_can_be_an_error():
    with pytest.raises(ItmeInputError, match=r"P3 \(40\)"):
        itme.pp.downsample(_adata(), min_events=100, on_small="error")
    with pytest.raises(ItmeInputError, match="at least one sample"):
        itme.pp.downsample(_adata(), min_events=10_000)


def test_n_implies_min_events():
    with pytest.warns(ItmeExclusionWarning, match="P2"):
        out = itme.pp.downsample(_adata(), n=400, rng=2)
    assert out.obs["sample_id"].value_counts().to_dict() == {"P1": 400, "P2": 0, "P3": 0}


def test_only_kept_events_are_drawn():
    adata = _adata(qc_removed=450)
    out = itme.pp.downsample(adata, rng=3)
    assert set(out.obs["itme_qc"].astype(str)) == {"kept"}
    assert out.uns["downsample"]["n"] == 40
    acc = out.uns["downsample"]["accounting"].set_index("sample_id")
    assert acc.loc["P1", "events_available"] == 50


def test_same_rng_same_events_and_seed_recorded():
    a = itme.pp.downsample(_adata(), rng=7)
    b = itme.pp.downsample(_adata(), rng=7)
    c = itme.pp.downsample(_adata(), rng=8)
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.obs_names) != list(c.obs_names)
    assert a.uns["downsample"]["seed"] == 7
    gen = itme.pp.downsample(_adata(), rng=np.random.default_rng(5))
    again = itme.pp.downsample(_adata(), rng=gen.uns["downsample"]["seed"])
    assert list(gen.obs_names) == list(again.obs_names)


def test_draw_is_uniform_within_a_sample():
    # each of P1's 500 events has probability 40/500 of being drawn; over 200 draws the
    # counts per event follow Binomial(200, 0.08): a chi-square test must not reject
    adata = _adata()
    hits = np.zeros(500)
    for seed in range(200):
        out = itme.pp.downsample(adata, rng=seed)
        hits[adata.obs_names.get_indexer(out.obs_names[out.obs["sample_id"] == "P1"])] += 1
    expected = 200 * 40 / 500
    assert stats.chi2.sf(np.sum((hits - expected) ** 2 / expected), 499) > 0.001


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "'n'"),
        ({"min_events": -5}, "min_events"),
        ({"on_small": "drop"}, "on_small"),
        ({"sample_key": "donor"}, "sample_key"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ItmeParameterError, match=match):
        itme.pp.downsample(_adata(), **kwargs)


def test_h5ad_roundtrip(tmp_path):
    with pytest.warns(ItmeExclusionWarning):
        out = itme.pp.downsample(_adata(), min_events=100, rng=4)
    path = tmp_path / "d.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.write_h5ad(path)
    back = anndata.read_h5ad(path).uns["downsample"]
    assert int(back["n"]) == 300 and int(back["seed"]) == 4 and int(back["min_events"]) == 100
    assert list(back["excluded"]) == ["P3"]
    pd.testing.assert_frame_equal(
        back["accounting"].reset_index(drop=True),
        out.uns["downsample"]["accounting"].reset_index(drop=True),
        check_dtype=False,
    )
    none_excluded = itme.pp.downsample(_adata(), rng=4)
    none_excluded.write_h5ad(tmp_path / "e.h5ad")
    assert len(anndata.read_h5ad(tmp_path / "e.h5ad").uns["downsample"]["excluded"]) == 0


def test_events_without_a_sample_are_an_error_not_dropped():
    adata = _adata()
    adata.obs["sample_id"] = adata.obs["sample_id"].cat.add_categories("P9")
    adata.obs.iloc[3, adata.obs.columns.get_loc("sample_id")] = None
    with pytest.raises(
        ItmeInputError, match=r"obs\['sample_id'\].*1 event\(s\) with a missing value"
    ):
        itme.pp.downsample(adata, rng=0)
