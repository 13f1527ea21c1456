"""Events by sample, and a new AnnData holding a subset of events (clean, apply_qc, downsample)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import by_position
from itme._dask import is_lazy, select_rows
from itme.errors import ItmeInputError


def sample_codes(adata: AnnData, sample_key: str) -> tuple[np.ndarray, list[str]]:
    """The sample of every event as a code, and the sample ids the codes index.

    Parameters
    ----------
    adata
        Events, with the sample in ``obs[sample_key]`` (checked to exist by the caller).
    sample_key
        The obs column.

    Returns
    -------
    ``codes`` (one integer per event) and ``ids`` (the categories as strings, in order).

    Raises
    ------
    ItmeInputError
        An event has no sample (a missing value in the column).
    """
    col = adata.obs[sample_key]
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    codes = cat.cat.codes.to_numpy()
    if (codes < 0).any():
        raise ItmeInputError(
            where=f"obs['{sample_key}']",
            expected="a sample for every event",
            found=f"{int((codes < 0).sum())} event(s) with a missing value",
            fix="Label every event with its sample (read_cohort does)",
        )
    return codes, [str(c) for c in cat.cat.categories]


def _take_obs(obs: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``obs.take(rows)``; events named by position keep ``rows`` as their index, as int32.

    pandas' ``take`` of a ``RangeIndex`` makes an int64 index, 8 bytes an event (0.6 GB for
    8 × 10^7 events of a cohort store); int32 rows (below 2^31 events) take half.
    """
    index = obs.index
    by_position = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    if not by_position or obs.columns.has_duplicates:
        return obs.take(rows)
    columns = {c: obs[c].array.take(rows) for c in obs.columns}
    small = len(index) <= np.iinfo(np.int32).max  # 4 bytes an event, not 8
    names = pd.Index(rows.astype(np.int32) if small else rows, copy=False)
    return pd.DataFrame(columns, index=names, columns=obs.columns, copy=False)


def subset_events(adata: AnnData, rows: np.ndarray) -> AnnData:
    """Return a new AnnData with the events ``rows``.

    Each array is gathered once. When ``X`` is the same object as ``layers["raw"]`` (before
    :func:`itme.pp.arcsinh`), the result keeps them one object, so memory is not doubled.
    ``uns`` is deep-copied; ``var`` and ``varm`` are copied.

    Parameters
    ----------
    adata
        Events x channels.
    rows
        Sorted integer positions of the events to keep.

    Returns
    -------
    The new AnnData.
    """
    rows = np.asarray(rows, dtype=np.intp)
    masks: dict[Any, Any] = {}  # the lazy matrices chunked alike share the mask of rows

    def take(values: Any) -> Any:  # a lazy matrix: a lazy selection, block by block
        if is_lazy(values):
            return select_rows(values, rows, masks)
        return np.take(values, rows, axis=0)

    x_is_raw = "raw" in adata.layers and adata.layers["raw"] is adata.X
    X = take(adata.X) if adata.X is not None else None
    layers = {}
    for key in adata.layers.keys():
        if key == "raw" and x_is_raw:
            layers[key] = X
        else:
            layers[key] = take(adata.layers[key])
    obs = _take_obs(adata.obs, rows)  # categories are kept, even when a sample lost all events
    out = by_position(  # events of a cohort store keep their rows in it as obs_names
        obs,
        X=X,
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
