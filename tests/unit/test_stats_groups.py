"""stats.compare_groups and stats.posthoc_dunn against scipy, statsmodels and published R output."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from scipy import stats
from statsmodels.stats.multitest import multipletests

import itme
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)


def _frame(groups: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(g, v) for g, vals in groups.items() for v in vals]
    return pd.DataFrame(
        {"group": [g for g, _ in rows], "value": [v for _, v in rows]},
        index=[f"p{i}" for i in range(len(rows))],
    )


def _run(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        return itme.stats.compare_groups(*args, **kwargs)


def test_kruskal_matches_published_r_example():
    """R ?kruskal.test (Hollander & Wolfe 1973, p. 116, mucociliary efficiency):
    Kruskal-Wallis chi-squared = 0.77143, df = 2, p-value = 0.68."""
    df = _frame(
        {
            "normal": [2.9, 3.0, 2.5, 2.6, 3.2],
            "obstructive": [3.8, 2.7, 4.0, 2.4],
            "asbestosis": [2.8, 3.4, 3.7, 2.2, 2.0],
        }
    )
    res = _run(df, groupby="group", features=["value"])
    assert res.loc[0, "statistic"] == pytest.approx(0.77143, abs=1e-5)
    assert res.loc[0, "pvalue"] == pytest.approx(0.68, abs=0.005)
    assert res.loc[0, "effect_size"] == pytest.approx(0.77143 / (14 - 1), abs=1e-5)


def test_mannwhitney_matches_published_r_example():
    """R ?wilcox.test: x (10 values) vs y (5): W = 35, one-sided p = 0.1272 (two-sided 0.2544)."""
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    res = _run(_frame({"x": x, "y": y}), groupby="group", features=["value"], test="mannwhitney")
    assert res.loc[0, "statistic"] == 35
    assert res.loc[0, "pvalue"] == pytest.approx(2 * 0.1272, abs=2e-4)
    assert res.loc[0, "effect_size"] == pytest.approx(2 * 35 / 50 - 1)  # rank-biserial, x larger


def test_every_column_matches_scipy_and_statsmodels():
    adata, _ = simulate_patients(0)
    rng = np.random.default_rng(0)
    adata.obs["grp"] = pd.Categorical(rng.choice(["a", "b", "c"], adata.n_obs))
    res = _run(adata, groupby="grp").set_index("feature")
    x = pd.DataFrame(adata.X, index=adata.obs_names, columns=adata.var_names)
    pvals = []
    for f in x.columns:
        samples = [x.loc[adata.obs["grp"] == g, f].to_numpy() for g in "abc"]
        h, p = stats.kruskal(*samples)
        assert res.loc[f, "statistic"] == pytest.approx(h)
        assert res.loc[f, "pvalue"] == pytest.approx(p)
        pvals.append(p)
        for g, s in zip("abc", samples, strict=True):
            q1, med, q3 = np.percentile(s, [25, 50, 75])
            assert res.loc[f, f"median_{g}"] == pytest.approx(med)
            assert res.loc[f, f"q1_{g}"] == pytest.approx(q1)
            assert res.loc[f, f"q3_{g}"] == pytest.approx(q3)
            assert res.loc[f, f"n_{g}"] == s.size
    np.testing.assert_allclose(res["padj"], multipletests(pvals, method="fdr_bh")[1])


def test_random_labels_give_no_discoveries():
    """Calibration: labels independent of the data -> (almost) nothing at q < 0.05."""
    called = 0
    for seed in range(5):
        adata, _ = simulate_patients(seed)
        adata.obs["grp"] = np.random.default_rng(seed).choice(["a", "b", "c"], adata.n_obs)
        called += int((_run(adata, groupby="grp")["padj"] < 0.05).sum())
    assert called <= 2


def test_missing_constant_and_all_missing_features():
    df = _frame({"a": [1.0, 2.0, 3.0, 4.0], "b": [5.0, 6.0, 7.0, 8.0]})
    df["const"] = 3.0
    df["empty"] = np.nan
    df["holes"] = [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, np.nan, 8.0]
    with pytest.warns(
        ItmeExclusionWarning,
        match=r"2 feature\(s\) not tested: const \(constant\), empty \(all missing\)",
    ):
        res = _run(df, groupby="group").set_index("feature")
    assert np.isnan(res.loc["const", "pvalue"]) and np.isnan(res.loc["empty", "padj"])
    assert res.loc["holes", "n"] == 6 and res.loc["holes", "n_a"] == 3
    p = stats.kruskal([1.0, 3.0, 4.0], [5.0, 6.0, 8.0]).pvalue
    assert res.loc["holes", "pvalue"] == pytest.approx(p)
    tested = res["pvalue"].dropna()
    np.testing.assert_allclose(
        res.loc[tested.index, "padj"], multipletests(tested, method="fdr_bh")[1]
    )


def test_group_of_one_patient_is_excluded_and_named():
    df = _frame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "c": [9.0]})
    with pytest.warns(ItmeExclusionWarning, match=r"fewer than 2 members \(c\): p6 \(c\)"):
        res = _run(df, groupby="group", features=["value"])
    assert "median_c" not in res.columns
    assert res.loc[0, "pvalue"] == pytest.approx(stats.kruskal([1, 2, 3], [4, 5, 6]).pvalue)


def test_wrong_group_settings_are_clear_errors():
    df = _frame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    with pytest.raises(
        ItmeParameterError, match="parameter 'test'.*'kruskal' for more than two groups"
    ):
        _run(df, groupby="group", test="mannwhitney")
    with pytest.raises(ItmeParameterError, match="parameter 'groupby'"):
        _run(df, groupby="cluster")
    with pytest.raises(ItmeInputError, match="at least two groups"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ItmeExclusionWarning)
            _run(df, groupby="group", groups=["a", "z"])
    with pytest.raises(ItmeParameterError, match="parameter 'fdr'"):
        _run(df, groupby="group", fdr="qvalue")
    with pytest.raises(ItmeParameterError, match=r"parameter 'min_group_size'.*got '2'"):
        _run(df, groupby="group", min_group_size="2")
    one = _run(df, groupby="group", features="value")  # one name, not its letters
    assert one["feature"].tolist() == ["value"]


def test_unknown_labels_outside_groups_are_reported():
    df = _frame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "PCL": [7.0, 8.0]})
    with pytest.warns(
        ItmeExclusionWarning, match=r"2 excluded, group not among a, b: p6 \(PCL\), p7 \(PCL\)"
    ):
        res = _run(df, groupby="group", groups=["a", "b"], test="mannwhitney")
    assert res.loc[0, "n"] == 6


def test_groups_from_the_joined_clinical_table_and_mismatches_reported_once():
    adata, _ = simulate_patients(0)
    clinical = simulate_clinical(adata, 0, extra_patients=["P90", "P91"], drop_patients=["P05"])
    with pytest.raises(ItmeParameterError, match=r"\['cytogenetic_risk'\].*add_clinical"):
        _run(adata, groupby="cytogenetic_risk", test="mannwhitney")
    with pytest.warns(ItmeExclusionWarning) as caught:
        itme.io.add_clinical(adata, clinical, columns=["cytogenetic_risk"])
    assert len(caught) == 1
    assert re.search(
        r"1 of 38 sample\(s\) have no row in the clinical table.*S05 \(patient P05\); "
        r"2 of 39 patient\(s\) of the clinical table have no sample: P90, P91",
        str(caught[0].message),
    )
    with pytest.warns(ItmeExclusionWarning, match=r"1 excluded, no cytogenetic_risk value: S05"):
        res = _run(adata, groupby="cytogenetic_risk", test="mannwhitney")
    assert (res["n"] == adata.n_obs - 1).all()
    risk = clinical.set_index("patient_id")["cytogenetic_risk"]
    x = adata.to_df()["T1"].drop(index="S05")
    groups = risk.reindex(adata.obs.loc[x.index, "patient_id"]).to_numpy()
    ref = stats.mannwhitneyu(x[groups == "high"], x[groups == "standard"])
    assert res.set_index("feature").loc["T1", "pvalue"] == pytest.approx(ref.pvalue)


def test_derived_source():
    adata, _ = simulate_patients(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    res = _run(adata, groupby="itme_cluster", source="derived").set_index("feature")
    assert list(res.index) == ["T_total", "CD4", "CD8", "CD4_CD8_ratio"]
    # cluster 1 carries the planted naive CD4 subsets: highest CD4 median (paper: 26.97 vs 16.3 / 7.9 %)
    medians = res.loc["CD4", ["median_1", "median_2", "median_3"]]
    assert medians.idxmax() == "median_1" and res.loc["CD4", "padj"] < 0.05


def _dunn_reference(values: np.ndarray, groups: np.ndarray, a: str, b: str) -> float:
    """Dunn (1964) z test with the tie correction, written out from its definition."""
    ranks = stats.rankdata(values)
    n = values.size
    _, ties = np.unique(values, return_counts=True)
    var = n * (n + 1) / 12 - (ties**3 - ties).sum() / (12 * (n - 1))
    na, nb = (groups == a).sum(), (groups == b).sum()
    z = (ranks[groups == a].mean() - ranks[groups == b].mean()) / np.sqrt(var * (1 / na + 1 / nb))
    return 2 * stats.norm.sf(abs(z))


def test_dunn_matches_its_definition_with_holm_adjustment():
    rng = np.random.default_rng(3)
    vals = np.round(np.r_[rng.normal(0, 1, 8), rng.normal(1, 1, 7), rng.normal(2, 1, 9)], 1)  # ties
    groups = np.array(["a"] * 8 + ["b"] * 7 + ["c"] * 9)
    df = pd.DataFrame({"group": groups, "value": vals}, index=[f"p{i}" for i in range(vals.size)])
    res = itme.stats.posthoc_dunn(df, groupby="group", features=["value"])
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    assert list(zip(res["group1"], res["group2"], strict=True)) == pairs
    ref = [_dunn_reference(vals, groups, a, b) for a, b in pairs]
    np.testing.assert_allclose(res["pvalue"], ref)
    np.testing.assert_allclose(res["padj"], multipletests(ref, method="holm")[1])


def test_holm_equals_statsmodels_including_ties():
    from itme.core.stats.groups import holm

    rng = np.random.default_rng(0)
    for _ in range(20):
        p = np.round(rng.uniform(0, 0.2, rng.integers(1, 12)), 3)  # rounded: ties happen
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    df = pd.DataFrame(
        {"group": list("aaabbbccc"), "value": np.arange(9.0), "other": np.arange(9.0)[::-1]}
    )
    res = _run(df, groupby="group", fdr="holm")
    np.testing.assert_allclose(res["padj"], multipletests(res["pvalue"], method="holm")[1])
