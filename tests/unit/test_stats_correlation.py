"""stats.correlate, stats.marker_medians and stats.compare_marker (paper 000: CD38 by 1q status)."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_clinical, simulate_patients
from scipy import stats
from statsmodels.stats.multitest import multipletests

import itme
from itme.errors import ItmeExclusionWarning, ItmeParameterError, ItmeStatisticsWarning


def test_pearson_and_spearman_match_scipy_with_bh():
    adata, _ = simulate_patients(0)
    x = ["T1", "T2", "T12", "T16"]
    for method, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        res = itme.stats.correlate(adata, x=x, method=method)
        assert len(res) == 6
        ref = [
            fn(adata[:, a].X.ravel(), adata[:, b].X.ravel())
            for a, b in zip(res["x"], res["y"], strict=True)
        ]
        np.testing.assert_allclose(res["estimate"], [r.statistic for r in ref])
        np.testing.assert_allclose(res["pvalue"], [r.pvalue for r in ref])
        np.testing.assert_allclose(
            res["padj"], multipletests([r.pvalue for r in ref], method="fdr_bh")[1]
        )
    planted = itme.stats.correlate(adata, x=["T1"], y=["T2"]).iloc[0]
    assert planted["estimate"] > 0.5 and planted["padj"] < 0.05  # both raised in cluster 1


def test_clinical_and_derived_variables_pairwise_complete():
    adata, _ = simulate_patients(1)
    clinical = simulate_clinical(adata, 1)
    clinical.loc[:4, "age"] = np.nan
    with pytest.raises(ItmeParameterError, match=r"parameter 'x, y'.*\['age'\].*add_clinical"):
        itme.stats.correlate(adata, x=["CD4", "CD8"], y=["age"], source="derived")
    itme.io.add_clinical(adata, clinical, columns=["age"])
    res = itme.stats.correlate(adata, x=["CD4", "CD8"], y=["age"], source="derived")
    assert (res["n"] == adata.n_obs - 5).all()
    cd4 = adata.obsm["derived"]["CD4"].to_numpy()[5:]
    assert res.loc[0, "estimate"] == pytest.approx(
        stats.pearsonr(cd4, clinical["age"].to_numpy()[5:]).statistic
    )


def test_constant_variable_is_reported_not_crashed():
    df = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [2.0, 2, 2, 2], "c": [4.0, 3, 1, 2]})
    with pytest.warns(
        ItmeExclusionWarning, match=r"2 pair\(s\) not tested \(1 constant variable\(s\): b\)"
    ):
        res = itme.stats.correlate(df, x=["a", "b", "c"])
    assert res["pvalue"].isna().sum() == 2
    with pytest.raises(ItmeParameterError, match="parameter 'method'"):
        itme.stats.correlate(df, x=["a", "c"], method="kendall")
    with pytest.raises(ItmeParameterError, match=r"parameter 'x, y'"):
        itme.stats.correlate(df, x=["a", "zz"])


def _cells(seed: int = 0, n_samples: int = 24):
    """Cells AnnData: plasma cells with lower CD38 in 1q+ samples (paper 000, Fig. 1B), IL6R up."""
    rng = np.random.default_rng(seed)
    gain = np.array([i % 3 == 0 for i in range(n_samples)])
    il6r = rng.normal(2.0, 0.3, n_samples) + 0.8 * gain
    blocks, obs = [], []
    for s in range(n_samples):
        n_pc, n_t = 150, 100
        cd38 = rng.normal(4.0 - 0.8 * gain[s] - 0.3 * (il6r[s] - 2), 0.6, n_pc)
        t_cd38 = rng.normal(1.0, 0.5, n_t)  # other population: must not enter the medians
        blocks.append(np.column_stack([np.r_[cd38, t_cd38], rng.normal(3, 1, n_pc + n_t)]))
        obs += [(f"S{s}", f"P{s}", "plasma cells")] * n_pc + [(f"S{s}", f"P{s}", "T cells")] * n_t
    obs = pd.DataFrame(obs, columns=["sample_id", "patient_id", "subset"])
    obs.index = obs.index.astype(str)
    cells = ad.AnnData(np.vstack(blocks), obs=obs, var=pd.DataFrame(index=["CD38", "CD138"]))
    clinical = pd.DataFrame(
        {
            "patient_id": [f"P{s}" for s in range(n_samples)],
            "status_1q": np.where(gain, "1q+", "1q WT"),
            "IL6R": il6r,
        }
    )
    return cells, clinical


def test_marker_medians_only_use_the_population():
    cells, _ = _cells()
    med = itme.stats.marker_medians(cells, population="plasma cells", markers=["CD38"])
    pc = cells[cells.obs["subset"] == "plasma cells"]
    ref = pd.Series(pc.X[:, 0], index=pc.obs["sample_id"].to_numpy()).groupby(level=0).median()
    np.testing.assert_allclose(med["CD38"], ref.reindex(med.index))
    assert (med["n_events"] == 150).all() and med.loc["S3", "patient_id"] == "P3"


def test_compare_marker_reproduces_the_cd38_by_1q_analysis():
    cells, clinical = _cells()
    itme.io.add_clinical(cells, clinical)  # per event, categorical: cheap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        res = itme.stats.compare_marker(
            cells,
            population="plasma cells",
            markers=["CD38"],
            groupby="status_1q",
            correlate_with="IL6R",
            groups=["1q WT", "1q+"],
        )
    row = res.iloc[0]
    assert row["test"] == "mannwhitney" and row["population"] == "plasma cells"
    med = itme.stats.marker_medians(cells, population="plasma cells", markers=["CD38"])["CD38"]
    gain = (
        clinical.set_index("patient_id")["status_1q"]
        .reindex(med.index.str.replace("S", "P"))
        .to_numpy()
    )
    ref = stats.mannwhitneyu(med[gain == "1q WT"], med[gain == "1q+"], alternative="two-sided")
    assert row["statistic"] == ref.statistic and row["pvalue"] == pytest.approx(ref.pvalue)
    assert row["effect_size"] > 0.5 and row["pvalue"] < 0.01  # CD38 lower in 1q+ (paper 000)
    il6r = (
        clinical.set_index("patient_id")["IL6R"].reindex(med.index.str.replace("S", "P")).to_numpy()
    )
    rho = stats.spearmanr(med.to_numpy(), il6r)
    assert row["spearman_rho"] == pytest.approx(rho.statistic) and row["spearman_rho"] < 0
    assert row["spearman_pvalue"] == pytest.approx(rho.pvalue)


def test_compare_marker_bad_population():
    cells, _ = _cells()
    with pytest.raises(
        ItmeParameterError,
        match=r"parameter 'population'.*\(T cells, plasma cells\), got 'B cells'",
    ):
        itme.stats.compare_marker(
            cells, population="B cells", markers=["CD38"], groupby="status_1q"
        )
    with pytest.raises(
        ItmeParameterError, match=r"parameter 'groupby / correlate_with'.*add_clinical"
    ):
        itme.stats.compare_marker(
            cells, population="plasma cells", markers=["CD38"], groupby="status_1q"
        )
