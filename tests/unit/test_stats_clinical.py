"""stats.clinical_table (Table 1) and the exact r x c Fisher test behind it."""

from __future__ import annotations

import functools
import math
import warnings
from itertools import product

import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from scipy import stats

import itme
import itme.stats._clinical as clinical_module
from itme.core.stats.fisher import fisher_exact_rxc, independence_test
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)


def _brute_force_fisher(table: np.ndarray) -> float:
    """Every table with the observed margins, written out independently (tiny tables only)."""
    t = np.asarray(table)
    rows, cols, n = t.sum(axis=1), t.sum(axis=0), int(t.sum())
    r, c = t.shape

    def logp(x):
        return (
            sum(math.lgamma(v + 1) for v in rows)
            + sum(math.lgamma(v + 1) for v in cols)
            - math.lgamma(n + 1)
            - sum(math.lgamma(v + 1) for v in x.ravel())
        )

    p_obs, total = logp(t), 0.0
    free = [range(int(min(rows[i], cols[j])) + 1) for i in range(r - 1) for j in range(c - 1)]
    for cells in product(*free):
        x = np.zeros((r, c), dtype=int)
        x[:-1, :-1] = np.reshape(cells, (r - 1, c - 1))
        x[:-1, -1] = rows[:-1] - x[:-1, :-1].sum(axis=1)
        x[-1] = cols - x[:-1].sum(axis=0)
        if (x >= 0).all() and x[-1].sum() == rows[-1] and logp(x) <= p_obs + 1e-7:
            total += math.exp(logp(x))
    return total


@pytest.mark.parametrize("table", [[[3, 1], [1, 3]], [[8, 2], [1, 5]], [[10, 0], [2, 7]]])
def test_fisher_2x2_matches_scipy(table):
    assert fisher_exact_rxc(np.array(table)) == pytest.approx(
        stats.fisher_exact(table).pvalue, rel=1e-9
    )


@pytest.mark.parametrize("seed", range(4))
def test_fisher_rxc_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 5, size=(3, 3))
    assert fisher_exact_rxc(table) == pytest.approx(_brute_force_fisher(table), rel=1e-9)


def test_fisher_paper_table1_disease_status_agrees_with_monte_carlo():
    """Table 1 of the paper: disease status by cluster (12/8/4, 1/0/4, 0/2/7); the paper
    prints p < 0.001 (JMP's likelihood-ratio chi-square gives 0.00066, Fisher's exact 0.00104)."""
    table = np.array([[12, 8, 4], [1, 0, 4], [0, 2, 7]])
    exact = fisher_exact_rxc(table)
    mc = stats.fisher_exact(
        table, method=stats.MonteCarloMethod(n_resamples=100_000, rng=np.random.default_rng(0))
    )
    se = np.sqrt(exact * (1 - exact) / 100_000)
    assert exact == pytest.approx(0.0010358, abs=1e-6)
    assert abs(mc.pvalue - exact) < 4 * se + 1e-5


@pytest.mark.slow
def test_fisher_matches_r_fisher_test_job_satisfaction():
    """R ?fisher.test, Job satisfaction (Agresti 2002, p. 57), 4 x 4: p-value = 0.7827."""
    job = np.array([[1, 2, 1, 0], [3, 3, 6, 1], [10, 10, 14, 9], [6, 7, 12, 11]])
    assert fisher_exact_rxc(job) == pytest.approx(0.7827, abs=5e-5)


def test_too_large_table_falls_back_to_chi_square():
    table = np.array([[30, 25, 20, 10], [22, 31, 18, 19], [15, 20, 33, 21]])
    test, stat, p = independence_test(table, max_states=100)
    ref = stats.chi2_contingency(table, correction=False)
    assert test == "chi-square"
    assert (stat, p) == pytest.approx((ref.statistic, ref.pvalue))


def _clinical():
    return pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(12)],
            "group": ["1"] * 5 + ["2"] * 4 + ["3"] * 3,
            "age": [59, 48, 68, 61, 50, 66, 60, 67, 70, np.nan, 52, 67],
            "risk": [
                "standard",
                "high",
                "standard",
                None,
                "high",
                "high",
                "high",
                "standard",
                "high",
                "standard",
                "standard",
                "high",
            ],
            "asct": [0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1],
            "os_months": np.arange(12.0),
            "os_event": [1, 0] * 6,
        }
    )


