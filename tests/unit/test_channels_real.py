"""Channel naming conventions of the real files in /work/shared/data (DESIGN.md §6).

Krieg 2018: ``$PnN`` ``Bi209Di``, ``$PnS`` ``209Bi_CD11b``; Bodenmiller 2012: ``CD3(110:114)Dd``,
``CD45(In115)Dd``; tidytof: ``CD45_Y89`` in ``$PnN`` and ``$PnS``. Only TEXT segments are
parsed, except for the cross-convention cohort read (a few hundred events).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import itme
from itme.errors import ItmeInputWarning
from itme.io._channels import file_channels
from itme.io._fcs_format import parse_fcs

KRIEG = "krieg2018_antipd1_cytof_subsample/Data23_Panel3_base_NR4_Patient9.fcs"
BODENMILLER = "bodenmiller2012_pbmc8_bcrxl_cytof/PBMC8_30min_patient1_BCR-XL.fcs"
TIDYTOF = "tidytof_cytof_examples/aml/bm5721_healthy_basal.fcs"


def parts_of(path):
    return file_channels(parse_fcs(path, only_text=True).channels).set_index("PnN")


@pytest.mark.parametrize(
    ("file", "pnn", "metal", "antigen", "convention"),
    [
        (KRIEG, "Bi209Di", "Bi209", "CD11b", "Pr141Di"),
        (KRIEG, "Y89Di", "Y89", "CD45", "Pr141Di"),
        (KRIEG, "Pt195Di", "Pt195", "", "Pr141Di"),  # $PnS 195Pt: a metal, no marker
        (BODENMILLER, "CD3(110:114)Dd", "110:114", "CD3", "CD3(110:114)Dd"),
        (BODENMILLER, "CD45(In115)Dd", "In115", "CD45", "CD3(Pr141)Dd"),
        (BODENMILLER, "HLA-DR(Yb174)Dd", "Yb174", "HLA-DR", "CD3(Pr141)Dd"),
        (TIDYTOF, "CD45_Y89", "Y89", "CD45", "CD3_Pr141"),
        (TIDYTOF, "CD11b_Bi209", "Bi209", "CD11b", "CD3_Pr141"),
        (TIDYTOF, "CD3_CD19_Pr141", "Pr141", "CD3_CD19", "CD3_Pr141"),
    ],
)
def test_real_conventions_parse(shared_data, file, pnn, metal, antigen, convention):
    row = parts_of(shared_data / file).loc[pnn]
    assert (row["metal"], row["antigen"], row["convention"]) == (metal, antigen, convention)


def test_no_non_metal_channel_is_read_as_a_metal(shared_data):
    for file in (KRIEG, BODENMILLER, TIDYTOF):
        parts = parts_of(shared_data / file)
        for name in ("Time", "Cell_length", "Event_length", "beadst_beadDist", "Center"):
            if name in parts.index:
                assert parts.at[name, "metal"] == ""


# four metals both the Krieg (Pr141Di-style) and the tidytof (CD45_Y89-style) files carry
SHARED = [("Y", 89, "CD45"), ("Bi", 209, "CD11b"), ("Yb", 174, "HLA-DR"), ("Gd", 160, "CD14")]
FORMS = {
    "Pr141Di": "{el}{m}Di",
    "141Pr": "{m}{el}",
    "Pr141": "{el}{m}",
    "141Pr_CD3": "{m}{el}_{ag}",
    "CD3_Pr141": "{ag}_{el}{m}",
    "CD3(Pr141)Di": "{ag}({el}{m})Di",
    "CD3(141Pr)": "{ag}({m}{el})",
}


@pytest.mark.parametrize("form", list(FORMS))
def test_cohort_of_two_real_conventions_reads_the_same_var_from_any_panel_form(
    shared_data, tmp_path, form
):
    (tmp_path / "samples.csv").write_text(
        "file_name,sample_id,patient_id\n"
        f"{shared_data / KRIEG},krieg,P1\n{shared_data / TIDYTOF},tidytof,P2\n"
    )
    rows = [FORMS[form].format(el=el, m=m, ag=ag) + f",{ag},type" for el, m, ag in SHARED]
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n" + "\n".join(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeInputWarning)  # inconsistent-file and naming notes
        warnings.simplefilter("ignore", itme.errors.ItmeExclusionWarning)
        adata = itme.io.read_cohort(
            tmp_path / "samples.csv", tmp_path / "panel.csv", unpanelled="drop"
        )
    assert list(adata.var_names) == ["CD45", "CD11b", "HLA-DR", "CD14"]
    # each file's values are its own channels of those metals, read file by file
    for sid, file, names in (
        ("krieg", KRIEG, ["Y89Di", "Bi209Di", "Yb174Di", "Gd160Di"]),
        ("tidytof", TIDYTOF, ["CD45_Y89", "CD11b_Bi209", "HLA-DR_Yb174", "CD14_Gd160"]),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ItmeInputWarning)
            single = itme.io.read_fcs(shared_data / file)
        expected = single[:, names].X
        np.testing.assert_array_equal(adata[adata.obs["sample_id"] == sid].X, expected)
