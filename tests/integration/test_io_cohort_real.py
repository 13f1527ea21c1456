"""read_cohort on real CyTOF cohorts in ../shared/data and cytonormpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeInputError, ItmeInputWarning

pytestmark = pytest.mark.shared_data

BODENMILLER = "bodenmiller2012_pbmc8_bcrxl_cytof"


def _bodenmiller_panel(shared_data):
    first = itme.io.read_fcs(shared_data / BODENMILLER / "PBMC8_30min_patient1_BCR-XL.fcs")
    lineage = {"CD3", "CD45", "CD4", "CD20", "CD33", "CD123", "CD14", "IgM", "HLA-DR", "CD7"}
    classes = [
        "type"
        if a in lineage
        else "qc"
        if a.startswith("DNA") or a == "Cell_length"
        else "none"
        if a in ("Time",) or a.startswith("BC")
        else "state"
        for a in first.var["antigen"]
    ]
    return pd.DataFrame(
        {
            "fcs_colname": first.var["channel"],
            "antigen": first.var["antigen"],
            "marker_class": classes,
        }
    )


def test_bodenmiller_sample_table_needs_its_columns_named(shared_data):
    """The staged table has `patient` and `shortname`; the error says how to fix it."""
    table = shared_data / BODENMILLER / "sample_table_bodenmiller_2012.csv"
    with pytest.raises(
        ItmeInputError,
        match=r"missing required column\(s\) sample_id, patient_id.*'patient' → 'patient_id'",
    ):
        itme.io.read_cohort(table, _bodenmiller_panel(shared_data))


def test_bodenmiller_cohort(shared_data):
    table = pd.read_csv(shared_data / BODENMILLER / "sample_table_bodenmiller_2012.csv")
    samples = table.rename(columns={"shortname": "sample_id", "patient": "patient_id"})
    adata = itme.io.read_cohort(
        samples, _bodenmiller_panel(shared_data), base_dir=shared_data / BODENMILLER
    )
    assert adata.shape == (172791, 35)  # PROVENANCE.md: 172,791 cells, 35 channels
    files = adata.uns["io"]["files"].set_index("file_name")
    assert files.loc["PBMC8_30min_patient2_Reference.fcs", "n_events"] == 16725
    # every file had the off-by-one $ENDDATA and was read anyway
    assert files["notes"].str.contains("ENDDATA").all()
    assert (
        files.loc["PBMC8_30min_patient1_BCR-XL.fcs", "sha256"]
        == "d2a70d9d63eb4c99248e14ff508518bc554a065a6fbde59be522a7fabf6a635f"
    )
    assert adata.var.loc["CD4", "marker_class"] == "type"
    assert set(adata.obs["condition"].cat.categories) == {"BCRXL", "Ref"}
    assert adata.obs["patient_id"].nunique() == 8
    # raw ion counts, CD45 positive on PBMC: median arcsinh(CD45/5) well above background
    assert np.median(np.arcsinh(adata[:, "CD45"].X / 5)) > 3


@pytest.mark.parametrize("style", ["pnn", "pns"])
def test_krieg_panel_by_pnn_or_pns(shared_data, style):
    folder = shared_data / "krieg2018_antipd1_cytof_subsample"
    first = itme.io.read_fcs(folder / "Data23_Panel3_base_NR4_Patient9.fcs")
    names = (
        first.var["channel"]
        if style == "pnn"
        else first.var["antigen"].where(first.var["antigen"] != "", first.var["channel"])
    )
    antigen = [a.split("_", 1)[1] if "_" in a else a for a in first.var["antigen"]]
    panel = pd.DataFrame(
        {"fcs_colname": names.to_numpy(), "antigen": antigen, "marker_class": "type"}
    )
    samples = pd.DataFrame(
        {
            "file_name": [
                "Data23_Panel3_base_NR4_Patient9.fcs",
                "Data23_Panel3_base_R5_Patient15.fcs",
            ],
            "sample_id": ["NR4", "R5"],
            "patient_id": ["Patient9", "Patient15"],
            "response": ["NR", "R"],
        }
    )
    adata = itme.io.read_cohort(samples, panel, base_dir=folder)
    assert adata.shape == (573, 30)
    assert "CD45" in adata.var_names and "Dead" in adata.var_names
    expected = "$PnN" if style == "pnn" else "$PnS"
    assert set(adata.uns["io"]["files"]["matched_by"]) == {expected}


def test_tidytof_marker_metal_naming(shared_data):
    folder = shared_data / "tidytof_cytof_examples" / "phenograph"
    first = itme.io.read_fcs(folder / "H1_PhenoGraph_cluster1.fcs")
    surface = ["CD45_Sm154", "CD3_Er170", "CD19_Nd142", "CD33_Gd158", "CD34_Nd148"]
    panel = pd.DataFrame(
        {
            "fcs_colname": surface,
            "antigen": [s.split("_")[0] for s in surface],
            "marker_class": "type",
        }
    )
    samples = pd.DataFrame(
        {
            "file_name": [f"H1_PhenoGraph_cluster{i}.fcs" for i in (1, 2, 3)],
            "sample_id": ["c1", "c2", "c3"],
            "patient_id": "H1",
        }
    )
    with pytest.warns(
        ItmeInputWarning, match=r"39 channel\(s\) present in every file but absent from the panel"
    ):
        adata = itme.io.read_cohort(samples, panel, base_dir=folder)
    assert adata.shape == (300, first.n_vars)
    assert list(adata.var_names[:5]) == ["CD45", "CD3", "CD19", "CD33", "CD34"]
    assert (adata.var["marker_class"] == "none").sum() == 39


def test_gates_files_with_cytonormpy_metadata(cytonormpy_resources):
    meta = pd.read_csv(cytonormpy_resources / "metadata.csv")
    samples = meta.assign(
        sample_id=meta["file_name"].str.replace(".fcs", "", regex=False),
        patient_id=meta["file_name"].str.extract(r"(PTLG\d+)")[0],
    )
    first = itme.io.read_fcs(cytonormpy_resources / meta["file_name"][0])
    panel = pd.DataFrame(
        {
            "fcs_colname": first.var["channel"],
            "antigen": first.var["antigen"].where(first.var["antigen"] != "", first.var["channel"]),
            "marker_class": "type",
        }
    )
    adata = itme.io.read_cohort(samples, panel, base_dir=cytonormpy_resources)
    assert adata.n_obs == 1000 * len(meta)
    assert {"reference", "batch"} <= set(adata.obs.columns)
