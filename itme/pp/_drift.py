"""Signal drift within each file over acquisition time: detected and corrected in time windows."""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import given_or_class
from itme._chain import drift_params, lazy_drift
from itme._dask import is_lazy, per_sample
from itme.core.batch.drift import drift_block, drift_curve
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError
from itme.pp._clean_inputs import event_times, n_rows

__all__ = ["correct_drift"]

logger = logging.getLogger(__name__)


def _times(adata: AnnData, time_key: str) -> np.ndarray | None:
    """Each event's time (``None`` for lazy data: read blockwise with the markers)."""
    if time_key in adata.var_names and is_lazy(adata.X):
        return None
    if time_key in adata.obs:
        if is_lazy(adata.X):
            raise ItmeInputError(
                where=f"time_key={time_key!r}",
                expected="a channel holding the acquisition time (lazy data read it blockwise)",
                found="an obs column only",
                fix="Keep the time as a channel of the cohort store",
            )
    layer = adata.layers["raw"] if "raw" in adata.layers else adata.X
    return event_times(
        adata, time_key, layer, fix="pass time_key= naming the time channel (e.g. 'Time')"
    )


def correct_drift(
    adata: AnnData,
    *,
    time_key: str = "Time",
    sample_key: str = "sample_id",
    markers: Sequence[str] | None = None,
    n_windows: int = 20,
    min_drift: float = 0.05,
    copy: bool = False,
) -> AnnData | None:
    """Detect and remove signal drift over each file's acquisition time (time windows).

    Per sample, events are cut into ``n_windows`` windows of equal counts in time order (as
    PeacoQC and flowAI do); in each window the median of every marker's positive events
    (above the sample's Otsu cut) is compared with the sample's median level, the median of
    these shifts over markers (a loss of sensitivity hits all channels) is smoothed by a
    quadratic in time, and samples whose signal changes by more than ``min_drift`` (0.05 =
    5 %) from their lowest to their highest point are corrected:
    ``arcsinh(sinh(x) · exp(-d(t)))``, the raw signal divided by the drift factor. Each
    file keeps its mean level, so differences between files are left to
    :func:`itme.pp.correct_batch`. With bead normalisation (which removes drift common to
    beads and cells), run beads first: the drift left over is then what this finds.

    Parameters
    ----------
    adata
        Events × channels, arcsinh scale (``pp.arcsinh``), cleaned.
    time_key
        ``obs`` column or channel (raw values read from ``layers["raw"]``) with the time.
    sample_key
        ``obs`` column of each event's sample (file).
    markers
        Markers used and corrected; default the ``type`` and ``state`` markers.
    n_windows
        Time windows per sample.
    min_drift
        Smallest signal change (fraction) that is corrected; smaller drifts are reported only.
    copy
        Return a corrected copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Modifies ``X`` on ``markers`` for drifting
        samples and writes ``uns["drift"]``: ``time_key``, ``sample_key``, ``markers``,
        ``n_windows``, ``min_drift``, ``samples`` (DataFrame: sample_id, n_events,
        n_markers_used, drift (fraction of signal between the curve's extremes), corrected),
        ``windows`` (DataFrame: sample_id, window, time, shift, curve). On lazy data (a
        cohort store) the curves are fitted one task per sample and ``X`` becomes the lazy
        corrected matrix (:func:`itme._chain.lazy_drift`; the time must then be a channel),
        recomputed from ``uns["drift"]`` when the store is opened.
    """
    t0 = _time.perf_counter()
    if "arcsinh" not in adata.uns:
        raise ItmeStateError("correct_drift works on arcsinh values: run itme.pp.arcsinh first")
    if "drift" in adata.uns:
        raise ItmeStateError("uns['drift'] exists: these events were drift-corrected already")
    if int(n_windows) < 3:
        raise ItmeParameterError("n_windows", "an integer >= 3", n_windows)
    if not 0 <= float(min_drift) < 1:
        raise ItmeParameterError("min_drift", "a fraction in [0, 1)", min_drift)
    if sample_key not in adata.obs:
        raise ItmeInputError(
            where=f"obs[{sample_key!r}]",
            expected="the sample (file) of each event",
            found=f"obs columns {list(adata.obs.columns)}",
            fix="pass sample_key=",
        )
    times = _times(adata, time_key)
    markers = given_or_class(adata, markers, ("type", "state"))
    adata = adata.copy() if copy else adata
    cols = np.asarray([adata.var_names.get_loc(m) for m in markers], dtype=np.intp)
    samples = pd.Categorical(adata.obs[sample_key].astype(str))
    rows_of = [np.flatnonzero(samples.codes == i) for i in range(len(samples.categories))]
    if times is None:  # lazy: one task per sample, its markers and times gathered once
        X = adata.X
        curves = _lazy_curves(adata, time_key, cols, rows_of, int(n_windows))
    else:
        X = np.asarray(adata.X)
        if X.dtype != np.float32:
            X = X.astype(np.float32)
        curves = [
            drift_curve(X[np.ix_(rows, cols)], times[rows], n_windows=int(n_windows))
            for rows in rows_of
        ]
    rows_s, rows_w = [], []
    for sample, rows, (centres, shifts, curve, used) in zip(
        samples.categories, rows_of, curves, strict=True
    ):
        drift = float(1 - np.exp(-(curve.max() - curve.min()))) if used else 0.0
        corrected = bool(used and drift > float(min_drift))
        rows_s.append(
            {
                "sample_id": str(sample),
                "n_events": int(rows.size),
                "n_markers_used": int(used),
                "drift": round(drift, 4),
                "corrected": corrected,
            }
        )
        rows_w += [
            {"sample_id": str(sample), "window": w, "time": c, "shift": s, "curve": d}
            for w, (c, s, d) in enumerate(zip(centres, shifts, curve, strict=True))
        ]
    table = pd.DataFrame(rows_s)
    adata.uns["drift"] = {
        "time_key": time_key,
        "sample_key": sample_key,
        "markers": list(markers),
        "n_windows": int(n_windows),
        "min_drift": float(min_drift),
        "samples": table,
        "windows": pd.DataFrame(rows_w),
    }
    if times is None:
        adata.X = lazy_drift(adata, X)
    else:  # the kernel of the lazy path, on the whole matrix (the parameters as stored)
        p = drift_params(adata)
        adata.X = drift_block(X, times, p["which"], p["centres"], p["curves"], p["cols"])
    logger.info(
        "correct_drift: %d of %d samples drift > %.0f%% and were corrected (largest %.0f%%; %.1f s)",
        int(table["corrected"].sum()),
        len(table),
        100 * float(min_drift),
        100 * float(table["drift"].max()) if len(table) else 0.0,
        _time.perf_counter() - t0,
    )
    return adata if copy else None


