"""Kaplan–Meier, log-rank and Cox models: the lifelines adapter.

Survival data are the clinical columns ``<endpoint>_months`` + ``<endpoint>_event`` (1 = event,
0 = censored; docs/input-formats.md), read with the groups from the patients AnnData's ``obs`` (joined
once by :func:`itme.io.add_clinical`) or from a DataFrame's columns. Patients with a missing
time, event or group are excluded and reported (ItmeExclusionWarning).
:func:`kaplan_meier` stores its fit (curves, medians, numbers at risk, log-rank) in ``uns``
of an AnnData input; :func:`itme.pl.kaplan_meier` draws that, without refitting.

Conventions follow R's ``survival`` package, which survival papers quote: Kaplan–Meier
medians with the ``log`` confidence band (``survfit``'s default; ``conf_type="log-log"`` gives
lifelines'/SAS's band), Efron ties in the Cox model (lifelines' and ``coxph``'s default).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import as_list, fmt_ids, is_anndata, natural_key
from itme.core.stats.cox_zph import cox_zph
from itme.core.stats.survival import check_times, n_at_risk, quantile_time
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStatisticsWarning
from itme.stats._data import padjust
from itme.stats._survival_data import (
    check_conf,
    km_curve,
    overall_logrank,
    survival_frame,
    survival_groups,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["cox_ph", "kaplan_meier", "logrank_test"]

logger = logging.getLogger(__name__)

#: lifelines Newton options that reach R coxph's optimum: full steps (lifelines starts at 0.95),
#: converged to 1e-12 (R stops on the relative change of the log-likelihood, ~1e-9 at
#: defaults, and then takes one more step); measured on tests/golden (cox coefficients and SEs
#: within 1e-14 of R 4.2.2 / survival 3.5-3; 8.6e-6 with lifelines' defaults)
R_COXPH = {"step_size": 1.0, "precision": 1e-12}


def kaplan_meier(
    data: AnnData | pd.DataFrame,
    *,
    endpoint: str = "os",
    groupby: str | None = None,
    groups: Sequence[str] | None = None,
    times: Sequence[float] | None = None,
    conf_type: str = "log",
    conf_level: float = 0.95,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Kaplan–Meier median survival per group with its confidence interval and numbers at risk.

    The curves are fitted once (lifelines); for an AnnData input the fit is stored in
    ``uns[key_added]`` and :func:`itme.pl.kaplan_meier` draws it from there.

    Parameters
    ----------
    data
        Patients AnnData (survival columns and groups in ``obs``, see
        :func:`itme.io.add_clinical`) or a DataFrame (e.g. the clinical table).
    endpoint
        Uses columns ``<endpoint>_months`` and ``<endpoint>_event`` (e.g. ``"os"``, ``"pfs"``).
    groupby
        Group column, e.g. ``"itme_cluster"``; ``None``: all patients.
    groups
        Groups in this order (others excluded and reported).
    times
        Times (months) at which to report the numbers at risk (columns ``n_risk_<t>``).
    conf_type
        ``"log"`` (R ``survfit`` default), ``"log-log"`` (lifelines, SAS, Stata) or ``"plain"``.
    conf_level
        Confidence level of the band and of the median's interval.
    key_added
        ``uns`` entry of an AnnData input receiving the fit (default
        ``"kaplan_meier_<endpoint>"``). Ignored for a DataFrame.

    Returns
    -------
    DataFrame, one row per group: ``group``, ``n``, ``events``, ``median``, ``lower``,
    ``upper`` (the median's confidence limits, where the band crosses 0.5, NaN when it
    does not), ``conf_level``, ``conf_type``, and ``n_risk_<t>`` for each of ``times``.

    For an AnnData input, also writes ``uns[key_added]``: ``endpoint``, ``groupby`` (absent
    for all patients), ``groups`` (curve names in order, ``["all"]`` without groups),
    ``conf_type``, ``conf_level``, ``times`` (when given), ``table`` (the DataFrame
    returned), ``curves`` (DataFrame, one row per group and distinct time: ``group``,
    ``time``, ``n_risk``, ``n_event``, ``n_censor``, ``surv``, ``lower``, ``upper``) and, with
    two or more groups, the k-group log-rank test: ``logrank_statistic`` (chi-square),
    ``logrank_df``, ``logrank_pvalue``.
    """
    check_conf(conf_level, conf_type)
    at = None if times is None else check_times(times)
    if key_added is not None and (not isinstance(key_added, str) or not key_added):
        raise ItmeParameterError("key_added", "a non-empty string or None", key_added)
    frame = survival_frame(
        data, endpoint=endpoint, groupby=groupby, groups=groups, what="kaplan_meier"
    )
    rows, curves = [], []
    for name, part in survival_groups(frame):
        curve = km_curve(
            part["duration"].to_numpy(),
            part["event"].to_numpy(),
            conf_type=conf_type,
            conf_level=conf_level,
        )
        row = {
            "group": name,
            "n": len(part),
            "events": int(part["event"].sum()),
            "median": quantile_time(curve["time"], curve["surv"]),
            "lower": quantile_time(curve["time"], curve["lower"]),
            "upper": quantile_time(curve["time"], curve["upper"]),
            "conf_level": conf_level,
            "conf_type": conf_type,
        }
        if at is not None:
            risk = n_at_risk(part["duration"].to_numpy(), at)
            row.update({f"n_risk_{t:g}": int(r) for t, r in zip(at, risk, strict=True)})
        rows.append(row)
        curves.append(curve.assign(group=name))
    table = pd.DataFrame(rows)
    if is_anndata(data):
        fit = {
            "endpoint": endpoint,
            "groups": [name for name, _ in survival_groups(frame)],
            "conf_type": conf_type,
            "conf_level": float(conf_level),
            "table": table.copy(),
            "curves": pd.concat(curves, ignore_index=True)[
                ["group", "time", "n_risk", "n_event", "n_censor", "surv", "lower", "upper"]
            ],
        }
        if groupby is not None:
            fit["groupby"] = groupby
        if at is not None:
            fit["times"] = at
        if len(fit["groups"]) > 1:
            statistic, df, pvalue = overall_logrank(frame)
            fit.update(logrank_statistic=statistic, logrank_df=df, logrank_pvalue=pvalue)
        data.uns[key_added or f"kaplan_meier_{endpoint}"] = fit
    return table


