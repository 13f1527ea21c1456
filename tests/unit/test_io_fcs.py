"""read_fcs / write_fcs on hand-built FCS files (tests/helpers/fcs_factory.py)."""

from __future__ import annotations

import hashlib
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError
from itme.io._fcs_events import _is_image, read_events
from itme.io._fcs_format import parse_fcs

NAMES = ["Time", "Y89Di", "Nd142Di", "Ir191Di"]
LABELS = ["", "CD45", "CD19", "DNA1"]


@pytest.fixture
def values() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.gamma(2.0, 50.0, size=(300, 4)).astype(np.float32)


@pytest.mark.parametrize("version", ["2.0", "3.0", "3.1"])
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("datatype", ["F", "D"])
def test_float_versions_and_byte_orders(tmp_path, values, version, big_endian, datatype):
    path = fcs_factory.write(
        tmp_path / "a.fcs",
        values,
        NAMES,
        labels=LABELS,
        version=version,
        big_endian=big_endian,
        datatype=datatype,
    )
    adata = itme.io.read_fcs(path)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, values)
    assert list(adata.var_names) == NAMES
    assert list(adata.var["antigen"]) == LABELS
    assert adata.uns["fcs"]["version"] == version
    assert adata.uns["fcs"]["keywords"]["$CYT"] == "TEST-CYTOF"
    assert set(adata.var["marker_class"].cat.categories) == {"type", "state", "qc", "none"}


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize(
    "bits", [[8, 8, 8, 8], [16, 16, 16, 16], [32, 32, 32, 32], [24, 24, 24, 24], [16, 8, 32, 24]]
)
def test_integer_data_any_width(tmp_path, big_endian, bits):
    rng = np.random.default_rng(1)
    data = np.stack([rng.integers(0, 2 ** min(b, 20), 200) for b in bits], axis=1)
    path = fcs_factory.write(
        tmp_path / "i.fcs", data, NAMES, datatype="I", bits=bits, big_endian=big_endian
    )
    adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, data.astype(np.float32))


def test_integer_data_is_masked_by_range(tmp_path):
    """FCS 3.1 §3.3.2: bits above the next power of two of $PnR are ignored."""
    data = np.array([[1024 + 5, 3], [2048 + 1023, 1024]])
    path = fcs_factory.write(
        tmp_path / "m.fcs", data, ["A", "B"], datatype="I", bits=[16, 16], ranges=[1024, 1000]
    )
    with pytest.warns(ItmeInputWarning, match=r"masked to its bit width .* A \(2\), B \(1\)"):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, [[5, 3], [1023, 0]])


def test_missing_pns_gives_empty_antigens(tmp_path, values):
    path = fcs_factory.write(tmp_path / "a.fcs", values, NAMES, labels=None)
    adata = itme.io.read_fcs(path)
    assert list(adata.var["antigen"]) == ["", "", "", ""]


def test_duplicated_names_are_made_unique_with_a_warning(tmp_path, values):
    names = ["FSC", "SSC", "FSC", "FSC"]
    path = fcs_factory.write(tmp_path / "d.fcs", values, names)
    with pytest.warns(ItmeInputWarning, match=r"duplicated channel names \(\$PnN\) FSC"):
        adata = itme.io.read_fcs(path)
    assert list(adata.var_names) == ["FSC", "SSC", "FSC-1", "FSC-2"]
    assert list(adata.var["channel"]) == names


def test_off_by_one_enddata_is_read_and_noted(tmp_path, values):
    path = fcs_factory.write(tmp_path / "o.fcs", values, NAMES, off_by_one=True)
    adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)
    assert any("$ENDDATA" in n for n in adata.uns["fcs"]["notes"])


def test_blank_header_offsets_use_text(tmp_path, values):
    path = fcs_factory.write(tmp_path / "b.fcs", values, NAMES, blank_header_offsets=True)
    adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)
    assert any("blank" in n for n in adata.uns["fcs"]["notes"])


def test_several_data_sets(tmp_path, values):
    path = fcs_factory.write_multi(
        tmp_path / "m.fcs", [(values[:10], NAMES), (values[10:50], NAMES), (values[50:], NAMES)]
    )
    first = itme.io.read_fcs(path)
    assert first.n_obs == 10 and first.uns["fcs"]["n_data_sets"] == 3
    second = itme.io.read_fcs(path, data_set=1)
    np.testing.assert_array_equal(second.X, values[10:50])
    np.testing.assert_array_equal(itme.io.read_fcs(path, data_set=2).X, values[50:])
    with pytest.raises(ItmeParameterError, match="data_set"):
        itme.io.read_fcs(path, data_set=3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ItmeInputError, match=r"nope\.fcs: FCS file not found"):
        itme.io.read_fcs(tmp_path / "nope.fcs")


