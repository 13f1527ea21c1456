"""The numba kernels of :mod:`itme.core.batch.passes` (one loop over the events each).

A module of their own, imported on first use (numba is slow to import), with numba's
on-disk cache: compiled once per machine, not in every process (~3 CPU-seconds).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def nearest(x, batch, weights, offsets, out):
    """Nearest node of each event's aligned values (float32, a fixed order of sums per row).

    The same bits for a row whatever block it is in (a BLAS product's rounding depends on the
    block's shape).
    """
    n_nodes = offsets.shape[1]
    acc = np.empty(n_nodes, dtype=np.float32)
    for i in range(x.shape[0]):
        b = batch[i]
        for k in range(n_nodes):
            acc[k] = offsets[b, k]
        for j in range(x.shape[1]):
            v = x[i, j]
            for k in range(n_nodes):
                acc[k] += v * weights[b, j, k]
        best = 0
        for k in range(1, n_nodes):
            if acc[k] < acc[best]:
                best = k
        out[i] = best


@numba.njit(cache=True, nogil=True)
def stats(x, nodes, batch, n_batches, center, counts, sums, squares, lo, hi):
    """Add each event to its node × batch count, sums, squares (about ``center``) and range."""
    for i in range(x.shape[0]):
        node = nodes[i]
        g = node * n_batches + batch[i]
        counts[g] += 1
        for j in range(x.shape[1]):
            v = x[i, j]
            d = v - center[j]
            sums[g, j] += d
            squares[g, j] += d * d
            if v < lo[node, j]:
                lo[node, j] = v
            if v > hi[node, j]:
                hi[node, j] = v


@numba.njit(cache=True, nogil=True)
def apply(X, cols, nodes, batch, n_batches, slope, intercept, lo, hi, change):
    """Map each event by its group's affine map, clipped to its node's range, in place.

    Events without a node or of an unknown batch (code < 0) are left unchanged.
    """
    for i in range(X.shape[0]):
        node = nodes[i]
        b = batch[i]
        if node < 0 or b < 0:
            continue
        g = node * n_batches + b
        for j in range(cols.size):
            v = X[i, cols[j]]
            y = slope[g, j] * v + intercept[g, j]
            y = min(max(y, lo[node, j]), hi[node, j])
            y32 = np.float32(y)
            change[b, j] += np.float64(y32) - v
            X[i, cols[j]] = y32
