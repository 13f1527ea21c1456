"""Kaplan–Meier confidence bands and quantiles the way R's ``survival`` package reports them.

Why written here: lifelines gives the Kaplan–Meier estimate and its event table (used by
:func:`itme.stats.kaplan_meier`), but only the "log-log" (exponential Greenwood) band, while R's
``survfit`` defaults to ``conf.type = "log"``, and lifelines takes the first time the curve
reaches 0.5 as the median where R takes the midpoint of a flat stretch at exactly 0.5. Survival
papers quote R (or SAS/Stata, which use log-log), so both are offered here and the tests check
published R numbers for the ``lung`` data. The numbers at risk are read either from the
durations (:func:`n_at_risk`) or from a stored curve (:func:`n_at_risk_from_curve`, used by
the figure, which never refits).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from itme.errors import ItmeParameterError

__all__ = [
    "CONF_TYPES",
    "check_times",
    "confidence_band",
    "greenwood_sigma",
    "n_at_risk",
    "n_at_risk_from_curve",
    "quantile_time",
]

CONF_TYPES = ("log", "log-log", "plain")
_TOL = float(np.sqrt(np.finfo(float).eps))  # R: sqrt(.Machine$double.eps)


def greenwood_sigma(n_risk: np.ndarray, n_event: np.ndarray) -> np.ndarray:
    """Standard error of the cumulative hazard, ``sqrt(cumsum(d / (n (n - d))))`` (Greenwood).

    Infinite once every subject at risk has had the event (the curve reaches zero).
    """
    n = np.asarray(n_risk, dtype=float)
    d = np.asarray(n_event, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(d > 0, d / (n * (n - d)), 0.0)
    return np.sqrt(np.cumsum(term))


def confidence_band(
    surv: np.ndarray, sigma: np.ndarray, *, conf_type: str = "log", level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise confidence limits of a survival curve (NaN where undefined, as R gives NA).

    ``log``: ``S exp(±z σ)`` capped at 1 (R's default); ``log-log``:
    ``S^exp(±z σ / log S)`` (lifelines, SAS, Stata); ``plain``: ``S (1 ± z σ)`` clipped to
    [0, 1]. ``σ`` is :func:`greenwood_sigma`.
    """
    if conf_type not in CONF_TYPES:
        raise ItmeParameterError("conf_type", f"one of {CONF_TYPES}", conf_type)
    s = np.asarray(surv, dtype=float)
    sig = np.asarray(sigma, dtype=float)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log":
            lower = s * np.exp(-z * sig)
            upper = np.minimum(1.0, s * np.exp(z * sig))
        elif conf_type == "plain":
            lower = np.clip(s - z * s * sig, 0.0, 1.0)
            upper = np.clip(s + z * s * sig, 0.0, 1.0)
        else:
            log_s = np.log(s)
            lower = s ** np.exp(-z * sig / log_s)
            upper = s ** np.exp(z * sig / log_s)
            flat = s >= 1.0
            lower[flat], upper[flat] = 1.0, 1.0
    undefined = (s <= 0) | ~np.isfinite(sig)
    lower[undefined] = np.nan
    upper[undefined] = np.nan
    return lower, upper


def quantile_time(times: np.ndarray, curve: np.ndarray, p: float = 0.5) -> float:
    """Time at which a step curve first falls to ``p`` or below (NaN if it never does).

    When the curve equals ``p`` exactly over a stretch, the midpoint between the start of
    that stretch and the next drop is returned, as R's ``quantile.survfit`` does.
    """
    t = np.asarray(times, dtype=float)
    y = np.asarray(curve, dtype=float)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    hit = np.flatnonzero(y <= p + _TOL)
    if hit.size == 0:
        return float("nan")
    i = hit[0]
    if abs(y[i] - p) < _TOL:
        below = np.flatnonzero(y < y[i] - _TOL)
        below = below[below > i]
        if below.size:
            return float((t[i] + t[below[0]]) / 2)
    return float(t[i])


def n_at_risk(durations: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of subjects still under observation at each time ``t`` (``duration >= t``)."""
    d = np.sort(np.asarray(durations, dtype=float))
    return d.size - np.searchsorted(d, np.asarray(at, dtype=float), side="left")


def n_at_risk_from_curve(
    curve_times: np.ndarray, curve_n_risk: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """Numbers at risk at times ``at`` from a Kaplan–Meier event table, without the durations.

    ``curve_times`` are the distinct observed times (events and censorings, ascending) and
    ``curve_n_risk`` the number at risk at each; the number at risk at ``t`` is the one at the
    first observed time ``>= t`` (0 after the last). Equals :func:`n_at_risk` of the durations.
    """
    t = np.asarray(curve_times, dtype=float)
    n = np.asarray(curve_n_risk)
    idx = np.searchsorted(t, np.asarray(at, dtype=float), side="left")
    out = np.zeros(idx.shape, dtype=np.int64)
    inside = idx < t.size
    out[inside] = n[idx[inside]]
    return out


def check_times(times: object) -> np.ndarray:
    """``times`` (months of a numbers-at-risk table) as a float array, validated."""
    try:
        out = np.asarray(times, dtype=float).ravel()
    except (TypeError, ValueError) as err:
        raise ItmeParameterError(
            "times", "one or more non-negative numbers (months)", times
        ) from err
    if out.size == 0 or not np.isfinite(out).all() or (out < 0).any():
        raise ItmeParameterError("times", "one or more non-negative numbers (months)", times)
    return out
