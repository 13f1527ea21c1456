"""Bead normalisation of mass cytometry (Finck et al., Cytometry A 2013;83A:483), on arrays.

EQ four-element calibration beads are acquired with the cells. Any loss of instrument
sensitivity over the acquisition lowers beads and cells alike, so the beads' intensities,
smoothed over acquisition time, measure it. For each bead event the smoothed intensities
``s`` (one per bead channel) are compared with a baseline ``b`` (the mean bead intensities
the data are brought to), and the normalisation factor is the least-squares slope through
the origin, ``sum(s * b) / sum(s * s)``. Factors are interpolated linearly in time between
bead events (held constant before the first and after the last) and multiply every
ion-count channel of every event. This module holds the numbers; the bead gate is
:data:`itme.core.clean.steps.STEPS`' ``bead`` step, shared with ``pp.clean``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["bead_factors", "running_median", "trim_beads"]


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Running median along the rows, each column separately (R's ``runmed``, constant ends).

    Parameters
    ----------
    values
        ``(n, k)`` array in time order.
    window
        Window width (made odd; reduced to the largest odd number ``<= n``).

    Returns
    -------
    ``(n, k)`` float64: the median of the window centred on each row; rows within half a
    window of an end take the first (last) full window's median.
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
    centre = np.median(sliding_window_view(values, w, axis=0), axis=-1)  # (n - w + 1, k)
    return np.concatenate(
        [np.repeat(centre[:1], half, axis=0), centre, np.repeat(centre[-1:], half, axis=0)]
    )


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
    denom = np.einsum("ij,ij->i", smooth, smooth)
    slopes = np.divide(smooth @ b, denom, out=np.ones(denom.shape), where=denom > 0)
    t = np.asarray(bead_times, dtype=np.float64)[order]
    factors = np.interp(np.asarray(times, dtype=np.float64), t, slopes)
    return factors, slopes
