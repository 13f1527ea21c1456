"""Survival numerics against R's survival 3.5-3 (golden files in tests/golden/survival).

- Kaplan–Meier (lifelines' estimate, itme's R-style Greenwood "log" band and median),
  log-rank (lifelines) — exact to rounding;
- Cox models: lifelines ``CoxPHFitter`` with ``fit_options={"step_size": 1.0,
  "precision": 1e-12}`` (pure Newton steps, R's relative log-likelihood stopping rule
  ``r_precision = 1e-9`` left at lifelines' default) reproduces R's ``coxph`` coefficients and
  standard errors to ~1e-14; lifelines' defaults (damped steps, ``precision = 1e-7``) are off
  by up to ~1e-5;
- ``cox.zph`` score test per term and global: :func:`itme.core.stats.cox_zph.cox_zph`.

Inputs: the simulated cohort's clinical table and R's ``lung`` (tests/golden/inputs).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers.golden import INPUTS, SURVIVAL

from itme.core.stats.cox_zph import cox_zph, time_transform
from itme.core.stats.survival import confidence_band, greenwood_sigma, quantile_time
from itme.errors import ItmeParameterError

#: lifelines options that make CoxPHFitter reproduce R's coxph (see the module docstring)
R_COXPH_FIT_OPTIONS = {"step_size": 1.0, "precision": 1e-12}
DATASETS = ["sim_os", "sim_pfs", "lung"]


def _inputs(name: str):
    """Time, event, dummy-coded design, terms and the group column of a golden model."""
    if name == "lung":
        d = pd.read_csv(INPUTS / "lung.tsv", sep="\t").dropna().reset_index(drop=True)
        x = np.column_stack([d["age"], (d["sex"] == 2).astype(float), d["ph_ecog"]])
        return d["time"], d["event"], x, [[0], [1], [2]], ["age", "sex", "ph_ecog"], d["sex"]
    d = pd.read_csv(INPUTS / "simcohort_clinical.tsv", sep="\t", dtype={"itme_cluster": str})
    d = d.dropna(subset=["itme_cluster"]).reset_index(drop=True)
    endpoint = "os" if name == "sim_os" else "pfs"
    cols = [(d["itme_cluster"] == "2") * 1.0, (d["itme_cluster"] == "3") * 1.0, d["age"]]
    terms, names = [[0, 1], [2]], ["itme_cluster", "age"]
    if name == "sim_pfs":
        cols.append((d["sex"] == "M") * 1.0)
        terms.append([3])
        names.append("sex")
    x = np.column_stack(cols).astype(float)
    return d[f"{endpoint}_months"], d[f"{endpoint}_event"], x, terms, names, d["itme_cluster"]


def _golden(file: str, name: str) -> pd.DataFrame:
    table = pd.read_csv(SURVIVAL / file, sep="\t", dtype={"group": str})
    return table[table["dataset"] == name]


def _lifelines_cox(name: str, fit_options=None):
    from lifelines import CoxPHFitter

    time, event, x, *_ = _inputs(name)
    frame = pd.DataFrame(x, columns=[f"c{j}" for j in range(x.shape[1])])
    frame["time"], frame["event"] = time.to_numpy(float), event.to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' low-events warnings on the small cohort
        return CoxPHFitter().fit(frame, "time", "event", fit_options=fit_options)


@pytest.mark.parametrize("name", DATASETS)
def test_kaplan_meier_curve_and_median_match_r(name):
    from lifelines import KaplanMeierFitter

    time, event, *_, group = _inputs(name)
    curves = _golden("km.tsv", name)
    medians = _golden("km_median.tsv", name).set_index("group")
    for level, part in curves.groupby("group"):
        sel = group.astype(str).to_numpy() == level
        kmf = KaplanMeierFitter().fit(time[sel], event[sel])
        et = kmf.event_table.loc[part["time"].to_numpy()]
        surv = kmf.survival_function_.loc[part["time"].to_numpy()].iloc[:, 0].to_numpy()
        sigma = greenwood_sigma(et["at_risk"].to_numpy(), et["observed"].to_numpy())
        lower, upper = confidence_band(surv, sigma, conf_type="log")
        np.testing.assert_array_equal(et["at_risk"], part["n_risk"])
        np.testing.assert_allclose(surv, part["surv"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(sigma, part["std_err"], rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(lower, part["lower"], rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(upper, part["upper"], rtol=1e-10, equal_nan=True)
        t = part["time"].to_numpy()
        row = medians.loc[level]
        np.testing.assert_allclose(
            [quantile_time(t, surv), quantile_time(t, lower), quantile_time(t, upper)],
            row[["median", "lower", "upper"]].to_numpy(dtype=float),
            equal_nan=True,
        )


@pytest.mark.parametrize("name", DATASETS)
def test_logrank_matches_r(name):
    from lifelines.statistics import multivariate_logrank_test

    time, event, *_, group = _inputs(name)
    ref = _golden("logrank.tsv", name).iloc[0]
    res = multivariate_logrank_test(time, group.astype(str), event)
    assert res.degrees_of_freedom == ref["df"]
    np.testing.assert_allclose(res.test_statistic, ref["chisq"], rtol=1e-10)
    np.testing.assert_allclose(res.p_value, ref["p"], rtol=1e-8)


@pytest.mark.parametrize("name", DATASETS)
def test_lifelines_cox_with_r_options_matches_coxph(name):
    ref = _golden("coxph.tsv", name)
    fit = _lifelines_cox(name, R_COXPH_FIT_OPTIONS)
    coef, se = fit.params_.to_numpy(), fit.standard_errors_.to_numpy()
    assert np.abs(coef - ref["coef"].to_numpy()).max() <= 1e-6
    assert np.abs(se - ref["se"].to_numpy()).max() <= 1e-6
    np.testing.assert_allclose(fit.summary["z"], ref["z"], atol=1e-6)
    np.testing.assert_allclose(fit.summary["p"], ref["p"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(fit.log_likelihood_, ref["loglik"].iloc[0], rtol=1e-12)
    # and the converged optimum (R refitted with eps = 1e-14) is within 1e-8
    assert np.abs(coef - ref["coef_tight"].to_numpy()).max() <= 1e-8


def test_lifelines_defaults_are_not_within_1e6_of_coxph():
    """Why the options are needed: on the simulated cohort lifelines' defaults stop early."""
    ref = _golden("coxph.tsv", "sim_os")
    fit = _lifelines_cox("sim_os")
    assert np.abs(fit.params_.to_numpy() - ref["coef"].to_numpy()).max() > 1e-6


