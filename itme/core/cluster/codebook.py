"""Codebook numerics: nearest-code mapping in chunks and per-group medians.

Mapping millions of events to a SOM codebook is one matrix product per chunk
(``|x|^2 - 2 x.c + |c|^2``), so it runs at BLAS speed with a bounded working set
(``chunk_size`` rows at a time, float64) instead of a full events × codes distance matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["group_medians", "nearest_code"]


def nearest_code(
    X: np.ndarray,
    codes: np.ndarray,
    *,
    columns: Sequence[int] | None = None,
    chunk_size: int = 32_768,
    return_distance: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the nearest code (Euclidean) for every row of ``X``.

    Parameters
    ----------
    X
        Events × channels (any float dtype; read one chunk at a time, never copied whole).
    codes
        Codes × markers.
    columns
        Columns of ``X`` that hold the markers of ``codes``, in order (all when ``None``).
    chunk_size
        Rows per chunk; the working set is about ``chunk_size * (n_markers + n_codes) * 8`` bytes.
    return_distance
        Also return the Euclidean distance to the nearest code.

    Returns
    -------
    numpy.ndarray
        int32 index of the nearest code per row (ties go to the lower index), and the float32
        distance when ``return_distance``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    codes_t = np.ascontiguousarray(codes.T)
    code_sq = np.einsum("ij,ij->i", codes, codes)
    n = X.shape[0]
    out = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float32) if return_distance else None
    step = max(1, min(int(chunk_size), n))
    # two buffers reused for every chunk: the working set does not grow with n
    block_buf = np.empty((step, codes.shape[1]), dtype=np.float64)
    d2_buf = np.empty((step, codes.shape[0]), dtype=np.float64)
    cols = None if columns is None else np.asarray(columns, dtype=np.intp)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block, d2 = block_buf[: stop - start], d2_buf[: stop - start]
        rows = X[start:stop]
        np.copyto(block, rows if cols is None else rows[:, cols], casting="unsafe")
        np.matmul(block, codes_t, out=d2)
        d2 *= -2.0
        d2 += code_sq
        idx = np.argmin(d2, axis=1)
        out[start:stop] = idx
        if dist is not None:
            best = d2[np.arange(stop - start), idx] + np.einsum("ij,ij->i", block, block)
            dist[start:stop] = np.sqrt(np.maximum(best, 0.0))
    return (out, dist) if return_distance else out


def group_medians(
    X: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    *,
    columns: Sequence[int] | None = None,
) -> np.ndarray:
    """Median of every column within each group.

    Parameters
    ----------
    X
        Events × channels.
    labels
        Integer group of each event, in ``0 .. n_groups - 1`` (negative: left out).
    n_groups
        Number of groups (rows of the result).
    columns
        Columns of ``X`` to summarise (all when ``None``).

    Returns
    -------
    numpy.ndarray
        float64 ``(n_groups, n_columns)``; NaN rows for empty groups.
    """
    labels = np.asarray(labels)
    n_cols = X.shape[1] if columns is None else len(columns)
    out = np.full((n_groups, n_cols), np.nan)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        if rows.size:
            rows = np.sort(rows)
            block = X[rows] if columns is None else X[np.ix_(rows, np.asarray(columns))]
            out[g] = np.median(np.asarray(block, dtype=np.float64), axis=0)
    return out
