"""The demo's scores with fewer FlowSOM training events (issue 14: `cluster.train_cells`).

For each seed: ``run_demo`` with the demo's config (``cluster.train_cells`` 200,000), then a
copy of the run folder with ``cluster.train_cells`` changed, rerun from the cluster stage
(ingest, clean and batch kept); both scored by ``scripts/bench_demo.py``'s ``score``
(patient-cluster ARI, planted subsets recovered, null subsets called). Compare the tables
with ``scripts/compare_runs.py``. Results: docs/clustering.md.

    python scripts/bench_train_cells.py --out /tmp/itme_train_cells --seeds 1 3 4 5 --values 50000
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from pathlib import Path

import yaml
from bench_demo import score

from itme.pipeline import run, run_demo

KEYS = ("ARI", "subset_recall", "subsets_missed", "null_subsets_called")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/itme_train_cells"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--values", type=int, nargs="+", default=[50_000])
    ap.add_argument("--genes", type=int, default=5_000, help="RNA-seq genes (not scored here)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    for seed in args.seeds:
        base = args.out / f"s{seed}_default"
        if not (base / "run.json").exists():
            run_demo(base, n_genes=args.genes, seed=seed)
        res = {"default": {k: score(base)[k] for k in KEYS}}
        for value in args.values:
            out = args.out / f"s{seed}_{value}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out)
            config = yaml.safe_load((out / "config.yaml").read_text())
            config["cluster"]["train_cells"] = value
            (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            run(out / "config.yaml", out=out, from_stage="cluster")
            res[str(value)] = {k: score(out)[k] for k in KEYS}
        print(json.dumps({"seed": seed, **res}), flush=True)


if __name__ == "__main__":
    main()
