"""The clinical characteristics table by group (the paper's Table 1)."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import (
    RNASEQ_ID,
    fmt_ids,
    group_labels,
    is_anndata,
    obs_columns,
    one_row_per_patient,
)
from itme.core.stats.fisher import independence_test
from itme.core.stats.groups import rank_test, summary
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)
from itme.stats._data import clinical_frame

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["clinical_table"]

logger = logging.getLogger(__name__)

_SURVIVAL = re.compile(r".+_(months|event)$")
CATEGORICAL_TESTS = ("fisher", "chi-square", "likelihood-ratio")


def _categorical_test(counts: np.ndarray, method: str) -> tuple[str, float, float]:
    if method == "fisher":
        return independence_test(counts)
    from scipy import stats

    t = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return method, float("nan"), 1.0
    lam = "log-likelihood" if method == "likelihood-ratio" else None
    res = stats.chi2_contingency(t, correction=False, lambda_=lam)
    return method, float(res.statistic), float(res.pvalue)


def _fmt(value: float, digits: int) -> str:
    if not np.isfinite(value):
        return "NA"
    return f"{value:.{digits}f}"


def _n_pct(n: int, total: int) -> str:
    """``"12 (50%)"``."""
    return f"{int(n)} ({100 * n / total:.0f}%)"


def _median_iqr(values: np.ndarray, digits: int) -> str:
    """``"59.0 (48.0–68.0)"``: median and quartiles of the finite values (``NA`` if none)."""
    _, med, q1, q3 = summary(values)
    return f"{_fmt(med, digits)} ({_fmt(q1, digits)}–{_fmt(q3, digits)})"


def _row(
    variable: str,
    level: str,
    kind: str,
    cells: dict[str, str],
    overall: str,
    test: str = "",
    statistic: float = np.nan,
    pvalue: float = np.nan,
) -> dict:
    """One row of the table (test columns filled on a variable's first row only)."""
    return {
        "variable": variable,
        "level": level,
        "kind": kind,
        **cells,
        "overall": overall,
        "test": test,
        "statistic": statistic,
        "pvalue": pvalue,
    }


def _label(value: object) -> str:
    """Category label: ``1.0`` (a float 0/1 flag read from CSV) shows as ``1``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_categorical(series: pd.Series, forced: set[str]) -> bool:
    if series.name in forced:
        return True
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return True
    return series.dropna().nunique() <= 2


def clinical_table(
    data: AnnData | pd.DataFrame,
    *,
    groupby: str,
    variables: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    categorical_test: str = "fisher",
    min_group_size: int = 2,
    max_levels: int = 12,
    digits: int = 1,
) -> pd.DataFrame:
    """Clinical characteristics by group with a test per variable (the paper's Table 1).

    Continuous variables: median (IQR) per group, Kruskal–Wallis test. Categorical variables
    (text, bool, or numeric with at most two values such as 0/1 flags, or listed in
    ``categorical``): n (%) per level with Fisher's exact test on the r × c table (exact
    enumeration; Pearson's chi-square, with an ItmeStatisticsWarning and ``test`` saying so,
    when the table is too large). Missing values are counted in a ``missing`` row and left out
    of the tests; percentages are of the group's patients (missing included), as in the paper.

    Parameters
    ----------
    data
        The patients AnnData with the clinical table joined into ``obs``
        (:func:`itme.io.add_clinical`): one row per patient is made from its samples, which
        must agree on ``groupby`` and every variable. Or a DataFrame with one row per patient
        (``patient_id`` column or index), e.g. :func:`itme.io.read_clinical`'s table.
    groupby
        Group column of ``obs`` (e.g. ``"itme_cluster"``) or of the DataFrame (e.g.
        ``"disease_status"``).
    variables
        Variables (rows) in this order. Default: the clinical columns (for an AnnData, those
        :func:`itme.io.add_clinical` recorded in ``uns["clinical"]["columns"]``; for a
        DataFrame, every column but ``patient_id``), without ``groupby``, the survival
        columns ``<endpoint>_months`` / ``<endpoint>_event`` and the identifier column
        ``rnaseq_id``.
    categorical
        Variables to treat as categorical even if numeric.
    groups
        Groups (columns) in this order; patients in other groups are excluded and reported.
    categorical_test
        ``"fisher"`` (exact, default), ``"chi-square"`` (Pearson) or ``"likelihood-ratio"``
        (G-test). JMP, which the paper used, reports the last two for tables larger than 2 × 2:
        the paper's cytogenetic-risk p = 0.118 is the likelihood-ratio test.
    min_group_size
        Groups with fewer patients are excluded and reported.
    max_levels
        A categorical variable with more levels is skipped and reported (likely free text).
    digits
        Decimals of medians and quartiles.

    Returns
    -------
    DataFrame with columns ``variable``, ``level`` (category, ``"missing"``, or ``""``),
    ``kind`` (``"n"``, ``"continuous"``, ``"categorical"``), one column per group and
    ``overall`` holding the formatted cells ("59.0 (48.0–68.0)", "12 (50%)"), ``test``
    (``kruskal``, ``fisher``, ``chi-square (Fisher too large)``), ``statistic`` and ``pvalue``
    (on the variable's first row). The first row (``variable == "n"``) gives the group sizes.
    """
    if categorical_test not in CATEGORICAL_TESTS:
        raise ItmeParameterError("categorical_test", CATEGORICAL_TESTS, categorical_test)
    if is_anndata(data):
        if variables is None:
            record = data.uns.get("clinical")
            if not isinstance(record, dict) or "columns" not in record:
                raise ItmeParameterError(
                    "variables",
                    "obs columns (none recorded in uns['clinical'])",
                    None,
                    fix="Join the clinical table with itme.io.add_clinical(adata, clinical), "
                    "or pass variables=[...].",
                )
            variables = [
                str(c)
                for c in record["columns"]
                if str(c) not in (groupby, RNASEQ_ID) and not _SURVIVAL.match(str(c))
            ]
        variables = list(variables)
        if groupby not in data.obs.columns:
            raise ItmeParameterError(
                "groupby",
                f"a column of obs ({fmt_ids(data.obs.columns)})",
                groupby,
                fix="Clinical columns must be joined into obs first: itme.io.add_clinical.",
            )
        data = one_row_per_patient(
            obs_columns(data, [groupby, *variables], param="variables"),
            [groupby, *variables],
            what="clinical_table",
            fix="Keep one sample per patient for Table 1.",
        )
    else:
        clin = clinical_frame(data)
        if variables is None:
            variables = [
                c
                for c in clin.columns
                if c not in (groupby, RNASEQ_ID) and not _SURVIVAL.match(str(c))
            ]
        variables = list(variables)
        unknown = [v for v in variables if v not in clin.columns]
        if unknown:
            raise ItmeParameterError(
                "variables", f"columns of the table ({fmt_ids(clin.columns)})", unknown
            )
        if groupby not in clin.columns:
            raise ItmeParameterError(
                "groupby", f"a column of the table ({fmt_ids(clin.columns)})", groupby
            )
        data = clin
    labels = group_labels(
        data, groupby, groups=groups, min_size=min_group_size, what="clinical_table"
    )
    if len(labels.cat.categories) < 2:
        raise ItmeInputError(
            where=f"clinical_table, groupby={groupby!r}",
            expected="at least two groups",
            found=fmt_ids(labels.cat.categories) or "none",
        )
    data = data.loc[labels.index]
    cats = [str(c) for c in labels.cat.categories]
    forced = set(categorical or [])
    sizes = {g: int((labels == g).sum()) for g in cats}
    n_all = len(labels)
    rows = [_row("n", "", "n", {g: str(sizes[g]) for g in cats}, str(n_all))]
    skipped, fallbacks = [], []
    for var in variables:
        col = data[var]
        missing = col.isna()
        if _is_categorical(col, forced):
            levels = [
                _label(v)
                for v in (
                    col.cat.categories
                    if isinstance(col.dtype, pd.CategoricalDtype)
                    else sorted(col.dropna().unique(), key=lambda v: (str(type(v)), v))
                )
            ]
            if len(levels) > max_levels:
                skipped.append(f"{var} ({len(levels)} levels)")
                continue
            text = col.astype(object).where(~missing, None)
            text = text.map(lambda v: None if v is None else _label(v))
            counts = pd.crosstab(text, labels, dropna=True).reindex(
                index=levels, columns=cats, fill_value=0
            )
            test, stat, p = (
                _categorical_test(counts.to_numpy(), categorical_test)
                if len(levels) > 1 and counts.values.sum()
                else ("", np.nan, np.nan)
            )
            if test == "chi-square" and categorical_test == "fisher":
                fallbacks.append(var)
                test = "chi-square (Fisher too large)"
            kind = "categorical"
            rows.append(_row(var, "", kind, dict.fromkeys(cats, ""), "", test, stat, p))
            for level in levels:
                cells = {g: _n_pct(counts.loc[level, g], sizes[g]) for g in cats}
                rows.append(_row(var, level, kind, cells, _n_pct(counts.loc[level].sum(), n_all)))
        else:
            kind = "continuous"
            values = col.astype(float)
            samples = [values[(labels == g) & ~missing].to_numpy() for g in cats]
            present = [s for s in samples if s.size]
            stat, p, _ = rank_test(present, "kruskal") if len(present) >= 2 else (np.nan,) * 3
            cells = {g: _median_iqr(v, digits) for g, v in zip(cats, samples, strict=True)}
            overall = _median_iqr(values.to_numpy(), digits)
            rows.append(_row(var, "", kind, cells, overall, "kruskal", stat, p))
        if missing.any():
            cells = {g: _n_pct((missing & (labels == g)).sum(), sizes[g]) for g in cats}
            rows.append(_row(var, "missing", kind, cells, _n_pct(missing.sum(), n_all)))
    if skipped:
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"clinical_table: {len(skipped)} variable(s) with too many levels skipped "
                "(raise max_levels to keep them)",
                skipped,
            ),
            stacklevel=2,
        )
    if fallbacks:
        warnings.warn(
            f"clinical_table: Fisher's exact test too large for {fmt_ids(fallbacks)}; "
            "used Pearson's chi-square",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    logger.info(
        "clinical_table: %d variables, %d groups (%s)",
        len(variables),
        len(cats),
        ", ".join(f"{g}: {sizes[g]}" for g in cats),
    )
    return pd.DataFrame(
        rows, columns=["variable", "level", "kind", *cats, "overall", "test", "statistic", "pvalue"]
    )
