"""The two passes over all events of the cyCombine-style correction, chunk by chunk.

``pp.correct_batch`` reads the whole matrix twice, in row order, ``chunk`` rows at a time,
and never copies it:

1. :func:`map_and_moments`: each event's nearest SOM code on its batch-aligned values
   (the alignment folded into the codes, so aligned values are never materialised), and,
   per node × batch group, the count, mean and variance of every marker and, per node,
   its range (the cap);
2. :func:`apply_affine`: each group's linear map (from ComBat, fitted on a subsample of
   the group), clipped to the node's range, written back in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroupMoments", "apply_affine", "map_and_moments", "pick_fit_rows"]


@dataclass
class GroupMoments:
    """What :func:`map_and_moments` returns besides the nodes.

    Attributes
    ----------
    counts
        ``(n_nodes, n_batches)`` events per node × batch.
    mean, var
        ``(n_nodes, n_batches, n_markers)`` mean and variance (``ddof=0``) of each group
        (NaN for an empty group).
    lo, hi
        ``(n_nodes, n_markers)`` smallest and largest value of each node over all batches.
    """

    counts: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _kernels() -> dict:
    """The numba kernels of both passes (:mod:`itme.core.batch._jit`, imported on first use)."""
    from itme.core.batch import _jit

    return {"stats": _jit.stats, "apply": _jit.apply}


def _rows(X: np.ndarray, start: int, stop: int, cols: np.ndarray | None) -> np.ndarray:
    block = X[start:stop]
    return np.asarray(block if cols is None else block[:, cols], dtype=np.float32)


def map_and_moments(
    X: np.ndarray,
    cols: np.ndarray | None,
    batch: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    codes: np.ndarray,
    *,
    chunk: int = 65_536,
) -> tuple[np.ndarray, GroupMoments]:
    """Nearest code of every event's aligned values, and the moments of each node × batch.

    Batch ``b``'s aligned values are ``slope[b] * x + intercept[b]``; the squared distance to
    code ``c`` is, up to a term constant per event, ``-2 x · w + k`` with
    ``w = slope[b] * (c - intercept[b])`` and ``k = |c - intercept[b]|^2``, one BLAS product
    per chunk and batch (float32).

    Parameters
    ----------
    X
        Events × channels (read ``chunk`` rows at a time).
    cols
        Columns of the markers (all when ``None``).
    batch
        Integer batch code of each event (``0 … n_batches - 1``).
    slope, intercept
        ``(n_batches, n_markers)`` alignment of each batch.
    codes
        ``(n_nodes, n_markers)`` SOM codes (aligned scale).
    chunk
        Rows per chunk.

    Returns
    -------
    nodes : numpy.ndarray
        int32 nearest code of every event.
    moments : GroupMoments
        Counts, means, variances per node × batch and range per node, of the raw values.
    """
    n = X.shape[0]
    n_batches, m = slope.shape
    n_nodes = codes.shape[0]
    n_groups = n_nodes * n_batches
    codes = np.asarray(codes, dtype=np.float64)
    shifted = codes[None, :, :] - intercept[:, None, :]  # batch × node × marker
    weights = (-2.0 * slope[:, None, :] * shifted).transpose(0, 2, 1).astype(np.float32)
    offsets = (shifted**2).sum(axis=2).astype(np.float32)  # batch × node
    nodes = np.empty(n, dtype=np.int32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x = _rows(X, start, stop, cols)
        b = np.asarray(batch[start:stop])
        present = np.unique(b)
        for k in present:
            sel = slice(None) if present.size == 1 else b == k
            d2 = x[sel] @ weights[k]
            d2 += offsets[k]
            nodes[start:stop][sel] = np.argmin(d2, axis=1)
    cols_all = np.arange(X.shape[1]) if cols is None else np.asarray(cols)
    batch = np.asarray(batch, dtype=np.int64)
    kernel = _kernels()["stats"]
    counts = np.zeros(n_groups, dtype=np.int64)
    sums = np.zeros((n_groups, m))
    squares = np.zeros((n_groups, m))
    lo = np.full((n_nodes, m), np.inf)
    hi = np.full((n_nodes, m), -np.inf)
    center = np.zeros(m)
    if n:  # sums of x - center: no cancellation in the variance
        center = np.asarray(X[: min(n, chunk)][:, cols_all], dtype=np.float64).mean(axis=0)
    kernel(X, cols_all, nodes, batch, n_batches, center, counts, sums, squares, lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
        var = np.maximum(squares / counts[:, None] - mean**2, 0.0)
    mean += center
    moments = GroupMoments(
        counts=counts.reshape(n_nodes, n_batches),
        mean=mean.reshape(n_nodes, n_batches, m),
        var=var.reshape(n_nodes, n_batches, m),
        lo=lo,
        hi=hi,
    )
    return nodes, moments


def pick_fit_rows(
    group: np.ndarray, sizes: np.ndarray, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random subset of ``sizes[g]`` events of every group ``g`` (sorted rows).

    Every event draws a uniform key; a group keeps its ``sizes[g]`` smallest keys. Only
    candidates below a per-group cut (at least twice the needed share) are sorted.

    Parameters
    ----------
    group
        Group of every event (``0 … n_groups - 1``).
    sizes
        Events to keep per group (``<=`` its count).
    gen
        Random generator.

    Returns
    -------
    rows : numpy.ndarray
        Picked events, in row order.
    groups : numpy.ndarray
        Their group.
    """
    n_groups = sizes.size
    counts = np.bincount(group, minlength=n_groups)
    share = np.divide(sizes, counts, out=np.zeros(n_groups), where=counts > 0)
    cut = np.minimum(1.0, 2.0 * share + 50.0 / np.maximum(counts, 1))
    cut[sizes >= counts] = 1.0
    key = gen.random(group.size, dtype=np.float32)
    cand = np.flatnonzero(key < cut[group])
    # groups whose candidates fell short (rare): take all their events as candidates
    short = np.flatnonzero(np.bincount(group[cand], minlength=n_groups) < sizes)
    if short.size:
        cand = np.union1d(cand, np.flatnonzero(np.isin(group, short)))
    g = group[cand]
    order = np.lexsort((key[cand], g))
    start = np.concatenate([[0], np.cumsum(np.bincount(g, minlength=n_groups))])[:-1]
    rank = np.arange(order.size) - start[g[order]]
    keep = order[rank < sizes[g[order]]]
    rows = cand[np.sort(keep)]
    return rows, group[rows]


