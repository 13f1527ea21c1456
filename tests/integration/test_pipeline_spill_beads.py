"""The config keys inputs.spillover, ingest.compensation and ingest.beads in a run (ingest, clean).

A small demo cohort (8 patients) (its files have a Time channel and planted EQ beads) with a spillover
matrix over its panel's metals: the ingest stage normalises on the beads and compensates,
the clean stage reports both and removes the beads; changing the matrix file reruns ingest.
"""

from __future__ import annotations

import warnings

import anndata as ad
import pandas as pd
import pytest
import yaml

from itme import datasets, io
from itme.pipeline import demo_config_text, run, validate

pytestmark = pytest.mark.slow


def test_ingest_normalises_and_compensates(tmp_path):
    inputs = tmp_path / "input"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.simulate_cohort(inputs, n_patients=8, cells_per_sample=1500, n_genes=5000, rng=3)
    panel = pd.read_csv(inputs / "panel.csv")
    metals = [c for c in panel["fcs_colname"] if io.parse_channel(c).element]
    spill = datasets.simulate_spillover_matrix(metals, rng=3)
    io.write_spillover(spill.drop(index=metals[0], columns=metals[0]), path=inputs / "spill.csv")
    config = yaml.safe_load(demo_config_text())
    config["inputs"]["spillover"] = "input/spill.csv"
    config["ingest"] = {"beads": "sample", "compensation": "nnls"}
    config["downsample"]["min_events"] = 200
    path = tmp_path / "config.yaml"
    bad = dict(config, inputs={**config["inputs"], "spillover": "input/bad.csv"})
    (inputs / "bad.csv").write_text(",Nd142Di,Nd143Di\nNd142Di,1,0.01\nNd143Di,-0.02,1\n")
    path.write_text(yaml.safe_dump(bad))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problems = validate(path)
    assert any("spillover" in p and "bad.csv line 3" in p and ">= 0" in p for p in problems)
    path.write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert validate(path) == []
        result = run(path, out=tmp_path, until_stage="clean")
    assert [s.status for s in result.stages][:2] == ["done", "done"]
    cells = ad.read_h5ad(tmp_path / "work" / "ingest.h5ad")
    comp = cells.uns["compensation"]
    assert comp["method"] == "nnls"
    assert len(comp["channels"]) == len(metals) - 1
    assert list(comp["not_in_matrix"]) == [cells.var_names[cells.var["channel"] == metals[0]][0]]
    beads = cells.uns["bead_normalization"]["samples"]
    assert (beads["n_beads"] > 0).all()
    clean = next(s for s in result.stages if s.name == "clean").summary
    assert "channels matched by metal" in clean["compensation"]
    assert f"{int(beads['n_beads'].sum())} beads" in clean["bead_normalization"]
    qc = pd.read_csv(tmp_path / "tables" / "qc_events.csv")
    # the clean stage's bead step (the same gate, refitted on the normalised, compensated
    # counts) removes what normalize_beads labelled, to within a bead or two
    assert abs(int(qc["bead"].sum()) - int(cells.obs["is_bead"].sum())) <= 0.02 * qc["bead"].sum()
    # a changed matrix reruns ingest
    io.write_spillover(spill, path=inputs / "spill.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run(path, out=tmp_path, until_stage="ingest")
    assert again.stages[0].status == "done"
    rerun = ad.read_h5ad(tmp_path / "work" / "ingest.h5ad")
    assert len(rerun.uns["compensation"]["not_in_matrix"]) == 0
