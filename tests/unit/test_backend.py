"""compute.backend: in memory or on the cohort store, chosen from the cohort's size."""

from __future__ import annotations

import json
import logging

import pytest

from itme.pipeline import _backend
from itme.pipeline._backend import (
    available_memory,
    choose_backend,
    in_memory_peak,
    local_sizing,
    resolve_backend,
)
from itme.pipeline._compute import with_scheduler
from itme.pipeline._config import Compute

GB = 10**9


def test_the_in_memory_peak_is_five_matrices_and_a_gigabyte():
    # 10 M events x 40 channels x 4 bytes = 1.6 GB; 5x that + 1 GiB
    assert in_memory_peak(10_000_000, 40) == 5 * 1_600_000_000 + 2**30


@pytest.mark.parametrize(
    ("events", "available_gb", "backend"),
    [
        (10_000_000, 24, "memory"),  # ~9.1 GB within 19.2 GB (80 % of 24)
        (30_000_000, 24, "store"),  # ~25.1 GB
        (10_000_000, 8, "store"),  # ~9.1 GB, more than 6.4 GB
        (1_000_000, 3, "memory"),  # 0.8 GB + 1 GiB = 1.87 GB within 2.4 GB
        (1_000_000, 2, "store"),  # more than 1.6 GB
    ],
)
def test_auto_chooses_the_store_when_the_estimate_exceeds_the_headroom(
    events, available_gb, backend
):
    choice = choose_backend(
        "auto", events=events, channels=40, available=(available_gb * GB, "test")
    )
    assert choice.backend == backend
    assert choice.peak_bytes == in_memory_peak(events, 40)
    assert f"{events:,} events x 40 channels" in choice.reason
    assert ("more than" in choice.reason) == (backend == "store")
    assert "80% of the" in choice.reason and "of test" in choice.reason


def test_the_boundary_and_the_forced_and_cluster_choices():
    peak = in_memory_peak(2_000_000, 40)
    exactly = (int(peak / 0.8) + 1, "test")  # the estimate fits in 80 % of it
    assert choose_backend("auto", events=2_000_000, channels=40, available=exactly).backend == (
        "memory"
    )
    tight = (int(peak / 0.8) - 10, "test")
    assert choose_backend("auto", events=2_000_000, channels=40, available=tight).backend == (
        "store"
    )
    # forced: whatever the size; a cluster named: the store; the size unknown: memory
    for forced in ("memory", "store"):
        choice = choose_backend(forced, events=10**9, channels=40, available=tight)
        assert (choice.backend, choice.reason) == (forced, f"compute.backend: {forced}")
    remote = choose_backend("auto", scheduler="tcp://10.0.0.1:8786")
    assert remote.backend == "store" and "tcp://10.0.0.1:8786" in remote.reason
    assert choose_backend("auto").backend == "memory"


def test_available_memory_is_the_smallest_bound(tmp_path, monkeypatch):
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    monkeypatch.setattr(_backend, "CGROUP_LIMITS", (v2, v1))
    v2.write_text("max\n")  # no limit
    v1.write_text(str(2**63 - 4096))  # v1's "no limit"
    free, source = available_memory({})
    assert source == "memory available (psutil)" and free > 0
    v2.write_text("1500000000\n")
    assert available_memory({}) == (1_500_000_000, f"cgroup limit ({v2})")
    env = {"SLURM_MEM_PER_NODE": "1000"}  # megabytes
    assert available_memory(env) == (1000 * 2**20, "SLURM_MEM_PER_NODE=1000")
    env = {"SLURM_MEM_PER_CPU": "300", "SLURM_CPUS_ON_NODE": "4"}
    assert available_memory(env) == (1200 * 2**20, "SLURM_MEM_PER_CPU=300 x 4 CPUs")


def test_a_local_cluster_is_sized_to_the_cpus_and_memory():
    choice = choose_backend("store", events=10_000_000, channels=40, available=(16 * GB, "t"))
    # client: 1 GiB + 100 bytes x 10 M events = 2.07 GB; 0.8 x 16 GB - that = 10.73 GB
    sized = local_sizing(choice, environ={"SLURM_CPUS_PER_TASK": "4"})
    assert sized == {"workers": 4, "memory_per_worker": f"{(12.8 * GB - 2**30 - 1e9) / 4e6:.0f}MB"}
    assert local_sizing(choice, 2, environ={"SLURM_CPUS_PER_TASK": "4"})["workers"] == 2
    # too little memory for one worker per CPU: fewer workers, each at least 1 GiB
    small = choose_backend("store", events=1000, channels=40, available=(4 * GB, "t"))
    sized = local_sizing(small, environ={"SLURM_CPUS_PER_TASK": "8"})
    assert (
        sized["workers"] == 1
        and sized["memory_per_worker"] == f"{(3.2 * GB - 2**30 - 1e5) / 1e6:.0f}MB"
    )
    assert local_sizing(choose_backend("store"), environ={"SLURM_CPUS_ON_NODE": "3"}) == {
        "workers": 3
    }


