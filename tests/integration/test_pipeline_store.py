"""``itme run`` on the cohort store gives the in-memory run's tables, whatever the layout.

The same config and seed run the cell-level stages (ingest → clean → batch → cluster →
annotate → abundance) in memory and, with a ``compute:`` section, on the run's cohort store
``cells.zarr``: on a LocalCluster of 1 and of 2 workers with two chunk sizes (also with the
drift and batch corrections on, recomputed lazily from the store), and on a real
``dask scheduler`` with two ``dask worker`` processes on loopback, one of which is SIGKILLed
while the cluster stage runs (its nanny restarts it; Dask reschedules its tasks); and a
client SIGKILLed (with its local workers) during the cluster stage resumes. Every table (and
``work/abundance.h5ad``, the patients stage's input) must be byte-identical.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from helpers.dask_cluster import dask_cluster

from itme.pipeline import run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # the cohort's planted artefacts are removed (and said so) on both paths alike
    pytest.mark.filterwarnings("ignore::itme.errors.ItmeExclusionWarning"),
]

CELL_STAGES = ["ingest", "clean", "batch", "cluster", "annotate", "abundance"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    from itme.datasets import simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(out, n_patients=8, cells_per_sample=1200, n_genes=4400, rng=5)


def config(
    cohort: dict[str, Path], out: Path, compute: dict | None = None, batch: dict | None = None
) -> Path:
    """A small run of the cell-level stages; ``compute`` switches to the store path.

    ``batch`` replaces the batch section (default: no drift or batch correction, which
    the tests of the corrections on the store switch on). The cohort fits in memory:
    ``compute.backend: auto`` would run it there, so ``compute`` names the store.
    """
    cfg = {
        "seed": 7,
        "output": str(out),
        "inputs": {
            "samples": str(cohort["samples"]),
            "panel": str(cohort["panel"]),
            "clinical": str(cohort["clinical"]),
            "phenotypes": "lymphoid_visram2021",
        },
        "downsample": {"min_events": 300},
        "cluster": {"grid": [5, 5], "n_metaclusters": 10, "train_cells": 4000},
        "embed": {"enabled": False},  # UMAP's first call compiles for ~40 s; not a table
        "batch": batch if batch is not None else {"drift": False, "method": "none"},
    }
    if compute is not None:
        cfg["compute"] = {"backend": "store", **compute}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def tables(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}
    patients = ad.read_h5ad(out / "work" / "abundance.h5ad")
    files["abundance.X"] = np.asarray(patients.X).tobytes()
    files["abundance.obs"] = patients.obs.to_csv().encode()
    return files


def assert_same(expected: dict[str, bytes], found: dict[str, bytes]) -> None:
    assert sorted(found) == sorted(expected)
    for name, data in expected.items():
        assert found[name] == data, name


@pytest.fixture(scope="module")
def in_memory(cohort, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("mem") / "run"
    result = run(config(cohort, out), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    found = tables(out)
    # what every store run is compared with: QC, cluster and subset tables are there
    assert {"qc_events.csv", "cluster_phenotypes.csv", "subset_frequencies.csv"} <= set(found)
    return found


def fcs_bytes(cohort: dict[str, Path]) -> int:
    return sum(p.stat().st_size for p in cohort["fcs_dir"].glob("*.fcs"))


@pytest.mark.parametrize(("workers", "chunk_rows"), [(1, 700), (2, 4096)])
def test_store_path_gives_the_in_memory_tables(cohort, in_memory, tmp_path, workers, chunk_rows):
    out = tmp_path / "run"
    compute = {
        "scheduler": "local",
        "workers": workers,
        "chunk_rows": chunk_rows,
        "memory_per_worker": "1GB",
    }
    result = run(config(cohort, out, compute), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert_same(in_memory, tables(out))
    # one copy of the events: the store's raw counts; no h5ad of events in the run folder
    assert sorted(p.name for p in (out / "work").glob("*.h5ad")) == ["abundance.h5ad"]
    assert not (out / "cells.h5ad").exists()
    # the events once, uncompressed: their float32 values in whole chunks (the last one padded
    # by zarr), about the FCS files' size at scale
    raw = out / "cells.zarr" / "layers" / "raw"
    n, m = zarr.open_array(raw, mode="r").shape
    padded = -(-n // chunk_rows) * chunk_rows * m * 4
    assert sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()) <= padded + 4096
    assert n * m * 4 <= fcs_bytes(cohort)
    stored = ad.read_zarr(out / "cells.zarr")  # an ordinary AnnData zarr store
    assert {"itme_qc", "itme_clean", "metacluster", "subset"} <= set(stored.obs)
    assert stored.obs["subset"].isna().sum() == (~stored.obs["itme_clean"]).sum()
    if workers == 1:  # resume: --from clean rewrites the store's obs; the same tables again
        again = run(config(cohort, out, compute), from_stage="clean", until_stage="abundance")
        # the stages writing the store after clean lost their records and reran (batch
        # records that it added nothing); abundance does not write it: unchanged, skipped
        statuses = [s.status for s in again.stages[:6]]
        skipped = "skipped (unchanged)"
        assert statuses == ["kept (before --from)", "done", "done", "done", "done", skipped]
        assert_same(in_memory, tables(out))


def test_medians_selected_on_the_workers_give_the_in_memory_tables(
    cohort, in_memory, tmp_path, monkeypatch, caplog
):
    # MEDIAN_BATCH_BYTES 0: no columns are gathered, every median of the annotate stage is
    # selected on the workers by histogram passes, the subset heatmap's first pass summed
    # from the metaclusters' (reuse_columns)
    import itme._dask as itme_dask

    monkeypatch.setattr(itme_dask, "MEDIAN_BATCH_BYTES", 0)
    out = tmp_path / "run"
    compute = {"scheduler": "local", "workers": 1, "chunk_rows": 700, "memory_per_worker": "1GB"}
    with caplog.at_level(logging.INFO, logger="itme._dask"):
        result = run(config(cohort, out, compute), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert_same(in_memory, tables(out))
    assert "selected on the workers" in caplog.text
    assert "first pass summed" in caplog.text


#: the default batch section (drift correction, cycombine with >= 2 batches), every file's
#: drift corrected (drift_min 0: the simulated files hardly drift) and a grid small enough
#: for 8 files of 1,200 events
CORRECTING = {"drift": True, "method": "auto", "drift_min": 0.0, "grid": [4, 4]}


@pytest.fixture(scope="module")
def in_memory_corrected(cohort, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("mem_corrected") / "run"
    result = run(config(cohort, out, batch=CORRECTING), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert (out / "work" / "batch.h5ad").is_file()  # the events were corrected
    found = tables(out)
    assert {"batch_drift.csv", "batch_shift.csv", "batch_medians_r2_after.csv"} <= set(found)
    return found


def test_drift_and_batch_correction_on_the_store_give_the_in_memory_tables(
    cohort, in_memory, in_memory_corrected, tmp_path
):
    out = tmp_path / "run"
    compute = {"scheduler": "local", "workers": 2, "chunk_rows": 700, "memory_per_worker": "1GB"}
    result = run(config(cohort, out, compute, batch=CORRECTING), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert_same(in_memory_corrected, tables(out))
    # the correction changed what was clustered (else this test would show nothing)
    assert in_memory_corrected["cluster_phenotypes.csv"] != in_memory["cluster_phenotypes.csv"]
    drift = tables(out)["batch_drift.csv"].decode().splitlines()
    assert all(line.endswith("True") for line in drift[1:])  # every file corrected
    # still one copy of the events: the store's raw counts and the fitted parameters
    assert sorted(p.name for p in (out / "work").glob("*.h5ad")) == ["abundance.h5ad"]
    record = json.loads((out / "work" / "store" / "batch.json").read_text())
    assert {"drift", "batch_correction"} <= set(record["uns"]) and record["obs"] == []
    raw = out / "cells.zarr" / "layers" / "raw"
    assert sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()) < fcs_bytes(cohort)


def with_beads_and_spillover(path: Path, cohort: dict[str, Path]) -> Path:
    """The config at ``path`` with ingest.beads and a spillover matrix of the panel's metals."""
    from itme import io
    from itme.datasets import simulate_spillover_matrix

    cfg = yaml.safe_load(path.read_text())
    panel = pd.read_csv(cohort["panel"])
    metals = [c for c in panel["fcs_colname"] if io.parse_channel(c).element]
    spill = path.with_name(f"{path.stem}_spill.csv")
    io.write_spillover(simulate_spillover_matrix(metals, rng=3), path=spill)
    cfg["inputs"]["spillover"] = str(spill)
    cfg["ingest"] = {"beads": "sample", "compensation": "nnls"}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bead_normalisation_and_compensation_on_the_store_give_the_in_memory_tables(
    cohort, in_memory, tmp_path
):
    mem, out = tmp_path / "mem", tmp_path / "run"
    result = run(with_beads_and_spillover(config(cohort, mem), cohort), until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    expected = tables(mem)
    # the beads were normalised and the spillover removed: other tables than without
    assert expected["qc_events.csv"] != in_memory["qc_events.csv"]
    compute = {"scheduler": "local", "workers": 2, "chunk_rows": 700, "memory_per_worker": "1GB"}
    path = with_beads_and_spillover(config(cohort, out, compute), cohort)
    result = run(path, until_stage="abundance")
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert_same(expected, tables(out))
    record = json.loads((out / "work" / "store" / "ingest.json").read_text())
    assert {"bead_normalization", "compensation"} <= set(record["uns"])
    assert "is_bead" in record["obs"]
    # the store keeps the counts as read; opening it recomputes the ingest stage's counts
    from itme import io

    stored = zarr.open_array(out / "cells.zarr" / "layers" / "raw", mode="r")[:]
    read = io.read_cohort(cohort["samples"], cohort["panel"])
    np.testing.assert_array_equal(stored, read.layers["raw"])
    ingested = ad.read_h5ad(mem / "work" / "ingest.h5ad").layers["raw"]
    assert not np.array_equal(ingested, read.layers["raw"])
    recomputed = io.open_store(out / "cells.zarr").layers["raw"].compute()
    np.testing.assert_array_max_ulp(recomputed, ingested, 1)  # see test_store_corrections


class _KillDuringCluster(logging.Handler):
    """SIGKILL one worker process once the cluster stage's tasks run on it."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[int] = []
        self.busy = False  # the victim had tasks of the stage in flight
        self.thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "stage cluster: started" and self.thread is None:
            self.thread = threading.Thread(target=self._kill, daemon=True)
            self.thread.start()

    def _kill(self) -> None:
        from distributed import default_client

        client = default_client()
        pids = client.run(os.getpid)  # worker address -> pid of the worker process
        deadline = time.monotonic() + 20
        busy: list[str] = []
        while not busy and time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks and w in pids]
            time.sleep(0.005)
        self.busy = bool(busy)
        victim = busy[0] if busy else sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        self.killed.append(pids[victim])


def test_a_worker_killed_during_the_cluster_stage_does_not_change_the_tables(
    cohort, in_memory, tmp_path
):
    out = tmp_path / "run"
    killer = _KillDuringCluster()
    runner_log = logging.getLogger("itme.pipeline._runner")
    runner_log.addHandler(killer)
    level = runner_log.level
    runner_log.setLevel(logging.INFO)
    try:
        with dask_cluster(tmp_path, workers=2) as address:
            compute = {"scheduler": address, "chunk_rows": 250}
            result = run(config(cohort, out, compute), until_stage="abundance")
            from distributed import Client

            with Client(address, timeout="10s") as client:
                client.wait_for_workers(2, timeout=30)  # the nanny restarted the killed worker
                alive = set(client.run(os.getpid).values())
    finally:
        runner_log.removeHandler(killer)
        runner_log.setLevel(level)
    assert len(killer.killed) == 1 and killer.killed[0] not in alive
    assert killer.busy
    assert [s.status for s in result.stages[:6]] == ["done"] * 6
    assert_same(in_memory, tables(out))


def test_a_client_killed_during_the_cluster_stage_resumes_to_the_same_tables(
    cohort, in_memory, tmp_path
):
    out = tmp_path / "run"
    compute = {"scheduler": "local", "workers": 1, "chunk_rows": 500, "memory_per_worker": "1GB"}
    path = config(cohort, out, compute)
    code = (
        "import sys; from itme.cli import main; "
        "sys.exit(main(['-q', 'run', sys.argv[1], '--until', 'abundance']))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: client and its local workers
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                stages = json.loads((out / "run.json").read_text())["stages"]
            except (OSError, ValueError):
                stages = []
            if any(s["name"] == "cluster" and s["status"] == "running" for s in stages):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before its cluster stage"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not (out / "work" / "store" / "cluster.json").exists()
    result = run(path, until_stage="abundance")
    # the finished stages are kept; the killed one and those after it run
    statuses = [s.status for s in result.stages[:6]]
    assert statuses == ["skipped (unchanged)"] * 3 + ["done"] * 3
    assert_same(in_memory, tables(out))


def test_backend_auto_runs_a_cohort_that_does_not_fit_on_the_store(cohort, tmp_path, monkeypatch):
    from itme.pipeline import _backend

    # as if this machine had 0.5 GB: 1 GiB + 5 x the matrix does not fit, whatever its size
    monkeypatch.setattr(_backend, "available_memory", lambda: (5 * 10**8, "test"))
    compute = {"backend": "auto", "workers": 1, "memory_per_worker": "1GB", "chunk_rows": 1000}
    out = tmp_path / "auto"
    result = run(config(cohort, out, compute), until_stage="ingest")
    assert result.stages[0].status == "done"
    assert (out / "cells.zarr").is_dir() and not (out / "work" / "ingest.h5ad").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["backend"]["backend"] == "store"
    assert record["backend"]["events"] == 7 * 1200  # 8 patients, the last without a file
    assert "more than 80% of the 0.5 GB of test" in record["backend"]["reason"]
    assert record["config"]["compute"]["backend"] == "store"
    # the same small memory, compute.backend: memory: in memory all the same
    out = tmp_path / "memory"
    run(config(cohort, out, {"backend": "memory"}), until_stage="ingest")
    assert (out / "work" / "ingest.h5ad").is_file() and not (out / "cells.zarr").exists()
    assert json.loads((out / "run.json").read_text())["backend"]["backend"] == "memory"
