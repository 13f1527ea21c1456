"""Scale benchmark: the cell-level stages in memory and on Dask (out of core), same cohort.

Writes a synthetic cohort (``itme.datasets.simulate_cohort``: 47 channels with planted beads,
doublets, debris, dead and CD45- events) as FCS files, then runs, each in a fresh process,

- ``mem``: read_cohort → arcsinh → clean → apply_qc → flowsom → annotate (+ cluster medians)
  → abundance, all in memory;
- ``dask``: the same functions on a cohort store (read_cohort(store=...)) with a LocalCluster
  of ``--workers`` worker processes (loopback only).

For every stage: wall time, events/s and the peak total RSS of the process tree (client +
scheduler + workers, sampled every 0.1 s); for the dask path the disk footprint of the
store against the FCS files. Prints one JSON line per run and a markdown table at the end.

``--pipeline`` runs ``itme run`` instead (ingest → clean → batch → cluster → annotate →
abundance, ``--until abundance``; drift and batch correction off unless ``--corrections``),
once in memory (with ``--mem``) and once per worker count
with a ``compute:`` section (the store path): per-stage seconds from ``run.json``, the peak
RSS of the whole process tree, and the bytes of the run's output folder against the FCS.
Run it under ``nice -n 10`` on a shared machine::

    nice -n 10 python scripts/bench_scale.py --events 1000000 --workers 1,2 --mem
    nice -n 10 python scripts/bench_scale.py --pipeline --events 1000000 --workers 1,2 --mem

The pipeline runs also record the CPU seconds of the whole process tree (client, scheduler,
workers; less sensitive than wall time to other jobs on a shared machine); ``--repeat N``
runs the list N times, interleaved (memory, store, memory, store, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil


def tree_rss() -> int:
    """RSS of this process and all its descendants, in bytes."""
    me = psutil.Process()
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class Peak:
    """Peak of :func:`tree_rss` sampled in a thread; ``reset()`` starts a new stage."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss())
            time.sleep(0.1)

    def reset(self) -> None:
        self.peak = tree_rss()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def fcs_size(cohort: Path) -> int:
    """Bytes of the cohort's FCS files (through the links of a cohort made from a base)."""
    return sum(f.stat().st_size for f in (cohort / "fcs").glob("*.fcs"))