def logrank_test(
    data: AnnData | pd.DataFrame,
    *,
    endpoint: str = "os",
    groupby: str = "itme_cluster",
    groups: Sequence[str] | None = None,
    pairwise: bool = False,
    fdr: str = "bh",
) -> pd.DataFrame:
    """Log-rank test across groups (lifelines), optionally every pair with an FDR adjustment.

    Parameters
    ----------
    data
        Patients AnnData (survival columns and groups in ``obs``) or a DataFrame.
    endpoint
        Uses ``<endpoint>_months`` and ``<endpoint>_event``.
    groupby
        Group column.
    groups
        Groups to compare (others excluded and reported).
    pairwise
        Also test every pair of groups.
    fdr
        Adjustment of the pairwise p-values: ``"bh"``, ``"by"``, ``"holm"``,
        ``"bonferroni"`` or ``"none"``.

    Returns
    -------
    DataFrame: first row ``comparison == "all"`` (the k-group test: ``statistic`` chi-square,
    ``df``, ``pvalue``), then one row per pair ``"a vs b"`` when ``pairwise``; ``padj`` is
    the adjusted pairwise p-value (NaN on the overall row).
    """
    from lifelines.statistics import pairwise_logrank_test

    frame = survival_frame(
        data, endpoint=endpoint, groupby=groupby, groups=groups, what="logrank_test"
    )
    cats = [str(c) for c in frame["group"].cat.categories]
    if len(cats) < 2:
        raise ItmeInputError(
            where=f"logrank_test, groupby={groupby!r}",
            expected="at least two groups",
            found=fmt_ids(cats) or "none",
        )
    statistic, df, pvalue = overall_logrank(frame)
    rows = [{"comparison": "all", "statistic": statistic, "df": df, "pvalue": pvalue}]
    if pairwise:
        g = frame["group"].astype(str).to_numpy()
        pw = pairwise_logrank_test(frame["duration"], g, frame["event"]).summary
        for (a, b), r in pw.iterrows():
            a, b = sorted((str(a), str(b)), key=cats.index)
            rows.append(
                {
                    "comparison": f"{a} vs {b}",
                    "statistic": float(r["test_statistic"]),
                    "df": 1,
                    "pvalue": float(r["p"]),
                }
            )
    out = pd.DataFrame(rows)
    padj = np.full(len(out), np.nan)
    padj[1:] = padjust(out["pvalue"].to_numpy()[1:], fdr)
    out["padj"] = padj
    return out


