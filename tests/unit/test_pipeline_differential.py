"""The config's design: validation before any stage, and the differential stage's outputs.

Validation runs on a tiny paired cohort on disk (3 donors × conditions A/B, 20 events per
file); the stage runs on a simulated paired cohort with planted effects
(tests/helpers/differential_sim.py) written as ``cells.h5ad`` and ``patients.h5ad``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import fcs_factory
from helpers.differential_sim import PLANTED_DA, PLANTED_DS, STATE, abundance, paired_cohort
from helpers.faults import tiny_config

from itme.cli import main
from itme.errors import ItmeInputError
from itme.pipeline import load_config, run, validate
from itme.pipeline._runner import run_stages
from itme.pipeline._stages import STAGES

DESIGN = {
    "formula": "~ condition",
    "contrasts": [{"column": "condition", "level": "B", "reference": "A"}],
    "random": "patient_id",
}


def paired_files(folder) -> dict:
    rows = ["file_name,sample_id,patient_id,condition"]
    for p in range(3):
        for c in "AB":
            data = np.ones((20, 3), np.float32)
            fcs_factory.write(folder / f"d{p}{c}.fcs", data, ["Y89Di", "Nd142Di", "Ir191Di"])
            rows.append(f"d{p}{c}.fcs,d{p}{c},d{p},{c}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    (folder / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,pS6,state\nIr191Di,DNA1,none\n"
    )
    return {**tiny_config(), "design": DESIGN}


BROKEN = [
    ("absent_column", {"formula": "~ condition + age"}, "column 'age' is neither a column of"),
    (
        "absent_level",
        {"contrasts": [{"column": "condition", "level": "BCRXL", "reference": "A"}]},
        "'BCRXL' not a value of samples.csv column 'condition' (A, B)",
    ),
    ("unpaired_random", {"random": "sample_id"}, "every level of 'sample_id' has a single"),
    ("too_few_cells", {"min_cells": 50}, "6 sample(s) hold fewer events than min_cells = 50"),
    ("absent_marker", {"markers": ["pErk"]}, "design.markers: not antigens of the panel: pErk"),
    ("lmm_without_random", {"random": None, "state_method": "lmm"}, "state_method lmm needs"),
    (
        "contrast_not_in_formula",
        {"formula": "~ patient_id"},
        "contrast column(s) ['condition'] are not terms of the formula",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_validate_names_a_broken_design_before_any_stage(tmp_path, change, expected):
    config = paired_files(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert validate(path) == []
    config["design"] = {**DESIGN, **change}
    path.write_text(yaml.safe_dump(config))
    problems = validate(path)
    assert any(expected in p for p in problems), problems
    assert main(["-q", "validate", str(path)]) == 2
    with pytest.raises(ItmeInputError, match="problem"):
        run(path)
    assert not (tmp_path / "out" / "work").exists()  # no stage ran


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("diff")
    cells = paired_cohort(7, n_patients=8, cells=2500)
    patients = abundance(cells)
    cells.write_h5ad(out / "cells.h5ad")
    patients.write_h5ad(out / "patients.h5ad")
    sheet = cells.obs[["sample_id", "patient_id", "condition"]].drop_duplicates()
    sheet.assign(file_name=sheet["sample_id"].astype(str) + ".fcs").to_csv(
        out / "samples.csv", index=False
    )
    (out / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    return out


def _config(out, design):
    return load_config(
        {
            "inputs": {"samples": "samples.csv", "panel": "panel.csv"},
            "design": design,
        },
        base_dir=out,
    )


def test_differential_stage_finds_the_planted_effects(run_folder):
    stage = next(s for s in STAGES if s.name == "differential")
    design = {**DESIGN, "markers": STATE}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small sample × subset cells left out
        records = run_stages(_config(run_folder, design), [stage], out=run_folder)
    assert records[0].status == "done"
    da = pd.read_csv(run_folder / "tables" / "differential_abundance.csv").set_index("subset")
    for subset, fc in PLANTED_DA.items():
        assert np.sign(da.loc[subset, "logFC"]) == np.sign(np.log(fc)), subset
    called = set(da.index[da["padj"] < 0.05])
    assert len(called & set(PLANTED_DA)) >= 3  # 8 pairs: the NB fit has 7 residual df per subset
    assert len(called - set(PLANTED_DA) - {"Other CD45+"}) <= 1
    assert da["padj"].notna().sum() >= 28  # every subset with events tested
    ds = pd.read_csv(run_folder / "tables" / "differential_state.csv")
    assert (ds["method"] == "lmm").all()
    ds = ds.set_index(["subset", "marker"])
    for (subset, marker), shift in PLANTED_DS.items():
        assert ds.loc[(subset, marker), "padj"] < 1e-3
        assert ds.loc[(subset, marker), "logFC"] == pytest.approx(shift, abs=0.2)
    for fig in ("ds_heatmap", "ds_density", "pbmds"):
        assert (run_folder / "figures" / f"{fig}.png").is_file(), fig
    summary = json.loads((run_folder / ".itme" / "differential.json").read_text())["summary"]
    entry = summary["condition_B_vs_A"]
    assert entry["state calls at padj < 0.05"] >= len(PLANTED_DS)
    assert entry["design"] == "~ condition; B vs A; paired by patient_id"


def test_no_design_runs_nothing(tmp_path):
    stage = next(s for s in STAGES if s.name == "differential")
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    config = load_config(
        {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}}, base_dir=tmp_path
    )
    records = run_stages(config, [stage], out=tmp_path / "out")
    assert records[0].summary["status"] == "not run"
    # no table of the stage; the runner's list of the run's warnings (none) is always written
    tables = tmp_path / "out" / "tables"
    assert sorted(p.name for p in tables.iterdir()) == ["warning_items.csv", "warnings.csv"]
    for name in ("warnings.csv", "warning_items.csv"):
        assert len((tables / name).read_text().splitlines()) == 1  # the header
