"""Benchmark of the RNA-seq steps (issue 6): DE with pydeseq2 and Hallmark GSEA.

Runs, on a simulated 38 × 20,000 cohort (24 / 5 / 9 patients in iTME clusters 1 / 2 / 3,
the paper's Hallmark shifts planted in clusters 2 and 3) and on the airway counts:

- ``default``: pydeseq2 with its default settings (DefaultInference over all CPUs, no
  pre-filter) — the reference ("slow") run;
- ``itme``: ``itme.rna.differential_expression`` with its defaults (DESeq2-vignette low-count
  pre-filter + vectorised Inference);
- GSEA: ``itme.rna.gsea`` on the Hallmark collection with 1,000 permutations.

Prints a table (time, genes tested, genes at padj < 0.1, Spearman of ``stat`` against the
default run on the genes itme keeps). Writes nothing.

Usage::

    /work/venv/bin/python scripts/bench_rna.py [--skip-default] [--airway DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from itme.datasets._counts import simulate_counts
from itme.io import hallmark_path, read_gmt
from itme.rna import differential_expression, gsea, read_counts

ROOT = Path(__file__).resolve().parents[1]
AIRWAY = ROOT.parent / "shared" / "data" / "airway_himes2014_counts"
UP = ["HALLMARK_E2F_TARGETS", "HALLMARK_G2M_CHECKPOINT", "HALLMARK_MYC_TARGETS_V1"]
DOWN = [
    "HALLMARK_INTERFERON_ALPHA_RESPONSE",
    "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING",
    "HALLMARK_TGF_BETA_SIGNALING",
]


def simulated(seed: int) -> ad.AnnData:
    groups = pd.Series(
        ["1"] * 24 + ["2"] * 5 + ["3"] * 9, index=[f"P{i:02d}" for i in range(1, 39)]
    )
    shifts = {s: 0.5 for s in UP} | {s: -0.5 for s in DOWN}
    sim = simulate_counts(
        groups,
        gene_sets=read_gmt(hallmark_path()),
        shifts={"2": shifts, "3": shifts},
        n_genes=20_000,
        rng=seed,
    )
    obs = pd.DataFrame(
        {"patient_id": sim.samples.index, "itme_cluster": sim.samples["group"]},
        index=sim.samples.index,
    )
    return ad.AnnData(X=sim.counts.to_numpy(), obs=obs, var=sim.genes[["gene_name"]])


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def compare(
    name: str, adata: ad.AnnData, skip_default: bool, rows: list, **de_kwargs
) -> pd.DataFrame:
    fast, t_fast = timed(differential_expression, adata, **de_kwargs)
    row = {
        "data": name,
        "step": "DE itme (pre-filter + vectorised)",
        "seconds": t_fast,
        "genes tested": len(fast),
        "padj<0.1": int((fast["padj"] < 0.1).sum()),
        "spearman(stat) vs default": np.nan,
    }
    if not skip_default:
        slow, t_slow = timed(
            differential_expression,
            adata,
            prefilter="none",
            inference="pydeseq2",
            n_cpus=os.cpu_count() or 1,
            **de_kwargs,
        )
        rows.append(
            {
                "data": name,
                "step": "DE pydeseq2 defaults",
                "seconds": t_slow,
                "genes tested": len(slow),
                "padj<0.1": int((slow["padj"] < 0.1).sum()),
                "spearman(stat) vs default": 1.0,
            }
        )
        common = fast.index
        row["spearman(stat) vs default"] = spearmanr(
            fast["stat"], slow.loc[common, "stat"], nan_policy="omit"
        )[0]
        row["speed-up"] = t_slow / t_fast
    rows.append(row)
    return fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-default", action="store_true", help="skip the slow pydeseq2 runs")
    parser.add_argument("--airway", type=Path, default=AIRWAY, help="airway counts folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows: list[dict] = []
    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    cohort = simulated(args.seed)
    res = compare(
        "sim 38x20000",
        cohort,
        args.skip_default,
        rows,
        contrast=("itme_cluster", ["2", "3"], "1"),
    )
    out, t_gsea = timed(gsea, res, gene_sets="hallmark", permutations=1000, rng=args.seed)
    planted = out.set_index("Term")
    ok = bool(
        (planted.loc[UP, "FDR"] < 0.05).all()
        and (planted.loc[UP, "NES"] > 0).all()
        and (planted.loc[DOWN, "FDR"] < 0.05).all()
        and (planted.loc[DOWN, "NES"] < 0).all()
    )
    rows.append(
        {
            "data": "sim 38x20000",
            "step": f"GSEA Hallmark x1000 perm (planted found: {ok})",
            "seconds": t_gsea,
            "genes tested": out.attrs["n_genes_ranked"],
            "padj<0.1": int((out["FDR"] < 0.05).sum()),
        }
    )
    if (args.airway / "airway_cts.tsv").is_file():
        meta = pd.read_csv(args.airway / "airway_metadata.tsv", sep="\t")
        clinical = meta.rename(columns={"Run": "patient_id"})[["patient_id", "cell", "dex"]]
        airway, t_read = timed(read_counts, args.airway / "airway_cts.tsv", clinical=clinical)
        rows.append({"data": "airway 8x64102", "step": "read_counts", "seconds": t_read})
        compare(
            "airway 8x64102",
            airway,
            args.skip_default,
            rows,
            contrast=("dex", "trt", "untrt"),
            design="~ cell + dex",
        )
    table = pd.DataFrame(rows)
    for col in ("genes tested", "padj<0.1"):
        table[col] = table[col].astype("Int64")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        formatters = {"spearman(stat) vs default": lambda v: f"{v:.5f}"}
        print(
            table.to_string(index=False, formatters=formatters, float_format=lambda v: f"{v:.4g}")
        )
    end = os.getloadavg()
    print(
        f"load average after the run: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} on "
        f"{os.cpu_count()} CPUs (for the GSEA row, 'padj<0.1' = sets at FDR < 0.05)"
    )


if __name__ == "__main__":
    main()
