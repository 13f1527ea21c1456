"""Per-sample gene-set scores on arrays (numpy only).

- :func:`median_of_ratios` – DESeq2 size factors (Anders & Huber 2010): per sample, the
  median over genes expressed in every sample of ``count / geometric mean of the gene``.
- :func:`log_normalise` – ``log2(count / size factor + 1)``.
- :func:`combined_z_scores` – the combined z-score of Lee et al. (PLoS Comput Biol 2008,
  "Inferring pathway activity toward precise disease classification"): each gene is
  z-scored across samples, and a set's score in a sample is ``sum(z) / sqrt(n genes)``.
  Under independence and no set effect it is standard normal, so scores of sets of
  different sizes are comparable.

Why size factors are computed here and not with pydeseq2 (``preprocessing.deseq2_norm``):
``itme.core`` is the numpy layer and may not import pydeseq2 (a slow import, confined to
:mod:`itme.rna._deseq`), and pydeseq2 has no answer when no gene is expressed in every sample,
where DESeq2 offers ``type = "poscounts"`` (used here). The tests compare with
``deseq2_norm``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["combined_z_scores", "log_normalise", "median_of_ratios"]


def median_of_ratios(counts: np.ndarray) -> np.ndarray:
    """DESeq2 median-of-ratios size factors of a samples × genes count matrix.

    Parameters
    ----------
    counts
        Samples × genes raw counts.

    Returns
    -------
    numpy.ndarray
        One size factor per sample (geometric mean 1 over samples is not enforced, as in
        DESeq2).
    """
    counts = np.asarray(counts, dtype=float)
    positive = (counts > 0).all(axis=0)
    if not positive.any():
        # no gene expressed in every sample: DESeq2's "poscounts" variant
        with np.errstate(divide="ignore"):
            logs = np.where(counts > 0, np.log(counts), 0.0)
        n_pos = (counts > 0).sum(axis=0)
        keep = n_pos > 0
        log_geo = logs[:, keep].sum(axis=0) / counts.shape[0]
        ratios = np.where(counts[:, keep] > 0, logs[:, keep] - log_geo, np.nan)
        sf = np.exp(np.nanmedian(ratios, axis=1))
        return sf / np.exp(np.mean(np.log(sf)))
    logs = np.log(counts[:, positive])
    log_geo = logs.mean(axis=0)
    return np.exp(np.median(logs - log_geo, axis=1))


def log_normalise(counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    """``log2(counts / size_factor + 1)`` of a samples × genes matrix.

    Parameters
    ----------
    counts
        Samples × genes raw counts.
    size_factors
        One size factor per sample.

    Returns
    -------
    numpy.ndarray
        Samples × genes log2 normalised expression.
    """
    return np.log2(np.asarray(counts, dtype=float) / np.asarray(size_factors)[:, None] + 1.0)


def combined_z_scores(expression: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """Combined z-score (Lee et al. 2008) of each gene set in each sample.

    Parameters
    ----------
    expression
        Samples × genes log expression. Genes with zero variance get z = 0.
    members
        One integer array of gene (column) indices per set.

    Returns
    -------
    numpy.ndarray
        Samples × sets scores.
    """
    x = np.asarray(expression, dtype=float)
    sd = x.std(axis=0, ddof=1)
    z = np.zeros_like(x)
    ok = sd > 0
    z[:, ok] = (x[:, ok] - x[:, ok].mean(axis=0)) / sd[ok]
    scores = np.full((x.shape[0], len(members)), np.nan)
    for j, idx in enumerate(members):
        if len(idx):
            scores[:, j] = z[:, idx].sum(axis=1) / np.sqrt(len(idx))
    return scores
