"""A new AnnData holding a subset of events (used by pp.apply_qc and pp.downsample)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from anndata import AnnData


def subset_events(adata: AnnData, rows: np.ndarray) -> AnnData:
    """Return a new AnnData with the events ``rows`` (sorted integer positions).

    Each array is gathered once. When ``X`` is the same object as ``layers["raw"]`` (before
    :func:`itme.pp.arcsinh`), the result keeps them one object, so memory is not doubled.
    ``uns`` is deep-copied; ``var`` and ``varm`` are copied.
    """
    rows = np.asarray(rows, dtype=np.intp)
    x_is_raw = "raw" in adata.layers and adata.layers["raw"] is adata.X
    X = np.take(adata.X, rows, axis=0) if adata.X is not None else None
    layers = {}
    for key in adata.layers.keys():
        if key == "raw" and x_is_raw:
            layers[key] = X
        else:
            layers[key] = np.take(adata.layers[key], rows, axis=0)
    obs = adata.obs.iloc[rows].copy()  # categories are kept, even when a sample lost all events
    out = AnnData(
        X=X,
        obs=obs,
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        obsm={
            k: v.iloc[rows] if isinstance(v, pd.DataFrame) else np.take(v, rows, axis=0)
            for k, v in adata.obsm.items()
        },
        varm={k: np.array(v) for k, v in adata.varm.items()},
        layers=layers,
    )
    if x_is_raw:  # AnnData may have copied on assignment; restore the shared object
        out.layers["raw"] = out.X
    return out
