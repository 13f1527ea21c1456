"""read_fcs / write_fcs on hand-built FCS files (tests/helpers/fcs_factory.py)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError

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
