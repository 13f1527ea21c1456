"""Pseudobulk summaries: per sample × cell-group medians and counts of cells (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["group_medians"]


def group_medians(
    X: np.ndarray, sample_codes: np.ndarray, group_codes: np.ndarray, n_samples: int, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Median of every column of ``X`` within each sample × group cell.

    Parameters
    ----------
    X
        Events × markers values (e.g. arcsinh-transformed).
    sample_codes, group_codes
        Integer code of each event's sample (``0..n_samples-1``) and group
        (``0..n_groups-1``); a negative code leaves the event out.
    n_samples, n_groups
        Number of samples and of groups.

    Returns
    -------
    medians
        ``(n_samples, n_groups, n_markers)`` float64, NaN where a cell holds no events.
    counts
        ``(n_samples, n_groups)`` int64 number of events in each cell.
    """
    X = np.asarray(X)
    s = np.asarray(sample_codes, dtype=np.int64)
    g = np.asarray(group_codes, dtype=np.int64)
    ok = (s >= 0) & (g >= 0)
    key = s[ok] * n_groups + g[ok]
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    counts = np.bincount(key, minlength=n_samples * n_groups).astype(np.int64)
    medians = np.full((n_samples * n_groups, X.shape[1]), np.nan)
    rows = np.flatnonzero(ok)[order]
    bounds = np.searchsorted(key_sorted, np.arange(n_samples * n_groups + 1))
    for k in np.flatnonzero(counts):
        block = X[rows[bounds[k] : bounds[k + 1]]]
        medians[k] = np.median(block, axis=0)
    return medians.reshape(n_samples, n_groups, X.shape[1]), counts.reshape(n_samples, n_groups)
