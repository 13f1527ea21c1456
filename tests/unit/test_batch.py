"""pp.correct_batch (cyCombine-style) and the simulator's run effects on tiny inline data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import pp
from itme.datasets._cells import apply_run_effects, draw_run_gains
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError

MARKERS = ["CD3", "CD4", "CD8", "CD19"]
#: arcsinh-scale means of three cell types
TYPES = {
    "CD4 T": [3.0, 3.0, 0.3, 0.2],
    "CD8 T": [3.0, 0.3, 3.0, 0.2],
    "B": [0.2, 0.3, 0.2, 3.0],
}


def _cells(seed: int, shares: dict[str, dict[str, float]], shifts: dict[str, list[float]], n=1500):
    """Events of the TYPES in each batch, arcsinh scale, each batch shifted by its own offsets."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for batch, share in shares.items():
        for name, frac in share.items():
            m = int(n * frac)
            x = rng.normal(TYPES[name], 0.3, size=(m, len(MARKERS))) + shifts[batch]
            blocks.append(x)
            obs.append(pd.DataFrame({"batch": batch, "truth": name}, index=range(m)))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    var = pd.DataFrame({"marker_class": "type"}, index=MARKERS)
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var)
    adata.obs["batch"] = pd.Categorical(adata.obs["batch"])
    adata.uns["arcsinh"] = {"cofactor": np.full(len(MARKERS), 5.0), "channels": MARKERS}
    return adata


EVEN = {"CD4 T": 0.4, "CD8 T": 0.3, "B": 0.3}
SHIFTS = {"R1": [0.0, 0.0, 0.0, 0.0], "R2": [0.5, -0.4, 0.3, 0.4], "R3": [-0.5, 0.4, -0.3, -0.4]}