def test_not_an_fcs_file(tmp_path):
    path = tmp_path / "x.fcs"
    path.write_bytes(b"this is a text file, not FCS" * 4)
    with pytest.raises(ItmeInputError, match=r"x\.fcs: not an FCS file.*found b'this i'"):
        itme.io.read_fcs(path)


def test_truncated_data_is_an_error_naming_the_file(tmp_path, values):
    blob = fcs_factory.fcs_bytes(values, NAMES)
    path = tmp_path / "t.fcs"
    path.write_bytes(blob[: len(blob) - 400])
    with pytest.raises(ItmeInputError, match=r"t\.fcs: the DATA segment cannot be read.*truncated"):
        itme.io.read_fcs(path)


def test_ascii_data_is_refused_clearly(tmp_path, values):
    blob = fcs_factory.fcs_bytes(values, NAMES).replace(b"$DATATYPE/F/", b"$DATATYPE/A/")
    path = tmp_path / "a.fcs"
    path.write_bytes(blob)
    with pytest.raises(ItmeInputError, match=r"a\.fcs: unsupported \$DATATYPE: found A"):
        itme.io.read_fcs(path)


def test_write_read_roundtrip_with_cluster_columns(tmp_path, values):
    adata = itme.io.read_fcs(fcs_factory.write(tmp_path / "in.fcs", values, NAMES, labels=LABELS))
    adata.obs["metacluster"] = pd.Categorical((np.arange(adata.n_obs) % 7 + 1).astype(str))
    adata.obs["subset"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "B", "T"))
    adata.obs["score"] = np.linspace(0, 1, adata.n_obs)
    out = itme.io.write_fcs(
        adata, tmp_path / "out.fcs", obs_columns=["metacluster", "subset", "score"]
    )
    back = itme.io.read_fcs(out)
    assert back.uns["fcs"]["version"] == "3.1"
    np.testing.assert_array_equal(back.X[:, :4], values)
    np.testing.assert_array_equal(back.X[:, 4], adata.obs["metacluster"].astype(int))
    assert back.uns["fcs"]["keywords"]["ITME_SUBSET_LEVELS"] == "B,T"
    np.testing.assert_array_equal(back.X[:, 5], adata.obs["subset"].cat.codes + 1)
    np.testing.assert_allclose(back.X[:, 6], adata.obs["score"], rtol=1e-6)
    assert list(back.var["antigen"][:4]) == LABELS
    assert list(back.var_names[4:]) == ["metacluster", "subset", "score"]


def test_written_file_is_read_by_flowio_and_fcsparser(tmp_path, values, fcsparser_cytometers):
    import fcsparser
    import flowio

    adata = ad.AnnData(values, var=pd.DataFrame({"antigen": LABELS}, index=NAMES))
    path = itme.io.write_fcs(adata, tmp_path / "w.fcs")
    flow = flowio.FlowData(str(path))
    np.testing.assert_array_equal(np.frombuffer(flow.events, np.float32).reshape(-1, 4), values)
    meta, frame = fcsparser.parse(str(path))
    np.testing.assert_array_equal(frame.to_numpy(np.float32), values)
    assert meta["$P2S"] == "CD45"


def test_write_fcs_errors(tmp_path, values):
    adata = ad.AnnData(values)
    with pytest.raises(ItmeParameterError, match="obs_columns"):
        itme.io.write_fcs(adata, tmp_path / "w.fcs", obs_columns=["nope"])
    with pytest.raises(ItmeParameterError, match="existing folder"):
        itme.io.write_fcs(adata, tmp_path / "missing" / "w.fcs")
    with pytest.raises(ItmeParameterError, match=r"parameter 'layer'.*got 'raw'"):
        itme.io.write_fcs(adata, tmp_path / "w.fcs", layer="raw")


# --- corrupted and inconsistent files (issue 11): an ItmeInputError or a warned read -------------


def _notes(adata) -> str:
    return "; ".join(adata.uns["fcs"]["notes"])


