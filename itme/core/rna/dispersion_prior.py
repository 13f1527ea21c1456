"""R DESeq2's dispersion prior variance (``estimateDispersionsPriorVar``), small designs included.

- :func:`var_log_disp_ests` – R's ``varLogDispEsts``: squared MAD (R's constant 1.4826) of the
  log residuals of the gene-wise dispersions from the trend.
- :func:`dispersion_prior_variance` – ``max(varLogDispEsts - trigamma(df / 2), 0.25)``, or,
  when the residual degrees of freedom are 1 to 3, R's simulation: the log-chi-square +
  normal distribution whose histogram is closest in Kullback–Leibler divergence to the
  observed residuals, the divergence curve smoothed by R's ``loess`` (span 0.2, degree 2,
  reproduced with its k-d tree vertices and cubic Hermite interpolation, ``surface =
  "interpolate"``) and minimised on a fine grid. R seeds that simulation with
  ``set.seed(2)``; numpy cannot draw R's random numbers, so a single value agrees with R's up
  to simulation noise (the distributions over seeds agree).

Written by hand because pydeseq2 uses the trigamma formula at every df and no Python library
offers R's ``loess`` interpolation (statsmodels' lowess is local-linear and direct);
checked against R in ``tests/unit/test_rna_deseq_golden.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import polygamma

from itme._random import RngLike, as_generator

__all__ = ["MAD_CONSTANT", "dispersion_prior_variance", "var_log_disp_ests"]

MAD_CONSTANT = 1.4826  # R's mad() default (not 1 / qnorm(0.75))


def var_log_disp_ests(genewise: np.ndarray, fitted: np.ndarray, *, min_disp: float) -> float:
    """R's ``varLogDispEsts``: squared MAD of ``log(genewise / fitted)``, genes ≥ 100 × min_disp."""
    gw = np.asarray(genewise, dtype=float)
    above = gw >= 100 * min_disp
    resid = np.log(gw[above]) - np.log(np.asarray(fitted, dtype=float)[above])
    resid = resid[np.isfinite(resid)]
    return float((MAD_CONSTANT * np.median(np.abs(resid - np.median(resid)))) ** 2)


