"""Fisher's exact test for r × c contingency tables (Freeman–Halton extension).

Why written here: scipy's ``fisher_exact`` is exact only for 2 × 2 tables (larger tables need a
Monte Carlo or permutation ``method``, which is random), and statsmodels has no r × c Fisher
test. The paper's Table 1 (3 clusters × up to 4 categories, ~40 patients) is small enough for
an exact answer, so we enumerate.

Algorithm: the two-sided p-value is the total null probability of the tables with the same
margins whose probability is at most that of the observed table (R's ``fisher.test`` rule,
with the same relative tolerance 1e-7). Tables are enumerated column by column; partial
tables that leave the same remaining row sums and share the same product of cell factorials
are merged (exact integer keys), which keeps the work polynomial for small tables. When the
number of merged states exceeds ``max_states`` the function gives up and returns ``None`` so
that the caller can fall back to the chi-square test and say so.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

__all__ = ["fisher_exact_rxc", "independence_test"]


def _column_fills(remaining: tuple[int, ...], total: int):
    """All vectors ``x`` with ``0 <= x_i <= remaining_i`` and ``sum(x) == total``."""
    r = len(remaining)
    if r == 1:
        if total <= remaining[0]:
            yield (total,)
        return
    rest_capacity = sum(remaining[1:])
    for first in range(max(0, total - rest_capacity), min(remaining[0], total) + 1):
        for tail in _column_fills(remaining[1:], total - first):
            yield (first, *tail)


def fisher_exact_rxc(table: np.ndarray, *, max_states: int = 3_000_000) -> float | None:
    """Two-sided exact p-value of independence for an r × c table of counts.

    Parameters
    ----------
    table
        Non-negative integer counts; rows or columns that sum to zero are dropped.
    max_states
        Work limit (partial tables visited after merging); beyond it ``None`` is returned.
        The limit is checked up front on a lower bound of the work as well, so hopeless
        tables fail fast.

    Returns
    -------
    The p-value, ``1.0`` when the table has fewer than two non-empty rows or columns, or
    ``None`` when the enumeration would exceed ``max_states``.
    """
    t = np.asarray(table, dtype=np.int64)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return 1.0
    if t.shape[0] > t.shape[1]:
        t = t.T  # fewer rows: fewer column fillings
    rows = tuple(int(v) for v in t.sum(axis=1))
    cols = sorted((int(v) for v in t.sum(axis=0)), reverse=True)  # the last (determined) is small
    n = sum(rows)
    lf = [math.lgamma(v + 1) for v in range(n + 1)]  # log-factorials
    if len(cols) > 2 and _count_fills(rows, cols[0]) * _count_fills(rows, cols[1]) > 4 * max_states:
        return None
    log_const = sum(lf[v] for v in rows) + sum(lf[v] for v in cols) - lf[n]
    threshold = sum(lf[int(v)] for v in t.ravel()) - 1e-7  # P(table) <= P(obs)(1 + 1e-7)
    pvalue = 0.0

    # partial tables are merged on (remaining row sums, sum of log-factorials rounded to 1e-9)
    states: dict[tuple[int, ...], dict[float, int]] = {rows: {0.0: 1}}
    work = 0
    for j, total in enumerate(cols[:-1]):
        nxt: dict[tuple[int, ...], dict[float, int]] = defaultdict(lambda: defaultdict(int))
        for remaining, keys in states.items():
            for fill in _column_fills(remaining, total):
                new_rem = tuple(a - b for a, b in zip(remaining, fill, strict=True))
                f = sum(lf[v] for v in fill)
                bucket = nxt[new_rem]
                for key, count in keys.items():
                    bucket[round(key + f, 9)] += count
                work += len(keys)
                if work > max_states:
                    return None
        # prune: completions of a partial table all count (add their mass) or none do
        rest = cols[j + 1 :]
        states = {}
        for remaining, keys in nxt.items():
            low, high = _completion_bounds(remaining, rest, lf)
            log_mass = lf[sum(remaining)] - sum(lf[v] for v in remaining) - sum(lf[v] for v in rest)
            kept: dict[float, int] = {}
            for key, count in keys.items():
                if key + low >= threshold:
                    pvalue += count * math.exp(log_const - key + log_mass)
                elif key + high >= threshold:
                    kept[key] = count
            if kept:
                states[remaining] = kept

    for remaining, keys in states.items():
        last = sum(lf[v] for v in remaining)
        for key, count in keys.items():
            if key + last >= threshold:
                pvalue += count * math.exp(log_const - key - last)
    return float(min(pvalue, 1.0))


def _count_fills(remaining: tuple[int, ...], total: int) -> int:
    """Number of ways to fill one column (``_column_fills``), by dynamic programming."""
    ways = np.zeros(total + 1, dtype=float)
    ways[0] = 1.0
    for cap in remaining:
        cum = np.cumsum(ways)
        shifted = np.concatenate([np.zeros(cap + 1), cum[: max(total - cap, 0)]])[: total + 1]
        ways = cum - shifted
    return int(ways[total])


def _even_split(total: int, parts: int, lf: list[float]) -> float:
    """Smallest sum of log-factorials of ``parts`` non-negative integers adding to ``total``."""
    q, r = divmod(total, parts)
    return r * lf[q + 1] + (parts - r) * lf[q]


def _completion_bounds(
    rows: tuple[int, ...], cols: list[int], lf: list[float]
) -> tuple[float, float]:
    """Bounds on the sum of log(x!) over the cells of any table with these margins.

    Lower: spread every column (or every row) as evenly as possible, ignoring the other
    margin (log-factorial is convex). Upper: put every column (or row) in a single cell
    (log-factorial is superadditive).
    """
    if not cols:
        return 0.0, 0.0
    nonzero_rows = [v for v in rows if v > 0] or [0]
    low = max(
        sum(_even_split(c, len(nonzero_rows), lf) for c in cols),
        sum(_even_split(r, len(cols), lf) for r in nonzero_rows),
    )
    high = min(sum(lf[c] for c in cols), sum(lf[r] for r in rows))
    return low, high


def independence_test(
    table: np.ndarray, *, max_states: int = 3_000_000
) -> tuple[str, float, float]:
    """Fisher's exact test of an r × c table, or Pearson's chi-square when too large.

    Returns ``(test, statistic, pvalue)`` where ``test`` is ``"fisher"`` (statistic NaN) or
    ``"chi-square"`` (the statistic, no continuity correction); callers say when the
    fallback happened.
    """
    from scipy import stats

    t = np.asarray(table, dtype=np.int64)
    p = fisher_exact_rxc(t, max_states=max_states)
    if p is not None:
        return "fisher", float("nan"), p
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    res = stats.chi2_contingency(t, correction=False)
    return "chi-square", float(res.statistic), float(res.pvalue)
