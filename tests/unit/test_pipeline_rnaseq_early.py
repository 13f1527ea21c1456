"""The RNA-seq contrasts between clinical groups fitted by a second process from the run's start."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from itme import io, rna
from itme.datasets._counts import simulate_counts
from itme.pipeline import _rnaseq_early as early
from itme.pipeline import _second_process, load_config
from itme.pipeline._runner import STATE_DIR, stage_seeds
from itme.pipeline._stages import STAGES

NAMES = [s.name for s in STAGES]
ALL = {"first": 0, "last": len(NAMES) - 1, "names": NAMES}


@pytest.fixture
def config(tmp_path):
    """12 RNA-seq patients in 3 disease stages; one contrast on them, one on iTME clusters."""
    patients = [f"P{i:02d}" for i in range(12)]
    stages = np.array(["NDMM", "RMM", "TRMM"])[np.arange(12) % 3]
    sets, _ = io.read_gene_sets("hallmark")
    sim = simulate_counts(
        pd.Series(stages, index=patients),
        gene_sets=sets,
        shifts={"TRMM": {"HALLMARK_INTERFERON_GAMMA_RESPONSE": 1.5}},
        n_genes=5000,
        rng=3,
    )
    table = sim.counts.T
    table.insert(0, "gene_name", sim.genes["gene_name"])
    table.index.name = "gene_id"
    table.to_csv(tmp_path / "counts.tsv", sep="\t")
    pd.DataFrame({"patient_id": patients, "disease_status": stages}).to_csv(
        tmp_path / "clinical.csv", index=False
    )
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    contrasts = [
        {"name": "c21", "groupby": "itme_cluster", "test": ["2"], "reference": ["1"]},
        {"name": "trmm", "groupby": "disease_status", "test": ["TRMM"], "reference": ["NDMM"]},
    ]
    return load_config(
        {
            "seed": 7,
            "output": "out",
            "inputs": {
                "samples": "samples.csv",
                "panel": "panel.csv",
                "clinical": "clinical.csv",
                "counts": "counts.tsv",
            },
            "patients": {"k": 2},
            "rnaseq": {"contrasts": contrasts, "permutations": 100},
        },
        base_dir=tmp_path,
    )


def _counts(config):
    return rna.read_counts(config.inputs.counts, clinical=io.read_clinical(config.inputs.clinical))


def _key(config, counts=None):
    """The stage's design key of contrast ``trmm``."""
    counts = _counts(config) if counts is None else counts
    return early.design_key(counts, config.rnaseq.contrasts[1], config)


def _in_process(config):
    """The tables of contrast ``trmm`` as the rnaseq stage computes them (on 2 threads)."""
    counts = _counts(config)
    seeds = early.contrast_seeds(stage_seeds(config.seed, ["rnaseq"])["rnaseq"], 2)
    return early.contrast_tables(counts, config.rnaseq.contrasts[1], config, seeds[1], threads=2)


def _same(got, want):
    for a, b in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(a, b)
        drop = {"elapsed_seconds"}
        assert {k: v for k, v in a.attrs.items() if k not in drop} == {
            k: v for k, v in b.attrs.items() if k not in drop
        }


def test_only_contrasts_without_itme_clusters_with_the_stage_seeds(config):
    ((contrast, seed),) = early.independent(config)
    assert contrast.name == "trmm"
    stage = stage_seeds(config.seed, ["rnaseq"])["rnaseq"]
    assert seed.spawn_key == early.contrast_seeds(stage, 2)[1].spawn_key  # the 2nd contrast's
    covariate = config.model_copy(
        update={"rnaseq": config.rnaseq.model_copy(update={"covariates": ["itme_cluster"]})}
    )
    assert early.independent(covariate) == []


def test_second_process_gives_the_stage_tables(config, monkeypatch):
    started = []
    popen = _second_process.subprocess.Popen
    monkeypatch.setattr(
        _second_process.subprocess, "Popen", lambda *a, **k: started.append(a) or popen(*a, **k)
    )
    early.start(config, **ALL)
    try:
        assert len(started) == 1
        assert early.take(config.output, "c21", _key(config)) is None  # needs the clusters
        got = early.take(config.output, "trmm", _key(config))
    finally:
        early.stop(config)
    _same(got, _in_process(config))
    assert not early.Path(started[0][0][4]).parent.exists()  # its files removed


def test_nothing_started_when_the_stage_finished_before_or_is_not_run(config, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no second process")

    monkeypatch.setattr(_second_process.subprocess, "Popen", refuse)
    rnaseq = NAMES.index("rnaseq")
    early.start(config, first=0, last=rnaseq - 1, names=NAMES)  # --until before rnaseq
    early.start(config, first=rnaseq + 1, last=len(NAMES) - 1, names=NAMES)  # --from after
    early.start(config.model_copy(update={"threads": 1}), **ALL)
    (config.output / STATE_DIR).mkdir(parents=True)
    (config.output / STATE_DIR / "rnaseq.json").write_text("{}")
    early.start(config, **ALL)
    assert early.take(config.output, "trmm", _key(config)) is None


def test_failed_second_process_leaves_the_contrast_to_the_stage(config, monkeypatch):
    monkeypatch.setattr(_second_process, "_ENTRY", "raise SystemExit(3)")
    early.start(config, **ALL)
    try:
        assert early.take(config.output, "trmm", _key(config)) is None
    finally:
        early.stop(config)


class _Finished:
    """Stands for a second process that has finished with ``results``."""

    def __init__(self, results):
        self.results = results

    def wait(self):
        return self.results

    def stop(self):
        pass


def test_tables_fitted_on_other_design_values_are_not_taken(config, monkeypatch):
    monkeypatch.setattr(early, "contrast_tables", lambda *a: (pd.DataFrame(), pd.DataFrame()))
    results = early._compute(config, early.independent(config))
    counts = _counts(config)
    assert results["trmm"][3] == _key(config, counts)
    swapped = counts.copy()  # two samples' disease stages swapped, as a differing clinical table
    status = swapped.obs["disease_status"].astype(str).to_numpy()
    status[[0, 1]] = status[[1, 0]]
    swapped.obs["disease_status"] = status
    fewer = counts[1:].copy()
    for other in (swapped, fewer):
        early._PENDING[config.output] = _Finished(results)
        try:
            assert early.take(config.output, "trmm", _key(config, other)) is None
        finally:
            early._PENDING.pop(config.output)


def test_warnings_of_the_second_process_are_shown_by_the_stage(config, monkeypatch):
    def fit(counts, contrast, config, seed):
        warnings.warn("planted", UserWarning, stacklevel=1)
        return pd.DataFrame({"x": [1]}), pd.DataFrame({"y": [2]})

    monkeypatch.setattr(early, "contrast_tables", fit)
    results = early._compute(config, early.independent(config))
    early._PENDING[config.output] = _Finished(results)
    try:
        with pytest.warns(UserWarning, match="planted"):
            de, gs = early.take(config.output, "trmm", _key(config))
    finally:
        early._PENDING.pop(config.output)
    assert de["x"].tolist() == [1] and gs["y"].tolist() == [2]
