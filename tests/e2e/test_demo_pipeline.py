"""The whole pipeline on a small synthetic demo cohort, checked against its planted truth.

The same properties as the full demo (issue "pipeline"): planted iTME clusters recovered
(ARI ≥ 0.9), planted differential subsets found (recall ≥ 0.9 at q < 0.05), planted
Hallmark pathways at FDR < 0.05 with the right sign, no cytokine significant; a rerun gives
identical tables; a run killed mid-way and restarted gives the same result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from itme.errors import ItmeWarning
from itme.pipeline import run

pytestmark = pytest.mark.slow


#: the small demo, as a user runs it (`itme demo`), in its own process: what it prints is
#: what a user sees (Python's default warning filters, the CLI's log format)
DEMO_ARGS = ["--patients", "30", "--cells", "3000", "--genes", "6000", "--seed", "11"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from itme.cli import entry_point; entry_point()",
            "demo",
            "--out",
            str(out),
            *DEMO_ARGS,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [s["status"] for s in stages] == ["done"] * 11  # with batch and differential
    return out, proc.stderr


@pytest.fixture(scope="module")
def demo(demo_run) -> Path:
    return demo_run[0]


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


def _tables(out: Path, *, copy_of: Path | None = None) -> dict[str, bytes]:
    """The tables' bytes; ``copy_of``: ``out`` is a copy of that run folder, and the paths
    of its inputs named in warnings are read as the original's."""
    files = {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}
    if copy_of is not None:
        for name in ("warnings.csv", "warning_items.csv"):
            files[name] = files[name].replace(str(out).encode(), str(copy_of).encode())
    return files


def test_rerun_is_identical_and_a_killed_run_resumes(demo, tmp_path):
    """Rerun every random stage (SOM, UMAP, bootstrap, GSEA) from scratch in a copy: same
    tables. Then remove what a kill during `stats` leaves behind and rerun: same tables.

    The warnings table too: the reruns let itme's warnings through as the CLI does (every
    time), so the stages run again show what the demo's showed, and the stages kept or
    skipped bring theirs from their records."""
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")
        warnings.filterwarnings("always", category=ItmeWarning)
        result = run(copy / "config.yaml", out=copy, from_stage="cluster")
        statuses = {s.name: s.status for s in result.stages}
        assert statuses["cluster"] == "done" and statuses["ingest"].startswith("kept")
        assert _tables(copy, copy_of=demo) == _tables(demo)
        # a kill inside `stats`: its record and one of its tables never got written
        (copy / ".itme" / "stats.json").unlink()
        (copy / "tables" / "subset_tests.csv").unlink()
        result = run(copy / "config.yaml", out=copy)
    statuses = {s.name: s.status for s in result.stages}
    assert statuses["cluster"] == "skipped (unchanged)"
    assert statuses["stats"] == "done"
    assert _tables(copy, copy_of=demo) == _tables(demo)


def test_a_clean_demo_prints_at_most_three_warnings_one_line_each(demo_run):
    _, stderr = demo_run
    lines = stderr.splitlines()
    warned = [ln for ln in lines if " WARNING " in ln or "[WARNING]" in ln]
    assert len(warned) <= 3, "\n".join(warned)
    # one line per fact: no Python source line echoed under a warning, no repeats, short
    assert not [ln for ln in lines if ln.startswith("  ") and not ln.strip().startswith("-")]
    facts = [ln.split(" WARNING ", 1)[-1] for ln in warned]
    assert len(set(facts)) == len(facts)
    assert max(map(len, warned), default=0) < 600
    # the patient without an FCS file is one warning, not one per downstream step
    assert sum("MM" in ln and "no sample" in ln for ln in warned) <= 1
    assert "no row in" not in stderr


def test_every_warning_printed_is_in_the_runs_warnings_table(demo_run):
    out, stderr = demo_run
    table = pd.read_csv(out / "tables" / "warnings.csv", keep_default_na=False)
    rows = {(w, m): (stage, n) for stage, w, m, n in table.itertuples(index=False, name=None)}
    printed = [
        ln.split(" py.warnings: ", 1)[1].split(": ", 1)
        for ln in stderr.splitlines()
        if " WARNING " in ln and " py.warnings: " in ln
    ]
    assert printed and all((w, m) in rows for w, m in printed), (printed, table)
    assert len(table) == len(table.drop_duplicates(["stage", "warning", "message"]))
    # the patient without an FCS file (the demo plants one): once, by the patients stage
    (missing,) = [key for key in rows if "no sample" in key[1]]
    assert rows[missing] == ("patients", 1)


