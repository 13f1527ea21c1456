"""read_cohort on small hand-built cohorts: the AnnData it makes and every bad input."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
)
from itme.io import _cohort
from itme.io._cohort import event_names

CHANNELS = ["Time", "Y89Di", "Nd142Di", "Nd145Di", "Ir191Di"]
ANTIGENS = ["", "CD45", "CD19", "CD4", "DNA1"]
PANEL = "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\nNd145Di,CD4,state\nIr191Di,DNA1,qc\n"


def make_cohort(
    folder: Path, sizes=(50, 80, 30), *, channels=None, labels=None, panel=PANEL, sheet=None
):
    """Write FCS files, samples.csv and panel.csv; return (samples path, panel path, data)."""
    rng = np.random.default_rng(7)
    data = []
    rows = ["file_name,sample_id,patient_id,condition"]
    for k, n in enumerate(sizes):
        x = rng.gamma(2.0, 30.0, size=(n, len(channels or CHANNELS))).astype(np.float32)
        x[:, 0] = np.arange(n)
        fcs_factory.write(folder / f"s{k}.fcs", x, channels or CHANNELS, labels=labels or ANTIGENS)
        data.append(x)
        rows.append(f"s{k}.fcs,S{k},P{k // 2},{'A' if k % 2 else 'B'}")
    (folder / "samples.csv").write_text(sheet if sheet is not None else "\n".join(rows) + "\n")
    (folder / "panel.csv").write_text(panel)
    return folder / "samples.csv", folder / "panel.csv", data


def test_cohort_anndata_layout(tmp_path):
    samples, panel, data = make_cohort(tmp_path)
    with pytest.warns(
        ItmeInputWarning,
        match=r"1 channel\(s\) present in every file but absent from the panel.*Time",
    ):
        adata = itme.io.read_cohort(samples, panel)
    assert adata.shape == (160, 5)
    # panel order first, then unpanelled channels; Time has no antigen, so channels name vars
    assert list(adata.var_names) == ["Y89Di", "Nd142Di", "Nd145Di", "Ir191Di", "Time"]
    assert list(adata.var["channel"]) == ["Y89Di", "Nd142Di", "Nd145Di", "Ir191Di", "Time"]
    assert list(adata.var["marker_class"]) == ["type", "type", "state", "qc", "none"]
    assert list(adata.var["in_panel"]) == [True, True, True, True, False]
    # values land in the right rows and columns
    expected = np.vstack([d[:, [1, 2, 3, 4, 0]] for d in data])
    np.testing.assert_array_equal(adata.X, expected)
    assert adata.layers["raw"] is adata.X
    assert adata.X.dtype == np.float32
    # obs: categoricals from the sheet, one per event
    for col in ("sample_id", "patient_id", "condition", "file_name"):
        assert isinstance(adata.obs[col].dtype, pd.CategoricalDtype), col
    assert adata.obs["sample_id"].value_counts().loc[["S0", "S1", "S2"]].tolist() == [50, 80, 30]
    assert list(adata.obs["sample_id"].cat.categories) == ["S0", "S1", "S2"]
    assert (
        adata.obs.loc["S1_0", "patient_id"] == "P0" and adata.obs.loc["S2_29", "patient_id"] == "P1"
    )
    files = adata.uns["io"]["files"]
    assert list(files["n_events"]) == [50, 80, 30]
    assert files["sha256"].str.len().eq(64).all()
    assert set(files["matched_by"]) == {"$PnN"}


def test_antigens_are_var_names_when_unique(tmp_path):
    panel = PANEL + "Time,Time,none\n"
    samples, panel_path, _ = make_cohort(tmp_path, panel=panel)
    adata = itme.io.read_cohort(samples, panel_path)
    assert list(adata.var_names) == ["CD45", "CD19", "CD4", "DNA1", "Time"]


def test_channel_names_when_antigens_repeat(tmp_path):
    panel = "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD45,type\nNd145Di,CD4,type\nIr191Di,DNA1,qc\nTime,,none\n"
    samples, panel_path, _ = make_cohort(tmp_path, panel=panel)
    with pytest.warns(ItmeInputWarning, match=r"antigen\(s\) on several channels: CD45"):
        adata = itme.io.read_cohort(samples, panel_path)
    assert list(adata.var_names) == ["Y89Di", "Nd142Di", "Nd145Di", "Ir191Di", "Time"]


def test_panel_matched_by_pns_when_pnn_differs(tmp_path):
    """Krieg-style files: $PnN is the metal, the panel names the $PnS."""
    labels = ["Time", "89Y_CD45", "142Nd_CD19", "145Nd_CD4", "191Ir_DNA1"]
    panel = "fcs_colname,antigen,marker_class\n89Y_CD45,CD45,type\n142Nd_CD19,CD19,type\n145Nd_CD4,CD4,type\n191Ir_DNA1,DNA1,qc\nTime,Time,none\n"
    samples, panel_path, data = make_cohort(tmp_path, labels=labels, panel=panel)
    adata = itme.io.read_cohort(samples, panel_path)
    assert set(adata.uns["io"]["files"]["matched_by"]) == {"$PnN+$PnS"}
    np.testing.assert_array_equal(adata[adata.obs.sample_id == "S0"].X[:, 0], data[0][:, 1])


def test_unpanelled_drop_is_recorded(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    with pytest.warns(ItmeExclusionWarning, match=r"left out 1 channel\(s\).*Time"):
        adata = itme.io.read_cohort(samples, panel, unpanelled="drop")
    assert adata.n_vars == 4
    assert adata.uns["io"]["dropped_channels"] == ["Time"]
    with pytest.raises(ItmeParameterError, match="unpanelled"):
        itme.io.read_cohort(samples, panel, unpanelled="ignore")


def test_catalyst_metadata_and_panel_load_unchanged(tmp_path):
    """CATALYST's own format: md (file_name, sample_id, condition, patient_id), panel
    (fcs_colname, antigen, marker_class in type/state/none)."""
    sheet = "file_name,sample_id,condition,patient_id\ns0.fcs,Ref1,Ref,Patient1\ns1.fcs,BCRXL1,BCRXL,Patient1\n"
    panel = "fcs_colname,antigen,marker_class\nTime,Time,none\nY89Di,CD45,type\nNd142Di,CD19,type\nNd145Di,CD4,state\nIr191Di,DNA1,none\n"
    samples, panel_path, _ = make_cohort(tmp_path, sizes=(10, 12), sheet=sheet, panel=panel)
    adata = itme.io.read_cohort(samples, panel_path)
    assert adata.n_obs == 22
    assert list(adata.obs.columns) == ["sample_id", "patient_id", "file_name", "condition"]


def test_bom_and_windows_encodings_just_work(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    text = samples.read_text().replace("condition", "Bedingung Größe").replace(",A\n", ",Ä\n")
    samples.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    panel.write_bytes(panel.read_text().encode("cp1252"))
    with pytest.warns(ItmeInputWarning):
        adata = itme.io.read_cohort(samples, panel)
    assert "Bedingung Größe" in adata.obs
    samples.write_bytes(text.replace(",", ";").encode("cp1252"))  # Excel in a European locale
    with pytest.warns(ItmeInputWarning):
        adata2 = itme.io.read_cohort(samples, panel)
    assert set(adata2.obs["Bedingung Größe"]) == {"Ä", "B"}


def test_dataframes_with_base_dir(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    frame = pd.read_csv(samples)
    panel_frame = pd.read_csv(panel)
    with pytest.warns(ItmeInputWarning):
        adata = itme.io.read_cohort(frame, panel_frame, base_dir=tmp_path)
    assert adata.n_obs == 160


def test_dataframe_missing_values_are_reported_like_empty_cells(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    frame = pd.read_csv(samples)
    frame.loc[1, "patient_id"] = np.nan
    with pytest.raises(ItmeInputError, match=r"column patient_id is empty on lines 3"):
        itme.io.read_cohort(frame, panel, base_dir=tmp_path)


# --- bad input: every case named in the foundation issue, each message checked -------------


def test_missing_fcs_file(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    (tmp_path / "s1.fcs").unlink()
    with pytest.raises(
        ItmeInputError,
        match=r"1 FCS file\(s\) listed in the sample sheet do not exist: line 3: .*s1\.fcs",
    ):
        itme.io.read_cohort(samples, panel)


def test_duplicate_sample_id(tmp_path):
    sheet = "file_name,sample_id,patient_id\ns0.fcs,S0,P0\ns1.fcs,S1,P0\ns2.fcs,S0,P1\n"
    samples, panel, _ = make_cohort(tmp_path, sheet=sheet)
    with pytest.raises(ItmeInputError, match=r"duplicate sample_id: 'S0' on lines 2, 4"):
        itme.io.read_cohort(samples, panel)


def test_samples_missing_required_column(tmp_path):
    sheet = "file_name,sample_id,patient\ns0.fcs,S0,P0\n"
    samples, panel, _ = make_cohort(tmp_path, sizes=(5,), sheet=sheet)
    with pytest.raises(
        ItmeInputError,
        match=r"missing required column\(s\) patient_id.*found file_name, sample_id, patient.*'patient' → 'patient_id'",
    ):
        itme.io.read_cohort(samples, panel)


def test_unknown_marker_class(tmp_path):
    panel = PANEL.replace("Nd142Di,CD19,type", "Nd142Di,CD19,lineage")
    samples, panel_path, _ = make_cohort(tmp_path, panel=panel)
    with pytest.raises(
        ItmeInputError,
        match=r"panel.csv: line 3, column marker_class: 'lineage' is not one of type, state, qc, none",
    ):
        itme.io.read_cohort(samples, panel_path)


def test_panel_channel_absent_from_a_file(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    channels = ["Time", "Y89Di", "Nd142Di", "Nd146Di", "Ir191Di"]
    fcs_factory.write(tmp_path / "s2.fcs", np.ones((5, 5), np.float32), channels, labels=ANTIGENS)
    with pytest.raises(
        ItmeInputError,
        match=r"s2\.fcs: panel channel\(s\) not in the file's \$PnN or \$PnS: Nd145Di \(closest: Nd146Di\)",
    ):
        itme.io.read_cohort(samples, panel, missing_markers="error")


def test_files_whose_channel_sets_differ_list_the_differences(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    channels = [*CHANNELS, "Pt195Di"]
    fcs_factory.write(
        tmp_path / "s1.fcs", np.ones((5, 6), np.float32), channels, labels=[*ANTIGENS, "cisplatin"]
    )
    with pytest.raises(
        ItmeInputError,
        match=r"channel sets differ outside the panel: s0\.fcs lacks Pt195Di; s2\.fcs lacks Pt195Di",
    ):
        itme.io.read_cohort(samples, panel)
    # the same cohort reads when unpanelled channels are explicitly left out
    with pytest.warns(ItmeExclusionWarning, match="Pt195Di"):
        adata = itme.io.read_cohort(samples, panel, unpanelled="drop")
    assert "Pt195Di" in adata.uns["io"]["dropped_channels"]


def test_empty_file(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    fcs_factory.write(tmp_path / "s0.fcs", np.zeros((0, 5), np.float32), CHANNELS, labels=ANTIGENS)
    with pytest.raises(ItmeInputError, match=r"s0\.fcs: the file holds no events \(\$TOT = 0\)"):
        itme.io.read_cohort(samples, panel)


def test_every_problem_is_listed_at_once(tmp_path):
    sheet = "file_name,sample_id,patient_id\ns0.fcs,S0,\ns1.fcs,S0,P1\n"
    samples, panel, _ = make_cohort(tmp_path, sizes=(3, 3), sheet=sheet)
    with pytest.raises(
        ItmeInputError,
        match=r"column patient_id is empty on lines 2; duplicate sample_id: 'S0' on lines 2, 3",
    ):
        itme.io.read_cohort(samples, panel)


def test_h5ad_roundtrip(tmp_path):
    samples, panel, _ = make_cohort(tmp_path)
    with pytest.warns(ItmeInputWarning):
        adata = itme.io.read_cohort(samples, panel)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    back = ad.read_h5ad(tmp_path / "cells.h5ad")
    np.testing.assert_array_equal(back.X, adata.X)
    np.testing.assert_array_equal(back.layers["raw"], adata.layers["raw"])
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    pd.testing.assert_frame_equal(back.var, adata.var)
    pd.testing.assert_frame_equal(back.uns["io"]["files"], adata.uns["io"]["files"])
    assert back.uns["io"]["keywords"]["S0"]["$CYT"] == "TEST-CYTOF"


@pytest.mark.parametrize("sample_id", ["S1", "patient é/2 day 0", "12"])
def test_event_names_are_the_sample_and_the_event_index(sample_id):
    names = event_names(sample_id, 1003)  # numpy strings, no Python string per event
    assert names.dtype == np.dtypes.StringDType()
    assert list(names) == [f"{sample_id}_{i}" for i in range(1003)]
    assert event_names(sample_id, 0).shape == (0,)


def test_event_names_beyond_the_kept_index_strings(monkeypatch):
    # the strings of the first indices are built once and shared; the rest per call
    monkeypatch.setattr(_cohort, "_KEPT_INDICES", 100)
    monkeypatch.setattr(_cohort, "_indices", np.empty(0, dtype=np.dtypes.StringDType()))
    for n in (0, 99, 100, 101, 1003):
        assert list(event_names("S1", n)) == [f"S1_{i}" for i in range(n)]
    assert _cohort._indices.size == 100
    # the kept strings are shared, not changed, by the files' names
    first = event_names("A", 5)
    assert list(event_names("B", 5)) == [f"B_{i}" for i in range(5)]
    assert list(first) == [f"A_{i}" for i in range(5)]