def _r_hist_density(x: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Density of R's ``hist(x, breaks)`` (right-closed bins, first bin closed on the left)."""
    idx = np.searchsorted(breaks, x, side="left")
    idx = np.where(idx == 0, 1, idx)  # include.lowest
    counts = np.bincount(idx - 1, minlength=len(breaks) - 1)[: len(breaks) - 1]
    return counts / (x.size * np.diff(breaks))


def _local_quadratic(x: np.ndarray, y: np.ndarray, x0: float, nf: int) -> tuple[float, float]:
    """Value and slope at ``x0`` of the tricube-weighted quadratic fit to the ``nf`` nearest points."""
    d = np.abs(x - x0)
    near = np.argsort(d, kind="stable")[:nf]
    h = d[near[-1]]
    w = np.sqrt(np.clip(1 - (d[near] / h) ** 3, 0, None) ** 3)
    u = x[near] - x0
    basis = np.column_stack([np.ones_like(u), u, u**2]) * w[:, None]
    coef, *_ = np.linalg.lstsq(basis, y[near] * w, rcond=None)
    return float(coef[0]), float(coef[1])


def _loess(x: np.ndarray, y: np.ndarray, at: np.ndarray, span: float) -> np.ndarray:
    """R's ``predict(loess(y ~ x, span = span))`` for one predictor (degree 2, Gaussian).

    R does not evaluate the local regressions at every point: it splits the range of ``x``
    into a k-d tree (cells of at most ``floor(n × span × 0.2)`` points, split at the median),
    fits the local quadratic at the cell vertices (value and slope) and interpolates
    between them with cubic Hermite polynomials (``surface = "interpolate"``); the same is
    done here (Cleveland, Grosse and Shyu's ``ehg124``/``ehg128``/``ehg136``).
    """
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    n = xs.size
    nf = min(n, int(np.floor(n * span + 1e-5)))
    fc = int(np.floor(n * span * 0.2))
    lo, hi = xs[0], xs[-1]
    margin = 0.005 * max(hi - lo, 1e-10 * max(abs(lo), abs(hi)) + 1e-30)
    splits: list[float] = []
    stack = [(0, n - 1, lo - margin, hi + margin)]
    while stack:
        left, right, v_lo, v_hi = stack.pop()
        if right - left + 1 <= fc:
            continue
        m = (left + right + 2) // 2 - 1  # Fortran's (l + u) / 2 on 1-based indices
        xi = xs[m]
        if xi in (v_lo, v_hi):
            continue
        splits.append(xi)
        stack += [(left, m, v_lo, xi), (m + 1, right, xi, v_hi)]
    vertices = np.array(sorted([lo - margin, hi + margin, *splits]))
    fits = np.array([_local_quadratic(xs, ys, v, nf) for v in vertices])
    at = np.asarray(at, dtype=float)
    cell = np.clip(np.searchsorted(vertices, at, side="left") - 1, 0, vertices.size - 2)
    v0, v1 = vertices[cell], vertices[cell + 1]
    h = (at - v0) / (v1 - v0)
    phi0, phi1 = (1 - h) ** 2 * (1 + 2 * h), h**2 * (3 - 2 * h)
    psi0, psi1 = h * (1 - h) ** 2, h**2 * (h - 1)
    g0, g1 = fits[cell], fits[cell + 1]
    return phi0 * g0[:, 0] + phi1 * g1[:, 0] + (psi0 * g0[:, 1] + psi1 * g1[:, 1]) * (v1 - v0)


def dispersion_prior_variance(
    genewise: np.ndarray,
    fitted: np.ndarray,
    *,
    n_samples: int,
    n_coefficients: int,
    min_disp: float,
    rng: RngLike = None,
) -> tuple[float, float]:
    """R's ``estimateDispersionsPriorVar``: variance of the log-normal dispersion prior.

    With ``df = n_samples - n_coefficients`` residual degrees of freedom:

    - ``df > 3``: ``max(varLogDispEsts - trigamma(df / 2), 0.25)``;
    - ``1 <= df <= 3``: the variance ``v`` on a grid of 200 values in [0, 8] whose
      simulated distribution ``log(chisq(df) / df) + N(0, v)`` (10,000 draws) has the
      histogram closest (Kullback–Leibler) to that of the log residuals, the divergence
      curve smoothed by R's ``loess`` (span 0.2) and minimised on 1,000
      points, floored at 0.25 (R draws with ``set.seed(2)``, here ``rng``);
    - ``df = 0``: ``varLogDispEsts``.

    Returns
    -------
    prior_var, var_log_disp_ests
    """
    var_log = var_log_disp_ests(genewise, fitted, min_disp=min_disp)
    m, p = n_samples, n_coefficients
    df = m - p
    if 1 <= df <= 3:
        gw = np.asarray(genewise, dtype=float)
        above = gw >= 100 * min_disp
        obs = np.log(gw[above]) - np.log(np.asarray(fitted, dtype=float)[above])
        breaks = np.arange(-20, 21) / 2.0
        obs = obs[(obs > breaks[0]) & (obs < breaks[-1])]
        obs_density = _r_hist_density(obs, breaks)
        gen = as_generator(rng)
        grid = np.linspace(0, 8, 200)
        kl = np.empty(grid.size)
        for i, v in enumerate(grid):
            sim = np.log(gen.chisquare(df, 10_000)) + gen.normal(0, np.sqrt(v), 10_000)
            sim = sim - np.log(df)
            sim = sim[(sim > breaks[0]) & (sim < breaks[-1])]
            sim_density = _r_hist_density(sim, breaks)
            z = np.concatenate([obs_density, sim_density])
            small = z[z > 0].min()
            kl[i] = np.sum(
                obs_density * (np.log(obs_density + small) - np.log(sim_density + small))
            )
        fine = np.linspace(0, 8, 1000)
        smooth = _loess(grid, kl, fine, span=0.2)
        return float(max(fine[np.argmin(smooth)], 0.25)), var_log
    if df > 0:
        return float(max(var_log - polygamma(1, df / 2), 0.25)), var_log
    return var_log, var_log
