"""Survival statistics against published R `survival` results on data shipped with lifelines.

References
----------
- ``lung`` (NCCTG lung cancer; survival::lung, shipped as lifelines.datasets.load_lung with
  status recoded 0/1). R: ``survfit(Surv(time, status) ~ 1, lung)`` prints n = 228, events = 165,
  median 310, 0.95LCL 285, 0.95UCL 363; ``~ sex`` prints sex=1: 138, 112, 270 (212, 310) and
  sex=2: 90, 53, 426 (348, 550); ``survdiff(Surv(time, status) ~ sex, lung)``:
  Chisq = 10.3 on 1 degree of freedom, p = 0.001 (0.00131).
- ``Rossi`` recidivism data (lifelines.datasets.load_rossi). Fox & Weisberg, "Cox
  Proportional-Hazards Regression for Survival Data in R", appendix to An R Companion to
  Applied Regression: ``coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro +
  prio, data = Rossi)`` gives coef (se): finyes -0.37942 (0.19138), age -0.05744 (0.02200),
  raceother -0.31390 (0.30799), wexpyes -0.14980 (0.21222), marnot married 0.43370
  (0.38187), paroyes -0.08487 (0.19576), prio 0.09150 (0.02865); p for fin 0.04742, age 0.00903,
  prio 0.00140. The appendix also finds non-proportional hazards for age (cox.zph).
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung, load_rossi
from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test
from lifelines.utils import median_survival_times
from statsmodels.stats.multitest import multipletests

import itme
from itme.core.stats.survival import n_at_risk, n_at_risk_from_curve, quantile_time
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)


@pytest.fixture
def lung() -> pd.DataFrame:
    raw = load_lung()
    return pd.DataFrame(
        {
            "patient_id": [f"L{i}" for i in range(len(raw))],
            "os_months": raw["time"],
            "os_event": raw["status"],
            "sex": raw["sex"].astype(str),
            "age": raw["age"],
            "ph.ecog": raw["ph.ecog"],
        }
    )


@pytest.fixture
def rossi() -> pd.DataFrame:
    r = load_rossi().rename(columns={"week": "os_months", "arrest": "os_event"})
    r["patient_id"] = [f"R{i}" for i in range(len(r))]
    r["fin"] = r["fin"].map({0: "no", 1: "yes"})
    r["race"] = r["race"].map({1: "black", 0: "other"})
    r["wexp"] = r["wexp"].map({0: "no", 1: "yes"})
    r["mar"] = r["mar"].map({1: "married", 0: "not married"})
    r["paro"] = r["paro"].map({0: "no", 1: "yes"})
    return r


def test_kaplan_meier_medians_match_r_survfit(lung):
    overall = itme.stats.kaplan_meier(lung)
    assert overall.loc[0, ["n", "events"]].tolist() == [228, 165]
    assert overall.loc[0, ["median", "lower", "upper"]].tolist() == [310, 285, 363]
    by_sex = itme.stats.kaplan_meier(lung, groupby="sex").set_index("group")
    assert by_sex.loc["1", ["n", "events", "median", "lower", "upper"]].tolist() == [
        138,
        112,
        270,
        212,
        310,
    ]
    assert by_sex.loc["2", ["n", "events", "median", "lower", "upper"]].tolist() == [
        90,
        53,
        426,
        348,
        550,
    ]


def test_log_log_band_matches_lifelines(lung):
    ours = itme.stats.kaplan_meier(lung, groupby="sex", conf_type="log-log").set_index("group")
    for sex, part in lung.groupby("sex"):
        kmf = KaplanMeierFitter().fit(part["os_months"], part["os_event"])
        lo, hi = median_survival_times(kmf.confidence_interval_).to_numpy().ravel()
        assert ours.loc[sex, ["lower", "upper"]].tolist() == [lo, hi]
        assert ours.loc[sex, "median"] == kmf.median_survival_time_


def test_numbers_at_risk_and_r_median_rule(lung):
    res = itme.stats.kaplan_meier(lung, groupby="sex", times=[0, 100, 365.25]).set_index("group")
    for sex, part in lung.groupby("sex"):
        for t in (0, 100, 365.25):
            assert res.loc[sex, f"n_risk_{t:g}"] == int((part["os_months"] >= t).sum())
    # survfit(Surv(1:4) ~ 1) has median 2.5: the curve is exactly 0.5 between t = 2 and t = 3
    df = pd.DataFrame(
        {"patient_id": list("abcd"), "os_months": [1.0, 2, 3, 4], "os_event": [1, 1, 1, 1]}
    )
    assert itme.stats.kaplan_meier(df).loc[0, "median"] == 2.5
    assert quantile_time(np.array([1.0, 2.0]), np.array([0.8, 0.6])) != quantile_time(
        np.array([1.0, 2.0]), np.array([0.8, 0.5])
    )


def test_logrank_matches_r_survdiff_and_lifelines(lung):
    res = itme.stats.logrank_test(lung, groupby="sex")
    assert res.loc[0, "statistic"] == pytest.approx(10.3, abs=0.05)
    assert res.loc[0, "pvalue"] == pytest.approx(0.00131, abs=1e-5)
    lung = lung.dropna(subset=["ph.ecog"])
    lung = lung[lung["ph.ecog"] < 3]  # one patient with ECOG 3
    res = itme.stats.logrank_test(lung, groupby="ph.ecog", pairwise=True)
    ref = multivariate_logrank_test(lung["os_months"], lung["ph.ecog"], lung["os_event"])
    assert res.loc[0, ["statistic", "pvalue"]].tolist() == pytest.approx(
        [ref.test_statistic, ref.p_value]
    )
    assert res.loc[0, "df"] == 2
    pw = pairwise_logrank_test(
        lung["os_months"], lung["ph.ecog"].astype(str), lung["os_event"]
    ).summary
    np.testing.assert_allclose(res["pvalue"].iloc[1:], pw["p"].to_numpy())
    np.testing.assert_allclose(res["padj"].iloc[1:], multipletests(pw["p"], method="fdr_bh")[1])


def test_cox_matches_fox_weisberg_with_reference_levels(rossi):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.cox_ph(
            rossi,
            covariates=["fin", "age", "race", "wexp", "mar", "paro", "prio"],
            reference={"race": "black", "mar": "married"},
        )
    res = res.set_index("term")
    published = {
        "fin: yes vs no": (-0.37942, 0.19138),
        "age": (-0.05744, 0.02200),
        "race: other vs black": (-0.31390, 0.30799),
        "wexp: yes vs no": (-0.14980, 0.21222),
        "mar: not married vs married": (0.43370, 0.38187),
        "paro: yes vs no": (-0.08487, 0.19576),
        "prio": (0.09150, 0.02865),
    }
    assert list(res.index) == list(published)
    for term, (coef, se) in published.items():
        assert res.loc[term, "coef"] == pytest.approx(coef, abs=5e-5)
        assert res.loc[term, "se"] == pytest.approx(se, abs=5e-5)
        assert res.loc[term, "HR"] == pytest.approx(np.exp(res.loc[term, "coef"]))
    assert res.loc["fin: yes vs no", "pvalue"] == pytest.approx(0.04742, abs=5e-5)
    assert res.loc["prio", "pvalue"] == pytest.approx(0.00140, abs=5e-5)
    assert res.loc["age", "lower"] < res.loc["age", "HR"] < res.loc["age", "upper"] < 1
    assert (res["n"] == 432).all() and (res["events"] == 114).all()


def test_reversed_reference_flips_the_hazard_ratio(rossi):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        a = itme.stats.cox_ph(rossi, covariates=["fin", "age", "prio"], ph_test=False).set_index(
            "covariate"
        )
        b = itme.stats.cox_ph(
            rossi, covariates=["fin", "age", "prio"], reference={"fin": "yes"}, ph_test=False
        ).set_index("covariate")
    assert b.loc["fin", "term"] == "fin: no vs yes"
    assert b.loc["fin", "HR"] == pytest.approx(1 / a.loc["fin", "HR"], rel=1e-6)
    assert b.loc["fin", "pvalue"] == pytest.approx(a.loc["fin", "pvalue"], rel=1e-6)


def test_proportional_hazards_check_flags_age(rossi):
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    with pytest.warns(
        ItmeStatisticsWarning, match=r"proportional-hazards assumption doubtful.* for age"
    ):
        res = itme.stats.cox_ph(rossi, covariates=["fin", "age", "prio"]).set_index("term")
    df = load_rossi()[["week", "arrest", "fin", "age", "prio"]]
    cph = CoxPHFitter().fit(df, "week", "arrest")
    ref = proportional_hazard_test(cph, df, time_transform="rank").summary
    assert res.loc["age", "ph_pvalue"] == pytest.approx(ref.loc["age", "p"], rel=1e-6)
    assert res.loc["fin: yes vs no", "ph_pvalue"] == pytest.approx(ref.loc["fin", "p"], rel=1e-6)
    assert res.loc["age", "ph_pvalue"] < 0.05 < res.loc["prio", "ph_pvalue"]


def test_multilevel_categorical_reference_like_paper_001(rossi):
    rossi["line"] = np.select([rossi["prio"] <= 1, rossi["prio"] <= 3], ["1L", "2L"], "≥3L")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.cox_ph(
            rossi, covariates=["line", "fin"], reference={"line": "1L"}, ph_test=False
        )
    assert res["term"].tolist()[:2] == ["line: 2L vs 1L", "line: ≥3L vs 1L"]
    # dummy coding by hand gives the same model
    from lifelines import CoxPHFitter

    design = pd.DataFrame(
        {
            "l2": (rossi["line"] == "2L") * 1.0,
            "l3": (rossi["line"] == "≥3L") * 1.0,
            "fin": (rossi["fin"] == "yes") * 1.0,
            "T": rossi["os_months"],
            "E": rossi["os_event"],
        }
    )
    ref = CoxPHFitter().fit(design, "T", "E", fit_options=itme.stats._survival.R_COXPH).summary
    np.testing.assert_allclose(res["coef"], ref["coef"].to_numpy(), rtol=1e-6)
    with pytest.raises(
        ItmeParameterError,
        match=r"parameter 'reference\[line\]': expected 1L, 2L, ≥3L, got 'first'",
    ):
        itme.stats.cox_ph(rossi, covariates=["line"], reference={"line": "first"})


def test_survival_reads_the_joined_obs_and_stores_the_fit(tmp_path):
    adata, _ = simulate_patients(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    clinical = simulate_clinical(adata, 0, extra_patients=["P88"])
    clinical.loc[clinical["patient_id"] == "P04", "os_months"] = np.nan
    with pytest.raises(ItmeParameterError, match=r"\['os_months', 'os_event'\].*add_clinical"):
        itme.stats.kaplan_meier(adata, groupby="itme_cluster")
    with pytest.warns(ItmeExclusionWarning, match="no sample: P88"):
        itme.io.add_clinical(adata, clinical, columns=["os_months", "os_event", "age"])
    with pytest.warns(
        ItmeExclusionWarning,
        match=r"1 patient\(s\) with missing values excluded: P04 \(duration\)",
    ):
        km = itme.stats.kaplan_meier(adata, groupby="itme_cluster", times=[0, 12])
    assert km["n"].sum() == adata.n_obs - 1
    # the fit is stored once, with what the table and the figure need
    fit = adata.uns["kaplan_meier_os"]
    pd.testing.assert_frame_equal(fit["table"], km)
    assert fit["groups"] == ["1", "2", "3"] and fit["groupby"] == "itme_cluster"
    frame = adata.obs.drop(index="S04")
    for group, curve in fit["curves"].groupby("group"):
        part = frame[frame["itme_cluster"] == group]
        kmf = KaplanMeierFitter().fit(part["os_months"], part["os_event"])
        np.testing.assert_allclose(
            curve["surv"], kmf.survival_function_.reindex(curve["time"]).iloc[:, 0]
        )
    with pytest.warns(ItmeExclusionWarning, match="P04"):
        lr = itme.stats.logrank_test(adata, groupby="itme_cluster").iloc[0]
    assert fit["logrank_pvalue"] == lr["pvalue"] and fit["logrank_statistic"] == lr["statistic"]
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad").uns["kaplan_meier_os"]
    pd.testing.assert_frame_equal(back["curves"], fit["curves"], check_dtype=False)
    assert back["logrank_pvalue"] == fit["logrank_pvalue"] and list(back["times"]) == [0, 12]
    # a DataFrame input returns the table and stores nothing anywhere
    table = itme.stats.kaplan_meier(clinical.dropna(subset=["os_months"]), key_added="x")
    assert table.loc[0, "n"] == len(clinical) - 1
    # bad values are errors naming the patient
    bad = clinical.copy()
    bad.loc[0, "os_event"] = 2
    with pytest.warns(ItmeExclusionWarning, match="P88"):
        itme.io.add_clinical(adata, bad, columns=["os_event"], overwrite=True)
    with (
        pytest.raises(
            ItmeInputError, match=r"os_event: expected 1 \(event\) or 0 \(censored\), found P00: 2"
        ),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ItmeExclusionWarning)
        itme.stats.logrank_test(adata)
    with pytest.raises(ItmeParameterError, match="parameter 'conf_type'"):
        itme.stats.kaplan_meier(clinical, conf_type="arcsin")


def test_bad_times_covariate_names_and_patients_in_two_groups_are_errors(rossi):
    with pytest.raises(ItmeParameterError, match=r"parameter 'times': expected one or more non"):
        itme.stats.kaplan_meier(rossi, times=[0, -6])
    with pytest.raises(ItmeParameterError, match=r"parameter 'times'"):
        itme.stats.kaplan_meier(rossi, times=["one year"])
    with pytest.raises(
        ItmeParameterError, match=r"parameter 'categorical / reference'.*got \['fni'\]"
    ):
        itme.stats.cox_ph(rossi, covariates=["fin", "age"], reference={"fni": "no"})
    with pytest.raises(ItmeParameterError, match=r"parameter 'penalizer': expected a number >= 0"):
        itme.stats.cox_ph(rossi, covariates=["age"], penalizer=-0.1)
    one = itme.stats.cox_ph(rossi, covariates="prio", ph_test=False)  # one name, not letters
    assert one["term"].tolist() == ["prio"]
    # two samples of one patient in different groups cannot both count in a survival curve
    twice = pd.concat(
        [rossi.head(20), rossi.head(1).assign(fin="yes" if rossi.loc[0, "fin"] == "no" else "no")]
    )
    twice.index = [f"s{i}" for i in range(len(twice))]
    with pytest.raises(
        ItmeInputError,
        match=r"logrank_test, column fin: expected one value per patient, found several for R0",
    ):
        itme.stats.logrank_test(twice, groupby="fin")
    same = pd.concat([rossi.head(20), rossi.head(1)])
    same.index = [f"s{i}" for i in range(len(same))]
    res = itme.stats.kaplan_meier(same, groupby="fin")
    assert res["n"].sum() == 20  # the repeated sample counts once


@pytest.mark.parametrize("seed", range(5))
def test_numbers_at_risk_from_a_stored_curve_equal_those_from_the_durations(seed):
    """The figure reads the stored event table; it must count what the durations count."""
    rng = np.random.default_rng(seed)
    durations = np.round(rng.exponential(20, 40), 0)  # ties
    events = rng.integers(0, 2, 40)
    et = KaplanMeierFitter().fit(durations, events).event_table
    at = np.r_[0, rng.uniform(0, durations.max() * 1.2, 15), durations[:5]]
    np.testing.assert_array_equal(
        n_at_risk_from_curve(et.index.to_numpy(), et["at_risk"].to_numpy(), at),
        n_at_risk(durations, at),
    )


def test_cox_zph_columns_agree_with_the_core_test_and_flag_nonproportional_hazards():
    """A covariate whose effect reverses over time is flagged by R's cox.zph test."""
    rng = np.random.default_rng(3)
    n = 300
    x = rng.integers(0, 2, n)
    # x = 1 doubles the hazard before t = 1 and halves it after
    t_early = rng.exponential(1 / np.where(x == 1, 2.0, 1.0))
    t_late = 1 + rng.exponential(1 / np.where(x == 1, 0.3, 1.0))
    time = np.where(t_early < 1, t_early, t_late)
    frame = pd.DataFrame(
        {"x": x.astype(float), "os_months": time, "os_event": np.ones(n, dtype=int)}
    )
    with pytest.warns(ItmeStatisticsWarning, match="cox.zph"):
        res = itme.stats.cox_ph(frame, covariates=["x"])
    assert res.loc[0, "zph_pvalue"] < 0.001 and res.loc[0, "zph_df"] == 1
    # one covariate: the global test is that covariate's test
    assert res.loc[0, "zph_global_pvalue"] == pytest.approx(res.loc[0, "zph_pvalue"])
