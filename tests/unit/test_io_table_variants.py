"""Variants of every input table (sample sheet, panel, clinical, cytokines, counts): each one
is read, read with a named warning, or refused with an ItmeInputError naming the problem.

The inputs that used to be accepted without a word (issue 11) are decided here, one test
each; docs/input-formats.md lists the decisions.
"""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import ItmeError, ItmeExclusionWarning, ItmeInputError, ItmeInputWarning
from itme.rna import read_counts

# the cohorts of these tests drop their Time channel (unpanelled="drop"), which is warned
pytestmark = pytest.mark.filterwarnings(
    "ignore:left out 1 channel:itme.errors.ItmeExclusionWarning"
)

SHEET = "file_name,sample_id,patient_id,condition\ns0.fcs,S0,P0,A\ns1.fcs,S1,P1,B\ns2.fcs,S2,P2,A\n"
PANEL = "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\nNd145Di,CD4,state\n"
CHANNELS = ["Time", "Y89Di", "Nd142Di", "Nd145Di"]
CLINICAL = (
    "patient_id,disease_status,age,sex,os_months,os_event\n"
    "P1,NDMM,61,F,12.5,1\nP2,RMM,70,M,30.1,0\nP3,TRMM,55,F,8.0,1\nP4,NDMM,48,M,44.0,0\n"
)
CYTOKINES = "patient_id,IL-6,IL-10,TNF\nP1,4.5,1.2,10\nP2,3.1,OOR <,12\nP3,8.0,2.2,*30.5\n"
COUNTS = "gene_id\tgene_name\tR1\tR2\nG1\tA\t10\t20\nG2\tB\t0\t5\nG3\t\t7\t1\n"


def _write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _no_itme_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, itme.errors.ItmeWarning)]


# --- the generic table reader ------------------------------------------------------------------

ENCODED = [
    ("utf-8-sig", None),
    ("utf-16", None),  # Excel "Unicode text", with BOM
    ("utf-16-le", None),  # the same without a BOM
    ("cp1252", "not UTF-8; read as cp1252"),
]


@pytest.mark.parametrize(("encoding", "warning"), ENCODED)
def test_encodings_read_the_same_cells(tmp_path, encoding, warning):
    text = "patient_id;note\nP1;café crème\nP2;naïve\n"
    path = _write(tmp_path, "t.csv", text.encode(encoding))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        table = itme.io.read_table(path)
    assert list(table["note"]) == ["café crème", "naïve"]
    assert table.attrs["separator"] == ";"
    messages = _no_itme_warnings(record)
    assert (warning is None and not messages) or any(warning in m for m in messages)


@pytest.mark.parametrize(
    ("content", "cells", "lines"),
    [
        ("a,b\r\n1,2\r\n3,4\r\n", [["1", "2"], ["3", "4"]], [2, 3]),  # Windows line ends
        ("a,b\r1,2\r3,4\r", [["1", "2"], ["3", "4"]], [2, 3]),  # old Mac line ends
        ("\na,b\n\n1,2\n,\n3,4\n\n", [["1", "2"], ["3", "4"]], [4, 6]),  # blank rows
        ("a,b,\n1,2,\n3,4,\n", [["1", "2"], ["3", "4"]], [2, 3]),  # trailing separator
        ("a\tb\n 1 \t2\n3\t 4\n", [["1", "2"], ["3", "4"]], [2, 3]),  # tabs, padded cells
        ('a,b\n"1,5",2\n3,"x""y"\n', [["1,5", "2"], ["3", 'x"y']], [2, 3]),  # quoting
    ],
)
def test_layouts_that_are_read(tmp_path, content, cells, lines):
    table = itme.io.read_table(_write(tmp_path, "t.csv", content))
    assert table.values.tolist() == cells
    assert list(table.index) == lines  # file lines, for messages


def test_gzip_tables_are_read(tmp_path):
    path = _write(tmp_path, "t.csv.gz", gzip.compress(b"a,b\n1,2\n"))
    assert itme.io.read_table(path).values.tolist() == [["1", "2"]]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "found an empty file"),
        (b"\n \n\n", "found an empty file"),
        (b"a,b\n1,2\n3\n", r"line\(s\) 3: expected 2 fields as in the header.*found 1 on line 3"),
        (b"a,b\n1,2,3\n", r"line\(s\) 2: expected 2 fields.*found 3 on line 2"),
        (b"a,b,a\n1,2,3\n", r"unique column names, found duplicated column\(s\) 'a'"),
        (b"PK\x03\x04\x14\x00\x06\x00", r"binary content \(a NUL byte at offset 5\).*xlsx"),
        (b"\x1f\x8b\x08\x00broken", "a broken gzip file"),
        (b'a,b\n"1,2\n', "rectangular"),
        (b"\xff\xfea\x00,\x00b", "UTF-16 file broken"),
    ],
)
def test_broken_tables_are_input_errors(tmp_path, content, match):
    with pytest.raises(ItmeInputError, match=match):
        itme.io.read_table(_write(tmp_path, "t.csv", content))