def apply_affine(
    X: np.ndarray,
    cols: np.ndarray | None,
    nodes: np.ndarray,
    batch: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    chunk: int = 65_536,
) -> np.ndarray:
    """``clip(slope[g] * x + intercept[g], lo[node], hi[node])`` of every event, in place.

    Parameters
    ----------
    X
        Events × channels, a C-ordered float32 array (modified in place on ``cols``).
    cols
        Columns of the markers (all when ``None``).
    nodes, batch
        Node and batch code of every event; the group is ``node * n_batches + batch``.
    slope, intercept
        ``(n_nodes * n_batches, n_markers)`` map of each group (identity: 1 and 0).
    lo, hi
        ``(n_nodes, n_markers)`` range each node's values are clipped to.
    chunk
        Rows per chunk.

    Returns
    -------
    numpy.ndarray
        ``(n_batches, n_markers)`` sum over each batch's events of the change.
    """
    n_batches = slope.shape[0] // lo.shape[0]
    cols_all = np.arange(X.shape[1]) if cols is None else np.asarray(cols)
    change = np.zeros((n_batches, slope.shape[1]))
    _kernels()["apply"](
        X,
        cols_all,
        np.asarray(nodes),
        np.asarray(batch, dtype=np.int64),
        n_batches,
        np.asarray(slope, dtype=np.float64),
        np.asarray(intercept, dtype=np.float64),
        np.asarray(lo, dtype=np.float64),
        np.asarray(hi, dtype=np.float64),
        change,
    )
    return change
