"""Ids that become file names: unsafe ones refused with their line; nothing written outside."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from itme._files import inside, name_problem, safe_name
from itme._outputs import Output
from itme.errors import ItmeInputError
from itme.io import check_cohort, read_samples
from itme.pipeline._config import load_config
from itme.pipeline._runner import Context, Stage

TRAVERSAL = ["a/../../../../escaped", "..", "../up", "x\\..\\..\\y", "/abs/path"]
WINDOWS = ["a<b", "a>b", "a:b", 'a"b', "a|b", "a?b", "a*b", "bad\x01id", "CON", "nul.txt", "x."]


@pytest.mark.parametrize("bad", TRAVERSAL + WINDOWS)
def test_unsafe_sample_ids_are_refused_naming_the_line(bad):
    sheet = pd.DataFrame(
        {"file_name": ["a.fcs", "b.fcs"], "sample_id": ["ok", bad], "patient_id": ["P1", "P2"]}
    )
    with pytest.raises(ItmeInputError, match=r"line 3, column sample_id: .* ids become file names"):
        read_samples(sheet)


def test_unsafe_patient_id_refused_and_validate_lists_it(tmp_path):
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id\na.fcs,S1,P1\nb.fcs,S2,../P2\n"
    )
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\nY89Di,CD45,type\n")
    problems = check_cohort(tmp_path / "samples.csv", tmp_path / "panel.csv")
    assert len(problems) == 1
    assert "line 3, column patient_id: '../P2' contains '/'" in problems[0]


@pytest.mark.parametrize("good", ["MM01_BM", "patient-3.t1", "Ü-12", "S 1"])
def test_ordinary_ids_pass(good):
    assert name_problem(good) is None


def test_safe_names_are_safe_and_unique():
    names = [*TRAVERSAL, *WINDOWS, "a b", "a_b", "a/b", "a\\b", "MM01_BM"]
    mapped = [safe_name(n) for n in names]
    assert len(set(mapped)) == len(names)  # no two ids share a file
    for m in mapped:
        assert name_problem(m) is None and not re.search(r"\s", m)
    assert safe_name("MM01_BM") == "MM01_BM"  # safe ids unchanged (existing runs keep names)


def test_inside_refuses_paths_that_resolve_outside(tmp_path):
    out = tmp_path / "out"
    assert inside(out, out / "figures" / "x.png") == out / "figures" / "x.png"
    with pytest.raises(ItmeInputError, match="refused to write outside the output folder"):
        inside(out, out / "figures" / ".." / ".." / "escaped.png")


def test_a_run_never_writes_outside_its_folder(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    config = load_config(
        {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}}, base_dir=tmp_path
    )
    out = tmp_path / "out"
    stage = Stage(
        "s",
        lambda ctx: {},
        params=lambda c: {},
        outputs=(
            Output("gates", "figure", "qc", variants=True),
            Output("t", "table", "qc", variants=True),
        ),
    )
    ctx = Context(config, out, 0, {}, stage)
    before = {p for p in tmp_path.rglob("*")}
    for bad in TRAVERSAL:
        fig, _ = plt.subplots()
        ctx.figure("gates", fig, variant=bad)
        ctx.table("t", pd.DataFrame({"x": [1]}), variant=bad)
    with pytest.raises(ItmeInputError, match="refused to write outside"):
        ctx.path("..", "..", "escaped.csv")
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.resolve().is_relative_to(out.resolve()) for p in new)
    assert len(list((out / "figures").glob("*.png"))) == len(TRAVERSAL)