def make_cohort(folder: Path, events: int, files: int, base: Path | None = None) -> Path:
    """The cohort of ``events`` events in ``files`` files: simulated, or the first files of ``base``.

    With ``base`` (a cohort this function wrote with at least as many files of the same
    size), the new cohort lists the first ``files`` rows of its sample sheet, links its FCS
    files and keeps its panel and the clinical rows of those patients: one large cohort on
    disk serves every smaller size of the benchmark.
    """
    import pandas as pd

    from itme.datasets import simulate_cohort

    if (folder / "samples.csv").exists():
        return folder
    if base is not None:
        sheet = pd.read_csv(base / "samples.csv").iloc[:files]
        (folder / "fcs").mkdir(parents=True, exist_ok=True)
        for name in sheet["file_name"]:
            (folder / name).symlink_to((base / name).resolve())
        clinical = pd.read_csv(base / "clinical.csv")
        clinical[clinical["patient_id"].isin(sheet["patient_id"])].to_csv(
            folder / "clinical.csv", index=False
        )
        shutil.copy(base / "panel.csv", folder / "panel.csv")
        sheet.to_csv(folder / "samples.csv", index=False)  # last: marks the cohort complete
        return folder
    per_file = max(1000, events // files)
    # simulate_cohort drops the last patient's CyTOF file (as in the paper): files + 1
    simulate_cohort(folder, n_patients=files + 1, cells_per_sample=per_file, n_genes=4400, rng=1)
    return folder


def run_once(args: argparse.Namespace) -> dict:
    """One run of the stages in this process; per-stage seconds and peak RSS."""
    warnings.simplefilter("ignore")
    import pandas as pd

    import itme
    from itme import pp, tl

    cohort = Path(args.cohort)
    samples, panel = cohort / "samples.csv", cohort / "panel.csv"
    fcs_bytes = fcs_size(cohort)
    peak = Peak()
    stages: dict[str, dict] = {}
    context = None
    if args.mode == "dask":
        from itme._dask import ComputeSettings, start_compute

        settings = ComputeSettings(
            scheduler="local",
            workers=args.workers,
            chunk_rows=args.chunk_rows,
            memory_per_worker=args.memory_per_worker,
        )
        context = start_compute(settings, n_channels=47)
        context.__enter__()

    def stage(name: str, func):
        peak.reset()
        t0 = time.perf_counter()
        out = func()
        stages[name] = {"seconds": time.perf_counter() - t0, "peak_rss_gb": peak.peak / 1e9}
        return out

    store = Path(args.work) / "cells.zarr"
    shutil.rmtree(store, ignore_errors=True)
    if args.mode == "dask":
        cells = stage("ingest", lambda: itme.io.read_cohort(samples, panel, store=store))
    else:
        cells = stage("ingest", lambda: itme.io.read_cohort(samples, panel))
    n = cells.n_obs

    def clean():
        pp.arcsinh(cells)
        pp.clean(cells)
        return pp.apply_qc(cells)

    kept = stage("clean", clean)

    def cluster():
        tl.flowsom(kept, grid=(10, 10), n_metaclusters=40, train_cells=200_000, rng=1)

    stage("cluster", cluster)
    tables = {}

    def annotate():
        tl.annotate(kept, phenotypes="lymphoid_visram2021")
        tables["phenotypes"] = tl.cluster_phenotypes(kept, groupby="metacluster")

    stage("annotate", annotate)
    tables["abundance"] = stage(
        "abundance", lambda: tl.abundance(kept, phenotypes="lymphoid_visram2021").to_df()
    )
    if args.mode == "dask":

        def save():  # what a stage keeps: labels of every event into the store, no matrix
            labels = kept.obs["metacluster"]  # kept's obs_names are its rows in the store
            codes = np.full(cells.n_obs, -1, dtype=labels.cat.codes.dtype)
            codes[kept.obs_names.to_numpy()] = labels.cat.codes.to_numpy()
            cells.obs["metacluster"] = pd.Categorical.from_codes(codes, dtype=labels.dtype)
            itme.io.update_store(cells, obs=["metacluster"])

        stage("save_labels", save)
    peak.stop()
    result = {
        "mode": args.mode,
        "workers": args.workers if args.mode == "dask" else 0,
        "events": int(n),
        "events_kept": int(kept.n_obs),
        "fcs_gb": fcs_bytes / 1e9,
        "store_gb": folder_bytes(store) / 1e9 if store.exists() else None,
        "stages": stages,
        "total_seconds": sum(s["seconds"] for s in stages.values()),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in stages.values()),
        "metacluster_sizes": np.bincount(kept.obs["metacluster"].cat.codes).tolist(),
        "abundance_sum": float(tables["abundance"].to_numpy().sum()),
    }
    if context is not None:
        context.__exit__(None, None, None)
    shutil.rmtree(store, ignore_errors=True)
    return result


PIPELINE_STAGES = ["ingest", "clean", "batch", "cluster", "annotate", "abundance"]