def test_table_cells_and_tests_match_independent_computations():
    df = _clinical()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        tab = itme.stats.clinical_table(df, groupby="group", digits=1)
    assert list(tab.columns[3:6]) == ["1", "2", "3"]
    assert tab.iloc[0][["1", "2", "3", "overall"]].tolist() == ["5", "4", "3", "12"]
    assert "os_months" not in set(tab["variable"])  # survival columns belong to survival analyses
    age = tab[tab["variable"] == "age"].set_index("level")
    q1, med, q3 = np.percentile([59, 48, 68, 61, 50], [25, 50, 75])
    assert age.loc["", "1"] == f"{med:.1f} ({q1:.1f}–{q3:.1f})"
    samples = [df.loc[df["group"] == g, "age"].dropna() for g in "123"]
    assert age.loc["", "pvalue"] == pytest.approx(stats.kruskal(*samples).pvalue)
    assert age.loc["missing", "3"] == "1 (33%)"
    risk = tab[tab["variable"] == "risk"].set_index("level")
    assert risk.loc["high", "1"] == "2 (40%)"  # percentages of the group, missing included
    assert risk.loc["missing", "1"] == "1 (20%)"
    counts = pd.crosstab(df["risk"], df["group"]).to_numpy()
    assert risk.loc["", "test"] == "fisher"
    assert risk.loc["", "pvalue"] == pytest.approx(_brute_force_fisher(counts))
    asct = tab[tab["variable"] == "asct"]  # a numeric 0/1 flag is categorical
    assert set(asct["level"]) == {"", "0", "1"}


def test_chi_square_fallback_is_said(monkeypatch):
    monkeypatch.setattr(
        clinical_module, "independence_test", functools.partial(independence_test, max_states=1)
    )
    with pytest.warns(ItmeStatisticsWarning, match="used Pearson's chi-square"):
        tab = itme.stats.clinical_table(_clinical(), groupby="group", variables=["risk"])
    assert tab.loc[1, "test"] == "chi-square (Fisher too large)"


