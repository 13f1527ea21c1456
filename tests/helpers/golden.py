"""Golden files from R (tests/golden, made by scripts/golden/make_golden.sh): loaders, metrics.

The DESeq2 datasets are rebuilt here as itme AnnData objects exactly as the R script built
them (same samples, same factors, same contrast), so a test only has to call
:func:`itme.rna.differential_expression` and compare with :func:`compare_de`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
INPUTS = GOLDEN / "inputs"
DESEQ2 = GOLDEN / "deseq2"
SURVIVAL = GOLDEN / "survival"

#: dataset → (design, contrast) as in scripts/golden/deseq2_golden.R
DESIGNS = {
    "airway": ("~ cell + dex", ("dex", "trt", "untrt")),
    "pasilla_type": ("~ type + condition", ("condition", "treated", "untreated")),
    "pasilla": ("~ condition", ("condition", "treated", "untreated")),
    "simcohort_merged": ("~ itme_cluster", ("itme_cluster", ["2", "3"], "1")),
    "simcohort_covariates": ("~ sex + age + itme_cluster", ("itme_cluster", ["2", "3"], "1")),
    "simcohort_3level": ("~ itme_cluster", ("itme_cluster", "3", "1")),
}


@dataclass
class GoldenDE:
    """One DESeq2 golden dataset: itme input and R's answers."""

    name: str
    adata: ad.AnnData
    design: str
    contrast: tuple
    genes: pd.DataFrame  # R per gene (index gene_id)
    samples: pd.DataFrame  # R size factors (index sample)
    filter: pd.DataFrame  # R independent filtering: theta, numRej, lowess
    summary: pd.Series  # R scalars
    extra: dict = field(default_factory=dict)


def _counts_adata(path: Path, obs: pd.DataFrame) -> ad.AnnData:
    table = pd.read_csv(path, sep="\t", index_col=0)
    names = table.pop("gene_name") if "gene_name" in table.columns else None
    table = table[obs.index]
    var = pd.DataFrame(index=table.index.astype(str))
    var["gene_name"] = names.to_numpy() if names is not None else var.index.to_numpy()
    return ad.AnnData(X=table.to_numpy(dtype=np.int64).T, obs=obs, var=var)


def load_input(name: str, airway_dir: Path | None = None) -> ad.AnnData:
    """itme AnnData of a golden dataset (airway needs the shared data folder)."""
    if name == "airway":
        if airway_dir is None:
            raise FileNotFoundError("airway needs the shared data folder")
        meta = pd.read_csv(airway_dir / "airway_metadata.tsv", sep="\t")
        obs = pd.DataFrame(
            {"patient_id": meta["Run"], "cell": meta["cell"], "dex": meta["dex"]}
        ).set_index(meta["Run"].to_numpy())
        return _counts_adata(airway_dir / "airway_cts.tsv", obs)
    if name.startswith("pasilla"):
        anno = pd.read_csv(INPUTS / "pasilla_sample_annotation.csv")
        anno.index = anno["file"].str.replace(r"fb$", "", regex=True).to_numpy()
        obs = anno[["condition", "type"]].copy()
        obs.insert(0, "patient_id", obs.index.to_numpy())
        adata = _counts_adata(INPUTS / "pasilla_gene_counts.tsv.gz", obs)
        order = pd.read_csv(INPUTS / "pasilla_gene_counts.tsv.gz", sep="\t", nrows=0).columns
        return adata[[c for c in order[1:]]].copy()
    clinical = pd.read_csv(INPUTS / "simcohort_clinical.tsv", sep="\t", dtype={"itme_cluster": str})
    clinical = clinical.dropna(subset=["itme_cluster"])
    obs = clinical.set_index(clinical["rnaseq_id"].to_numpy())[
        ["patient_id", "itme_cluster", "sex", "age"]
    ]
    return _counts_adata(INPUTS / "simcohort_counts.tsv.gz", obs)


def load_de(name: str, airway_dir: Path | None = None) -> GoldenDE:
    """Input and R results of DESeq2 golden dataset ``name``."""
    design, contrast = DESIGNS[name]
    genes = pd.read_csv(DESEQ2 / f"{name}_genes.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(DESEQ2 / f"{name}_samples.tsv", sep="\t", index_col=0)
    filt = pd.read_csv(DESEQ2 / f"{name}_filter.tsv", sep="\t")
    summary = pd.read_csv(DESEQ2 / "summary.tsv", sep="\t", index_col=0).loc[name]
    genes["dispFit"] = summary["asymptDisp"] + summary["extraPois"] / genes["baseMean"]
    return GoldenDE(
        name=name,
        adata=load_input(name, airway_dir),
        design=design,
        contrast=contrast,
        genes=genes,
        samples=samples,
        filter=filt,
        summary=summary,
    )


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def compare_de(res: pd.DataFrame, r: pd.DataFrame, alpha: float = 0.1) -> dict:
    """The issue's agreement numbers between an itme result table and R's ``results()``.

    ``n_r`` / ``n_itme``: genes at ``padj < alpha``; ``jaccard`` of those sets; ``spearman``
    of ``stat`` over genes with a statistic in both; ``max_dlfc``: max |Δ log2FC| over genes
    with R ``baseMean > 10``; ``n_missing``: R genes absent from the itme table.
    """
    common = r.index.intersection(res.index)
    sig_r = set(r.index[r["padj"] < alpha])
    sig_i = set(res.index[res["padj"] < alpha])
    both = r.loc[common, "stat"].notna() & res.loc[common, "stat"].notna()
    cc = common[both.to_numpy()]
    big = cc[(r.loc[cc, "baseMean"] > 10).to_numpy()]
    return {
        "n_r": len(sig_r),
        "n_itme": len(sig_i),
        "jaccard": jaccard(sig_r, sig_i),
        "spearman": float(spearmanr(r.loc[cc, "stat"], res.loc[cc, "stat"])[0]),
        "max_dlfc": float(
            np.abs(r.loc[big, "log2FoldChange"] - res.loc[big, "log2FoldChange"]).max()
        ),
        "n_missing": int(len(r.index.difference(res.index))),
    }
