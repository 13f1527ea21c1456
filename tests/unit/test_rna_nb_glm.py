"""itme.core.rna.nb_glm against pydeseq2's own per-gene functions (the reference implementation).

Each vectorised routine is compared gene by gene with the ``pydeseq2.utils`` function it
replaces, on simulated negative-binomial counts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from itme.core.rna import count_filters, gene_set_scores, nb_glm
from itme.datasets._counts import simulate_counts

with warnings.catch_warnings():
    from pydeseq2 import utils as pd_utils
    from pydeseq2.preprocessing import deseq2_norm


def _data(seed, n_genes=120, groups=("a",) * 5 + ("b",) * 5 + ("c",) * 4):
    sim = simulate_counts(
        list(groups),
        gene_sets={"S": [f"G{i}" for i in range(30)]},
        shifts={"b": {"S": 1.0}},
        n_genes=n_genes,
        fraction_unexpressed=0.0,
        rng=seed,
    )
    counts = sim.counts.to_numpy()
    counts = counts[:, (counts > 0).all(axis=0)]
    _, sf = deseq2_norm(counts)
    labels = np.asarray(groups)
    design = np.column_stack([np.ones(len(labels)), labels == "b", labels == "c"]).astype(float)
    return counts.astype(float), np.asarray(sf, dtype=float), design


@pytest.mark.parametrize("seed", [0, 1])
def test_irls_matches_pydeseq2_irls_solver(seed):
    counts, sf, design = _data(seed)
    disp = np.exp(np.random.default_rng(seed).normal(-2, 0.7, counts.shape[1]))
    beta, mu, hat, fallback = nb_glm.irls(counts, sf, design, disp, min_mu=0.5, beta_tol=1e-8)
    assert not fallback.any()
    for g in range(counts.shape[1]):
        rb, rmu, rh, ok = pd_utils.irls_solver(counts[:, g], sf, design, disp[g], 0.5, 1e-8)
        assert ok
        np.testing.assert_allclose(beta[g], rb, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(mu[:, g], rmu, rtol=1e-7)
        np.testing.assert_allclose(hat[:, g], rh, rtol=1e-6, atol=1e-12)


def test_irls_flags_divergent_genes_for_the_fallback():
    counts, sf, design = _data(0, n_genes=40)
    counts = counts.copy()
    counts[:, 0] = 3e14  # log(3e14) > 30: the intercept leaves [-30, 30]
    *_, fallback = nb_glm.irls(
        counts, sf, design, np.full(counts.shape[1], 0.1), min_mu=0.5, beta_tol=1e-8
    )
    assert fallback[0]
    assert not fallback[1:].any()


def _pydeseq2_loss(y, design, mu, alpha, prior=None, alpha_hat=None):
    w = mu / (1 + mu * alpha)
    loss = pd_utils.nb_nll(y, mu, alpha) + 0.5 * np.linalg.slogdet((design.T * w) @ design)[1]
    if prior is not None:
        loss += (np.log(alpha) - np.log(alpha_hat)) ** 2 / (2 * prior)
    return loss


@pytest.mark.parametrize("seed", [0, 3])
def test_alpha_mle_finds_pydeseq2s_optimum_or_a_better_one(seed):
    counts, sf, design = _data(seed)
    mu = nb_glm.lin_reg_mu(counts, sf, design, 0.5)
    start = np.full(counts.shape[1], 0.1)
    mine, converged = nb_glm.alpha_mle(counts, design, mu, start, min_disp=1e-8, max_disp=14)
    assert converged.all()
    close = 0
    for g in range(counts.shape[1]):
        ref, _ = pd_utils.fit_alpha_mle(counts[:, g], design, mu[:, g], 0.1, 1e-8, 14)
        y = counts[:, g]
        # never a worse optimum than L-BFGS-B's, and the same one in most genes
        assert _pydeseq2_loss(y, design, mu[:, g], mine[g]) <= (
            _pydeseq2_loss(y, design, mu[:, g], ref) + 1e-7
        )
        close += abs(np.log(mine[g]) - np.log(ref)) < 1e-3
    assert close >= 0.95 * counts.shape[1]


def test_map_dispersion_matches_pydeseq2():
    counts, sf, design = _data(5)
    mu = nb_glm.lin_reg_mu(counts, sf, design, 0.5)
    trend = np.full(counts.shape[1], 0.2)
    mine, _ = nb_glm.alpha_mle(
        counts, design, mu, trend, min_disp=1e-8, max_disp=14, prior_disp_var=0.4, prior_reg=True
    )
    ref = np.array(
        [
            pd_utils.fit_alpha_mle(
                counts[:, g], design, mu[:, g], 0.2, 1e-8, 14, prior_disp_var=0.4, prior_reg=True
            )[0]
            for g in range(counts.shape[1])
        ]
    )
    np.testing.assert_allclose(np.log(mine), np.log(ref), atol=1e-4)


def test_wald_test_and_lin_reg_mu_match_pydeseq2():
    counts, sf, design = _data(2)
    disp = np.full(counts.shape[1], 0.15)
    beta, mu, _, _ = nb_glm.irls(counts, sf, design, disp, min_mu=0.5, beta_tol=1e-8)
    contrast = np.array([0.0, 1.0, 0.0])
    ridge = np.diag(np.repeat(1e-6, 3))
    p, stat, se = nb_glm.wald_test(design, disp, beta, mu, ridge, contrast, 0.0)
    for g in range(counts.shape[1]):
        rp, rs, rse = pd_utils.wald_test(
            design, disp[g], beta[g], mu[:, g], ridge, contrast, 0.0, None
        )
        np.testing.assert_allclose([p[g], stat[g], se[g]], [rp, rs, rse], rtol=1e-8)
        np.testing.assert_allclose(
            nb_glm.lin_reg_mu(counts[:, [g]], sf, design, 0.5)[:, 0],
            pd_utils.fit_lin_mu(counts[:, g], sf, design, 0.5),
            rtol=1e-8,
        )


def test_wald_test_gives_nan_for_unfitted_genes():
    design = np.column_stack([np.ones(4), [0, 0, 1, 1]]).astype(float)
    lfc = np.array([[1.0, 0.5], [np.nan, np.nan]])
    mu = np.array([[5.0, np.nan]] * 4)
    p, stat, se = nb_glm.wald_test(
        design, np.array([0.1, np.nan]), lfc, mu, np.eye(2) * 1e-6, np.array([0.0, 1.0]), 0.0
    )
    assert np.isfinite(p[0]) and np.isnan(p[1]) and np.isnan(stat[1]) and np.isnan(se[1])


def test_min_count_filter_is_the_deseq2_vignette_rule():
    counts = np.array([[10, 9, 0, 50], [10, 9, 0, 50], [0, 100, 10, 50]])
    keep = count_filters.min_count_filter(counts, min_count=10, min_samples=2)
    np.testing.assert_array_equal(keep, [True, False, False, True])


def test_filter_by_expr_follows_edger():
    # library sizes 1e6, 2e6, 3e6, 4e6 -> median 2.5e6, CPM cutoff 10 / 2.5 = 4 CPM
    libs = np.array([1e6, 2e6, 3e6, 4e6])
    gene_cpm = np.array(
        [
            [5, 5, 5, 5],  # 4 samples above 4 CPM -> kept
            [5, 1, 1, 5],  # 2 samples >= 4 CPM = smallest group (2) -> kept
            [5, 1, 1, 1],  # 1 sample -> dropped
        ],
        dtype=float,
    ).T
    genes = gene_cpm * libs[:, None] / 1e6
    filler = libs - genes.sum(axis=1)
    counts = np.column_stack([genes, filler])
    keep = count_filters.filter_by_expr(counts, group_sizes=[2, 2])
    np.testing.assert_array_equal(keep, [True, True, False, True])
    # total count below min_total_count (15) drops a gene whatever its CPM
    tiny = np.array([[4.0, 1e3], [4.0, 1e3], [4.0, 1e3]])
    assert not count_filters.filter_by_expr(tiny, group_sizes=[1, 2])[0]
    # large groups: required samples = 10 + (n - 10) * 0.7
    big = np.ones((30, 2)) * 100
    big[:17, 0] = 0  # 13 expressing samples < 10 + (30 - 10) * 0.7 = 24
    assert not count_filters.filter_by_expr(big, group_sizes=[30])[0]


def test_size_factors_and_z_scores_match_references():
    counts, sf_ref, _ = _data(4)
    np.testing.assert_allclose(gene_set_scores.median_of_ratios(counts), sf_ref, rtol=1e-12)
    expr = gene_set_scores.log_normalise(counts, sf_ref)
    members = [np.array([0, 3, 5]), np.array([7])]
    scores = gene_set_scores.combined_z_scores(expr, members)
    z = (expr - expr.mean(axis=0)) / expr.std(axis=0, ddof=1)
    np.testing.assert_allclose(scores[:, 0], z[:, [0, 3, 5]].sum(axis=1) / np.sqrt(3))
    np.testing.assert_allclose(scores[:, 1], z[:, 7])


def test_size_factors_without_a_gene_expressed_everywhere_follow_deseq2_poscounts():
    # DESeq2 estimateSizeFactors(type = "poscounts"): geometric means over the positive
    # counts divided by all samples, medians of the positive ratios, then sf / geomean(sf).
    # By hand: every gene's log geometric mean is log(16) / 3; the medians are log2 times
    # 1/6, 2/3 and 7/6, so the normalised factors are 2^-1/2, 1 and 2^1/2.
    counts = np.array([[0, 4, 2], [2, 0, 8], [8, 4, 0]], dtype=float)
    np.testing.assert_allclose(
        gene_set_scores.median_of_ratios(counts), [2**-0.5, 1.0, 2**0.5], rtol=1e-12
    )


def test_inference_refits_divergent_genes_with_pydeseq2s_solver():
    from itme.rna._deseq import _vectorised_inference_class

    counts, sf, design = _data(1, n_genes=30)
    counts = counts.copy()
    counts[:, 0] = 3e14
    disp = np.full(counts.shape[1], 0.1)
    inference = _vectorised_inference_class()()
    beta, mu, hat, converged = inference.irls(counts, sf, design, disp, 0.5, 1e-8)
    assert inference.n_irls_fallback == 1
    ref = pd_utils.irls_solver(counts[:, 0], sf, design, 0.1, 0.5, 1e-8)
    np.testing.assert_allclose(beta[0], ref[0])
    np.testing.assert_allclose(mu[:, 0], ref[1])
    assert converged[0] == ref[3]
