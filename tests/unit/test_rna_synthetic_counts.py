"""itme.datasets._counts.simulate_counts: reproducible NB counts with planted shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from itme.datasets._counts import simulate_counts
from itme.errors import ItmeParameterError

SETS = {"P": [f"P{i}" for i in range(200)], "Q": [f"Q{i}" for i in range(100)]}


def test_same_rng_same_counts_and_documented_layout():
    groups = pd.Series(["1", "1", "2", "2", "3"], index=["pa", "pb", "pc", "pd", "pe"])
    a = simulate_counts(groups, gene_sets=SETS, shifts={"2": {"P": 1.0}}, n_genes=1000, rng=7)
    b = simulate_counts(groups, gene_sets=SETS, shifts={"2": {"P": 1.0}}, n_genes=1000, rng=7)
    c = simulate_counts(groups, gene_sets=SETS, shifts={"2": {"P": 1.0}}, n_genes=1000, rng=8)
    pd.testing.assert_frame_equal(a.counts, b.counts)
    assert not a.counts.equals(c.counts)
    assert a.counts.shape == (5, 1000) and a.counts.to_numpy().dtype == np.int64
    assert list(a.counts.index) == ["pa", "pb", "pc", "pd", "pe"]
    assert list(a.genes.columns) == [
        "gene_name",
        "base_mean",
        "dispersion",
        "lfc_1",
        "lfc_2",
        "lfc_3",
    ]
    assert set(SETS["P"]) <= set(a.genes["gene_name"])
    row = a.planted.iloc[0]
    assert (row["group"], row["gene_set"], row["n_genes"], row["n_shifted"]) == ("2", "P", 200, 140)
    shifted = a.genes["lfc_2"] != 0
    assert shifted.sum() == 140 and (a.genes["lfc_1"] == 0).all()
    assert a.genes.loc[shifted, "gene_name"].isin(SETS["P"]).all()
    assert a.genes.loc[shifted, "lfc_2"].between(0.5, 1.5).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_follow_the_planted_fold_changes(seed):
    groups = ["A"] * 40 + ["B"] * 40
    sim = simulate_counts(
        groups,
        gene_sets=SETS,
        shifts={"B": {"P": 2.0, "Q": -1.0}},
        n_genes=600,
        fraction_shifted=1.0,
        fraction_unexpressed=0.0,
        base_mean_median=500,
        base_mean_sdlog=0.5,
        rng=seed,
    )
    norm = sim.counts.to_numpy() / sim.samples["size_factor"].to_numpy()[:, None]
    b = np.asarray(groups) == "B"
    observed = np.log2(norm[b].mean(axis=0) + 0.5) - np.log2(norm[~b].mean(axis=0) + 0.5)
    truth = sim.genes["lfc_B"].to_numpy()
    names = sim.genes["gene_name"]
    for members, target in ((SETS["P"], 2.0), (SETS["Q"], -1.0)):
        sel = names.isin(members).to_numpy()
        assert np.median(observed[sel]) == pytest.approx(target, abs=0.25)
    null = truth == 0
    assert abs(np.median(observed[null])) < 0.15
    assert np.corrcoef(observed, truth)[0, 1] > 0.9
    # overdispersion: variance of normalised counts exceeds the Poisson variance
    a_counts = sim.counts.to_numpy()[~b][:, null]
    assert (a_counts.var(axis=0, ddof=1) > a_counts.mean(axis=0)).mean() > 0.9


def test_bad_arguments():
    with pytest.raises(ItmeParameterError, match="n_genes"):
        simulate_counts(["a", "b"], gene_sets=SETS, shifts={}, n_genes=10, rng=0)
    with pytest.raises(ItmeParameterError, match="shifts"):
        simulate_counts(["a", "b"], gene_sets=SETS, shifts={"c": {"P": 1}}, rng=0)
    with pytest.raises(ItmeParameterError, match="shifts"):
        simulate_counts(["a", "b"], gene_sets=SETS, shifts={"a": {"Z": 1}}, rng=0)
    with pytest.raises(ItmeParameterError, match="fraction_shifted"):
        simulate_counts(["a", "b"], gene_sets=SETS, shifts={}, fraction_shifted=0, rng=0)
