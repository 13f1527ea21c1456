"""The numba kernels of :mod:`itme.core.batch.passes` (one loop over the events each).

A module of their own, imported on first use (numba is slow to import), with numba's
on-disk cache: compiled once per machine, not in every process (~3 CPU-seconds).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def stats(X, cols, nodes, batch, n_batches, center, counts, sums, squares, lo, hi):
    """Add each event to its node × batch count, sums, squares (about ``center``) and range."""
    for i in range(X.shape[0]):
        node = nodes[i]
        g = node * n_batches + batch[i]
        counts[g] += 1
        for j in range(cols.size):
            v = X[i, cols[j]]
            d = v - center[j]
            sums[g, j] += d
            squares[g, j] += d * d
            if v < lo[node, j]:
                lo[node, j] = v
            if v > hi[node, j]:
                hi[node, j] = v


@numba.njit(cache=True, nogil=True)
def apply(X, cols, nodes, batch, n_batches, slope, intercept, lo, hi, change):
    """Map each event by its group's affine map, clipped to its node's range, in place."""
    for i in range(X.shape[0]):
        node = nodes[i]
        b = batch[i]
        g = node * n_batches + b
        for j in range(cols.size):
            v = X[i, cols[j]]
            y = slope[g, j] * v + intercept[g, j]
            y = min(max(y, lo[node, j]), hi[node, j])
            y32 = np.float32(y)
            change[b, j] += np.float64(y32) - v
            X[i, cols[j]] = y32
