"""Phenotype tables: the shipped lymphoid table and the YAML validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from itme.core.annotate.phenotypes import parse_phenotypes
from itme.errors import ItmeInputError, ItmeInputWarning
from itme.io import read_phenotypes

ROOT = Path(__file__).resolve().parents[2]
PANEL = ROOT / "itme" / "data" / "panels" / "lymphoid_visram2021.csv"
PACKAGE_YAML = ROOT / "itme" / "data" / "phenotypes" / "lymphoid_visram2021.yaml"
CONFIG_YAML = ROOT / "configs" / "phenotypes" / "lymphoid_visram2021.yaml"


@pytest.fixture(scope="module")
def table():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped table must be unambiguous
        return read_phenotypes("lymphoid_visram2021")


def test_config_file_is_the_package_table():
    assert CONFIG_YAML.is_symlink()
    assert CONFIG_YAML.resolve() == PACKAGE_YAML.resolve()
    assert read_phenotypes(CONFIG_YAML).text == read_phenotypes("lymphoid_visram2021").text


def test_markers_are_antigens_of_the_reference_panel(table):
    panel = pd.read_csv(PANEL)
    assert set(table.markers) <= set(panel["antigen"])
    # rules use the clustering (type) markers, so clusters can separate what the table names
    types = set(panel.loc[panel["marker_class"] == "type", "antigen"])
    assert set(table.markers) <= types


def test_paper_subset_names_present(table):
    # Visram 2021, Results and Fig. 4: subsets described in the text
    described = [f"T{i}" for i in (1, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)]
    described += ["TCRgd-1", "TCRgd-3", "NK-5", "B"]
    assert set(described) <= set(table.subset_names)


@pytest.mark.parametrize(
    ("subset", "expected"),
    [
        # naive CD4/CD8: CD45RA+ CCR7+ CD27+ CD28+; T1/T2 CD38+ (paper Discussion)
        (
            "T1",
            {"CD4": "hi", "CD45RA": "hi", "CCR7": "hi", "CD27": "hi", "CD28": "hi", "CD38": "hi"},
        ),
        ("T2", {"CD4": "hi", "CD45RA": "hi", "CCR7": "hi", "CD38": "hi"}),
        ("T11", {"CD8": "hi", "CD45RA": "hi", "CCR7": "hi", "CD27": "hi", "CD28": "hi"}),
        # CD161+ CD4 T6, T7; CD8 T17
        ("T6", {"CD4": "hi", "CD161": "hi", "CCR7": "hi"}),
        ("T7", {"CD4": "hi", "CD161": "hi", "CCR7": "lo"}),
        ("T17", {"CD8": "hi", "CD161": "hi"}),
        # T13 CD103+; T14 CCR5+ CD27/28+ PD-1+ TIGIT+; T8/T15 CCR7+ CD127+; T9 CCR5+
        ("T13", {"CD8": "hi", "CD103": "hi"}),
        (
            "T14",
            {"CD8": "hi", "CCR5": "hi", "CD27": "hi", "CD28": "hi", "PD-1": "hi", "TIGIT": "hi"},
        ),
        ("T15", {"CD8": "hi", "CCR7": "hi", "CD127": "hi"}),
        ("T8", {"CD4": "hi", "CCR7": "hi", "CD127": "hi"}),
        ("T9", {"CD4": "hi", "CCR5": "hi"}),
        # terminally differentiated: CD27/CD28-, CD57/KLRG1+
        ("T10", {"CD4": "hi", "CD27": "lo", "CD28": "lo", "CD57": "hi", "KLRG1": "hi"}),
        ("T16", {"CD8": "hi", "CD27": "lo", "CD28": "lo", "CD57": "hi", "KLRG1": "hi"}),
        ("T18", {"CD8": "hi", "CD27": "lo", "CD28": "lo"}),
        ("T19", {"CD8": "hi", "CD27": "lo", "CD28": "lo", "KLRG1": "hi"}),
        ("T20", {"CD8": "hi", "CD27": "lo", "CD28": "lo", "CD57": "hi"}),
        ("TCRgd-3", {"TCRgd": "hi", "CD27": "lo", "CD28": "lo"}),
        # TCRgd-1: CD27+ CD28+ CCR5+ CD226+; NK-5: CD39+ NKG2D-
        ("TCRgd-1", {"TCRgd": "hi", "CD27": "hi", "CD28": "hi", "CCR5": "hi", "CD226": "hi"}),
        ("NK-5", {"CD3": "lo", "CD56": "hi", "CD39": "hi", "NKG2D": "lo"}),
        ("B", {"CD19": "hi", "CD3": "lo"}),
    ],
)
def test_paper_phenotypes_encoded(table, subset, expected):
    rules = table.rules(subset)
    assert {m: rules.get(m) for m in expected} == expected


def test_fig4_compartments_are_data(table):
    # Visram 2021 Fig. 4 legend: compartments of CD4 and CD8 T cells
    expected = {
        "CD4_naive": ["T1", "T2"],
        "CD4_central_memory": ["T6", "T8"],
        "CD4_effector_memory": ["T4", "T7", "T9"],
        "CD4_effector": ["T10"],
        "CD8_naive": ["T11", "T12"],
        "CD8_central_memory": ["T13", "T14", "T15"],
        "CD8_effector_memory": ["T17", "T18"],
        "CD8_effector": ["T16", "T19", "T20"],
    }
    derived = {f.name: f for f in table.derived}
    for name, subsets in expected.items():
        assert sorted(table.expand(name)) == sorted(subsets)
        assert derived[name].of in (("T_CD4",), ("T_CD8",))
    assert {"T_cells", "CD4_T", "CD8_T", "CD4_CD8_ratio"} <= set(derived)
    assert derived["CD4_CD8_ratio"].kind == "ratio"
    t_cells = set(table.expand("T_cells"))
    assert {"T1", "T20", "TCRgd-1", "CD4 T other", "DN T"} <= t_cells
    assert not t_cells & {"B", "NK-5", "Monocytes"}


def test_non_lymphoid_groups_are_named(table):
    names = set(table.subset_names)
    assert {"Monocytes", "Other CD45+"} <= names
    assert table.lineage_of("Monocytes") == "myeloid"
    assert table.lineage_of("CD8 T other") == "T_CD8"


MINIMAL = """
name: mini
lineages:
  T:
    markers: {CD3: hi}
    other: T other
    subsets:
      T4:
        markers: {CD4: hi, CD8: lo}
      T8:
        markers: {CD4: lo, CD8: hi}
  Bcells:
    markers: {CD3: lo, CD19: hi}
    subsets:
      B: {}
