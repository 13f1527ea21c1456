"""Otsu's threshold of a one-dimensional distribution (numpy only).

Otsu's cut maximises the between-class variance ``w0 * w1 * (mu0 - mu1)^2`` of the two
classes it makes; in one dimension this is the exact optimum of 2-means (Otsu, *IEEE Trans.
Syst. Man Cybern.* 1979). Used by the cleaning gates (:mod:`itme.core.clean.gating`, on a
smoothed histogram of events) and by cluster naming (:mod:`itme.core.annotate.naming`, on
cluster medians weighted by their events).
"""

from __future__ import annotations

import numpy as np

__all__ = ["otsu_binned", "otsu_threshold"]


def otsu_binned(
    centres: np.ndarray, weights: np.ndarray, *, cuts: np.ndarray | None = None
) -> float:
    """Otsu's threshold of a binned distribution.

    Parameters
    ----------
    centres
        Bin centres (or distinct values), increasing.
    weights
        Weight (count or density) of each bin.
    cuts
        The cut between bin ``i`` and ``i + 1`` (length ``centres.size - 1``). Default: the
        midpoints between consecutive centres.

    Returns
    -------
    The cut maximising the between-class variance; when several cuts tie (a run of empty
    bins between the classes), the middle of the first and last of them. NaN when there is
    nothing to split (fewer than two bins or no weight).
    """
    centres = np.asarray(centres, dtype=np.float64)
    counts = np.asarray(weights, dtype=np.float64)
    if centres.size < 2 or not counts.sum() > 0:
        return float("nan")
    if cuts is None:
        cuts = (centres[:-1] + centres[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * centres)[:-1]
    mu0 = s0 / np.maximum(w0, 1e-12)
    mu1 = (np.sum(counts * centres) - s0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    return float((cuts[best.min()] + cuts[best.max()]) / 2)


def otsu_threshold(
    values: np.ndarray, weights: np.ndarray | None = None, *, bins: int = 256
) -> float:
    """Otsu's threshold of values: the cut maximising the (weighted) between-class variance.

    Parameters
    ----------
    values
        1-D values (NaN ignored).
    weights
        Weight of each value (e.g. the events of each cluster); equal when ``None``.
    bins
        Histogram bins when there are more than ``bins`` values; fewer values are used
        exactly (every midpoint between sorted distinct values is a candidate).

    Returns
    -------
    The threshold (the middle of the best cuts when several tie; NaN when fewer than two
    distinct values).
    """
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    keep = np.isfinite(v) & (w > 0)
    v, w = v[keep], w[keep]
    if np.unique(v).size < 2:
        return float("nan")
    if v.size <= bins:
        centres, inverse = np.unique(v, return_inverse=True)
        return otsu_binned(centres, np.bincount(inverse, weights=w))
    counts, edges = np.histogram(v, bins=bins, weights=w)
    return otsu_binned((edges[:-1] + edges[1:]) / 2, counts, cuts=edges[1:-1])
