"""DESeq2's per-gene negative-binomial GLM numerics, vectorised across genes.

pydeseq2 fits one gene at a time (a joblib task per gene, a ``scipy.optimize.minimize`` call
per dispersion), which is where ~95 % of its run time goes on a 38 × 20,000 matrix. The
functions here compute the *same quantities with the same objective functions* for all genes
at once with numpy array operations; :mod:`itme.rna._deseq` plugs them into pydeseq2 through
its ``Inference`` interface, so pydeseq2 still runs the DESeq2 pipeline (size factors,
trend, prior, Cook's distances, outlier refit, independent filtering) and only the inner
loops are replaced. Written by hand because no maintained library offers a vectorised
DESeq2 inference backend for numpy.

Conventions follow pydeseq2 (``pydeseq2.utils``): ``counts`` and ``mu`` are samples × genes,
``design`` is samples × coefficients, coefficients are on the natural-log scale.

- :func:`lin_reg_mu` – least-squares initial means (``utils.fit_lin_mu``).
- :func:`irls` – IRLS for the NB GLM coefficients (R's ``fitBeta`` / pydeseq2's
  ``utils.irls_solver``): identical start, update, ridge, deviance-ratio stopping rule and
  hat diagonals. Genes whose IRLS diverges (``|beta| > max_beta``) or reaches ``maxiter``
  are flagged, with R's start value for the fallback.
- :func:`optim_beta` – R's fallback for those genes (``fitNbinomGLMsOptim``: L-BFGS-B on the
  ridge-penalised NB likelihood of the log2 coefficients, R's settings), one gene at a time.
- :func:`wald_test` – Wald statistics, standard errors and p-values (``utils.wald_test``).
- :func:`shrink_lfc` – the apeGLM-style MAP of ``lfc_shrink`` (``utils.nbinomGLM``: NB
  likelihood, normal prior of scale 15 on the other coefficients, Cauchy prior on the shrunk
  one), by damped Newton steps from pydeseq2's start for all genes at once.

Dispersions follow R's optimiser and rules instead (:mod:`itme.core.rna.dispersion`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln
from scipy.stats import norm

__all__ = ["irls", "lin_reg_mu", "nb_nll", "optim_beta", "shrink_lfc", "wald_test"]


def _outer_rows(design: np.ndarray) -> np.ndarray:
    """Samples × (p·p) matrix of per-sample outer products ``x_i x_i^T`` (flattened)."""
    n, p = design.shape
    return (design[:, :, None] * design[:, None, :]).reshape(n, p * p)


def _weighted_gram(weights: np.ndarray, outer: np.ndarray, p: int) -> np.ndarray:
    """Genes × p × p matrices ``X^T diag(w_g) X`` for every gene column of ``weights``.

    Each gene's is summed over the samples in order, not as ``weights.T @ outer``: BLAS's
    summation order depends on the number of genes in the product on some CPUs (OpenBLAS
    on AMD EPYC), so a gene's fit changed in its last bits with the genes fitted beside it
    (the dispersion fit's thread parts, the genes still iterating).
    """
    gram = np.zeros((weights.shape[1], outer.shape[1]))
    for w_s, outer_s in zip(weights, outer, strict=True):
        gram += w_s[:, None] * outer_s
    return gram.reshape(weights.shape[1], p, p)


def _weights(mu: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """NB GLM working weights ``mu / (1 + mu * alpha)`` (samples × genes, one alpha per gene)."""
    return mu / (1.0 + mu * disp)


def _inv(mats: np.ndarray) -> np.ndarray:
    """Batched inverse; a singular matrix gives its pseudo-inverse instead of an exception."""
    try:
        return np.linalg.inv(mats)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(mats)


def nb_nll(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Negative-binomial negative log-likelihood of each gene (column), as ``utils.nb_nll``.

    Parameters
    ----------
    counts, mu
        Samples × genes observed counts and means.
    alpha
        One dispersion per gene.

    Returns
    -------
    numpy.ndarray
        One value per gene.
    """
    n = counts.shape[0]
    alpha = np.asarray(alpha, dtype=float)
    inv = 1.0 / alpha
    logbinom = gammaln(counts + inv) - gammaln(counts + 1.0) - gammaln(inv)
    return n * inv * np.log(alpha) + (
        -logbinom + (counts + inv) * np.log(inv + mu) - counts * np.log(mu)
    ).sum(axis=0)


def lin_reg_mu(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, min_mu: float
) -> np.ndarray:
    """Initial means from a least-squares fit of normalised counts on the design.

    Parameters
    ----------
    counts
        Samples × genes raw counts.
    size_factors
        One size factor per sample.
    design
        Samples × coefficients design matrix.
    min_mu
        Lower bound of the returned means.

    Returns
    -------
    numpy.ndarray
        Samples × genes fitted means, at least ``min_mu``.
    """
    sf = np.asarray(size_factors, dtype=float)[:, None]
    coef, *_ = np.linalg.lstsq(design, counts / sf, rcond=None)
    return np.maximum(sf * (design @ coef), min_mu)


def irls(
    counts: np.ndarray,
    size_factors: np.ndarray,
    design: np.ndarray,
    disp: np.ndarray,
    *,
    min_mu: float,
    beta_tol: float,
    max_beta: float = 30.0,
    maxiter: int = 100,
    ridge: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit the NB GLM of every gene by iteratively reweighted least squares.

    The iteration of R's ``fitBeta`` and pydeseq2's ``irls_solver``: start from the
    least-squares fit of ``log(counts / sf + 0.1)``, means floored at ``min_mu`` inside the
    iterations, ridge on the diagonal of ``X^T W X``, stop when
    ``|dev - dev_old| / (|dev| + 0.1) < beta_tol``.

    Parameters
    ----------
    counts
        Samples × genes raw counts.
    size_factors
        One size factor per sample.
    design
        Samples × coefficients design matrix.
    disp
        One dispersion per gene.
    min_mu
        Lower bound of the means used inside the iterations.
    beta_tol
        Deviance-ratio tolerance.
    max_beta
        A coefficient beyond ``±max_beta`` marks the gene as diverging (R's ``large``).
    maxiter
        A gene still iterating after ``maxiter`` updates is flagged (R's ``maxit = 100``).
    ridge
        Ridge added to the diagonal of ``X^T W X`` (R: ``1e-6 / log(2)^2``; pydeseq2 ``1e-6``).

    Returns
    -------
    beta
        Genes × coefficients (natural log scale). For flagged genes, R's start value of its
        fallback: the last iterate when every ``|beta| log2(e) < max_beta``, else the initial
        least-squares fit.
    mu
        Samples × genes fitted means (not floored, as R and pydeseq2 return them).
    hat
        Samples × genes diagonals of the hat matrix ``W^½ X (X^T W X + ridge)^-1 X^T W^½``.
    fallback
        Boolean per gene: IRLS diverged or reached ``maxiter`` (R's ``betaConv`` false).
    """
    counts = np.asarray(counts, dtype=float)
    n, p = design.shape
    n_genes = counts.shape[1]
    sf = np.asarray(size_factors, dtype=float)[:, None]
    disp = np.asarray(disp, dtype=float)
    outer = _outer_rows(design)
    ridge_m = np.eye(p) * ridge

    with np.errstate(divide="ignore"):
        if np.linalg.matrix_rank(design) == p:
            q, r = np.linalg.qr(design)
            y = np.log(counts / sf + 0.1)
            beta = np.linalg.solve(r, q.T @ y).T
        else:
            beta = np.zeros((n_genes, p))
            beta[:, 0] = np.log(counts / sf).mean(axis=0)
    beta0 = beta.copy()
    mu = np.maximum(sf * np.exp(design @ beta.T), min_mu)
    dev_old = np.zeros(n_genes)
    active = np.ones(n_genes, dtype=bool)
    fallback = np.zeros(n_genes, dtype=bool)
    diverged = np.zeros(n_genes, dtype=bool)

    for iteration in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        mu_a, y_a, d_a = mu[:, idx], counts[:, idx], disp[idx]
        w = _weights(mu_a, d_a)
        z = np.log(mu_a / sf) + (y_a - mu_a) / mu_a
        gram = _weighted_gram(w, outer, p) + ridge_m
        rhs = (w * z).T @ design
        beta_hat = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        big = (np.abs(beta_hat) > max_beta).any(axis=1)
        diverged[idx[big]] = True
        fallback[idx[big]] = True
        active[idx[big]] = False
        keep = idx[~big]
        if keep.size == 0:
            break
        beta[keep] = beta_hat[~big]
        mu[:, keep] = np.maximum(sf * np.exp(design @ beta[keep].T), min_mu)
        dev = -2.0 * nb_nll(counts[:, keep], mu[:, keep], disp[keep])
        conv = np.abs(dev - dev_old[keep]) / (np.abs(dev) + 0.1)
        bad = np.isnan(conv)
        fallback[keep[bad]] = True
        diverged[keep[bad]] = True
        done = ~bad & (conv < beta_tol) & (iteration > 0)
        if iteration == maxiter - 1:  # R: iter == maxit is "not converged"
            fallback[keep] = True
        active[keep[done | bad]] = False
        dev_old[keep] = dev
    fallback |= active

    w = _weights(mu, disp)
    inv_gram = _inv(_weighted_gram(w, outer, p) + ridge_m)
    hat = w * (outer @ inv_gram.reshape(n_genes, p * p).T)
    mu_out = sf * np.exp(design @ beta.T)
    restart = diverged | (fallback & (np.abs(beta) * np.log2(np.e) >= max_beta).any(axis=1))
    beta[restart] = beta0[restart]
    return beta, mu_out, hat, fallback


def _ndeps_gradient(fun, x: np.ndarray, lower: float, upper: float, eps: float = 1e-3):
    """R ``optim``'s numerical gradient: central differences of step ``ndeps``, within bounds."""
    grad = np.empty_like(x)
    for i in range(x.size):
        hi, lo = x.copy(), x.copy()
        hi[i] = min(x[i] + eps, upper)
        lo[i] = max(x[i] - eps, lower)
        grad[i] = (fun(hi) - fun(lo)) / (hi[i] - lo[i])
    return grad


def optim_beta(
    counts: np.ndarray,
    size_factors: np.ndarray,
    design: np.ndarray,
    disp: float,
    start: np.ndarray,
    *,
    ridge_log2: float = 1e-6,
    large: float = 30.0,
    maxiter: int = 100,
) -> tuple[np.ndarray, bool]:
    """R's ``fitNbinomGLMsOptim`` for one gene whose IRLS did not converge.

    Minimises ``-(NB log-likelihood + sum log N(beta_log2; 0, 1 / sqrt(ridge_log2)))`` over
    the log2 coefficients within ``±large``, from R's start value, with L-BFGS-B as R's
    ``optim`` runs it: 5 corrections, ``factr = 1e7``, ``pgtol = 0``, 100 iterations, R's
    central-difference gradient (step ``1e-3``). scipy's L-BFGS-B is not R's code, but with
    the same settings it stops where R's does on the golden data far more often than an
    exact minimiser would (R often barely moves from its start on these flat likelihoods;
    ``tests/unit/test_rna_deseq_golden.py``).

    Returns
    -------
    beta, converged
        Coefficients on the natural log scale, and L-BFGS-B's convergence flag.
    """
    from scipy.optimize import minimize
    from scipy.stats import nbinom

    y = np.asarray(counts, dtype=float)
    sf = np.asarray(size_factors, dtype=float)
    size = 1.0 / disp
    sd = np.sqrt(1.0 / ridge_log2)

    def objective(b: np.ndarray) -> float:
        mu = sf * 2.0 ** (design @ b)
        with np.errstate(all="ignore"):
            value = -(
                nbinom.logpmf(y, size, size / (size + mu)).sum() + norm.logpdf(b, 0, sd).sum()
            )
        return float(value) if np.isfinite(value) else 1e300

    b0 = np.clip(np.asarray(start, dtype=float) * np.log2(np.e), -large, large)
    res = minimize(
        objective,
        b0,
        jac=lambda b: _ndeps_gradient(objective, b, -large, large),
        method="L-BFGS-B",
        bounds=[(-large, large)] * b0.size,
        options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxiter": maxiter},
    )
    return res.x / np.log2(np.e), bool(res.success)


def wald_test(
    design: np.ndarray,
    disp: np.ndarray,
    lfc: np.ndarray,
    mu: np.ndarray,
    ridge_factor: np.ndarray,
    contrast: np.ndarray,
    lfc_null: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided Wald test of ``contrast @ (lfc - lfc_null) = 0`` for every gene.

    Parameters
    ----------
    design
        Samples × coefficients design matrix.
    disp
        One dispersion per gene.
    lfc
        Genes × coefficients (natural log scale).
    mu
        Samples × genes fitted means.
    ridge_factor
        Coefficients × coefficients ridge matrix.
    contrast
        Contrast vector over the coefficients.
    lfc_null
        Null value (natural log scale), subtracted from every coefficient as in pydeseq2.

    Returns
    -------
    pvalue, statistic, se
        One value each per gene (NaN where the inputs are not finite).
    """
    n_genes = mu.shape[1]
    p = design.shape[1]
    pvals = np.full(n_genes, np.nan)
    stats = np.full(n_genes, np.nan)
    se = np.full(n_genes, np.nan)
    ok = np.isfinite(disp) & np.isfinite(lfc).all(axis=1) & np.isfinite(mu).all(axis=0)
    if not ok.any():
        return pvals, stats, se
    outer = _outer_rows(design)
    m = mu[:, ok]
    w = _weights(m, disp[ok])
    gram = _weighted_gram(w, outer, p)
    h = _inv(gram + ridge_factor)
    hc = h @ contrast
    se_ok = np.sqrt(np.einsum("gi,gij,gj->g", hc, gram, hc))
    stat_ok = ((lfc[ok] - lfc_null) @ contrast) / se_ok
    se[ok] = se_ok
    stats[ok] = stat_ok
    pvals[ok] = 2.0 * norm.sf(np.abs(stat_ok))
    return pvals, stats, se


def _shrink_objective(
    beta: np.ndarray,
    design: np.ndarray,
    counts: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    scales: np.ndarray,
    shrink_index: int,
    prior_scale: float,
) -> np.ndarray:
    """pydeseq2's ``nbinomFn`` for every gene: genes × coefficients ``beta`` → one value each."""
    eta = design @ beta.T  # samples × genes
    nll = (counts * eta - (counts + size) * np.logaddexp(eta + offset[:, None], np.log(size))).sum(
        axis=0
    )
    normal = beta**2 / (2 * scales**2)
    normal[:, shrink_index] = 0.0
    prior = normal.sum(axis=1) + np.log1p((beta[:, shrink_index] / prior_scale) ** 2)
    return prior - nll


def shrink_lfc(
    design: np.ndarray,
    counts: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    *,
    prior_no_shrink_scale: float,
    prior_scale: float,
    shrink_index: int,
    maxiter: int = 200,
    gtol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAP coefficients of pydeseq2's ``lfc_shrink`` (``utils.nbinomGLM``) for every gene.

    The objective is pydeseq2's: negative NB log-likelihood (``size = 1 / dispersion``,
    ``offset = log(size factor)``) + ``beta_j^2 / (2 prior_no_shrink_scale^2)`` for the
    other coefficients + ``log(1 + (beta_s / prior_scale)^2)`` (Cauchy) for the shrunk one.
    From pydeseq2's start ``0.1 * (-1)^j``, damped Newton steps (Hessian made positive
    definite where the Cauchy term makes it indefinite, Armijo backtracking) until the
    gradient, relative to the objective's scale at 0, is below ``gtol``.

    Returns
    -------
    beta
        Genes × coefficients (natural log scale).
    inv_hessian
        Genes × p × p inverse Hessians at the optimum (for the standard errors).
    converged
        Boolean per gene.
    """
    n_genes = counts.shape[1]
    p = design.shape[1]
    size = np.asarray(size, dtype=float)
    scales = np.full(p, float(prior_no_shrink_scale))
    shrink = np.zeros(p, dtype=bool)
    shrink[shrink_index] = True
    beta = np.tile(0.1 * (-1.0) ** np.arange(p), (n_genes, 1))
    outer = _outer_rows(design)

    def objective(b: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _shrink_objective(
            b, design, counts[:, idx], size[idx], offset, scales, shrink_index, prior_scale
        )

    def derivatives(b: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eta = design @ b.T
        e = np.exp(eta + offset[:, None])
        y, s = counts[:, idx], size[idx]
        resid = y - (y + s) / (1 + s / e)
        bs = b[:, shrink_index]
        d_prior = np.where(shrink, 0.0, b / scales**2)
        d_prior[:, shrink_index] = 2 * bs / (prior_scale**2 + bs**2)
        grad = d_prior - resid.T @ design
        frac = (y + s) * s * e / (s + e) ** 2
        h = _weighted_gram(frac, outer, p)
        diag = np.where(shrink, 0.0, 1 / scales**2) * np.ones((b.shape[0], 1))
        diag[:, shrink_index] = 2 * (prior_scale**2 - bs**2) / (prior_scale**2 + bs**2) ** 2
        h = h + diag[:, :, None] * np.eye(p)[None]
        return grad, h

    scale = np.maximum(objective(np.zeros((n_genes, p)), np.arange(n_genes)), 1.0)
    converged = np.zeros(n_genes, dtype=bool)
    active = np.ones(n_genes, dtype=bool)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        b = beta[idx]
        grad, hess = derivatives(b, idx)
        done = np.abs(grad).max(axis=1) / scale[idx] < gtol
        converged[idx[done]] = True
        active[idx[done]] = False
        keep = ~done
        idx, b, grad, hess = idx[keep], b[keep], grad[keep], hess[keep]
        if idx.size == 0:
            break
        # the likelihood part is positive definite; only a negative Cauchy curvature
        # (|beta_s| > prior_scale) can make the Hessian indefinite
        shift = np.zeros(idx.size)
        neg = np.flatnonzero(np.abs(b[:, shrink_index]) > prior_scale)
        if neg.size:
            low = np.linalg.eigvalsh(hess[neg]).min(axis=1)
            shift[neg] = np.where(low < 1e-8, 1e-8 - low, 0.0)
        step = -np.linalg.solve(hess + shift[:, None, None] * np.eye(p), grad[:, :, None])[..., 0]
        f0 = objective(b, idx)
        slope = (grad * step).sum(axis=1)
        t = np.ones(idx.size)
        pending = np.ones(idx.size, dtype=bool)
        for _ in range(40):
            sub = np.flatnonzero(pending)
            f1 = objective(b[sub] + t[sub, None] * step[sub], idx[sub])
            ok = np.isfinite(f1) & (f1 <= f0[sub] + 1e-4 * t[sub] * slope[sub])
            pending[sub[ok]] = False
            if not pending.any():
                break
            t[pending] /= 2
        moved = b + t[:, None] * step
        stalled = pending | (np.abs(t[:, None] * step).max(axis=1) < 1e-14)
        beta[idx] = np.where(pending[:, None], b, moved)
        converged[idx[stalled & ~pending]] = True
        active[idx[stalled]] = False
    _, hess = derivatives(beta, np.arange(n_genes))
    return beta, _inv(hess), converged