# --- sample sheets and cohorts ------------------------------------------------------------------


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(3):
        x = rng.gamma(2.0, 30.0, size=(20, 4)).astype(np.float32)
        fcs_factory.write(tmp_path / f"s{k}.fcs", x, CHANNELS, labels=["", "CD45", "CD19", "CD4"])
    return tmp_path


def _read_cohort(folder, sheet=SHEET, panel=PANEL, **kwargs):
    (folder / "samples.csv").write_text(sheet)
    (folder / "panel.csv").write_text(panel)
    return itme.io.read_cohort(folder / "samples.csv", folder / "panel.csv", **kwargs)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            ("S1,P1", "NaN,P1"),
            r"column sample_id is empty or a missing-value token \(NaN\) on lines 3",
        ),
        (
            ("S1,P1", "S1,NA"),
            r"column patient_id is empty or a missing-value token \(NA\) on lines 3",
        ),
        (("s2.fcs,", ","), "column file_name is empty on lines 4"),
        (("S2,P2", "S0,P2"), "duplicate sample_id: 'S0' on lines 2, 4"),
        (("s2.fcs", "s0.fcs"), "duplicate file_name: 's0.fcs' on lines 2, 4"),
        (("patient_id", "patient"), r"missing required column\(s\) patient_id"),
        (("S2,P2,A", "S2,P2"), r"line\(s\) 4: expected 4 fields"),
    ],
)
def test_sample_sheet_errors(cohort, edit, match):
    with pytest.raises(ItmeInputError, match=match):
        _read_cohort(cohort, SHEET.replace(*edit))


def test_the_same_file_under_two_sample_ids_is_an_error(cohort):
    """Issue 11: ``./s0.fcs`` and ``s0.fcs`` are one file; two samples cannot share it."""
    sheet = SHEET.replace("s1.fcs,S1", "./s0.fcs,S1")
    with pytest.raises(
        ItmeInputError,
        match=r"same FCS file is listed for several samples: s0\.fcs on lines 2 \(S0\), 3 \(S1\)",
    ):
        _read_cohort(cohort, sheet)


def test_identical_copies_under_two_names_are_warned(cohort):
    (cohort / "s1.fcs").write_bytes((cohort / "s0.fcs").read_bytes())
    with pytest.warns(
        ItmeInputWarning, match=r"identical contents.*s0\.fcs \(S0\) = s1\.fcs \(S1\)"
    ):
        adata = _read_cohort(cohort, unpanelled="drop")
    assert adata.n_obs == 60  # read as listed: the warning says what to check


def test_repeated_antigen_is_warned_and_channels_name_the_vars(cohort):
    panel = PANEL.replace("Nd142Di,CD19", "Nd142Di,CD45")
    with pytest.warns(
        ItmeInputWarning, match=r"antigen\(s\) on several channels: CD45 \(Y89Di, Nd142Di\)"
    ):
        adata = _read_cohort(cohort, panel=panel, unpanelled="drop")
    assert list(adata.var_names) == ["Y89Di", "Nd142Di", "Nd145Di"]
    assert list(adata.var["antigen"]) == ["CD45", "CD45", "CD4"]


def test_type_marker_without_antigen_is_warned(cohort):
    panel = PANEL.replace("Nd142Di,CD19", "Nd142Di,")
    with pytest.warns(
        ItmeInputWarning, match=r"type/state channel\(s\) without an antigen: Nd142Di"
    ):
        _read_cohort(cohort, panel=panel, unpanelled="drop")


def test_channels_missing_from_the_panel_are_warned_kept_or_dropped(cohort):
    """Issue 11: a file channel without a panel row is never left out silently."""
    with pytest.warns(ItmeInputWarning, match=r"1 channel\(s\) present in every file.*Time"):
        kept = _read_cohort(cohort)
    assert "Time" in kept.var_names and not kept.var.loc["Time", "in_panel"]
    with pytest.warns(ItmeExclusionWarning, match=r"left out 1 channel\(s\).*Time"):
        dropped = _read_cohort(cohort, unpanelled="drop")
    assert dropped.uns["io"]["dropped_channels"] == ["Time"]


