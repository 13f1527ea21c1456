"""Correlations between continuous variables and marker-expression comparisons between groups.

:func:`correlate` is the paper's "Pearson's correlation between continuous variables" (with
Spearman as the rank alternative), BH-adjusted. :func:`marker_medians` and
:func:`compare_marker` reproduce the analysis of paper 000 (Kuroki et al. 2025): a marker's
expression (e.g. CD38) in one population (plasma cells), summarised per sample by its
median, compared between patient groups (1q gain/amp vs wild type) with Mann–Whitney or
Kruskal–Wallis, and correlated (Spearman) with another variable (IL6R).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from itme._adata import (
    PATIENT,
    as_list,
    feature_table,
    fmt_ids,
    is_anndata,
    obs_columns,
    require_columns,
)
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.stats._data import padjust
from itme.stats._groups import compare_groups

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["compare_marker", "correlate", "marker_medians"]

logger = logging.getLogger(__name__)

METHODS = ("pearson", "spearman")


def _variables(data: Any, names: Sequence[str], source: str) -> pd.DataFrame:
    """Numeric columns ``names`` from the features (``source``) or ``obs``/the DataFrame."""
    if is_anndata(data) and source == "X":
        available = set(data.var_names.astype(str))
    elif is_anndata(data):
        if source not in data.obsm:
            raise ItmeParameterError(
                "source", f"'X' or an obsm key ({fmt_ids(list(data.obsm))})", source
            )
        available = set(map(str, getattr(data.obsm[source], "columns", [])))
    else:
        available = set()
    from_features = [n for n in names if n in available]
    others = [n for n in names if n not in available]
    parts = []
    if from_features:
        parts.append(feature_table(data, features=from_features, source=source))
    if others:
        parts.append(obs_columns(data, others, param="x, y")[others])
    frame = pd.concat(parts, axis=1, join="inner") if len(parts) > 1 else parts[0]
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ItmeInputError(
            where="correlate", expected="numeric variables", found=f"non-numeric {fmt_ids(bad)}"
        )
    return frame[list(dict.fromkeys(names))].astype(float)


def correlate(
    data: AnnData | pd.DataFrame,
    *,
    x: Sequence[str],
    y: Sequence[str] | None = None,
    method: str = "pearson",
    source: str = "X",
    fdr: str = "bh",
    min_n: int = 3,
) -> pd.DataFrame:
    """Pearson or Spearman correlation for pairs of variables, with a multiple-testing adjustment.

    Parameters
    ----------
    data
        Patients AnnData or a DataFrame.
    x
        Variables: subsets (``var_names``), columns of the ``source`` ``obsm`` DataFrame,
        ``obs`` columns (clinical ones once joined by :func:`itme.io.add_clinical`), or
        DataFrame columns.
    y
        Second set of variables: every ``x`` × ``y`` pair is tested. ``None``: every pair
        within ``x``.
    method
        ``"pearson"`` (the paper's) or ``"spearman"``.
    source
        ``"X"`` or the name of an ``obsm`` DataFrame (e.g. ``"derived"``).
    fdr
        ``"bh"``, ``"by"``, ``"holm"``, ``"bonferroni"`` or ``"none"``, over all pairs.
    min_n
        Pairs with fewer complete observations are not tested (reported in ``note``).

    Returns
    -------
    DataFrame, one row per pair: ``x``, ``y``, ``method``, ``n`` (complete pairs),
    ``estimate`` (r or rho), ``pvalue`` (two-sided), ``padj``, ``note`` (why untested:
    ``constant``, ``fewer than min_n pairs``).
    """
    from scipy import stats

    if method not in METHODS:
        raise ItmeParameterError("method", METHODS, method)
    x = as_list(x)
    y = None if y is None else as_list(y)
    pairs = (
        [(a, b) for i, a in enumerate(x) for b in x[i + 1 :]]
        if y is None
        else [(a, b) for a in x for b in y if a != b]
    )
    if not pairs:
        raise ItmeParameterError("x, y", "at least one pair of distinct variables", (x, y))
    frame = _variables(data, list(dict.fromkeys([*x, *(y or [])])), source)
    # numpy columns: a pandas selection and dropna per pair cost more than the test itself
    column = dict(zip(frame.columns, frame.to_numpy(dtype=float).T, strict=True))
    test = stats.pearsonr if method == "pearson" else stats.spearmanr
    rows = []
    for a, b in pairs:
        complete = ~(np.isnan(column[a]) | np.isnan(column[b]))
        va, vb = column[a][complete], column[b][complete]
        n = int(complete.sum())
        est = p = np.nan
        note = ""
        if n < min_n:
            note = "fewer than min_n pairs"
        elif np.unique(va).size < 2 or np.unique(vb).size < 2:
            note = "constant"
        else:
            res = test(va, vb)
            est, p = float(res.statistic), float(res.pvalue)
        rows.append(
            {"x": a, "y": b, "method": method, "n": n, "estimate": est, "pvalue": p, "note": note}
        )
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", padjust(out["pvalue"].to_numpy(), fdr))
    untested = out[out["note"] != ""]
    if len(untested):
        warnings.warn(
            f"correlate: {len(untested)} pair(s) not tested ({_untested_summary(frame, untested)}"
            "); they are the rows with a note",
            ItmeExclusionWarning,
            stacklevel=2,
        )
    return out


def _untested_summary(frame: pd.DataFrame, untested: pd.DataFrame) -> str:
    """Why pairs were not tested, by variable rather than by pair (a short message)."""
    parts = []
    constant = [v for v in frame.columns if frame[v].dropna().nunique() < 2]
    involved = set(untested["x"]) | set(untested["y"])
    constant = [v for v in constant if v in involved]
    if constant:
        parts.append(f"{len(constant)} constant variable(s): {fmt_ids(constant, limit=8)}")
    rest = untested[~(untested["x"].isin(constant) | untested["y"].isin(constant))]
    if len(rest):
        pairs = [f"{a}~{b} ({r})" for a, b, r in rest[["x", "y", "note"]].itertuples(index=False)]
        parts.append(f"{len(rest)} other pair(s): {fmt_ids(pairs, limit=5)}")
    return "; ".join(parts)


def marker_medians(
    cells: AnnData,
    *,
    population: str,
    markers: Sequence[str] | None = None,
    population_key: str = "subset",
    sample_key: str = "sample_id",
    layer: str | None = None,
) -> pd.DataFrame:
    """Median expression of markers in one population, per sample.

    Parameters
    ----------
    cells
        Cells AnnData (events × channels, arcsinh-transformed ``X``) with ``obs[population_key]``
        and ``obs[sample_key]`` (and ``obs["patient_id"]`` when present).
    population
        The population (a value of ``obs[population_key]``), e.g. ``"plasma cells"``.
    markers
        Markers (``var_names``); default all.
    population_key
        ``obs`` column naming the population of each event (``"subset"`` after ``tl.annotate``).
    sample_key
        ``obs`` column naming the sample of each event.
    layer
        Layer to read instead of ``X``.

    Returns
    -------
    DataFrame indexed by sample: one column per marker (median), ``n_events`` (events of the
    population), ``patient_id``. Samples without any event of the population are kept with
    NaN medians and reported (ItmeExclusionWarning).
    """
    for key in (population_key, sample_key):
        if key not in cells.obs.columns:
            raise ItmeParameterError(
                "population_key/sample_key", f"obs columns ({fmt_ids(cells.obs.columns)})", key
            )
    pop = cells.obs[population_key].astype(str)
    if population not in set(pop):
        raise ItmeParameterError(
            "population",
            f"a value of obs[{population_key!r}] ({fmt_ids(sorted(set(pop)))})",
            population,
        )
    markers = list(cells.var_names.astype(str) if markers is None else markers)
    unknown = [m for m in markers if m not in set(cells.var_names.astype(str))]
    if unknown:
        raise ItmeParameterError("markers", "var_names of cells", unknown)
    idx = [cells.var_names.get_loc(m) for m in markers]
    mat = cells.layers[layer] if layer is not None else cells.X
    mask = (pop == population).to_numpy()
    sub = mat[mask][:, idx]
    sub = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub)
    samples = cells.obs[sample_key].astype(str)
    frame = pd.DataFrame(sub, columns=markers)
    frame["_sample"] = samples.to_numpy()[mask]
    med = frame.groupby("_sample")[markers].median()
    all_samples = pd.Index(sorted(samples.unique()), name=sample_key)
    med = med.reindex(all_samples)
    med["n_events"] = frame.groupby("_sample").size().reindex(all_samples).fillna(0).astype(int)
    if PATIENT in cells.obs.columns:
        mapping = cells.obs.groupby(sample_key, observed=True)[PATIENT].first().astype(str)
        med[PATIENT] = mapping.reindex(all_samples).to_numpy()
    else:
        med[PATIENT] = all_samples.to_numpy()
    empty = med.index[med["n_events"] == 0]
    if len(empty):
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"marker_medians: {len(empty)} sample(s) have no {population!r} events", empty
            ),
            stacklevel=2,
        )
    return med


def compare_marker(
    cells: AnnData,
    *,
    population: str,
    markers: Sequence[str],
    groupby: str,
    groups: Sequence[str] | None = None,
    test: str = "auto",
    correlate_with: str | None = None,
    population_key: str = "subset",
    sample_key: str = "sample_id",
    fdr: str = "bh",
) -> pd.DataFrame:
    """Compare a marker's median expression in a population between patient groups (paper 000).

    Per sample, the median of each marker in ``population`` (:func:`marker_medians`); then
    Mann–Whitney (two groups) or Kruskal–Wallis (more) between the groups
    (:func:`compare_groups`), and optionally Spearman's correlation with another variable.

    Parameters
    ----------
    cells
        Cells AnnData with ``obs[population_key]``, ``obs[sample_key]`` and ``obs["patient_id"]``.
    population
        Population to summarise, e.g. ``"plasma cells"``.
    markers
        Markers to compare, e.g. ``["CD38"]``.
    groupby
        Group column of ``cells.obs``: a sample-sheet column, or a clinical one (e.g.
        ``"gain_1q"``) joined by :func:`itme.io.add_clinical`. Taken per sample.
    groups
        Groups in order (others excluded and reported).
    test
        ``"auto"`` (Mann–Whitney for two groups, Kruskal–Wallis for more), ``"mannwhitney"``
        or ``"kruskal"``.
    correlate_with
        Optional continuous variable of ``cells.obs`` (e.g. ``"IL6R"``, joined from the
        clinical table) for a Spearman correlation with each marker's median.
    population_key
        ``obs`` column with the population of each event.
    sample_key
        ``obs`` column with the sample of each event.
    fdr
        Adjustment over the markers.

    Returns
    -------
    The :func:`compare_groups` table (one row per marker) with ``population`` and, with
    ``correlate_with``, ``spearman_rho``, ``spearman_pvalue``, ``spearman_n``.
    """
    med = marker_medians(
        cells,
        population=population,
        markers=markers,
        population_key=population_key,
        sample_key=sample_key,
    )
    med = med[med["n_events"] > 0]
    wanted = [c for c in dict.fromkeys((groupby, correlate_with)) if c]
    require_columns(cells, wanted, param="groupby / correlate_with")
    frame = med[list(markers)].copy()
    for c in wanted:
        per_sample = cells.obs.groupby(sample_key, observed=True)[c].first()
        frame[c] = per_sample.reindex(med.index).to_numpy()
    frame[PATIENT] = med[PATIENT]
    n_groups = frame[groupby].dropna().nunique() if groups is None else len(groups)
    if test == "auto":
        test = "mannwhitney" if n_groups == 2 else "kruskal"
    out = compare_groups(
        frame, groupby=groupby, features=list(markers), groups=groups, test=test, fdr=fdr
    )
    out.insert(1, "population", population)
    if correlate_with:
        cor = correlate(frame, x=list(markers), y=[correlate_with], method="spearman", fdr="none")
        out["spearman_rho"] = cor["estimate"].to_numpy()
        out["spearman_pvalue"] = cor["pvalue"].to_numpy()
        out["spearman_n"] = cor["n"].to_numpy()
    return out
