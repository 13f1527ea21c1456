"""itme.rna.gsea and read_gmt, plus the shipped Hallmark collection."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.io import read_gmt
from itme.rna import gsea

HALLMARK = Path(str(resources.files("itme") / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"))


def _results(seed, n=2000, shift=1.5):
    """Ranked 'DE results' with an up set, a down set and a null set of 60 genes each."""
    gen = np.random.default_rng(seed)
    stat = gen.normal(size=n)
    stat[:60] += shift
    stat[60:120] -= shift
    names = [f"GENE{i}" for i in range(n)]
    res = pd.DataFrame(
        {"gene_name": names, "stat": stat}, index=pd.Index([f"ENSG{i:011d}" for i in range(n)])
    )
    sets = {"UP_SET": names[:60], "DOWN_SET": names[60:120], "NULL_SET": names[200:260]}
    return res, sets


def test_shipped_hallmark_is_the_staged_msigdb_v7_file():
    digest = hashlib.sha256(HALLMARK.read_bytes()).hexdigest()
    # sha256 from ../shared/data/msigdb_hallmark_v7.0/PROVENANCE.md
    assert digest == "4803c09aae50bbd96d53fc681bd5545a4c89278993c15145dd7b7c994f893516"
    sets = read_gmt(HALLMARK)
    assert len(sets) == 50
    assert sum(len(v) for v in sets.values()) == 7322
    assert "HALLMARK_E2F_TARGETS" in sets and "MCM2" in sets["HALLMARK_E2F_TARGETS"]
    readme = (HALLMARK.parent / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Liberzon" in readme


def test_read_gmt_errors(tmp_path):
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdesc\tG1\tG2\nSET_B\tdesc\n")
    with pytest.raises(ItmeInputError, match="line 2.*at least one gene"):
        read_gmt(bad)
    dup = tmp_path / "dup.gmt"
    dup.write_text("S\td\tA\nS\td\tB\n")
    with pytest.raises(ItmeInputError, match="'S' defined twice"):
        read_gmt(dup)
    ok = tmp_path / "ok.gmt"
    ok.write_text("S\td\tA\tA\t\tB\n\n")
    assert read_gmt(ok) == {"S": ["A", "B"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_sets_found_with_the_right_sign(seed):
    res, sets = _results(seed)
    out = gsea(res, gene_sets=sets, permutations=200, rng=seed).set_index("Term")
    assert out.loc["UP_SET", "NES"] > 1.5 and out.loc["UP_SET", "FDR"] < 0.05
    assert out.loc["DOWN_SET", "NES"] < -1.5 and out.loc["DOWN_SET", "FDR"] < 0.05
    assert abs(out.loc["NULL_SET", "NES"]) < 2.5
    assert out.loc["UP_SET", "matched_size"] == 60
    assert out.loc["UP_SET", "n_leading_edge"] > 20
    assert set(out.loc["UP_SET", "leading_edge"].split(";")) <= set(sets["UP_SET"])


def test_same_rng_same_output_and_seed_recorded():
    res, sets = _results(5)
    a = gsea(res, gene_sets=sets, permutations=100, rng=42, threads=1)
    b = gsea(res, gene_sets=sets, permutations=100, rng=42, threads=2)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["seed"] == 42
    c = gsea(res, gene_sets=sets, permutations=100, rng=np.random.default_rng(3))
    d = gsea(res, gene_sets=sets, permutations=100, rng=np.random.default_rng(3))
    pd.testing.assert_frame_equal(c, d)
    assert c.attrs["seed"] == d.attrs["seed"]


def test_gmt_path_and_hallmark_name(tmp_path):
    res, sets = _results(6)
    gmt = tmp_path / "custom.gmt"
    gmt.write_text("".join(f"{k}\tna\t" + "\t".join(v) + "\n" for k, v in sets.items()))
    out = gsea(res, gene_sets=gmt, permutations=50, rng=0)
    assert out.attrs["gene_sets"] == str(gmt)
    assert set(out["Term"]) == set(sets)
    with pytest.raises(ItmeParameterError, match="gene_sets"):
        gsea(res, gene_sets="no_such_collection", rng=0)


def test_unmapped_and_duplicate_symbols_are_reported():
    res, sets = _results(7)
    res.loc[res.index[1000:1500], "gene_name"] = res.index[1000:1500]  # Ensembl id, no symbol
    res.loc[res.index[1500:1600], "gene_name"] = None
    res.loc[res.index[0], "stat"] = np.nan
    # GENE5 twice: the larger |stat| wins
    res.loc[res.index[1700], ["gene_name", "stat"]] = ["GENE5", 50.0]
    with pytest.warns(ItmeExclusionWarning, match=r"600 \(30\.0%\) have no gene symbol"):
        out = gsea(res, gene_sets=sets, permutations=50, rng=0)
    assert out.attrs["n_unmapped"] == 600
    assert out.attrs["unmapped_share"] == pytest.approx(0.3)
    assert out.attrs["n_missing_rank"] == 1
    assert out.attrs["n_duplicate_symbols"] == 1
    assert out.attrs["n_genes_ranked"] == 2000 - 600 - 1 - 1
    assert "GENE5" in out.set_index("Term").loc["UP_SET", "leading_edge"].split(";")


def test_gene_sets_without_overlap_is_a_clear_error():
    res, _ = _results(8)
    with pytest.raises(ItmeInputError, match="no gene of any gene set is among the ranked genes"):
        gsea(res, gene_sets={"OTHER": ["ENSG1", "ENSG2"]}, rng=0)
    with pytest.raises(ItmeInputError, match="no gene of any gene set"):
        gsea(res, gene_sets="hallmark", rng=0)  # GENE<n> symbols are not Hallmark genes


def test_small_sets_are_skipped_or_rejected():
    res, sets = _results(9)
    sets["TINY"] = ["GENE1", "GENE2"]
    out = gsea(res, gene_sets=sets, permutations=50, rng=0)
    assert "TINY" not in set(out["Term"]) and out.attrs["n_sets_skipped"] == 1
    with pytest.raises(ItmeInputError, match="no gene set has an allowed number"):
        gsea(res, gene_sets={"TINY": ["GENE1", "GENE2"]}, rng=0)


def test_bad_arguments():
    res, sets = _results(0)
    with pytest.raises(ItmeParameterError, match="rank_by"):
        gsea(res, gene_sets=sets, rank_by="log2FoldChange", rng=0)
    with pytest.raises(ItmeParameterError, match="permutations"):
        gsea(res, gene_sets=sets, permutations=0, rng=0)
    with pytest.raises(ItmeParameterError, match="min_size"):
        gsea(res, gene_sets=sets, min_size=30, max_size=20, rng=0)
    with pytest.raises(ItmeParameterError, match=r"parameter 'weight': expected a number >= 0"):
        gsea(res, gene_sets=sets, weight=-1, rng=0)


def test_rank_by_shrunken_fold_change():
    res, sets = _results(3)
    # shrunken fold changes: same direction as the statistic, different scale
    res["log2FoldChange_shrunk"] = res["stat"] * 0.2
    out = gsea(res, gene_sets=sets, rank_by="log2FoldChange_shrunk", min_size=10, rng=1)
    assert out.attrs["rank_by"] == "log2FoldChange_shrunk"
    table = out.set_index("Term")
    assert table.loc["UP_SET", "NES"] > 1.5 and table.loc["DOWN_SET", "NES"] < -1.5
    assert table.loc["UP_SET", "FDR"] < 0.05 and table.loc["NULL_SET", "FDR"] > 0.05
    with pytest.raises(ItmeParameterError, match=r"lfc_shrink=True"):
        gsea(res.drop(columns="log2FoldChange_shrunk"), gene_sets=sets,
             rank_by="log2FoldChange_shrunk", rng=0)  # fmt: skip
