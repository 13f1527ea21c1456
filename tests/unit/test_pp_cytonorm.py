"""pp.cytonorm input checks (fast: they run before cytonormpy is imported).

The normalisation itself is tested on the real Gates files in
tests/integration/test_pp_real_files.py::test_cytonorm_on_gates_files.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import itme
from itme.errors import ItmeDependencyError, ItmeInputError, ItmeParameterError, ItmeStateError


def _adata(batches=("1", "1", "2", "2"), refs=("ref", "other", "ref", "other")) -> AnnData:
    n = 50
    sid = np.repeat([f"s{i}" for i in range(len(batches))], n)
    X = np.random.default_rng(0).gamma(1.0, 20.0, size=(sid.size, 3)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(sid),
            "batch": pd.Categorical(np.repeat(batches, n)),
            "reference": pd.Categorical(np.repeat(refs, n)),
        },
        index=[f"e{i}" for i in range(sid.size)],
    )
    var = pd.DataFrame(
        {"marker_class": pd.Categorical(["type"] * 3, categories=["type", "state", "qc", "none"])},
        index=["CD3", "CD4", "CD8"],
    )
    return AnnData(X=X, obs=obs, var=var, layers={"raw": X})


def test_needs_arcsinh_first():
    with pytest.raises(ItmeStateError, match="run itme.pp.arcsinh first"):
        itme.pp.cytonorm(_adata())


def test_refuses_a_second_application():
    adata = _adata()
    itme.pp.arcsinh(adata)
    adata.uns["cytonorm"] = {"seed": 1}
    with pytest.raises(ItmeStateError, match="applied already"):
        itme.pp.cytonorm(adata)


def test_every_batch_needs_a_reference():
    adata = _adata(refs=("ref", "other", "other", "other"))
    itme.pp.arcsinh(adata)
    with pytest.raises(ItmeInputError, match=r"none in batch\(es\) 2"):
        itme.pp.cytonorm(adata)


def test_missing_columns_and_single_batch():
    adata = _adata()
    itme.pp.arcsinh(adata)
    with pytest.raises(ItmeInputError, match="missing plate"):
        itme.pp.cytonorm(adata, batch_key="plate")
    one = _adata(batches=("1", "1", "1", "1"))
    itme.pp.arcsinh(one)
    with pytest.raises(ItmeInputError, match="at least two batches"):
        itme.pp.cytonorm(one)


def test_sample_in_two_batches():
    adata = _adata()
    adata.obs["batch"] = pd.Categorical(np.tile(["1", "2"], adata.n_obs // 2))
    itme.pp.arcsinh(adata)
    with pytest.raises(ItmeInputError, match="one batch and one reference flag per sample"):
        itme.pp.cytonorm(adata)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": ["CD99"]}, "'channels'"),
        ({"n_metaclusters": 1}, "n_metaclusters"),
        ({"grid": (1, 5)}, "grid"),
        ({"goal": "batch_max"}, "goal"),
    ],
)
def test_bad_parameters(kwargs, match):
    adata = _adata()
    itme.pp.arcsinh(adata)
    with pytest.raises(ItmeParameterError, match=match):
        itme.pp.cytonorm(adata, **kwargs)


def test_missing_package_names_the_extra(monkeypatch):
    adata = _adata()
    itme.pp.arcsinh(adata)
    monkeypatch.setitem(sys.modules, "cytonormpy", None)  # makes `import cytonormpy` fail
    with pytest.raises(ItmeDependencyError, match=r"pip install 'itme\[cytonorm\]'"):
        itme.pp.cytonorm(adata)
