"""Differential state (diffcyt-DS-LMM) and differential abundance (diffcyt-DA-edgeR's model).

Adapters over statsmodels: a linear mixed model (``MixedLM``) or ordinary least squares on
per sample × subset medians of state markers, and a negative-binomial GLM with the log
sample totals as offset on the samples × subsets counts. Benjamini–Hochberg across all tests
(statsmodels ``multipletests``). Columns follow R's conventions (``logFC``, ``pvalue``,
``padj``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import check_markers, fmt_ids, markers_of_class, matrix
from itme.core.stats.pseudobulk import group_medians
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.stats._data import padjust
from itme.stats._design import (
    coefficient_name,
    design_columns,
    resolve_contrast,
    sample_table,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_state"]

logger = logging.getLogger(__name__)

DS_METHODS = ("lmm", "lm")


def _fit_linear(data: pd.DataFrame, rhs: str, method: str, random: str | None):
    """One fit of ``y ~ rhs``; returns (result, note). Warnings become the note."""
    import statsmodels.formula.api as smf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "lmm":
            model = smf.mixedlm(f"y ~ {rhs}", data, groups=data[random])
            result = model.fit(reml=True)
        else:
            result = smf.ols(f"y ~ {rhs}", data).fit()
    notes = sorted({str(w.message).split("\n")[0][:80] for w in caught})
    return result, "; ".join(notes)


def differential_state(
    cells: AnnData,
    *,
    formula: str,
    contrast: str | Sequence[str],
    groupby: str = "subset",
    markers: Sequence[str] | None = None,
    random: str | None = "patient_id",
    method: str = "lmm",
    sample_key: str = "sample_id",
    layer: str | None = None,
    min_cells: int = 10,
    fdr: str = "bh",
    key_added: str | None = "differential_state",
) -> pd.DataFrame:
    """Test state-marker expression within each subset between conditions (diffcyt-DS-LMM).

    For every sample × subset the median of each state marker is taken on the transformed
    scale (``X``: arcsinh after :func:`itme.pp.arcsinh`); sample × subset cells with fewer
    than ``min_cells`` events are left out (counted, ItmeExclusionWarning). Each subset ×
    marker is then fitted with ``median ~ formula`` and, with ``method="lmm"``, a random
    intercept per ``random`` (patient/donor: paired and repeated designs) by statsmodels
    ``MixedLM`` (REML); ``method="lm"`` fits ordinary least squares (put pairing columns in
    the formula). The contrast's coefficient is tested with its Wald test (normal reference
    for the mixed model, as diffcyt's ``glht``; t for OLS), then Benjamini–Hochberg over all
    subset × marker tests.

    Parameters
    ----------
    cells
        Events × markers AnnData with ``obs[groupby]`` (e.g. from :func:`itme.tl.annotate`),
        ``obs[sample_key]`` and the sample-level design columns in ``obs``.
    formula
        R-style right-hand side, e.g. ``"~ condition"`` or ``"~ condition + age"``.
    contrast
        ``(column, level, reference)``, e.g. ``("condition", "BCRXL", "Ref")``, or the name of
        one coefficient (``"age"``).
    groupby
        ``obs`` column of cell groups (subsets or metaclusters).
    markers
        Markers to test (default: ``var["marker_class"] == "state"``, else all).
    random
        ``obs`` column of the random intercept (``method="lmm"``); one value per sample.
    method
        ``"lmm"`` (linear mixed model) or ``"lm"`` (ordinary least squares).
    sample_key
        ``obs`` column identifying samples.
    layer
        Layer of transformed values (default ``X``).
    min_cells
        Minimum events of a sample × subset for its median to enter the tests.
    fdr
        Multiple-testing adjustment over all tests (``"bh"`` default; see
        :func:`itme.stats.compare_groups`).
    key_added
        ``uns`` key of the record (None: nothing written).

    Returns
    -------
    DataFrame, one row per subset × marker, sorted by ``pvalue``: ``<groupby>``, ``marker``,
    ``logFC`` (the contrast's coefficient: difference of arcsinh medians, level - reference),
    ``se``, ``statistic``, ``pvalue``, ``padj``, ``n_samples`` (entering the fit),
    ``method``, ``note`` (why a test was not done, or the fitting warnings). With
    ``key_added``: ``uns[key_added]`` holds ``table`` (this DataFrame), ``medians``
    (DataFrame: sample_key, groupby, n_cells, one column per marker; NaN below
    ``min_cells``), ``formula``, ``contrast``, ``random``, ``method``, ``min_cells``,
    ``n_excluded`` (sample × subset cells below ``min_cells``), ``excluded`` (their names).

    Raises
    ------
    ItmeInputError
        A formula or contrast column missing from ``obs``, or no sample × subset with
        ``min_cells`` events.
    ItmeParameterError
        Unknown ``method``, a mixed model without ``random``, a bad contrast.
    """
    if method not in DS_METHODS:
        raise ItmeParameterError("method", DS_METHODS, method)
    if method == "lmm" and random is None:
        raise ItmeParameterError(
            "random",
            "an obs column for the random intercept with method='lmm'",
            random,
            fix="Pass random='patient_id', or method='lm'.",
        )
    if not isinstance(min_cells, int | np.integer) or min_cells < 1:
        raise ItmeParameterError("min_cells", "an integer >= 1", min_cells)
    if groupby not in cells.obs.columns:
        raise ItmeInputError(
            where=f"differential_state: obs column {groupby!r}",
            expected="cell groups (subsets) in obs",
            found=f"obs columns {fmt_ids(cells.obs.columns)}",
            fix="Run itme.tl.annotate first, or pass groupby='metacluster'.",
        )
    markers = (
        check_markers(cells, markers)
        if markers is not None
        else markers_of_class(cells, ("state",))
    )
    randoms = [random] if method == "lmm" else []
    columns = design_columns(formula, contrast, randoms)
    table = sample_table(cells.obs, sample_key, columns, what="differential_state")
    con, table = resolve_contrast(contrast, table)
    rhs = formula.strip()[1:].strip()

    samples = pd.Index(table.index)
    s_codes = samples.get_indexer(cells.obs[sample_key].astype(str))
    groups = cells.obs[groupby]
    group_names = (
        [str(c) for c in groups.cat.categories]
        if isinstance(groups.dtype, pd.CategoricalDtype)
        else sorted(groups.dropna().astype(str).unique())
    )
    g_codes = pd.Index(group_names).get_indexer(groups.astype(str))
    X = matrix(cells, layer)[:, [cells.var_names.get_loc(m) for m in markers]]
    med, counts = group_medians(X, s_codes, g_codes, len(samples), len(group_names))
    small = (counts > 0) & (counts < min_cells)
    med[counts < min_cells] = np.nan
    excluded = [
        f"{samples[i]}/{group_names[j]} ({counts[i, j]})"
        for i, j in zip(*np.nonzero(small), strict=True)
    ]
    if not (counts >= min_cells).any():
        raise ItmeInputError(
            where=f"differential_state: {sample_key} × {groupby}",
            expected=f"at least one sample × {groupby} with min_cells={min_cells} events",
            found=f"at most {int(counts.max(initial=0))} events",
            fix="Lower min_cells or use coarser groups.",
        )
    if excluded:
        warnings.warn(
            f"differential_state: {len(excluded)} sample × {groupby} cell(s) have fewer than "
            f"{min_cells} events and are left out of the tests: {fmt_ids(excluded)}",
            ItmeExclusionWarning,
            stacklevel=2,
        )

    rows = []
    for j, group in enumerate(group_names):
        for k, marker in enumerate(markers):
            y = med[:, j, k]
            ok = np.isfinite(y)
            row = {groupby: group, "marker": marker, "logFC": np.nan, "se": np.nan,
                   "statistic": np.nan, "pvalue": np.nan, "n_samples": int(ok.sum()),
                   "method": method, "note": ""}  # fmt: skip
            data = table.loc[ok].assign(y=y[ok])
            reason = _untestable(data, con, randoms)
            if reason:
                row["note"] = reason
                rows.append(row)
                continue
            try:
                result, note = _fit_linear(data, rhs, method, random)
                name = coefficient_name(con, list(result.params.index), formula)
                row.update(
                    logFC=float(result.params[name]), se=float(result.bse[name]),
                    statistic=float(result.tvalues[name]), pvalue=float(result.pvalues[name]),
                    note=note,
                )  # fmt: skip
            except (np.linalg.LinAlgError, ValueError) as err:
                if isinstance(err, ItmeParameterError):
                    raise
                row["note"] = f"fit failed: {str(err).splitlines()[0][:80]}"
            rows.append(row)
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", padjust(out["pvalue"].to_numpy(), fdr))
    out = out.sort_values(["pvalue", groupby, "marker"], na_position="last").reset_index(drop=True)
    logger.info(
        "differential_state: %d tests (%s), %d at padj < 0.05",
        int(out["pvalue"].notna().sum()), con.describe(), int((out["padj"] < 0.05).sum()),
    )  # fmt: skip
    if key_added is not None:
        long = pd.DataFrame(
            med.reshape(-1, len(markers)), columns=markers
        ).assign(**{sample_key: np.repeat(samples.to_numpy(), len(group_names)),
                    groupby: np.tile(np.asarray(group_names, dtype=object), len(samples)),
                    "n_cells": counts.reshape(-1)})  # fmt: skip
        long = long[[sample_key, groupby, "n_cells", *markers]]
        cells.uns[key_added] = {
            "table": out, "medians": long, "formula": formula,
            "contrast": [str(c) for c in ([contrast] if isinstance(contrast, str) else contrast)],
            "random": random or "", "method": method, "min_cells": int(min_cells),
            "groupby": groupby, "sample_key": sample_key, "markers": list(markers),
            "n_excluded": len(excluded), "excluded": excluded,
        }  # fmt: skip
    return out


def _untestable(data: pd.DataFrame, con, randoms: Sequence[str]) -> str:
    """Why the design cannot be fitted on these samples ('' when it can)."""
    if len(data) < 3:
        return f"fewer than 3 samples ({len(data)})"
    if con.column is not None:
        have = set(data[con.column].astype(str))
        if con.level not in have or con.reference not in have:
            return f"{con.column}: no sample of {con.level if con.level not in have else con.reference}"
    for r in randoms:
        if data[r].nunique() < 2:
            return f"fewer than 2 levels of {r}"
    return ""
