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
from scipy.stats import t as t_dist

from itme._adata import fmt_ids, given_or_class, matrix
from itme.core.stats.pseudobulk import group_medians
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.stats._data import padjust
from itme.stats._design import (
    coefficient_name,
    design_columns,
    formula_columns,
    resolve_contrast,
    sample_table,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_abundance", "differential_state", "formula_columns"]

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
    the formula). The contrast's coefficient is tested with its Wald statistic: for the
    mixed model against a t distribution with between-within degrees of freedom (SAS's
    DDFM=BW; diffcyt's ``glht`` uses the normal tail, which with 8 donors called nulls in
    8 of 10 simulated cohorts, scripts/bench_differential.py), for OLS its t test; then
    Benjamini–Hochberg over all subset × marker tests.

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
    markers = given_or_class(cells, markers, ("state",))
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
            ItmeExclusionWarning.listing(
                f"differential_state: {len(excluded)} sample × {groupby} cell(s) have fewer "
                f"than {min_cells} events and are left out of the tests",
                excluded,
            ),
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
                stat = float(result.tvalues[name])
                if method == "lmm":  # t with between-within df, not the normal tail
                    pvalue = 2 * float(
                        t_dist.sf(abs(stat), _between_within_df(result, name, data[random]))
                    )
                else:
                    pvalue = float(result.pvalues[name])
                row.update(
                    logFC=float(result.params[name]), se=float(result.bse[name]),
                    statistic=stat, pvalue=pvalue, note=note,
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


def _between_within_df(result, name: str, groups: pd.Series) -> int:
    """Denominator df of a mixed-model coefficient by the between-within rule (SAS DDFM=BW).

    A coefficient whose column varies within some level of the random factor (a paired or
    repeated-measures contrast) gets the residual df of the model with the factor as fixed
    effects, ``n - rank([X, groups])``; one constant within every level (a between-patient
    contrast) gets ``n_levels - rank`` of the between-level columns. At least 1.
    """
    X = np.asarray(result.model.exog, dtype=float)
    names = list(result.model.exog_names)
    codes = pd.factorize(groups.astype(str))[0]
    n_levels = int(codes.max()) + 1
    G = np.eye(n_levels)[codes]
    varies = [
        bool((pd.Series(X[:, j]).groupby(codes).nunique() > 1).any()) for j in range(X.shape[1])
    ]
    if varies[names.index(name)]:
        df = X.shape[0] - np.linalg.matrix_rank(np.hstack([X, G]))
    else:
        between = X[:, [j for j, v in enumerate(varies) if not v]]
        first = np.unique(codes, return_index=True)[1]
        df = n_levels - np.linalg.matrix_rank(between[first])
    return max(int(df), 1)


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


DA_METHODS = ("nb", "glmm")


def _fit_nb(y: np.ndarray, exog: pd.DataFrame, offset: np.ndarray):
    """Negative-binomial (NB2) GLM with a log offset (statsmodels).

    The dispersion ``alpha`` is the maximum-likelihood estimate of statsmodels'
    ``NegativeBinomial`` (floored at 1e-8: Poisson-like subsets sit on the boundary, where
    that model's Hessian is singular); the coefficients and their Wald standard errors then
    come from the GLM with that ``alpha`` fixed (IRLS), as edgeR fits its GLM given the
    dispersion.
    """
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ml = NegativeBinomial(y, exog, offset=offset, loglike_method="nb2").fit(
            disp=0, maxiter=500, method="bfgs"
        )
        alpha = float(ml.params.iloc[-1])
        alpha = max(alpha, 1e-8) if np.isfinite(alpha) else 1e-8
        family = sm.families.NegativeBinomial(alpha=alpha)
        result = sm.GLM(y, exog, family=family, offset=offset).fit(scale="X2", use_t=True)
    notes = sorted({str(w.message).split("\n")[0][:80] for w in caught})
    return result, alpha, "; ".join(notes)


def _fit_glmm(y: np.ndarray, n: np.ndarray, exog: pd.DataFrame, blocks: list[np.ndarray]):
    """Binomial GLMM (logit) on cell-level 0/1 outcomes, by statsmodels' variational Bayes.

    Every sample's ``n`` cells become ``y`` ones and ``n - y`` zeros; ``blocks`` are integer
    codes per sample of the random intercepts (the sample itself: observation-level
    overdispersion as diffcyt-DA-GLMM; optionally the patient).
    """
    import scipy.sparse as sp
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    reps = np.asarray(n, dtype=np.int64)
    rows = np.repeat(np.arange(len(n)), reps)
    endog = np.concatenate([np.r_[np.ones(a), np.zeros(b - a)] for a, b in zip(y, n, strict=True)])
    exog_rows = exog.to_numpy(dtype=float)[rows]
    mats, ident = [], []
    for k, codes in enumerate(blocks):
        m = codes.max() + 1
        mats.append(
            sp.csr_matrix(
                (np.ones(rows.size), (np.arange(rows.size), codes[rows])), shape=(rows.size, m)
            )
        )
        ident.extend([k] * m)
    exog_vc = sp.hstack(mats).tocsr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = BinomialBayesMixedGLM(
            endog, exog_rows, exog_vc, np.asarray(ident), fep_names=list(exog.columns)
        )
        result = model.fit_vb()
    notes = sorted({str(w.message).split("\n")[0][:80] for w in caught})
    return result, "; ".join(notes)


def differential_abundance(
    patients: AnnData,
    *,
    formula: str,
    contrast: str | Sequence[str],
    method: str = "nb",
    random: str | Sequence[str] | None = None,
    layer: str = "counts",
    min_count: int = 0,
    fdr: str = "bh",
    key_added: str | None = "differential_abundance",
) -> pd.DataFrame:
    """Test subset abundance between conditions on the samples × subsets counts (diffcyt-DA).

    ``method="nb"`` (diffcyt-DA-edgeR's model): per subset a negative-binomial (NB2) GLM
    ``counts ~ formula`` with ``log(sample total)`` as offset, fitted by maximum likelihood
    with its own dispersion (statsmodels ``NegativeBinomial``; edgeR would shrink the
    dispersions towards a common trend, which this does not). Paired / blocked designs put
    the patient in the formula (``"~ condition + patient_id"``). ``method="glmm"``
    (diffcyt-DA-GLMM): a logistic mixed model of each cell being in the subset, with a random
    intercept per sample (overdispersion) and optionally per ``random`` column (patient),
    fitted by statsmodels ``BinomialBayesMixedGLM`` — a variational Bayes approximation
    (mean-field Gaussian posterior, normal priors: sd 2 on the fixed effects, sd 1 on the
    log standard deviations of the random effects); its p-value is the normal tail of the
    posterior mean / posterior sd, which mean-field VB tends to make too small. Wald z tests
    of the contrast's coefficient, then Benjamini–Hochberg across subsets.

    Parameters
    ----------
    patients
        Samples × subsets AnnData of :func:`itme.tl.abundance` (counts in ``layers[layer]``)
        with the design columns in ``obs``.
    formula
        R-style right-hand side: ``"~ condition"``, ``"~ condition + patient_id"``,
        ``"~ disease_status + age"``.
    contrast
        ``(column, level, reference)`` or the name of one coefficient.
    method
        ``"nb"`` or ``"glmm"``.
    random
        ``glmm`` only: further ``obs`` column(s) with a random intercept (``"patient_id"``).
    layer
        Layer of integer counts.
    min_count
        Subsets with fewer cells over all samples are not tested (note ``"too few cells"``).
    fdr
        Multiple-testing adjustment (``"bh"`` default).
    key_added
        ``uns`` key of the record (None: nothing written).

    Returns
    -------
    DataFrame, one row per subset, sorted by ``pvalue``: ``subset``, ``logFC`` (natural-log
    fold change of the subset's proportion, level - reference, for ``nb``; log odds ratio for
    ``glmm``), ``se``, ``statistic``, ``pvalue``, ``padj``, ``dispersion`` (NB alpha, ``nb``),
    ``n_cells``, ``method``, ``note``. With ``key_added``: ``uns[key_added]`` = ``table``,
    ``formula``, ``contrast``, ``method``, ``random``.

    Raises
    ------
    ItmeInputError
        ``layers[layer]`` missing or not counts; formula columns missing from ``obs``.
    ItmeParameterError
        Unknown ``method``; a bad contrast.
    """
    if method not in DA_METHODS:
        raise ItmeParameterError("method", DA_METHODS, method)
    randoms = [] if random is None else ([random] if isinstance(random, str) else list(random))
    if randoms and method != "glmm":
        raise ItmeParameterError(
            "random", "None with method='nb'", random,
            fix="Put the patient in the formula ('~ condition + patient_id') or use method='glmm'.",
        )  # fmt: skip
    if layer not in patients.layers:
        raise ItmeInputError(
            where=f'differential_abundance: layers["{layer}"]',
            expected="samples × subsets counts (itme.tl.abundance)",
            found=f"layers {fmt_ids(list(patients.layers)) or 'none'}",
        )
    counts = matrix(patients, layer).astype(float)
    if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
        raise ItmeInputError(
            where=f'differential_abundance: layers["{layer}"]',
            expected="non-negative integer counts",
            found="negative or fractional values",
        )
    obs = patients.obs.copy()
    obs["_sample"] = patients.obs_names.astype(str)
    columns = design_columns(formula, contrast, randoms)
    table = sample_table(obs, "_sample", columns, what="differential_abundance")
    table = table.loc[patients.obs_names.astype(str)]
    con, table = resolve_contrast(contrast, table)
    import patsy

    exog = patsy.dmatrix(formula.strip()[1:].strip(), table, return_type="dataframe")
    totals = counts.sum(axis=1)
    if (totals <= 0).any():
        raise ItmeInputError(
            where="differential_abundance: samples",
            expected="at least one cell per sample",
            found=f"no cells in {fmt_ids(patients.obs_names[totals <= 0])}",
        )
    name = coefficient_name(con, list(exog.columns), formula)
    blocks = [np.arange(len(table))] + [pd.factorize(table[r])[0].astype(np.int64) for r in randoms]
    rows = []
    for j, subset in enumerate(patients.var_names.astype(str)):
        y = counts[:, j]
        row = {"subset": subset, "logFC": np.nan, "se": np.nan, "statistic": np.nan,
               "pvalue": np.nan, "dispersion": np.nan, "n_cells": int(y.sum()),
               "method": method, "note": ""}  # fmt: skip
        if y.sum() <= max(min_count, 0) or (y == 0).all():
            row["note"] = "too few cells"
            rows.append(row)
            continue
        try:
            if method == "nb":
                result, alpha, note = _fit_nb(y, exog, np.log(totals))
                est, se = float(result.params[name]), float(result.bse[name])
                row["dispersion"] = alpha
                row.update(logFC=est, se=se, statistic=float(result.tvalues[name]),
                           pvalue=float(result.pvalues[name]), note=note)  # fmt: skip
                rows.append(row)
                continue
            else:
                result, note = _fit_glmm(y.astype(np.int64), totals.astype(np.int64), exog, blocks)
                k = list(exog.columns).index(name)
                est, se = float(result.fe_mean[k]), float(result.fe_sd[k])
        except (np.linalg.LinAlgError, ValueError) as err:
            row["note"] = f"fit failed: {str(err).splitlines()[0][:80]}"
            rows.append(row)
            continue
        from scipy.stats import norm

        z = est / se if se > 0 else np.nan
        row.update(logFC=est, se=se, statistic=z, pvalue=float(2 * norm.sf(abs(z))), note=note)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", padjust(out["pvalue"].to_numpy(), fdr))
    out = out.sort_values(["pvalue", "subset"], na_position="last").reset_index(drop=True)
    logger.info(
        "differential_abundance (%s): %d subsets, %d at padj < 0.05",
        method, int(out["pvalue"].notna().sum()), int((out["padj"] < 0.05).sum()),
    )  # fmt: skip
    if key_added is not None:
        patients.uns[key_added] = {
            "table": out, "formula": formula, "method": method, "random": randoms,
            "contrast": [str(c) for c in ([contrast] if isinstance(contrast, str) else contrast)],
        }  # fmt: skip
    return out
