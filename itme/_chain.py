"""``X`` of a lazy cohort: beads → compensation → arcsinh → drift → batch correction.

A cohort store keeps the raw counts once, as read from the FCS files (:mod:`itme.io._store`);
the normalised, transformed and corrected matrices are never written. What turns the stored
counts into ``layers["raw"]`` (:func:`counts`) and then into ``X`` (:func:`rebuild`) is a
chain of per-event functions whose fitted parameters are small and live in ``uns``:

0. ``uns["bead_normalization"]``: each file's bead factors over acquisition time
   (:func:`itme.core.batch.beads.scale_block`; ``pp.normalize_beads``), then
   ``uns["compensation"]``: the spillover matrix (:func:`itme.core.compensate.compensate_block`;
   ``pp.compensate``), in the ingest stage's order;
1. ``uns["arcsinh"]``: ``arcsinh(raw / cofactor)`` (:func:`itme.core.transform.arcsinh_block`);
2. ``uns["drift"]``: each drifting file's curve over acquisition time
   (:func:`itme.core.batch.drift.drift_block`; the time read from ``layers["raw"]``);
3. ``uns["batch_correction"]``: each event's SOM node on its batch-aligned values and its
   node × batch line (:func:`itme.core.batch.passes.correct_block`).

:func:`rebuild` composes them lazily (one blockwise dask layer each; dask fuses them into one
task per block), so :func:`itme.io.open_store` gives the corrected ``X`` that
``pp.correct_drift`` and ``pp.correct_batch`` gave in memory, bit for bit: the kernels are
the in-memory path's and compute every event from its own values. The file and batch of the
events in a block come from run-length codes of ``obs`` (a few numbers per file), so the
task graph does not grow with the number of events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._dask import is_lazy, map_rows
from itme.core.batch.beads import scale_block
from itme.core.batch.drift import drift_block
from itme.core.batch.passes import aligned_weights, correct_block
from itme.core.compensate import compensate_block
from itme.core.transform import arcsinh_block
from itme.errors import ItmeInputError

__all__ = [
    "batch_params",
    "bead_params",
    "counts",
    "drift_params",
    "expand",
    "lazy_batch",
    "lazy_beads",
    "lazy_compensation",
    "lazy_drift",
    "lazy_time_column",
    "rebuild",
    "runs",
    "time_column",
]


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length code of ``values``: the first row of every run and the run's value."""
    values = np.asarray(values)
    starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
    return starts[: values.size].astype(np.int64), values[starts[: values.size]]


