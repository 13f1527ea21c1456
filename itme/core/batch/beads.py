"""Bead normalisation of mass cytometry (Finck et al., Cytometry A 2013;83A:483), on arrays.

EQ four-element calibration beads are acquired with the cells. Any loss of instrument
sensitivity over the acquisition lowers beads and cells alike, so the beads' intensities,
smoothed over acquisition time by a running median (:func:`running_median`), measure it.
For each bead event the smoothed intensities ``s`` (one per bead channel) are compared with
a baseline ``b`` (the mean bead intensities the data are brought to). Finck's factor is the
least-squares slope through the origin, ``sum(s * b) / sum(s * s)``, which weights each
bead channel by its squared intensity, so the brightest channel sets the factor and its
noise; the default here is the geometric mean of the per-channel ratios ``b / s``, every
bead channel weighted equally (the same factor when the drift is common to the channels,
with less noise: scripts/bench_beads.py compares the two). Factors are interpolated linearly in time between
bead events (held constant before the first and after the last) and multiply every
ion-count channel of every event. This module holds the numbers; the bead gate is
:data:`itme.core.clean.steps.STEPS`' ``bead`` step, shared with ``pp.clean``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["bead_factors", "running_median", "scale_block", "trim_beads"]


#: the windows of :func:`running_median` shrink at the ends to no less than a third of the
#: full window
_END_FRACTION = 3


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Running median along the rows, each column separately, windows always centred.

    Near the ends the window shrinks so that it stays centred on its row (row ``i < w/2``
    takes rows ``0 .. 2i``), down to a third of the window (a median of fewer beads is
    too noisy: the first and last ``w/6`` rows share one window): a trend is followed to the last bead, where R's ``runmed``
    with ``endrule="constant"`` would hold the last full window's value for half a window
    (a sixth of a run of 1,500 beads with CATALYST's ``k = 500``) and leave that part of
    the drift in place.

    Parameters
    ----------
    values
        ``(n, k)`` array in time order.
    window
        Window width (made odd; reduced to the largest odd number ``<= n``).

    Returns
    -------
    ``(n, k)`` float64 running medians.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        return values.copy()
    w = int(window)
    w = w if w % 2 else w + 1
    if w > n:
        w = n if n % 2 else n - 1
    half = w // 2
    out = np.empty_like(values)
    out[half : n - half] = np.median(sliding_window_view(values, w, axis=0), axis=-1)
    shortest = max(1, min(w, w // _END_FRACTION) | 1)
    for i in range(half):
        size = max(2 * i + 1, shortest)
        out[i] = np.median(values[:size], axis=0)
        out[n - 1 - i] = np.median(values[n - size :], axis=0)
    return out


def trim_beads(values: np.ndarray, trim: float) -> np.ndarray:
    """Beads within ``median ± trim`` MADs on every bead channel (arcsinh scale).

    Removes bead doublets and dim beads before the factors are computed (CATALYST's ``trim``).

    Parameters
    ----------
    values
        ``(n_beads, k)`` bead intensities on the arcsinh scale.
    trim
        MADs (1.4826-scaled) either side of the median.

    Returns
    -------
    Boolean mask of the beads kept.
    """
    med = np.median(values, axis=0)
    mad = 1.4826 * np.median(np.abs(values - med), axis=0)
    mad = np.where(mad > 0, mad, np.inf)
    return (np.abs(values - med) <= trim * mad).all(axis=1)


def bead_factors(
    bead_values: np.ndarray,
    bead_times: np.ndarray,
    baseline: np.ndarray,
    times: np.ndarray,
    *,
    window: int = 501,
    combine: str = "geometric",
) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation factor of every event from the beads of its file.

    Parameters
    ----------
    bead_values
        ``(n_beads, k)`` raw intensities of the beads in the ``k`` bead channels.
    bead_times
        Acquisition time of each bead.
    baseline
        ``(k,)`` intensities the beads are brought to.
    times
        Acquisition time of every event to normalise.
    window
        Beads per running-median window.
    combine
        ``"geometric"`` (geometric mean of ``b / s`` over the bead channels) or
        ``"least_squares"`` (Finck's slope ``sum(s * b) / sum(s * s)``).

    Returns
    -------
    factors
        ``(n_events,)`` multiplicative factors.
    bead_slopes
        ``(n_beads,)`` the factor at each bead (in time order).
    """
    order = np.argsort(bead_times, kind="stable")
    smooth = running_median(np.asarray(bead_values, dtype=np.float64)[order], window)
    b = np.asarray(baseline, dtype=np.float64)
    if combine == "least_squares":
        denom = np.einsum("ij,ij->i", smooth, smooth)
        slopes = np.divide(smooth @ b, denom, out=np.ones(denom.shape), where=denom > 0)
    else:
        slopes = np.exp(np.mean(np.log(b) - np.log(np.maximum(smooth, 1e-9)), axis=1))
    t = np.asarray(bead_times, dtype=np.float64)[order]
    factors = np.interp(np.asarray(times, dtype=np.float64), t, slopes)
    return factors, slopes


def scale_block(
    block: np.ndarray,
    times: np.ndarray,
    which: np.ndarray,
    bead_times: list[np.ndarray],
    bead_slopes: list[np.ndarray],
    columns: np.ndarray,
) -> np.ndarray:
    """Multiply the ``columns`` of each event by its file's bead factor at its time.

    The factor is :func:`bead_factors`' interpolation (``np.interp``) of the factors at
    the beads, so a block gives what the whole file gives.

    Parameters
    ----------
    block
        Raw counts, events × channels.
    times
        Acquisition time of each event.
    which
        Each event's file: an index into ``bead_times``; -1 leaves the event unchanged.
    bead_times, bead_slopes
        Per file, the times of its beads in time order and the factor at each
        (:func:`bead_factors`' ``bead_slopes``).
    columns
        The ion-count columns scaled.

    Returns
    -------
    A new float32 array, the shape of ``block``.
    """
    out = np.array(block, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    for code in np.unique(which[which >= 0]):
        rows = np.flatnonzero(which == code)
        factors = np.interp(times[rows], bead_times[code], bead_slopes[code])
        out[np.ix_(rows, columns)] *= factors.astype(np.float32)[:, None]
    return out
