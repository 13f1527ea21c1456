"""Name clusters from their marker medians and a phenotype table.

Each cluster's median of each marker is compared with the marker's threshold: above is
``hi``, below is ``lo``. Assignment is hierarchical:

1. **Lineage**: the fraction of the lineage's rules the cluster satisfies is its lineage
   score; the best lineage with a score of at least ``min_lineage_score`` (default 1: every
   lineage rule holds) is chosen, else the cluster is ``unassigned``.
2. **Subset** within that lineage: the fraction of the subset's own rules satisfied; the best
   subset with a score of at least ``min_score`` wins. Otherwise the cluster gets the
   lineage's ``other`` name, or ``unassigned`` when the lineage has none.

A median within ``tolerance`` (0.25 arcsinh units) of a threshold is *dim*: it satisfies
both ``hi`` and ``lo``, so a marker a cluster expresses weakly (CD3 background on
monocytes, CD4 on monocytes) neither decides nor vetoes the lineage on its own.
Ties are broken by the mean signed margin (distance of the median from the threshold on the
right side, clipped to ±2 arcsinh units), then by table order. The reported ``score`` is the
fraction of all rules (lineage + subset) satisfied by the chosen name.

Automatic thresholds (:func:`auto_thresholds`) use Otsu's method on the cluster medians of
each marker, each median weighted by its cluster's events: medians are far less noisy than
single events (a population of a few per cent forms its own tight cluster instead of hiding in
the tail of the negative peak), and the weights keep a handful of small intermediate clusters
(doublets, dim background) from dragging the cut into the negative side. When the medians
of a marker span less than ``min_spread`` (every cluster negative, or every cluster positive)
no split exists and ``fallback`` is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from itme.core.annotate.phenotypes import PhenotypeTable
from itme.core.otsu import otsu_threshold

__all__ = ["UNASSIGNED", "assign_clusters", "auto_thresholds"]

UNASSIGNED = "unassigned"
ASSIGNMENT_COLUMNS = [
    "subset",
    "lineage",
    "score",
    "lineage_score",
    "subset_score",
    "margin",
    "failed",
]
_MARGIN_CLIP = 2.0


def auto_thresholds(
    medians: pd.DataFrame,
    weights: np.ndarray | None = None,
    *,
    min_spread: float = 1.0,
    fallback: float = 1.5,
) -> pd.DataFrame:
    """Automatic hi/lo threshold of every marker from cluster medians.

    Parameters
    ----------
    medians
        Clusters × markers medians (arcsinh scale).
    weights
        Events of each cluster (Otsu is weighted by them); equal weights when ``None``.
    min_spread
        Smallest range of the medians for which a split is sought.
    fallback
        Threshold used when the medians span less than ``min_spread``.

    Returns
    -------
    pandas.DataFrame
        Indexed by marker: ``threshold`` and ``method`` (``otsu`` or ``fallback``).
    """
    w_all = np.ones(len(medians)) if weights is None else np.asarray(weights, dtype=float)
    rows = []
    for marker in medians.columns:
        v = medians[marker].to_numpy(dtype=float)
        ok = np.isfinite(v)
        if ok.sum() >= 2 and np.ptp(v[ok]) >= min_spread:
            rows.append((marker, otsu_threshold(v[ok], w_all[ok]), "otsu"))
        else:
            rows.append((marker, float(fallback), "fallback"))
    return pd.DataFrame(rows, columns=["marker", "threshold", "method"]).set_index("marker")


def _score(
    med: pd.Series, rules: dict[str, str], thr: pd.Series, tol: float = 0.0
) -> tuple[float, float, list[str]]:
    """Fraction of rules satisfied, mean clipped margin, and the failed rules of one cluster."""
    if not rules:
        return 1.0, 0.0, []
    present = {m: s for m, s in rules.items() if m in thr.index and m in med.index}
    if not present:  # every rule is on a marker that was not measured: cannot match
        return 0.0, -_MARGIN_CLIP, [f"{m} {s} (not measured)" for m, s in rules.items()]
    rules = present
    ok, margins, failed = 0, [], []
    for marker, state in rules.items():
        m = med[marker]
        d = (m - thr[marker]) * (1.0 if state == "hi" else -1.0)
        if d > -tol:  # medians within tol of the threshold are dim: both hi and lo hold
            ok += 1
        else:
            failed.append(f"{marker} {state}")
        margins.append(float(np.clip(d, -_MARGIN_CLIP, _MARGIN_CLIP)))
    return ok / len(rules), float(np.mean(margins)), failed


def _used(rules: dict[str, str]) -> dict[str, str]:
    """The rules that constrain a marker (``any`` dropped)."""
    return {m: s for m, s in rules.items() if s != "any"}


def _best(
    candidates: list[tuple[str, float, float, list[str]]],
) -> tuple[str, float, float, list[str]]:
    # highest score, then highest margin; table order breaks remaining ties (stable sort)
    return sorted(candidates, key=lambda c: (-c[1], -c[2]))[0]


def assign_clusters(
    medians: pd.DataFrame,
    table: PhenotypeTable,
    thresholds: pd.Series,
    *,
    min_score: float = 0.8,
    min_lineage_score: float = 1.0,
    tolerance: float = 0.25,
) -> pd.DataFrame:
    """Name every cluster from its medians (see the module docstring).

    Parameters
    ----------
    medians
        Clusters × markers medians; must hold every marker the table's rules use.
    table
        The phenotype table.
    thresholds
        Marker → threshold (arcsinh scale), for every rule marker.
    min_score
        Smallest fraction of a subset's own rules a cluster must satisfy.
    min_lineage_score
        Smallest fraction of a lineage's rules a cluster must satisfy.
    tolerance
        Half-width of the dim band (arcsinh units): a median within ``tolerance`` of the
        threshold satisfies both ``hi`` and ``lo``; the margins then decide.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``medians``: ``subset, lineage, score, lineage_score, subset_score,
        margin, failed`` (the rules of the chosen name that do not hold, ``; ``-separated).
    """
    rows = []
    for _, med in medians.iterrows():
        lineages = [
            (lin.name, *_score(med, _used(lin.markers), thresholds, tolerance))
            for lin in table.lineages
        ]
        lin_name, lin_score, lin_margin, lin_failed = _best(lineages)
        # default: the lineage-level answer (unassigned, or the lineage's "other" name)
        subset, lineage, score, sub_score = UNASSIGNED, "", lin_score, 0.0
        margin, failed = lin_margin, lin_failed
        if lin_score >= min_lineage_score:
            lin = table.lineage(lin_name)
            subsets = [
                (sub.name, *_score(med, _used(sub.markers), thresholds, tolerance))
                for sub in lin.subsets
            ]
            chosen = _best(subsets) if subsets else None
            lineage = lin_name
            if chosen is not None and chosen[1] >= min_score:
                subset, sub_score, margin = chosen[0], chosen[1], chosen[2]
                score, _, failed = _score(med, table.rules(subset), thresholds, tolerance)
            else:
                subset = lin.other or UNASSIGNED
                sub_score = chosen[1] if chosen is not None else 0.0
        rows.append(
            {
                "subset": subset,
                "lineage": lineage,
                "score": float(score),
                "lineage_score": lin_score,
                "subset_score": sub_score,
                "margin": margin,
                "failed": "; ".join(failed),
            }
        )
    return pd.DataFrame(rows, index=medians.index, columns=ASSIGNMENT_COLUMNS)
