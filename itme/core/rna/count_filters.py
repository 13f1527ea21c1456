"""Low-count gene filters used before differential expression (numpy only).

Two rules, as DESeq2 and edgeR users apply them:

- :func:`min_count_filter` – the DESeq2 vignette's recommendation: keep a gene with at
  least ``min_count`` reads (default 10) in at least ``min_samples`` samples, where
  ``min_samples`` is the size of the smallest group compared
  (``keep <- rowSums(counts(dds) >= 10) >= smallestGroupSize``).
- :func:`filter_by_expr` – edgeR's ``filterByExpr`` (default arguments of edgeR ≥ 3.26):
  keep a gene whose counts-per-million reach ``min_count / median(library size) * 1e6``
  in at least ``n`` samples, where ``n`` is the smallest group size, shrunk to
  ``large_n + (n - large_n) * min_prop`` when above ``large_n``, and whose total count is
  at least ``min_total_count``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["filter_by_expr", "min_count_filter", "required_samples"]

_TOL = 1e-14  # edgeR's tolerance in filterByExpr


def min_count_filter(counts: np.ndarray, *, min_count: int, min_samples: int) -> np.ndarray:
    """DESeq2-vignette filter: ``>= min_count`` reads in ``>= min_samples`` samples.

    Parameters
    ----------
    counts
        Samples × genes raw counts.
    min_count
        Reads a sample must have for the gene to count as expressed there.
    min_samples
        Samples in which the gene must be expressed.

    Returns
    -------
    numpy.ndarray
        Boolean per gene, ``True`` for kept genes.
    """
    return (np.asarray(counts) >= min_count).sum(axis=0) >= min_samples


def required_samples(
    group_sizes: list[int] | np.ndarray, *, large_n: int = 10, min_prop: float = 0.7
) -> float:
    """Samples in which ``filterByExpr`` requires a gene to reach the CPM cutoff.

    The smallest non-empty group size ``n``, or ``large_n + (n - large_n) * min_prop`` when
    ``n > large_n`` (edgeR's rule).
    """
    sizes = np.asarray(group_sizes, dtype=float)
    min_n = float(sizes[sizes > 0].min())
    if min_n > large_n:
        min_n = large_n + (min_n - large_n) * min_prop
    return min_n


def filter_by_expr(
    counts: np.ndarray,
    *,
    group_sizes: list[int] | np.ndarray,
    min_count: float = 10,
    min_total_count: float = 15,
    large_n: int = 10,
    min_prop: float = 0.7,
) -> np.ndarray:
    """EdgeR ``filterByExpr`` (group form, library sizes = column sums).

    Parameters
    ----------
    counts
        Samples × genes raw counts.
    group_sizes
        Number of samples in each group of the comparison.
    min_count
        Minimum count, converted to a CPM cutoff at the median library size.
    min_total_count
        Minimum total count of the gene over all samples.
    large_n, min_prop
        Above ``large_n`` samples, the required number grows by ``min_prop`` per sample.

    Returns
    -------
    numpy.ndarray
        Boolean per gene, ``True`` for kept genes.
    """
    counts = np.asarray(counts, dtype=float)
    min_n = required_samples(group_sizes, large_n=large_n, min_prop=min_prop)
    lib = counts.sum(axis=1)
    cpm = counts / lib[:, None] * 1e6
    cutoff = min_count / np.median(lib) * 1e6
    keep_cpm = (cpm >= cutoff).sum(axis=0) >= min_n - _TOL
    keep_total = counts.sum(axis=0) >= min_total_count - _TOL
    return keep_cpm & keep_total
