"""Comparisons of features (subset frequencies, derived T-cell measures, ...) between groups."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import feature_table, fmt_ids, group_labels, obs_columns
from itme.core.stats.groups import TESTS, rank_test, summary
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)
from itme.stats._data import padjust

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["compare_groups", "posthoc_dunn"]

logger = logging.getLogger(__name__)

P_ADJUST = ("holm", "bh", "bonferroni", "none")


def _prepare(
    patients: AnnData | pd.DataFrame,
    groupby: str,
    features: Sequence[str] | None,
    source: str,
    groups: Sequence[str] | None,
    min_group_size: int,
    what: str,
) -> tuple[pd.DataFrame, pd.Series]:
    """Features and group labels of the rows with a group, at least two groups left."""
    table = feature_table(patients, features=features, source=source)
    frame = obs_columns(patients, [groupby], param="groupby")
    labels = group_labels(frame, groupby, groups=groups, min_size=min_group_size, what=what)
    if len(labels.cat.categories) < 2:
        raise ItmeInputError(
            where=f"{what}, groupby={groupby!r}",
            expected="at least two groups with enough members",
            found=f"groups {fmt_ids(labels.cat.categories) or 'none'}",
            fix="Check the group column, or lower min_group_size.",
        )
    return table.loc[labels.index], labels


def compare_groups(
    patients: AnnData | pd.DataFrame,
    *,
    groupby: str,
    features: Sequence[str] | None = None,
    source: str = "X",
    groups: Sequence[str] | None = None,
    test: str = "kruskal",
    fdr: str = "bh",
    min_group_size: int = 2,
) -> pd.DataFrame:
    """Test every feature for a difference between groups (the paper's Fig. 3 statistics).

    Kruskal–Wallis (any number of groups; the paper's test) or Mann–Whitney (two groups),
    two-sided, each feature on its non-missing values, then a false-discovery-rate
    adjustment over the features that could be tested (Benjamini–Hochberg by default, via
    statsmodels). Pairwise follow-up for more than two groups: :func:`posthoc_dunn`.

    Parameters
    ----------
    patients
        The patients AnnData of :func:`itme.tl.abundance` (features from ``X`` = % of CD45+,
        or from an ``obsm`` DataFrame, see ``source``), or a DataFrame (numeric columns).
    groupby
        Column of ``obs`` (or of the DataFrame) holding the groups, e.g. ``"itme_cluster"``,
        or ``"disease_status"`` once the clinical table is joined (:func:`itme.io.add_clinical`).
    features
        Features to test (default: all ``var_names`` but ``"unassigned"``, which is not a
        subset; or all numeric columns).
    source
        ``"X"`` or the name of an ``obsm`` DataFrame, e.g. ``"derived"`` for total T cells,
        CD4, CD8 and the CD4:CD8 ratio.
    groups
        Groups to compare, in this order (default: all). Other labels are excluded and reported.
    test
        ``"kruskal"`` or ``"mannwhitney"`` (exactly two groups).
    fdr
        ``"bh"`` (Benjamini–Hochberg), ``"by"``, ``"holm"``, ``"bonferroni"`` or ``"none"``.
    min_group_size
        Groups with fewer members are excluded with an ItmeExclusionWarning (default 2: a group
        of one patient has no spread to compare).

    Returns
    -------
    DataFrame, one row per feature: ``feature``, ``test``, ``statistic`` (H or U₁), ``pvalue``,
    ``padj``, ``effect_size`` (epsilon-squared for Kruskal–Wallis, rank-biserial r for
    Mann–Whitney, positive when the first group is larger), ``n``, ``note`` (why a feature
    was not tested: ``constant``, ``all missing``, ``fewer than 2 groups with data``), and per
    group ``g``: ``n_<g>``, ``median_<g>``, ``q1_<g>``, ``q3_<g>``.
    """
    if test not in TESTS:
        raise ItmeParameterError("test", TESTS, test)
    table, labels = _prepare(
        patients, groupby, features, source, groups, min_group_size, "compare_groups"
    )
    cats = list(labels.cat.categories)
    if test == "mannwhitney" and len(cats) != 2:
        raise ItmeParameterError(
            "test",
            "'kruskal' for more than two groups (or pass groups=[a, b])",
            test,
            fix=f"{groupby} has {len(cats)} groups: {fmt_ids(cats)}",
        )
    rows = []
    for feature in table.columns:
        values = table[feature]
        row: dict[str, object] = {"feature": feature, "test": test}
        samples, stats_by_group = [], {}
        for g in cats:
            v = values[labels == g].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            stats_by_group[g] = summary(v)
            if v.size:
                samples.append(v)
        n = int(sum(s.size for s in samples))
        note = ""
        if n == 0:
            note = "all missing"
        elif len(samples) < 2 or (test == "mannwhitney" and len(samples) != 2):
            note = "fewer than 2 groups with data"
        elif np.all(np.concatenate(samples) == samples[0][0]):
            note = "constant"
        stat = p = eff = float("nan")
        if not note:
            stat, p, eff = rank_test(samples, test)
        row.update(statistic=stat, pvalue=p, effect_size=eff, n=n, note=note)
        for g in cats:
            gn, med, q1, q3 = stats_by_group[g]
            row.update({f"n_{g}": gn, f"median_{g}": med, f"q1_{g}": q1, f"q3_{g}": q3})
        rows.append(row)
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", padjust(out["pvalue"].to_numpy(), fdr))
    untested = out.loc[out["note"] != "", ["feature", "note"]]
    if len(untested):
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"compare_groups: {len(untested)} feature(s) not tested",
                [f"{f} ({r})" for f, r in untested.itertuples(index=False)],
            ),
            stacklevel=2,
        )
    small = [g for g in cats if (labels == g).sum() < 5]
    if small:
        warnings.warn(
            f"compare_groups: group(s) {fmt_ids(small)} have fewer than 5 members; rank tests "
            "have little power and p-values are coarse",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    logger.info(
        "compare_groups: %d features, %d groups, %d at padj < 0.05",
        len(out),
        len(cats),
        int((out["padj"] < 0.05).sum()),
    )
    return out


def posthoc_dunn(
    patients: AnnData | pd.DataFrame,
    *,
    groupby: str,
    features: Sequence[str] | None = None,
    source: str = "X",
    groups: Sequence[str] | None = None,
    p_adjust: str = "holm",
    min_group_size: int = 2,
) -> pd.DataFrame:
    """Dunn's pairwise test after Kruskal–Wallis (scikit-posthocs), for every feature.

    Parameters
    ----------
    patients
        Patients AnnData or DataFrame, as for :func:`compare_groups`.
    groupby
        Group column (``obs`` or the DataFrame's).
    features
        Features (default all); usually the ones with ``padj < 0.05`` in :func:`compare_groups`.
    source
        ``"X"`` or an ``obsm`` DataFrame name.
    groups
        Groups to compare, in order (default all).
    p_adjust
        Adjustment over the pairs of one feature: ``"holm"`` (default), ``"bh"``,
        ``"bonferroni"`` or ``"none"``.
    min_group_size
        Smaller groups are excluded and reported.

    Returns
    -------
    DataFrame, one row per feature and pair: ``feature``, ``group1``, ``group2``, ``pvalue``
    (Dunn's tie-corrected z test, two-sided), ``padj`` (within the feature's pairs).
    """
    import scikit_posthocs as sp

    if p_adjust not in P_ADJUST:
        raise ItmeParameterError("p_adjust", P_ADJUST, p_adjust)
    table, labels = _prepare(
        patients, groupby, features, source, groups, min_group_size, "posthoc_dunn"
    )
    cats = list(labels.cat.categories)
    rows, skipped = [], []
    for feature in table.columns:
        long = pd.DataFrame(
            {"value": table[feature].to_numpy(), "group": labels.astype(str).to_numpy()}
        )
        long = long[np.isfinite(long["value"])]
        present = [g for g in cats if (long["group"] == g).any()]
        if len(present) < 2 or long["value"].nunique() < 2:
            skipped.append(feature)
            continue
        raw = sp.posthoc_dunn(long, val_col="value", group_col="group", p_adjust=None)
        pairs = [(g1, g2) for i, g1 in enumerate(present) for g2 in present[i + 1 :]]
        p_raw = np.array([float(raw.loc[g1, g2]) for g1, g2 in pairs])
        p_adj = padjust(p_raw, p_adjust)
        for (g1, g2), p, q in zip(pairs, p_raw, p_adj, strict=True):
            rows.append(
                {"feature": feature, "group1": g1, "group2": g2, "pvalue": p, "padj": float(q)}
            )
    if skipped:
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"posthoc_dunn: {len(skipped)} feature(s) constant, missing or in one group "
                "only, not tested",
                skipped,
            ),
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=["feature", "group1", "group2", "pvalue", "padj"])
