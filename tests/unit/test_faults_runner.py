"""The runner under faults: one run per folder, failures recorded, never masked, leftovers removed."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from itme._outputs import Output
from itme.errors import ItmeInputError, ItmeRunError
from itme.pipeline import _runner
from itme.pipeline._config import load_config
from itme.pipeline._lock import LOCK_FILE, holder_problem, output_lock, read_holder
from itme.pipeline._runner import Stage, run_stages


@pytest.fixture
def config(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    return load_config(
        {"seed": 3, "inputs": {"samples": "samples.csv", "panel": "panel.csv"}}, base_dir=tmp_path
    )


def stages(fail_second: BaseException | None = None, before_second=None):
    def first(ctx):
        ctx.table("a", pd.DataFrame({"x": np.random.default_rng(ctx.seed).normal(size=5)}))
        return {"n": 5}

    def second(ctx):
        if before_second is not None:
            before_second(ctx)
        if fail_second is not None:
            raise fail_second
        ctx.table("b", pd.read_csv(ctx.path("tables", "a.csv"), index_col=0) * 2)
        return {}

    return [
        Stage("first", first, params=lambda c: {}, outputs=(Output("a", "table", "stats"),)),
        Stage(
            "second",
            second,
            params=lambda c: {},
            requires=("first",),
            outputs=(Output("b", "table", "stats"),),
        ),
    ]


def _write_lock(out, **record):
    (out / LOCK_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / LOCK_FILE).write_text(json.dumps(record))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_stops_a_second_run_naming_the_holder(tmp_path, config):
    out = tmp_path / "out"
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "started": "2026-01-01T00:00:00"}
    _write_lock(out, **holder)
    with pytest.raises(
        ItmeInputError,
        match=f"in use by the itme run of pid {os.getppid()} on host {socket.gethostname()}, "
        "started 2026-01-01T00:00:00",
    ):
        run_stages(config, stages(), out=out)
    assert not (out / "tables").exists()  # no stage ran
    assert read_holder(out) == holder  # the holder's lock is left alone
    assert "in use by the itme run of pid" in holder_problem(out)


def test_a_lock_from_another_host_is_respected(tmp_path, config):
    out = tmp_path / "out"
    _write_lock(out, host="node-elsewhere-17", pid=_dead_pid(), started="x")
    with pytest.raises(ItmeInputError, match="on host node-elsewhere-17.*delete the lock file"):
        run_stages(config, stages(), out=out)


def test_a_stale_lock_of_a_dead_process_is_replaced(tmp_path, config, caplog):
    out = tmp_path / "out"
    pid = _dead_pid()
    _write_lock(out, host=socket.gethostname(), pid=pid, started="x")
    assert holder_problem(out) is None
    with caplog.at_level(logging.WARNING, logger="itme.pipeline._lock"):
        records = run_stages(config, stages(), out=out)
    assert [r.status for r in records] == ["done", "done"]
    assert f"stale lock of a run that is no longer running (pid {pid}" in caplog.text
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_a_reused_pid_is_not_the_holder(tmp_path, config):
    if not os.path.exists(f"/proc/{os.getppid()}/stat"):
        pytest.skip("no /proc: process start times cannot be read")
    out = tmp_path / "out"
    # our own parent's pid, but with another process start time: the holder died, pid reused
    _write_lock(out, host=socket.gethostname(), pid=os.getppid(), pid_start="1", started="x")
    assert [r.status for r in run_stages(config, stages(), out=out)] == ["done", "done"]


def test_the_lock_is_held_during_the_run_and_released_on_failure(tmp_path, config):
    out = tmp_path / "out"
    seen = {}

    def look(ctx):
        seen["holder"] = read_holder(ctx.out)
        with pytest.raises(ItmeInputError, match="in use by the itme run of pid"):
            with output_lock(ctx.out):
                pass

    with pytest.raises(RuntimeError, match="boom"):
        run_stages(config, stages(RuntimeError("boom"), look), out=out)
    assert seen["holder"]["pid"] == os.getpid()
    assert seen["holder"]["host"] == socket.gethostname()
    assert not (out / LOCK_FILE).exists()


def test_run_json_records_the_failed_stage_and_message(tmp_path, config):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom") as err:
        run_stages(config, stages(RuntimeError("boom")), out=out)
    assert "(in stage 'second' of the itme run" in err.value.__notes__[0]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed"
    assert run["error"] == {
        "stage": "second",
        "type": "RuntimeError",
        "message": "boom",
        "cause": None,
    }
    assert [s["status"] for s in run["stages"]] == ["done", "failed"]


def test_a_cleanup_failure_never_hides_the_original_error(tmp_path, config, monkeypatch, caplog):
    def broken_save(self):
        raise PermissionError(13, "Permission denied", str(self.cache))

    monkeypatch.setattr(_runner._Checksums, "save", broken_save)
    with caplog.at_level(logging.WARNING, logger="itme.pipeline._runner"):
        with pytest.raises(RuntimeError, match="boom"):
            run_stages(config, stages(RuntimeError("boom")), out=tmp_path / "out")
    assert "could not save input checksums after the failure" in caplog.text
    # without an earlier failure, the same cleanup error is the run's error, in itme's words
    with pytest.raises(ItmeRunError, match="checksums.json: cannot write \\(Permission denied\\)"):
        run_stages(config, stages(), out=tmp_path / "out2")


def _make_read_only(folder, monkeypatch):
    """Make ``folder`` unwritable: chmod, or (as root, which chmod does not stop) refuse writes."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    import itme._files

    real = itme._files.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(itme._files.tempfile, "mkstemp", refuse)