def _design(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    categorical: set[str],
    reference: Mapping[str, str],
) -> tuple[pd.DataFrame, list[dict]]:
    """Numeric design matrix with treatment (dummy) coding against each reference level."""
    columns, terms = {}, []
    for cov in covariates:
        col = frame[cov]
        if cov in categorical or not pd.api.types.is_numeric_dtype(col):
            if isinstance(col.dtype, pd.CategoricalDtype):
                levels = [str(v) for v in col.cat.categories if (col == v).any()]
            else:
                levels = sorted({str(v) for v in col}, key=natural_key)
            text = col.astype(str)
            ref = str(reference.get(cov, levels[0]))
            if ref not in levels:
                raise ItmeParameterError(f"reference[{cov}]", levels, ref)
            if len(levels) < 2:
                raise ItmeInputError(
                    where=f"cox_ph covariate {cov}",
                    expected="at least two levels",
                    found=fmt_ids(levels),
                )
            for level in levels:
                if level == ref:
                    continue
                name = f"{cov}[{level}]"
                columns[name] = (text == level).astype(float).to_numpy()
                terms.append(
                    {
                        "term": f"{cov}: {level} vs {ref}",
                        "column": name,
                        "covariate": cov,
                        "level": level,
                        "reference": ref,
                    }
                )
        else:
            values = col.astype(float)
            if values.nunique() < 2:
                raise ItmeInputError(
                    where=f"cox_ph covariate {cov}",
                    expected="a varying value",
                    found=f"constant {values.iloc[0]!r}",
                )
            columns[cov] = values.to_numpy()
            terms.append(
                {"term": cov, "column": cov, "covariate": cov, "level": "", "reference": ""}
            )
    return pd.DataFrame(columns, index=frame.index), terms