def test_scheduler_on_the_command_line_means_the_store():
    assert with_scheduler(Compute(), "tcp://h:8786").backend == "store"
    assert with_scheduler(Compute(backend="memory"), "local").backend == "store"
    assert with_scheduler(Compute(), None).backend == "auto"


def _config(tmp_path, compute):
    import numpy as np
    from helpers import fcs_factory

    from itme.pipeline import load_config

    channels = ["Y89Di", "Nd142Di", "Nd145Di", "Ir191Di", "Time"]
    rows = ["file_name,sample_id,patient_id"]
    for k, n in enumerate((400, 350, 250)):
        x = np.random.default_rng(k).gamma(2.0, 30.0, size=(n, 5)).astype(np.float32)
        fcs_factory.write(tmp_path / f"s{k}.fcs", x, channels)
        rows.append(f"s{k}.fcs,S{k},P{k}")
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\n"
        "Nd145Di,CD4,state\nIr191Di,DNA1,qc\nTime,Time,none\n"
    )
    cfg = {
        "output": str(tmp_path / "out"),
        "inputs": {"samples": str(tmp_path / "samples.csv"), "panel": str(tmp_path / "panel.csv")},
        "compute": compute,
    }
    return load_config(cfg)


def test_resolve_reads_the_cohort_and_sizes_the_store(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(_backend, "available_memory", lambda: (2 * GB, "test"))
    config = _config(tmp_path, {"threads_per_worker": 1, "chunk_rows": 1000})
    resolved, choice = resolve_backend(config)
    # 3 FCS files, 1,000 events x 5 channels: 1 GiB + 5 x the matrix fits in 1.6 GB
    assert (choice.events, choice.channels, choice.backend) == (1000, 5, "memory")
    assert resolved.compute.backend == "memory" and resolved.compute.workers is None
    monkeypatch.setattr(_backend, "available_memory", lambda: (GB, "test"))
    with caplog.at_level(logging.INFO, logger="itme.pipeline._backend"):
        resolved, choice = resolve_backend(config)
    assert choice.backend == "store" and resolved.compute.backend == "store"
    assert resolved.compute.workers >= 1 and resolved.compute.memory_per_worker.endswith("MB")
    assert resolved.compute.chunk_rows == 1000  # what was given is kept
    assert "on the cohort store" in caplog.text and "more than 80% of the 1.0 GB" in caplog.text
    # forcing memory when it does not fit: a warning, not a refusal
    caplog.clear()
    forced = config.model_copy(update={"compute": Compute(backend="memory")})
    with caplog.at_level(logging.WARNING, logger="itme.pipeline._backend"):
        assert resolve_backend(forced)[0].compute.backend == "memory"
    assert "the run may run out of memory" in caplog.text


def test_auto_keeps_the_backend_of_the_previous_run_of_the_same_cohort(tmp_path, monkeypatch):
    monkeypatch.setattr(_backend, "available_memory", lambda: (GB, "test"))
    config = _config(tmp_path, {})
    _, first = resolve_backend(config)
    assert first.backend == "store"
    config.output.mkdir(parents=True)
    (config.output / "run.json").write_text(json.dumps({"backend": first.record()}))
    monkeypatch.setattr(_backend, "available_memory", lambda: (100 * GB, "test"))
    resolved, again = resolve_backend(config)  # more memory now: resumes on the store
    assert again.backend == "store" and "kept the store of the previous run" in again.reason
    # another cohort size in run.json: decided afresh
    record = {**first.record(), "events": 5}
    (config.output / "run.json").write_text(json.dumps({"backend": record}))
    assert resolve_backend(config)[1].backend == "memory"
    # a previous run in memory is not kept when the cohort no longer fits
    monkeypatch.setattr(_backend, "available_memory", lambda: (GB, "test"))
    (config.output / "run.json").write_text(
        json.dumps({"backend": {**record, "events": 1000, "backend": "memory"}})
    )
    assert resolve_backend(config)[1].backend == "store"
    monkeypatch.setattr(_backend, "available_memory", lambda: (100 * GB, "test"))
    # forced backends are not overridden
    forced = config.model_copy(update={"compute": Compute(backend="memory")})
    (config.output / "run.json").write_text(json.dumps({"backend": first.record()}))
    assert resolve_backend(forced)[1].backend == "memory"
