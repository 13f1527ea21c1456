"""The numba kernel of :mod:`itme.core.cluster.select` (one loop over a block's events).

A module of its own, imported on first use (numba is slow to import), with numba's on-disk
cache: compiled once per machine, not in every worker process.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def histogram(bits, columns, labels, cell, prefix, first, shift, width, sign, full, inf, out):
    """Add each value's digit to the histogram of its (group, column, target) cell.

    ``bits`` holds the raw bits of the values (uint32 for float32, uint64 for float64). A
    value's order-preserving key is its bits with the sign bit set (positive) or all bits
    flipped (negative), -0.0 counted as +0.0; NaN is skipped. The value is counted in row
    ``cell[group, column, t]`` of ``out`` (``-1``: not counted), at the digit
    ``(key >> shift) & (2**width - 1)``, when its key's higher bits equal ``prefix[row]``
    (always on the ``first`` pass).
    """
    one = np.uint64(1)
    mask = (one << width) - one
    high = shift + width
    absmask = full ^ sign
    n_groups = cell.shape[0]
    n_targets = cell.shape[2]
    for i in range(bits.shape[0]):
        g = labels[i]
        if g < 0 or g >= n_groups:
            continue
        for j in range(columns.shape[0]):
            b = np.uint64(bits[i, columns[j]])
            if (b & absmask) > inf:  # NaN
                continue
            if b == sign:  # -0.0 as +0.0
                b = np.uint64(0)
            key = (b ^ full) if (b & sign) else (b | sign)
            digit = (key >> shift) & mask
            for t in range(n_targets):
                row = cell[g, j, t]
                if row < 0:
                    continue
                if first or (key >> high) == prefix[row]:
                    out[row, digit] += 1
