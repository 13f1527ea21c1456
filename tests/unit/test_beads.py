"""Bead normalisation: drift removed, beads found by pp.clean's gate, bad inputs named."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import datasets, pp
from itme.core.batch.beads import bead_factors, running_median
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError, ItmeStateError

PANEL = ["In115Di", "Nd144Di", "Eu151Di", "Eu153Di", "Ho165Di", "Lu175Di", "Ir191Di", "Ir193Di"]


def _window_drift(a: ad.AnnData, n_windows: int = 5) -> float:
    """Largest range over time windows of a channel's median (measured / expected), cells only."""
    raw, exp = a.layers["raw"], a.layers["truth"]
    w = np.minimum((a.obs["time_fraction"].to_numpy() * n_windows).astype(int), n_windows - 1)
    cells = (a.obs["truth"] == "cell").to_numpy()
    worst = 0.0
    for j, name in enumerate(a.var_names):
        if name in ("Time", "Ce140Di"):
            continue
        pos = cells & (exp[:, j] > 50)
        ratio = raw[:, j] / np.maximum(exp[:, j], 1e-9)
        med = np.array([np.median(ratio[pos & (w == k)]) for k in range(n_windows)])
        worst = max(worst, float((med.max() - med.min()) / med.mean()))
    return worst


def test_running_median_follows_a_trend_to_the_ends():
    x = np.arange(101, dtype=float)[:, None]
    out = running_median(x, 21)
    assert np.allclose(out[10:91, 0], x[10:91, 0])  # centred windows on a line
    assert out[0, 0] == np.median(x[:7])  # ends: a third of the window, not held for 10 rows
    assert np.all(np.diff(out[:, 0]) >= 0)


def test_bead_factors_undo_a_known_linear_loss():
    t = np.linspace(0, 1, 400)
    base = np.array([1000.0, 2000.0, 4000.0])
    beads = base * (1 - 0.3 * t)[:, None]
    for combine in ("geometric", "least_squares"):
        factors, _ = bead_factors(beads, t, base, t, window=21, combine=combine)
        corrected = factors * (1 - 0.3 * t)
        assert np.allclose(corrected[10:-10], 1.0, atol=1e-9)  # exact inside
        assert np.allclose(corrected, 1.0, atol=5e-3)  # the ends share a short window


@pytest.mark.parametrize("seed", range(3))
def test_normalize_beads_removes_drift_and_labels_the_beads(seed):
    run = datasets.simulate_bead_run(PANEL, n_cells=6000, n_beads=1200, drift=0.3, rng=seed)
    before = _window_drift(run)
    pp.normalize_beads(run, window=201)
    after = _window_drift(run)
    assert before > 0.25
    assert after < 0.04
    truth = (run.obs["truth"] == "bead").to_numpy()
    assert (run.obs["is_bead"].to_numpy() == truth).mean() > 0.999
    table = run.uns["bead_normalization"]["samples"]
    assert int(table["n_beads"].iloc[0]) == int(run.obs["is_bead"].sum())
    assert run.X is run.layers["raw"]
    # pp.clean's bead step removes the same events afterwards
    pp.arcsinh(run)
    pp.clean(run, steps=["bead"])
    assert (run.obs["itme_qc"] == "bead").to_numpy().sum() == int(run.obs["is_bead"].sum())


def test_cohort_and_given_baselines_bring_files_to_one_level(tmp_path):
    a = datasets.simulate_bead_run(PANEL, n_cells=3000, n_beads=600, drift=0.0, rng=1)
    b = datasets.simulate_bead_run(
        PANEL, n_cells=3000, n_beads=600, drift=0.0, sample_id="run2", rng=1
    )
    b.X = b.X.copy()
    b.X[:, 1:] *= 0.5  # the second file at half the sensitivity
    b.layers["raw"] = b.X
    both = ad.concat([a, b], merge="first")
    both.layers["raw"] = both.X
    both.var = a.var.copy()
    both.obs["sample_id"] = pd.Categorical(both.obs["sample_id"])
    cohort = pp.normalize_beads(both, baseline="cohort", copy=True)
    f = cohort.uns["bead_normalization"]["samples"].set_index("sample_id")["factor_median"]
    assert f["run2"] / f["run1"] == pytest.approx(2.0, rel=0.03)
    own = pp.normalize_beads(both, baseline="sample", copy=True)
    f = own.uns["bead_normalization"]["samples"]["factor_median"]
    assert np.allclose(f, 1.0, atol=0.03)  # each file to its own mean: level kept
    level = own.uns["bead_normalization"]["baseline_values"].set_index("sample_id")
    given = pp.normalize_beads(both, baseline=(level.loc["run1"] * 2).to_dict(), copy=True)
    f = given.uns["bead_normalization"]["samples"].set_index("sample_id")["factor_median"]
    assert f["run1"] == pytest.approx(2.0, rel=0.03)
    cohort.write_h5ad(tmp_path / "beads.h5ad")
    back = ad.read_h5ad(tmp_path / "beads.h5ad")
    assert back.uns["bead_normalization"]["baseline"] == "cohort"
    assert back.obs["is_bead"].dtype == bool


def test_normalize_beads_bad_inputs():
    run = datasets.simulate_bead_run(PANEL, n_cells=500, n_beads=100, rng=0)
    no_ce = run[:, [n for n in run.var_names if n != "Ce140Di"]].copy()
    with pytest.raises(ItmeInputError, match="no bead channel"):
        pp.normalize_beads(no_ce)
    with pytest.raises(ItmeInputError, match="time_key='Clock'"):
        pp.normalize_beads(run, time_key="Clock", copy=True)
    with pytest.raises(ItmeParameterError, match="baseline"):
        pp.normalize_beads(run, baseline="global", copy=True)
    cells_only = run[(run.obs["truth"] == "cell").to_numpy()].copy()
    with pytest.raises(ItmeInputError, match="0 beads by the bead gate"):
        pp.normalize_beads(cells_only)
    partial = run[:, [n for n in run.var_names if n != "Lu175Di"]].copy()
    with pytest.warns(ItmeInputWarning, match="Lu175 not in the data"):
        pp.normalize_beads(partial)
    assert partial.uns["bead_normalization"]["absent"] == ["Lu175"]
    with pytest.raises(ItmeStateError, match="normalised already"):
        pp.normalize_beads(partial)
    pp.arcsinh(run)
    with pytest.raises(ItmeStateError, match="before pp.arcsinh"):
        pp.normalize_beads(run)


def test_a_file_without_beads_among_files_with_beads_is_left_alone():
    a = datasets.simulate_bead_run(PANEL, n_cells=2000, n_beads=300, drift=0.3, rng=2)
    b = datasets.simulate_bead_run(PANEL, n_cells=2000, n_beads=300, sample_id="nob", rng=3)
    b = b[(b.obs["truth"] == "cell").to_numpy()].copy()
    both = ad.concat([a, b], merge="first")
    both.var = a.var.copy()
    both.layers["raw"] = both.X
    both.obs["sample_id"] = pd.Categorical(both.obs["sample_id"])
    before = np.asarray(both.layers["raw"][both.obs["sample_id"] == "nob"]).copy()
    with pytest.warns(ItmeInputWarning, match="sample nob.*left unnormalised"):
        pp.normalize_beads(both)
    table = both.uns["bead_normalization"]["samples"].set_index("sample_id")
    assert table.loc["nob", "note"] == "too few beads: not normalised"
    assert np.array_equal(both.layers["raw"][both.obs["sample_id"] == "nob"], before)
    assert table.loc["run1", "factor_max"] > 1.1  # the file with beads was normalised
