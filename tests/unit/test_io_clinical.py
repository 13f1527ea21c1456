"""io.read_clinical: the clinical.csv contract (DESIGN.md §2) and tolerant text reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeInputError, ItmeInputWarning

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
