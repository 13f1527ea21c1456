"""Bead normalisation and compensation on a cohort store: the in-memory counts, kept lazy.

The store keeps the counts as read from the FCS files; ``pp.normalize_beads`` and
``pp.compensate`` on its lazy counts record their parameters in ``uns`` (the beads'
factors over time, the spillover matrix) and ``io.open_store`` recomputes the normalised,
compensated counts from them (``itme._chain.counts``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from helpers import fcs_factory

import itme
from itme.datasets import simulate_bead_run, simulate_spillover_matrix
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeStateError

METALS = ["Y89Di", "Nd142Di", "Nd143Di", "Nd144Di", "Nd145Di", "Ir191Di", "Ir193Di"]
#: cells and beads per file (not multiples of the chunks); the last file has no beads
RUNS = ((2600, 150), (1900, 120), (2300, 90), (1500, 0))


def make_cohort(folder: Path) -> tuple[Path, Path, pd.DataFrame]:
    """FCS files of bead runs drifting by different amounts, a panel and a spillover matrix."""
    rows = ["file_name,sample_id,patient_id"]
    for k, (cells, beads) in enumerate(RUNS):
        run = simulate_bead_run(METALS, n_cells=cells, n_beads=beads, drift=0.1 + 0.1 * k,
                                sample_id=f"S{k}", rng=k)  # fmt: skip
        names = list(run.var_names)
        fcs_factory.write(folder / f"f{k}.fcs", np.asarray(run.X), names)
        rows.append(f"f{k}.fcs,S{k},P{k}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    panel = ["fcs_colname,antigen,marker_class", "Time,Time,none"]
    panel += [f"{c},A{c},type" for c in names[1:]]
    (folder / "panel.csv").write_text("\n".join(panel) + "\n")
    return folder / "samples.csv", folder / "panel.csv", simulate_spillover_matrix(names[1:], rng=4)


def preprocess(adata, spill: pd.DataFrame, method: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeInputWarning)  # the file without beads
        itme.pp.normalize_beads(adata, window=51)
    itme.pp.compensate(adata, spillover=spill, method=method)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("beadruns"))


@pytest.mark.parametrize(("chunk_rows", "method"), [(700, "nnls"), (4096, "flow")])
def test_store_counts_are_the_in_memory_counts(cohort, tmp_path, chunk_rows, method):
    samples, panel, spill = cohort
    mem = itme.io.read_cohort(samples, panel)
    read = np.array(mem.layers["raw"])
    preprocess(mem, spill, method)
    store = tmp_path / "c.zarr"
    lazy = itme.io.read_cohort(samples, panel, store=store, chunk_rows=chunk_rows)
    with dask.config.set(scheduler="threads", num_workers=2):
        preprocess(lazy, spill, method)
        assert isinstance(lazy.layers["raw"], da.Array) and lazy.X is lazy.layers["raw"]
        # the kernels are the in-memory ones; blocks of other sizes may round a float64
        # solution to the other float32 neighbour (never seen here)
        np.testing.assert_array_max_ulp(lazy.layers["raw"].compute(), mem.layers["raw"], 1)
    np.testing.assert_array_equal(lazy.obs["is_bead"].to_numpy(), mem.obs["is_bead"].to_numpy())
    mem_b, lazy_b = mem.uns["bead_normalization"], lazy.uns["bead_normalization"]
    for key in ("samples", "factors", "baseline_values"):
        pd.testing.assert_frame_equal(lazy_b[key], mem_b[key])
    assert list(mem_b["samples"]["note"])[-1] == "too few beads: not normalised"
    assert set(mem_b["factors"]["sample_id"]) == {"S0", "S1", "S2"}
    pd.testing.assert_frame_equal(lazy.uns["compensation"]["matrix"],
                                  mem.uns["compensation"]["matrix"])  # fmt: skip
    # both did something: the drifting files were scaled, the spillover removed
    assert mem_b["samples"]["factor_max"].iloc[2] > 1.1
    cols = mem.var_names.get_indexer(mem.uns["compensation"]["channels"])
    assert not np.allclose(mem.layers["raw"][:, cols], read[:, cols], rtol=1e-3)

    # stored: the parameters; opening recomputes the counts, the stored ones stay as read
    itme.io.update_store(lazy)
    again = itme.io.open_store(store)
    np.testing.assert_array_max_ulp(again.layers["raw"].compute(), mem.layers["raw"], 1)
    np.testing.assert_array_equal(np.asarray(zarr.open_group(store)["layers/raw"][:]), read)
    itme.pp.arcsinh(mem)
    itme.pp.arcsinh(again)
    itme.io.update_store(again)
    np.testing.assert_allclose(itme.io.open_store(store).X.compute(), mem.X, rtol=1e-6)


def test_lazy_order_and_time_are_checked(cohort, tmp_path):
    samples, panel, spill = cohort
    lazy = itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr", chunk_rows=1000)
    lazy.obs["t"] = np.arange(lazy.n_obs, dtype=float)
    with pytest.raises(ItmeInputError, match="time as a channel"):
        itme.pp.normalize_beads(lazy, time_key="t")
    itme.pp.compensate(lazy, spillover=spill)
    # the store recomputes beads, then compensation: the other order is refused
    with pytest.raises(ItmeStateError, match="before compensating"):
        itme.pp.normalize_beads(lazy)