def pipeline_config(cohort: Path, out: Path, workers: int, args: argparse.Namespace) -> Path:
    """The benchmark's config: the cell-level stages; ``workers`` 0 = in memory."""
    import yaml

    cfg = {
        "seed": 1,
        "output": str(out),
        "inputs": {
            "samples": str(cohort / "samples.csv"),
            "panel": str(cohort / "panel.csv"),
            "clinical": str(cohort / "clinical.csv"),
            "phenotypes": "lymphoid_visram2021",
        },
        "cluster": {"grid": [10, 10], "n_metaclusters": 40, "train_cells": 200_000},
        "embed": {"enabled": False},
        # --corrections: the default batch section (drift, cycombine with >= 2 batches)
        "batch": {} if args.corrections else {"drift": False, "method": "none"},
    }
    if not workers:
        cfg["compute"] = {"backend": "memory"}
    else:
        cfg["compute"] = {
            "backend": "store",  # auto would run a cohort that fits in memory there
            "scheduler": "local",
            "workers": workers,
            "chunk_rows": args.chunk_rows,
            "memory_per_worker": args.memory_per_worker,
        }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_pipeline(cohort: Path, work: Path, workers: int, args: argparse.Namespace) -> dict:
    """``itme run --until abundance`` in a child process; its stages, peak RSS, footprint."""
    kill = getattr(args, "kill_worker", None) if workers else None
    out = work / f"run_{'mem' if not workers else f'dask{workers}'}{'_kill' if kill else ''}"
    shutil.rmtree(out, ignore_errors=True)
    config = pipeline_config(cohort, out, workers, args)
    main = "import sys; from itme.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", main, "-q", "run", str(config), "--until", "abundance"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    fcs_bytes = fcs_size(cohort)
    t0 = time.perf_counter()
    log = (work / f"{out.name}.log").open("w")
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    peak = peak_client = 0
    load = []
    cpu: dict[int, float] = {}  # CPU seconds of every process of the tree, last seen
    # the memory of the client (the itme process, scheduler included with scheduler: local)
    # and of its children (nannies, workers), every 0.1 s; one line per second in <run>.mem.tsv
    timeline = (work / f"{out.name}.mem.tsv").open("w")
    timeline.write("seconds\tclient_gb\tworkers_gb\tload\tclient_cpu_s\tworkers_cpu_s\n")
    last = 0.0
    killed = None  # (seconds into the run, pid) of the worker SIGKILLed by --kill-worker
    while proc.poll() is None:
        if kill and killed is None:
            killed = kill_worker(proc, out, kill, t0)
        client = children = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
            except psutil.Error:
                continue
            if p is proc:
                client = rss
            else:
                children += rss
        peak, peak_client = max(peak, client + children), max(peak_client, client)
        load.append(os.getloadavg()[0])
        now = time.perf_counter() - t0
        if now - last >= 1.0:
            client_cpu = cpu.get(proc.pid, 0.0)
            workers_cpu = sum(cpu.values()) - client_cpu
            timeline.write(
                f"{now:.1f}\t{client / 1e9:.3f}\t{children / 1e9:.3f}\t{load[-1]}"
                f"\t{client_cpu:.1f}\t{workers_cpu:.1f}\n"
            )
            timeline.flush()
            last = now
        time.sleep(0.1)
    seconds = time.perf_counter() - t0
    log.close()
    timeline.close()
    if proc.returncode != 0:
        print((work / f"{out.name}.log").read_text()[-3000:], file=sys.stderr)
        return {}
    record = json.loads((out / "run.json").read_text())
    stages = {s["name"]: {"seconds": s["seconds"]} for s in record["stages"]}
    result = {
        "mode": "pipeline-mem" if not workers else "pipeline-dask",
        "workers": workers,
        "events": int(record["stages"][0]["summary"]["events"]),
        "fcs_gb": fcs_bytes / 1e9,
        "out_gb": folder_bytes(out) / 1e9,
        "store_gb": folder_bytes(out / "cells.zarr") / 1e9
        if (out / "cells.zarr").exists()
        else None,
        "stages": stages,
        "total_seconds": sum(stages[s]["seconds"] for s in PIPELINE_STAGES),
        "wall_seconds": seconds,
        "peak_rss_gb": peak / 1e9,
        "cpu_seconds": round(sum(cpu.values()), 1),
        "client_cpu_seconds": round(cpu.get(proc.pid, 0.0), 1),
        "peak_client_gb": peak_client / 1e9,
        "load_avg": [round(min(load), 1), round(max(load), 1)] if load else None,
    }
    if kill:
        result["killed_worker"] = {"stage": kill, "seconds": killed[0] if killed else None}
    if not args.keep_runs:
        shutil.rmtree(out, ignore_errors=True)
    return result


def kill_worker(proc: psutil.Process, out: Path, spec: str, t0: float) -> tuple | None:
    """SIGKILL one dask worker process ``SECONDS`` s into stage ``STAGE`` (``spec`` = STAGE:SECONDS).

    The stage is running once the record of the stage before it is in ``<out>/.itme/``; the
    worker is the itme process's child started by multiprocessing (not its resource tracker).
    Returns (seconds into the run, pid) once it has killed, else None.
    """
    stage, _, delay = spec.partition(":")
    before = PIPELINE_STAGES[PIPELINE_STAGES.index(stage) - 1]
    record = out / ".itme" / f"{before}.json"
    if not record.exists() or time.time() - record.stat().st_mtime < float(delay or 0):
        return None
    for child in proc.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            child.send_signal(9)
            print(f"killed worker {child.pid} in {stage}", file=sys.stderr, flush=True)
            return time.perf_counter() - t0, child.pid
    return None


