"""io.read_clinical (the clinical.csv contract, DESIGN.md §2) and io.add_clinical (the join)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
    ItmeStateError,
)

GOOD = (
    "patient_id,disease_status,age,risk,os_months,os_event,pfs_months,pfs_event\n"
    "P1,NDMM,59,standard,110.3,0,20.1,1\n"
    "P2,rmm,66,high,12.4,1,6.1,1\n"
    "P3,TRMM,NA,,8.0,1,5.4,1\n"
)


def _write(tmp_path, text, name="clinical.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_and_types_the_contract(tmp_path):
    df = itme.io.read_clinical(_write(tmp_path, GOOD))
    assert df.index.name == "patient_id" and list(df.index) == ["P1", "P2", "P3"]
    assert list(df["disease_status"].cat.categories) == ["NDMM", "RMM", "TRMM"]
    assert df.loc["P2", "disease_status"] == "RMM"  # case-insensitive, canonical spelling
    assert df["os_months"].dtype == float and str(df["os_event"].dtype) == "Int64"
    assert np.isnan(df.loc["P3", "age"]) and pd.isna(df.loc["P3", "risk"])
    assert df.attrs["endpoints"] == ["os", "pfs"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_bom_and_utf16_are_read(tmp_path, encoding):
    df = itme.io.read_clinical(_write(tmp_path, GOOD, encoding=encoding))
    assert list(df.index) == ["P1", "P2", "P3"]


def test_windows_1252_semicolons_and_decimal_text(tmp_path):
    text = GOOD.replace(",", ";").replace("standard", "standard élevé")
    with pytest.warns(ItmeInputWarning, match="not UTF-8; read as cp1252"):
        df = itme.io.read_clinical(_write(tmp_path, text, encoding="cp1252"))
    assert df.loc["P1", "risk"] == "standard élevé"
    assert df.attrs["separator"] == ";"


def test_duplicate_and_blank_patient_ids(tmp_path):
    with pytest.raises(ItmeInputError, match=r"duplicated P1 \(lines 2, 3\)"):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("P2,", "P1,")))
    with pytest.raises(ItmeInputError, match=r"line\(s\) 3, column patient_id"):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("P2,", ",")))


def test_unknown_disease_status_names_the_line(tmp_path):
    with pytest.raises(
        ItmeInputError, match=r"expected one of NDMM, RMM, TRMM, found line 3: 'PCL'"
    ):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("rmm", "PCL")))
    df = itme.io.read_clinical(
        _write(tmp_path, GOOD.replace("rmm", "PCL")), disease_levels=["NDMM", "PCL", "TRMM"]
    )
    assert df.loc["P2", "disease_status"] == "PCL"


def test_missing_disease_status_is_warned(tmp_path):
    with pytest.warns(ItmeInputWarning, match="disease_status missing for 1 patient"):
        df = itme.io.read_clinical(_write(tmp_path, GOOD.replace("TRMM", "")))
    assert pd.isna(df.loc["P3", "disease_status"])


def test_survival_columns_are_validated(tmp_path):
    with pytest.raises(ItmeInputError, match="pfs_event next to pfs_months"):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("pfs_event", "pfs_status")))
    with pytest.raises(
        ItmeInputError,
        match=r"column os_event: expected 1 \(event\) or 0 \(censored\), found line 3: '2'",
    ):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("12.4,1", "12.4,2")))
    with pytest.raises(
        ItmeInputError, match=r"column os_months: expected a finite, non-negative number of months"
    ):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("110.3", "-3")))
    with pytest.raises(ItmeInputError, match="columns patient_id and disease_status"):
        itme.io.read_clinical(_write(tmp_path, GOOD.replace("disease_status", "status")))
    with pytest.raises(ItmeInputError, match="no such file"):
        itme.io.read_clinical(tmp_path / "absent.csv")


# --- add_clinical: the one join of the clinical table into obs ---------------------------------


def _samples(patients=("P1", "P1", "P2", "P9")) -> ad.AnnData:
    """Samples × 1 feature; P1 has two samples, P9 has no clinical row."""
    obs = pd.DataFrame(
        {"patient_id": pd.Categorical(list(patients))},
        index=[f"S{i}" for i in range(len(patients))],
    )
    return ad.AnnData(X=np.zeros((len(patients), 1)), obs=obs)


def test_add_clinical_gives_every_sample_its_patients_row(tmp_path):
    clinical = itme.io.read_clinical(_write(tmp_path, GOOD))
    adata = _samples()
    with pytest.warns(ItmeExclusionWarning) as caught:
        itme.io.add_clinical(adata, clinical)
    assert len(caught) == 1  # one warning for both sides
    message = str(caught[0].message)
    assert "1 of 4 sample(s) have no row in the clinical table" in message
    assert "S3 (patient P9)" in message
    assert "1 of 3 patient(s) of the clinical table have no sample: P3" in message
    for sample, patient in zip(adata.obs_names, adata.obs["patient_id"], strict=True):
        for col in clinical.columns:
            got = adata.obs.loc[sample, col]
            want = clinical.loc[patient, col] if patient in clinical.index else np.nan
            assert (pd.isna(got) and pd.isna(want)) or got == want, (sample, col)
    # dtypes: declared categories kept, text categorical of the values present, numbers numeric
    assert list(adata.obs["disease_status"].cat.categories) == ["NDMM", "RMM", "TRMM"]
    assert list(adata.obs["risk"].cat.categories) == ["high", "standard"]
    assert adata.obs["age"].dtype == float and str(adata.obs["os_event"].dtype) == "Int64"
    rec = adata.uns["clinical"]
    assert rec["columns"] == list(clinical.columns) and rec["on"] == "patient_id"
    assert rec["samples_without_row"] == ["S3"] and rec["n_samples_without_row"] == 1
    assert rec["patients_without_sample"] == ["P3"] and rec["n_patients_without_sample"] == 1
    assert list(rec["table"].index) == ["P1", "P2", "P3"]  # P3 kept for other data sets
    assert rec["source"].endswith("clinical.csv")


def test_add_clinical_refuses_to_overwrite_and_copy_leaves_the_input(tmp_path):
    clinical = itme.io.read_clinical(_write(tmp_path, GOOD))
    adata = _samples(("P1", "P2"))
    with pytest.warns(ItmeExclusionWarning, match="have no sample: P3"):
        out = itme.io.add_clinical(adata, clinical, columns=["age"], copy=True)
    assert "age" not in adata.obs and "clinical" not in adata.uns
    assert out.obs["age"].tolist() == [59.0, 66.0] and list(out.obs.columns) == [
        "patient_id",
        "age",
    ]
    with pytest.raises(ItmeStateError, match=r"obs already has column\(s\) age.*overwrite=True"):
        itme.io.add_clinical(out, clinical)
    changed = clinical.assign(age=clinical["age"] + 1)
    with pytest.warns(ItmeExclusionWarning, match="have no sample: P3"):
        itme.io.add_clinical(out, changed, columns=["age"], overwrite=True)
    assert out.obs["age"].tolist() == [60.0, 67.0]


def test_add_clinical_accepts_repeated_rows_only_when_they_agree():
    adata = _samples(("P1", "P2", "P3"))
    per_sample = pd.DataFrame(
        {"patient_id": ["P1", "P1", "P2"], "cluster": ["1", "1", "2"], "n": [3, 3, 10]}
    )
    with pytest.warns(ItmeExclusionWarning, match=r"1 of 3 sample\(s\).*S2 \(patient P3\)"):
        itme.io.add_clinical(adata, per_sample)
    assert adata.obs["cluster"].tolist()[:2] == ["1", "2"] and pd.isna(adata.obs["cluster"].iloc[2])
    assert str(adata.obs["n"].dtype) == "Int64"  # an integer column with a gap stays integer
    bad = per_sample.assign(cluster=["1", "3", "2"])
    with pytest.raises(
        ItmeInputError,
        match=r"column\(s\) cluster: expected one value per "
        r"patient_id, found rows that differ for P1",
    ):
        itme.io.add_clinical(_samples(("P1", "P2")), bad)


def test_add_clinical_text_in_natural_order_and_long_lists_summarised():
    ids = [f"P{i:02d}" for i in range(30)]
    adata = _samples(ids)
    table = pd.DataFrame({"patient_id": ids[:2] + [f"X{i}" for i in range(25)]})
    table["stage"] = ["10", "2"] + ["x"] * 25
    with pytest.warns(
        ItmeExclusionWarning, match=r"28 of 30 sample\(s\).*\.\.\. and 23 more"
    ) as rec:
        itme.io.add_clinical(adata, table)
    items = rec[0].message.items  # every id, the message names five of each side
    assert len(items) == 28 + 25 and items[0] == "S2 (patient P02)" and items[-1] == "X24"
    assert list(adata.obs["stage"].cat.categories) == ["2", "10"]  # only values present


def test_add_clinical_bad_inputs():
    adata = _samples(("P1",))
    with pytest.raises(ItmeInputError, match="expected a patient_id column"):
        itme.io.add_clinical(adata, pd.DataFrame({"id": ["P1"], "age": [3]}))
    with pytest.raises(ItmeParameterError, match=r"parameter 'columns'.*\['weight'\]"):
        itme.io.add_clinical(adata, pd.DataFrame({"patient_id": ["P1"]}), columns=["weight"])
    with pytest.raises(ItmeStateError, match=r"obs has no 'patient_id' column"):
        itme.io.add_clinical(ad.AnnData(np.zeros((1, 1))), pd.DataFrame({"patient_id": ["P1"]}))
    with pytest.raises(ItmeParameterError, match="parameter 'clinical'"):
        itme.io.add_clinical(adata, {"patient_id": ["P1"]})
