"""pp.arcsinh: values, raw layer untouched, per-channel cofactors, refusal to transform twice."""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import itme
from itme.core.transform import arcsinh_into
from itme.errors import ItmeInputWarning, ItmeParameterError, ItmeStateError


def _adata(n: int = 500, seed: int = 0) -> AnnData:
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, 80.0, size=(n, 5)).astype(np.float32)
    X[:5, 0] = [-3.0, 0.0, 1e-3, 5.0, 1e5]  # negatives, zero and a huge count
    var = pd.DataFrame(
        {
            "channel": ["Y89Di", "Nd145Di", "Ir191Di", "Pt195Di", "Event_length"],
            "antigen": ["CD45", "CD4", "DNA1", "cisplatin", "Event_length"],
            "marker_class": pd.Categorical(
                ["type", "state", "qc", "qc", "qc"], categories=["type", "state", "qc", "none"]
            ),
        },
        index=["CD45", "CD4", "DNA1", "cisplatin", "Event_length"],
    )
    obs = pd.DataFrame({"sample_id": pd.Categorical(["a"] * n)}, index=[f"a_{i}" for i in range(n)])
    return AnnData(X=X, obs=obs, var=var, layers={"raw": X})


def test_values_match_float64_reference_and_raw_is_untouched():
    adata = _adata()
    raw = adata.layers["raw"]
    before = raw.copy()
    itme.pp.arcsinh(adata)
    assert adata.layers["raw"] is raw  # same object, values unchanged
    np.testing.assert_array_equal(raw, before)
    assert adata.X is not raw and adata.X.dtype == np.float32
    expected = np.arcsinh(before[:, :2].astype(np.float64) / 5.0)
    np.testing.assert_allclose(adata.X[:, :2], expected, rtol=2e-6, atol=2e-7)
    # qc channels are copied, not transformed
    np.testing.assert_array_equal(adata.X[:, 2:], before[:, 2:])
    assert adata.uns["arcsinh"]["channels"] == ["CD45", "CD4"]
    np.testing.assert_array_equal(adata.uns["arcsinh"]["cofactor"], [5.0, 5.0])


def test_known_values():
    # arcsinh(5 / 5) = ln(1 + sqrt(2)) = 0.881373587...
    adata = _adata()
    itme.pp.arcsinh(adata)
    assert adata.X[3, 0] == pytest.approx(np.log(1 + np.sqrt(2)), rel=1e-6)
    assert adata.X[1, 0] == 0.0
    assert adata.X[0, 0] == pytest.approx(-np.arcsinh(0.6), rel=1e-6)  # negatives stay odd


def test_second_application_is_an_error():
    adata = _adata()
    itme.pp.arcsinh(adata)
    X = adata.X
    with pytest.raises(ItmeStateError, match="applied already"):
        itme.pp.arcsinh(adata)
    assert adata.X is X


def test_per_channel_cofactors_and_explicit_channels():
    adata = _adata()
    raw = adata.layers["raw"].copy()
    itme.pp.arcsinh(adata, channels=["CD45", "CD4"], cofactor={"CD4": 150.0})
    np.testing.assert_allclose(adata.X[:, 1], np.arcsinh(raw[:, 1] / 150.0), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(adata.X[:, 0], np.arcsinh(raw[:, 0] / 5.0), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(adata.uns["arcsinh"]["cofactor"], [5.0, 150.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cofactor": 0.0}, "cofactor"),
        ({"cofactor": {"DNA1": 5.0}}, "cofactor"),
        ({"channels": ["CD99"]}, "channels"),
        ({"cofactor": None}, "cofactor"),
        ({"cofactor": {"CD4": "five"}}, "cofactor"),
    ],
)
def test_bad_parameters(kwargs, match):
    adata = _adata()
    del adata.layers["raw"]
    with pytest.raises(ItmeParameterError, match=match):
        itme.pp.arcsinh(adata, **kwargs)
    assert "raw" not in adata.layers  # nothing written before the arguments were checked


def test_copy_leaves_input_alone():
    adata = _adata()
    X = adata.X
    out = itme.pp.arcsinh(adata, copy=True)
    assert out is not None and "arcsinh" in out.uns
    assert "arcsinh" not in adata.uns and adata.X is X


def test_without_marker_classes_technical_channels_are_left_raw():
    adata = _adata()
    adata.var["marker_class"] = pd.Categorical(
        ["none"] * 5, categories=["type", "state", "qc", "none"]
    )
    del adata.layers["raw"]
    raw = adata.X
    with pytest.warns(ItmeInputWarning, match="no channel has marker_class"):
        itme.pp.arcsinh(adata)
    assert adata.layers["raw"] is raw
    assert adata.uns["arcsinh"]["channels"] == ["CD45", "CD4", "DNA1", "cisplatin"]
    np.testing.assert_array_equal(adata.X[:, 4], raw[:, 4])


def test_block_boundaries_do_not_matter():
    rng = np.random.default_rng(1)
    raw = rng.gamma(0.5, 50.0, size=(1001, 7)).astype(np.float32)
    cols = np.array([0, 2, 3, 6])
    cof = np.array([5.0, 5.0, 2.0, 10.0])
    a = arcsinh_into(raw, np.empty_like(raw), cols, cof, block_rows=7)
    b = arcsinh_into(raw, np.empty_like(raw), cols, cof, block_rows=100_000)
    np.testing.assert_array_equal(a, b)
    full = arcsinh_into(raw, np.empty_like(raw), np.arange(7), np.full(7, 5.0), block_rows=13)
    np.testing.assert_allclose(full, np.arcsinh(raw / 5.0), rtol=2e-6, atol=1e-7)


def test_h5ad_roundtrip(tmp_path):
    adata = _adata()
    itme.pp.arcsinh(adata)
    path = tmp_path / "a.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_h5ad(path)
    back = anndata.read_h5ad(path)
    assert list(back.uns["arcsinh"]["channels"]) == ["CD45", "CD4"]
    np.testing.assert_array_equal(back.uns["arcsinh"]["cofactor"], [5.0, 5.0])
    np.testing.assert_array_equal(back.X, adata.X)
    with pytest.raises(ItmeStateError, match="applied already"):
        itme.pp.arcsinh(back)
