"""itme.rna.pathway_scores: per-sample gene-set scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import zscore

from itme.datasets._counts import simulate_counts
from itme.errors import ItmeInputError, ItmeParameterError
from itme.rna import pathway_scores

SETS = {
    "UP": [f"UP{i}" for i in range(30)],
    "DOWN": [f"DOWN{i}" for i in range(30)],
    "NULL": [f"NULL{i}" for i in range(30)],
}


def _adata(seed):
    sim = simulate_counts(
        ["A"] * 8 + ["B"] * 8,
        gene_sets=SETS,
        shifts={"B": {"UP": 1.5, "DOWN": -1.5}},
        n_genes=400,
        fraction_shifted=1.0,
        fraction_unexpressed=0.0,
        base_mean_median=300,
        rng=seed,
    )
    obs = sim.samples.assign(patient_id=sim.samples.index)
    return ad.AnnData(X=sim.counts.to_numpy(), obs=obs, var=sim.genes[["gene_name"]]), sim


@pytest.mark.parametrize("seed", [0, 1])
def test_zscore_separates_groups_in_the_planted_direction(seed):
    adata, sim = _adata(seed)
    pathway_scores(adata, gene_sets=SETS)
    scores = adata.obsm["pathway_scores"]
    mean = scores.groupby(sim.samples["group"].to_numpy()).mean()
    assert mean.loc["B", "UP"] - mean.loc["A", "UP"] > 3
    assert mean.loc["A", "DOWN"] - mean.loc["B", "DOWN"] > 3
    assert abs(mean.loc["B", "NULL"] - mean.loc["A", "NULL"]) < 2


def test_zscore_equals_the_combined_z_score_formula():
    adata, _ = _adata(2)
    pathway_scores(adata, gene_sets=SETS, min_count=0, min_samples=0)
    x = adata.X.astype(float)
    # DESeq2 median-of-ratios size factors, computed independently here
    logs = np.log(x[:, (x > 0).all(axis=0)])
    sf = np.exp(np.median(logs - logs.mean(axis=0), axis=1))
    expr = np.log2(x / sf[:, None] + 1)
    cols = [list(adata.var["gene_name"]).index(g) for g in SETS["UP"]]
    z = zscore(expr[:, cols], axis=0, ddof=1)
    expected = z.sum(axis=1) / np.sqrt(len(cols))
    np.testing.assert_allclose(adata.obsm["pathway_scores"]["UP"].to_numpy(), expected)


def test_ssgsea_method_and_copy():
    adata, sim = _adata(3)
    out = pathway_scores(adata, gene_sets=SETS, method="ssgsea", key_added="ss", copy=True)
    assert "ss" not in adata.obsm and out is not None
    scores = out.obsm["ss"]
    assert list(scores.index) == list(adata.obs_names)
    b = sim.samples["group"].to_numpy() == "B"
    assert scores.loc[b, "UP"].mean() > scores.loc[~b, "UP"].mean()
    assert scores.loc[b, "DOWN"].mean() < scores.loc[~b, "DOWN"].mean()
    assert out.uns["ss"]["method"] == "ssgsea"


def test_scores_survive_h5ad(tmp_path):
    adata, _ = _adata(4)
    sets = dict(SETS, TINY=["UP1", "UP2"])
    pathway_scores(adata, gene_sets=sets)
    info = adata.uns["pathway_scores"]
    table = info["sets"].set_index("Term")
    assert not table.loc["TINY", "scored"] and table.loc["UP", "matched_size"] == 30
    path = tmp_path / "rna.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.obsm["pathway_scores"], adata.obsm["pathway_scores"])
    assert back.uns["pathway_scores"]["method"] == "zscore"
    assert back.uns["pathway_scores"]["n_genes_scored"] == info["n_genes_scored"]


def test_errors():
    adata, _ = _adata(5)
    with pytest.raises(ItmeParameterError, match="method"):
        pathway_scores(adata, gene_sets=SETS, method="gsva")
    with pytest.raises(ItmeInputError, match="no gene set has an allowed number"):
        pathway_scores(adata, gene_sets="hallmark")  # simulated symbols are not Hallmark genes