def test_table1_reads_the_joined_obs_one_row_per_patient():
    adata, _ = simulate_patients(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    clinical = simulate_clinical(adata, 0, extra_patients=["P77"], drop_patients=["P02"])
    del adata.obs["disease_status"]  # it comes from the clinical table
    with pytest.warns(ItmeExclusionWarning, match=r"S02 \(patient P02\).*no sample: P77"):
        itme.io.add_clinical(adata, clinical)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = itme.stats.clinical_table(adata, groupby="itme_cluster")
    assert not [w for w in caught if issubclass(w.category, ItmeExclusionWarning)]  # joined once
    # default rows: the joined clinical columns, without the survival columns
    assert list(dict.fromkeys(tab["variable"]))[1:] == [
        "disease_status",
        "age",
        "cytogenetic_risk",
        "lines_of_therapy",
    ]
    sizes = adata.obs["itme_cluster"].value_counts()
    assert [int(tab.iloc[0][c]) for c in ("1", "2", "3")] == [sizes[c] for c in ("1", "2", "3")]
    # P02 (no clinical row) counts in its cluster, as a missing value of every variable
    p02 = adata.obs.loc["S02", "itme_cluster"]
    missing = tab[(tab["variable"] == "age") & (tab["level"] == "missing")].iloc[0]
    assert missing[p02] == f"1 ({100 / sizes[p02]:.0f}%)" and missing["overall"].startswith("1 (")
    status = tab[tab["variable"] == "disease_status"]
    assert status.iloc[0]["pvalue"] < 0.05
    # the same table from the clinical DataFrame with the clusters as a column
    frame = clinical.set_index("patient_id").join(
        adata.obs.set_index("patient_id")["itme_cluster"], how="inner"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        ref = itme.stats.clinical_table(frame, groupby="itme_cluster")
    observed = tab[tab["level"] != "missing"].iloc[1:].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        observed[["variable", "level", "test", "statistic", "pvalue"]],
        ref.iloc[1:].reset_index(drop=True)[["variable", "level", "test", "statistic", "pvalue"]],
    )
    # a patient with two samples in different clusters has no single group for Table 1
    adata.obs.loc["S03", "patient_id"] = "P04"
    adata.obs.loc["S03", "itme_cluster"] = next(
        c for c in ("1", "2", "3") if c != adata.obs.loc["S04", "itme_cluster"]
    )
    with pytest.raises(
        ItmeInputError,
        match=r"clinical_table, column itme_cluster: expected one value per patient.*P04",
    ):
        itme.stats.clinical_table(adata, groupby="itme_cluster")


def test_table1_of_an_anndata_needs_the_join():
    adata, _ = simulate_patients(0)
    with pytest.raises(ItmeParameterError, match=r"parameter 'variables'.*add_clinical"):
        itme.stats.clinical_table(adata, groupby="disease_status")
    with pytest.raises(ItmeParameterError, match=r"parameter 'variables'.*\['age'\].*add_clinical"):
        itme.stats.clinical_table(adata, groupby="disease_status", variables=["age"])
    with pytest.raises(ItmeParameterError, match=r"parameter 'groupby'.*'itme_cluster'"):
        itme.stats.clinical_table(adata, groupby="itme_cluster", variables=["disease_status"])


def test_unknown_labels_and_groups_of_one_are_reported():
    df = _clinical()
    df.loc[11, "group"] = "PCL"
    with (
        pytest.warns(ItmeExclusionWarning, match=r"group not among 1, 2, 3: P11 \(PCL\)"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.stats.clinical_table(df, groupby="group", groups=["1", "2", "3"])
    with (
        pytest.warns(ItmeExclusionWarning, match=r"fewer than 2 members \(PCL\): P11 \(PCL\)"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        tab = itme.stats.clinical_table(df, groupby="group")
    assert "PCL" not in tab.columns


def test_bad_arguments():
    df = _clinical()
    with pytest.raises(ItmeParameterError, match="parameter 'variables'.*'weight'"):
        itme.stats.clinical_table(df, groupby="group", variables=["weight"])
    with pytest.raises(ItmeParameterError, match="parameter 'groupby'"):
        itme.stats.clinical_table(df, groupby="itme_cluster")
    with pytest.raises(ItmeInputError, match="duplicated P1"):
        itme.stats.clinical_table(pd.concat([df, df.iloc[[1]]]), groupby="group")


def test_jmp_style_tests_reproduce_the_papers_table1_p_values():
    """Paper Table 1 by cluster (24/5/9): cytogenetic risk standard/high 14/8, 1/4, 6/2 ->
    p = 0.118 (likelihood-ratio chi-square); IMID refractory 11/13, 4/1, 9/0 -> p = 0.011
    (Pearson chi-square). Both are JMP's contingency tests."""
    rows = []
    for cluster, (std, high, imid_yes, imid_no) in {
        "1": (14, 8, 11, 13),
        "2": (1, 4, 4, 1),
        "3": (6, 2, 9, 0),
    }.items():
        imid = ["yes"] * imid_yes + ["no"] * imid_no
        risk = (
            ["standard"] * std + ["high"] * high + [None] * (len(imid) - std - high)
        )  # missing FISH
        rows += [{"group": cluster, "risk": r, "imid": i} for r, i in zip(risk, imid, strict=True)]
    df = pd.DataFrame(rows)
    df["patient_id"] = [f"P{i}" for i in range(len(df))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        lr = itme.stats.clinical_table(
            df, groupby="group", variables=["risk"], categorical_test="likelihood-ratio"
        )
        chi = itme.stats.clinical_table(
            df, groupby="group", variables=["imid"], categorical_test="chi-square"
        )
    assert lr.loc[1, "test"] == "likelihood-ratio"
    assert lr.loc[1, "pvalue"] == pytest.approx(0.118, abs=0.0005)
    assert chi.loc[1, "pvalue"] == pytest.approx(0.011, abs=0.0005)
    table = pd.crosstab(df["group"], df["imid"]).to_numpy()
    assert chi.loc[1, "statistic"] == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic
    )
    with pytest.raises(ItmeParameterError, match="parameter 'categorical_test'"):
        itme.stats.clinical_table(df, groupby="group", categorical_test="barnard")
