"""Channel names read by metal: every convention, mixed-convention cohorts, ambiguity, aliases."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import fcs_factory

import itme
from itme.errors import ItmeInputError, ItmeInputWarning
from itme.io import parse_channel
from itme.io._channels import alias_table, file_channels

# (name, mass, element, antigen, convention)
CASES = [
    ("Pr141Di", "141", "Pr", "", "Pr141Di"),
    ("141Pr", "141", "Pr", "", "141Pr"),
    ("Pr141", "141", "Pr", "", "Pr141"),
    ("141Pr_CD3", "141", "Pr", "CD3", "141Pr_CD3"),
    ("CD3_Pr141", "141", "Pr", "CD3", "CD3_Pr141"),
    ("CD3(Pr141)Di", "141", "Pr", "CD3", "CD3(Pr141)Di"),
    ("CD3(141Pr)", "141", "Pr", "CD3", "CD3(141Pr)"),
    ("CD3(110:114)Dd", "110:114", "", "CD3", "CD3(110:114)Dd"),
    ("(Pr141)Dd", "141", "Pr", "", "(Pr141)Dd"),
    ("Bi209Di", "209", "Bi", "", "Pr141Di"),
    ("209Bi_CD11b", "209", "Bi", "CD11b", "141Pr_CD3"),
    ("CD45(In115)Dd", "115", "In", "CD45", "CD3(Pr141)Dd"),
    ("CD45_Y89", "89", "Y", "CD45", "CD3_Pr141"),
    ("89Y", "89", "Y", "", "141Pr"),
    ("HLA-DR_Yb174", "174", "Yb", "HLA-DR", "CD3_Pr141"),
    ("CD3_CD19_Pr141", "141", "Pr", "CD3_CD19", "CD3_Pr141"),
]


@pytest.mark.parametrize(("name", "mass", "element", "antigen", "convention"), CASES)
def test_every_convention_parses_to_metal_and_antigen(name, mass, element, antigen, convention):
    ch = parse_channel(name)
    assert (ch.mass, ch.element, ch.antigen, ch.convention) == (mass, element, antigen, convention)


@pytest.mark.parametrize("name", ["Time", "CD3", "B220", "Ki67", "P53", "Event_length", "CD45RA"])
def test_antigen_names_are_not_read_as_metals(name):
    # B220 (boron is ~11 Da), P53 (phosphorus ~31 Da): element symbols with impossible masses
    ch = parse_channel(name)
    assert ch.metal == "" and ch.antigen == name


def test_file_channels_take_metal_from_pnn_and_antigen_from_pns():
    channels = pd.DataFrame(
        {"PnN": ["Bi209Di", "CD3(110:114)Dd", "CD45_Y89", "Pt195Di"],
         "PnS": ["209Bi_CD11b", "CD3", "CD45_Y89", "195Pt"]}
    )  # fmt: skip
    parts = file_channels(channels)
    assert list(parts["metal"]) == ["Bi209", "110:114", "Y89", "Pt195"]
    assert list(parts["antigen"]) == ["CD11b", "CD3", "CD45", ""]


def test_aliases_ignore_case_and_separators_and_extend():
    table = alias_table({"CD8": ["CD8a"]})
    assert table["hladr"] == table["hla-dr".replace("-", "")] == "hladr"
    assert table["cd3e"] == "cd3" and table["cd279"] == "pd1"
    assert table["cd8a"] == "cd8"


# --- cohorts -------------------------------------------------------------------------------

METALS = [("Y", 89, "CD45"), ("Nd", 142, "CD19"), ("Nd", 145, "CD4"), ("Ir", 191, "DNA1")]
STYLES = {
    "Pr141Di": (lambda el, m, ag: f"{el}{m}Di", lambda el, m, ag: ag),
    "141Pr": (lambda el, m, ag: f"{m}{el}", lambda el, m, ag: f"{m}{el}_{ag}"),
    "CD3_Pr141": (lambda el, m, ag: f"{ag}_{el}{m}", lambda el, m, ag: f"{ag}_{el}{m}"),
    "CD3(Pr141)Dd": (lambda el, m, ag: f"{ag}({el}{m})Dd", lambda el, m, ag: ag),
}


def write_cohort(folder: Path, styles: list[str], *, panel_style: str = "Pr141Di"):
    """One file per style (same values), samples.csv and a panel written in ``panel_style``."""
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 30.0, size=(40, 1 + len(METALS))).astype(np.float32)
    rows = ["file_name,sample_id,patient_id"]
    for k, style in enumerate(styles):
        pnn, pns = STYLES[style]
        names = ["Time", *(pnn(*m) for m in METALS)]
        labels = ["", *(pns(*m) for m in METALS)]
        fcs_factory.write(folder / f"f{k}.fcs", x, names, labels=labels)
        rows.append(f"f{k}.fcs,S{k},P{k}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    pnn = STYLES[panel_style][0]
    panel = ["fcs_colname,antigen,marker_class"]
    panel += [f"{pnn(*m)},{m[2]},type" for m in METALS]
    (folder / "panel.csv").write_text("\n".join(panel) + "\n")
    return folder / "samples.csv", folder / "panel.csv", x


def read(samples, panel, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = itme.io.read_cohort(samples, panel, unpanelled="drop", **kwargs)
    return adata, [w for w in caught if issubclass(w.category, ItmeInputWarning)]


def test_mixed_convention_cohort_reads_by_metal_and_warns_once_per_convention(tmp_path):
    styles = ["Pr141Di", "141Pr", "141Pr", "CD3_Pr141", "CD3_Pr141", "CD3(Pr141)Dd"]
    samples, panel, x = write_cohort(tmp_path, styles)
    adata, caught = read(samples, panel)
    # every file's values land under the same antigen, whatever its naming
    assert list(adata.var_names) == ["CD45", "CD19", "CD4", "DNA1"]
    for k in range(len(styles)):
        np.testing.assert_array_equal(adata[adata.obs["sample_id"] == f"S{k}"].X, x[:, 1:])
    # one warning per convention that differs from the panel's, naming its files
    texts = [str(w.message) for w in caught if "matched to the panel by metal" in str(w.message)]
    assert len(texts) == 3
    assert any(
        "2 file(s) name their channels as '141Pr'" in t and "f1.fcs, f2.fcs" in t for t in texts
    )
    cmap = adata.uns["io"]["channel_map"]
    row = cmap[(cmap["sample_id"] == "S1") & (cmap["panel_channel"] == "Y89Di")].iloc[0]
    assert (row["PnN"], row["matched_by"]) == ("89Y", "metal")
    assert set(cmap.loc[cmap["sample_id"] == "S0", "matched_by"]) == {"$PnN"}


@pytest.mark.parametrize("panel_style", list(STYLES))
def test_a_panel_in_any_form_reads_the_same_var(tmp_path, panel_style):
    samples, panel, x = write_cohort(tmp_path, ["Pr141Di", "141Pr"], panel_style=panel_style)
    adata, _ = read(samples, panel)
    assert list(adata.var_names) == ["CD45", "CD19", "CD4", "DNA1"]
    assert list(adata.var["marker_class"]) == ["type"] * 4
    np.testing.assert_array_equal(adata.X, np.vstack([x[:, 1:], x[:, 1:]]))


def test_panel_naming_only_the_metal_reads(tmp_path):
    samples, panel, x = write_cohort(tmp_path, ["Pr141Di", "CD3_Pr141"])
    panel.write_text(
        "fcs_colname,antigen,marker_class\n"
        + "".join(f"{el}{m},{ag},type\n" for el, m, ag in METALS)
    )
    adata, _ = read(samples, panel)
    np.testing.assert_array_equal(adata.X, np.vstack([x[:, 1:], x[:, 1:]]))


def test_two_channels_of_one_metal_is_an_error_naming_both(tmp_path):
    x = np.ones((5, 3), np.float32)
    fcs_factory.write(tmp_path / "a.fcs", x, ["Y89Di", "CD45_Y89", "Nd142Di"])
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\na.fcs,A,P1\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n89Y,CD45,type\n")
    with pytest.raises(
        ItmeInputError,
        match=r"a\.fcs: panel channel 89Y is ambiguous: metal Y89 is on channels Y89Di and CD45_Y89",
    ):
        itme.io.read_cohort(tmp_path / "samples.csv", tmp_path / "panel.csv", unpanelled="drop")
    problems = itme.io.check_cohort(tmp_path / "samples.csv", tmp_path / "panel.csv")
    assert len(problems) == 1 and "Y89Di and CD45_Y89" in problems[0]


def test_antigen_alias_matches_pns_and_config_extends_it(tmp_path):
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    fcs_factory.write(
        tmp_path / "a.fcs", x, ["Time", "Yb170Di", "Nd144Di"], labels=["", "CD3", "CD8a"]
    )
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\na.fcs,A,P1\n")
    (tmp_path / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nCD3e,CD3,type\nCD8,CD8,type\n"
    )
    with pytest.raises(ItmeInputError, match=r"not in the file's \$PnN or \$PnS: CD8"):
        itme.io.read_cohort(tmp_path / "samples.csv", tmp_path / "panel.csv", unpanelled="drop")
    adata, _ = read(
        tmp_path / "samples.csv", tmp_path / "panel.csv", antigen_aliases={"CD8": ["CD8a"]}
    )
    np.testing.assert_array_equal(adata.X, x[:, [1, 2]])
    assert set(adata.uns["io"]["channel_map"]["matched_by"]) == {"antigen"}


def test_inspect_shows_the_mapping_and_naming_per_file(tmp_path):
    samples, _, _ = write_cohort(tmp_path, ["Pr141Di", "141Pr"])
    summary = itme.io.summarize(samples)
    assert list(summary.files["naming"]) == ["Pr141Di", "141Pr"]
    assert summary.problems == []  # same metals: not "different channel sets"
    other = summary.mapping[summary.mapping["matched_by"] == "metal"]
    assert set(other["file"]) == {"f1.fcs"} and "89Y" in set(other["$PnN"])
    assert "89Y" in summary.to_text()


# --- panels that change between runs ---------------------------------------------------------


def test_marker_missing_from_some_files_is_left_out_with_one_warning(tmp_path):
    samples, panel, x = write_cohort(tmp_path, ["Pr141Di", "Pr141Di", "141Pr"])
    # the third run has no CD4 (Nd145): rewrite its file without that channel
    names = ["Time", "89Y", "142Nd", "191Ir"]
    fcs_factory.write(tmp_path / "f2.fcs", x[:, [0, 1, 2, 4]], names, labels=[""] * 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = itme.io.read_cohort(samples, panel, unpanelled="drop")
    excluded_warnings = [
        str(w.message) for w in caught if issubclass(w.category, itme.errors.ItmeExclusionWarning)
        and "missing from some files" in str(w.message)
    ]  # fmt: skip
    assert len(excluded_warnings) == 1
    assert "1 panel channel(s) missing from some files are left out" in excluded_warnings[0]
    assert "Nd145Di (CD4) missing from f2.fcs" in excluded_warnings[0]
    assert list(adata.var_names) == ["CD45", "CD19", "DNA1"]
    np.testing.assert_array_equal(adata.X, np.vstack([x[:, [1, 2, 4]]] * 3))
    excluded = adata.uns["io"]["excluded_markers"]
    assert list(excluded["antigen"]) == ["CD4"] and list(excluded["files_without"]) == ["f2.fcs"]
    # marked required in the panel: an error naming the file
    panel.write_text(panel.read_text().replace("marker_class\n", "marker_class,required\n", 1)
                     .replace(",type\n", ",type,no\n").replace("Nd145Di,CD4,type,no", "Nd145Di,CD4,type,yes"))  # fmt: skip
    with pytest.raises(
        ItmeInputError, match=r"f2\.fcs: panel channel\(s\) not in the file's .*Nd145Di"
    ):
        itme.io.read_cohort(samples, panel, unpanelled="drop")


def test_panel_batch_column_reads_an_antigen_moved_to_another_metal(tmp_path):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    fcs_factory.write(tmp_path / "a.fcs", x, ["Time", "Yb170Di", "Nd144Di"])  # run 1
    fcs_factory.write(tmp_path / "b.fcs", x, ["Time", "170Yb", "144Nd"])  # run 2: swapped
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id,batch\na.fcs,A,P1,R1\nb.fcs,B,P2,R2\n"
    )
    (tmp_path / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class,batch\n"
        "Yb170Di,CD3,type,R1\nNd144Di,CD8,type,R1\n144Nd,CD3,type,R2\n170Yb,CD8,type,R2\nTime,Time,none,\n"
    )
    adata, _ = read(tmp_path / "samples.csv", tmp_path / "panel.csv")
    assert list(adata.var_names) == ["CD3", "CD8", "Time"]
    np.testing.assert_array_equal(adata[adata.obs["sample_id"] == "A"].X, x[:, [1, 2, 0]])
    np.testing.assert_array_equal(adata[adata.obs["sample_id"] == "B"].X, x[:, [2, 1, 0]])
    cmap = adata.uns["io"]["channel_map"]
    assert list(cmap.loc[cmap["sample_id"] == "B", "PnN"]) == ["144Nd", "170Yb", "Time"]
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id\na.fcs,A,P1\nb.fcs,B,P2\n"
    )
    with pytest.raises(
        ItmeInputError, match="the panel has a batch column but samples.csv has none"
    ):
        itme.io.read_cohort(tmp_path / "samples.csv", tmp_path / "panel.csv")
