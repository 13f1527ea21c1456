"""Benchmark of the RNA-seq steps: itme's DE against R DESeq2 (time and agreement), GSEA.

Golden datasets (tests/golden, made by scripts/golden/make_golden.sh): for each, runs
``itme.rna.differential_expression`` with its defaults (after one warm-up run, so imports
are not timed; R's time likewise excludes loading the packages) and prints the genes at
padj < 0.1 in R and in itme, their Jaccard index, the Spearman correlation of ``stat``, the
max |Δ log2FC| over genes with baseMean > 10, itme's time, and R's time for ``DESeq()`` +
``results()`` — as recorded in tests/golden/deseq2/summary.tsv, or measured now with
``--r-live`` (runs scripts/golden/deseq2_golden.R into a temporary folder right before, on the
same machine; needs R with DESeq2). ``--shrink`` also times ``lfc_shrink=True``.

``--simulated`` adds the older benchmark: a simulated 38 × 20,000 cohort (24 / 5 / 9, 2+3 vs
1) with pydeseq2's own defaults (DefaultInference, no R rules) for comparison, and Hallmark
GSEA with 1,000 permutations.

Usage::

    PYTHONPATH=$PWD /work/main/.venv/bin/python scripts/bench_rna.py [--r-live] [--shrink]
        [--simulated] [--airway DIR] [--datasets a,b]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.golden import DESEQ2, DESIGNS, compare_de, load_de  # noqa: E402

from itme.datasets._counts import simulate_counts  # noqa: E402
from itme.io import hallmark_path, read_gmt  # noqa: E402
from itme.rna import differential_expression, gsea  # noqa: E402

AIRWAY = ROOT.parent / "shared" / "data" / "airway_himes2014_counts"
UP = ["HALLMARK_E2F_TARGETS", "HALLMARK_G2M_CHECKPOINT", "HALLMARK_MYC_TARGETS_V1"]
DOWN = [
    "HALLMARK_INTERFERON_ALPHA_RESPONSE",
    "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING",
    "HALLMARK_TGF_BETA_SIGNALING",
]


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def r_times(live: bool, airway: Path) -> pd.Series:
    """R's seconds for DESeq() + results() per dataset: recorded, or measured now."""
    if not live:
        return pd.read_csv(DESEQ2 / "summary.tsv", sep="\t", index_col=0)["seconds_deseq_results"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["Rscript", str(ROOT / "scripts/golden/deseq2_golden.R"), str(airway), tmp],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return pd.read_csv(Path(tmp) / "summary.tsv", sep="\t", index_col=0)[
            "seconds_deseq_results"
        ]


def golden_rows(names: list[str], airway: Path, live: bool, shrink: bool) -> list[dict]:
    r_sec = r_times(live, airway)
    rows = []
    warm = load_de("pasilla")
    timed(differential_expression, warm.adata, contrast=warm.contrast, design=warm.design)
    for name in names:
        if name == "airway" and not (airway / "airway_cts.tsv").is_file():
            continue
        g = load_de(name, airway)
        res, sec = timed(differential_expression, g.adata, contrast=g.contrast, design=g.design)
        c = compare_de(res, g.genes)
        row = {
            "data": f"{name} {g.adata.n_obs}x{g.adata.n_vars}",
            "design": g.design,
            "df": int(g.summary["residual_df"]),
            "R padj<0.1": c["n_r"],
            "itme padj<0.1": c["n_itme"],
            "Jaccard": c["jaccard"],
            "Spearman(stat)": c["spearman"],
            "max|dLFC| bm>10": c["max_dlfc"],
            "itme s": sec,
            "R s": float(r_sec.get(name, np.nan)),
        }
        if shrink:
            _, row["itme+shrink s"] = timed(
                differential_expression,
                g.adata,
                contrast=g.contrast,
                design=g.design,
                lfc_shrink=True,
            )
        rows.append(row)
    return rows


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


def simulated_rows(seed: int) -> list[dict]:
    """Simulated 38 × 20,000: itme defaults vs pydeseq2's own defaults; GSEA."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    cohort = simulated(seed)
    contrast = ("itme_cluster", ["2", "3"], "1")
    fast, t_fast = timed(differential_expression, cohort, contrast=contrast)
    frame = cohort.obs.assign(itme_cluster=np.where(cohort.obs["itme_cluster"] == "1", "1", "2+3"))
    counts = pd.DataFrame(cohort.X, index=cohort.obs_names, columns=cohort.var_names)
    counts = counts.loc[:, counts.sum() > 0]

    def pydeseq2_defaults():
        dds = DeseqDataSet(
            counts=counts, metadata=frame, design="~ itme_cluster", quiet=True,
            n_cpus=os.cpu_count(),
        )  # fmt: skip
        dds.deseq2()
        stats = DeseqStats(dds, contrast=["itme_cluster", "2+3", "1"], quiet=True)
        stats.summary()
        return stats.results_df

    slow, t_slow = timed(pydeseq2_defaults)
    common = fast.index.intersection(slow.index)
    rho = spearmanr(fast.loc[common, "stat"], slow.loc[common, "stat"], nan_policy="omit")[0]
    out, t_gsea = timed(gsea, fast, gene_sets="hallmark", permutations=1000, rng=seed)
    planted = out.set_index("Term")
    ok = bool(
        (planted.loc[UP, "FDR"] < 0.05).all()
        and (planted.loc[UP, "NES"] > 0).all()
        and (planted.loc[DOWN, "FDR"] < 0.05).all()
        and (planted.loc[DOWN, "NES"] < 0).all()
    )
    return [
        {
            "step": "DE pydeseq2 defaults",
            "seconds": t_slow,
            "padj<0.1": int((slow.padj < 0.1).sum()),
        },
        {
            "step": f"DE itme defaults (Spearman stat vs pydeseq2 {rho:.5f})",
            "seconds": t_fast,
            "padj<0.1": int((fast["padj"] < 0.1).sum()),
        },
        {
            "step": f"GSEA Hallmark x1000 perm (planted found: {ok})",
            "seconds": t_gsea,
            "padj<0.1": int((out["FDR"] < 0.05).sum()),
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airway", type=Path, default=AIRWAY, help="airway counts folder")
    parser.add_argument("--datasets", default=",".join(DESIGNS), help="golden datasets")
    parser.add_argument("--r-live", action="store_true", help="time R now (needs Rscript)")
    parser.add_argument("--shrink", action="store_true", help="also time lfc_shrink=True")
    parser.add_argument("--simulated", action="store_true", help="simulated 38x20000 + GSEA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    rows = golden_rows(args.datasets.split(","), args.airway, args.r_live, args.shrink)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            table.to_string(
                index=False,
                formatters={
                    "Jaccard": "{:.4f}".format,
                    "Spearman(stat)": "{:.6f}".format,
                    "max|dLFC| bm>10": "{:.2e}".format,
                },
                float_format=lambda v: f"{v:.2f}",
            )
        )
    if args.simulated:
        print(
            pd.DataFrame(simulated_rows(args.seed)).to_string(
                index=False, float_format="{:.2f}".format
            )
        )
    end = os.getloadavg()
    print(
        f"load average after the run: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} on "
        f"{os.cpu_count()} CPUs; R times: {'measured now' if args.r_live else 'recorded'}"
    )


if __name__ == "__main__":
    main()
