"""The passes over all events of the cyCombine-style correction, one part (sample) at a time.

``pp.correct_batch`` reads the events twice, one part of the partition at a time (the
samples: the natural partition of a cohort store, one task per sample on a dask cluster),
and never copies the matrix:

1. :func:`part_moments`: each event's nearest SOM code on its batch-aligned values
   (:func:`nearest_aligned`; the alignment folded into the codes, so aligned values are never
   materialised), and, per node × batch group, the count, the sums of the centred values and
   of their squares, and each node's range (the cap); :func:`combine_moments` adds the parts
   in part order;
2. :func:`apply_affine`: each group's linear map (from ComBat, fitted on a subsample of the
   group), clipped to the node's range, in place.

Every per-event step is computed per row (the same operations whatever the rows around it),
and every sum is accumulated within a part in row order and added over parts in part order,
so the results do not depend on how the events are split into blocks: the in-memory matrix
and a lazy store (:mod:`itme._chain`) give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GroupMoments",
    "aligned_weights",
    "apply_affine",
    "correct_block",
    "combine_moments",
    "nearest_aligned",
    "part_moments",
    "pick_fit_rows",
]


@dataclass
class GroupMoments:
    """The moments of every node × batch group, from :func:`combine_moments`.

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

    return {"nearest": _jit.nearest, "stats": _jit.stats, "apply": _jit.apply}