def test_inconsistent_fcs_file_in_a_cohort_is_read_with_a_warning(cohort):
    """HEADER and TEXT disagree on DATA offsets: TEXT fits $TOT × $PAR, so the file is read."""
    blob = bytearray((cohort / "s1.fcs").read_bytes())
    blob[26:34] = b"      99"  # HEADER DATA start
    (cohort / "s1.fcs").write_bytes(bytes(blob))
    with pytest.warns(
        ItmeInputWarning,
        match=r"1 FCS file\(s\) are inconsistent.*s1\.fcs: HEADER and TEXT disagree",
    ):
        adata = _read_cohort(cohort, unpanelled="drop")
    files = adata.uns["io"]["files"].set_index("sample_id")
    assert "disagree" in files.loc["S1", "notes"]
    expected = itme.io.read_fcs(cohort / "s0.fcs").X[:, 1:]
    np.testing.assert_array_equal(adata[adata.obs["sample_id"] == "S0"].X, expected)


def test_every_unreadable_fcs_file_is_named_at_once(cohort):
    for name in ("s0.fcs", "s2.fcs"):
        blob = (cohort / name).read_bytes()
        (cohort / name).write_bytes(blob[:200])  # cut inside TEXT
    with pytest.raises(
        ItmeInputError,
        match=r"s0\.fcs: the TEXT segment runs past.*s2\.fcs: the TEXT segment runs past",
    ):
        _read_cohort(cohort)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("state", "lineage"), "'lineage' is not one of type, state, qc, none"),
        (("Nd145Di,CD4", ",CD4"), "line 4: fcs_colname is empty"),
        (("Nd145Di,CD4", "Y89Di,CD4"), "duplicate fcs_colname: 'Y89Di' on lines 2, 4"),
        (("marker_class", "class"), r"missing required column\(s\) marker_class"),
    ],
)
def test_panel_errors(cohort, edit, match):
    with pytest.raises(ItmeInputError, match=match):
        _read_cohort(cohort, panel=PANEL.replace(*edit))


# --- clinical -----------------------------------------------------------------------------------


def test_infinite_survival_time_is_an_error(tmp_path):
    """Issue 11: ``inf`` months parsed as a number and was accepted."""
    path = _write(tmp_path, "c.csv", CLINICAL.replace("30.1,0", "inf,0"))
    with pytest.raises(
        ItmeInputError, match=r"os_months: expected a finite, non-negative.*line 3: 'inf'"
    ):
        itme.io.read_clinical(path)


def test_event_without_time_is_warned(tmp_path):
    """Issue 11: an event with no time (or a time with no status) cannot enter a survival
    analysis; it is read (other analyses use the patient) and warned about."""
    text = CLINICAL.replace("12.5,1", "NA,1").replace("44.0,0", "44.0,")
    with pytest.warns(
        ItmeInputWarning, match=r"2 patient\(s\) have only one of os_months and os_event \(P1, P4\)"
    ):
        df = itme.io.read_clinical(_write(tmp_path, "c.csv", text))
    assert np.isnan(df.loc["P1", "os_months"]) and df.loc["P1", "os_event"] == 1
    assert pd.isna(df.loc["P4", "os_event"])


def test_text_in_a_numeric_column_is_warned(tmp_path):
    """Issue 11: one 'unknown' in an age column silently made the whole column text."""
    text = CLINICAL.replace("NDMM,48", "NDMM,unknown")
    with pytest.warns(
        ItmeInputWarning,
        match=r"column age: 3 number\(s\) but 1 text value\(s\) \(line 5: 'unknown'\)",
    ):
        df = itme.io.read_clinical(_write(tmp_path, "c.csv", text))
    assert df["age"].dtype == object  # kept as written: the warning says how to fix it


def test_text_columns_and_clean_numbers_are_not_warned(tmp_path):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        df = itme.io.read_clinical(_write(tmp_path, "c.csv", CLINICAL))
    assert not _no_itme_warnings(record)
    assert df["age"].dtype == float and df["sex"].tolist() == ["F", "M", "F", "M"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("30.1,0", "-1,0"), r"os_months: expected a finite, non-negative"),
        (("12.5,1", "12.5,yes"), r"os_event: expected 1 \(event\) or 0 \(censored\)"),
        (("P2,RMM", "P1,RMM"), "duplicated P1"),
        (("P3,TRMM,55,F,8.0,1", "P3,TRMM,55,F"), r"line\(s\) 4: expected 6 fields"),
        (("os_event", "os_status"), "os_event next to os_months"),
    ],
)
def test_clinical_errors(tmp_path, edit, match):
    with pytest.raises(ItmeInputError, match=match):
        itme.io.read_clinical(_write(tmp_path, "c.csv", CLINICAL.replace(*edit)))