@pytest.mark.parametrize("delimiter", ["(", "|", "\\", "*", "[", ".", "+", "?", "^", "\x0c", " "])
def test_any_delimiter_byte_works(tmp_path, values, delimiter):
    """flowio built a regular expression from the delimiter: '(' raised re.error."""
    path = tmp_path / "d.fcs"
    path.write_bytes(
        fcs_factory.fcs_bytes(
            values, NAMES, labels=LABELS, delimiter=delimiter, extra={"$COM": f"a{delimiter}b"}
        )
    )
    adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)
    assert list(adata.var["antigen"]) == LABELS
    assert adata.uns["fcs"]["keywords"]["$COM"] == f"a{delimiter}b"
    assert adata.uns["fcs"]["notes"] == []


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            {"$PAR": "100000000"},
            r"\$PAR is impossible: expected a whole number from 1 to \d+, found '100000000'",
        ),
        ({"$PAR": "0", "$TOT": "1000000000000"}, r"\$PAR is impossible.*found '0'"),
        ({"$PAR": "-1"}, r"\$PAR is impossible.*found '-1'"),
        (
            {"$TOT": "1000000000"},
            r"DATA bytes \d+-\d+ holds 4800 bytes, fewer than \$TOT 1000000000",
        ),
        ({"$TOT": "-3"}, r"\$TOT is impossible.*found '-3'"),
        (
            {"$TOT": "299"},
            r"more than \$TOT 299 × 16 bytes per event = 4784: \$TOT, \$PAR or \$PnB is wrong",
        ),
        (
            {"$TOT": "0"},
            r"\$TOT is 0 but the DATA segment .* holds 4800 bytes, room for 300 events",
        ),
        ({"$BYTEORD": "3,4,1,2"}, r"unsupported \$BYTEORD: expected 1,2,3,4 .* found '3,4,1,2'"),
        ({"$DATATYPE": "A"}, r"unsupported \$DATATYPE: found A"),
        ({"$MODE": "C"}, r"unsupported \$MODE"),
        ({"$P2B": "64"}, None),  # float data: $PnB is noted, the 32-bit values are read
    ],
)
def test_impossible_sizes_are_input_errors_before_any_allocation(tmp_path, values, extra, match):
    """The combinations that raised ValueError, MemoryError or hung before (issue 11)."""
    path = tmp_path / "x.fcs"
    path.write_bytes(fcs_factory.fcs_bytes(values, NAMES, extra=extra))
    if match is None:
        with pytest.warns(ItmeInputWarning, match=r"\$PnB of parameter\(s\) 2 is not 32"):
            np.testing.assert_array_equal(itme.io.read_fcs(path).X, values)
        return
    with pytest.raises(ItmeInputError, match=match):
        itme.io.read_fcs(path)


@pytest.mark.parametrize(
    ("slot", "value", "match"),
    [
        (
            0,
            b"     --5",
            r"HEADER bytes 10-17 .*are not a number: expected a non-negative whole number, found b'     --5'",
        ),
        (
            1,
            b"99999999",
            r"the TEXT segment runs past the end of the file: expected TEXT up to byte 99999999",
        ),
        (0, b"      10", r"TEXT offsets are impossible: expected 58 <= TEXT start < TEXT end"),
    ],
)
def test_broken_header_offsets(tmp_path, values, slot, value, match):
    blob = bytearray(fcs_factory.fcs_bytes(values, NAMES))
    blob[10 + 8 * slot : 18 + 8 * slot] = value
    path = tmp_path / "h.fcs"
    path.write_bytes(bytes(blob))
    with pytest.raises(ItmeInputError, match=match):
        itme.io.read_fcs(path)


def test_header_and_text_disagree_the_consistent_one_is_used(tmp_path, values):
    blob = bytearray(fcs_factory.fcs_bytes(values, NAMES))
    blob[26:34] = b"    1000"  # HEADER DATA start is wrong, TEXT fits $TOT × $PAR
    path = tmp_path / "h.fcs"
    path.write_bytes(bytes(blob))
    with pytest.warns(
        ItmeInputWarning, match=r"HEADER and TEXT disagree on the DATA offsets.*used TEXT"
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)
    # TEXT wrong, HEADER right: the HEADER is used
    begin = int(bytes(blob[26:34]))
    good = fcs_factory.fcs_bytes(values, NAMES)
    begin = int(good[26:34])
    text = good[58:begin].replace(
        f"$BEGINDATA/{begin}/".encode(), f"$BEGINDATA/{begin + 8}/".encode()
    )
    path.write_bytes(good[:58] + text + good[begin:])
    with pytest.warns(
        ItmeInputWarning,
        match=r"the TEXT DATA offsets are unusable \(DATA bytes .* holds 4792 bytes, fewer",
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)


