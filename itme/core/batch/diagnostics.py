"""How much of the between-sample variation is batch: array statistics for the diagnostics."""

from __future__ import annotations

import numpy as np

__all__ = ["batch_r2", "label_share", "pca", "permutation_pvalue"]


def _standardise(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    sd = M.std(axis=0)
    sd[sd == 0] = 1.0
    return (M - M.mean(axis=0)) / sd


def batch_r2(M: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, float]:
    """Share of the variance of each column, and of all columns together, explained by batch.

    One-way ANOVA's between-batch sum of squares over the total, per column; the overall
    value pools the sums of the standardised columns (each marker weighs the same, as in a
    PERMANOVA on Euclidean distances of standardised medians).

    Parameters
    ----------
    M
        Samples × markers (e.g. per-sample marker medians).
    batch
        Integer batch code of each sample.

    Returns
    -------
    r2 : numpy.ndarray
        Per column (NaN for a constant column).
    overall : float
        Pooled over the standardised columns.
    """
    M = np.asarray(M, dtype=np.float64)
    total = ((M - M.mean(axis=0)) ** 2).sum(axis=0)
    between = np.zeros(M.shape[1])
    for b in np.unique(batch):
        rows = batch == b
        between += rows.sum() * (M[rows].mean(axis=0) - M.mean(axis=0)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total > 0, between / total, np.nan)
    Z = _standardise(M)
    tz = (Z**2).sum()
    bz = sum((batch == b).sum() * (Z[batch == b].mean(axis=0) ** 2).sum() for b in np.unique(batch))
    return r2, float(bz / tz) if tz > 0 else float("nan")


def permutation_pvalue(
    M: np.ndarray, batch: np.ndarray, *, n_perm: int, rng: np.random.Generator
) -> float:
    """Permutation p-value of the overall :func:`batch_r2` (batch labels shuffled over samples).

    Parameters
    ----------
    M
        Samples × markers.
    batch
        Integer batch code of each sample.
    n_perm
        Permutations.
    rng
        Random generator.

    Returns
    -------
    float
        ``(1 + #{permuted >= observed}) / (1 + n_perm)``.
    """
    observed = batch_r2(M, batch)[1]
    hits = sum(batch_r2(M, rng.permutation(batch))[1] >= observed - 1e-12 for _ in range(n_perm))
    return (1 + hits) / (1 + n_perm)


def pca(M: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the standardised columns of ``M`` (samples × markers).

    Parameters
    ----------
    M
        Samples × markers.
    n_components
        Components returned.

    Returns
    -------
    scores : numpy.ndarray
        Samples × ``n_components``.
    explained : numpy.ndarray
        Share of the variance of each component.
    """
    Z = _standardise(M)
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    k = min(n_components, S.size)
    var = S**2
    explained = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    return U[:, :k] * S[:k], explained


def label_share(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's share of each batch's events, and its lowest share relative to its median.

    Parameters
    ----------
    counts
        Labels × batches event counts.

    Returns
    -------
    share : numpy.ndarray
        Labels × batches, each column summing to 1.
    ratio : numpy.ndarray
        Per label, its smallest share over batches divided by its median share over
        batches (0: absent from one batch, 1: the same in all); NaN for a label with no events.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=0)
    share = counts / np.where(totals > 0, totals, 1.0)
    med = np.median(share, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(med > 0, share.min(axis=1) / med, np.nan)
    return share, ratio