# --- cytokines ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*OOR <:itme.errors.ItmeInputWarning")
def test_negative_and_infinite_concentrations_are_invalid(tmp_path):
    """Issue 11: a negative value would rank below the 'OOR <' substitutes, ``inf`` broke the
    min/max substitutions; both are now invalid cells, left missing and warned."""
    text = CYTOKINES.replace("P1,4.5", "P1,-2.0").replace("P3,8.0,2.2", "P3,inf,2.2")
    with pytest.warns(
        ItmeInputWarning,
        match=r"2 unreadable, negative or infinite cell\(s\).*P1/IL-6: '-2.0'.*P3/IL-6: 'inf'",
    ):
        cyt = itme.io.read_cytokines(_write(tmp_path, "c.csv", text))
    status = cyt.uns["luminex"]["status"]
    assert status.loc["P1", "IL-6"] == "invalid" and status.loc["P3", "IL-6"] == "invalid"
    values = cyt.to_df()
    assert np.isnan(values.loc["P1", "IL-6"]) and values.loc["P2", "IL-6"] == 3.1
    # the OOR < of IL-10 is half the lowest *valid* IL-10
    assert values.loc["P2", "IL-10"] == pytest.approx(0.6)


@pytest.mark.filterwarnings("ignore:.*OOR <:itme.errors.ItmeInputWarning")
def test_duplicated_analytes(tmp_path):
    """Issue 11: pandas renamed a repeated column to 'IL-6.1'; now an error. Names that differ
    only in case or punctuation are read but warned."""
    with pytest.raises(ItmeInputError, match=r"duplicated column\(s\) 'IL-6'"):
        itme.io.read_cytokines(_write(tmp_path, "c.csv", CYTOKINES.replace("TNF", "IL-6")))
    with pytest.warns(ItmeInputWarning, match="differ only in case or punctuation: IL-6 / il6"):
        cyt = itme.io.read_cytokines(_write(tmp_path, "c.csv", CYTOKINES.replace("TNF", "il6")))
    assert list(cyt.var_names) == ["IL-6", "IL-10", "il6"]


# --- counts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "found an empty file"),
        (b"gene_id\tR1\tR2\n", "one row per gene, found a header only"),
        (COUNTS.replace("G2\tB\t0\t5", "G2\tB\t0").encode(), r"line\(s\) 3: expected 4 fields"),
        (
            COUNTS.replace("G2\tB\t0\t5", "G2\tB\t0\t5\t9").encode(),
            r"line\(s\) 3: expected 4 fields",
        ),
        (b"\x00\x01\x02\x03", "binary content"),
        (
            COUNTS.replace("G2\t", "\t").encode(),
            r"gene id on every row, found an empty id on line\(s\) 3",
        ),
        (COUNTS.replace("R2", "R1").encode(), r"duplicated column\(s\) 'R1'"),
    ],
)
def test_counts_errors(tmp_path, content, match):
    """Issue 11: these raised pandas' EmptyDataError / ParserError before."""
    with pytest.raises(ItmeInputError, match=match):
        read_counts(_write(tmp_path, "counts.tsv", content))


@pytest.mark.parametrize(
    ("encoding", "sep", "name"),
    [
        ("utf-8", "\t", "counts.tsv"),
        ("utf-8-sig", ",", "counts.csv"),
        ("utf-16", "\t", "counts.txt"),
        ("latin-1", ";", "counts.csv"),
    ],
)
def test_counts_in_any_encoding_and_separator(tmp_path, encoding, sep, name):
    """Issue 11: Latin-1 and UTF-16 counts raised UnicodeDecodeError; the separator is taken
    from the header (a ';' file named .csv used to be split on ',')."""
    text = COUNTS.replace("\t", sep).replace("A", "Ä")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeInputWarning)  # Latin-1 is warned about
        adata = read_counts(_write(tmp_path, name, text.encode(encoding)))
    np.testing.assert_array_equal(adata.X, [[10, 0, 7], [20, 5, 1]])
    assert list(adata.var["gene_name"]) == ["Ä", "B", "G3"]


def test_counts_blank_line_does_not_shift_line_numbers(tmp_path):
    text = COUNTS.replace("G2\tB\t0\t5\n", "G2\tB\t0\t5\n\n").replace("7\t1", "7\t-1")
    with pytest.raises(ItmeInputError, match=r"gene G3 \(line 5\), sample R2.*negative"):
        read_counts(_write(tmp_path, "counts.tsv", text))


def test_every_table_error_is_an_itme_error(tmp_path):
    """The readers' exceptions are ItmeErrors (ValueErrors) for a binary file of each kind."""
    path = _write(tmp_path, "x.csv", b"\x00garbage\xff")
    for reader in (
        itme.io.read_samples,
        itme.io.read_panel,
        itme.io.read_clinical,
        itme.io.read_cytokines,
        read_counts,
    ):
        with pytest.raises(ItmeError, match="binary content"):
            reader(path)