def _median_spread(adata: ad.AnnData) -> float:
    """Largest difference between batches of a cell type's marker median."""
    df = pd.DataFrame(adata.X, columns=MARKERS, index=adata.obs_names)
    med = df.groupby([adata.obs["truth"], adata.obs["batch"]], observed=True).median()
    return float(med.groupby(level=0).agg(lambda s: s.max() - s.min()).to_numpy().max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_batch_aligns_each_cell_type_across_batches(seed):
    adata = _cells(seed, {b: EVEN for b in SHIFTS}, SHIFTS)
    before = _median_spread(adata)
    pp.correct_batch(adata, batch_key="batch", grid=(4, 4), rng=seed)
    after = _median_spread(adata)
    assert before > 0.7
    assert after < 0.1
    info = adata.uns["batch_correction"]
    assert info["seed"] == seed
    assert info["batches"] == ["R1", "R2", "R3"]
    assert set(info["shift"]["batch"]) == {"R1", "R2", "R3"}
    # R2 was shifted up on CD3: its mean change is negative, R3's positive
    shift = info["shift"].set_index("batch")
    assert shift.loc["R2", "CD3"] < -0.2 < 0.2 < shift.loc["R3", "CD3"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_batch_keeps_composition_confounded_with_batch(seed):
    # R3 holds mostly B cells (its patients' biology), and carries a shift of its own
    shares = {"R1": EVEN, "R2": EVEN, "R3": {"CD4 T": 0.1, "CD8 T": 0.1, "B": 0.8}}
    adata = _cells(seed, shares, SHIFTS)
    pp.correct_batch(adata, batch_key="batch", grid=(4, 4), rng=seed)
    assert _median_spread(adata) < 0.15
    # the B cells of R3 still look like B cells and the T cells like T cells: the mostly-B
    # batch was not pulled towards the T-cell profile
    df = pd.DataFrame(adata.X, columns=MARKERS)
    r3 = (adata.obs["batch"] == "R3").to_numpy()
    b = (adata.obs["truth"] == "B").to_numpy()
    r1 = (adata.obs["batch"] == "R1").to_numpy()
    for rows, marker in ((b, "CD19"), (b, "CD3"), (~b, "CD3"), (~b, "CD19")):
        assert np.median(df.loc[r3 & rows, marker]) == pytest.approx(
            np.median(df.loc[r1 & rows, marker]), abs=0.15
        )
    assert np.median(df.loc[r3 & b, "CD19"]) > 2.5
    assert np.median(df.loc[r3 & b, "CD3"]) < 0.8


@pytest.mark.parametrize("seed", [0, 1])
def test_cycombine_scaling_fails_where_landmarks_hold(seed):
    # cyCombine's per-batch z-scores move with composition: the mostly-B batch is not aligned
    shares = {"R1": EVEN, "R2": EVEN, "R3": {"CD4 T": 0.1, "CD8 T": 0.1, "B": 0.8}}
    adata = _cells(seed, shares, SHIFTS)
    pp.correct_batch(adata, batch_key="batch", grid=(4, 4), som_input="scale", rng=seed)
    assert _median_spread(adata) > 0.5


def test_correct_batch_same_seed_same_values():
    a = _cells(5, {b: EVEN for b in SHIFTS}, SHIFTS)
    b = a.copy()
    pp.correct_batch(a, grid=(4, 4), rng=7)
    pp.correct_batch(b, grid=(4, 4), rng=7)
    np.testing.assert_array_equal(a.X, b.X)


def test_correct_batch_copy_leaves_input():
    adata = _cells(3, {b: EVEN for b in SHIFTS}, SHIFTS)
    x0 = adata.X.copy()
    out = pp.correct_batch(adata, grid=(4, 4), rng=1, copy=True)
    np.testing.assert_array_equal(adata.X, x0)
    assert "batch_correction" not in adata.uns
    assert not np.allclose(out.X, x0)


def test_correct_batch_errors():
    adata = _cells(0, {b: EVEN for b in SHIFTS}, SHIFTS)
    with pytest.raises(ItmeInputError, match="obs\\['run'\\]"):
        pp.correct_batch(adata, batch_key="run")
    with pytest.raises(ItmeParameterError, match="method"):
        pp.correct_batch(adata, method="magic")
    one = adata[adata.obs["batch"] == "R1"].copy()
    with pytest.raises(ItmeInputError, match="at least two batches"):
        pp.correct_batch(one)
    raw = adata.copy()
    del raw.uns["arcsinh"]
    with pytest.raises(ItmeStateError, match="pp.arcsinh"):
        pp.correct_batch(raw)
    pp.correct_batch(adata, grid=(3, 3), rng=0)
    with pytest.raises(ItmeStateError, match="corrected already"):
        pp.correct_batch(adata)


def test_run_effects_scale_raw_counts():
    rng = np.random.default_rng(0)
    gains = draw_run_gains(3, 4, 0.5, rng=rng)
    assert gains.min() >= 0.5
    assert gains.max() <= 1.5
    assert np.ptp(gains) > 0.3
    X = np.full((5, 4), 100.0)
    t = np.linspace(0, 1, 5)
    out = apply_run_effects(X, gains=gains[0], drift=0.5, time=t)
    np.testing.assert_allclose(out[0], 100 * gains[0], rtol=1e-6)
    np.testing.assert_allclose(out[-1], 50 * gains[0], rtol=1e-6)
    np.testing.assert_array_equal(apply_run_effects(X), X)
    with pytest.raises(ItmeParameterError, match="time"):
        apply_run_effects(X, drift=0.3)
    with pytest.raises(ItmeParameterError, match="spread"):
        draw_run_gains(2, 2, 1.5, rng=rng)


def test_correction_survives_h5ad(tmp_path):
    adata = _cells(2, {b: EVEN for b in SHIFTS}, SHIFTS)
    pp.correct_batch(adata, grid=(3, 3), rng=2)
    adata.write_h5ad(tmp_path / "c.h5ad")
    back = ad.read_h5ad(tmp_path / "c.h5ad")
    info = back.uns["batch_correction"]
    assert info["method"] == "cycombine"
    assert list(info["markers"]) == MARKERS
    pd.testing.assert_frame_equal(
        info["shift"], adata.uns["batch_correction"]["shift"], check_dtype=False
    )
