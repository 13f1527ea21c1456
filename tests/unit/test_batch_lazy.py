"""Drift and batch correction on a cohort store: the in-memory values, bit for bit.

The store keeps raw counts only; ``pp.correct_drift`` and ``pp.correct_batch`` on its lazy
``X`` fit the same parameters (one task per sample, subsamples by event index) and leave a
lazy corrected ``X``; ``io.open_store`` rebuilds it from ``uns`` (``itme._chain``).
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import ItmeInputError

MARKERS = ["CD3", "CD4", "CD8", "CD19", "CD56", "HLADR"]
CHANNELS = ["Time", "Y89Di", "Nd142Di", "Nd145Di", "Nd146Di", "Sm147Di", "Sm149Di"]
TYPES = np.array(
    [
        [3.5, 3.0, 0.3, 0.2, 0.3, 0.5],  # CD4 T
        [3.5, 0.3, 3.0, 0.2, 0.5, 0.5],  # CD8 T
        [0.2, 0.3, 0.2, 3.5, 0.2, 3.0],  # B
        [0.3, 0.2, 0.8, 0.2, 3.5, 0.4],  # NK
    ]
)
#: events per file (not multiples of the chunks), batch of each file, files that drift
SIZES = (2600, 1900, 2300, 2800, 1700, 2500)
BATCHES = ("R1", "R1", "R2", "R2", "R3", "R3")
DRIFTING = (1, 4)


def make_cohort(folder: Path) -> tuple[Path, Path]:
    """FCS files of three runs (own gain per marker), two files losing signal over time."""
    rng = np.random.default_rng(11)
    gains = {b: rng.uniform(0.6, 1.6, len(MARKERS)) for b in sorted(set(BATCHES))}
    rows = ["file_name,sample_id,patient_id,batch"]
    for k, (n, batch) in enumerate(zip(SIZES, BATCHES, strict=True)):
        kind = rng.choice(4, size=n, p=[0.35, 0.25, 0.25, 0.15])
        level = rng.normal(TYPES[kind], 0.35)
        raw = 5 * np.sinh(np.clip(level, 0, None)) * gains[batch]
        time = np.sort(rng.uniform(0, 6e5, n))
        if k in DRIFTING:  # 40 % of the signal lost from the start to the end of the file
            raw *= np.exp(-0.5 * time / 6e5)[:, None]
        x = np.column_stack([time, raw]).astype(np.float32)
        fcs_factory.write(folder / f"f{k}.fcs", x, CHANNELS, labels=["Time", *MARKERS])
        rows.append(f"f{k}.fcs,S{k},P{k},{batch}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    panel = ["fcs_colname,antigen,marker_class", "Time,Time,none"]
    panel += [f"{c},{m},type" for c, m in zip(CHANNELS[1:], MARKERS, strict=True)]
    (folder / "panel.csv").write_text("\n".join(panel) + "\n")
    return folder / "samples.csv", folder / "panel.csv"


def correct(adata) -> None:
    itme.pp.arcsinh(adata)
    itme.pp.correct_drift(adata)
    itme.pp.correct_batch(adata, grid=(3, 3), fit_cells=2_000, rng=5)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    return make_cohort(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def in_memory(cohort):
    mem = itme.io.read_cohort(*cohort)
    correct(mem)
    return mem


@pytest.mark.parametrize("chunk_rows", [700, 4096])
def test_corrected_store_opens_with_the_in_memory_x(cohort, in_memory, tmp_path, chunk_rows):
    store = tmp_path / "c.zarr"
    lazy = itme.io.read_cohort(*cohort, store=store, chunk_rows=chunk_rows)
    with dask.config.set(scheduler="threads", num_workers=2):
        correct(lazy)
        assert isinstance(lazy.X, da.Array)  # nothing was computed into memory
        np.testing.assert_array_equal(lazy.X.compute(), in_memory.X)
    mem_drift, lazy_drift = in_memory.uns["drift"], lazy.uns["drift"]
    pd.testing.assert_frame_equal(lazy_drift["samples"], mem_drift["samples"])
    pd.testing.assert_frame_equal(lazy_drift["windows"], mem_drift["windows"])
    info, mem_info = lazy.uns["batch_correction"], in_memory.uns["batch_correction"]
    pd.testing.assert_frame_equal(info["shift"], mem_info["shift"])
    pd.testing.assert_frame_equal(info["nodes"], mem_info["nodes"])
    for key in ("align_slope", "align_intercept", "codes", "slope", "intercept", "lo", "hi"):
        np.testing.assert_array_equal(info[key], mem_info[key])
    # the corrections did something: the drifting files were found, the runs moved
    assert list(mem_drift["samples"]["corrected"]) == [k in DRIFTING for k in range(6)]
    assert np.abs(mem_info["shift"].set_index("batch").to_numpy()).max() > 0.05
    # stored: the parameters only (no matrix); opening rebuilds arcsinh -> drift -> batch
    itme.io.update_store(lazy)
    again = itme.io.open_store(store)
    np.testing.assert_array_equal(again.X.compute(), in_memory.X)
    np.testing.assert_array_equal(again[1000:5000].X.compute(), in_memory.X[1000:5000])
    # without the batch correction's parameters, the drift-corrected values only
    del again.uns["batch_correction"]
    plain = itme._chain.rebuild(again).compute()
    assert not np.array_equal(plain, in_memory.X)


def test_a_selection_of_events_gives_the_in_memory_selection(cohort, tmp_path):
    # the pipeline corrects the clean stage's events: a lazy selection of the store
    mem = itme.io.read_cohort(*cohort)
    lazy = itme.io.read_cohort(*cohort, store=tmp_path / "c.zarr", chunk_rows=1000)
    rows = np.flatnonzero(np.random.default_rng(1).random(mem.n_obs) < 0.8)
    from itme.pp._subset import subset_events

    itme.pp.arcsinh(mem)
    itme.pp.arcsinh(lazy)
    mem, lazy = subset_events(mem, rows), subset_events(lazy, rows)
    for adata in (mem, lazy):
        itme.pp.correct_drift(adata)
        itme.pp.correct_batch(adata, grid=(3, 3), rng=2)
    np.testing.assert_array_equal(lazy.X.compute(), mem.X)


def test_lazy_drift_needs_the_time_as_a_channel(in_memory):
    lazy = in_memory.copy()
    lazy.obs["t"] = np.arange(lazy.n_obs, dtype=float)
    del lazy.uns["drift"]
    lazy.X = da.from_array(np.asarray(lazy.X), chunks=(1000, -1))
    with pytest.raises(ItmeInputError, match="time as a channel"):
        itme.pp.correct_drift(lazy, time_key="t")
