"""Write an AnnData to h5ad, read it back and compare every key (docs/data-model.md contract)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd


def assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False, obj=where)
    elif isinstance(a, np.ndarray | list | tuple | pd.Series | pd.Index):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, err_msg=where, equal_nan=True)
        else:
            np.testing.assert_array_equal(x.astype(str), y.astype(str), err_msg=where)
    elif isinstance(a, float | np.floating):
        assert np.isclose(a, b, equal_nan=True), where
    else:
        assert a == b or str(a) == str(b), f"{where}: {a!r} != {b!r}"


def roundtrip(adata: ad.AnnData, path) -> ad.AnnData:
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert_same(dict(adata.uns), dict(back.uns), "uns")
    pd.testing.assert_frame_equal(adata.obs, back.obs, check_categorical=False)
    pd.testing.assert_frame_equal(adata.var, back.var, check_categorical=False)
    for key in adata.obsm:
        assert_same(adata.obsm[key], back.obsm[key], f"obsm.{key}")
    for key in adata.layers:
        np.testing.assert_array_equal(adata.layers[key], back.layers[key])
    return back
