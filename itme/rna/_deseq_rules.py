"""R DESeq2's rules where pydeseq2 differs: Cook's outliers and independent filtering.

:func:`itme.rna.differential_expression` runs pydeseq2's pipeline step by step and applies
these between its steps, so that its default output is R's ``DESeq()`` + ``results()``
(issue 13; golden files in ``tests/golden``; the dispersion trend and prior are in
:mod:`itme.core.rna.dispersion`):

- :func:`cooks_outliers` – R's ``results()``: the maximum Cook's distance over samples in a
  design cell of at least 3, with all replaceable samples (cells of at least 7) set to 0 once
  outliers were replaced; the "3 or more higher counts" exemption only for a single
  two-level factor design. pydeseq2 applies the exemption to every design and zeroes only
  the refitted genes.
- :func:`independent_filtering` – R's ``pvalueAdjustment``: BH-adjusted p-values for 50
  ``baseMean`` quantiles ``theta``, R's ``lowess`` (statsmodels' port of ``clowess``, with
  R's ``delta = 0.01 × range``) of the rejections, and the first ``theta`` whose rejections
  exceed ``max(lowess) - sqrt(mean(residual^2))``. pydeseq2's own lowess has no ``delta``
  and differs at the boundary, where its threshold can fall back to "no filtering".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_dist
from scipy.stats import false_discovery_control

__all__ = ["FilterResult", "cooks_outliers", "independent_filtering"]


def _cells(design: np.ndarray) -> np.ndarray:
    """Index of each sample's design cell (identical rows of the design matrix)."""
    _, inverse, counts = np.unique(design, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()]


def cooks_outliers(
    cooks: np.ndarray,
    counts: np.ndarray,
    design: np.ndarray,
    *,
    replaced: bool,
    single_two_level_factor: bool,
    min_replicates: int = 7,
) -> np.ndarray:
    """Genes whose p-value R's ``results()`` sets to NA for a Cook's distance outlier.

    Parameters
    ----------
    cooks
        Samples × genes Cook's distances of the first fit (R keeps these after a refit).
    counts
        Samples × genes original counts.
    design
        Samples × coefficients design matrix.
    replaced
        Whether outliers were replaced and genes refitted (R's ``nrefit > 0``).
    single_two_level_factor
        Whether the design formula has one variable, a two-level factor.
    min_replicates
        Cell size from which samples are replaceable (R's ``minReplicatesForReplace``).

    Returns
    -------
    numpy.ndarray
        Boolean per gene.
    """
    m, p = design.shape
    n_genes = cooks.shape[1]
    cell_size = _cells(design)
    use = cell_size >= 3
    if m <= p or not use.any():
        return np.zeros(n_genes, dtype=bool)
    replaceable = cell_size >= min_replicates
    c = np.array(cooks, dtype=float)
    if replaced:
        if replaceable.all():
            return np.zeros(n_genes, dtype=bool)
        c[replaceable] = 0.0
    with np.errstate(invalid="ignore"):
        max_cooks = np.nanmax(np.where(np.isnan(c[use]), -np.inf, c[use]), axis=0)
        outlier = max_cooks > f_dist.ppf(0.99, p, m - p)
    if single_two_level_factor and outlier.any():
        idx = np.flatnonzero(outlier)
        worst = np.nanargmax(np.where(np.isnan(cooks[:, idx]), -np.inf, cooks[:, idx]), axis=0)
        out_count = counts[worst, idx]
        higher = (counts[:, idx] > out_count[None, :]).sum(axis=0)
        outlier[idx[higher >= 3]] = False
    return outlier


@dataclass
class FilterResult:
    """R's independent filtering: adjusted p-values and the chosen threshold."""

    padj: np.ndarray
    theta: np.ndarray
    n_rejections: np.ndarray
    lowess: np.ndarray
    index: int  # chosen theta (0-based)
    threshold: float  # baseMean quantile at the chosen theta
    n_filtered: int  # genes with a p-value but no padj


def _bh(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def independent_filtering(
    base_mean: np.ndarray, pvalue: np.ndarray, *, alpha: float = 0.1
) -> FilterResult:
    """R ``results()``'s ``pvalueAdjustment`` (``filtered_p`` + lowess threshold rule).

    ``base_mean`` and ``pvalue`` cover every gene of the fit, all-zero genes included
    (``baseMean`` 0, p-value NaN) as in R, where they set the lowest quantile ``theta``.
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    bm = np.asarray(base_mean, dtype=float)
    pv = np.asarray(pvalue, dtype=float)
    lower = float(np.mean(bm == 0))
    upper = 0.95 if lower < 0.95 else 1.0
    theta = np.linspace(lower, upper, 50)
    cutoffs = np.quantile(bm, theta)
    padj = np.full((bm.size, theta.size), np.nan)
    for j, cut in enumerate(cutoffs):
        use = bm >= cut
        if use.any():
            padj[use, j] = _bh(pv[use])
    with np.errstate(invalid="ignore"):
        n_rej = (padj < alpha).sum(axis=0)
    span = float(theta[-1] - theta[0])
    fit = lowess(
        n_rej.astype(float), theta, frac=1 / 5, it=3, delta=0.01 * span, return_sorted=False
    )
    if n_rej.max() <= 10:
        j = 0
    else:
        positive = n_rej > 0
        resid = n_rej[positive] - fit[positive] if positive.any() else np.zeros(1)
        thresh = fit.max() - np.sqrt(np.mean(resid**2))
        above = np.flatnonzero(n_rej > thresh)
        j = int(above[0]) if above.size else 0
    chosen = padj[:, j]
    return FilterResult(
        padj=chosen,
        theta=theta,
        n_rejections=n_rej,
        lowess=fit,
        index=j,
        threshold=float(cutoffs[j]),
        n_filtered=int((np.isnan(chosen) & ~np.isnan(pv)).sum()),
    )