def cox_ph(
    data: AnnData | pd.DataFrame,
    *,
    covariates: Sequence[str],
    endpoint: str = "os",
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, str] | None = None,
    ph_test: bool = True,
    conf_level: float = 0.95,
    penalizer: float = 0.0,
) -> pd.DataFrame:
    """Cox proportional-hazards model (lifelines, Efron ties) with categorical reference levels.

    Categorical covariates (text, or listed in ``categorical`` / ``reference``) are coded
    against a reference level, as in paper 001's Table 2 ("Line of therapy: 2L vs 1L").
    Patients with a missing value are excluded and reported (complete cases). The fit is
    iterated to R ``coxph``'s optimum (Newton steps of full size, converged to 1e-12: the
    coefficients and SEs agree with R to ~1e-14 on ``tests/golden``). The
    proportional-hazards assumption is checked two ways: R's ``cox.zph`` score test per
    covariate (a factor's levels together) and globally, with R's default Kaplan–Meier time
    transform (:func:`itme.core.stats.cox_zph.cox_zph`, ``zph_*`` columns), and lifelines'
    per-column scaled Schoenfeld residual test on rank-transformed time (``ph_*`` columns).
    Covariates whose ``cox.zph`` p-value is < 0.05 raise an ItmeStatisticsWarning.

    Parameters
    ----------
    data
        Patients AnnData (survival columns and covariates such as ``itme_cluster`` in
        ``obs``) or a DataFrame.
    covariates
        Covariate columns (``obs`` or the DataFrame's).
    endpoint
        Uses ``<endpoint>_months`` and ``<endpoint>_event``.
    categorical
        Numeric covariates to treat as categorical (e.g. a cluster number).
    reference
        Reference level per categorical covariate (default: the first level, in categorical
        order or natural sort order).
    ph_test
        Add the proportional-hazards test columns.
    conf_level
        Confidence level of the hazard-ratio intervals.
    penalizer
        L2 penalty passed to lifelines (0: the plain partial likelihood, as R ``coxph``).

    Returns
    -------
    DataFrame, one row per model term: ``term``, ``covariate``, ``level``, ``reference``,
    ``coef``, ``HR``, ``lower``, ``upper`` (HR confidence limits), ``se``, ``z``, ``pvalue``,
    when ``ph_test``: ``zph_chisq``, ``zph_df``, ``zph_pvalue`` (R ``cox.zph`` of the row's
    covariate, repeated on each of its levels), ``zph_global_pvalue``, ``ph_statistic``,
    ``ph_pvalue`` (lifelines, per row); then ``n``, ``events``.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    check_conf(conf_level)
    covariates = as_list(covariates)
    if not covariates:
        raise ItmeParameterError("covariates", "at least one covariate", covariates)
    if not isinstance(penalizer, int | float) or penalizer < 0:
        raise ItmeParameterError("penalizer", "a number >= 0", penalizer)
    reference = dict(reference or {})
    categorical_set = set(categorical or []) | set(reference)
    stray = sorted(categorical_set - set(covariates))
    if stray:
        raise ItmeParameterError(
            "categorical / reference", f"names among the covariates ({fmt_ids(covariates)})", stray
        )
    frame = survival_frame(data, endpoint=endpoint, covariates=covariates, what="cox_ph")
    design, terms = _design(frame, covariates, categorical_set, reference)
    events = int(frame["event"].sum())
    if events < 10 * len(terms):
        warnings.warn(
            f"cox_ph: {events} events for {len(terms)} terms (fewer than 10 per term); "
            "estimates may be unstable",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    fit_df = design.assign(duration=frame["duration"].to_numpy(), event=frame["event"].to_numpy())
    cph = CoxPHFitter(alpha=1 - conf_level, penalizer=penalizer)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cph.fit(fit_df, duration_col="duration", event_col="event", fit_options=R_COXPH)
    except (ConvergenceError, np.linalg.LinAlgError) as err:
        raise ItmeInputError(
            where="cox_ph",
            expected="a model that converges",
            found=str(err).splitlines()[0][:200],
            fix="Use fewer covariates, merge sparse levels, or set penalizer > 0.",
        ) from err
    for w in caught:
        if issubclass(w.category, RuntimeWarning | UserWarning):
            warnings.warn(
                f"cox_ph: lifelines: {str(w.message).strip().splitlines()[0][:300]}",
                ItmeStatisticsWarning,
                stacklevel=2,
            )
    s = cph.summary
    lo_col = [c for c in s.columns if c.startswith("exp(coef) lower")][0]
    hi_col = [c for c in s.columns if c.startswith("exp(coef) upper")][0]
    rows = []
    for t in terms:
        r = s.loc[t["column"]]
        rows.append(
            {
                "term": t["term"],
                "covariate": t["covariate"],
                "level": t["level"],
                "reference": t["reference"],
                "coef": float(r["coef"]),
                "HR": float(r["exp(coef)"]),
                "lower": float(r[lo_col]),
                "upper": float(r[hi_col]),
                "se": float(r["se(coef)"]),
                "z": float(r["z"]),
                "pvalue": float(r["p"]),
            }
        )
    out = pd.DataFrame(rows)
    if ph_test:
        from lifelines.statistics import proportional_hazard_test

        names = list(dict.fromkeys(t["covariate"] for t in terms))
        columns = list(design.columns)
        zph = cox_zph(
            fit_df["duration"].to_numpy(),
            fit_df["event"].to_numpy(),
            design.to_numpy(dtype=float),
            cph.params_[columns].to_numpy(),
            terms=[
                [columns.index(t["column"]) for t in terms if t["covariate"] == n] for n in names
            ],
            term_names=names,
        )
        by_term = dict(zip(zph.terms, zip(zph.chisq, zph.df, zph.pvalue, strict=True), strict=True))
        out["zph_chisq"] = [float(by_term[t["covariate"]][0]) for t in terms]
        out["zph_df"] = [int(by_term[t["covariate"]][1]) for t in terms]
        out["zph_pvalue"] = [float(by_term[t["covariate"]][2]) for t in terms]
        out["zph_global_pvalue"] = float(by_term["GLOBAL"][2])
        ph = proportional_hazard_test(cph, fit_df, time_transform="rank").summary
        out["ph_statistic"] = [float(ph.loc[t["column"], "test_statistic"]) for t in terms]
        out["ph_pvalue"] = [float(ph.loc[t["column"], "p"]) for t in terms]
        flagged = [n for n in names if by_term[n][2] < 0.05]
        if flagged:
            warnings.warn(
                f"cox_ph: proportional-hazards assumption doubtful (R cox.zph score test "
                f"p < 0.05) for {fmt_ids(flagged)}",
                ItmeStatisticsWarning,
                stacklevel=2,
            )
    out["n"] = len(frame)
    out["events"] = events
    logger.info(
        "cox_ph: %s on %s, n=%d, %d events, concordance %.3f",
        endpoint,
        ", ".join(covariates),
        len(frame),
        events,
        cph.concordance_index_,
    )
    return out
