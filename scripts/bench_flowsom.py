"""Benchmark of itme.tl.flowsom against flowsom.FlowSOM defaults: accuracy, speed, memory.

Run: ``/work/venv/bin/python scripts/bench_flowsom.py [--quick] [--cells 4000000]``

Three parts, printed as small tables (nothing is written into the repository; the large
matrix lives in a temporary directory that is removed at the end):

A. Accuracy on FlowSOM's reference file (../shared/data/flowsom_68983_flow_gated: mouse BAL,
   flow cytometry, manual gates per cell; the 7 channels of the FlowSOM vignette), mean F1
   with Hungarian matching (Weber & Robinson 2016) over seeds, for k = 6 (the number of gated
   populations) and k = 10 (the vignette's metaclusters).
B. Accuracy on a simulated labelled lymphoid sample (itme.datasets._cells following the
   shipped lymphoid table; 30 type markers).
C. Speed and peak memory on a large simulated matrix (default 4,000,000 events x 30 type
   markers), each method in its own process (numba compiled on a tiny warm-up first, so
   compile time is not counted): itme.tl.flowsom with defaults, itme with flowsom's batch SOM,
   and flowsom.FlowSOM(adata, n_clusters=k, seed=s) with its defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers.metrics: the accuracy measures of the tests
SHARED = Path(os.environ.get("ITME_SHARED_DATA", ROOT.parent / "shared" / "data"))
FLOW = SHARED / "flowsom_68983_flow_gated"
FLOW_COLS = [
    8,
    11,
    13,
    14,
    15,
    16,
    17,
]  # CD8, TCRgd, TCRb, NK1.1, CD4, CD19, CD3 (FlowSOM vignette)


def _quiet():
    warnings.filterwarnings("ignore")
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_flow_reference():
    try:
        from itme.io import read_fcs

        X = np.asarray(read_fcs(FLOW / "ff.fcs").X, dtype=np.float32)
    except ImportError:
        import flowio

        fd = flowio.FlowData(str(FLOW / "ff.fcs"), ignore_offset_error=True)
        X = np.reshape(np.array(fd.events, dtype=np.float32), (-1, fd.channel_count))
    labels = pd.read_csv(FLOW / "gating_result.csv", header=None)[0].to_numpy()
    return X, labels


def simulate(n_cells: int, seed: int):
    from itme.datasets._cells import simulate_cells
    from itme.io import read_phenotypes

    table = read_phenotypes("lymphoid_visram2021")
    panel = pd.read_csv(ROOT / "itme" / "data" / "panels" / "lymphoid_visram2021.csv")
    channels = list(panel.loc[panel["marker_class"] == "type", "antigen"])
    rng = np.random.default_rng(seed)
    props = {s.name: rng.uniform(0.3, 3.0) for s in table.subsets}
    props.update({"Monocytes": 15.0, "Other CD45+": 10.0, "CD4 T other": 2.0, "CD8 T other": 1.5})
    raw, labels = simulate_cells(table, channels, n_cells, props, rng=rng)
    np.divide(raw, 5.0, out=raw)
    np.arcsinh(raw, out=raw)
    return raw, labels, channels


def run_flowsom_default(X, k, seed, cols=None):
    import anndata as ad
    import flowsom

    t0 = time.perf_counter()
    fs = flowsom.FlowSOM(ad.AnnData(X), cols_to_use=cols, n_clusters=k, seed=seed)
    labels = fs.get_cell_data().obs["metaclustering"].to_numpy()
    return labels, time.perf_counter() - t0


def run_itme(X, k, seed, cols=None, **kw):
    from itme.tl import FlowSOMModel

    t0 = time.perf_counter()
    labels = FlowSOMModel(n_metaclusters=k, rng=seed, **kw).fit_predict(X, columns=cols)
    return labels, time.perf_counter() - t0


def accuracy_table(X, truth, ks, seeds, cols=None, variants=None):
    from helpers.metrics import f1_hungarian

    variants = variants or {"itme (default)": {}}
    rows = []
    for k in ks:
        for seed in seeds:
            lab, t = run_flowsom_default(X.copy(), k, seed, cols)
            rows.append(("flowsom.FlowSOM defaults", k, seed, f1_hungarian(truth, lab)[0], t))
            for name, kw in variants.items():
                lab, t = run_itme(X, k, seed, cols, **kw)
                rows.append((name, k, seed, f1_hungarian(truth, lab)[0], t))
    df = pd.DataFrame(rows, columns=["method", "k", "seed", "F1", "seconds"])
    return df.groupby(["k", "method"], sort=False).agg(
        F1_mean=("F1", "mean"),
        F1_sd=("F1", "std"),
        F1_min=("F1", "min"),
        seconds=("seconds", "mean"),
        runs=("F1", "size"),
    )


def child(mode: str, path: str, k: int, seed: int) -> None:
    """One method on the large matrix, in a fresh process; prints one JSON line."""
    _quiet()
    X = np.load(Path(path) / "X.npy")
    truth = np.load(Path(path) / "y.npy", allow_pickle=True)
    small = np.ascontiguousarray(X[:2000])
    import anndata as ad
    from helpers.metrics import f1_hungarian

    import itme

    if mode == "flowsom":
        run_flowsom_default(small.copy(), 5, 0)  # compile numba kernels
    else:
        run_itme(small, 5, 0, som="batch" if mode == "itme-batch" else "online", train_cells=None)
    # the cells AnnData exists before the clustering step (as after io.read_cohort)
    adata = ad.AnnData(X)
    adata.var["marker_class"] = pd.Categorical(["type"] * X.shape[1])
    adata.obs["sample_id"] = pd.Categorical(np.arange(X.shape[0]) // 100_000)
    adata.uns["arcsinh"] = {"cofactor": np.full(X.shape[1], 5.0)}
    base, peak_before = _rss_mb(), _peak_mb()
    t0 = time.perf_counter()
    if mode == "flowsom":
        import flowsom

        fs = flowsom.FlowSOM(adata, n_clusters=k, seed=seed)
        labels = fs.get_cell_data().obs["metaclustering"].to_numpy()
    else:
        kw = {"som": "batch", "train_cells": None} if mode == "itme-batch" else {}
        itme.tl.flowsom(adata, n_metaclusters=k, rng=seed, **kw)
        labels = adata.obs["metacluster"].to_numpy()
    seconds = time.perf_counter() - t0
    out = {
        "mode": mode,
        "seconds": seconds,
        "rss_before_mb": base,
        "peak_mb": _peak_mb(),
        "peak_before_mb": peak_before,
        "matrix_mb": X.nbytes / 2**20,
        "F1": f1_hungarian(truth, labels)[0],
    }
    sys.stdout.write(json.dumps(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds and 400,000 events in part C")
    ap.add_argument("--cells", type=int, default=4_000_000, help="events in part C")
    ap.add_argument("--skip", default="", help="parts to skip, e.g. 'C' or 'AB'")
    ap.add_argument("--seeds-c", type=int, default=2, help="seeds per method in part C")
    ap.add_argument(
        "--modes-c",
        default="itme,itme-batch,flowsom",
        help="methods run in part C (comma-separated)",
    )
    ap.add_argument(
        "--child", nargs=4, metavar=("MODE", "DIR", "K", "SEED"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        mode, path, k, seed = args.child
        child(mode, path, int(k), int(seed))
        return
    _quiet()
    pd.set_option("display.width", 160)
    seeds = range(3) if args.quick else range(10)
    print(f"load average at start: {os.getloadavg()}")

    if "A" not in args.skip and FLOW.is_dir():
        X, truth = read_flow_reference()
        variants = {
            "itme (default)": {},
            "itme metaclustering=consensus": {"metaclustering": "consensus"},
            "itme som=batch": {"som": "batch"},
        }
        print(
            f"\nA. FlowSOM reference file 68983 ({X.shape[0]} events, 7 markers, Unlabeled left out)"
        )
        print(accuracy_table(X, truth, [6, 10], seeds, FLOW_COLS, variants).round(3).to_string())

    if "B" not in args.skip:
        n = 60_000 if args.quick else 300_000
        seeds_b = range(3) if args.quick else range(8)  # F1 at k = 31 varies by ~0.03 between seeds
        X, truth, _ = simulate(n, seed=11)
        k = len(set(truth))
        variants = {
            "itme (default)": {},
            "itme metaclustering=consensus": {"metaclustering": "consensus"},
            "itme train_cells=50000": {"train_cells": 50_000},
        }
        print(
            f"\nB. simulated lymphoid sample ({n} events x {X.shape[1]} markers, {k} populations, k = {k})"
        )
        print(accuracy_table(X, truth, [k], seeds_b, None, variants).round(3).to_string())

    if "C" not in args.skip:
        n = 400_000 if args.quick else args.cells
        with tempfile.TemporaryDirectory(prefix="itme_bench_") as tmp:
            X, truth, _ = simulate(n, seed=12)
            k = len(set(truth))
            np.save(Path(tmp) / "X.npy", X)
            np.save(Path(tmp) / "y.npy", truth.astype(object), allow_pickle=True)
            del X
            print(
                f"\nC. speed and memory: {n} events x 30 type markers, k = {k}, one process per run"
            )
            rows = []
            n_seeds = 1 if args.quick else args.seeds_c
            runs = [("itme", s) for s in range(n_seeds)] + [("itme-batch", 0)]
            runs += [("flowsom", s) for s in range(n_seeds)]
            modes = args.modes_c.split(",")
            for mode, seed in [r for r in runs if r[0] in modes]:
                cmd = [sys.executable, __file__, "--child", mode, tmp, str(k), str(seed)]
                res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if res.returncode != 0:
                    print(f"{mode} failed:\n{res.stderr[-2000:]}")
                    continue
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]) | {"seed": seed})
            df = pd.DataFrame(rows)
            df["peak_over_matrix"] = (df["peak_mb"] - df["rss_before_mb"] + df["matrix_mb"]) / df[
                "matrix_mb"
            ]
            df["peak_total_over_matrix"] = df["peak_mb"] / df["matrix_mb"]
            print(
                df[
                    [
                        "mode",
                        "seed",
                        "seconds",
                        "F1",
                        "matrix_mb",
                        "rss_before_mb",
                        "peak_mb",
                        "peak_over_matrix",
                        "peak_total_over_matrix",
                    ]
                ]
                .round(3)
                .to_string(index=False)
            )
            summary = df.groupby("mode", sort=False).agg(
                seconds=("seconds", "mean"),
                F1_mean=("F1", "mean"),
                F1_sd=("F1", "std"),
                peak_over_matrix=("peak_over_matrix", "max"),
                runs=("F1", "size"),
            )
            print(summary.round(3).to_string())
            fs = df.loc[df["mode"] == "flowsom", "seconds"].mean()
            it = df.loc[df["mode"] == "itme", "seconds"].mean()
            if not (np.isfinite(fs) and np.isfinite(it)):
                fs = it = np.nan
            print(f"speed-up itme vs flowsom.FlowSOM: {fs / it:.1f}x")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
