"""ComBat (Johnson et al., Biostatistics 2007) through scanpy: the scanpy adapter."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

__all__: list[str] = []


def combat(X: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """ComBat-corrected copy of ``X`` (events × markers) for the batch labels ``batch``.

    Runs :func:`scanpy.pp.combat` (parametric empirical Bayes, no covariates) on a throwaway
    AnnData. Every batch needs at least two events; the caller checks.

    Parameters
    ----------
    X
        Events × markers.
    batch
        Batch label of each event.

    Returns
    -------
    numpy.ndarray
        float32 array of ``X``'s shape.
    """
    import scanpy as sc

    obs = pd.DataFrame(
        {"batch": pd.Categorical(np.asarray(batch).astype(str))},
        index=pd.RangeIndex(X.shape[0]).astype(str),
    )
    tmp = AnnData(np.asarray(X, dtype=np.float64), obs=obs)
    with warnings.catch_warnings():
        # scanpy warns about its own internal pandas/numpy use; the result is unaffected
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        out = sc.pp.combat(tmp, key="batch", inplace=False)
    return np.asarray(out, dtype=np.float32)


def scanpy_version() -> str:
    """The installed scanpy version (recorded with each correction)."""
    from importlib.metadata import version

    return version("scanpy")
