"""read_fcs on every real FCS file at hand: fcsparser's cytometer collection, cytonormpy's
CyTOF files and every .fcs under ../shared/data.

Reference values: the first-row values below are those asserted by fcsparser 0.2.8's own
test suite (fcsparser/tests/test_fcs_reader.py, `_assert_data_segment` and friends), an
independent reader; event/channel counts of ../shared/data come from each folder's
PROVENANCE.md ("FCS parse summary").
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import itme
from itme.errors import ItmeInputError, ItmeInputWarning

pytestmark = pytest.mark.shared_data

# file (relative to FlowCytometers) → (events, channels, first row values from fcsparser's tests or None)
FCSPARSER = {
    "Cytek_xP5/Cytek_xP5.fcs": (23126, 8, [0.0, 286.0, 164.0, 154.0, 54.0, 470.0, 1023.0, 770.0]),
    "FACSCaliburHTS/Sample_Well_A02.fcs": (37395, 8, None),
    "FACS_Diva/facs_diva_test.fcs": (83411, 12, None),
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs": (
        11585,
        11,
        [1312.85, 560.0, 153640.97, 1472.6399, 1424.0, 67774.53, 17.94, 8.58, 137.06, -36.72, 0.0],
    ),
    "GuavaMuse/Guava Muse.fcs": (
        108,
        10,
        [481.9313, 7.5, 84.2256, 7.5, 395.87415, 7.5, 35964.0, 2.6829851, 1.9254441, 2.5975571],
    ),
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs": (
        14945,
        11,
        [-28531.25, 10.0, 0.0, 700.15, 1656.0, 27708.35, 98.8, 54.15, 164.22, 120.36, 0.2],
    ),
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs": (
        10000,
        16,
        None,
    ),
    "MiltenyiBiotec/FCS3.0/FCS3.0_Custom_Compatible.fcs": (10000, 16, None),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Add_Well_A1.001.fcs": (10000, 19, None),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Without_Add_Well_A1.001.fcs": (
        10000,
        19,
        None,
    ),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs": (10000, 19, None),
    "MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs": (8129, 9, None),
    "cyflow_cube_8/cyflow_cube_8.fcs": (725, 10, [8, 7, 15, 15, 5, 8, 7, 6, 23, 0]),
    "fake_bitmask_error/fcs1_cleaned.lmd": (50000, 7, [528.0] * 7),
    "fake_large_fcs/fake_large_fcs.fcs": (
        11585,
        11,
        [1312.85, 560.0, 153640.97, 1472.6399, 1424.0, 67774.53, 17.94, 8.58, 137.06, -36.72, 0.0],
    ),
}


@pytest.mark.parametrize("name", sorted(FCSPARSER))
def test_fcsparser_collection(fcsparser_cytometers, name):
    n_events, n_channels, first = FCSPARSER[name]
    if name.startswith("fake_bitmask_error"):  # values above $PnR, masked (the point of the file)
        with pytest.warns(ItmeInputWarning, match="masked to its bit width"):
            adata = itme.io.read_fcs(fcsparser_cytometers / name)
    else:
        adata = itme.io.read_fcs(fcsparser_cytometers / name)
    assert adata.shape == (n_events, n_channels)
    assert adata.X.dtype == np.float32
    assert adata.var_names.is_unique
    if first is not None:
        np.testing.assert_allclose(adata.X[0], first, rtol=1e-4, atol=1e-3)


def test_fcsparser_collection_is_covered(fcsparser_cytometers):
    """Every file of the collection is listed here or in the two error tests below."""
    on_disk = {
        str(p.relative_to(fcsparser_cytometers))
        for p in fcsparser_cytometers.rglob("*")
        if p.is_file() and p.suffix.lower() in {".fcs", ".lmd"}
    }
    assert on_disk == set(FCSPARSER) | {
        "corrupted/corrupted.fcs",
        "cytek-nl-2000/sample_header.fcs",
    }


def test_guava_later_data_sets(fcsparser_cytometers):
    path = fcsparser_cytometers / "GuavaMuse/Guava Muse.fcs"
    adata = itme.io.read_fcs(path, data_set=3)
    assert adata.uns["fcs"]["n_data_sets"] == 4
    np.testing.assert_allclose(
        adata.X[0],
        [146.52184, 1.75, 13.888326, 1.75, 231.7306, 1.75, 13.0, 2.1659024, 1.1426499, 2.3649833],
        rtol=1e-5,
    )


def test_corrupted_file_names_the_file(fcsparser_cytometers):
    with pytest.raises(ItmeInputError, match=r"corrupted\.fcs: the file holds 10 bytes"):
        itme.io.read_fcs(fcsparser_cytometers / "corrupted" / "corrupted.fcs")


def test_header_only_file(fcsparser_cytometers):
    """cytek-nl-2000/sample_header.fcs holds HEADER and TEXT but no DATA (fcsparser reads it
    with read_data=False): the events cannot be read, the TEXT can (200 keywords in fcsparser)."""
    path = fcsparser_cytometers / "cytek-nl-2000" / "sample_header.fcs"
    with pytest.raises(
        ItmeInputError, match=r"sample_header\.fcs: the DATA segment cannot be read.*3931 bytes"
    ):
        itme.io.read_fcs(path)
    summary = itme.io.summarize(path)
    assert "sample_header.fcs" in summary.problems[0]
    from itme.io._fcs_format import parse_fcs

    text = parse_fcs(path, only_text=True)
    assert text.channels.shape[0] == 27
    assert len(text.keywords) + text.channels.notna().sum().sum() >= 200 - 27  # fcsparser: 200 keys


def test_cytonormpy_cytof_files(cytonormpy_resources):
    files = sorted(cytonormpy_resources.glob("*.fcs"))
    assert len(files) == 10
    for path in files:
        adata = itme.io.read_fcs(path)
        assert adata.shape == (1000, 55)
        assert "CD45" in set(adata.var["antigen"])
        assert adata.var_names[0] == "Time"


# ../shared/data: (events, channels) per file, from the PROVENANCE.md parse summaries
SHARED = {
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient1_BCR-XL.fcs": (2838, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient1_Reference.fcs": (2739, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient2_BCR-XL.fcs": (16675, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient2_Reference.fcs": (16725, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient3_BCR-XL.fcs": (12252, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient3_Reference.fcs": (9434, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient4_BCR-XL.fcs": (8990, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient4_Reference.fcs": (6906, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient5_BCR-XL.fcs": (8543, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient5_Reference.fcs": (11962, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient6_BCR-XL.fcs": (8622, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient6_Reference.fcs": (11038, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient7_BCR-XL.fcs": (14770, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient7_Reference.fcs": (15974, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient8_BCR-XL.fcs": (11653, 35),
    "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient8_Reference.fcs": (13670, 35),
    "flowsom_68983_flow_gated/ff.fcs": (19225, 18),
    "flowsom_68983_flow_gated/not_preprocessed.fcs": (19225, 18),
    "krieg2018_antipd1_cytof_subsample/Data23_Panel3_base_NR4_Patient9.fcs": (234, 30),
    "krieg2018_antipd1_cytof_subsample/Data23_Panel3_base_R5_Patient15.fcs": (339, 30),
    "tidytof_cytof_examples/aml/bm5721_healthy_basal.fcs": (100, 59),
    "tidytof_cytof_examples/aml/parbiu_dx_basal.fcs": (100, 59),
    "tidytof_cytof_examples/ddpr/Healthy1_Basal.fcs": (100, 52),
    "tidytof_cytof_examples/ddpr/UPN1_Basal.fcs": (100, 52),
    "tidytof_cytof_examples/phenograph/H1_PhenoGraph_cluster1.fcs": (100, 44),
    "tidytof_cytof_examples/phenograph/H1_PhenoGraph_cluster2.fcs": (100, 44),
    "tidytof_cytof_examples/phenograph/H1_PhenoGraph_cluster3.fcs": (100, 44),
    "tidytof_cytof_examples/surgery/121002hipsurg_102_1h.fcs": (100, 45),
    "tidytof_cytof_examples/surgery/121002hipsurg_102_1mo.fcs": (100, 45),
    "tidytof_cytof_examples/surgery/121002hipsurg_102_24h.fcs": (100, 45),
}


def test_every_shared_fcs_file(shared_data):
    on_disk = {str(p.relative_to(shared_data)) for p in shared_data.rglob("*.fcs")}
    assert on_disk == set(SHARED), "a new .fcs file in ../shared/data: add it to SHARED"
    for name, shape in SHARED.items():
        adata = itme.io.read_fcs(shared_data / name)
        assert adata.shape == shape, name
        assert np.isfinite(adata.X).all(), name
        if name.startswith("bodenmiller"):
            # every Bodenmiller file has $ENDDATA one byte past the end (PROVENANCE.md)
            assert any("$ENDDATA" in n for n in adata.uns["fcs"]["notes"]), name
            assert adata.uns["fcs"]["keywords"]["$CYT"] == "DVSSCIENCES-CYTOF-5.1.559"


def test_krieg_markers_resolved_from_pns(shared_data):
    adata = itme.io.read_fcs(
        shared_data / "krieg2018_antipd1_cytof_subsample/Data23_Panel3_base_NR4_Patient9.fcs"
    )
    assert adata.var.loc["Y89Di", "antigen"] == "89Y_CD45"
    assert adata.var.loc["Pt195Di", "antigen"] == "195Pt"


def _real_files(shared_data, fcsparser_cytometers):
    return [(str(p.relative_to(shared_data)), p) for p in sorted(shared_data.rglob("*.fcs"))] + [
        (name, fcsparser_cytometers / name) for name in sorted(FCSPARSER)
    ]


# flowio 1.3 cannot read these (24-bit integers; blank HEADER offsets)
NOT_FLOWIO = {"Cytek_xP5/Cytek_xP5.fcs", "fake_large_fcs/fake_large_fcs.fcs"}


def test_values_and_keywords_equal_flowios_reading(shared_data, fcsparser_cytometers):
    """An independent reader as reference: flowio 1.3 (itme parsed TEXT with it until issue
    11) reads the same events and the same TEXT keywords from every file it can read."""
    import flowio

    compared = 0
    for name, path in _real_files(shared_data, fcsparser_cytometers):
        if name in NOT_FLOWIO:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flow = flowio.FlowData(
                str(path),
                ignore_offset_error=True,
                ignore_offset_discrepancy=True,
                nextdata_offset=0 if "Guava" in name else None,
            )
            adata = itme.io.read_fcs(path)
        events = np.asarray(flow.events, dtype=np.float64).reshape(-1, flow.channel_count)
        np.testing.assert_array_equal(adata.X, events.astype(np.float32), err_msg=name)
        ours = {k.lower().replace("$", ""): v for k, v in adata.uns["fcs"]["keywords"].items()}
        for key, value in flow.text.items():  # flowio drops every "$" and lower-cases keys
            if not (key[0] == "p" and key[1:-1].isdigit()):
                assert ours[key.replace("/", "_")].replace("$", "") == value, (name, key)
        compared += 1
    assert compared == 43  # 30 of ../shared/data, 13 of fcsparser


def test_real_files_warn_only_when_inconsistent(shared_data, fcsparser_cytometers):
    """Real files read without ItmeInputWarning, except the one whose integers exceed $PnR
    (fcsparser's fake_bitmask_error test file); benign deviations are notes only."""
    warned = {}
    for name, path in _real_files(shared_data, fcsparser_cytometers):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            itme.io.read_fcs(path)
        messages = [str(w.message) for w in record if issubclass(w.category, ItmeInputWarning)]
        if messages:
            warned[name] = messages
    assert list(warned) == ["fake_bitmask_error/fcs1_cleaned.lmd"]
    assert "masked to its bit width" in warned["fake_bitmask_error/fcs1_cleaned.lmd"][0]