derived:
  T_cells: {sum: [T]}
  ratio48: {ratio: [T4, T8]}
  T4_of_T: {sum: [T4], of: [T_cells]}
"""


def test_minimal_table_parses():
    t = parse_phenotypes(MINIMAL)
    assert t.subset_names == ["T4", "T8", "B", "T other"]
    assert t.rules("T4") == {"CD3": "hi", "CD4": "hi", "CD8": "lo"}
    assert t.rules("T other") == {"CD3": "hi"}
    assert t.expand("T_cells") == ["T4", "T8", "T other"]
    assert [f.kind for f in t.derived] == ["sum", "ratio", "sum"]


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("lineages:", "lineage:", r'key "lineage".*Did you mean "lineages"'),
        (
            "{CD4: hi, CD8: lo}",
            "{CD4: high, CD8: lo}",
            r"marker CD4: expected hi, lo or any, found 'high'",
        ),
        ("      T8:\n", "      T4:\n", r"names unique"),
        ("sum: [T]}", "sum: [Tcells]}", r'found "Tcells"'),
        ("ratio: [T4, T8]", "ratio: [T4, T8, B]", r"ratio: \[numerator, denominator\]"),
        ("  T_cells: {sum: [T]}", "  T: {sum: [T4]}", r"name not used by a lineage"),
        ("name: mini", "name: [unclosed", r"expected valid YAML"),
    ],
)
def test_invalid_tables_are_rejected(old, new, match):
    assert old in MINIMAL
    with pytest.raises(ItmeInputError, match=match):
        parse_phenotypes(MINIMAL.replace(old, new, 1))


def test_ambiguous_subsets_warn():
    text = MINIMAL.replace("{CD4: lo, CD8: hi}", "{CD4: hi}")
    with pytest.warns(ItmeInputWarning, match="'T4' and 'T8' have no marker"):
        parse_phenotypes(text)


def test_missing_file_error(tmp_path):
    with pytest.raises(ItmeInputError, match="no such file"):
        read_phenotypes(tmp_path / "absent.yaml")
