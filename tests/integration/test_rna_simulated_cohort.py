"""Full RNA chain on a simulated 38-patient cohort with the paper's pathway shifts planted.

Visram et al. 2021 (Fig. 5): in clusters 2+3 vs 1, E2F targets, G2M checkpoint and MYC
targets up; interferon alpha/gamma, TNFa via NFkB, IL6/JAK/STAT3 and TGF-beta down. The
shifts are planted with simulate_counts; differential_expression + gsea (Hallmark, 1000
permutations) must find every one at FDR < 0.05 with the right sign, and give identical
output when run again with the same rng.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest

from itme.datasets._counts import simulate_counts
from itme.io import hallmark_path, read_gmt
from itme.rna import differential_expression, gsea, pathway_scores

pytestmark = pytest.mark.slow

UP = ["HALLMARK_E2F_TARGETS", "HALLMARK_G2M_CHECKPOINT", "HALLMARK_MYC_TARGETS_V1"]
DOWN = [
    "HALLMARK_INTERFERON_ALPHA_RESPONSE",
    "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING",
    "HALLMARK_TGF_BETA_SIGNALING",
]


def _cohort(seed, shift=0.5):
    groups = pd.Series(
        ["1"] * 24 + ["2"] * 5 + ["3"] * 9, index=[f"P{i:02d}" for i in range(1, 39)]
    )
    planted = {s: shift for s in UP} | {s: -shift for s in DOWN}
    sim = simulate_counts(
        groups,
        gene_sets=read_gmt(hallmark_path()),
        shifts={"2": planted, "3": planted},
        n_genes=6000,
        rng=seed,
    )
    obs = pd.DataFrame(
        {"patient_id": sim.samples.index, "itme_cluster": sim.samples["group"]},
        index=sim.samples.index,
    )
    return ad.AnnData(X=sim.counts.to_numpy(), obs=obs, var=sim.genes[["gene_name"]])


@pytest.mark.parametrize("seed", [11, 12])
def test_every_planted_pathway_found_with_the_right_sign(seed):
    adata = _cohort(seed)
    res = differential_expression(adata, contrast=("itme_cluster", ["2", "3"], "1"))
    assert res.attrs["n_test"] == 14 and res.attrs["n_reference"] == 24
    out = gsea(res, rng=seed).set_index("Term")
    assert out.attrs["permutations"] == 1000
    assert (out.loc[UP, "FDR"] < 0.05).all() and (out.loc[UP, "NES"] > 0).all(), out.loc[UP]
    assert (out.loc[DOWN, "FDR"] < 0.05).all() and (out.loc[DOWN, "NES"] < 0).all(), out.loc[DOWN]

    # per-patient scores carry the same signal
    pathway_scores(adata)
    scores = adata.obsm["pathway_scores"]
    in_23 = adata.obs["itme_cluster"].isin(["2", "3"]).to_numpy()
    for term in UP:
        assert scores.loc[in_23, term].mean() > scores.loc[~in_23, term].mean()
    for term in DOWN:
        assert scores.loc[in_23, term].mean() < scores.loc[~in_23, term].mean()


def test_same_seed_same_output():
    first = _cohort(13)
    second = _cohort(13)
    assert (first.X == second.X).all()
    contrast = ("itme_cluster", ["2", "3"], "1")
    res_a = differential_expression(first, contrast=contrast)
    res_b = differential_expression(second, contrast=contrast)
    pd.testing.assert_frame_equal(res_a, res_b)
    out_a = gsea(res_a, permutations=300, rng=13)
    out_b = gsea(res_b, permutations=300, rng=13)
    pd.testing.assert_frame_equal(out_a, out_b)
    assert out_a.attrs["seed"] == out_b.attrs["seed"] == 13
