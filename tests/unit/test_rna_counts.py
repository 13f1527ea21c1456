"""itme.rna.read_counts: the counts contract of DESIGN.md §2 and data-model.md §3."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
)
from itme.rna import read_counts

COUNTS = """gene_id\tgene_name\tR1\tR2\tR3
ENSG00000000003\tTSPAN6\t679\t448\t873
ENSG00000000005\t\t0\t0\t1
ENSG00000000419\tDPM1\t467\t515\t621
ENSG00000000457\tSCYL3\t260\t211\t263
"""


def _write(tmp_path, text, name="counts.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tsv_with_gene_name_matched_through_rnaseq_id(tmp_path):
    path = _write(tmp_path, COUNTS)
    clinical = pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3", "P4"],
            "rnaseq_id": ["R2", "R1", "R3", None],
            "disease_status": ["NDMM", "RMM", "TRMM", "NDMM"],
            "age": [61, 70, 55, 80],
            "note": ["a", None, "c", "d"],
        }
    )
    adata = read_counts(path, clinical=clinical)
    assert adata.shape == (3, 4)
    assert adata.X.dtype == np.int64
    np.testing.assert_array_equal(adata.X[:, 0], [679, 448, 873])
    assert list(adata.var_names) == [
        "ENSG00000000003",
        "ENSG00000000005",
        "ENSG00000000419",
        "ENSG00000000457",
    ]
    # a missing symbol falls back to the id (data-model.md §3)
    assert list(adata.var["gene_name"]) == ["TSPAN6", "ENSG00000000005", "DPM1", "SCYL3"]
    assert list(adata.obs["patient_id"]) == ["P2", "P1", "P3"]
    assert list(adata.obs["disease_status"]) == ["RMM", "NDMM", "TRMM"]
    assert list(adata.obs["age"]) == [70, 61, 55]
    assert isinstance(adata.obs["disease_status"].dtype, pd.CategoricalDtype)
    assert adata.uns["read_counts"]["matched_by"] == "rnaseq_id"
    assert adata.uns["read_counts"]["n_unmatched_samples"] == 0
    assert adata.obs["note"].isna().tolist() == [True, False, False]
    adata.write_h5ad(tmp_path / "rna.h5ad")
    back = ad.read_h5ad(tmp_path / "rna.h5ad")
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    pd.testing.assert_frame_equal(back.var, adata.var)
    assert back.uns["read_counts"] == adata.uns["read_counts"]


def test_direct_patient_match_reports_unmatched_samples(tmp_path):
    path = _write(tmp_path, "gene_id\tP1\tP2\tX9\nG1\t5\t6\t7\nG2\t1\t0\t3\n")
    clinical = pd.DataFrame({"patient_id": ["P1", "P2", "P3"]})
    with pytest.warns(ItmeExclusionWarning, match=r"1 of 3 RNA-seq sample.*X9"):
        adata = read_counts(path, clinical=clinical)
    assert list(adata.obs_names) == ["P1", "P2"]
    assert adata.uns["read_counts"]["unmatched_samples"] == "X9"
    assert adata.uns["read_counts"]["matched_by"] == "patient_id"


def test_no_sample_matches_the_clinical_table(tmp_path):
    path = _write(tmp_path, "gene_id\tA\tB\nG1\t5\t6\n")
    with pytest.raises(ItmeInputError, match="no match"):
        read_counts(path, clinical=pd.DataFrame({"patient_id": ["P1"]}))


def test_without_clinical_sample_ids_are_patient_ids(tmp_path):
    adata = read_counts(_write(tmp_path, COUNTS))
    assert list(adata.obs["patient_id"]) == ["R1", "R2", "R3"]
    assert adata.uns["read_counts"]["matched_by"] == "none"


def test_non_integer_count_names_gene_sample_and_line(tmp_path):
    text = COUNTS.replace("467\t515", "467\t515.5")
    with pytest.raises(
        ItmeInputError, match=r"gene ENSG00000000419 \(line 4\), sample R2.*non-integer.*515\.5"
    ):
        read_counts(_write(tmp_path, text))


def test_negative_count_names_the_first_offender_in_file_order(tmp_path):
    text = COUNTS.replace("260\t211", "260\t-2").replace("679\t448", "-679\t448")
    with pytest.raises(
        ItmeInputError, match=r"gene ENSG00000000003 \(line 2\), sample R1.*negative.*2 such"
    ):
        read_counts(_write(tmp_path, text))


def test_non_numeric_value_is_quoted(tmp_path):
    text = COUNTS.replace("448", "NA?")
    with pytest.raises(ItmeInputError, match=r"sample R2.*'NA\?'"):
        read_counts(_write(tmp_path, text))


def test_numbers_parse_as_pandas_does():
    from itme.rna._counts import _numbers

    cells = pd.DataFrame({"a": ["1", "2.5", "1e3"], "b": ["0", "7", "10"]})
    np.testing.assert_array_equal(_numbers(cells), [[1, 0], [2.5, 7], [1000, 10]])
    # numpy alone would read "1_000" as 1000; pandas (and so itme) does not
    odd = pd.DataFrame({"a": ["1_000", "", "x"], "b": ["3", "4", "5"]})
    np.testing.assert_array_equal(np.isnan(_numbers(odd)[:, 0]), [True, True, True])


def test_python_digit_grouping_is_not_a_count(tmp_path):
    text = COUNTS.replace("448", "4_48")
    with pytest.raises(ItmeInputError, match=r"sample R2.*'4_48'"):
        read_counts(_write(tmp_path, text))


def test_round_counts_accepts_estimated_counts(tmp_path):
    text = COUNTS.replace("467\t515", "467.4\t514.6")
    adata = read_counts(_write(tmp_path, text), round_counts=True)
    np.testing.assert_array_equal(adata[:, "ENSG00000000419"].X.ravel(), [467, 515, 621])


def test_sample_with_zero_counts_is_an_error(tmp_path):
    text = "gene_id\tS1\tS2\tEMPTY\nG1\t5\t6\t0\nG2\t1\t0\t0\n"
    with pytest.raises(ItmeInputError, match="zero counts in every gene.*EMPTY"):
        read_counts(_write(tmp_path, text))


def test_duplicate_gene_ids(tmp_path):
    text = "symbol\tS1\tS2\nA\t1\t2\nB\t3\t4\nA\t10\t20\n"
    path = _write(tmp_path, text)
    with pytest.raises(ItmeInputError, match=r"1 gene id\(s\) occur more than once.*A"):
        read_counts(path)
    summed = read_counts(path, duplicates="sum")
    np.testing.assert_array_equal(summed[:, "A"].X.ravel(), [11, 22])
    assert summed.uns["read_counts"]["n_duplicate_rows"] == 1
    with pytest.warns(ItmeExclusionWarning, match="dropped 1 row"):
        first = read_counts(path, duplicates="first")
    np.testing.assert_array_equal(first[:, "A"].X.ravel(), [1, 2])
    with pytest.raises(ItmeParameterError, match="duplicates"):
        read_counts(path, duplicates="mean")


def test_duplicate_sample_columns_are_an_error(tmp_path):
    with pytest.raises(ItmeInputError, match="duplicated column.*S1"):
        read_counts(_write(tmp_path, "gene_id\tS1\tS1\nG\t1\t2\n"))


def test_csv_gzip_and_h5ad_round_trip(tmp_path):
    csv = tmp_path / "counts.csv.gz"
    with gzip.open(csv, "wt") as fh:
        fh.write(COUNTS.replace("\t", ","))
    adata = read_counts(csv)
    assert adata.shape == (3, 4)
    h5 = tmp_path / "rna.h5ad"
    adata.write_h5ad(h5)
    back = ad.read_h5ad(h5)
    assert back.uns["read_counts"]["sha256"] == adata.uns["read_counts"]["sha256"]
    assert back.uns["read_counts"]["unmatched_samples"] == ""
    again = read_counts(h5)
    np.testing.assert_array_equal(again.X, adata.X)
    assert list(again.var["gene_name"]) == list(adata.var["gene_name"])
    assert list(again.obs["patient_id"]) == ["R1", "R2", "R3"]


def test_missing_file(tmp_path):
    with pytest.raises(ItmeInputError, match="no such file"):
        read_counts(tmp_path / "absent.tsv")
    broken = tmp_path / "broken.h5ad"
    broken.write_text("not an HDF5 file")
    with pytest.raises(ItmeInputError, match=r"broken\.h5ad: expected an AnnData \.h5ad file"):
        read_counts(broken)


def test_a_file_read_twice_is_parsed_once_and_a_changed_file_again(tmp_path, monkeypatch):
    import os

    import itme.rna._counts as counts_module

    parses = []
    parse = counts_module._read_table
    monkeypatch.setattr(counts_module, "_read_table", lambda *a: parses.append(a[0]) or parse(*a))
    path = tmp_path / "counts.tsv"
    path.write_bytes(COUNTS.replace("TSPAN6", "TSPAN\u00e96").encode("cp1252"))
    for _ in range(2):  # the config check, then the rnaseq stage: the warning on each read
        with pytest.warns(ItmeInputWarning, match="read as cp1252") as record:
            adata = read_counts(path)
        assert len(record) == 1
    assert len(parses) == 1
    assert adata.var["gene_name"].iloc[0] == "TSPAN\u00e96"
    adata.X[0, 0] = -1  # the caller's copy: the kept parse is not changed
    with pytest.warns(ItmeInputWarning, match="read as cp1252"):
        assert read_counts(path).X[0, 0] == 679
    assert len(parses) == 1
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b"\t679\t", b"\t680\t"))  # same size, and
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time: a changed file all the same
    assert path.stat().st_size == st.st_size
    with pytest.warns(ItmeInputWarning, match="read as cp1252"):
        assert read_counts(path).X[0, 0] == 680
    assert len(parses) == 2
