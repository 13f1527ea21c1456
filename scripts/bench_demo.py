"""Benchmark and score `itme demo` (issue: pipeline).

Targets: `itme demo` with its defaults (39 patients, 20,000 events per file) finishes in
≤ 5 minutes on this machine; against its truth file it recovers the planted iTME clusters
(ARI ≥ 0.9), the planted differential subsets (recall ≥ 0.9 at q < 0.05), the planted pathways
(right sign, FDR < 0.05) and calls no cytokine significant.

    python scripts/bench_demo.py [--out /tmp/itme_bench_demo] [--patients 39] [--cells 20000]
    python scripts/bench_demo.py --patients 30 --cells 3000 --genes 6000 --seed 11  # small
    python scripts/bench_demo.py --score-only demo_output     # score an existing run

It prints the wall time of the whole command and of the pipeline's stages (``run.json``; the
demo target of issue 14 is ≤ 60 s for the stages on a quiet 2-core machine), the CPU seconds
of the command and its children, and the load average before and after (the machine may be
shared: wall times are only comparable at a low load). It also counts the warnings the run
prints (issue 14: a clean demo prints at most 3, one line per fact) and lists them. The demo runs as ``python -c "from itme.cli import entry_point;
entry_point()"`` from the repository root, so the checkout's code is the one measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import adjusted_rand_score


def score(out: Path) -> dict:
    truth = json.loads((out / "input" / "truth.json").read_text())
    clusters = pd.read_csv(out / "tables" / "itme_clusters.csv", index_col=0)
    planted = clusters["patient_id"].map(truth["itme_cluster"])
    tests = pd.read_csv(out / "tables" / "subset_tests.csv")
    called = set(tests.loc[tests["padj"] < 0.05, "feature"])
    diff, null = set(truth["differential_subsets"]), set(truth["null_subsets"])
    gsea = pd.read_csv(out / "tables" / "gsea_hallmark.csv").set_index("Term")
    pathways = {
        term: {
            "expected": d,
            "NES": round(float(gsea.loc[term, "NES"]), 2),
            "FDR": float(gsea.loc[term, "FDR"]),
        }
        for term, d in truth["pathways"].items()
    }
    cyt = pd.read_csv(out / "tables" / "cytokine_tests.csv")
    run = json.loads((out / "run.json").read_text())
    return {
        "ARI": adjusted_rand_score(planted, clusters["itme_cluster"]),
        "cluster_table": pd.crosstab(planted, clusters["itme_cluster"]).to_dict(),
        "subset_recall": len(called & diff) / len(diff),
        "subsets_missed": sorted(diff - called),
        "null_subsets_called": sorted(called & null),
        "pathways_right": all(
            p["FDR"] < 0.05 and (p["NES"] > 0) == (p["expected"] == "up") for p in pathways.values()
        ),
        "pathways": pathways,
        "cytokines_called": int((cyt["padj"] < 0.05).sum()),
        "stage_seconds": {s["name"]: s["seconds"] for s in run["stages"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/itme_bench_demo"))
    ap.add_argument("--patients", type=int, default=39)
    ap.add_argument("--cells", type=int, default=20_000)
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--score-only", type=Path)
    args = ap.parse_args()
    if args.score_only:
        print(json.dumps(score(args.score_only), indent=2, default=str))
        return
    if args.out.exists():
        shutil.rmtree(args.out)
    cmd = [
        sys.executable,
        "-c",
        "from itme.cli import entry_point; entry_point()",
        "-q",
        "demo",
        "--out",
        str(args.out),
        "--patients",
        str(args.patients),
        "--cells",
        str(args.cells),
        "--genes",
        str(args.genes),
        "--seed",
        str(args.seed),
    ]
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    wall = time.perf_counter() - t
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = children.ru_maxrss / 1024
    cpu = children.ru_utime + children.ru_stime
    if proc.returncode != 0:
        print(proc.stderr[-4000:])
        raise SystemExit(proc.returncode)
    result = score(args.out)
    warned = [ln for ln in proc.stderr.splitlines() if " WARNING " in ln or "[WARNING]" in ln]
    result["warnings_printed"] = len(warned)
    result["warnings"] = warned
    result["pipeline_seconds"] = round(sum(result["stage_seconds"].values()), 1)
    print(
        f"itme demo ({args.patients} patients × {args.cells:,} events): {wall:.0f} s wall "
        f"({result['pipeline_seconds']:.0f} s in the pipeline's stages), {cpu:.0f} CPU-s, "
        f"peak RSS {peak:.0f} MB; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
