"""Config files, the config reference, validate()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import itme
from itme.errors import ItmeInputError
from itme.pipeline import config_reference, load_config, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.patients.k == 3
    assert config.transform.cofactor == 5


def test_configuration_reference_is_current():
    """docs/configuration.md is generated: `itme config-reference > docs/configuration.md`."""
    assert (ROOT / "docs" / "configuration.md").read_text() == config_reference()


def test_unknown_key_names_the_nearest_valid_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "inputs": {"samples": "s.csv", "panel": "p.csv"},
                "cluster": {"n_metacluster": 30},
                "patients": {"k": 1},
            }
        )
    )
    with pytest.raises(
        ItmeInputError,
        match=r"(?s)2 problem\(s\).*unknown key 'cluster.n_metacluster'; did you mean 'n_metaclusters'\?.*patients.k: Input should be greater than or equal to 2",
    ):
        load_config(path)


def test_missing_required_input(tmp_path):
    with pytest.raises(ItmeInputError, match=r"inputs.panel is required"):
        load_config({"inputs": {"samples": "s.csv"}}, base_dir=tmp_path)


def test_relative_paths_resolve_from_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"inputs": {"samples": "data/s.csv", "panel": "/abs/p.csv"}, "output": "out"}
        )
    )
    config = load_config(path)
    assert config.inputs.samples == (tmp_path / "sub" / "data" / "s.csv").resolve()
    assert str(config.inputs.panel) == "/abs/p.csv"
    assert config.output == (tmp_path / "sub" / "out").resolve()


def test_validate_lists_every_problem_at_once(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\na.fcs,A,P1\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\nY89Di,CD45,lineage\n")
    (tmp_path / "clinical.csv").write_text(
        "patient_id,disease_status,os_months,os_event\nP1,NDMM,10,1\n"
    )
    config = {
        "inputs": {
            "samples": "samples.csv",
            "panel": "panel.csv",
            "clinical": "clinical.csv",
            "phenotypes": "nope.yaml",
        },
        "stats": {"cox_covariates": ["age"], "endpoints": ["os", "pfs"]},
        "rnaseq": {
            "contrasts": [
                {"name": "x", "groupby": "disease_status", "test": ["TRMM"], "reference": ["NDMM"]}
            ]
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = validate(path)
    text = "\n".join(problems)
    assert "marker_class: 'lineage'" in text
    assert "phenotypes" in text and "nope.yaml" in text
    assert "covariate 'age' is not a column of clinical.csv" in text
    assert "'pfs_months' is not a column of clinical.csv" in text
    assert "levels ['TRMM'] not in clinical column 'disease_status'" in text
    assert len(problems) >= 5


def test_validate_cli_exit_codes(tmp_path, capsys):
    from itme.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"inputs": {"samples": "s.csv", "panel": "p.csv"}}))
    assert main(["-q", "validate", str(path)]) == 2
    assert "problem(s)" in capsys.readouterr().out


def test_demo_config_is_the_package_copy():
    assert (ROOT / "configs" / "demo.yaml").read_text() == itme.pipeline.demo_config_text()


def test_clean_section_reaches_pp_clean_unchanged():
    """Config gates are on pp.clean's gating scale arcsinh(raw / 5) and come out unchanged
    in uns['qc']['thresholds'] low / high; raw counts only in low_raw / high_raw. The step
    alias `cd45` (existing configs) is the step `cd45_negative` (docs/cleaning.md)."""
    from helpers.qc_sim import planted_cohort

    from itme.core.clean.steps import GATING_COFACTOR
    from itme.pipeline._stages_cells import clean_kwargs

    gates = {"cd45": [2.0, None], "dna": [3.7123456789, 6.9]}
    config = load_config(
        {
            "inputs": {"samples": "s.csv", "panel": "p.csv"},
            "clean": {"steps": ["debris", "cd45", "doublet"], "thresholds": gates},
        },
        base_dir=ROOT,
    )
    assert config.clean.steps == ["debris", "cd45_negative", "doublet"]
    kwargs = clean_kwargs(config.clean)
    assert kwargs["thresholds"] == gates and kwargs["cofactor"] == GATING_COFACTOR
    adata, _ = planted_cohort(3, n_per_sample=2000, n_samples=1)
    itme.pp.clean(adata, **kwargs)
    assert adata.uns["qc"]["params"]["steps"] == ["debris", "doublet", "cd45_negative"]
    assert adata.uns["qc"]["params"]["cofactor"] == GATING_COFACTOR
    thr = adata.uns["qc"]["thresholds"].set_index(["step", "role"])
    for (step, role), side, value in [
        (("cd45_negative", "cd45"), "low", 2.0),
        (("debris", "dna"), "low", 3.7123456789),
        (("doublet", "dna"), "high", 6.9),
    ]:
        gate = thr.loc[(step, role)]
        assert gate["method"] == "user"
        assert gate[side] == value  # identical, not approximately
        assert gate[f"{side}_raw"] == pytest.approx(GATING_COFACTOR * np.sinh(value), rel=1e-12)
        other = "high" if side == "low" else "low"
        assert np.isnan(gate[other]) and np.isnan(gate[f"{other}_raw"])
    assert thr.loc[("cd45_negative", "cd45"), "low_raw"] == pytest.approx(18.134, abs=1e-3)


def test_validate_needs_clinical_for_a_sensitivity_column(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\na.fcs,A,P1\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\nY89Di,CD45,type\n")
    config = {
        "inputs": {"samples": "samples.csv", "panel": "panel.csv"},
        "patients": {"sensitivity_exclude": "dara_progressing"},
    }
    problems = validate(load_config(config, base_dir=tmp_path))
    assert any(
        "'dara_progressing' names a clinical column, but inputs.clinical is not given" in p
        for p in problems
    )
