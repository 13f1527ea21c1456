"""scanpy's default workflow on itme's cells.h5ad: time and agreement (issue 14, item 2).

Draws ``--n`` events (default 20,000) of a run's ``cells.h5ad`` and runs ``sc.pp.neighbors``
(default representation and transformer), ``sc.tl.leiden`` and ``sc.tl.umap``, printing the
seconds of each (the first call of a process includes numba's compilation of pynndescent
and umap-learn; neighbors and UMAP are then timed again) and the majority agreement of the Leiden clusters with itme's subsets (share
of events whose cluster's most frequent subset is their own). ``--layout all`` first puts the
QC and technical channels back into ``X`` (``itme.pp.join_channels``: the layout before
issue 14) for comparison. Note ``uptime`` next to the numbers.

    python scripts/bench_scanpy.py demo_output [--n 20000] [--layout markers|all] [--seed 0]
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="a run folder holding cells.h5ad (e.g. demo_output)")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--layout", choices=("markers", "all"), default="markers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import scanpy as sc

    import itme

    backed = ad.read_h5ad(args.run / "cells.h5ad", backed="r")
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(backed.n_obs, size=min(args.n, backed.n_obs), replace=False))
    cells = backed[rows].to_memory()
    backed.file.close()
    if args.layout == "all":
        cells = itme.pp.join_channels(cells)
    print(
        f"{cells.n_obs:,} events × {cells.n_vars} variables in X ({args.layout}); "
        f"load {os.getloadavg()[0]:.2f}"
    )
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        sc.pp.neighbors(cells, random_state=args.seed)
        times["pp.neighbors"] = time.perf_counter() - t
        t = time.perf_counter()
        sc.tl.leiden(cells, flavor="igraph", n_iterations=2, directed=False, random_state=args.seed)
        times["tl.leiden"] = time.perf_counter() - t
        t = time.perf_counter()
        sc.tl.umap(cells, random_state=args.seed)
        times["tl.umap"] = time.perf_counter() - t
        # again in the same process: without numba's compilation of pynndescent and umap
        for step, call in (
            ("pp.neighbors", lambda: sc.pp.neighbors(cells, random_state=args.seed)),
            ("tl.umap", lambda: sc.tl.umap(cells, random_state=args.seed)),
        ):
            t = time.perf_counter()
            call()
            times[f"{step} (again)"] = time.perf_counter() - t
    table = pd.crosstab(cells.obs["leiden"], cells.obs["subset"])
    agreement = table.max(axis=1).sum() / table.to_numpy().sum()
    for step, seconds in times.items():
        print(f"{step:<22}{seconds:8.1f} s")
    print(f"Leiden clusters: {table.shape[0]}; itme subsets: {cells.obs['subset'].nunique()}")
    print(f"majority agreement with itme subsets: {agreement:.1%}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
