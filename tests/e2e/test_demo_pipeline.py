"""The whole pipeline on a small synthetic demo cohort, checked against its planted truth.

The same properties as the full demo (issue "pipeline"): planted iTME clusters recovered
(ARI ≥ 0.9), planted differential subsets found (recall ≥ 0.9 at q < 0.05), planted
Hallmark pathways at FDR < 0.05 with the right sign, no cytokine significant; a rerun gives
identical tables; a run killed mid-way and restarted gives the same result.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from itme.pipeline import run, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_demo(out, n_patients=30, cells_per_sample=3000, n_genes=6000, seed=11)
    assert [s.status for s in result.stages] == ["done"] * 10  # with the batch stage
    return out


def _truth(out: Path) -> dict:
    return json.loads((out / "input" / "truth.json").read_text())


def test_planted_itme_clusters_are_recovered(demo):
    truth = _truth(demo)
    clusters = pd.read_csv(demo / "tables" / "itme_clusters.csv", index_col=0)
    planted = clusters["patient_id"].map(truth["itme_cluster"])
    assert planted.notna().all()
    assert adjusted_rand_score(planted, clusters["itme_cluster"]) >= 0.9


def test_planted_subsets_found_and_nulls_not(demo):
    truth = _truth(demo)
    tests = pd.read_csv(demo / "tables" / "subset_tests.csv")
    called = set(tests.loc[tests["padj"] < 0.05, "feature"])
    planted, null = set(truth["differential_subsets"]), set(truth["null_subsets"])
    assert len(called & planted) / len(planted) >= 0.9, sorted(planted - called)
    assert len(called & null) <= max(1, round(0.05 * len(null))), sorted(called & null)


def test_planted_pathways_have_the_right_sign(demo):
    truth = _truth(demo)
    gsea = pd.read_csv(demo / "tables" / "gsea_hallmark.csv").set_index("Term")
    for term, direction in truth["pathways"].items():
        assert gsea.loc[term, "FDR"] < 0.05, term
        assert (gsea.loc[term, "NES"] > 0) == (direction == "up"), term


def test_no_cytokine_is_called(demo):
    table = pd.read_csv(demo / "tables" / "cytokine_tests.csv")
    assert len(table) > 0
    assert (table["padj"] >= 0.05).all()


def test_outputs_follow_the_data_model(demo):
    cells = ad.read_h5ad(demo / "cells.h5ad", backed="r")
    for key in ("sample_id", "patient_id", "itme_qc", "som_node", "metacluster", "subset"):
        assert key in cells.obs, key
    assert {"io", "arcsinh", "qc", "flowsom", "subset"} <= set(cells.uns)
    assert "raw" in cells.layers and "X_itme_umap" in cells.obsm
    # scanpy's layout: the markers in X, QC and technical channels beside it (issue 14)
    assert set(cells.var["marker_class"].astype(str)) == {"type", "state"}
    assert {"Time", "DNA1", "Event_length"} <= set(cells.obsm["other_channels"].columns)
    cells.file.close()
    patients = ad.read_h5ad(demo / "patients.h5ad")
    assert "itme_cluster" in patients.obs and "derived" in patients.obsm
    assert {"itme_cluster", "itme_cluster_stability", "itme_cluster_sensitivity"} <= set(
        patients.uns
    )
    # the accounting adds up: every event is kept or removed by exactly one step
    qc = pd.read_csv(demo / "tables" / "qc_events.csv", index_col="sample_id")
    removed = qc[["bead", "debris", "doublet", "dead", "cd45_negative"]].sum(axis=1)
    assert (qc["events_in"] - removed == qc["events_out"]).all()


def test_report_and_provenance(demo):
    html = (demo / "report.html").read_text()
    for heading in ("QC", "iTME", "Survival", "GSEA", "Cytokines", "Provenance"):
        assert heading in html, heading
    assert "http://" not in html and "https://" not in html
    run_json = json.loads((demo / "run.json").read_text())
    assert run_json["status"] == "done" and run_json["seed"] == 11
    assert {s["name"] for s in run_json["stages"]} >= {"ingest", "report"}
    shas = {Path(i["path"]).name: i["sha256"] for i in run_json["inputs"]}
    assert len(shas) >= 30 + 4  # FCS files, sheets, clinical, counts, cytokines
    assert run_json["versions"]["flowsom"] and run_json["versions"]["pydeseq2"]


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


def test_rerun_is_identical_and_a_killed_run_resumes(demo, tmp_path):
    """Rerun every random stage (SOM, UMAP, bootstrap, GSEA) from scratch in a copy: same
    tables. Then remove what a kill during `stats` leaves behind and rerun: same tables."""
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(copy / "config.yaml", out=copy, from_stage="cluster")
        statuses = {s.name: s.status for s in result.stages}
        assert statuses["cluster"] == "done" and statuses["ingest"].startswith("kept")
        assert _tables(copy) == _tables(demo)
        # a kill inside `stats`: its record and one of its tables never got written
        (copy / ".itme" / "stats.json").unlink()
        (copy / "tables" / "subset_tests.csv").unlink()
        result = run(copy / "config.yaml", out=copy)
    statuses = {s.name: s.status for s in result.stages}
    assert statuses["cluster"] == "skipped (unchanged)"
    assert statuses["stats"] == "done"
    assert _tables(copy) == _tables(demo)
