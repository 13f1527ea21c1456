"""tl.patient_clusters: Ward iTME clusters, numbering, diagnostics, composition, bad input."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import NULL_SUBSETS, PLANTED_SUBSETS, simulate_clinical, simulate_patients
from scipy.cluster import hierarchy
from scipy.stats import zscore as scipy_zscore
from sklearn.metrics import adjusted_rand_score, silhouette_score

import itme
from itme.core.patients import ward
from itme.core.patients.composition import arcsine_sqrt, clr, zscore
from itme.core.stats.fisher import fisher_exact_rxc
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)

SEEDS = [0, 1, 2, 3, 4]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("seed", SEEDS)
def test_planted_clusters_are_recovered(seed):
    adata, truth = simulate_patients(seed)
    _quiet(itme.tl.patient_clusters, adata, k=3, rng=seed, gap_refs=5)
    labels = adata.obs["itme_cluster"]
    assert list(labels.cat.categories) == ["1", "2", "3"]
    assert adjusted_rand_score(truth, labels) >= 0.9


def test_planted_subsets_found_with_few_false_discoveries():
    """Issue evidence: planted subsets at q < 0.05, <= 5 % of null subsets called, 10 seeds."""
    false, nulls = 0, 0
    for seed in range(10):
        adata, _ = simulate_patients(seed)
        _quiet(itme.tl.patient_clusters, adata, k=3, rng=seed, gap_refs=0)
        res = _quiet(itme.stats.compare_groups, adata, groupby="itme_cluster").set_index("feature")
        assert (res.loc[PLANTED_SUBSETS, "padj"] < 0.05).all(), seed
        false += int((res.loc[NULL_SUBSETS, "padj"] < 0.05).sum())
        nulls += len(NULL_SUBSETS)
    assert false / nulls <= 0.05, (false, nulls)


def test_default_zscore_beats_raw_percentages_when_an_abundant_population_is_noisy():
    """DESIGN §4: on raw % the abundant myeloid cells dominate the distance; z-scores do not."""
    rng = np.random.default_rng(7)
    truth = np.repeat([0, 1, 2], [12, 10, 10])
    rare = rng.lognormal(0.0, 0.2, size=(32, 8))
    rare[truth == 1, :3] *= 3
    rare[truth == 2, 3:6] *= 3
    myeloid = rng.uniform(20, 80, size=32)  # noise, unrelated to the clusters
    adata = ad.AnnData(np.column_stack([rare, myeloid]))
    z = itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0, copy=True)
    raw = itme.tl.patient_clusters(adata, k=3, transform=None, rng=0, gap_refs=0, copy=True)
    assert adjusted_rand_score(truth, z.obs["itme_cluster"]) >= 0.9
    assert adjusted_rand_score(truth, raw.obs["itme_cluster"]) < 0.5
    assert raw.uns["itme_cluster"]["transform"] == "none"
    assert z.uns["itme_cluster"]["transform"] == "zscore"


def test_numbering_is_left_to_right_and_independent_of_row_order():
    adata, _ = simulate_patients(3)
    _quiet(itme.tl.patient_clusters, adata, k=3, rng=0, gap_refs=0)
    uns = adata.uns["itme_cluster"]
    leaves = hierarchy.leaves_list(uns["linkage"])
    np.testing.assert_array_equal(leaves, uns["leaf_order"])
    first_seen = list(dict.fromkeys(adata.obs["itme_cluster"].astype(str).to_numpy()[leaves]))
    assert first_seen == ["1", "2", "3"]
    # canonical: at every merge the left branch is at least as large as the right one
    z = uns["linkage"]
    n = adata.n_obs
    size = np.r_[np.ones(n), z[:, 3]]
    assert all(size[int(a)] >= size[int(b)] for a, b in z[:, :2])
    shuffled = adata[np.random.default_rng(1).permutation(n)].copy()
    del shuffled.obs["itme_cluster"]
    _quiet(itme.tl.patient_clusters, shuffled, k=3, rng=0, gap_refs=0)
    pd.testing.assert_series_equal(
        shuffled.obs["itme_cluster"].astype(str).sort_index(),
        adata.obs["itme_cluster"].astype(str).sort_index(),
    )


def test_cut_returns_exactly_k_even_with_tied_heights():
    # four points on a square: every merge height ties, fcluster(maxclust=3) cannot give 3
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    z = ward.linkage(x, method="single")
    assert len(np.unique(hierarchy.fcluster(z, 3, "maxclust"))) != 3
    for k in (1, 2, 3, 4):
        assert sorted(np.unique(ward.cut(z, k))) == list(range(1, k + 1))


def test_k_is_never_changed_and_diagnostics_reported():
    adata, _ = simulate_patients(0)
    _quiet(itme.tl.patient_clusters, adata, k=5, rng=0, gap_refs=5)
    uns = adata.uns["itme_cluster"]
    assert uns["k"] == 5
    assert adata.obs["itme_cluster"].nunique() == 5
    diag = uns["diagnostics"].set_index("k")
    assert list(diag.index) == list(range(1, 11))
    assert {"within_ss", "silhouette", "gap", "gap_sd"} <= set(diag.columns)
    assert (np.diff(diag["within_ss"]) < 0).all()  # more clusters, less within-cluster spread


def test_silhouette_and_within_ss_match_independent_computations():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    labels = ward.cut(ward.linkage(x), 3)
    assert ward.silhouette(x, labels) == pytest.approx(silhouette_score(x, labels))
    centroids = np.array([x[labels == c].mean(axis=0) for c in labels])
    assert ward.within_ss(x, labels) == pytest.approx(((x - centroids) ** 2).sum())


def test_gap_statistic_finds_three_blobs_and_no_structure_in_noise():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 0], [0, 8]])
    blobs = np.vstack([c + rng.normal(size=(15, 2)) for c in centres])
    diag = ward.diagnostics(blobs, range(1, 7), n_refs=20, rng=np.random.default_rng(1))
    assert ward.gap_k(diag) == 3
    noise = rng.uniform(size=(45, 2))
    diag = ward.diagnostics(noise, range(1, 7), n_refs=20, rng=np.random.default_rng(1))
    assert ward.gap_k(diag) == 1


def test_transforms_match_definitions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 30, size=(10, 5))
    np.testing.assert_allclose(zscore(x), scipy_zscore(x, ddof=1))
    logx = np.log(x)
    np.testing.assert_allclose(clr(x), logx - logx.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(arcsine_sqrt(x), np.arcsin(np.sqrt(x / 100)))
    x[0, 0] = 0.0
    half_min = x[x > 0].min() / 2
    np.testing.assert_allclose(clr(x)[0], np.log(x[0] + half_min) - np.log(x[0] + half_min).mean())


def test_same_rng_same_result_and_seed_recorded():
    adata, _ = simulate_patients(2)
    a = _quiet(itme.tl.patient_clusters, adata, k=3, rng=11, copy=True)
    b = _quiet(itme.tl.patient_clusters, adata, k=3, rng=11, copy=True)
    c = _quiet(itme.tl.patient_clusters, adata, k=3, rng=12, copy=True)
    pd.testing.assert_frame_equal(
        a.uns["itme_cluster"]["diagnostics"], b.uns["itme_cluster"]["diagnostics"]
    )
    assert a.uns["itme_cluster"]["seed"] == 11
    assert not np.allclose(
        a.uns["itme_cluster"]["diagnostics"]["gap"], c.uns["itme_cluster"]["diagnostics"]["gap"]
    )
    np.testing.assert_array_equal(
        a.obs["itme_cluster"], c.obs["itme_cluster"]
    )  # gap never moves clusters


def test_composition_by_disease_status_with_exact_test():
    adata, _ = simulate_patients(4)
    _quiet(itme.tl.patient_clusters, adata, k=3, rng=0, gap_refs=0)
    uns = adata.uns["itme_cluster"]
    expected = pd.crosstab(adata.obs["itme_cluster"], adata.obs["disease_status"])
    np.testing.assert_array_equal(uns["composition"].to_numpy(), expected.to_numpy())
    assert uns["composition_test"] == "fisher"
    assert uns["composition_pvalue"] == pytest.approx(fisher_exact_rxc(expected.to_numpy()))
    assert uns["composition_pvalue"] < 0.05  # the simulation ties TRMM to clusters 2 and 3


def test_composition_from_the_joined_clinical_status():
    adata, _ = simulate_patients(4)
    status = adata.obs["disease_status"].copy()
    clinical = simulate_clinical(adata, 4, extra_patients=["P99"], drop_patients=["P03"])
    del adata.obs["disease_status"]
    _quiet(itme.tl.patient_clusters, adata, k=3, rng=0, gap_refs=0)
    assert "composition" not in adata.uns["itme_cluster"]  # no status in obs: skipped
    with pytest.warns(ItmeExclusionWarning, match=r"S03 \(patient P03\).*no sample: P99"):
        itme.io.add_clinical(adata, clinical, columns=["disease_status"])
    with pytest.warns(ItmeExclusionWarning, match=r"1 excluded, no disease_status value: S03"):
        _quiet(itme.tl.patient_clusters, adata, k=3, rng=0, gap_refs=0)
    comp = adata.uns["itme_cluster"]["composition"]
    assert comp.to_numpy().sum() == adata.n_obs - 1
    kept = adata.obs_names != "S03"
    expected = pd.crosstab(adata.obs["itme_cluster"][kept], status[kept])
    np.testing.assert_array_equal(comp.to_numpy(), expected.to_numpy())


def test_k_must_be_below_the_number_of_samples():
    adata, _ = simulate_patients(0, sizes=(3, 2, 2))
    with pytest.raises(
        ItmeParameterError, match=r"parameter 'k': expected an integer from 2 to n_samples - 1 = 6"
    ):
        itme.tl.patient_clusters(adata, k=7)
    with pytest.raises(ItmeParameterError, match="parameter 'k'"):
        itme.tl.patient_clusters(adata, k=1)
    with pytest.raises(ItmeParameterError, match="parameter 'transform'"):
        itme.tl.patient_clusters(adata, k=2, transform="log")


def test_single_sample_cluster_is_warned():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (10, 3)), rng.normal(0, 1, (1, 3)) + 40])
    with pytest.warns(ItmeStatisticsWarning, match="single sample"):
        itme.tl.patient_clusters(ad.AnnData(x), k=2, gap_refs=0)


def test_constant_and_all_missing_columns_are_excluded_and_reported():
    adata, truth = simulate_patients(1)
    x = adata.X.copy()
    x[:, 0] = 5.0
    x[:, 1] = np.nan
    bad = ad.AnnData(x, obs=adata.obs.copy(), var=adata.var.copy())
    with (
        pytest.warns(ItmeExclusionWarning, match=r"constant, not used for clustering: T1"),
        pytest.warns(ItmeExclusionWarning, match=r"all missing, not used for clustering: T2"),
    ):
        _quiet(itme.tl.patient_clusters, bad, k=3, gap_refs=0)
    assert bad.uns["itme_cluster"]["excluded_features"] == ["T2", "T1"]
    assert "T1" not in bad.uns["itme_cluster"]["features"]


def test_missing_values_and_out_of_range_percentages_are_errors():
    adata, _ = simulate_patients(1)
    x = adata.X.copy()
    x[3, 4] = np.nan
    with pytest.raises(ItmeInputError, match=r"1 missing: S03:T5"):
        itme.tl.patient_clusters(ad.AnnData(x, obs=adata.obs.copy(), var=adata.var.copy()), k=3)
    x = adata.X.copy()
    x[0, 0] = 150.0
    with pytest.raises(ItmeInputError, match=r"percentages in \[0, 100\]"):
        itme.tl.patient_clusters(
            ad.AnnData(x, obs=adata.obs.copy(), var=adata.var.copy()), k=3, transform="clr"
        )
    with pytest.raises(ItmeParameterError, match="parameter 'features'"):
        itme.tl.patient_clusters(adata, k=3, features=["T1", "CD3"])


def test_keys_survive_h5ad_roundtrip(tmp_path):
    adata, _ = simulate_patients(0)
    _quiet(itme.tl.patient_clusters, adata, k=3, rng=0, gap_refs=3)
    itme.tl.cluster_sensitivity(adata, exclude=["P01", "P02"])
    itme.tl.cluster_stability(adata, n_boot=5, rng=0)
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    pd.testing.assert_series_equal(back.obs["itme_cluster"], adata.obs["itme_cluster"])
    for key in ("itme_cluster", "itme_cluster_sensitivity", "itme_cluster_stability"):
        assert set(back.uns[key]) == set(adata.uns[key])
    np.testing.assert_array_equal(
        back.uns["itme_cluster"]["linkage"], adata.uns["itme_cluster"]["linkage"]
    )
    pd.testing.assert_frame_equal(
        back.uns["itme_cluster"]["diagnostics"],
        adata.uns["itme_cluster"]["diagnostics"],
        check_dtype=False,
    )
    assert back.uns["itme_cluster_sensitivity"]["changed"] is not None
    assert back.obs["itme_cluster_sensitivity"].isna().sum() == 2