def aligned_weights(
    slope: np.ndarray, intercept: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The SOM codes with each batch's alignment folded in, for :func:`nearest_aligned`.

    Batch ``b``'s aligned values are ``slope[b] * x + intercept[b]``; the squared distance to
    code ``c`` is, up to a term constant per event, ``x · w + k`` with
    ``w = -2 slope[b] * (c - intercept[b])`` and ``k = |c - intercept[b]|^2``.

    Parameters
    ----------
    slope, intercept
        ``(n_batches, n_markers)`` alignment of each batch.
    codes
        ``(n_nodes, n_markers)`` SOM codes (aligned scale).

    Returns
    -------
    weights : numpy.ndarray
        float32 ``(n_batches, n_markers, n_nodes)``.
    offsets : numpy.ndarray
        float32 ``(n_batches, n_nodes)``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    shifted = codes[None, :, :] - np.asarray(intercept)[:, None, :]  # batch × node × marker
    weights = (-2.0 * np.asarray(slope)[:, None, :] * shifted).transpose(0, 2, 1)
    offsets = (shifted**2).sum(axis=2)
    return np.ascontiguousarray(weights, dtype=np.float32), offsets.astype(np.float32)


def nearest_aligned(
    x: np.ndarray, batch: np.ndarray, weights: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Nearest SOM code of every event's batch-aligned values (ties: the lower code).

    Parameters
    ----------
    x
        Events × markers.
    batch
        Integer batch code of each event.
    weights, offsets
        From :func:`aligned_weights`.

    Returns
    -------
    numpy.ndarray
        int32 node of every event.
    """
    out = np.empty(x.shape[0], dtype=np.int32)
    _kernels()["nearest"](
        np.ascontiguousarray(x, dtype=np.float32),
        np.asarray(batch, dtype=np.int64),
        weights,
        offsets,
        out,
    )
    return out


def part_moments(
    x: np.ndarray,
    batch: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    n_batches: int,
    center: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One part's nodes and the sums of every node × batch group, in row order.

    Parameters
    ----------
    x
        The part's events × markers.
    batch
        Integer batch code of each event.
    weights, offsets
        From :func:`aligned_weights` (``n_nodes`` codes).
    n_batches
        Number of batches.
    center
        Value subtracted from every marker before summing (no cancellation in the variance;
        the same for every part).

    Returns
    -------
    nodes : numpy.ndarray
        int32 node of every event.
    sums : dict
        ``counts`` (per group), ``sums`` and ``squares`` (group × marker, of ``x - center``),
        ``lo`` and ``hi`` (node × marker), for :func:`combine_moments`.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch = np.asarray(batch, dtype=np.int64)
    nodes = nearest_aligned(x, batch, weights, offsets)
    n_nodes, m = offsets.shape[1], x.shape[1]
    n_groups = n_nodes * int(n_batches)
    part = {
        "counts": np.zeros(n_groups, dtype=np.int64),
        "sums": np.zeros((n_groups, m)),
        "squares": np.zeros((n_groups, m)),
        "lo": np.full((n_nodes, m), np.inf),
        "hi": np.full((n_nodes, m), -np.inf),
    }
    _kernels()["stats"](
        x,
        nodes,
        batch,
        int(n_batches),
        np.asarray(center, dtype=np.float64),
        part["counts"],
        part["sums"],
        part["squares"],
        part["lo"],
        part["hi"],
    )
    return nodes, part


def combine_moments(
    parts: Sequence[dict[str, np.ndarray]], n_batches: int, center: np.ndarray
) -> GroupMoments:
    """Add the sums of :func:`part_moments` in the order given; the groups' moments.

    Parameters
    ----------
    parts
        The parts' sums, in part order (at least one).
    n_batches
        Number of batches.
    center
        The ``center`` the parts were summed around.

    Returns
    -------
    GroupMoments
    """
    total = {k: v.copy() for k, v in parts[0].items()}
    for part in parts[1:]:
        for key in ("counts", "sums", "squares"):
            total[key] += part[key]
        np.minimum(total["lo"], part["lo"], out=total["lo"])
        np.maximum(total["hi"], part["hi"], out=total["hi"])
    counts = total["counts"]
    n_nodes, m = total["lo"].shape
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total["sums"] / counts[:, None]
        var = np.maximum(total["squares"] / counts[:, None] - mean**2, 0.0)
    mean += np.asarray(center, dtype=np.float64)
    return GroupMoments(
        counts=counts.reshape(n_nodes, n_batches),
        mean=mean.reshape(n_nodes, n_batches, m),
        var=var.reshape(n_nodes, n_batches, m),
        lo=total["lo"],
        hi=total["hi"],
    )


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
) -> np.ndarray:
    """``clip(slope[g] * x + intercept[g], lo[node], hi[node])`` of every event, in place.

    Parameters
    ----------
    X
        Events × channels, a C-ordered float32 array (modified in place on ``cols``).
    cols
        Columns of the markers (all when ``None``).
    nodes, batch
        Node and batch code of every event; the group is ``node * n_batches + batch``
        (an event with a negative node or batch is left unchanged).
    slope, intercept
        ``(n_nodes * n_batches, n_markers)`` map of each group (identity: 1 and 0).
    lo, hi
        ``(n_nodes, n_markers)`` range each node's values are clipped to.

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
        np.asarray(nodes, dtype=np.int32),
        np.asarray(batch, dtype=np.int64),
        n_batches,
        np.asarray(slope, dtype=np.float64),
        np.asarray(intercept, dtype=np.float64),
        np.asarray(lo, dtype=np.float64),
        np.asarray(hi, dtype=np.float64),
        change,
    )
    return change


def correct_block(
    X: np.ndarray,
    cols: np.ndarray,
    batch: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    slope: np.ndarray,
    intercept: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """The per-event step of the batch correction on a block of events, in place.

    Each event's node (:func:`nearest_aligned` on its marker values) and its group's line
    (:func:`apply_affine`): the values depend on the event alone, so the in-memory matrix
    and the blocks of a lazy store give the same bytes.

    Parameters
    ----------
    X
        Events × channels, a C-ordered float32 array (modified in place on ``cols``).
    cols
        Columns of the markers.
    batch
        Integer batch code of each event (negative: an unknown batch, left unchanged).
    weights, offsets
        From :func:`aligned_weights`.
    slope, intercept, lo, hi
        The groups' lines and the nodes' ranges (:func:`apply_affine`).

    Returns
    -------
    numpy.ndarray
        ``(n_batches, n_markers)`` sum over each batch's events of the change.
    """
    cols = np.asarray(cols, dtype=np.intp)
    batch = np.asarray(batch, dtype=np.int64)
    known = batch >= 0
    nodes = np.full(X.shape[0], -1, dtype=np.int32)
    if known.all():
        nodes = nearest_aligned(X[:, cols], batch, weights, offsets)
    elif known.any():
        nodes[known] = nearest_aligned(X[np.ix_(known, cols)], batch[known], weights, offsets)
    return apply_affine(X, cols, nodes, batch, slope, intercept, lo, hi)
