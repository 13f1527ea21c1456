"""A run killed with SIGKILL inside any stage resumes to byte-identical tables.

While the run is alive, a second run on its folder is refused (the lock names its pid).

The killed run leaves its lock (its pid is then dead: a stale lock), ``run.json`` at
``running`` and a half-written temporary file; the rerun replaces the lock, removes the
temporary file, reruns from the killed stage and ends ``done`` with the tables of a run that
was never interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.faults import TOY_STAGES, toy_config, toy_stages

from itme.errors import ItmeInputError
from itme.pipeline._lock import LOCK_FILE, read_holder
from itme.pipeline._runner import run_stages

ROOT = Path(__file__).resolve().parents[2]


def _start_killable(out: Path, folder: Path, stage: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    code = (
        "import sys; from helpers.faults import run_toy; "
        "run_toy(sys.argv[1], sys.argv[2], pause_in=sys.argv[3])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(out), str(folder), stage],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


@pytest.mark.parametrize("stage", TOY_STAGES)
def test_sigkill_during_a_stage_then_rerun_gives_identical_tables(tmp_path, caplog, stage):
    config = toy_config(tmp_path)
    reference = tmp_path / "reference"
    run_stages(config, toy_stages(), out=reference)

    out = tmp_path / "killed"
    proc = _start_killable(out, tmp_path, stage)
    deadline = time.monotonic() + 60
    while not (out / "paused").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached the stage"
        time.sleep(0.05)
    # a second run while the first is alive: refused, naming the holder; nothing touched
    before = _tables(out)
    with pytest.raises(ItmeInputError, match=f"in use by the itme run of pid {proc.pid} on host"):
        run_stages(config, toy_stages(), out=out)
    assert _tables(out) == before
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    assert read_holder(out)["pid"] == proc.pid  # the lock of the dead run is still there
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    leftovers = list((out / "tables").glob(f".{stage}.csv.*.tmp"))
    assert len(leftovers) == 1

    with caplog.at_level(logging.WARNING, logger="itme.pipeline"):
        records = run_stages(config, toy_stages(), out=out)
    assert f"was interrupted in stage {stage!r}; resuming" in caplog.text
    assert "removing the stale lock of a run that is no longer running" in caplog.text
    statuses = {r.name: r.status for r in records}
    k = TOY_STAGES.index(stage)
    assert all(statuses[s] == "skipped (unchanged)" for s in TOY_STAGES[:k])
    assert all(statuses[s] == "done" for s in TOY_STAGES[k:])
    assert _tables(out) == _tables(reference)
    assert not leftovers[0].exists()
    assert not (out / LOCK_FILE).exists()
    assert json.loads((out / "run.json").read_text())["status"] == "done"