def pipeline_table(results: list[dict]) -> str:
    head = "| events | path | " + " | ".join(f"{s} s" for s in PIPELINE_STAGES)
    head += (
        " | total s | events/s | CPU s | peak RSS GB (client) | FCS GB | output GB (x FCS) | load |"
    )
    lines = [head, "|" + "---|" * (len(PIPELINE_STAGES) + 9)]
    for r in results:
        path = "memory" if not r["workers"] else f"store, {r['workers']} worker(s)"
        secs = [r["stages"][s]["seconds"] for s in PIPELINE_STAGES]
        lines.append(
            f"| {r['events']:,} | {path} | "
            + " | ".join(f"{s:.1f}" for s in secs)
            + f" | {sum(secs):.1f} | {r['events'] / sum(secs):,.0f} | {r['cpu_seconds']:.0f}"
            f" | {r['peak_rss_gb']:.2f} ({r['peak_client_gb']:.2f})"
            f" | {r['fcs_gb']:.2f} | {r['out_gb']:.2f} ({r['out_gb'] / r['fcs_gb']:.2f}x)"
            f" | {r['load_avg'][0]}-{r['load_avg'][1]} |"
        )
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    names = ["ingest", "clean", "cluster", "annotate", "abundance"]
    head = "| events | path | " + " | ".join(f"{s} s" for s in names)
    head += " | total s | events/s | peak RSS GB | FCS GB | store GB |"
    lines = [head, "|" + "---|" * (len(names) + 8)]
    for r in results:
        path = "memory" if r["mode"] == "mem" else f"dask, {r['workers']} worker(s)"
        secs = [r["stages"][s]["seconds"] for s in names]
        store = f"{r['store_gb']:.2f}" if r["store_gb"] is not None else "-"
        lines.append(
            f"| {r['events']:,} | {path} | "
            + " | ".join(f"{s:.1f}" for s in secs)
            + f" | {sum(secs):.1f} | {r['events'] / sum(secs):,.0f} | {r['peak_rss_gb']:.2f}"
            f" | {r['fcs_gb']:.2f} | {store} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--workers", default="1,2", help="worker counts of the dask path")
    parser.add_argument("--mem", action="store_true", help="also run the in-memory path")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--memory-per-worker", default="3GB")
    parser.add_argument("--work", default="/tmp/itme_bench_scale")
    parser.add_argument("--keep-cohort", action="store_true")
    parser.add_argument(
        "--base",
        help="a larger cohort written by this script (--keep-cohort): use its first files",
    )
    parser.add_argument("--pipeline", action="store_true", help="run `itme run` (see above)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the run folders")
    parser.add_argument(
        "--corrections",
        action="store_true",
        help="--pipeline with the default batch section (drift and batch correction on); "
        "without it both are off",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="with --pipeline: run the list N times, interleaved"
    )
    parser.add_argument(
        "--kill-worker",
        metavar="STAGE:SECONDS",
        help="with --pipeline: SIGKILL a worker SECONDS s into STAGE of each store run "
        "(its folder gets the suffix _kill; compare its tables with an unkilled run's "
        "using scripts/compare_runs.py)",
    )
    parser.add_argument("--mode", choices=["mem", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--cohort", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:  # one run, in this process
        args.workers = int(args.workers)
        print(json.dumps(run_once(args)), flush=True)
        return
    work = Path(args.work)
    cohort = work / f"cohort_{args.events}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_cohort(cohort, args.events, args.files, Path(args.base) if args.base else None)
    print(f"cohort written in {time.perf_counter() - t0:.0f} s: {cohort}", file=sys.stderr)
    if args.pipeline:
        results = []
        order = ([0] if args.mem else []) + [int(w) for w in args.workers.split(",") if w]
        for workers in order * args.repeat:  # interleaved: A, B, A, B, ...
            result = run_pipeline(cohort, work, workers, args)
            if result:
                print(json.dumps(result), flush=True)
                results.append(result)
        print(pipeline_table(results))
        if not args.keep_cohort:
            shutil.rmtree(cohort, ignore_errors=True)
        return
    runs = [("mem", 0)] if args.mem else []
    runs += [("dask", int(w)) for w in args.workers.split(",") if w]
    results = []
    for mode, workers in runs:
        cmd = [sys.executable, __file__, "--mode", mode, "--cohort", str(cohort)]
        cmd += [
            "--workers",
            str(workers),
            "--work",
            str(work),
            "--chunk-rows",
            str(args.chunk_rows),
        ]
        cmd += ["--memory-per-worker", args.memory_per_worker]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    print(table(results))
    if not args.keep_cohort:
        shutil.rmtree(cohort, ignore_errors=True)


if __name__ == "__main__":
    main()
