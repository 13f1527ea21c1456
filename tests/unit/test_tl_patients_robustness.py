"""Leave-out re-clustering (Cohen's kappa) and bootstrap stability of iTME clusters."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
from helpers.patients_sim import simulate_patients
from sklearn.metrics import cohen_kappa_score

import itme
from itme.core.patients import ward
from itme.core.patients.agreement import align_labels, bootstrap_jaccard, square_table
from itme.errors import ItmeParameterError, ItmeStateError, ItmeStatisticsWarning
from itme.tl._robustness import cohen_kappa


def _clustered(seed, **kwargs):
    adata, truth = simulate_patients(seed, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)
    return adata, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, 40).astype(str)
    b = np.where(rng.uniform(size=40) < 0.7, a, rng.integers(0, 3, 40).astype(str))
    ours = cohen_kappa(a, b)
    assert ours["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert ours["z"] == pytest.approx(ours["kappa"] / ours["se0"])


def test_square_table_uses_the_union_of_labels():
    table = square_table(np.array(["1", "1", "2"]), np.array(["1", "3", "3"]))
    np.testing.assert_array_equal(table, [[1, 0, 1], [0, 0, 1], [0, 0, 0]])
    # a single label on both sides: no chance-corrected agreement
    assert np.isnan(cohen_kappa(np.array(["1", "1"]), np.array(["1", "1"]))["kappa"])


def test_paper_like_agreement_kappa_and_pvalue():
    """31 patients re-clustered, 2 moved (the paper: kappa 0.863, p < 0.001)."""
    a = np.array(["1"] * 20 + ["2"] * 3 + ["3"] * 8)
    b = a.copy()
    b[[0, 1]] = "3"
    res = cohen_kappa(a, b)
    assert res["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert 0.8 < res["kappa"] < 0.95
    assert res["pvalue"] < 0.001


def test_align_labels_undoes_a_permutation():
    a = np.array(list("1112223334"))
    perm = {"1": "3", "2": "4", "3": "1", "4": "2"}
    b = np.array([perm[x] for x in a])
    np.testing.assert_array_equal(align_labels(a, b), a)
    assert cohen_kappa(a, align_labels(a, b))["kappa"] == pytest.approx(1.0)


def test_sensitivity_on_well_separated_clusters_moves_nobody():
    adata, _ = _clustered(0)
    tra = adata.obs_names[adata.obs["itme_cluster"] == "2"][:3].tolist()
    itme.tl.cluster_sensitivity(adata, exclude=tra + ["P10", "P11"])
    res = adata.uns["itme_cluster_sensitivity"]
    assert res["n"] == adata.n_obs - len(set(tra) | {"S10", "S11"})
    assert res["n_changed"] == 0 and res["kappa"] == pytest.approx(1.0)
    assert res["pvalue"] < 1e-6
    assert adata.obs["itme_cluster_sensitivity"].isna().sum() == len(res["excluded"])


def test_sensitivity_kappa_is_the_kappa_of_the_reported_assignments():
    adata, _ = _clustered(1, noise=1.0)  # noisy: re-clustering moves some samples
    exclude = adata.obs_names[:7].tolist()
    itme.tl.cluster_sensitivity(adata, exclude=exclude)
    res = adata.uns["itme_cluster_sensitivity"]
    kept = ~adata.obs_names.isin(exclude)
    before = adata.obs["itme_cluster"].astype(str)[kept]
    after = adata.obs["itme_cluster_sensitivity"].astype(str)[kept]
    assert res["kappa"] == pytest.approx(cohen_kappa_score(before, after))
    assert res["n_changed"] == int((before != after).sum()) > 0
    assert sorted(res["changed"]) == sorted(before.index[before != after])
    # independent re-clustering of the remaining samples gives the same partition
    x = adata[kept, adata.uns["itme_cluster"]["features"]].X
    labels, _ = ward.cluster(x, 3, transform="zscore")
    relabelled = align_labels(after.to_numpy(), labels.astype(str))
    assert cohen_kappa_score(after.to_numpy(), relabelled.astype(str)) == pytest.approx(1.0)


def test_sensitivity_bad_input():
    adata, _ = simulate_patients(0)
    with pytest.raises(ItmeStateError, match="run itme.tl.patient_clusters"):
        itme.tl.cluster_sensitivity(adata, exclude=["P01"])
    adata, _ = _clustered(0)
    with pytest.raises(ItmeParameterError, match=r"parameter 'exclude'.*\['P77'\]"):
        itme.tl.cluster_sensitivity(adata, exclude=["P01", "P77"])
    with pytest.raises(ItmeParameterError, match="parameter 'exclude'"):
        itme.tl.cluster_sensitivity(adata, exclude=adata.obs_names[:36].tolist())
    itme.tl.cluster_sensitivity(adata, exclude="P01")  # one id, not its characters
    assert adata.uns["itme_cluster_sensitivity"]["excluded"] == ["S01"]


def test_bootstrap_jaccard_is_one_for_a_perfect_reclusterer():
    labels = np.repeat([1, 2, 3], 5)
    jac = bootstrap_jaccard(
        labels, lambda idx: labels[idx], n_boot=20, rng=np.random.default_rng(0)
    )
    assert np.nanmin(jac) == 1.0


def test_stability_high_for_planted_clusters_low_for_noise():
    adata, _ = _clustered(1)
    itme.tl.cluster_stability(adata, n_boot=50, rng=3)
    planted = adata.uns["itme_cluster_stability"]["clusters"]
    assert list(planted["cluster"]) == ["1", "2", "3"]
    assert (planted["mean_jaccard"] > 0.85).all()
    noise = ad.AnnData(np.random.default_rng(0).lognormal(size=(38, 30)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(noise, k=3, rng=0, gap_refs=0)
    itme.tl.cluster_stability(noise, n_boot=50, rng=3)
    assert noise.uns["itme_cluster_stability"]["clusters"]["mean_jaccard"].min() < 0.75


def test_stability_same_rng_same_result():
    adata, _ = _clustered(2, noise=0.6)
    a = itme.tl.cluster_stability(adata, n_boot=20, rng=5, copy=True)
    b = itme.tl.cluster_stability(adata, n_boot=20, rng=5, copy=True)
    np.testing.assert_array_equal(
        a.uns["itme_cluster_stability"]["jaccard"], b.uns["itme_cluster_stability"]["jaccard"]
    )
    assert a.uns["itme_cluster_stability"]["seed"] == 5
    with pytest.raises(ItmeParameterError, match="parameter 'n_boot'"):
        itme.tl.cluster_stability(adata, n_boot=0)
