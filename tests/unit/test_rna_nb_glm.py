"""itme.core.rna.nb_glm and .dispersion against their references.

The vectorised IRLS, Wald test and LFC shrinkage are compared gene by gene with the
``pydeseq2.utils`` function they replace, on simulated negative-binomial counts; the
dispersion estimates, which follow R's optimiser and rules, with R's output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
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


# R 4.2.2 / DESeq2 1.38.3 on these counts (genes × samples), size factors and design ~ group:
#   dds <- DESeqDataSetFromMatrix(m, data.frame(group = factor(rep(c("a", "b"), each = 3))),
#                                 ~ group); sizeFactors(dds) <- SF
#   dds <- estimateDispersionsGeneEst(dds)
#   dispersionFunction(dds) <- function(q) 0.1 + 1 / q
#   dds <- estimateDispersionsMAP(dds, dispPriorVar = 0.5)
TINY = np.array(
    [[4, 3, 2, 0, 3, 4], [2, 13, 2, 7, 4, 1], [31, 19, 24, 14, 16, 11], [72, 70, 64, 95, 64, 85],
     [149, 461, 300, 236, 414, 183], [908, 1195, 982, 1050, 1398, 1219],
     [2446, 3133, 3242, 2658, 3044, 3189], [0, 1, 0, 1, 0, 2], [0, 0, 250, 3, 1, 0],
     [112, 177, 125, 128, 167, 155], [0, 2, 5, 12, 9, 15], [278, 934, 656, 470, 812, 434]],
    dtype=float,
).T  # fmt: skip
SF = np.array([0.8, 1.2, 1.0, 0.9, 1.1, 1.05])
R_GENEWISE = [
    1e-8, 0.61505714869202432, 0.08494654151018860, 0.05639418729168465, 0.12925485786475807,
    0.00330920353923072, 0.00701198629913180, 1e-8, 10.0, 1e-8, 0.04534294201296902,
    0.12045570702806864,
]  # fmt: skip
R_ITERATIONS = [6, 6, 5, 6, 5, 4, 8, 1, 7, 2, 100, 6]
R_MAP = [
    0.4015769709821169, 0.4059716237152428, 0.1248354772306833, 0.0863000496177903,
    0.1160140470682960, 0.0416388947890379, 0.0434365082515965, 1.4977132016308561,
    1.6267538384499531, 0.0473636596986628, 0.2103754154241043, 0.1109659954649316,
]  # fmt: skip


def test_dispersions_follow_rs_line_search_and_rules():
    """Gene-wise (incl. a grid refit after 100 steps, a gene stuck at its start, genes at
    the bounds) and MAP dispersions equal R's."""
    from itme.core.rna import dispersion

    design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]]).astype(float)
    norm = TINY / SF[:, None]
    rough = pd_utils.fit_rough_dispersions(norm, pd.DataFrame(design))
    start = np.minimum(rough, pd_utils.fit_moments_dispersions(norm, SF))
    mu = nb_glm.lin_reg_mu(TINY, SF, design, 0.5)
    gw, iterations, converged = dispersion.genewise_dispersions(
        TINY, design, mu, start, min_disp=1e-8, max_disp=10
    )
    np.testing.assert_allclose(gw, R_GENEWISE, rtol=1e-7)
    # iteration counts are R's except at the 1e-8 floor, where the likelihood is flat to
    # rounding (R: 2 steps, here a few more; the estimate is the floor either way)
    at_floor = gw <= 1e-8
    np.testing.assert_array_equal(iterations[~at_floor], np.array(R_ITERATIONS)[~at_floor])
    assert not converged[10]  # 100 steps: refitted on R's grid
    fitted = 0.1 + 1 / norm.mean(axis=0)
    map_disp, _ = dispersion.map_dispersions(
        TINY, design, mu, gw, fitted, 0.5, min_disp=1e-8, max_disp=10
    )
    np.testing.assert_allclose(map_disp, R_MAP, rtol=1e-7)


