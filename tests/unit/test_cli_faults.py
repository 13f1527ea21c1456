"""Every exception that reaches the CLI is reported with its message, never as a bare ``aborted``."""

from __future__ import annotations

import json
import os
import socket

import pytest
import yaml
from helpers.faults import tiny_cohort

import itme.pipeline
from itme.cli import main
from itme.errors import ItmeInputError, ItmeRunError
from itme.pipeline._lock import LOCK_FILE


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_cohort(tmp_path)))
    return path


def _raising(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_an_eof_error_is_reported_with_its_message_not_as_aborted(config_path, monkeypatch, capsys):
    # click turns an EOFError raised anywhere into Abort, which used to print only "aborted"
    monkeypatch.setattr(itme.pipeline, "validate", _raising(EOFError("ran out of input")))
    assert main(["validate", str(config_path)]) == 1
    err = capsys.readouterr().err
    assert "error: EOFError: ran out of input" in err
    assert "This is a bug in itme" in err
    assert "Traceback" in err  # in the log (stderr)
    assert "aborted" not in err


def test_an_unexpected_exception_is_a_bug_with_its_traceback(config_path, monkeypatch, capsys):
    monkeypatch.setattr(itme.pipeline, "run", _raising(KeyError("n_cells")))
    assert main(["-q", "run", str(config_path)]) == 1
    err = capsys.readouterr().err
    assert "error: KeyError: 'n_cells'" in err
    assert "This is a bug in itme" in err and "Traceback" in err


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ItmeInputError("samples.csv row 3: bad"), 2),
        (ItmeRunError("cannot write (Permission denied)", stage="cluster", path="/o/t.csv"), 1),
    ],
)
def test_itme_errors_are_messages_without_traceback(config_path, monkeypatch, capsys, exc, code):
    monkeypatch.setattr(itme.pipeline, "run", _raising(exc))
    assert main(["-q", "run", str(config_path)]) == code
    err = capsys.readouterr().err
    assert err.strip() == f"error: {exc}"


def test_a_stage_note_is_shown_with_the_message(config_path, monkeypatch, capsys):
    exc = ItmeInputError("no events left")
    exc.add_note("(in stage 'clean' of the itme run into /o)")
    monkeypatch.setattr(itme.pipeline, "run", _raising(exc))
    assert main(["-q", "run", str(config_path)]) == 2
    assert (
        capsys.readouterr().err
        == "error: no events left\n  (in stage 'clean' of the itme run into /o)\n"
    )


def test_ctrl_c_says_interrupted(config_path, monkeypatch, capsys):
    monkeypatch.setattr(itme.pipeline, "run", _raising(KeyboardInterrupt()))
    assert main(["-q", "run", str(config_path)]) == 1
    assert "interrupted" in capsys.readouterr().err


def test_a_text_truncated_fcs_in_a_cohort_is_named_by_every_command(tmp_path, config_path, capsys):
    fcs = tmp_path / "s1.fcs"
    blob = fcs.read_bytes()
    text_end = int(blob[26:34])
    fcs.write_bytes(blob[: (58 + text_end) // 2])  # cut inside the TEXT segment
    for argv, stream in (
        (["-q", "validate", str(config_path)], "out"),
        (["-q", "run", str(config_path)], "err"),
        (["-q", "inspect", str(tmp_path / "samples.csv")], "out"),
        (["-q", "inspect", str(fcs)], "out"),
    ):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        text = getattr(captured, stream)
        assert "s1.fcs" in text and "TEXT segment runs past the end of the file" in text, argv
        assert "aborted" not in captured.err
    assert not (tmp_path / "out" / ".itme").exists()  # run stopped before the first stage


def test_a_second_run_on_a_held_folder_exits_2_naming_the_holder(config_path, tmp_path, capsys):
    out = tmp_path / "out"
    (out / LOCK_FILE).parent.mkdir(parents=True)
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "started": "2026-12-05T21:00:00"}
    (out / LOCK_FILE).write_text(json.dumps(holder))
    assert main(["-q", "run", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert f"in use by the itme run of pid {os.getppid()} on host {socket.gethostname()}" in err
    assert "started 2026-12-05T21:00:00" in err
    assert main(["-q", "validate", str(config_path)]) == 2
    assert "in use by the itme run of pid" in capsys.readouterr().out
    assert json.loads((out / LOCK_FILE).read_text()) == holder