def _curve_of_block(block: np.ndarray, cols: np.ndarray, n_windows: int) -> tuple:
    """:func:`drift_curve` of one sample's gathered rows (the time in the last column)."""
    return drift_curve(
        block[:, cols], np.asarray(block[:, -1], dtype=np.float64), n_windows=n_windows
    )


def _lazy_curves(
    adata: AnnData, time_key: str, cols: np.ndarray, rows_of: list[np.ndarray], n_windows: int
) -> list[tuple]:
    """Each sample's :func:`drift_curve` on lazy data: one task per sample (its rows)."""
    import dask.array as da

    t = adata.layers["raw"][:, [adata.var_names.get_loc(time_key)]]
    both = da.concatenate([adata.X, t.astype(adata.X.dtype)], axis=1)
    # a sample's rows are one run in a cohort (files concatenated): a slice, not positions
    parts = [slice(int(r[0]), int(r[-1]) + 1) if r.size and r[-1] - r[0] + 1 == r.size else r
             for r in rows_of]  # fmt: skip
    found = iter(
        per_sample(_curve_of_block, both, [p for p in parts if n_rows(p)], cols, n_windows)
    )
    empty = np.empty((0, adata.n_vars + 1), dtype=np.float32)  # a sample without events
    return [next(found) if n_rows(p) else _curve_of_block(empty, cols, n_windows) for p in parts]
