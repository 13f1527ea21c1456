"""Rank tests across groups with their effect sizes (scipy only).

Effect sizes:

- Kruskal–Wallis: epsilon-squared ``E²_R = H / (n - 1)`` (Tomczak & Tomczak 2014), 0..1.
- Mann–Whitney: rank-biserial correlation ``r = 2 U₁ / (n₁ n₂) - 1`` (Kerby 2014), -1..1,
  positive when the first group tends to have the larger values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from itme.errors import ItmeParameterError

__all__ = ["TESTS", "holm", "rank_test", "summary"]

TESTS = ("kruskal", "mannwhitney")


def summary(values: np.ndarray) -> tuple[int, float, float, float]:
    """``n, median, q1, q3`` of the finite values (quartiles by linear interpolation, R type 7)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0, float("nan"), float("nan"), float("nan")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return int(v.size), float(med), float(q1), float(q3)


def rank_test(samples: Sequence[np.ndarray], test: str = "kruskal") -> tuple[float, float, float]:
    """``statistic, pvalue, effect_size`` of a two-sided rank test across ``samples``.

    ``kruskal`` (any number of groups, tie-corrected H) or ``mannwhitney`` (exactly two
    groups; scipy's ``method="auto"``: exact without ties for small samples, else normal
    approximation with continuity correction, as R's ``wilcox.test``). Returns NaNs when
    every value is identical.
    """
    samples = [np.asarray(s, dtype=float) for s in samples]
    pooled = np.concatenate(samples)
    if pooled.size == 0 or np.all(pooled == pooled[0]):
        return float("nan"), float("nan"), float("nan")
    n = pooled.size
    if test == "kruskal":
        h, p = stats.kruskal(*samples)
        return float(h), float(p), float(h / (n - 1))
    if test == "mannwhitney":
        if len(samples) != 2:
            raise ItmeParameterError(
                "test",
                "'kruskal' for more than two groups (mannwhitney compares exactly two)",
                test,
            )
        x, y = samples
        u, p = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
        return float(u), float(p), float(2 * u / (x.size * y.size) - 1)
    raise ItmeParameterError("test", f"one of {TESTS}", test)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (equal to statsmodels' ``multipletests(method="holm")``).

    Written here because statsmodels' Holm branch runs ``gc.collect()`` on every call, which
    costs ~0.2 s in a process holding many objects: too slow once per feature.
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(m, 0, -1)))
    out = np.empty(m)
    out[order] = adjusted
    return out