def test_an_output_folder_made_read_only_mid_run(tmp_path, config, monkeypatch):
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)

    def lock_tables(ctx):
        _make_read_only(ctx.out / "tables", monkeypatch)

    try:
        with pytest.raises(ItmeRunError) as err:
            run_stages(config, stages(before_second=lock_tables), out=out)
    finally:
        (out / "tables").chmod(0o755)
    message = str(err.value)
    assert message.startswith(f"stage 'second': {out / 'tables'}")
    assert "Permission denied" in message and "then rerun: finished stages are kept" in message
    assert isinstance(err.value.__cause__, PermissionError)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and run["error"]["stage"] == "second"
    assert run["error"]["cause"].startswith("PermissionError")
    monkeypatch.undo()  # writable again: the rerun keeps the first stage and finishes
    records = run_stages(config, stages(), out=out)
    assert [r.status for r in records] == ["skipped (unchanged)", "done"]


def test_a_rerun_removes_temporary_files_of_an_interrupted_run(tmp_path, config, caplog):
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    leftover = out / "tables" / ".a.csv.k3j2x9q1.tmp"
    leftover.write_text("half")
    keep = out / "tables" / "notes.tmp"  # not one of itme's temporary files
    keep.write_text("mine")
    with caplog.at_level(logging.INFO, logger="itme.pipeline._runner"):
        run_stages(config, stages(), out=out)
    assert not leftover.exists() and keep.exists()
    assert "removed 1 temporary file(s) left by an interrupted run" in caplog.text


def test_an_input_removed_mid_run_is_named_as_unreadable(tmp_path, config):
    def remove_samples(ctx):
        ctx.config.inputs.samples.unlink()

    third = Stage("third", lambda ctx: {}, params=lambda c: {}, inputs=lambda c: [c.inputs.samples])
    with pytest.raises(ItmeRunError, match="stage 'third': .*samples.csv: cannot read") as err:
        run_stages(config, [*stages(before_second=remove_samples), third], out=tmp_path / "out")
    assert "Check that the input is there and readable" in str(err.value)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["error"]["stage"] == "third" and run["error"]["cause"].startswith("FileNotFound")


def test_a_lock_that_cannot_be_created_is_named(tmp_path, config, monkeypatch):
    from itme.pipeline import _lock

    def refuse(path, *args):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(_lock.os, "open", refuse)
    with pytest.raises(
        ItmeInputError, match="lock: cannot create the lock file .*Permission denied"
    ):
        run_stages(config, stages(), out=tmp_path / "out")
