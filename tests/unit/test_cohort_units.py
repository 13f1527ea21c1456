"""The unit of analysis: split files pooled, time points separate, blanks refused."""

from __future__ import annotations

import pandas as pd
import pytest

from itme.errors import ItmeInputError
from itme.io import analysis_units, check_unit_panels, read_samples


def sheet(rows, columns=("file_name", "sample_id", "patient_id", "timepoint", "batch")):
    return pd.DataFrame(rows, columns=list(columns))


def test_split_files_pool_and_time_points_stay_separate():
    units = analysis_units(
        sheet(
            [
                ("a1.fcs", "P1_a", "P1", "dx", "B1"),
                ("a2.fcs", "P1_b", "P1", "dx", "B2"),  # same tube, another run: pooled
                ("a3.fcs", "P1_rel", "P1", "relapse", "B2"),
                ("b1.fcs", "P2", "P2", "dx", "B1"),
            ]
        )
    )
    assert list(units["unit_id"]) == ["P1_a+P1_b", "P1_a+P1_b", "P1_rel", "P2"]
    assert list(units["n_files"]) == [2, 2, 1, 1]
    assert list(units["timepoint"]) == ["dx", "dx", "relapse", "dx"]


def test_without_split_files_units_are_the_samples():
    table = sheet(
        [("a.fcs", "S1", "P1"), ("b.fcs", "S2", "P2")], ("file_name", "sample_id", "patient_id")
    )
    units = analysis_units(table)
    assert list(units["unit_id"]) == ["S1", "S2"] and set(units["timepoint"]) == {""}


def test_files_differing_in_condition_are_not_pooled():
    table = pd.DataFrame(
        {
            "file_name": ["a.fcs", "b.fcs"],
            "sample_id": ["P1_ref", "P1_stim"],
            "patient_id": ["P1", "P1"],
            "condition": ["Reference", "BCR-XL"],
        }
    )
    assert list(analysis_units(table)["unit_id"]) == ["P1_ref", "P1_stim"]


@pytest.mark.parametrize("column", ["timepoint", "visit"])
def test_blank_timepoint_is_an_error_naming_file_and_column(tmp_path, column):
    path = tmp_path / "samples.csv"
    path.write_text(f"file_name,sample_id,patient_id,{column}\na.fcs,S1,P1,dx\nb.fcs,S2,P1,\n")
    with pytest.raises(ItmeInputError, match=rf"samples\.csv.*column {column} is empty on lines 3"):
        read_samples(path)


def test_pooled_files_on_different_metals_are_an_error():
    units = analysis_units(
        sheet([("a.fcs", "S_a", "P1", "dx", "B1"), ("b.fcs", "S_b", "P1", "dx", "B2")])
    )
    cmap = pd.DataFrame(
        {
            "sample_id": ["S_a", "S_b"],
            "file_name": ["a.fcs", "b.fcs"],
            "panel_channel": ["CD3", "CD3"],
            "PnN": ["Yb170Di", "Nd144Di"],
            "PnS": ["CD3", "CD3"],
            "matched_by": ["antigen", "antigen"],
        }
    )
    with pytest.raises(
        ItmeInputError, match=r"patient P1 \(S_a\+S_b\), CD3: a\.fcs: Yb170Di, b\.fcs: Nd144Di"
    ):
        check_unit_panels(units, channel_map=cmap)
    check_unit_panels(
        units, channel_map=cmap.assign(PnN=["Yb170Di", "170Yb"])
    )  # one metal, two namings


def test_cohort_problems_passes_ingest_options_and_checks_the_timepoint(tmp_path):
    import numpy as np
    from helpers import fcs_factory

    from itme.pipeline._config import load_config
    from itme.pipeline._validate_cohort import cohort_problems

    x = np.ones((5, 2), np.float32)
    fcs_factory.write(tmp_path / "a.fcs", x, ["Time", "Nd144Di"], labels=["", "CD8a"])
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id,timepoint\na.fcs,S1,P1,dx\n"
    )
    (tmp_path / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nCD8,CD8,type\nTime,Time,none\n"
    )
    base = {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}}
    plain = load_config(base, base_dir=tmp_path)
    assert any("CD8" in p for p in cohort_problems(plain))  # CD8a is not CD8 without an alias
    aliased = load_config(
        {
            **base,
            "ingest": {"antigen_aliases": {"CD8": ["CD8a"]}},
            "stats": {"timepoint": "relapse"},
        },
        base_dir=tmp_path,
    )
    assert cohort_problems(aliased) == [
        "stats.timepoint: 'relapse' is not a value of samples.csv column timepoint (dx)"
    ]


def test_between_patient_tests_take_one_unit_per_patient(tmp_path):
    import anndata as ad
    import numpy as np

    from itme.pipeline._config import load_config
    from itme.pipeline._stages_patients import _one_per_patient

    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    base = {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}}
    obs = pd.DataFrame(
        {
            "patient_id": ["P1", "P1", "P2", "P3", "P3"],
            "timepoint": ["dx", "rel", "dx", "rel", "dx"],
        },
        index=["P1_dx", "P1_rel", "P2_dx", "P3_rel", "P3_dx"],
    )
    adata = ad.AnnData(np.zeros((5, 1)), obs=obs)
    first, note = _one_per_patient(load_config(base, base_dir=tmp_path), adata)
    assert list(first.obs_names) == ["P1_dx", "P2_dx", "P3_rel"]
    assert note["unit_of_tests"] == "each patient's first time point: n = 3 independent patients"
    assert note["units_not_in_tests"] == ["P1_rel", "P3_dx"]
    chosen = load_config({**base, "stats": {"timepoint": "dx"}}, base_dir=tmp_path)
    dx, _ = _one_per_patient(chosen, adata)
    assert list(dx.obs_names) == ["P1_dx", "P2_dx", "P3_dx"]
    # conditions (no time point column): still one unit per patient
    no_tp = ad.AnnData(np.zeros((2, 1)), obs=obs.iloc[:2][["patient_id"]])
    one, note = _one_per_patient(chosen, no_tp)
    assert one.n_obs == 1 and "first sample" in note["unit_of_tests"]
