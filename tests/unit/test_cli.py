"""The itme command line: called through main(argv) -> exit code."""

from __future__ import annotations

import numpy as np
from helpers import fcs_factory

import itme
from itme.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert itme.__version__ in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_inspect_file(tmp_path, capsys):
    data = np.arange(40, dtype=np.float32).reshape(10, 4)
    path = fcs_factory.write(
        tmp_path / "a.fcs",
        data,
        ["Time", "Y89Di", "Nd142Di", "Ir191Di"],
        labels=["", "CD45", "CD19", "DNA1"],
    )
    assert main(["-q", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 file(s), 10 events" in out
    assert "Y89Di" in out and "CD45" in out
    assert "Problems (0)" in out


def test_inspect_sample_sheet_uses_panel_beside_it(tmp_path, capsys):
    data = np.ones((5, 3), dtype=np.float32)
    fcs_factory.write(tmp_path / "a.fcs", data, ["Y89Di", "Nd142Di", "Ir191Di"])
    fcs_factory.write(tmp_path / "b.fcs", data, ["Y89Di", "Nd143Di", "Ir191Di"])
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id\na.fcs,A,P1\nb.fcs,B,P2\n"
    )
    (tmp_path / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\n"
    )
    assert main(["-q", "inspect", str(tmp_path / "samples.csv")]) == 2
    out = capsys.readouterr().out
    assert "b.fcs: panel channel(s) absent: Nd142Di" in out
    assert "2 different channel sets among 2 files" in out


def test_inspect_corrupted_file_reports_problem(tmp_path, capsys):
    path = tmp_path / "bad.fcs"
    path.write_bytes(b"FCS3.0")
    assert main(["-q", "inspect", str(path)]) == 2
    assert "bad.fcs: the file holds 6 bytes" in capsys.readouterr().out


def test_inspect_truncated_file_shows_its_text_and_the_problem(tmp_path, capsys):
    blob = fcs_factory.fcs_bytes(np.ones((50, 2), np.float32), ["Y89Di", "Ir191Di"])
    (tmp_path / "t.fcs").write_bytes(blob[:-100])
    assert main(["-q", "inspect", str(tmp_path / "t.fcs")]) == 2
    out = capsys.readouterr().out
    assert "t.fcs: the DATA segment cannot be read" in out
    assert "Ir191Di" in out and "events unreadable" in out  # the TEXT is still summarised


def test_inspect_missing_path(tmp_path, capsys):
    assert main(["-q", "inspect", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_stage_choices_are_the_pipeline_stages():
    from itme.cli import _STAGES
    from itme.pipeline import STAGE_NAMES

    assert list(_STAGES.choices) == STAGE_NAMES
