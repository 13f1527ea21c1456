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

__all__ = [
    "affine_fit",
    "align_landmarks",
    "block_moments",
    "cap_to_range",
    "fit_sizes",
    "landmark_maps",
    "landmarks",
    "match_moments",
    "scale_by_batch",
]


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


def landmark_maps(
    X: np.ndarray, batch: np.ndarray, n_batches: int, *, max_scale: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch and marker, the linear map of :func:`align_landmarks` (slope and intercept).

    Parameters
    ----------
    X
        Events × markers (arcsinh scale); may be a subsample of each batch's events.
    batch
        Integer batch code of each event (``0 … n_batches - 1``).
    n_batches
        Number of batches (a batch without events gets the identity).
    max_scale
        Largest slope (and smallest ``1 / max_scale``) of a batch's map.

    Returns
    -------
    slope, intercept : numpy.ndarray
        ``(n_batches, n_markers)``: batch ``b``'s aligned value is ``slope[b] * x + intercept[b]``.
    peaks : numpy.ndarray
        ``(n_batches, n_markers, 2)`` negative and positive peak of each batch (NaN: none).
    """
    n_markers = X.shape[1]
    peaks = np.full((n_batches, n_markers, 2), np.nan)
    present = np.zeros(n_batches, dtype=bool)
    for b in range(n_batches):
        rows = batch == b
        if not rows.any():
            continue
        present[b] = True
        for j in range(n_markers):
            peaks[b, j] = landmarks(X[rows, j])
    slope = np.ones((n_batches, n_markers))
    intercept = np.zeros((n_batches, n_markers))
    if not present.any():
        return slope, intercept, peaks
    target = np.nanmean(peaks[present], axis=0)
    for b in np.flatnonzero(present):
        for j in range(n_markers):
            (n0, p0), (n1, p1) = peaks[b, j], target[j]
            if np.isfinite([n0, p0, n1, p1]).all() and p0 > n0:
                s = float(np.clip((p1 - n1) / (p0 - n0), 1 / max_scale, max_scale))
                slope[b, j], intercept[b, j] = s, n1 - s * n0
            elif np.isfinite([n0, n1]).all():
                intercept[b, j] = n1 - n0
            elif np.isfinite([p0, p1]).all():
                intercept[b, j] = p1 - p0
    return slope, intercept, peaks


def align_landmarks(
    X: np.ndarray, batch: np.ndarray, *, max_scale: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Map each batch's negative and positive peak of every marker onto their mean over batches.

    A composition-robust first alignment: the peaks of a marker move with the run's gain but
    hardly with how many cells sit in them, whereas a batch's mean or standard deviation
    (cyCombine's per-batch scaling) moves with its composition, so a batch holding mostly
    one cell type would be shifted as if it were a batch effect. Per batch and marker the
    map is linear through both peaks (slope clipped to ``[1 / max_scale, max_scale]``), or
    a shift when a batch shows one peak only (:func:`landmark_maps`).

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
        ``(n_batches, n_markers, 2)`` negative and positive peak of each batch (NaN: none),
        for the batch codes present, in order.
    """
    batch = np.asarray(batch)
    codes, inverse = np.unique(batch, return_inverse=True)
    slope, intercept, peaks = landmark_maps(X, inverse, codes.size, max_scale=max_scale)
    out = np.asarray(X, dtype=np.float32).copy()
    for i in range(codes.size):
        rows = np.flatnonzero(inverse == i)
        out[rows] = (slope[i] * out[rows] + intercept[i]).astype(np.float32)
    return out, peaks


def block_moments(
    X: np.ndarray, rows: np.ndarray, cols: np.ndarray | None, *, chunk: int = 262_144
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance (``ddof=0``), minimum and maximum of every column over some rows.

    Read ``chunk`` rows at a time (float64 sums, Chan's pairwise update), so no copy of the
    rows is made.

    Parameters
    ----------
    X
        Events × channels.
    rows
        Row indices (at least one).
    cols
        Columns (all when ``None``).
    chunk
        Rows read at a time.

    Returns
    -------
    mean, var, lo, hi : numpy.ndarray
        One value per column (float64).
    """
    n = 0
    mean = var_sum = lo = hi = None
    for start in range(0, rows.size, chunk):
        idx = rows[start : start + chunk]
        block = X[idx] if cols is None else X[np.ix_(idx, cols)]
        block = np.asarray(block, dtype=np.float64)
        m = block.shape[0]
        bmean = block.mean(axis=0)
        bss = ((block - bmean) ** 2).sum(axis=0)
        if mean is None:
            n, mean, var_sum = m, bmean, bss
            lo, hi = block.min(axis=0), block.max(axis=0)
            continue
        delta = bmean - mean
        total = n + m
        mean = mean + delta * (m / total)
        var_sum = var_sum + bss + delta**2 * (n * m / total)
        n = total
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
    return mean, var_sum / n, lo, hi


def fit_sizes(counts: np.ndarray, fit_cells: int | None, floor: int) -> np.ndarray:
    """Events of each batch to fit on: a share of the group, proportional to the batches.

    Every batch keeps ``fit_cells / counts.sum()`` of its events (rounded up), but at least
    ``floor`` (or all it has); ``fit_cells=None`` keeps all events.

    Parameters
    ----------
    counts
        Events of each batch in the group.
    fit_cells
        Events of the group to fit on (``None``: all).
    floor
        Fewest events a batch keeps (when it has them).

    Returns
    -------
    numpy.ndarray
        int64 events per batch, ``<= counts``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if fit_cells is None or total <= fit_cells:
        return counts.copy()
    share = np.ceil(counts * (int(fit_cells) / total)).astype(np.int64)
    return np.minimum(counts, np.maximum(share, int(floor)))


def match_moments(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Shift and scale every column of ``x`` to the given mean and standard deviation.

    A subsample so matched has exactly the first two moments of the events it was drawn
    from, which is all ComBat estimates from them (its per-batch location and scale).

    Parameters
    ----------
    x
        Subsample, events × markers (at least two events).
    mean, sd
        Target mean and standard deviation (``ddof=0``) of each column.

    Returns
    -------
    numpy.ndarray
        float64 array of ``x``'s shape; a constant column gets the target mean.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x.mean(axis=0)
    s = x.std(axis=0)
    scale = np.divide(sd, s, out=np.zeros_like(s), where=s > 0)
    return (x - m) * scale + mean


def affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares line ``y ≈ a * x + c`` of every column, and the largest residual.

    Parameters
    ----------
    x, y
        Events × markers, the same shape (a column of ``x`` must vary).

    Returns
    -------
    a, c : numpy.ndarray
        Slope and intercept per column (float64).
    residual : float
        Largest absolute residual over all values (0 for an exactly affine map).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    dx = x - mx
    a = (dx * (y - my)).sum(axis=0) / (dx**2).sum(axis=0)
    c = my - a * mx
    residual = float(np.abs(y - (a * x + c)).max()) if x.size else 0.0
    return a, c, residual