def expand(starts: np.ndarray, values: np.ndarray, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of the values whose run-length code is ``(starts, values)``."""
    first = max(0, int(np.searchsorted(starts, a, side="right")) - 1)
    last = int(np.searchsorted(starts, b, side="left"))
    bounds = np.clip(np.append(starts[first:last], b), a, b)
    return np.repeat(values[first:last], np.diff(bounds))


def _codes(obs: pd.DataFrame, key: str, names: list[str]) -> np.ndarray:
    """Each event's position of ``obs[key]`` in ``names`` (-1: not listed)."""
    if key not in obs:
        raise ItmeInputError(
            where=f"obs[{key!r}]",
            expected="the column the correction in uns was fitted by",
            found=f"obs columns {list(obs.columns)}",
            fix="Keep the obs column, or start again from uncorrected events",
        )
    col = obs[key]
    # a categorical's codes as they are (no string per event: a store has millions)
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    position = {name: i for i, name in enumerate(names)}
    lookup = np.array([position.get(str(c), -1) for c in cat.categories], dtype=np.int64)
    return np.append(lookup, -1)[np.asarray(cat.codes)]  # code -1 (missing): -1


def drift_params(adata: AnnData) -> dict[str, Any]:
    """The drift correction of ``uns["drift"]`` as the arguments of ``drift_block``.

    Returns
    -------
    dict
        ``which`` (each event's corrected file, -1: none), ``centres`` and ``curves`` (one
        array per corrected file), ``cols`` (the markers' columns), ``time_key``.
    """
    info = adata.uns["drift"]
    table, windows = info["samples"], info["windows"]
    names = [str(s) for s, c in zip(table["sample_id"], table["corrected"], strict=True) if c]
    centres, curves = [], []
    for name in names:
        rows = windows[windows["sample_id"].astype(str) == name].sort_values("window")
        centres.append(rows["time"].to_numpy(dtype=np.float64))
        curves.append(rows["curve"].to_numpy(dtype=np.float64))
    return {
        "which": _codes(adata.obs, str(info["sample_key"]), names),
        "centres": centres,
        "curves": curves,
        "cols": adata.var_names.get_indexer([str(m) for m in info["markers"]]),
        "time_key": str(info["time_key"]),
    }


def batch_params(adata: AnnData) -> dict[str, Any]:
    """The correction of ``uns["batch_correction"]`` as the arguments of ``correct_block``.

    Returns
    -------
    dict
        ``batch`` (each event's batch code, -1: a batch not fitted), ``cols``, ``weights``,
        ``offsets``, ``slope``, ``intercept``, ``lo``, ``hi``.
    """
    info = adata.uns["batch_correction"]
    weights, offsets = aligned_weights(
        np.asarray(info["align_slope"]), np.asarray(info["align_intercept"]), info["codes"]
    )
    return {
        "batch": _codes(adata.obs, str(info["batch_key"]), [str(b) for b in info["batches"]]),
        "cols": adata.var_names.get_indexer([str(m) for m in info["markers"]]),
        "weights": weights,
        "offsets": offsets,
        **{k: np.asarray(info[k], dtype=np.float64) for k in ("slope", "intercept", "lo", "hi")},
    }


def bead_params(adata: AnnData) -> dict[str, Any]:
    """The bead normalisation of ``uns["bead_normalization"]`` as the arguments of ``scale_block``.

    Returns
    -------
    dict
        ``which`` (each event's normalised file, -1: none), ``bead_times`` and
        ``bead_slopes`` (one array per normalised file), ``columns`` (the scaled channels),
        ``time`` (the column of the time channel).

    Raises
    ------
    ItmeInputError
        The time is not a channel (an ``obs`` column is not read blockwise).
    """
    info = adata.uns["bead_normalization"]
    table = info["factors"]
    ids = table["sample_id"].astype(str).to_numpy()
    names = list(dict.fromkeys(ids))
    return {
        "which": _codes(adata.obs, str(info["sample_key"]), names),
        "bead_times": [table["time"].to_numpy(np.float64)[ids == n] for n in names],
        "bead_slopes": [table["factor"].to_numpy(np.float64)[ids == n] for n in names],
        "columns": adata.var_names.get_indexer([str(c) for c in info["channels"]]),
        "time": lazy_time_column(adata, str(info["time_key"])),
    }


def time_column(adata: AnnData, time_key: str) -> int | None:
    """The column of the channel ``time_key`` (var name or ``var["channel"]``), or None."""
    names = list(map(str, adata.var_names))
    chans = adata.var["channel"].astype(str).tolist() if "channel" in adata.var else names
    for i, (n, c) in enumerate(zip(names, chans, strict=True)):
        if time_key in (n, c):
            return i
    return None


def lazy_time_column(adata: AnnData, time_key: str) -> int:
    """:func:`time_column`, which lazy data need (an ``obs`` column is not read blockwise).

    Raises
    ------
    ItmeInputError
        No channel ``time_key``.
    """
    column = time_column(adata, time_key)
    if column is None:
        raise ItmeInputError(
            where=f"time_key={time_key!r}",
            expected="a channel holding the acquisition time (lazy data read it blockwise)",
            found="no such channel" + (" (an obs column)" if time_key in adata.obs else ""),
            fix="Keep the time as a channel of the cohort store",
        )
    return column


def _rows(block_info: dict) -> tuple[int, int]:
    a, b = block_info[0]["array-location"][0]
    return int(a), int(b)


def _drift_kernel(
    x: np.ndarray, t: np.ndarray, *, starts: np.ndarray, values: np.ndarray, block_info=None,
    **params: Any,
) -> np.ndarray:  # fmt: skip
    out = np.array(x, dtype=np.float32, order="C")
    which = expand(starts, values, *_rows(block_info))
    return drift_block(out, np.asarray(t[:, 0], dtype=np.float64), which, **params)


def _batch_kernel(
    x: np.ndarray, *, starts: np.ndarray, values: np.ndarray, block_info=None, **params: Any
) -> np.ndarray:
    out = np.array(x, dtype=np.float32, order="C")
    correct_block(out, batch=expand(starts, values, *_rows(block_info)), **params)
    return out


def _beads_kernel(
    x: np.ndarray, *, starts: np.ndarray, values: np.ndarray, time: int, block_info=None,
    **params: Any,
) -> np.ndarray:  # fmt: skip
    which = expand(starts, values, *_rows(block_info))
    return scale_block(x, x[:, time], which, **params)


def _one_column_chunk(X: Any) -> Any:
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def lazy_drift(adata: AnnData, X: Any) -> Any:
    """``X`` (a dask array) with the drift of ``uns["drift"]`` removed, lazily.

    Parameters
    ----------
    adata
        The lazy AnnData (``obs``, ``var``, ``layers["raw"]``, ``uns["drift"]``).
    X
        Its arcsinh values (dask).

    Returns
    -------
    The corrected dask array (``X`` itself when no file was corrected).

    Raises
    ------
    ItmeInputError
        The time is not a channel (an ``obs`` column is not read blockwise).
    """
    import dask.array as da

    p = drift_params(adata)
    if not p["centres"]:
        return X
    column = lazy_time_column(adata, p["time_key"])
    X = _one_column_chunk(X)
    t = adata.layers["raw"][:, [column]].rechunk({0: X.chunks[0]})
    starts, values = runs(p["which"])
    return da.map_blocks(
        _drift_kernel, X, t, dtype=np.float32, chunks=X.chunks, meta=np.empty((0, 0), np.float32),
        starts=starts, values=values, centres=p["centres"], curves=p["curves"], cols=p["cols"],
    )  # fmt: skip


def lazy_batch(adata: AnnData, X: Any) -> Any:
    """``X`` (a dask array) corrected by ``uns["batch_correction"]``, lazily.

    Parameters
    ----------
    adata
        The lazy AnnData (``obs``, ``var``, ``uns["batch_correction"]``).
    X
        Its arcsinh (drift-corrected) values (dask).

    Returns
    -------
    The corrected dask array.
    """
    import dask.array as da

    p = batch_params(adata)
    starts, values = runs(p.pop("batch"))
    X = _one_column_chunk(X)
    return da.map_blocks(
        _batch_kernel, X, dtype=np.float32, chunks=X.chunks, meta=np.empty((0, 0), np.float32),
        starts=starts, values=values, **p,
    )  # fmt: skip


def lazy_beads(adata: AnnData, raw: Any) -> Any:
    """``raw`` (a dask array of counts) normalised by ``uns["bead_normalization"]``, lazily.

    Parameters
    ----------
    adata
        The lazy AnnData (``obs``, ``var``, ``uns["bead_normalization"]`` with ``factors``).
    raw
        Its raw counts (dask), the time channel among them.

    Returns
    -------
    The normalised dask array (float32; ``raw`` itself when no file was normalised).
    """
    import dask.array as da

    p = bead_params(adata)
    if not p["bead_times"]:
        return raw
    starts, values = runs(p.pop("which"))
    raw = _one_column_chunk(raw)
    return da.map_blocks(
        _beads_kernel, raw, dtype=np.float32, chunks=raw.chunks,
        meta=np.empty((0, 0), np.float32), starts=starts, values=values, **p,
    )  # fmt: skip


def lazy_compensation(adata: AnnData, raw: Any) -> Any:
    """``raw`` (a dask array of counts) compensated by ``uns["compensation"]``, lazily.

    Parameters
    ----------
    adata
        The lazy AnnData (``var``, ``uns["compensation"]``: ``channels``, ``matrix``,
        ``method``).
    raw
        Its counts (dask).

    Returns
    -------
    The compensated dask array (float32).
    """
    info = adata.uns["compensation"]
    columns = adata.var_names.get_indexer([str(c) for c in info["channels"]])
    spill = np.asarray(info["matrix"], dtype=np.float64)
    return map_rows(compensate_block, raw, columns, spill, str(info["method"]),
                    dtype=np.float32, columns_out=raw.shape[1])  # fmt: skip


def counts(adata: AnnData) -> Any:
    """The counts of a lazy AnnData: ``layers["raw"]`` normalised and compensated per ``uns``.

    Parameters
    ----------
    adata
        An AnnData whose ``layers["raw"]`` is a dask array of the counts as read from the
        FCS files (a cohort store).

    Returns
    -------
    The dask array ``layers["raw"]``, then bead-normalised (``uns["bead_normalization"]``)
    and compensated (``uns["compensation"]``) when present, in the ingest stage's order.
    """
    raw = adata.layers["raw"]
    if not is_lazy(raw):
        return raw
    if "bead_normalization" in adata.uns:
        raw = lazy_beads(adata, raw)
    if "compensation" in adata.uns:
        raw = lazy_compensation(adata, raw)
    return raw


def rebuild(adata: AnnData) -> Any:
    """``X`` of a lazy AnnData recomputed from ``layers["raw"]`` and the steps in ``uns``.

    Parameters
    ----------
    adata
        An AnnData whose ``layers["raw"]`` is a dask array (a cohort store; bead-normalised
        and compensated already, :func:`counts`).

    Returns
    -------
    The dask array ``X``: ``layers["raw"]`` itself when ``uns`` holds no ``arcsinh``; else
    its arcsinh, then the drift correction (``uns["drift"]``) and the batch correction
    (``uns["batch_correction"]``) when present.
    """
    raw = adata.layers["raw"]
    if not is_lazy(raw) or "arcsinh" not in adata.uns:
        return raw
    info = adata.uns["arcsinh"]
    cols = adata.var_names.get_indexer([str(c) for c in info["channels"]])
    cof = np.asarray(info["cofactor"], dtype=np.float64)
    X = map_rows(arcsinh_block, raw, cols, cof, dtype=np.float32, columns_out=raw.shape[1])
    if "drift" in adata.uns:
        X = lazy_drift(adata, X)
    if "batch_correction" in adata.uns:
        X = lazy_batch(adata, X)
    return X
