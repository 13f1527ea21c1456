"""stats.compare_cytokines: log10 concentrations across iTME clusters and disease status."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from scipy import stats
from statsmodels.stats.multitest import multipletests

import itme
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
    ItmeStatisticsWarning,
)


def _cohort(tmp_path, seed=0, shift=0.0):
    """Clustered patients, their clinical table and a Luminex export with OOR flags."""
    adata, _ = simulate_patients(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    rng = np.random.default_rng(seed)
    ids = adata.obs["patient_id"].tolist()
    cluster = adata.obs["itme_cluster"].astype(str).to_numpy()
    lines = ["patient_id,IL-6,TNF alpha,IL-10,CXCL13"]
    for i, p in enumerate(ids):
        il6 = 10 ** rng.normal(1.0 + shift * (cluster[i] == "3"), 0.3)
        tnf, il10, cxcl13 = (10 ** rng.normal(m, 0.4) for m in (0.5, 0.2, 1.5))
        cells = [f"{il6:.2f}", f"{tnf:.2f}", f"{il10:.2f}", f"{cxcl13:.2f}"]
        if i % 7 == 0:
            cells[1] = "OOR <"
        if i % 11 == 0:
            cells[2] = f"*{il10:.2f}"
        if i == 5:
            cells[3] = ""
        lines.append(",".join([p, *cells]))
    path = tmp_path / "cytokines.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(ItmeInputWarning, match="OOR < set to"):
        cyt = itme.io.read_cytokines(path)
    return adata, cyt


def test_kruskal_on_log_values_matches_scipy_and_flags_are_counted(tmp_path):
    adata, cyt = _cohort(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.compare_cytokines(cyt, groupby="itme_cluster", patients=adata).set_index(
            "feature"
        )
    x = cyt.to_df()
    cl = adata.obs.set_index("patient_id")["itme_cluster"].reindex(x.index).astype(str)
    pvals = []
    for a in x.columns:
        groups = [np.log10(x.loc[cl == g, a].dropna()) for g in "123"]
        h, p = stats.kruskal(*groups)
        assert res.loc[a, "statistic"] == pytest.approx(h)
        raw = [x.loc[cl == g, a].dropna() for g in "123"]
        assert res.loc[a, "pvalue"] == pytest.approx(
            stats.kruskal(*raw).pvalue
        )  # rank test: scale-free
        pvals.append(p)
        # medians of log10 values, back-transformed (the plain median when the count is odd)
        assert res.loc[a, "median_1"] == pytest.approx(10 ** np.median(groups[0]), rel=1e-9)
    np.testing.assert_allclose(res["padj"], multipletests(pvals, method="fdr_bh")[1])
    assert res.loc["TNF alpha", "n_below_range"] == cyt.var.loc["TNF alpha", "n_below_range"] > 0
    assert res.loc["CXCL13", "n_missing"] == 1 and res.loc["CXCL13", "n"] == adata.n_obs - 1
    assert (res["scale"] == "log10").all()
    # a patient whose two samples sit in different clusters has no single group
    rows = np.r_[np.arange(adata.n_obs), 0]
    obs = adata.obs.iloc[rows].set_axis([f"x{i}" for i in range(rows.size)])
    two = ad.AnnData(adata.X[rows], obs=obs)
    other = next(c for c in "123" if c != two.obs["itme_cluster"].iloc[0])
    two.obs.loc[two.obs_names[-1], "itme_cluster"] = other
    first = two.obs["patient_id"].iloc[0]
    with pytest.raises(
        ItmeInputError, match=rf"column itme_cluster: expected one value per patient.*{first}"
    ):
        itme.stats.compare_cytokines(cyt, groupby="itme_cluster", patients=two)


def test_no_cytokine_differs_when_none_was_planted_and_a_planted_one_does(tmp_path):
    """The paper found no cytokine differing between clusters; a planted shift must be found."""
    called = 0
    for seed in range(3):
        adata, cyt = _cohort(tmp_path, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ItmeStatisticsWarning)
            res = itme.stats.compare_cytokines(cyt, groupby="itme_cluster", patients=adata)
        called += int((res["padj"] < 0.05).sum())
    assert called <= 1
    adata, cyt = _cohort(tmp_path, seed=0, shift=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.compare_cytokines(cyt, groupby="itme_cluster", patients=adata).set_index(
            "feature"
        )
    assert res.loc["IL-6", "padj"] < 0.05


def test_by_disease_status_from_the_joined_clinical_table(tmp_path):
    adata, cyt = _cohort(tmp_path)
    clinical = simulate_clinical(adata, 0, drop_patients=["P07"], extra_patients=["P50"])
    with pytest.raises(ItmeParameterError, match=r"parameter 'groupby'.*add_clinical"):
        itme.stats.compare_cytokines(cyt, groupby="disease_status")
    with pytest.warns(ItmeExclusionWarning, match=r"1 of 38 sample\(s\).*P07.*no sample: P50"):
        itme.io.add_clinical(cyt, clinical)
    with (
        pytest.warns(ItmeExclusionWarning, match=r"1 excluded, no disease_status value: P07"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.compare_cytokines(
            cyt, groupby="disease_status", groups=["NDMM", "RMM", "TRMM"]
        ).set_index("feature")
    assert {"median_NDMM", "median_RMM", "median_TRMM"} <= set(res.columns)
    status = clinical.set_index("patient_id")["disease_status"].reindex(cyt.obs_names)
    x = np.log10(cyt.to_df()["IL-6"])
    ref = stats.kruskal(*[x[status == g] for g in ("NDMM", "RMM", "TRMM")])
    assert res.loc["IL-6", "pvalue"] == pytest.approx(ref.pvalue)
    assert res.loc["IL-6", "n"] == len(cyt) - 1


def test_clusters_from_patients_report_patients_missing_on_either_side_once(tmp_path):
    adata, cyt = _cohort(tmp_path)
    fewer = adata[adata.obs["patient_id"] != "P03"].copy()
    with pytest.warns(ItmeExclusionWarning) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.compare_cytokines(cyt[1:].copy(), groupby="itme_cluster", patients=fewer)
    messages = [str(w.message) for w in caught if issubclass(w.category, ItmeExclusionWarning)]
    assert len(messages) == 1
    assert "1 of 37 sample(s) have no row in patients.obs (left out): P03" in messages[0]
    assert "1 of 37 patient(s) of patients.obs have no sample: P00" in messages[0]
    assert (res["n"] <= 36).all() and res["n"].max() == 36


def test_zero_concentrations_get_a_reported_pseudocount(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "patient_id,IL-6\n"
        + "\n".join(f"P{i},{v}" for i, v in enumerate([0, 1, 2, 3, 4, 5]))
        + "\n"
    )
    cyt = itme.io.read_cytokines(path)
    cyt.obs["grp"] = ["a", "a", "a", "b", "b", "b"]
    with (
        pytest.warns(ItmeStatisticsWarning, match="pseudocount added before log10 for IL-6"),
        pytest.warns(ItmeStatisticsWarning, match="fewer than 5 members"),
    ):
        res = itme.stats.compare_cytokines(cyt, groupby="grp", test="mannwhitney")
    assert res.loc[0, "pseudocount"] == 0.5
    assert res.loc[0, "median_a"] == pytest.approx(1.0)
