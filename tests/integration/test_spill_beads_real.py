"""pp.compensate and pp.normalize_beads on real CyTOF files (Bodenmiller 2012, cytonormpy Gates).

Neither set carries beads any more (Bodenmiller has no Ce140 channel; the Gates files have
Ce140 and a beadDist channel: their beads were removed by the acquisition software), so the
bead checks are: a clear error on the files as published, and normalisation of real cells
with simulated beads spiked in and a planted drift.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from itme import datasets, io, pp
from itme.datasets._cells import apply_run_effects
from itme.errors import ItmeInputError

BODENMILLER = "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient1_BCR-XL.fcs"
EQ = ("Ce140Di", "Eu151Di", "Eu153Di", "Ho165Di", "Lu175Di")


def _read(path) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return io.read_fcs(path)


def test_compensate_a_real_bodenmiller_file(shared_data, tmp_path):
    cells = _read(shared_data / BODENMILLER)
    metals = [c for c in cells.var["channel"] if io.parse_channel(c).element]
    assert len(metals) == 32  # every channel but Time, Cell_length and CD3(110:114)Dd
    spill = datasets.simulate_spillover_matrix(
        [f"{io.parse_channel(c).metal}Di" for c in metals], rng=0
    )
    path = io.write_spillover(spill, path=tmp_path / "spill.csv")
    measured = np.asarray(cells.X, dtype=np.float64).copy()
    flow = pp.compensate(cells, spillover=path, method="flow", copy=True)
    comp = flow.uns["compensation"]
    assert len(comp["channels"]) == 32
    assert comp["absent"] == [] and comp["not_in_matrix"] == []
    cols = [list(cells.var_names).index(n) for n in comp["channels"]]
    other = [i for i in range(cells.n_vars) if i not in cols]
    fixed = np.asarray(flow.layers["raw"], dtype=np.float64)
    # the inverse undone by the matrix gives the measured counts back; other channels untouched
    assert np.allclose(fixed[:, cols] @ spill.to_numpy(), measured[:, cols], rtol=1e-4, atol=0.05)
    assert np.array_equal(fixed[:, other], measured[:, other])
    pp.compensate(cells, spillover=path)
    out = np.asarray(cells.layers["raw"], dtype=np.float64)
    assert out[:, cols].min() >= 0  # (the published files hold some negative counts elsewhere)
    ref = np.array([nnls(spill.to_numpy().T, m)[0] for m in measured[:300, cols]])
    assert np.abs(out[:300, cols] - ref).max() < 1e-2  # float32 storage of counts
    # spillover removed: no channel's median goes up (the published counts go slightly below
    # zero where the instrument software subtracted background; NNLS makes those 0)
    before = np.median(np.maximum(measured[:, cols], 0), axis=0)
    after = np.median(out[:, cols], axis=0)
    assert (after <= before + 1e-3).all()
    assert (after < before - 1).sum() >= 3  # and some receiving channels lose real spill


def test_files_without_beads_give_a_clear_error(shared_data, cytonormpy_resources):
    boden = _read(shared_data / BODENMILLER)
    with pytest.raises(ItmeInputError, match="no bead channel"):
        pp.normalize_beads(boden)
    gates = _read(cytonormpy_resources / "Gates_PTLG021_Unstim_Control_1.fcs")
    with pytest.raises(ItmeInputError, match="0 beads by the bead gate on Ce140Di"):
        pp.normalize_beads(gates)


def test_normalize_real_cells_with_spiked_beads(cytonormpy_resources):
    files = sorted(cytonormpy_resources.glob("Gates_PTLG0*_Unstim_Control_*.fcs"))
    files = [f for f in files if "_dup" not in f.name]
    parts = [_read(f) for f in files]
    chans = list(parts[0].var["channel"])
    real = np.vstack([np.asarray(p.X, dtype=np.float64) for p in parts])
    rng = np.random.default_rng(0)
    n_beads = real.shape[0] // 10
    beads = rng.poisson(2.0, size=(n_beads, real.shape[1])).astype(np.float64)
    cols = [chans.index(c) for c in EQ]
    beads[:, cols] = [2000, 3000, 3500, 5000, 4000] * rng.lognormal(0, 0.15, (n_beads, 5))
    values = np.vstack([real, beads])
    truth = np.r_[np.zeros(len(real), bool), np.ones(n_beads, bool)]
    order = rng.permutation(len(values))
    values, truth = values[order], truth[order]
    t = np.sort(rng.uniform(0, 1, len(values)))
    metal = np.array([bool(io.parse_channel(c).element) for c in chans])
    drifted = values.copy()
    drifted[:, metal] = apply_run_effects(values[:, metal], drift=0.3, time=t)
    drifted[:, chans.index("Time")] = t * 6e5
    a = ad.AnnData(
        drifted.astype(np.float32),
        obs=pd.DataFrame({"sample_id": "run"}, index=[f"e{i}" for i in range(len(t))]),
        var=parts[0].var.copy(),
    )
    a.layers["raw"] = a.X
    pp.normalize_beads(a, window=101)
    assert (a.obs["is_bead"].to_numpy() == truth).mean() > 0.999
    ratio = np.asarray(a.layers["raw"], dtype=np.float64) / np.maximum(values, 1e-9)
    w = np.minimum((t * 5).astype(int), 4)
    cells = ~truth
    for j in np.flatnonzero(metal & (np.median(values[cells], axis=0) > 20)):
        med = [np.median(ratio[cells & (w == k) & (values[:, j] > 20), j]) for k in range(5)]
        assert (max(med) - min(med)) / np.mean(med) < 0.05, chans[j]
