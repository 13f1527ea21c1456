"""tables/warnings.csv: every warning of a run, by stage, with its count (issue 14, item 7)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from helpers.faults import toy_config

from itme._adata import group_labels
from itme._outputs import Output
from itme.errors import ItmeExclusionWarning, ItmeInputWarning
from itme.pipeline import OUTPUTS
from itme.pipeline._runner import Stage, run_stages
from itme.pipeline._warnings import record_warnings

MISSING = "1 of 4 patient(s) of the clinical table have no sample: P9"


@pytest.fixture
def config(tmp_path):
    return toy_config(tmp_path)


def warning_stages(calls: list[str], fail: bool = False) -> list[Stage]:
    def read(ctx):
        calls.append("read")
        for _ in range(3):  # the same fact from one line of code, three times
            warnings.warn(MISSING, ItmeExclusionWarning, stacklevel=1)
        warnings.warn("channel Time not in the panel", ItmeInputWarning, stacklevel=1)
        ctx.table("a", pd.DataFrame({"x": [1.0]}))
        return {}

    def test(ctx):
        calls.append("test")
        warnings.warn("group 2 has fewer than 5 patients", ItmeExclusionWarning, stacklevel=1)
        if fail:
            raise RuntimeError("stage failed")
        ctx.table("b", pd.DataFrame({"y": [2.0]}))
        return {}

    return [
        Stage("read", read, params=lambda c: {}, outputs=(Output("a", "table", "stats"),)),
        Stage(
            "test",
            test,
            params=lambda c: {"k": c.patients.k},
            requires=("read",),
            outputs=(Output("b", "table", "stats"),),
        ),
    ]


def run_quietly(config, stages, out, **kwargs):
    # the warnings are shown (pytest records them) rather than raised as errors
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        run_stages(config, stages, out=out, **kwargs)
    return shown


def test_every_warning_of_a_run_is_in_its_table_with_stage_and_count(config, tmp_path):
    out = tmp_path / "run"
    shown = run_quietly(config, warning_stages([]), out)
    table = pd.read_csv(out / "tables" / "warnings.csv")
    assert list(table.itertuples(index=False, name=None)) == [
        ("read", "ItmeExclusionWarning", MISSING, 3),
        ("read", "ItmeInputWarning", "channel Time not in the panel", 1),
        ("test", "ItmeExclusionWarning", "group 2 has fewer than 5 patients", 1),
    ]
    # still shown as they happen (the filters in force decide), not only written down
    assert [str(w.message) for w in shown].count(MISSING) == 3
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert stages[0]["warnings"] == [
        {"warning": "ItmeExclusionWarning", "message": MISSING, "count": 3},
        {"warning": "ItmeInputWarning", "message": "channel Time not in the panel", "count": 1},
    ]


def test_warnings_of_skipped_stages_survive_resume(config, tmp_path):
    out = tmp_path / "run"
    run_quietly(config, warning_stages([]), out)
    first = (out / "tables" / "warnings.csv").read_bytes()
    calls: list[str] = []
    run_quietly(config, warning_stages(calls), out)  # nothing changed: both skipped
    assert calls == []
    assert (out / "tables" / "warnings.csv").read_bytes() == first
    run_quietly(config, warning_stages(calls), out, from_stage="test")  # read kept
    assert calls == ["test"]
    assert (out / "tables" / "warnings.csv").read_bytes() == first


def test_warnings_of_a_failed_stage_are_kept(config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stage failed"):
        run_quietly(config, warning_stages([], fail=True), out)
    table = pd.read_csv(out / "tables" / "warnings.csv")
    assert list(table["stage"]) == ["read", "read", "test"]
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_warning_filters_still_decide():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeInputWarning)
        warnings.simplefilter("error", ItmeExclusionWarning)
        with record_warnings() as rows:
            warnings.warn("ignored", ItmeInputWarning, stacklevel=1)
            with pytest.raises(ItmeExclusionWarning):
                warnings.warn("an error", ItmeExclusionWarning, stacklevel=1)
    assert rows == []


def test_the_table_is_declared_for_the_provenance_section():
    declared = [(stage, o) for stage, o in OUTPUTS if o.name == "warnings"]
    assert [(stage, o.kind, o.section) for stage, o in declared] == [("run", "table", "provenance")]


@pytest.mark.filterwarnings("ignore:report.*summary.json:itme.errors.ItmeInputWarning")
def test_report_lists_the_warnings_under_provenance_not_other_results(config, tmp_path):
    from itme.report import write_report

    out = tmp_path / "run"
    run_quietly(config, warning_stages([]), out)
    page = write_report(out).read_text()
    provenance = page.split('<section id="provenance">', 1)[1]
    assert MISSING in provenance and 'href="tables/warnings.csv"' in provenance
    # the toy tables a and b are in "Other results"; warnings.csv is declared: not there
    assert 'id="table-a"' in page and 'id="table-warnings"' not in page


def test_each_stage_records_what_it_shows_whatever_ran_before():
    def warn():
        warnings.warn("same fact", ItmeInputWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # Python's: once per line of code
        warnings.showwarning = lambda *args, **kwargs: None
        with record_warnings() as first:
            warn()
            warn()
        with record_warnings() as second:  # the next stage, in the same process
            warn()
    assert first == [{"warning": "ItmeInputWarning", "message": "same fact", "count": 1}]
    assert second == first


SAMPLES = [f"S{i:03d}" for i in range(300)]


def listing_stages() -> list[Stage]:
    def exclude(ctx):
        frame = pd.DataFrame({"response": [None] * 300 + ["CR", "CR"]}, index=[*SAMPLES, "A", "B"])
        group_labels(frame, "response", what="compare_groups")  # 300 samples without a value
        return {}

    return [Stage("exclude", exclude, params=lambda c: {})]


def test_a_warning_naming_300_ids_is_short_and_its_ids_are_all_in_the_items_table(config, tmp_path):
    out = tmp_path / "run"
    shown = run_quietly(config, listing_stages(), out)
    (message,) = [str(w.message) for w in shown]
    assert message == (
        "compare_groups: 300 excluded, no response value: S000, S001, S002, S003, S004 ... "
        "and 295 more (all 300 in tables/warning_items.csv)"
    )
    table = pd.read_csv(out / "tables" / "warnings.csv")
    assert list(table.itertuples(index=False, name=None)) == [
        ("exclude", "ItmeExclusionWarning", message, 1)
    ]
    items = pd.read_csv(out / "tables" / "warning_items.csv")
    assert list(items.columns) == ["stage", "warning", "message", "item"]
    assert list(items["item"]) == SAMPLES
    assert set(items["message"]) == {message} and set(items["stage"]) == {"exclude"}
    (stage,) = json.loads((out / "run.json").read_text())["stages"]
    assert "items" not in stage["warnings"][0]  # in the table, not in run.json
    first = (out / "tables" / "warning_items.csv").read_bytes()
    run_quietly(config, listing_stages(), out)  # skipped as unchanged: its ids kept
    assert (out / "tables" / "warning_items.csv").read_bytes() == first


def test_the_items_table_is_declared_for_the_provenance_section():
    declared = [(stage, o) for stage, o in OUTPUTS if o.name == "warning_items"]
    assert [(stage, o.kind, o.section) for stage, o in declared] == [("run", "table", "provenance")]


def test_a_warning_keeps_its_ids_through_pickle_and_names_five():
    import pickle

    w = ItmeExclusionWarning.listing("300 sample(s) excluded", SAMPLES)
    assert str(w) == "300 sample(s) excluded: S000, S001, S002, S003, S004 ... and 295 more"
    back = pickle.loads(pickle.dumps(w))  # as a dask worker sends it
    assert type(back) is ItmeExclusionWarning and back.items == tuple(SAMPLES)
    assert str(back) == str(w)
    assert ItmeInputWarning("no ids").items == ()
