"""Differential state on the canonical BCR-XL data (Bodenmiller 2012; CATALYST/diffcyt workflow).

8 healthy donors, PBMC unstimulated (Reference) or B-cell-receptor cross-linked (BCR-XL) for
30 min, paired by donor. Cells are labelled by FlowSOM + itme's hi/lo table on the 10 lineage
markers (the table of test_tl_real_data.py), then each of the 14 phospho markers is tested
within each subset with a random intercept per donor. Expected biology (Nowicka et al. 2017,
Bodenmiller et al. 2012): BCR cross-linking raises pS6 (most strongly), pPlcg2, pErk and pAkt
in B cells; pBtk as measured in these files falls.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers.phenotypes import BODENMILLER

import itme
from itme.errors import ItmeExclusionWarning

FOLDER = "bodenmiller2012_pbmc8_bcrxl_cytof"
TYPES = ["CD3", "CD45", "CD4", "CD20", "CD33", "CD123", "CD14", "IgM", "HLA-DR", "CD7"]
STATES = ["pNFkB", "pp38", "pStat5", "pAkt", "pStat1", "pSHP2", "pZap70", "pStat3", "pSlp76",
          "pBtk", "pPlcg2", "pErk", "pLat", "pS6"]  # fmt: skip
CONTRAST = ("condition", "BCRXL", "Ref")


@pytest.fixture(scope="module")
def bcrxl(shared_data):
    folder = shared_data / FOLDER
    meta = pd.read_csv(folder / "sample_table_bodenmiller_2012.csv")
    meta["sample_id"] = meta["shortname"]
    meta["patient_id"] = "donor" + meta["patient"].astype(str)
    meta = meta.drop(columns=["shortname", "patient"])
    var = itme.io.read_fcs(folder / meta["file_name"].iloc[0]).var
    panel = pd.DataFrame({"fcs_colname": var["channel"], "antigen": var["antigen"]})
    panel = panel[panel["antigen"].isin(TYPES + STATES)]
    panel["marker_class"] = ["type" if a in TYPES else "state" for a in panel["antigen"]]
    with pytest.warns(ItmeExclusionWarning, match="left out 11 channel"):  # barcodes, DNA, time
        adata = itme.io.read_cohort(meta, panel, base_dir=folder, unpanelled="drop")
    itme.pp.arcsinh(adata, cofactor=5.0)
    with warnings.catch_warnings():  # flowsom/numba chatter
        warnings.simplefilter("ignore")
        itme.tl.flowsom(adata, markers=TYPES, n_metaclusters=20, rng=1)
        itme.tl.annotate(adata, phenotypes=BODENMILLER)
    return adata


def _calls(table: pd.DataFrame, subset: str) -> pd.DataFrame:
    return table[table["subset"] == subset].set_index("marker")


@pytest.mark.shared_data
@pytest.mark.slow
def test_bcrxl_ds_lmm_finds_the_b_cell_signalling(bcrxl):
    with warnings.catch_warnings():  # a few small sample × subset cells may be left out
        warnings.simplefilter("ignore", ItmeExclusionWarning)
        res = itme.stats.differential_state(
            bcrxl, formula="~ condition", contrast=CONTRAST, random="patient_id", min_cells=10
        )
    b = _calls(res, "B cells")
    assert set(b.index) == set(STATES) and (b["n_samples"] == 16).all()
    # pS6 in B cells: the strongest call of the whole table, up by > 2 arcsinh units
    assert res.iloc[0][["subset", "marker"]].tolist() == ["B cells", "pS6"]
    # (t with 7 between-within df, as the paired t-test: padj 1e-5 for pS6, not z's 1e-111)
    assert b.loc["pS6", "logFC"] > 2.0 and b.loc["pS6", "padj"] < 1e-4
    for marker in ("pPlcg2", "pErk", "pAkt"):
        assert b.loc[marker, "logFC"] > 0.5 and b.loc[marker, "padj"] < 0.01, marker
    assert b.loc["pBtk", "logFC"] < -0.2 and b.loc["pBtk", "padj"] < 0.01
    # pS6 is the largest B-cell effect, and larger in B cells than in T cells
    assert b["logFC"].idxmax() == "pS6"
    for t in ("CD4 T", "CD8 T"):
        assert _calls(res, t).loc["pS6", "logFC"] < 0.5 * b.loc["pS6", "logFC"]
    rec = bcrxl.uns["differential_state"]
    assert rec["method"] == "lmm" and rec["random"] == "patient_id"
    assert set(rec["medians"]["sample_id"]) == set(bcrxl.obs["sample_id"].astype(str))


@pytest.mark.shared_data
@pytest.mark.slow
def test_bcrxl_ds_paired_fixed_effects_agree(bcrxl):
    """Donor as a fixed effect (the paired t-test per subset × marker) gives the same calls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeExclusionWarning)
        res = itme.stats.differential_state(
            bcrxl, formula="~ condition + patient_id", contrast=CONTRAST, method="lm",
            random=None, key_added=None,
        )  # fmt: skip
    b = _calls(res, "B cells")
    assert b.loc["pS6", "logFC"] > 2.0 and b.loc["pS6", "padj"] < 1e-3
    for marker in ("pPlcg2", "pErk", "pAkt"):
        assert b.loc[marker, "logFC"] > 0.5 and b.loc[marker, "padj"] < 0.01, marker
    assert b.loc["pBtk", "logFC"] < 0 and b.loc["pBtk", "padj"] < 0.01


@pytest.mark.shared_data
@pytest.mark.slow
def test_bcrxl_pbmds_separates_the_conditions(bcrxl):
    """CATALYST's pbMDS of this dataset: dimension 1 splits BCR-XL from Reference."""
    fig = itme.pl.pbmds(bcrxl, color="condition")
    offsets = {c.get_label(): np.asarray(c.get_offsets()) for c in fig.axes[0].collections}
    assert set(offsets) == {"BCRXL", "Ref"}
    stim, ref = offsets["BCRXL"][:, 0], offsets["Ref"][:, 0]
    assert len(stim) == len(ref) == 8
    assert stim.max() < ref.min() or ref.max() < stim.min()
