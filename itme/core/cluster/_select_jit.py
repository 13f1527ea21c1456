"""The numba kernels of :mod:`itme.core.cluster.select` (one loop over a block's events).

A module of its own, imported on first use (numba is slow to import), with numba's on-disk
cache: compiled once per machine, not in every worker process.

A value's order-preserving key is its raw bits (uint32 for float32, uint64 for float64) with
the sign bit set (positive) or all bits flipped (negative), -0.0 counted as +0.0; NaN has no
key. A value is counted for row ``cell[group, column, t]`` (``-1``: not counted) when its
key's bits from ``high`` up equal ``prefix[row]`` (always on the ``first`` pass).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _key(b, sign, full, inf):
    """The key of raw bits ``b`` and whether it has one (not NaN)."""
    if (b & (full ^ sign)) > inf:  # NaN
        return False, b
    if b == sign:  # -0.0 as +0.0
        b = np.uint64(0)
    return True, ((b ^ full) if (b & sign) else (b | sign))


@numba.njit(cache=True, nogil=True)
def histogram(bits, columns, labels, cell, prefix, first, shift, width, sign, full, inf, out):
    """Add each value's digit ``(key >> shift) & (2**width - 1)`` to its row of ``out``."""
    one = np.uint64(1)
    mask = (one << width) - one
    high = shift + width
    n_groups = cell.shape[0]
    n_targets = cell.shape[2]
    for i in range(bits.shape[0]):
        g = labels[i]
        if g < 0 or g >= n_groups:
            continue
        for j in range(columns.shape[0]):
            ok, key = _key(np.uint64(bits[i, columns[j]]), sign, full, inf)
            if not ok:
                continue
            digit = (key >> shift) & mask
            for t in range(n_targets):
                row = cell[g, j, t]
                if row < 0:
                    continue
                if first or (key >> high) == prefix[row]:
                    out[row, digit] += 1


@numba.njit(cache=True, nogil=True)
def candidates(bits, columns, labels, cell, prefix, high, sign, full, inf, counts, out):
    """The keys of each row (whose bits from ``high`` up are its prefix), grouped by row.

    With ``out`` empty: only ``counts[row]`` (add the number of keys of each row). Else
    ``out`` (``counts.sum()`` keys) receives them, the keys of row ``r`` from
    ``counts[:r].sum()`` on.
    """
    n_groups = cell.shape[0]
    n_targets = cell.shape[2]
    fill = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    if out.shape[0]:
        fill[1:] = np.cumsum(counts)
    for i in range(bits.shape[0]):
        g = labels[i]
        if g < 0 or g >= n_groups:
            continue
        for j in range(columns.shape[0]):
            ok, key = _key(np.uint64(bits[i, columns[j]]), sign, full, inf)
            if not ok:
                continue
            for t in range(n_targets):
                row = cell[g, j, t]
                if row < 0 or (key >> high) != prefix[row]:
                    continue
                if out.shape[0]:
                    out[fill[row]] = key
                    fill[row] += 1
                else:
                    counts[row] += 1
