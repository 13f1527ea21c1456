"""A cohort as it arrives: validate then run completes with the right units and n.

The simulated cohort (``simulate_cohort(messy=True)``): three runs with three channel
namings, one patient's tube split over two files, three patients with a relapse sample (one
relapsing into another iTME cluster), one failed sample, one marker (LAG-3) missing from
the third run. The same cohort written in one
naming gives identical tables.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import yaml

from itme.datasets import simulate_cohort
from itme.pipeline import demo_config_text, run, validate

pytestmark = pytest.mark.slow

N_PATIENTS, CELLS = 16, 2000


def _run(folder: Path, **messy) -> Path:
    inputs = folder / "input"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate_cohort(inputs, n_patients=N_PATIENTS, cells_per_sample=CELLS, n_genes=5000,
                        rng=5, **messy)  # fmt: skip
    config = yaml.safe_load(demo_config_text())
    config["seed"] = 5
    config["downsample"]["min_events"] = CELLS // 4
    config["patients"]["bootstrap"] = 10
    config["rnaseq"]["permutations"] = 100
    config["embed"]["enabled"] = False
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate(path) == []
        result = run(path, out=folder)
    assert all(s.status == "done" for s in result.stages)
    return folder


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("messy"), messy=True)


def _truth(out: Path) -> dict:
    return json.loads((out / "input" / "truth.json").read_text())["messy"]


def test_failed_sample_is_excluded_and_shown(messy):
    truth = _truth(messy)
    qc = pd.read_csv(messy / "tables" / "qc_samples.csv").set_index("sample_id")
    failed = truth["failed"][0]
    assert qc.at[failed, "status"] == "excluded"
    assert qc.at[failed, "fraction_kept"] < 0.5
    assert (qc["status"] == "excluded").sum() == 1
    assert (messy / "figures" / f"qc_gates_{failed}.png").is_file()
    summary = json.loads((messy / "summary.json").read_text())
    assert summary["qc"]["samples excluded"][0].startswith(f"{failed}: ")


def test_split_file_pooled_and_units_counted(messy):
    truth = _truth(messy)
    units = pd.read_csv(messy / "tables" / "sample_units.csv")
    split = truth["split"][0]
    pooled = units[units["patient_id"] == split]
    assert list(pooled["n_files"]) == [2, 2] and pooled["unit_id"].nunique() == 1
    clusters = pd.read_csv(messy / "tables" / "itme_clusters.csv", index_col=0)
    # one row per patient and time point: analysed patients + the relapse samples
    assert len(clusters) == truth["patients_analysed"] + len(truth["relapse_itme_cluster"])
    assert clusters["patient_id"].nunique() == truth["patients_analysed"]


def test_tests_count_independent_patients(messy):
    truth = _truth(messy)
    summary = json.loads((messy / "summary.json").read_text())
    assert (
        f"n = {truth['patients_analysed']} independent patients"
        in summary["stats"]["unit of tests"]
    )
    assert len(summary["stats"]["units not in tests"]) == len(truth["relapse_itme_cluster"])


def test_timepoint_change_reported(messy):
    truth = _truth(messy)
    changes = pd.read_csv(messy / "tables" / "timepoint_changes.csv").set_index("patient_id")
    assert set(changes.index) == set(truth["relapse_itme_cluster"])
    changer = next(iter(truth["relapse_itme_cluster"]))  # relapses with a cluster-3 composition
    assert changes.at[changer, "changed"]


def test_tables_identical_to_the_cohort_in_one_naming(messy, tmp_path_factory):
    plain = _run(
        tmp_path_factory.mktemp("one_naming"),
        split_patients=1,
        relapse_patients=3,
        failed_samples=1,
        missing_marker="LAG-3",
    )
    for name in ("subset_frequencies", "itme_clusters", "subset_tests", "timepoint_changes"):
        a = (messy / "tables" / f"{name}.csv").read_bytes()
        b = (plain / "tables" / f"{name}.csv").read_bytes()
        assert a == b, name


def test_marker_missing_from_one_run_is_left_out(messy):
    truth = _truth(messy)
    cells = ad.read_h5ad(messy / "cells.h5ad", backed="r")
    excluded = cells.uns["io"]["excluded_markers"]
    cells.file.close()
    assert truth["missing_marker"] not in cells.var_names
    assert list(excluded["antigen"]) == [truth["missing_marker"]]
    assert excluded["files_without"].iloc[0].split(", ") == truth["files_without_marker"]