def test_data_overlapping_text_is_an_error(tmp_path, values):
    good = fcs_factory.fcs_bytes(values, NAMES)
    begin, end = int(good[26:34]), int(good[34:42])
    text = good[58:begin]
    moved = text.replace(f"/{begin}/".encode(), f"/{begin - 30}/".encode()).replace(
        f"/{end}/".encode(), f"/{end - 30}/".encode()
    )
    header = good[:26] + f"{begin - 30:>8d}{end - 30:>8d}".encode() + good[42:58]
    path = tmp_path / "o.fcs"
    path.write_bytes(header + moved + good[begin:])
    with pytest.raises(ItmeInputError, match=r"overlaps the TEXT segment \(bytes 58-\d+\)"):
        itme.io.read_fcs(path)


def test_analysis_offsets_past_the_end_are_warned_not_read(tmp_path, values):
    """flowio read the ANALYSIS segment: $ENDANALYSIS 10^12 was a MemoryError."""
    path = fcs_factory.write(
        tmp_path / "a.fcs",
        values,
        NAMES,
        extra={"$BEGINANALYSIS": "100", "$ENDANALYSIS": "1000000000000"},
    )
    with pytest.warns(
        ItmeInputWarning,
        match=r"\$BEGINANALYSIS/\$ENDANALYSIS \(bytes 100-1000000000000\) lie outside the file",
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)


