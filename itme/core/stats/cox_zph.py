"""R's ``cox.zph`` proportional-hazards test (survival ≥ 3.0): the score test per term and global.

Why written here: lifelines' ``proportional_hazard_test`` is the older Grambsch–Therneau
approximation (a regression of scaled Schoenfeld residuals on transformed time, one
covariate column at a time, no global test over all columns and no test per multi-column
term). Since survival 3.0, R's ``cox.zph`` instead computes the exact score test of adding
``x × g(t)`` terms to the fitted model, per model *term* (a factor with k levels is one
k−1 df test) and globally, and survival papers quote R. No Python library implements that
test, so this module reproduces R's algorithm (``cox.zph`` + its C routine ``zph1``): with the
fitted coefficients held fixed, accumulate over the event times (Efron or Breslow ties) the
score ``U`` of the time-interaction terms and the full ``2p × 2p`` information matrix, then
``chisq = U^T I^{-1} U`` with the model's own score set to 0. Agreement with R is checked to
1e-6 in ``tests/unit/test_survival_golden.py``.

The time transform ``g`` is R's: ``"km"`` (R's default) = ``1 - S(t-)``, one minus the
left-continuous Kaplan–Meier estimate of all subjects (R's ``survfitKM``), ``"rank"`` (average
ranks of the times), ``"identity"`` or ``"log"``; it is centred on its mean over the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from itme.errors import ItmeParameterError

__all__ = ["TRANSFORMS", "ZphTest", "cox_zph", "time_transform"]

TRANSFORMS = ("km", "rank", "identity", "log")


@dataclass
class ZphTest:
    """Result of :func:`cox_zph`: one row per term, then the global test."""

    terms: list[str]
    chisq: np.ndarray
    df: np.ndarray
    pvalue: np.ndarray


def time_transform(time: np.ndarray, event: np.ndarray, transform: str = "km") -> np.ndarray:
    """R ``cox.zph``'s transformed times ``g(t)`` of every subject (before centring)."""
    t = np.asarray(time, dtype=float)
    if transform == "identity":
        return t.copy()
    if transform == "log":
        return np.log(t)
    if transform == "rank":
        return stats.rankdata(t, method="average")
    if transform == "km":
        # 1 - S(t-) with S the product-limit estimate over all subjects (R's survfitKM)
        e = np.asarray(event, dtype=bool)
        uniq = np.unique(t)
        at_risk = t.size - np.searchsorted(np.sort(t), uniq, side="left")
        deaths = np.bincount(np.searchsorted(uniq, t[e]), minlength=uniq.size)
        surv = np.cumprod(1.0 - deaths / at_risk)
        before = np.searchsorted(uniq, t, side="left")  # unique times strictly below t
        return 1.0 - np.concatenate([[1.0], surv])[before]
    raise ItmeParameterError("transform", TRANSFORMS, transform)


def cox_zph(
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    beta: np.ndarray,
    *,
    terms: Sequence[Sequence[int]] | None = None,
    term_names: Sequence[str] | None = None,
    transform: str = "km",
    ties: str = "efron",
) -> ZphTest:
    """Score test of proportional hazards for a fitted Cox model, as R's ``cox.zph``.

    Parameters
    ----------
    time, event
        Follow-up time and event indicator (1 = event) per subject.
    x
        Subjects × columns covariate matrix of the fitted model (dummy-coded factors).
    beta
        The fitted coefficients (R's ``coef(fit)``, lifelines' ``params_``).
    terms
        Column indices of each model term (a factor's dummy columns together); default one
        term per column (R's ``terms = FALSE``).
    term_names
        Names of the terms (default ``x0``, ``x1``, ...).
    transform
        Time transform: ``"km"`` (R's default), ``"rank"``, ``"identity"`` or ``"log"``.
    ties
        ``"efron"`` (R's and lifelines' default) or ``"breslow"``.

    Returns
    -------
    ZphTest
        ``terms`` (the term names, then ``"GLOBAL"``), ``chisq``, ``df`` and ``pvalue``.
    """
    if transform not in TRANSFORMS:
        raise ItmeParameterError("transform", TRANSFORMS, transform)
    if ties not in ("efron", "breslow"):
        raise ItmeParameterError("ties", ["efron", "breslow"], ties)
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    xm = np.asarray(x, dtype=float)
    if xm.ndim == 1:
        xm = xm[:, None]
    n, p = xm.shape
    b = np.asarray(beta, dtype=float).reshape(p)
    groups = [list(g) for g in terms] if terms is not None else [[j] for j in range(p)]
    names = list(term_names) if term_names is not None else [f"x{j}" for j in range(p)]
    if len(names) != len(groups):
        raise ItmeParameterError("term_names", f"{len(groups)} names", list(names))

    g = time_transform(t, e, transform)
    g = g - g[e == 1].mean()
    xc = xm - xm.mean(axis=0)
    risk = np.exp(xc @ b)
    u = np.zeros(2 * p)
    imat = np.zeros((2 * p, 2 * p))
    denom = 0.0
    a = np.zeros(p)
    cmat = np.zeros((p, p))
    order = np.argsort(t, kind="stable")
    uniq, starts = np.unique(t[order], return_index=True)
    bounds = np.append(starts, n)
    for k in range(uniq.size - 1, -1, -1):  # backwards in time
        who = order[bounds[k] : bounds[k + 1]]
        dead = who[e[who] == 1]
        cens = who[e[who] == 0]
        r_c = risk[cens]
        denom += r_c.sum()
        a += r_c @ xc[cens]
        cmat += (xc[cens] * r_c[:, None]).T @ xc[cens]
        nd = dead.size
        if nd == 0:
            continue
        gw = g[dead[0]]
        r_d = risk[dead]
        denom2 = r_d.sum()
        a2 = r_d @ xc[dead]
        cmat2 = (xc[dead] * r_d[:, None]).T @ xc[dead]
        xsum = xc[dead].sum(axis=0)
        u[:p] += xsum
        u[p:] += gw * xsum
        steps = [(1.0, float(nd))] if ties == "breslow" else [(1.0 / nd, 1.0)] * nd
        for frac, wt in steps:
            denom += denom2 * frac
            a += a2 * frac
            cmat += cmat2 * frac
            mean = a / denom
            u[:p] -= wt * mean
            u[p:] -= gw * wt * mean
            block = wt * (cmat / denom - np.outer(mean, mean))
            imat[:p, :p] += block
            imat[:p, p:] += gw * block
            imat[p:, p:] += gw * gw * block
    imat[p:, :p] = imat[:p, p:].T

    chisq, df = [], []
    for cols in groups:
        kk = list(range(p)) + [p + j for j in cols]
        uu = np.concatenate([np.zeros(p), u[[p + j for j in cols]]])
        chisq.append(float(uu @ np.linalg.solve(imat[np.ix_(kk, kk)], uu)))
        df.append(len(cols))
    uu = np.concatenate([np.zeros(p), u[p:]])
    chisq.append(float(uu @ np.linalg.solve(imat, uu)))
    df.append(p)
    chisq_a, df_a = np.array(chisq), np.array(df)
    return ZphTest(
        terms=[*names, "GLOBAL"], chisq=chisq_a, df=df_a, pvalue=stats.chi2.sf(chisq_a, df_a)
    )
