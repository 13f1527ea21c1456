"""Array steps of a cyCombine-style batch correction (Pedersen et al., Nat Commun 2022).

cyCombine clusters the pooled events on values standardised within each batch (so that the
clusters follow cell types, not batches), then aligns each batch's marker distribution to the
others within each cluster (ComBat) and caps the corrected values to the range the cluster
had before. The clustering and ComBat are run by the adapters (``itme.tl.flowsom``, scanpy);
this module holds the array arithmetic around them.
"""

from __future__ import annotations

import numpy as np

from itme.core.otsu import otsu_threshold

__all__ = ["align_landmarks", "cap_to_range", "landmarks", "scale_by_batch"]


def scale_by_batch(X: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Standardise every column within each batch (mean 0, standard deviation 1).

    Parameters
    ----------
    X
        Events × markers.
    batch
        Integer batch code of each event (``0 … n_batches - 1``).

    Returns
    -------
    numpy.ndarray
        float32 array of ``X``'s shape; a constant column of a batch becomes 0.
    """
    out = np.empty(X.shape, dtype=np.float32)
    for b in np.unique(batch):
        rows = batch == b
        block = np.asarray(X[rows], dtype=np.float64)
        sd = block.std(axis=0)
        sd[sd == 0] = 1.0
        out[rows] = (block - block.mean(axis=0)) / sd
    return out


def cap_to_range(corrected: np.ndarray, original: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Clip each group's corrected values to the range that group had before correction.

    cyCombine's last step: the alignment is linear, so it may push values below 0 or beyond
    anything measured; within every cluster each marker is kept inside the cluster's own
    observed ``[min, max]`` over all batches.

    Parameters
    ----------
    corrected
        Events × markers after correction (clipped in place).
    original
        Events × markers before correction, the same shape.
    groups
        Integer group (cluster) code of each event.

    Returns
    -------
    numpy.ndarray
        ``corrected`` clipped in place (and returned).
    """
    for g in np.unique(groups):
        rows = groups == g
        lo = original[rows].min(axis=0)
        hi = original[rows].max(axis=0)
        corrected[rows] = np.clip(corrected[rows], lo, hi)
    return corrected


def landmarks(x: np.ndarray, *, min_share: float = 0.005) -> tuple[float, float]:
    """The negative and positive peak of one marker: medians below and above its Otsu cut.

    Parameters
    ----------
    x
        Values of one marker in one batch (arcsinh scale).
    min_share
        Smallest share of events on a side for its median to count.

    Returns
    -------
    tuple of float
        ``(negative, positive)``; ``positive`` is NaN when fewer than ``min_share`` of the
        events are above the cut (or the marker does not split).
    """
    x = np.asarray(x, dtype=np.float64)
    cut = otsu_threshold(x)
    if not np.isfinite(cut):
        return float(np.median(x)), float("nan")
    above = x > cut
    share = float(above.mean())
    if share < min_share:
        return float(np.median(x)), float("nan")
    if share > 1 - min_share:
        return float("nan"), float(np.median(x))
    return float(np.median(x[~above])), float(np.median(x[above]))


def align_landmarks(
    X: np.ndarray, batch: np.ndarray, *, max_scale: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Map each batch's negative and positive peak of every marker onto their mean over batches.

    A composition-robust first alignment: the peaks of a marker move with the run's gain but
    hardly with how many cells sit in them, whereas a batch's mean or standard deviation
    (cyCombine's per-batch scaling) moves with its composition, so a batch holding mostly
    one cell type would be shifted as if it were a batch effect. Per batch and marker the
    map is linear through both peaks (slope clipped to ``[1 / max_scale, max_scale]``), or
    a shift when a batch shows one peak only.

    Parameters
    ----------
    X
        Events × markers (arcsinh scale).
    batch
        Integer batch code of each event.
    max_scale
        Largest slope (and smallest ``1 / max_scale``) of a batch's map.

    Returns
    -------
    aligned : numpy.ndarray
        float32 array of ``X``'s shape.
    peaks : numpy.ndarray
        ``(n_batches, n_markers, 2)`` negative and positive peak of each batch (NaN: none).
    """
    codes = np.unique(batch)
    peaks = np.full((codes.size, X.shape[1], 2), np.nan)
    for i, b in enumerate(codes):
        rows = batch == b
        for j in range(X.shape[1]):
            peaks[i, j] = landmarks(X[rows, j])
    target = np.nanmean(peaks, axis=0) if codes.size else peaks
    out = np.asarray(X, dtype=np.float32).copy()
    for i, b in enumerate(codes):
        rows = np.flatnonzero(batch == b)
        for j in range(X.shape[1]):
            (n0, p0), (n1, p1) = peaks[i, j], target[j]
            if np.isfinite([n0, p0, n1, p1]).all() and p0 > n0:
                slope = float(np.clip((p1 - n1) / (p0 - n0), 1 / max_scale, max_scale))
                out[rows, j] = n1 + slope * (out[rows, j] - n0)
            elif np.isfinite([n0, n1]).all():
                out[rows, j] += n1 - n0
            elif np.isfinite([p0, p1]).all():
                out[rows, j] += p1 - p0
    return out, peaks