def test_shrink_lfc_reaches_pydeseq2s_map_or_a_better_one():
    counts, sf, design = _data(4, n_genes=60)
    size = np.full(counts.shape[1], 5.0)
    offset = np.log(sf)
    beta, inv_hess, converged = nb_glm.shrink_lfc(
        design, counts, size, offset, prior_no_shrink_scale=15, prior_scale=0.4, shrink_index=1
    )
    assert converged.all()
    close = 0
    for g in range(counts.shape[1]):
        y = counts[:, g]
        ref, ref_inv, _ = pd_utils.nbinomGLM(design, y, size[g], offset, 15, 0.4, "L-BFGS-B", 1)

        def f(b, y=y, s=size[g]):
            return pd_utils.nbinomFn(b, design, y, s, offset, 15, 0.4, 1)

        assert f(beta[g]) <= f(ref) + 1e-9
        close += abs(beta[g, 1] - ref[1]) < 1e-3
        # inverse of the Hessian at the optimum (central second differences); pydeseq2's
        # own ``ddf`` adds the prior curvature to whole columns (``+ np.diag(h)`` of a
        # matrix), so its inverse Hessian is not compared
        eps, p = 1e-4, design.shape[1]
        hess = np.empty((p, p))
        for i in range(p):
            for j in range(p):
                ei, ej = np.eye(p)[i] * eps, np.eye(p)[j] * eps
                hess[i, j] = (
                    f(beta[g] + ei + ej) - f(beta[g] + ei - ej) - f(beta[g] - ei + ej)
                    + f(beta[g] - ei - ej)
                ) / (4 * eps**2)  # fmt: skip
        np.testing.assert_allclose(inv_hess[g], np.linalg.inv(hess), rtol=1e-3, atol=1e-7)
    assert close >= 0.9 * counts.shape[1]


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


def test_inference_refits_non_converged_genes_as_r_does():
    """Genes whose IRLS does not converge (here: 2 iterations allowed) are refitted with R's
    ``fitNbinomGLMsOptim`` procedure: L-BFGS-B on R's penalised likelihood, in R's box."""
    from scipy.stats import nbinom, norm

    from itme.rna._deseq_inference import R_RIDGE, vectorised_inference

    counts, sf, design = _data(1, n_genes=30)  # groups a (5), b (5), c (4)
    counts = counts.copy()
    counts[:, 0] = np.r_[[0] * 5, [40, 55, 61, 38, 47], [150, 210, 180, 160]]  # none in a
    disp = np.full(counts.shape[1], 0.1)
    start, *_ = nb_glm.irls(
        counts, sf, design, disp, min_mu=0.5, beta_tol=1e-8, maxiter=2, ridge=R_RIDGE
    )
    inference = vectorised_inference()
    beta, mu, hat, converged = inference.irls(counts, sf, design, disp, 0.5, 1e-8, maxiter=2)
    assert inference.n_irls_fallback == counts.shape[1] and converged.all()

    def r_objective(b_log2, g):  # R's objectiveFn (log2 coefficients, prior sd 1000)
        m = sf * 2.0 ** (design @ b_log2)
        ll = nbinom.logpmf(counts[:, g], 10.0, 10.0 / (10.0 + m)).sum()
        return -(ll + norm.logpdf(b_log2, 0, 1000).sum())

    log2e = np.log2(np.e)
    for g in range(counts.shape[1]):
        assert (np.abs(beta[g]) * log2e <= 30 + 1e-12).all()
        assert r_objective(beta[g] * log2e, g) <= r_objective(start[g] * log2e, g) + 1e-9
        np.testing.assert_allclose(mu[:, g], sf * np.exp(design @ beta[g]))
        direct, ok = nb_glm.optim_beta(counts[:, g], sf, design, 0.1, start[g])
        np.testing.assert_allclose(beta[g], direct)
    # where no mean is floored, R's fallback lands on IRLS's converged fit
    ref, ref_mu, *_ = nb_glm.irls(counts, sf, design, disp, min_mu=0.5, beta_tol=1e-10)
    ok = (ref_mu > 0.5).all(axis=0)
    np.testing.assert_allclose(beta[ok], ref[ok], atol=1e-3)
