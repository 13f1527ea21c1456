"""Signal drift within a file over acquisition time, from time windows (PeacoQC/flowAI idea).

A file's events are split into windows of equal event counts in acquisition order. In each
window the median of every marker's positive events (above the file's Otsu cut) is taken on
the arcsinh scale, where a loss of sensitivity by a factor ``f`` moves bright events by
``log f``. The window's shift is the median over markers of its difference from the file's
median level; a quadratic in time smooths the shifts into the drift curve ``d(t)``. Dividing
the raw signal by ``exp(d(t))`` (``arcsinh(sinh(x) · exp(-d(t)))``) removes it and keeps the
file's average level (differences between files are the batch correction's business).
"""

from __future__ import annotations

import numpy as np

from itme.core.otsu import otsu_threshold

__all__ = ["apply_drift", "drift_block", "drift_curve"]


def drift_curve(
    X: np.ndarray,
    time: np.ndarray,
    *,
    n_windows: int = 20,
    min_positive: float = 0.05,
    min_events: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Estimate a file's drift: window shifts and the smooth curve through them.

    Parameters
    ----------
    X
        Events × markers of one file, arcsinh scale.
    time
        Acquisition time of each event.
    n_windows
        Windows of equal event counts.
    min_positive
        Markers with a smaller share of positive events are not used.
    min_events
        Fewest positive events of a marker in a window for the window to count for it.

    Returns
    -------
    centres : numpy.ndarray
        Median time of each window.
    shifts : numpy.ndarray
        Each window's shift (arcsinh units; NaN when no marker qualified).
    curve : numpy.ndarray
        The fitted drift ``d`` at the window centres (zeros when nothing qualified).
    n_markers : int
        Markers used.
    """
    order = np.argsort(time, kind="stable")
    windows = np.array_split(order, int(n_windows))
    centres = np.array([np.median(time[w]) if w.size else np.nan for w in windows])
    per_marker = []
    for j in range(X.shape[1]):
        x = np.asarray(X[:, j], dtype=np.float64)
        cut = otsu_threshold(x)
        if not np.isfinite(cut):
            continue
        pos = x > cut
        if pos.mean() < min_positive:
            continue
        level = np.full(len(windows), np.nan)
        for i, w in enumerate(windows):
            vals = x[w][pos[w]]
            if vals.size >= min_events:
                level[i] = np.median(vals)
        if np.isfinite(level).sum() >= 3:
            per_marker.append(level - np.nanmedian(level))
    if not per_marker:
        return centres, np.full(len(windows), np.nan), np.zeros(len(windows)), 0
    stacked = np.vstack(per_marker)
    ok = np.isfinite(stacked).any(axis=0)
    shifts = np.full(len(windows), np.nan)
    shifts[ok] = np.nanmedian(stacked[:, ok], axis=0)
    good = np.isfinite(shifts) & np.isfinite(centres)
    if good.sum() >= 3:
        coef = np.polyfit(centres[good], shifts[good], deg=min(2, int(good.sum()) - 1))
        curve = np.polyval(coef, centres)
        curve -= np.median(curve)
    else:
        curve = np.zeros(len(windows))
    return centres, shifts, curve, len(per_marker)


def apply_drift(
    X: np.ndarray, time: np.ndarray, centres: np.ndarray, curve: np.ndarray
) -> np.ndarray:
    """Remove a drift curve from arcsinh values: ``arcsinh(sinh(x) · exp(-d(t)))``.

    Parameters
    ----------
    X
        Events × markers of one file, arcsinh scale.
    time
        Acquisition time of each event.
    centres
        Window centres from :func:`drift_curve`.
    curve
        Drift at the centres from :func:`drift_curve` (linearly interpolated between them).

    Returns
    -------
    numpy.ndarray
        float32 corrected values.
    """
    good = np.isfinite(centres)
    d = np.interp(time, centres[good], curve[good])
    out = np.arcsinh(np.sinh(np.asarray(X, dtype=np.float64)) * np.exp(-d)[:, None])
    return out.astype(np.float32)


def drift_block(
    X: np.ndarray,
    time: np.ndarray,
    which: np.ndarray,
    centres: list[np.ndarray],
    curves: list[np.ndarray],
    cols: np.ndarray,
) -> np.ndarray:
    """Remove each event's file drift (:func:`apply_drift`) from ``X`` in place, on ``cols``.

    The per-event step of drift correction: every value is computed from the event's own
    value and time, so a block of any events gives the bytes the whole matrix gives.

    Parameters
    ----------
    X
        Events × channels, float32, arcsinh scale (modified in place on ``cols``).
    time
        Acquisition time of each event.
    which
        Index into ``centres``/``curves`` of each event's file (negative: not corrected).
    centres, curves
        Window centres and drift curve of each corrected file (:func:`drift_curve`).
    cols
        Columns of the corrected markers.

    Returns
    -------
    numpy.ndarray
        ``X``.
    """
    cols = np.asarray(cols, dtype=np.intp)
    which = np.asarray(which)
    for k in np.unique(which[which >= 0]):
        rows = np.flatnonzero(which == k)
        part = X[np.ix_(rows, cols)]
        X[np.ix_(rows, cols)] = apply_drift(part, time[rows], centres[k], curves[k])
    return X
