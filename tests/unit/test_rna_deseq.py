"""itme.rna.differential_expression on small simulated cohorts with known truth."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from itme.datasets._counts import simulate_counts
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
)
from itme.rna import differential_expression

UP = [f"UP{i}" for i in range(40)]
DOWN = [f"DOWN{i}" for i in range(40)]


def _cohort(seed, groups, n_genes=500, shift=1.5, **kw):
    sim = simulate_counts(
        groups,
        gene_sets={"UP": UP, "DOWN": DOWN},
        shifts={"B": {"UP": shift, "DOWN": -shift}},
        n_genes=n_genes,
        fraction_shifted=1.0,
        rng=seed,
        **kw,
    )
    obs = sim.samples.assign(patient_id=sim.samples.index.astype(str))
    adata = ad.AnnData(X=sim.counts.to_numpy(), obs=obs, var=sim.genes[["gene_name"]])
    return adata, sim


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_genes_recovered_with_the_right_sign(seed):
    adata, sim = _cohort(seed, ["A"] * 6 + ["B"] * 6)
    res = differential_expression(adata, contrast=("group", "B", "A"))
    assert list(res.columns) == [
        "gene_name",
        "baseMean",
        "log2FoldChange",
        "lfcSE",
        "stat",
        "pvalue",
        "padj",
    ]
    assert res.index.name == "gene_id"
    truth = sim.genes.loc[res.index, "lfc_B"]
    sig = res["padj"] < 0.1
    planted = truth != 0
    expressed = res["baseMean"] > 10
    # power: most expressed planted genes are found, all with the right sign
    assert (sig & planted & expressed).sum() >= 0.7 * (planted & expressed).sum()
    assert (
        np.sign(res.loc[sig & planted, "log2FoldChange"]) == np.sign(truth[sig & planted])
    ).all()
    # false discoveries stay near the nominal 10 %
    assert (sig & ~planted).sum() <= 0.2 * max(sig.sum(), 1) + 2
    # estimated fold changes track the truth
    assert np.corrcoef(res.loc[planted, "log2FoldChange"], truth[planted])[0, 1] > 0.9


def test_prefilter_is_counted_and_reported():
    adata, _ = _cohort(3, ["A"] * 5 + ["B"] * 7)
    x = adata.X
    x[:, :3] = 0  # three genes without a count
    # default: no pre-filter (R's default pipeline), only all-zero genes are left out
    res = differential_expression(adata, contrast=("group", "B", "A"))
    assert res.attrs["prefilter"] == "none"
    assert len(res) == res.attrs["n_genes_tested"] == int((x.sum(axis=0) > 0).sum())
    assert res.attrs["n_genes_removed"] == int((x.sum(axis=0) == 0).sum()) >= 3
    # independent filtering does the job instead: low-count genes have no padj
    assert res.attrs["n_filtered"] > 0
    assert (
        res.loc[res["padj"].isna() & res["pvalue"].notna(), "baseMean"].max()
        <= (res.attrs["filter_threshold"])
    )
    expected_kept = int(((x >= 10).sum(axis=0) >= 5).sum())  # smallest group has 5 samples
    res_deseq2 = differential_expression(adata, contrast=("group", "B", "A"), prefilter="deseq2")
    assert res_deseq2.attrs["n_genes_tested"] == expected_kept == len(res_deseq2)
    assert res_deseq2.attrs["n_genes_removed"] == adata.n_vars - expected_kept
    assert res_deseq2.attrs["min_samples"] == 5
    res_edger = differential_expression(adata, contrast=("group", "B", "A"), prefilter="edger")
    assert res_edger.attrs["prefilter"] == "edger"
    assert 0 < res_edger.attrs["n_genes_removed"] < adata.n_vars
    with pytest.raises(ItmeParameterError, match="prefilter"):
        differential_expression(adata, contrast=("group", "B", "A"), prefilter="vignette")


def test_merged_levels_keep_genes_expressed_in_one_merged_level():
    """The issue's cause 1: with clusters 2+3 vs 1, a gene expressed only in cluster 3 is
    tested by default, while the vignette pre-filter (>= 10 reads in >= the smaller group)
    can never keep it."""
    adata, _ = _cohort(11, ["A"] * 8 + ["B"] * 3 + ["C"] * 3, n_genes=300)
    x = adata.X
    x[:, 0] = [0] * 11 + [40, 55, 38]  # only in C
    res = differential_expression(adata, contrast=("group", ["B", "C"], "A"))
    assert res.loc["SIMG0000001", "log2FoldChange"] > 3
    assert res.loc["SIMG0000001", "pvalue"] < 0.05 and np.isfinite(res.loc["SIMG0000001", "padj"])
    vignette = differential_expression(
        adata, contrast=("group", ["B", "C"], "A"), prefilter="deseq2"
    )
    assert "SIMG0000001" not in vignette.index


def test_merged_groups_equal_a_pre_merged_factor():
    adata, _ = _cohort(4, ["A"] * 5 + ["B"] * 4 + ["C"] * 3)
    merged = differential_expression(adata, contrast=("group", ["B", "C"], "A"))
    assert merged.attrs["contrast"] == ["group", "B+C", "A"]
    assert merged.attrs["n_test"] == 7 and merged.attrs["n_reference"] == 5
    manual = adata.copy()
    manual.obs["bc"] = np.where(manual.obs["group"] == "A", "A", "BC")
    ref = differential_expression(manual, contrast=("bc", "BC", "A"))
    pd.testing.assert_frame_equal(merged, ref, check_exact=False, rtol=1e-10)


def test_unmerged_contrast_keeps_other_levels_in_the_model():
    adata, _ = _cohort(5, ["A"] * 4 + ["B"] * 4 + ["C"] * 4)
    res = differential_expression(adata, contrast=("group", "B", "A"))
    assert res.attrs["n_samples"] == 12
    assert res.attrs["n_test"] == 4 and res.attrs["n_reference"] == 4


def test_covariate_in_design_and_metadata_join():
    adata, _ = _cohort(6, ["A", "B"] * 6)
    meta = pd.DataFrame(
        {"patient_id": adata.obs["patient_id"], "batch": ["x", "x", "y", "y"] * 3}
    ).set_index("patient_id")
    res = differential_expression(
        adata, contrast=("group", "B", "A"), design="~ batch + group", metadata=meta
    )
    assert res.attrs["design"] == "~ batch + group"
    assert (res["padj"] < 0.1).sum() > 20


def test_dispersion_threads_give_the_same_results(monkeypatch):
    from itme.core.rna import dispersion

    parts = []
    fit = dispersion.fit_disp
    monkeypatch.setattr(
        dispersion,
        "fit_disp",
        lambda counts, *a, **k: parts.append(counts.shape[1]) or fit(counts, *a, **k),
    )
    adata, _ = _cohort(8, ["A"] * 6 + ["B"] * 6, n_genes=2500)
    one = differential_expression(adata, contrast=("group", "B", "A"), n_cpus=1)
    n = parts[0]  # the genes with a count (all-zero genes are not fitted)
    assert n > 2000 and set(parts) == {n}  # genes fitted in one part
    parts.clear()
    two = differential_expression(adata, contrast=("group", "B", "A"), n_cpus=2)
    assert {n // 2, n - n // 2} <= set(parts)  # and in two parts, one per thread
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    drop = {"elapsed_seconds"}
    assert {k: v for k, v in one.attrs.items() if k not in drop} == {
        k: v for k, v in two.attrs.items() if k not in drop
    }


@pytest.mark.slow
def test_vectorised_inference_matches_pydeseq2_default():
    adata, _ = _cohort(7, ["A"] * 4 + ["B"] * 4, n_genes=300)
    fast = differential_expression(adata, contrast=("group", "B", "A"))
    slow = differential_expression(adata, contrast=("group", "B", "A"), inference="pydeseq2")
    assert fast.attrs["inference"] == "vectorised"
    rho = spearmanr(fast["stat"], slow["stat"], nan_policy="omit")[0]
    assert rho >= 0.999
    np.testing.assert_allclose(fast["baseMean"], slow["baseMean"], rtol=1e-12)
    assert np.nanmedian(np.abs(fast["log2FoldChange"] - slow["log2FoldChange"])) < 1e-4


def test_missing_design_value_excludes_sample_with_warning():
    adata, _ = _cohort(8, ["A"] * 5 + ["B"] * 5)
    adata.obs["group"] = adata.obs["group"].astype(object)
    adata.obs.iloc[0, adata.obs.columns.get_loc("group")] = None
    with pytest.warns(ItmeExclusionWarning, match="1 sample.*excluded.*S01"):
        res = differential_expression(adata, contrast=("group", "B", "A"))
    assert res.attrs["n_samples"] == 9
    assert res.attrs["excluded_samples"] == ["S01"]


def test_small_residual_df_uses_rs_seeded_simulation():
    adata, _ = _cohort(9, ["A"] * 2 + ["B"] * 2, n_genes=200)  # 2 residual df
    res = differential_expression(adata, contrast=("group", "B", "A"))
    assert res.attrs["prior_var_method"] == "simulation"
    assert res.attrs["prior_var_seed"] == 2  # R's set.seed(2)
    again = differential_expression(adata, contrast=("group", "B", "A"))
    pd.testing.assert_frame_equal(res, again)
    other = differential_expression(adata, contrast=("group", "B", "A"), rng=7)
    assert other.attrs["prior_var_seed"] == 7
    assert res.attrs["prior_var"] >= 0.25 and other.attrs["prior_var"] >= 0.25
    big = differential_expression(*_cohort(9, ["A"] * 4 + ["B"] * 4, n_genes=200)[:1],
                                  contrast=("group", "B", "A"))  # fmt: skip
    assert big.attrs["prior_var_method"] == "trigamma" and big.attrs["prior_var_seed"] is None


def test_lfc_shrink_columns_and_errors_downstream():
    adata, sim = _cohort(12, ["A"] * 4 + ["B"] * 4, n_genes=300)
    res = differential_expression(adata, contrast=("group", "B", "A"), lfc_shrink=True)
    plain = differential_expression(adata, contrast=("group", "B", "A"))
    pd.testing.assert_frame_equal(res[plain.columns], plain)  # MLE columns unchanged
    assert res.attrs["lfc_shrink"] and res.attrs["shrink_coefficient"] == "group[T.B]"
    shrunk, mle = res["log2FoldChange_shrunk"], res["log2FoldChange"]
    # shrinkage towards 0, strongest where the counts are low
    assert (shrunk.abs() <= mle.abs() + 1e-6).mean() > 0.98
    low = res["baseMean"] < 5
    ratio = (shrunk.abs() / mle.abs()).where(mle.abs() > 0.5)
    assert ratio[low].median() < ratio[~low].median()
    truth = sim.genes.loc[res.index, "lfc_B"]
    assert np.abs(shrunk - truth).mean() < np.abs(mle - truth).mean()


def test_contrast_level_that_does_not_exist():
    adata, _ = _cohort(0, ["A"] * 3 + ["B"] * 3, n_genes=100)
    with pytest.raises(ItmeParameterError, match=r"levels among \['A', 'B'\].*'Z'"):
        differential_expression(adata, contrast=("group", "Z", "A"))
    with pytest.raises(ItmeParameterError, match="contrast\\[0\\]"):
        differential_expression(adata, contrast=("cluster", "B", "A"), design="~ group")
    with pytest.raises(ItmeParameterError, match="design"):
        differential_expression(adata, contrast=("group", "B", "A"), design="~ batch + group")
    with pytest.raises(ItmeParameterError, match="disjoint"):
        differential_expression(adata, contrast=("group", ["A", "B"], "A"))


def test_group_with_fewer_than_two_samples():
    adata, _ = _cohort(0, ["A"] * 4 + ["B"] * 1 + ["C"] * 2, n_genes=100)
    with pytest.raises(ItmeInputError, match=r"group 'B'.*at least 2 samples.*1 sample\(s\): S05"):
        differential_expression(adata, contrast=("group", "B", "A"))
    # merging B with C makes a valid group
    res = differential_expression(adata, contrast=("group", ["B", "C"], "A"))
    assert res.attrs["n_test"] == 3


def test_bad_counts_are_named():
    adata, _ = _cohort(0, ["A"] * 3 + ["B"] * 3, n_genes=100)
    bad = adata.copy()
    bad.X = bad.X.astype(float)
    bad.X[4, 7] = 2.5
    with pytest.raises(ItmeInputError, match=r"gene SIMG0000008, sample S05.*non-integer"):
        differential_expression(bad, contrast=("group", "B", "A"))
    neg = adata.copy()
    neg.X[2, 3] = -1
    with pytest.raises(ItmeInputError, match=r"gene SIMG0000004, sample S03.*negative"):
        differential_expression(neg, contrast=("group", "B", "A"))
    zero = adata.copy()
    zero.X[1, :] = 0
    with pytest.raises(ItmeInputError, match="zero counts in every gene.*S02"):
        differential_expression(zero, contrast=("group", "B", "A"))


def test_confounded_design_is_a_clear_error():
    adata, _ = _cohort(0, ["A"] * 3 + ["B"] * 3, n_genes=100)
    adata.obs["batch"] = adata.obs["group"].map({"A": "b1", "B": "b2"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ItmeInputError, match="not full rank"):
            differential_expression(adata, contrast=("group", "B", "A"), design="~ batch + group")
