"""The stage runner: fingerprints, skipping, resuming after a crash, --from/--until, run.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from itme._outputs import Output
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError
from itme.pipeline._config import load_config
from itme.pipeline._files import atomic_path, write_table
from itme.pipeline._runner import Stage, run_stages, stage_seeds


@pytest.fixture
def config(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    return load_config(
        {"seed": 3, "inputs": {"samples": "samples.csv", "panel": "panel.csv"}}, base_dir=tmp_path
    )


def make_stages(calls: list[str], crash: dict[str, bool] | None = None):
    crash = crash if crash is not None else {}

    def first(ctx):
        calls.append("first")
        rng = np.random.default_rng(ctx.seed)
        ctx.table("a", pd.DataFrame({"x": rng.normal(size=5)}))
        return {"n": 5}

    def second(ctx):
        calls.append("second")
        a = pd.read_csv(ctx.path("tables", "a.csv"), index_col=0)
        target = ctx.path("tables", "b.csv")
        if crash.get("second"):
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                raise RuntimeError("killed")
        ctx.table("b", a * 2)
        return {"sum": float(a["x"].sum())}

    return [
        Stage(
            "first",
            first,
            params=lambda c: {"seed": c.seed},
            inputs=lambda c: [c.inputs.samples],
            outputs=(Output("a", "table", "stats"),),
        ),
        Stage(
            "second",
            second,
            params=lambda c: {"k": c.patients.k},
            requires=("first",),
            outputs=(Output("b", "table", "stats"),),
        ),
    ]


def test_second_run_skips_unchanged_stages(tmp_path, config):
    calls: list[str] = []
    out = tmp_path / "out"
    records = run_stages(config, make_stages(calls), out=out)
    assert [r.status for r in records] == ["done", "done"]
    records = run_stages(config, make_stages(calls), out=out)
    assert [r.status for r in records] == ["skipped (unchanged)", "skipped (unchanged)"]
    assert calls == ["first", "second"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["seed"] == 3
    assert run["inputs"][0]["sha256"] and run["versions"]["numpy"] == np.__version__


def test_changed_parameter_reruns_the_stage_and_its_dependents(tmp_path, config):
    calls: list[str] = []
    out = tmp_path / "out"
    run_stages(config, make_stages(calls), out=out)
    changed = config.model_copy(update={"patients": config.patients.model_copy(update={"k": 4})})
    records = run_stages(changed, make_stages(calls), out=out)
    assert [r.status for r in records] == ["skipped (unchanged)", "done"]
    changed_input = tmp_path / "samples.csv"
    changed_input.write_text("file_name,sample_id,patient_id\nx,y,z\n")
    records = run_stages(changed, make_stages(calls), out=out)
    assert [r.status for r in records] == ["done", "done"]


def test_crashed_stage_leaves_no_partial_file_and_resumes(tmp_path, config):
    calls: list[str] = []
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed"):
        run_stages(config, make_stages(calls, {"second": True}), out=out)
    assert not (out / "tables" / "b.csv").exists()
    assert not list((out / "tables").glob(".*tmp"))
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "killed" in run["error"]["message"]
    records = run_stages(config, make_stages(calls), out=out)
    assert [r.status for r in records] == ["skipped (unchanged)", "done"]
    clean = tmp_path / "clean"
    run_stages(config, make_stages([]), out=clean)
    assert (out / "tables" / "b.csv").read_bytes() == (clean / "tables" / "b.csv").read_bytes()


def test_from_and_until(tmp_path, config):
    calls: list[str] = []
    out = tmp_path / "out"
    with pytest.raises(ItmeInputError, match="stage 'first' has no complete outputs"):
        run_stages(config, make_stages(calls), out=out, from_stage="second")
    records = run_stages(config, make_stages(calls), out=out, until_stage="first")
    assert [r.status for r in records] == ["done", "not run"]
    records = run_stages(config, make_stages(calls), out=out, from_stage="second")
    assert [r.status for r in records] == ["kept (before --from)", "done"]
    records = run_stages(config, make_stages(calls), out=out, from_stage="second")
    assert records[1].status == "done"  # --from forces the stage
    with pytest.raises(ItmeParameterError, match="from_stage"):
        run_stages(config, make_stages(calls), out=out, from_stage="nope")


def test_stage_seeds_are_independent_and_reproducible():
    a = stage_seeds(42, ["x", "y", "z"])
    assert a == stage_seeds(42, ["x", "y", "z"])
    assert len(set(a.values())) == 3
    assert a != stage_seeds(43, ["x", "y", "z"])


def test_stage_seeds_do_not_move_when_a_stage_is_added():
    """A new stage (e.g. batch before cluster) leaves the other stages' random streams alone."""
    before = stage_seeds(11, ["ingest", "clean", "cluster", "patients", "rnaseq"])
    after = stage_seeds(11, ["ingest", "clean", "batch", "cluster", "patients", "new", "rnaseq"])
    assert all(after[name] == seed for name, seed in before.items())
    assert stage_seeds(11, ["rnaseq", "cluster"]) == {k: before[k] for k in ("rnaseq", "cluster")}


def test_outputs_get_ordinary_file_permissions(tmp_path):
    """The temporary file of an atomic write is owner-only (mkstemp); the output is not."""
    import os

    mask = os.umask(0o022)
    try:
        path = write_table(tmp_path / "t.csv", pd.DataFrame({"x": [1]}))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_stage_cannot_write_an_undeclared_table(tmp_path, config):
    def rogue(ctx):
        ctx.table("undeclared", pd.DataFrame({"x": [1]}))
        return {}

    stages = [Stage("rogue", rogue, params=lambda c: {}, outputs=(Output("a", "table", "x"),))]
    with pytest.raises(ItmeStateError, match="without declaring it"):
        run_stages(config, stages, out=tmp_path / "out")
    assert not (tmp_path / "out" / "tables" / "undeclared.csv").exists()


def test_an_early_start_no_stage_took_over_is_stopped_at_the_end(tmp_path, config):
    """The cluster stage starts the annotate stage's UMAP; --until cluster must not leave it."""
    import weakref

    from itme.pipeline import _background

    stopped = []
    stages = make_stages([])

    def first(ctx, run=stages[0].run):
        def finish(cells):  # stands for the embedding started early (a second process)
            raise AssertionError("nobody takes it over")

        weakref.finalize(finish, stopped.append, True)  # as start_embed stops its process
        _background._EARLY[("events", 1)] = finish
        return run(ctx)

    stages[0].run = first
    run_stages(config, stages, out=tmp_path / "out", until_stage="first")
    assert not _background._EARLY
    assert stopped == [True]