@pytest.mark.parametrize("transform", ["km", "rank", "identity"])
@pytest.mark.parametrize("name", DATASETS)
def test_cox_zph_matches_r(name, transform):
    time, event, x, terms, names, _ = _inputs(name)
    ref = _golden("coxzph.tsv", name)
    ref = ref[ref["transform"] == transform]
    beta = _golden("coxph.tsv", name)["coef"].to_numpy()
    res = cox_zph(time, event, x, beta, terms=terms, term_names=names, transform=transform)
    assert res.terms == ref["term"].tolist()
    np.testing.assert_array_equal(res.df, ref["df"])
    np.testing.assert_allclose(res.chisq, ref["chisq"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.pvalue, ref["p"], rtol=1e-6, atol=1e-12)


def test_cox_zph_with_lifelines_coefficients_matches_r():
    """End to end as itme will run it: lifelines fit (R options) → cox_zph."""
    time, event, x, terms, names, _ = _inputs("lung")
    fit = _lifelines_cox("lung", R_COXPH_FIT_OPTIONS)
    res = cox_zph(time, event, x, fit.params_.to_numpy(), terms=terms, term_names=names)
    ref = _golden("coxzph.tsv", "lung")
    ref = ref[ref["transform"] == "km"]
    np.testing.assert_allclose(res.chisq, ref["chisq"], rtol=1e-6)


def test_cox_zph_detects_non_proportional_hazards():
    """A covariate whose effect reverses over time is flagged; a constant effect is not."""
    rng = np.random.default_rng(5)
    n = 400
    x = rng.integers(0, 2, n).astype(float)
    early = rng.exponential(np.where(x == 1, 0.3, 1.0))  # strong early effect
    late = 0.5 + rng.exponential(np.where(x == 1, 3.0, 1.0))  # reversed after t = 0.5
    time = np.where(early < 0.5, early, late)
    event = np.ones(n)
    res = cox_zph(time, event, x, np.array([0.0]))
    assert res.pvalue[-1] < 1e-6
    calm = rng.exponential(np.where(x == 1, 0.5, 1.0))
    res = cox_zph(calm, event, x, np.array([np.log(2.0)]))
    assert res.pvalue[-1] > 0.01


def test_time_transforms_and_errors():
    t = np.array([1.0, 2.0, 2.0, 3.0])
    e = np.array([1, 0, 1, 1])
    np.testing.assert_allclose(time_transform(t, e, "rank"), [1, 2.5, 2.5, 4])
    # left-continuous KM: S(1-) = 1, S(2-) = 3/4, S(3-) = 3/4 * 2/3
    np.testing.assert_allclose(time_transform(t, e, "km"), [0, 0.25, 0.25, 0.5])
    with pytest.raises(ItmeParameterError, match="transform"):
        cox_zph(t, e, t[:, None], [0.0], transform="loglog")
    with pytest.raises(ItmeParameterError, match="ties"):
        cox_zph(t, e, t[:, None], [0.0], ties="exact")


@pytest.mark.parametrize("name", ["sim_os", "sim_pfs"])
def test_itme_cox_ph_matches_coxph_and_cox_zph(name):
    """itme.stats.cox_ph itself (factor coding, fit options, zph columns) against R."""
    import itme

    d = pd.read_csv(INPUTS / "simcohort_clinical.tsv", sep="\t", dtype={"itme_cluster": str})
    endpoint = "os" if name == "sim_os" else "pfs"
    covariates = ["itme_cluster", "age"] + (["sex"] if name == "sim_pfs" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few events per term; excluded missing clusters
        res = itme.stats.cox_ph(
            d, covariates=covariates, endpoint=endpoint, reference={"itme_cluster": "1"}
        )
    ref = _golden("coxph.tsv", name)
    assert np.abs(res["coef"].to_numpy() - ref["coef"].to_numpy()).max() <= 1e-6
    assert np.abs(res["se"].to_numpy() - ref["se"].to_numpy()).max() <= 1e-6
    zph = _golden("coxzph.tsv", name)
    zph = zph[zph["transform"] == "km"].set_index("term")
    for _, row in res.iterrows():
        np.testing.assert_allclose(row["zph_chisq"], zph.loc[row["covariate"], "chisq"], rtol=1e-6)
        assert row["zph_df"] == zph.loc[row["covariate"], "df"]
    np.testing.assert_allclose(res["zph_global_pvalue"].iloc[0], zph.loc["GLOBAL", "p"], rtol=1e-6)