def test_duplicated_keywords(tmp_path, values):
    same = fcs_factory.write(tmp_path / "s.fcs", values, NAMES, more=[("$CYT", "TEST-CYTOF")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ItmeInputWarning)  # the same value twice: a note only
        adata = itme.io.read_fcs(same)
    assert "repeated with the same value: CYT" in _notes(adata)
    other = fcs_factory.write(tmp_path / "o.fcs", values, NAMES, more=[("$CYT", "OTHER")])
    with pytest.warns(
        ItmeInputWarning, match=r"\$CYT appear twice with different values; used the first"
    ):
        adata = itme.io.read_fcs(other)
    assert adata.uns["fcs"]["keywords"]["$CYT"] == "TEST-CYTOF"
    layout = fcs_factory.write(tmp_path / "l.fcs", values, NAMES, more=[("$P2B", "16")])
    with pytest.raises(ItmeInputError, match=r"\$P2B appear twice in TEXT with different values"):
        itme.io.read_fcs(layout)


def test_missing_pnn_and_empty_values(tmp_path, values):
    path = fcs_factory.write(
        tmp_path / "m.fcs", values, NAMES, labels=LABELS, drop=("$P3N",), extra={"$P2S": ""}
    )
    with pytest.warns(ItmeInputWarning) as record:
        adata = itme.io.read_fcs(path)
    message = str(record[0].message)
    assert "no $PnN for parameter(s) 3; their var_names are P<n>" in message
    assert list(adata.var_names) == ["Time", "Y89Di", "P3", "Ir191Di"]
    assert list(adata.var["channel"]) == ["Time", "Y89Di", "", "Ir191Di"]
    assert list(adata.var["antigen"]) == ["", "", "CD19", "DNA1"]  # $P2S empty, $P3S intact
    np.testing.assert_array_equal(adata.X, values)


def test_masked_and_rounded_integers_are_counted(tmp_path):
    data = np.array([[1024 + 5, 2**30 + 1], [7, 3]], dtype=np.uint64)
    path = fcs_factory.write(
        tmp_path / "i.fcs", data, ["A", "B"], datatype="I", bits=[16, 32], ranges=[1024, 2**31]
    )
    with pytest.warns(ItmeInputWarning) as record:
        adata = itme.io.read_fcs(path)
    message = str(record[0].message)
    assert "masked to its bit width (FCS 3.1 §3.3.2) in channel(s) A (1)" in message
    assert "integers above 2^24 were rounded to float32 precision in channel(s) B" in message
    np.testing.assert_array_equal(adata.X[:, 0], [5, 7])


def test_unusable_range_on_integer_data_is_warned_and_not_masked(tmp_path):
    data = np.array([[1029, 3], [7, 1024]])
    path = fcs_factory.write(
        tmp_path / "r.fcs", data, ["A", "B"], datatype="I", bits=[16, 16], extra={"$P1R": "inf"}
    )
    with pytest.warns(
        ItmeInputWarning,
        match=r"\$P1R 'inf': not a positive number; those integer values were not masked",
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, data)


def test_non_finite_float_values_are_warned(tmp_path, values):
    x = values.copy()
    x[3, 1], x[10, 2] = np.nan, np.inf
    path = fcs_factory.write(tmp_path / "n.fcs", x, NAMES)
    with pytest.warns(
        ItmeInputWarning, match=r"2 value\(s\) are NaN or infinite .* Y89Di \(1\), Nd142Di \(1\)"
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, x)


def test_truncated_text_is_an_error_and_truncated_tail_is_not(tmp_path, values):
    blob = fcs_factory.fcs_bytes(values, NAMES)
    path = tmp_path / "t.fcs"
    path.write_bytes(blob[:300])
    with pytest.raises(
        ItmeInputError, match=r"TEXT segment runs past the end of the file.*truncated"
    ):
        itme.io.read_fcs(path)
    path.write_bytes(blob + b"00000000")  # a CRC after DATA
    np.testing.assert_array_equal(itme.io.read_fcs(path).X, values)


def test_broken_nextdata_chain(tmp_path, values):
    blob = fcs_factory.fcs_bytes(values, NAMES, nextdata=60)
    path = tmp_path / "c.fcs"
    path.write_bytes(blob)
    with pytest.warns(
        ItmeInputWarning,
        match=r"the \$NEXTDATA chain points to byte 60, where no data set can be read",
    ):
        adata = itme.io.read_fcs(path)
    np.testing.assert_array_equal(adata.X, values)
    assert adata.uns["fcs"]["n_data_sets"] == 1
    with pytest.raises(ItmeInputError, match="the HEADER at byte 60 must start with FCS"):
        itme.io.read_fcs(path, data_set=1)
    path.write_bytes(fcs_factory.fcs_bytes(values, NAMES, nextdata=10**9))
    with pytest.raises(
        ItmeInputError,
        match=r"data set 1 cannot be reached: \$NEXTDATA of data set 0 points to byte 1000000000, past the end",
    ):
        itme.io.read_fcs(path, data_set=1)


def test_text_end_one_byte_past_is_a_note_not_a_warning(tmp_path, values):
    """Every Bodenmiller 2012 file: $ENDTEXT and $ENDDATA are one byte past their segments."""
    blob = bytearray(fcs_factory.fcs_bytes(values, NAMES))
    text_end = int(blob[18:26])
    blob[18:26] = f"{text_end + 1:>8d}".encode()
    path = tmp_path / "b.fcs"
    path.write_bytes(bytes(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ItmeInputWarning)
        adata = itme.io.read_fcs(path)
    assert "TEXT end offset is one byte past" in _notes(adata)
    np.testing.assert_array_equal(adata.X, values)


def test_unexpected_exceptions_become_input_errors(tmp_path, values, monkeypatch):
    """A bug in the reader still surfaces as an ItmeInputError naming the file (the fuzz
    suite counts these as failures: the cause is kept)."""
    import itme.io._fcs_format as fmt

    def broken(*args, **kwargs):
        raise IndexError("boom")

    monkeypatch.setattr(fmt, "_describe", broken)
    path = fcs_factory.write(tmp_path / "a.fcs", values, NAMES)
    with pytest.raises(
        ItmeInputError, match=r"a\.fcs: the file could not be parsed \(IndexError: boom\).*bug"
    ) as info:
        itme.io.read_fcs(path)
    assert isinstance(info.value.__cause__, IndexError)


@pytest.mark.parametrize("big_endian", [False, True])
def test_events_read_straight_or_converted_agree_and_hash_the_whole_file(
    tmp_path, values, big_endian
):
    # float32 of this machine's byte order, every column in order: the DATA segment is read
    # straight into the events' array; another byte order or a column selection is
    # converted block by block. Same values, same notes, and the SHA-256 covers every byte
    # of the file, those after the DATA segment included
    x = values.copy()
    x[3, 1] = np.nan
    blob = fcs_factory.fcs_bytes(x, NAMES, big_endian=big_endian) + b"bytes after DATA"
    path = tmp_path / "e.fcs"
    path.write_bytes(blob)
    results = []
    for columns in (np.arange(4), np.array([2, 0])):
        fcs = parse_fcs(path, only_text=True)
        out = np.zeros((len(x), len(columns)), dtype=np.float32)
        straight = _is_image(fcs, out, columns)
        assert straight == (columns.size == 4 and big_endian == (sys.byteorder == "big"))
        digest = hashlib.sha256()
        read_events(fcs, out, columns, digest=digest)
        assert digest.hexdigest() == hashlib.sha256(blob).hexdigest()
        np.testing.assert_array_equal(out, x[:, columns])
        results.append(fcs.warned)
    assert results[0] == [
        r"1 value(s) are NaN or infinite (or beyond float32) in channel(s) Y89Di (1); kept as read"
    ]
    assert results[1] == []  # the NaN is in a column not read
    with pytest.raises(ItmeInputError, match="ends inside the DATA segment"):
        fcs = parse_fcs(path, only_text=True)
        path.write_bytes(blob[: fcs.layout.start + 100])
        read_events(fcs, np.zeros_like(x), np.arange(4), digest=hashlib.sha256())
