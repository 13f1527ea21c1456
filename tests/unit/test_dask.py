"""The dask backing: the cohort store and the blockwise functions give the in-memory results.

Runs on dask's threaded scheduler (no cluster); tests/integration/test_dask_cluster.py runs
the same functions on a real scheduler with worker processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
import itme._dask as itme_dask
from itme._dask import ComputeSettings, start_compute
from itme._files import sha256
from itme.core.cluster.select import GroupSelection
from itme.errors import (
    ItmeDependencyError,
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
)

CHANNELS = ["Time", "Y89Di", "Nd142Di", "Nd145Di", "Ir191Di"]
ANTIGENS = ["", "CD45", "CD19", "CD4", "DNA1"]
PANEL = (
    "fcs_colname,antigen,marker_class\nTime,Time,none\nY89Di,CD45,type\nNd142Di,CD19,type\n"
    "Nd145Di,CD4,state\nIr191Di,DNA1,qc\n"
)


def make_cohort(folder: Path, sizes=(50, 80, 30, 7)) -> tuple[Path, Path]:
    """FCS files of ``sizes`` events (not multiples of any chunk), samples.csv, panel.csv."""
    rng = np.random.default_rng(7)
    rows = ["file_name,sample_id,patient_id"]
    for k, n in enumerate(sizes):
        x = rng.gamma(2.0, 30.0, size=(n, len(CHANNELS))).astype(np.float32)
        x[:, 0] = np.arange(n)
        fcs_factory.write(folder / f"s{k}.fcs", x, CHANNELS, labels=ANTIGENS)
        rows.append(f"s{k}.fcs,S{k},P{k // 2}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    (folder / "panel.csv").write_text(PANEL)
    return folder / "samples.csv", folder / "panel.csv"


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("chunk_rows", [16, 64, 1000])
def test_store_holds_the_cohort_read_in_memory(tmp_path, chunk_rows):
    samples, panel = make_cohort(tmp_path)
    mem = itme.io.read_cohort(samples, panel)
    with dask.config.set(scheduler="threads", num_workers=3):  # tasks race for shared chunks
        lazy = itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr", chunk_rows=chunk_rows)
    assert isinstance(lazy.X, da.Array) and lazy.X is lazy.layers["raw"]
    assert lazy.X.chunks[0][0] == min(chunk_rows, mem.n_obs)
    np.testing.assert_array_equal(lazy.layers["raw"].compute(), mem.layers["raw"])
    # what the store holds (obs_names are written by the conversion tasks), as opened and as
    # anndata reads it, not only the AnnData that read_cohort returned; itme names the store's
    # events by their row in memory (no Python string per event), anndata reads the names
    reopened = itme.io.open_store(tmp_path / "c.zarr")
    for got in (lazy, reopened):
        assert isinstance(got.obs_names, pd.RangeIndex) and got.n_obs == mem.n_obs
        pd.testing.assert_frame_equal(got.obs.set_axis(mem.obs_names), mem.obs)
    plain = ad.read_zarr(tmp_path / "c.zarr")
    pd.testing.assert_frame_equal(plain.obs, mem.obs)
    for got in (lazy, reopened, plain):
        pd.testing.assert_frame_equal(got.var, mem.var)
        np.testing.assert_array_equal(np.asarray(got.layers["raw"]), mem.layers["raw"])
    pd.testing.assert_frame_equal(lazy.uns["io"]["files"], mem.uns["io"]["files"])
    assert lazy.uns["io"]["keywords"] == mem.uns["io"]["keywords"]  # stored as one JSON string
    files = lazy.uns["io"]["files"]  # checksums from the one read of each file: the files'
    assert list(files["sha256"]) == [sha256(Path(f)) for f in files["path"]]
    # the matrix is stored once, uncompressed: the events' bytes plus zarr.json
    # (the total footprint at scale, metadata included, is measured by scripts/bench_scale.py)
    stored = folder_bytes(tmp_path / "c.zarr" / "layers" / "raw")
    assert stored <= mem.layers["raw"].nbytes + 2048


def test_store_layout(tmp_path):
    # the layout that every reader of a store relies on: values and names chunk by chunk,
    # the names' codecs, obs's columns and their order, uns with the files' checksums, and
    # no element left half-written (uns.new) by the writes beside the conversion tasks
    import zarr

    samples, panel = make_cohort(tmp_path)
    mem = itme.io.read_cohort(samples, panel)
    with dask.config.set(scheduler="threads", num_workers=2):
        itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr", chunk_rows=16)
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r", use_consolidated=False)
    raw, names = group["layers/raw"], group["obs/_index"]
    assert (raw.dtype, raw.chunks, raw.compressors) == (np.float32, (16, mem.n_vars), ())
    np.testing.assert_array_equal(raw[:], mem.layers["raw"])
    assert names.chunks == (16,) and names.dtype == np.dtypes.StringDType()
    assert [c.to_dict()["name"] for c in (names.serializer, *names.compressors)] == [
        "vlen-utf8",
        "zstd",
    ]
    assert names.compressors[0].level == 1
    assert dict(names.attrs) == {"encoding-type": "string-array", "encoding-version": "0.2.0"}
    assert list(names[:]) == list(mem.obs_names)
    assert group["obs"].attrs["column-order"] == list(mem.obs.columns)
    assert sorted(p.name for p in (tmp_path / "c.zarr").iterdir()) == sorted(
        ["layers", "obs", "obsm", "obsp", "raw", "uns", "var", "varm", "varp", "zarr.json"]
    )
    plain = ad.read_zarr(tmp_path / "c.zarr")  # through the consolidated metadata
    files = plain.uns["io"]["files"]
    assert list(files["sha256"]) == [sha256(Path(f)) for f in files["path"]]
    pd.testing.assert_frame_equal(files, mem.uns["io"]["files"])
    assert set(plain.uns["io"]) == set(mem.uns["io"]) - {"keywords"} | {"keywords_json"}


def test_store_metadata_errors_are_raised(tmp_path, monkeypatch):
    # uns is written in a thread beside the conversion tasks: its errors are not lost
    from itme.io import _store

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(_store, "_write_new", broken)
    samples, panel = make_cohort(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr")


def test_store_refuses_to_overwrite(tmp_path):
    samples, panel = make_cohort(tmp_path)
    (tmp_path / "c.zarr").mkdir()
    with pytest.raises(ItmeInputError, match="expected a new store folder"):
        itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr")
    with pytest.raises(ItmeInputError, match="expected a cohort store with layers/raw"):
        itme.io.open_store(tmp_path / "none.zarr")


def test_store_events_are_named_by_row(tmp_path):
    samples, panel = make_cohort(tmp_path)
    lazy = itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr", chunk_rows=32)
    assert isinstance(lazy.obs_names, pd.RangeIndex)  # no Python string per event
    n = lazy.n_obs
    removed = np.arange(n) % 3 == 0
    lazy.obs["itme_qc"] = pd.Categorical.from_codes(removed.astype(np.int8), ["kept", "debris"])
    with pytest.warns(ItmeExclusionWarning, match="apply_qc removed"):
        kept = itme.pp.apply_qc(lazy)
    # a selection keeps the events' rows in the store as its names, and selects them lazily
    assert kept.obs_names.dtype.kind == "i"
    np.testing.assert_array_equal(kept.obs_names.to_numpy(), np.flatnonzero(~removed))
    assert isinstance(kept.X, da.Array)
    np.testing.assert_array_equal(kept.X.compute(), lazy.X.compute()[~removed])
    itme.io.update_store(lazy)  # all of obs: its columns; the names on disk stay
    plain = ad.read_zarr(tmp_path / "c.zarr")
    assert list(plain.obs_names[:2]) == ["S0_0", "S0_1"] and plain.obs_names[-1] == "S3_6"
    assert list(plain.obs["itme_qc"]) == list(lazy.obs["itme_qc"])


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_select_rows_equals_fancy_indexing(chunk):
    x = np.arange(300 * 3, dtype=np.float32).reshape(300, 3)
    rows = np.flatnonzero(np.random.default_rng(chunk).random(300) < 0.3)
    lazy = da.from_array(x, chunks=(chunk, -1))
    out = itme_dask.select_rows(lazy, rows)
    assert out.numblocks[0] == lazy.numblocks[0]  # one task per block, no re-chunking
    np.testing.assert_array_equal(out.compute(), x[rows])
    np.testing.assert_array_equal(out[5:40][:, [2, 0]].compute(), x[rows][5:40][:, [2, 0]])
    # repeated rows are not a mask: dask's own indexing
    np.testing.assert_array_equal(itme_dask.select_rows(lazy, [0, 0, 5]).compute(), x[[0, 0, 5]])


def test_update_store_adds_columns_not_a_matrix(tmp_path):
    samples, panel = make_cohort(tmp_path)
    lazy = itme.io.read_cohort(samples, panel, store=tmp_path / "c.zarr", chunk_rows=32)
    itme.pp.arcsinh(lazy)
    expected_x = lazy.X.compute()
    before = folder_bytes(tmp_path / "c.zarr")
    lazy.obs["label"] = pd.Categorical(np.where(expected_x[:, 0] > 3, "hi", "lo"))
    lazy.obsm["pos"] = np.arange(2 * lazy.n_obs, dtype=np.float32).reshape(-1, 2)
    itme.io.update_store(lazy)
    added = folder_bytes(tmp_path / "c.zarr") - before
    assert added < lazy.n_obs * 12 + 64 * 1024  # a label and two floats per event, no matrix
    again = itme.io.open_store(tmp_path / "c.zarr")
    assert list(again.obs["label"]) == list(lazy.obs["label"])
    np.testing.assert_array_equal(again.obsm["pos"], lazy.obsm["pos"])
    # X was not stored: it is transformed again, lazily, from layers/raw and uns["arcsinh"]
    np.testing.assert_array_equal(again.X.compute(), expected_x)
    # an ordinary AnnData zarr store
    plain = ad.read_zarr(tmp_path / "c.zarr")
    assert list(plain.obs["label"]) == list(lazy.obs["label"])
    with pytest.raises(ItmeInputError, match="expected 167 events"):
        itme.io.update_store(
            ad.AnnData(obs=lazy.obs.iloc[:10].set_axis(list("abcdefghij"))),
            store=tmp_path / "c.zarr",
        )


def test_update_store_keeps_the_stored_columns_listed_in_keep(tmp_path):
    samples, panel = make_cohort(tmp_path)
    store = tmp_path / "c.zarr"
    lazy = itme.io.read_cohort(samples, panel, store=store, chunk_rows=32)
    stored = list(lazy.obs.columns)
    lazy.obs["old"] = pd.Categorical(["x"] * lazy.n_obs)
    itme.io.update_store(lazy, obs=["old"])
    slim = itme.io.open_store(store)
    for col in list(slim.obs.columns):  # a client holding only the column it adds
        del slim.obs[col]
    slim.obs["new"] = np.arange(slim.n_obs, dtype=np.float32)
    itme.io.update_store(slim, obs=["new"], keep=stored)
    again = itme.io.open_store(store)
    # the kept columns in their stored order, the new one after; "old" (not kept) removed
    assert list(again.obs.columns) == [*stored, "new"]
    pd.testing.assert_frame_equal(again.obs[stored], lazy.obs[stored])
    np.testing.assert_array_equal(again.obs["new"], np.arange(lazy.n_obs, dtype=np.float32))
    assert list(ad.read_zarr(store).obs.columns) == [*stored, "new"]


def _cells(n: int, seed: int) -> ad.AnnData:
    """Three populations on four markers plus one untransformed technical channel."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5, 200, 5, 50], [300, 5, 80, 5], [40, 40, 400, 300]], dtype=float)
    pop = rng.integers(0, 3, n)
    raw = rng.gamma(2.0, centres[pop] / 2.0).astype(np.float32)
    raw = np.column_stack([raw, np.arange(n, dtype=np.float32)])
    var = pd.DataFrame(
        {"marker_class": ["type", "type", "type", "state", "none"]},
        index=["CD3", "CD19", "CD4", "CD8", "Time"],
    )
    obs = pd.DataFrame(
        {"sample_id": pd.Categorical(np.repeat(["a", "b"], [n // 2, n - n // 2]))},
        index=[str(i) for i in range(n)],
    )
    return ad.AnnData(X=raw, obs=obs, var=var, layers={"raw": raw})


def _lazy(adata: ad.AnnData, chunk: int) -> ad.AnnData:
    out = adata.copy()
    raw = da.from_array(adata.layers["raw"], chunks=(chunk, -1))
    out.layers["raw"] = raw
    out.X = raw
    return out


@pytest.mark.parametrize("chunk", [1, 333, 4096])
def test_arcsinh_lazy_is_byte_identical(chunk):
    mem = _cells(3000, 1)
    lazy = _lazy(mem, chunk)
    itme.pp.arcsinh(mem, cofactor={"CD3": 5.0, "CD19": 2.0})
    itme.pp.arcsinh(lazy, cofactor={"CD3": 5.0, "CD19": 2.0})
    assert isinstance(lazy.X, da.Array)
    assert lazy.X.compute().tobytes() == mem.X.tobytes()
    np.testing.assert_array_equal(lazy.X[:, 4].compute(), np.arange(3000))  # Time untouched


@pytest.mark.parametrize(("chunk", "seed"), [(500, 0), (2999, 1), (64, 2)])
def test_flowsom_and_medians_lazy_equal_in_memory(chunk, seed, monkeypatch):
    mem = _cells(6000, seed)
    itme.pp.arcsinh(mem)
    lazy = mem.copy()
    lazy.X = da.from_array(mem.X, chunks=(chunk, -1))
    kwargs = {"grid": (4, 4), "n_metaclusters": 3, "train_cells": 2000, "rng": seed}
    itme.tl.flowsom(mem, **kwargs)
    itme.tl.flowsom(lazy, **kwargs)
    # the same training events (drawn by index), the same SOM, every event mapped the same
    np.testing.assert_array_equal(lazy.uns["flowsom"]["codes"], mem.uns["flowsom"]["codes"])
    np.testing.assert_array_equal(lazy.obs["som_node"], mem.obs["som_node"])
    np.testing.assert_array_equal(lazy.obs["metacluster"], mem.obs["metacluster"])
    # the clustering recovers the three planted populations
    truth = _cells(6000, seed)  # same draw
    assert pd.crosstab(mem.obs["metacluster"], truth.X[:, 1] > 60).shape[0] == 3
    a = itme.tl.cluster_phenotypes(mem, groupby="metacluster")
    b = itme.tl.cluster_phenotypes(lazy, groupby="metacluster")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_compute_settings_are_checked_before_work():
    with pytest.raises(ItmeParameterError, match="'compute.scheduler'.*got 'lokal'"):
        ComputeSettings(scheduler="lokal").check()
    with pytest.raises(ItmeParameterError, match="'compute.workers'"):
        ComputeSettings(workers=0).check()
    # 65,536 events x 40 channels x 4 bytes = 10.5 MB a block, x4 while a kernel runs
    with pytest.raises(ItmeParameterError, match=r"memory_per_worker'.*at least 42 MB"):
        ComputeSettings(memory_per_worker="30MB").check(n_channels=40)
    ComputeSettings(memory_per_worker="50MB").check(n_channels=40)
    with pytest.raises(ItmeParameterError, match="a size such as '2GB'"):
        ComputeSettings(memory_per_worker="lots").check(n_channels=40)


def test_missing_jobqueue_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dask_jobqueue", None)
    with pytest.raises(ItmeDependencyError, match=r"pip install 'itme\[jobqueue\]'"):
        ComputeSettings(scheduler="slurm").check()


def test_unreachable_scheduler_is_an_input_error():
    settings = ComputeSettings(scheduler="tcp://127.0.0.1:9", connect_timeout="1s")
    with pytest.raises(ItmeInputError, match="compute.scheduler: expected a reachable Dask"):
        with start_compute(settings):
            pass


def _demo_folder(tmp_path: Path) -> Path:
    from itme.datasets import simulate_cohort
    from itme.pipeline import demo_config_text

    simulate_cohort(tmp_path / "input", n_patients=8, cells_per_sample=1000, n_genes=4400, rng=1)
    (tmp_path / "config.yaml").write_text(demo_config_text())
    return tmp_path / "config.yaml"


# the simulated cytokine table has out-of-range values on purpose; validation says so
@pytest.mark.filterwarnings("ignore::itme.errors.ItmeInputWarning")
def test_cli_scheduler_errors_stop_the_run_before_any_stage(tmp_path, capsys):
    from itme.cli import main

    config = _demo_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "run", str(config), "--out", str(out), "--scheduler", "lokal"]) == 2
    assert "'--scheduler'" in capsys.readouterr().err
    # a scheduler that does not answer: the error names the setting; no stage ran
    config.write_text(config.read_text() + "\ncompute:\n  connect_timeout: 1s\n")
    bad = "tcp://127.0.0.1:9"
    assert main(["-q", "run", str(config), "--out", str(out), "--scheduler", bad]) == 2
    err = capsys.readouterr().err
    assert "compute.scheduler: expected a reachable Dask scheduler" in err
    assert not (out / "work").exists()


def test_compute_section_is_validated_with_the_config(tmp_path):
    from itme.pipeline import load_config

    config = _demo_folder(tmp_path)
    text = config.read_text() + "\ncompute:\n  scheduler: tcp://10.0.0.1:8786\n  workers: 4\n"
    config.write_text(text)
    cfg = load_config(config)
    settings = cfg.compute.settings()
    assert (settings.scheduler, settings.workers, settings.chunk_rows) == (
        "tcp://10.0.0.1:8786",
        4,
        65_536,
    )
    config.write_text(text.replace("workers: 4", "workers: 4\n  memory: 4GB"))
    with pytest.raises(ItmeInputError, match="compute.memory"):
        load_config(config)


def _awkward_values(rng: np.random.Generator, n: int, dtype=np.float32) -> np.ndarray:
    """Values that trip a wrong selection: ties, zeros of both signs, negatives, NaN, inf."""
    X = rng.normal(size=(n, 8)).astype(dtype)
    X[:, 0] = np.round(X[:, 0] * 2)  # few distinct values: long runs of ties
    X[rng.random((n, 8)) < 0.3] = 0.0  # many exact zeros
    X[rng.random((n, 8)) < 0.05] = -0.0
    X[:, 1] = -np.abs(X[:, 1]) - 1  # negative only
    X[:, 2] = 1.5  # one repeated value
    X[rng.random(n) < 0.02, 3] = np.nan  # NaN in some groups' column
    X[:, 4] *= np.where(rng.random(n) < 0.5, 1e30, 1e-40)  # huge and subnormal
    X[rng.random(n) < 0.03, 5] = np.inf
    X[rng.random(n) < 0.03, 5] = -np.inf
    return X


def _awkward_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Groups 0-8 of 1 (5), 2 (6), 0 (7) events, odd and even counts; -1 and -2 left out."""
    labels = rng.integers(-2, 5, size=n)
    labels[labels == -2] = 8  # group 8: many events
    labels[rng.random(n) < 0.1] = -1
    labels[labels == 5] = 4
    labels[3] = 5
    labels[[10, n - 1]] = 6
    return labels


def _bit_identical(found: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, NaN where expected; the same bits except the sign of a zero."""
    np.testing.assert_array_equal(found, expected)
    bits = ~np.isnan(expected) & (expected != 0)
    np.testing.assert_array_equal(found.view(np.int64)[bits], expected.view(np.int64)[bits])


@pytest.mark.parametrize("collect", [False, True])
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
@pytest.mark.parametrize("chunk", [997, 250, 64, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lazy_medians_are_the_in_memory_medians_bit_for_bit(
    scheduler, chunk, dtype, collect, monkeypatch
):
    # selected on the workers (the columns do not fit), by histogram passes only or with
    # the keys collected in the last pass: one block, an uneven last block, blocks smaller
    # than a group; NaN, empty groups, groups of 1 and 2 events, negative labels; float64
    # through 64-bit keys
    from itme.core.cluster.codebook import group_medians

    budget = 997 * 8 * np.dtype(dtype).itemsize - 1 if collect else 0
    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", budget)
    taken = []
    take = GroupSelection.take
    monkeypatch.setattr(GroupSelection, "take", lambda self, p: taken.append(1) or take(self, p))
    rng = np.random.default_rng(chunk)
    X = _awkward_values(rng, 997, dtype)
    labels = _awkward_labels(rng, X.shape[0])
    cols = np.array([0, 3, 4, 7, 1, 2, 5, 6])
    expected = group_medians(X, labels, 9, columns=cols)
    assert np.isnan(expected[7]).all() and np.isnan(expected[:, 1]).any()  # empty, a NaN
    with dask.config.set(scheduler=scheduler):
        found = itme_dask.lazy_group_medians(da.from_array(X, chunks=(chunk, 5)), labels, 9, cols)
    assert found.dtype == np.float64
    _bit_identical(found, expected)
    assert len(taken) == collect


@pytest.mark.parametrize(("budget", "passes"), [(0, 3), (4 * 3001 * 4 - 1, 2)])
def test_lazy_medians_read_each_block_once_a_pass_and_gather_no_events(budget, passes, monkeypatch):
    # 4 columns of 3001 events do not fit in either budget: selected on the workers; the
    # keys sharing the prefixes found by the first pass fit in the second: collected
    from itme.core.cluster.codebook import group_medians

    def no_gather(*args):
        raise AssertionError("events gathered to the client")

    monkeypatch.setattr(itme_dask, "gather_rows", no_gather)
    monkeypatch.setattr(itme_dask, "take_rows", no_gather)
    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", budget)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3001, 7)).astype(np.float32)
    labels = rng.integers(-1, 6, size=3001)
    lazy, reads = _counted(X, 500)
    cols = np.array([5, 0, 2, 6])
    before = reads[0]  # dask's call on an empty block, for the metadata
    found = itme_dask.lazy_group_medians(lazy, labels, 6, cols)
    _bit_identical(found, group_medians(X, labels, 6, columns=cols))
    # float32, 6 groups x 4 columns: 11/11/10-bit digits, three passes over the 7 blocks,
    # or two (the keys collected in the second)
    assert reads[0] - before == passes * 7
    # no events: NaN rows, nothing read
    empty = itme_dask.lazy_group_medians(lazy, np.full(3001, -1), 2, cols)
    assert empty.shape == (2, 4) and np.isnan(empty).all() and reads[0] - before == passes * 7
    with pytest.raises(ItmeParameterError, match="one label per event"):
        itme_dask.lazy_group_medians(lazy, labels[:-1], 6, cols)


def test_local_cluster_logs_its_dashboard_and_reports_tasks(caplog, monkeypatch):
    from itme._progress import settings as progress

    monkeypatch.setattr(progress, "progress", True)  # as the CLI on a terminal
    settings = ComputeSettings(scheduler="local", workers=1, memory_per_worker="1GB")
    with caplog.at_level("INFO", logger="itme._dask"), start_compute(settings) as client:
        assert da.arange(1000, chunks=100).sum().compute() == 499_500
        from itme._progress import task_counts

        counts = client.run_on_scheduler(task_counts)
    assert counts["workers"] == 1
    assert "dashboard http://127.0.0.1:" in caplog.text


def test_embed_of_a_lazy_matrix_gathers_the_same_subsample():
    mem = _cells(3000, 4)
    itme.pp.arcsinh(mem)
    lazy = mem.copy()
    lazy.X = da.from_array(mem.X, chunks=(700, -1))
    for adata in (mem, lazy):
        itme.tl.embed(adata, method="tsne", n_cells=300, rng=4)
    assert lazy.obs["itme_tsne_subsample"].sum() == 300
    np.testing.assert_array_equal(lazy.obsm["X_itme_tsne"], mem.obsm["X_itme_tsne"])
    # every subsampled event placed, spread over both axes
    xy = mem.obsm["X_itme_tsne"][mem.obs["itme_tsne_subsample"].to_numpy()]
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 1


def _counted(X: np.ndarray, chunks: int) -> tuple[da.Array, list[int]]:
    """``X`` as a dask array whose blocks count how often they are computed."""
    reads = [0]

    def read(block):
        reads[0] += 1
        return block

    return da.from_array(X, chunks=(chunks, -1)).map_blocks(read, dtype=X.dtype), reads


@pytest.mark.parametrize("regime", ["gathered", "selected"])
def test_reuse_columns_reads_the_matrix_once_for_every_median(regime, monkeypatch, tmp_path):
    # gathered (4 columns fit): read once, reused for other labels and fewer columns;
    # selected on the workers (4 columns do not fit, 2 do not either): every call reads
    # the matrix once a pass; never a file in TMPDIR
    from itme.core.cluster.codebook import group_medians

    fits = regime == "gathered"
    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", 4 * 3001 * 4 if fits else 4 * 3001)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3001, 7)).astype(np.float32)
    clusters, subsets = rng.integers(0, 6, size=3001), rng.integers(-1, 3, size=3001)
    lazy, reads = _counted(X, 500)
    wide, narrow = np.array([5, 0, 2, 6]), np.array([2, 5])
    with itme_dask.reuse_columns():
        start = reads[0]
        first = itme_dask.lazy_group_medians(lazy, clusters, 6, wide)
        once = reads[0]
        # 7 blocks (and dask's call on an empty block, for the metadata): once, or 2 passes
        # (the keys sharing the first digits collected in the second)
        assert once - start in ((7, 8) if fits else (14, 15))
        # other labels, a subset of the columns: no block read again when gathered
        second = itme_dask.lazy_group_medians(lazy, subsets, 3, narrow)
        assert (reads[0] == once) == fits
        # a column not gathered: read again
        before = reads[0]
        third = itme_dask.lazy_group_medians(lazy, subsets, 3, np.array([1, 2]))
        assert reads[0] > before
    assert not list(tmp_path.iterdir())  # nothing spilled
    _bit_identical(first, group_medians(X[:, wide], clusters, 6))
    _bit_identical(second, group_medians(X[:, narrow], subsets, 3))
    _bit_identical(third, group_medians(X[:, [1, 2]], subsets, 3))
    # outside the block every call reads the matrix
    before = reads[0]
    itme_dask.lazy_group_medians(lazy, subsets, 3, narrow)
    assert reads[0] > before


@pytest.mark.parametrize(("budget", "passes"), [(0, 3), (2 * 3001 * 4 - 1, 2)])
def test_reuse_columns_sums_the_first_pass_of_merged_groups(budget, passes, monkeypatch):
    # selected on the workers, 2 columns of 3001 events do not fit (3 histogram passes, or
    # 2 with the keys collected): a later
    # call whose groups merge the last one's (subsets named from metaclusters) sums its
    # first-pass histogram instead of reading the store for it
    from itme.core.cluster.codebook import group_medians

    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", budget)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3001, 7)).astype(np.float32)
    clusters = rng.integers(0, 6, size=3001)
    merged = np.array([2, 0, 2, -1, 1, 0])[clusters]  # cluster 3 left out
    split = np.where(clusters == 4, rng.integers(0, 2, size=3001), 0)  # cluster 4 split
    lazy, reads = _counted(X, 500)
    wide, narrow = np.array([5, 0, 2, 6]), np.array([2, 5])
    with itme_dask.reuse_columns():
        itme_dask.lazy_group_medians(lazy, clusters, 6, wide)
        before = reads[0]
        found = itme_dask.lazy_group_medians(lazy, merged, 3, narrow)
        assert reads[0] - before == (passes - 1) * 7  # no first pass
        _bit_identical(found, group_medians(X[:, narrow], merged, 3))
        # a cluster split, a column not counted, more events: every pass reads the store
        for labels, n, cols in ((split, 2, narrow), (merged, 3, np.array([1, 2]))):
            before = reads[0]
            found = itme_dask.lazy_group_medians(lazy, labels, n, cols)
            assert reads[0] - before == passes * 7
            _bit_identical(found, group_medians(X[:, cols], labels, n))
    itme_dask.lazy_group_medians(lazy, clusters, 6, wide)
    before = reads[0]  # outside the block: nothing kept
    itme_dask.lazy_group_medians(lazy, merged, 3, narrow)
    assert reads[0] - before == passes * 7


# the phenotype table's markers this panel does not measure are said to be ignored
@pytest.mark.filterwarnings("ignore::itme.errors.ItmeInputWarning")
@pytest.mark.parametrize(
    ("budget", "selections", "collected"),
    [(10**9, 0, 0), (0, 3, 0), (4001 * 8 * 4 - 1, 1, 1)],
    ids=["gathered", "selected", "collected"],
)
def test_medians_on_a_local_cluster_in_both_regimes_and_through_annotate(
    budget, selections, collected, monkeypatch, caplog
):
    # a real distributed LocalCluster (2 worker processes); MEDIAN_BATCH_BYTES decides on
    # the client whether the columns are gathered or selected on the workers: everything
    # gathered; everything selected by histogram passes (the subsets' first pass summed
    # from tl.annotate's metaclusters); the 8 columns of 4001 events selected, their keys
    # collected in the second pass, tl.annotate's 4 columns of 6000 events gathered
    from itme.core.cluster.codebook import group_medians

    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", budget)
    selected, taken = [], []
    select, take = itme_dask._select_on_workers, GroupSelection.take
    monkeypatch.setattr(
        itme_dask, "_select_on_workers", lambda *a: selected.append(1) or select(*a)
    )
    monkeypatch.setattr(GroupSelection, "take", lambda self, p: taken.append(1) or take(self, p))
    rng = np.random.default_rng(11)
    X = _awkward_values(rng, 4001)
    labels = _awkward_labels(rng, X.shape[0])
    cols = np.array([0, 3, 4, 7, 1, 2, 5, 6])
    mem = _cells(6000, 2)
    itme.pp.arcsinh(mem)
    itme.tl.flowsom(mem, grid=(4, 4), n_metaclusters=5, train_cells=2000, rng=2)
    lazy = mem.copy()
    lazy.X = da.from_array(mem.X, chunks=(700, -1))
    settings = ComputeSettings(scheduler="local", workers=2, memory_per_worker="1GB")
    with start_compute(settings), caplog.at_level("INFO", logger="itme._dask"):
        found = itme_dask.lazy_group_medians(da.from_array(X, chunks=(600, 5)), labels, 9, cols)
        with itme_dask.reuse_columns():  # as the pipeline's annotate stage
            itme.tl.annotate(lazy, phenotypes="lymphoid_visram2021", min_events=1)
            subsets = pd.Categorical(lazy.obs["subset"])  # then the heatmap's medians
            heat = itme_dask.lazy_group_medians(
                lazy.X, subsets.codes, len(subsets.categories), np.arange(4)
            )
    assert len(selected) == selections and len(taken) == collected
    assert ("first pass summed" in caplog.text) == (selections == 3)
    _bit_identical(found, group_medians(X, labels, 9, columns=cols))
    _bit_identical(heat, group_medians(mem.X[:, :4], subsets.codes, len(subsets.categories)))
    itme.tl.annotate(mem, phenotypes="lymphoid_visram2021", min_events=1)
    for key in ("medians", "clusters"):
        pd.testing.assert_frame_equal(
            lazy.uns["subset"][key], mem.uns["subset"][key], check_exact=True, obj=key
        )
    np.testing.assert_array_equal(lazy.obs["subset"], mem.obs["subset"])


@pytest.mark.parametrize(("batch_bytes", "gathers"), [(10**9, 1), (4 * 2 * 250, 2), (1, 4)])
def test_take_row_groups_gathers_groups_together(batch_bytes, gathers, monkeypatch):
    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", batch_bytes)
    calls = []
    take = itme_dask.take_rows
    monkeypatch.setattr(itme_dask, "take_rows", lambda *a: calls.append(1) or take(*a))
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    starts = (800, 0, 1600)
    groups = [np.sort(rng.choice(np.arange(a, a + 400), 120, replace=False)) for a in starts]
    groups.insert(1, np.zeros(0, dtype=np.intp))  # an empty group
    cols = np.array([4, 1])
    found = list(itme_dask.take_row_groups(da.from_array(X, chunks=(100, -1)), groups, cols))
    assert len(found) == len(groups)
    for rows, values in zip(groups, found, strict=True):
        np.testing.assert_array_equal(values, X[np.ix_(rows, cols)])
    # consecutive groups share a gather while they fit in MEDIAN_BATCH_BYTES (250 rows of
    # 2 float32 columns: the first three groups, 240 rows, then the last)
    assert len(calls) == gathers


def test_batch_diagnostics_lazy_equal_in_memory():
    mem = _cells(6000, 5)
    itme.pp.arcsinh(mem)
    mem.obs["sample_id"] = pd.Categorical(np.repeat(["s2", "s1", "s3", "s4"], 1500))
    mem.obs["batch"] = pd.Categorical(np.repeat(["B1", "B1", "B2", "B2"], 1500))
    lazy = mem.copy()
    lazy.X = da.from_array(mem.X, chunks=(700, -1))
    kwargs = {"groupby": None, "max_events": 1000, "n_perm": 0, "rng": 9}
    a = itme.tl.batch_diagnostics(mem, **kwargs)
    b = itme.tl.batch_diagnostics(lazy, **kwargs)
    pd.testing.assert_frame_equal(a["sample_medians"], b["sample_medians"], check_exact=True)
    assert a["r2"] == b["r2"]


def test_gather_rows_on_a_cluster_equals_compute_and_releases_the_blocks():
    # blocks of uneven sizes, empty blocks (a row selection), several column chunks, 1-D
    X = np.random.default_rng(5).normal(size=(1003, 6)).astype(np.float32)
    lazy = da.from_array(X, chunks=(97, 4))
    rows = np.flatnonzero(X[:, 0] > 1.0)  # most blocks keep a few rows, some none
    cases = {
        "matrix": (lazy, X),
        "columns": (lazy[:, [5, 0, 2]], X[:, [5, 0, 2]]),
        "selection": (itme_dask.select_rows(lazy, rows), X[rows]),
        "vector": (lazy[:, 1] * 2, X[:, 1] * 2),
    }
    # without a cluster: dask's threaded scheduler
    np.testing.assert_array_equal(itme_dask.gather_rows(cases["matrix"][0]), X)
    settings = ComputeSettings(scheduler="local", workers=2, memory_per_worker="1GB")
    with start_compute(settings) as client:
        for name, (x, expected) in cases.items():
            found = itme_dask.gather_rows(x)
            assert found.dtype == expected.dtype, name
            np.testing.assert_array_equal(found, expected, err_msg=name)
        # every block was gathered and released: nothing left on the workers (the releases
        # reach the scheduler asynchronously)
        for _ in range(100):
            left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            if not left:
                break
            time.sleep(0.05)
        assert left == 0


@pytest.mark.parametrize("chunk", [97, 5000])
def test_clean_lazy_gates_on_its_columns_only_and_equals_in_memory(chunk, monkeypatch):
    from helpers.qc_sim import planted_cohort

    from itme.pp import _clean

    mem, _ = planted_cohort(2, n_per_sample=3000, n_samples=3)
    lazy = mem.copy()
    lazy.layers["raw"] = da.from_array(np.asarray(mem.layers["raw"]), chunks=(chunk, -1))
    per, read = itme_dask.per_sample, []

    def recorded(kernel, X, *args, **kwargs):
        read.append(X.shape[1])
        return per(kernel, X, *args, **kwargs)

    monkeypatch.setattr(_clean, "per_sample", recorded)
    for adata in (mem, lazy):
        itme.pp.clean(adata)
    # the tasks read the gating channels (DNA, cisplatin, CD45, beads, ...), not the markers
    assert read and 0 < read[0] < mem.n_vars // 2
    np.testing.assert_array_equal(lazy.obs["itme_qc"].to_numpy(), mem.obs["itme_qc"].to_numpy())
    for key in ("thresholds", "accounting"):
        pd.testing.assert_frame_equal(lazy.uns["qc"][key], mem.uns["qc"][key], check_exact=True)
    assert (mem.obs["itme_qc"] != "kept").sum() > 0  # planted artefacts were removed


def _warn_on_large_samples(block, limit):
    """A per-sample kernel that warns (as a gate does) for a sample of more than ``limit``."""
    import warnings

    if block.shape[0] > limit:
        ids = [f"e{i}" for i in range(block.shape[0])]
        warnings.warn(
            ItmeExclusionWarning.listing(f"sample of {block.shape[0]} events", ids),
            stacklevel=1,
        )
    return block.sum(axis=0, dtype=np.float64)


def test_per_sample_warnings_of_worker_processes_are_recorded_on_the_client_once():
    import warnings

    import cloudpickle
    from distributed import Client, LocalCluster

    from itme.pipeline._warnings import record_warnings

    cloudpickle.register_pickle_by_value(__import__(__name__))  # the kernel, on the worker
    X = np.random.default_rng(3).normal(size=(100, 4)).astype(np.float32)
    lazy = da.from_array(X, chunks=(33, 4))
    rows = [slice(0, 10), slice(10, 40), np.arange(40, 100)]
    expected = [_warn_on_large_samples(X[r], 1000) for r in rows]
    messages = [
        "sample of 30 events: e0, e1, e2, e3, e4 ... and 25 more (all 30 in "
        "tables/warning_items.csv)",
        "sample of 60 events: e0, e1, e2, e3, e4 ... and 55 more (all 60 in "
        "tables/warning_items.csv)",
    ]

    def run() -> tuple[list, list]:
        with warnings.catch_warnings(record=True) as shown, record_warnings() as recorded:
            warnings.simplefilter("always")
            found = itme_dask.per_sample(_warn_on_large_samples, lazy, rows, 20)
        for a, b in zip(found, expected, strict=True):
            np.testing.assert_array_equal(a, b)  # the results, bit for bit
        assert sorted(str(w.message) for w in shown) == messages  # threads: in any order
        return sorted(recorded, key=lambda w: w["message"])

    threaded = run()  # dask's threaded scheduler: the warnings are raised here
    try:
        with (
            LocalCluster(
                n_workers=1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster),
        ):
            on_cluster = run()
            again = run()  # the worker's hook is installed once; the next call records alike
    finally:
        cloudpickle.unregister_pickle_by_value(__import__(__name__))
    assert on_cluster == threaded == again
    assert [(w["message"], w["count"], len(w["items"])) for w in on_cluster] == [
        (messages[0], 1, 30),
        (messages[1], 1, 60),
    ]


def _large_graphs(run, *args) -> tuple[object, list[str]]:
    """``run(*args)``'s result and distributed's warnings of graphs larger than 1 MB."""
    import warnings

    threshold = {"distributed.admin.large-graph-warning-threshold": "1MB"}
    with dask.config.set(threshold), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        found = run(*args)
    return found, [str(w.message) for w in shown if "large graph" in str(w.message)]


def test_graphs_on_a_cluster_carry_no_values_per_event(monkeypatch):
    # a selection's mask (1 byte per event: 4.2 MB) and a median selection's labels (3.4 MB)
    # are sent to the workers once, in graphs under the warning threshold (1 MB here); the
    # graphs of the selection, of its gathered columns and of every histogram pass carry
    # their keys only (before: every graph held the mask, the passes the labels too); a
    # worker killed, its blocks are computed again; nothing is left when the arrays go
    import os
    import signal

    from itme.core.cluster.codebook import group_medians
    from itme.pp._subset import subset_events

    n, cols = 16 * 262_144, np.array([4, 0, 2])
    X = da.random.default_rng(3).random((n, 5), chunks=(n // 16, 5)).astype(np.float32)
    x = X.compute()
    rng = np.random.default_rng(1)
    rows = np.flatnonzero(rng.random(n) < 0.8)
    labels = rng.integers(-1, 6, size=rows.size).astype(np.int8)
    expected = group_medians(x[rows], labels, 6, columns=cols)
    settings = ComputeSettings(scheduler="local", workers=2, memory_per_worker="1GB")
    with start_compute(settings) as client:
        # X and the raw counts: two selections of the same events, as a store's
        adata = ad.AnnData(X, layers={"raw": X * 2})
        events, large = _large_graphs(subset_events, adata, rows)
        held = [{k for k in a.dask if "_held" in str(k)} for a in (events.X, events.layers["raw"])]
        assert len(held[0]) == 16 and held[0] == held[1]  # X and raw share the mask's blocks
        for budget in (10**9, 0):  # the columns gathered; selected on the workers
            monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", budget)
            med, sent = _large_graphs(itme_dask.lazy_group_medians, events.X, labels, 6, cols)
            _bit_identical(med, expected)
            large += sent
        found, sent = _large_graphs(itme_dask.gather_rows, events.layers["raw"])
        np.testing.assert_array_equal(found, x[rows] * 2)
        assert large + sent == []
        # a worker holding blocks of the masks killed (its nanny starts another): they are
        # computed again from their tasks
        pids = client.run(os.getpid)
        held = [w for w, keys in client.has_what().items() if any("_held" in k for k in keys)]
        os.kill(pids[held[0]], signal.SIGKILL)
        np.testing.assert_array_equal(itme_dask.gather_rows(events.X), x[rows])
        del events, adata
        for _ in range(100):  # the blocks sent go when the selections go
            left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            if not left:
                break
            time.sleep(0.05)
        assert left == 0


def _moved_values(client) -> list[int]:
    """Sizes (bytes) of the values the workers have sent to each other so far."""

    def sizes(dask_worker) -> list[int]:
        return [n for e in dask_worker.transfer_outgoing_log for n in e["keys"].values()]

    return [n for found in client.run(sizes).values() for n in found]


def test_runs_of_blocks_and_samples_are_computed_where_they_are_used(monkeypatch, tmp_path):
    # a median pass's run of 8 blocks and a sample's blocks are computed inside the task
    # that uses them (the blocks' own tasks, a zarr read and a transform as a store's,
    # carried in it): on 2 workers no block of events moves between them (before, about
    # half of a run's blocks did), only labels, masks and histograms; the values are those
    # of the in-memory kernels
    import zarr

    from itme.core.cluster.codebook import group_medians
    from itme.pp._subset import subset_events

    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", 0)  # selected on the workers
    n, cols = 64 * 16_384, np.array([4, 0, 2])
    counts = np.random.default_rng(5).gamma(2.0, 50.0, size=(n, 8)).astype(np.float32)
    stored = zarr.create_array(tmp_path / "raw", shape=counts.shape, chunks=(16_384, 8), dtype="f4")
    stored[:] = counts
    X = da.from_zarr(stored).map_blocks(np.arcsinh)
    x = np.arcsinh(counts)
    rng = np.random.default_rng(2)
    rows = np.flatnonzero(rng.random(n) < 0.8)
    labels = rng.integers(-1, 6, size=rows.size).astype(np.int8)
    # within a block, across blocks, non-contiguous across blocks, empty
    samples = [slice(0, 10_000), slice(10_000, 700_000), np.arange(700_000, n, 3), slice(5, 5)]
    settings = ComputeSettings(scheduler="local", workers=2, memory_per_worker="1GB")
    with start_compute(settings) as client:
        events = subset_events(ad.AnnData(X), rows)
        med = itme_dask.lazy_group_medians(events.X, labels, 6, cols)
        sums = itme_dask.per_sample(np.sum, X, samples, axis=0)
        moved = _moved_values(client)
    _bit_identical(med, group_medians(x[rows], labels, 6, columns=cols))
    for found, r in zip(sums, samples, strict=True):
        np.testing.assert_array_equal(found, np.sum(x[r], axis=0))
    # what moved: labels and masks (16 KB a block), histograms (6 x 3 x 2,048 x 4 bytes);
    # before, about half of the blocks of events (524 KB, 419 KB once selected) too
    assert moved and max(moved) < 16_384 * 8 * 4 // 2, sorted(moved)[-5:]
