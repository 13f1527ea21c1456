"""Run time of pp.correct_batch against the whole in-memory pipeline on the same cohort (issue 20).

Writes a synthetic cohort as FCS files (``itme.datasets.simulate_cohort``, as
``scripts/bench_scale.py`` does: 47 channels, planted beads, doublets, debris, dead and
CD45- events; files assigned to runs B1-B3), gives it strong run effects after reading
(``itme.datasets`` ``draw_run_gains`` ±50 % per run and channel on the raw counts of the
type and state markers, 50 % signal loss over run B3's acquisition; not timed), then times,
in one process:

ingest (read_cohort) → clean (arcsinh, clean, apply_qc) → drift (pp.correct_drift, when
the files have a Time channel) → batch (pp.correct_batch) → cluster (tl.flowsom 10 × 10,
40 metaclusters) → annotate (tl.annotate + cluster_phenotypes) → abundance.

One-off costs of the process (importing flowsom, numba compiling its SOM and itme's
kernels: a few seconds, paid by whichever stage comes first) are paid before the timed
stages by a warm-up on 3,000 random events (``warmup_s``, not in the total), so each stage's
time is what it adds to a run. Logs of correct_batch and flowsom go to stderr. Prints one
JSON line per size and a markdown table; note the load average (printed) on a shared
machine::

    nice -n 5 python scripts/bench_batch_speed.py --events 1000000 3000000 10000000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import make_cohort


def _run_effects(cells, seed: int) -> None:
    """Strong run effects on the raw counts of the markers (in place; not timed)."""
    from itme._adata import markers_of_class
    from itme.datasets._cells import draw_run_gains

    gen = np.random.default_rng(seed)
    markers = markers_of_class(cells, ("type", "state"))
    cols = cells.var_names.get_indexer(markers)
    batches = cells.obs["batch"].astype(str).to_numpy()
    runs = sorted(set(batches))
    gains = draw_run_gains(len(runs), len(cols), 0.5, rng=gen)
    X = cells.X
    for r, run in enumerate(runs):
        rows = np.flatnonzero(batches == run)
        factor = np.asarray(gains[r], dtype=np.float32)
        if r == len(runs) - 1:  # 50 % signal loss over the last run, in acquisition order
            loss = 1 - 0.5 * np.linspace(0, 1, rows.size, dtype=np.float32)
            for start in range(0, rows.size, 1_000_000):
                part = rows[start : start + 1_000_000]
                X[np.ix_(part, cols)] *= factor * loss[start : start + part.size, None]
        else:
            for start in range(0, rows.size, 1_000_000):
                part = rows[start : start + 1_000_000]
                X[np.ix_(part, cols)] *= factor


def _warm_up() -> None:
    """Import flowsom and compile the numba code of the SOM and of correct_batch."""
    import anndata as ad
    import pandas as pd

    from itme import pp, tl

    gen = np.random.default_rng(0)
    X = gen.normal(2.0, 1.0, size=(3_000, 4)).astype(np.float32)
    obs = pd.DataFrame({"batch": pd.Categorical(np.repeat(["a", "b", "c"], 1_000))})
    obs.index = obs.index.astype(str)
    var = pd.DataFrame({"marker_class": "type"}, index=[f"m{i}" for i in range(4)])
    tiny = ad.AnnData(X, obs=obs, var=var)
    tiny.uns["arcsinh"] = {"cofactor": np.full(4, 5.0), "channels": list(var.index)}
    pp.correct_batch(tiny, grid=(3, 3), rng=0)
    tl.flowsom(tiny, grid=(3, 3), n_metaclusters=3, rng=0)


def run_once(args: argparse.Namespace) -> dict:
    """The stages in this process: seconds per stage, correct_batch's share of the total."""
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("itme.pp._batch", "itme.tl._flowsom_model", "itme.tl._flowsom"):
        logging.getLogger(name).setLevel(logging.INFO)
    import itme
    from itme import pp, tl

    cohort = Path(args.cohort)
    t0 = time.perf_counter()
    _warm_up()
    warmup = time.perf_counter() - t0
    load_before = os.getloadavg()
    stages: dict[str, float] = {}

    def stage(name: str, func):
        t0 = time.perf_counter()
        out = func()
        stages[name] = round(time.perf_counter() - t0, 2)
        return out

    cells = stage(
        "ingest", lambda: itme.io.read_cohort(cohort / "samples.csv", cohort / "panel.csv")
    )
    _run_effects(cells, args.seed)

    def clean():
        pp.arcsinh(cells)
        pp.clean(cells)
        return pp.apply_qc(cells)

    kept = stage("clean", clean)
    time_key = next((k for k in ("Time", "time") if k in kept.var_names or k in kept.obs), None)
    if time_key is not None:
        stage("drift", lambda: pp.correct_drift(kept, time_key=time_key))
    stage("correct_batch", lambda: pp.correct_batch(kept, batch_key="batch", rng=args.seed))
    stage(
        "cluster",
        lambda: tl.flowsom(kept, grid=(10, 10), n_metaclusters=40, train_cells=200_000, rng=1),
    )

    def annotate():
        tl.annotate(kept, phenotypes="lymphoid_visram2021")
        tl.cluster_phenotypes(kept, groupby="metacluster")

    stage("annotate", annotate)
    stage("abundance", lambda: tl.abundance(kept, phenotypes="lymphoid_visram2021"))
    total = sum(stages.values())
    info = kept.uns["batch_correction"]
    return {
        "events": int(cells.n_obs),
        "events_kept": int(kept.n_obs),
        "batches": info["batches"],
        "stages": stages,
        "total_s": round(total, 2),
        "warmup_s": round(warmup, 2),
        "correct_batch_share": round(stages["correct_batch"] / total, 4),
        "drift_and_batch_share": round(
            (stages["correct_batch"] + stages.get("drift", 0.0)) / total, 4
        ),
        "fit_cells": info["fit_cells"],
        "train_cells": info["train_cells"],
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "itme": str(Path(itme.__file__).parent),
    }


def table(results: list[dict]) -> str:
    names = ["ingest", "clean", "drift", "correct_batch", "cluster", "annotate", "abundance"]
    head = "| events | " + " | ".join(f"{n} s" for n in names)
    head += " | total s | correct_batch share | load (1 min) |"
    lines = [head, "|" + "---|" * (len(names) + 5)]
    for r in results:
        cells = [f"{r['stages'].get(n, float('nan')):.1f}" for n in names]
        lines.append(
            f"| {r['events']:,} | "
            + " | ".join(cells)
            + f" | {r['total_s']:.1f} | {100 * r['correct_batch_share']:.1f} % | "
            + f"{r['load_before'][0]:.1f}–{r['load_after'][0]:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/itme_bench_batch_speed")
    ap.add_argument("--cohort", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cohort:  # the child process: one size
        print(json.dumps(run_once(args)), flush=True)
        return
    results = []
    for events in args.events:
        folder = make_cohort(Path(args.work) / f"cohort_{events}", events, args.files)
        cmd = [sys.executable, __file__, "--cohort", str(folder), "--seed", str(args.seed)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        results.append(row)
    print(table(results))


if __name__ == "__main__":
    main()