def test_unassigned_and_never_found_subsets_are_listed_not_tested(demo):
    tests = pd.read_csv(demo / "tables" / "subset_tests.csv")
    assert "unassigned" not in set(tests["feature"])
    assert tests["pvalue"].notna().all()  # no rows of NA for always-zero subsets
    left = pd.read_csv(demo / "tables" / "subsets_not_tested.csv").set_index("feature")
    cells = ad.read_h5ad(demo / "cells.h5ad", backed="r")
    n_unassigned = int((cells.obs["subset"] == "unassigned").sum())
    cells.file.close()
    assert left.loc["unassigned", "events"] == n_unassigned
    frequencies = pd.read_csv(demo / "tables" / "subset_frequencies.csv", index_col=0)
    never = [c for c in frequencies.columns if (frequencies[c] == 0).all()]
    assert set(never) <= set(left.index)
    clustered = ad.read_h5ad(demo / "patients.h5ad").uns["itme_cluster"]["features"]
    assert "unassigned" not in set(clustered) and not set(never) & set(clustered)


def test_report_and_tables_of_a_finished_run(demo):
    html = (demo / "report.html").read_text()
    assert "running" not in html
    annotation = pd.read_csv(demo / "tables" / "cluster_annotation.csv", dtype={0: str})
    ids = annotation.iloc[:, 0].astype(int).tolist()
    assert ids == sorted(ids)  # 1, 2, ..., 10, not as text
    named = annotation[annotation["subset"] != "unassigned"]
    assert (named["n_events"] >= 20).all()  # slivers of a few events get no subset name
    summary = json.loads((demo / "summary.json").read_text())["clusters"]
    asked = summary["metaclusters asked"]
    assert asked == 40 and summary["metaclusters with events"] == int(
        (annotation["n_events"] > 0).sum()
    )
    cells = ad.read_h5ad(demo / "cells.h5ad", backed="r")
    assert len(cells.uns["subset_colors"]) == len(cells.obs["subset"].cat.categories)
    cells.file.close()
    patients = ad.read_h5ad(demo / "patients.h5ad")
    assert len(set(patients.uns["itme_cluster_colors"])) == 3


def test_k4_gives_every_cluster_a_contrast(demo, tmp_path):
    """patients.k: 4 without rnaseq.contrasts: each cluster vs the rest, none left out."""
    copy = tmp_path / "k4"
    shutil.copytree(demo, copy)
    import yaml

    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["patients"]["k"] = 4
    config["patients"]["bootstrap"] = 10
    config["rnaseq"]["contrasts"] = None
    config["rnaseq"]["permutations"] = 100
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(copy / "config.yaml", out=copy, from_stage="patients")
    clusters = pd.read_csv(copy / "tables" / "itme_clusters.csv", index_col=0)
    sizes = clusters["itme_cluster"].astype(str).value_counts()
    assert sorted(sizes.index) == ["1", "2", "3", "4"]
    rna = json.loads((copy / "summary.json").read_text())["rna"]
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    stages = json.loads((copy / "run.json").read_text())["stages"]
    written = next(s["outputs"] for s in stages if s["name"] == "rnaseq")
    tables = {Path(p).name for p in written if Path(p).name.startswith("de_results")}
    for c in "1234":
        entry = rna[f"itme {c} vs rest"]
        if sizes[c] < 2:  # a cluster of one patient cannot be tested: said, not dropped
            assert entry.startswith("status: skipped"), entry
            assert any(f"itme_{c}_vs_rest skipped" in m for m in skipped)
        else:
            assert entry.startswith(f"test: {c}; reference: "), entry
    assert len(tables) == sum(sizes >= 2) and "de_results.csv" in tables
    assert "clusters left out" not in json.dumps(rna)
