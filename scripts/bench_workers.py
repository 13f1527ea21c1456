"""1 vs 2 Dask workers on the cohort store: the parallel work of each stage, timed apart.

The same cohort store (``bench_scale.make_cohort`` written as FCS, converted once) is opened
on a LocalCluster of 1 worker × 1 thread, then of 2 workers × 1 thread (numba, BLAS and
OpenMP limited to 1 thread in every worker and in this client), back to back, ``--repeat``
times. Timed separately, in the order the pipeline runs them:

- ``clean``: ``pp.clean`` (one task per sample on the workers; accounting on the client);
- ``train_gather``: the SOM's training events gathered from the store (every block read
  and transformed on the workers);
- ``som``: the SOM trained on them (on the client, serial: the same in both runs);
- ``map``: every event mapped to its nearest code (blockwise on the workers);
- ``medians``: the exact per-SOM-node medians of the marker columns
  (``_dask.lazy_group_medians``: gathered to the client and computed there when they fit in
  ``MEDIAN_BATCH_BYTES``, as at 3 M events × 36 markers; else histogram passes over the
  blocks summed by a tree of tasks on the workers, ``scripts/bench_medians.py``).

Before them every worker imports itme (``import``, 2-3 CPU s a process), as the pipeline's
ingest tasks do before its clean stage: the first timed stage is not charged with it.

For each stage: wall seconds, CPU seconds per process (``psutil`` times before and after):
the client's main thread (its numpy work), the client's other threads (the event loop that
the client's communication shares with the LocalCluster's scheduler), each worker; the task
stream (tasks, their compute and transfer seconds, tasks per worker); the load average. CPU
seconds per process are the evidence on a busy machine, where wall times are not. The
efficiency of the parallel part is ``t1 / (2 x t2)``, per stage and for the worker-side
stages together; the serial client part is reported beside it. Prints one JSON line per run
and markdown tables (seconds, efficiencies, CPU seconds per process).

Run it under ``nice -n 10``; ``--base`` links the first ``--files`` files of a larger
cohort written by ``bench_scale.py`` (read only) instead of simulating one::

    nice -n 10 python scripts/bench_workers.py --events 3000000 --repeat 2
    nice -n 10 python scripts/bench_workers.py --events 3000000 --files 6 \\
        --base /work/scale_data/cohort_100000000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

THREAD_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
os.environ.update(THREAD_ENV)  # this client too, before numpy and numba load

import numpy as np  # noqa: E402
import psutil  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import make_cohort  # noqa: E402

WORKER_STAGES = ["clean", "train_gather", "map", "medians"]
CLIENT_STAGES = ["som"]


def _cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _import_itme() -> None:
    import itme  # noqa: F401


def _client_cpu() -> tuple[float, float]:
    """CPU seconds of this process: its main thread (the client's numpy work) and the others
    (the event loop shared by the client's communication and the LocalCluster's scheduler)."""
    main = next(
        (t.user_time + t.system_time for t in psutil.Process().threads() if t.id == os.getpid()),
        0.0,
    )
    return main, _cpu() - main


def _tasks(stream: list[dict]) -> dict:
    """Task-stream summary: tasks, compute and transfer seconds, tasks per worker."""
    out = {"tasks": len(stream), "compute_s": 0.0, "transfer_s": 0.0, "per_worker": {}}
    for task in stream:
        worker = task["worker"].rsplit(":", 1)[-1]
        out["per_worker"][worker] = out["per_worker"].get(worker, 0) + 1
        for ss in task["startstops"]:
            key = "compute_s" if ss["action"] == "compute" else "transfer_s"
            out[key] += ss["stop"] - ss["start"]
    out["compute_s"] = round(out["compute_s"], 2)
    out["transfer_s"] = round(out["transfer_s"], 2)
    return out


def convert(cohort: Path, store: Path, chunk_rows: int) -> None:
    """The cohort store, written once (2 workers)."""
    import itme
    from itme._dask import ComputeSettings, start_compute

    if (store / "layers" / "raw" / "zarr.json").exists():
        return
    settings = ComputeSettings(workers=2, chunk_rows=chunk_rows, memory_per_worker="3GB")
    with start_compute(settings, n_channels=47):
        itme.io.read_cohort(
            cohort / "samples.csv", cohort / "panel.csv", store=store, chunk_rows=chunk_rows
        )


def run_once(store: Path, workers: int, memory: str) -> dict:
    """Every stage on a fresh LocalCluster of ``workers`` × 1 thread."""
    from distributed import Client, LocalCluster

    import itme
    from itme._adata import markers_of_class
    from itme._dask import lazy_group_medians, take_rows
    from itme.tl._flowsom_model import FlowSOMModel, _flowsom_models, _nearest

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        memory_limit=memory,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env=THREAD_ENV,
    )
    client = Client(cluster)
    client.wait_for_workers(workers)
    stages: dict[str, dict] = {}

    def stage(name, func):
        from distributed import get_task_stream

        load = os.getloadavg()[0]
        w0, (m0, l0), t0 = client.run(_cpu), _client_cpu(), time.perf_counter()
        with get_task_stream(client) as ts:
            out = func()
        seconds = time.perf_counter() - t0
        (m1, l1), w1 = _client_cpu(), client.run(_cpu)
        per_worker = [round(w1[w] - w0[w], 2) for w in sorted(w0)]
        stages[name] = {
            "seconds": round(seconds, 2),
            "client_main_cpu": round(m1 - m0, 2),
            "client_loop_cpu": round(l1 - l0, 2),  # the client's comms and the scheduler
            "client_cpu": round(m1 - m0 + l1 - l0, 2),
            "worker_cpu": per_worker,
            "workers_cpu": round(sum(per_worker), 2),
            "stream": _tasks(ts.data),
            "load": round(load, 1),
        }
        return out

    try:
        # every worker imports itme (2-3 CPU s each), as the pipeline's ingest tasks do
        # before the stages timed here: not counted in the first stage
        stage("import", lambda: client.run(_import_itme))
        cells = itme.io.open_store(store)
        itme.pp.arcsinh(cells)
        stage("clean", lambda: itme.pp.clean(cells))
        X = cells.X
        cols = cells.var_names.get_indexer(markers_of_class(cells, ("type",)))
        model = FlowSOMModel(grid=(10, 10), train_cells=200_000, rng=1)  # as the pipeline
        idx = model._training_rows(X.shape[0], None, 100, np.random.default_rng(1))
        train = stage("train_gather", lambda: take_rows(X, idx, cols))

        def som():
            est = _flowsom_models().SOMEstimator(xdim=10, ydim=10, rlen=10, seed=1)
            est.fit(np.ascontiguousarray(train, dtype=np.float32))
            return np.asarray(est.codes, dtype=np.float64)

        codes = stage("som", som)
        nodes = stage("map", lambda: _nearest(X, codes, cols, model.chunk_size))
        markers = cells.var_names.get_indexer(markers_of_class(cells, ("type", "state")))
        stage("medians", lambda: lazy_group_medians(X, nodes, codes.shape[0], markers))
    finally:
        client.close()
        cluster.close()
    return {"workers": workers, "events": int(X.shape[0]), "stages": stages}


def efficiency(one: dict, two: dict, names: list[str]) -> float:
    t1 = sum(one["stages"][s]["seconds"] for s in names)
    t2 = sum(two["stages"][s]["seconds"] for s in names)
    return t1 / (2 * t2)


def table(results: list[dict]) -> str:
    names = WORKER_STAGES + CLIENT_STAGES
    head = "| run | workers | " + " | ".join(f"{s} s" for s in names)
    head += " | worker-side s | client-side s | workers CPU s | load |"
    lines = [head, "|" + "---|" * (len(names) + 6)]
    for i, r in enumerate(results):
        st = r["stages"]
        loads = [st[s]["load"] for s in names]
        lines.append(
            f"| {i // 2 + 1} | {r['workers']} | "
            + " | ".join(f"{st[s]['seconds']:.1f}" for s in names)
            + f" | {sum(st[s]['seconds'] for s in WORKER_STAGES):.1f}"
            f" | {sum(st[s]['seconds'] for s in CLIENT_STAGES):.1f}"
            f" | {sum(st[s]['workers_cpu'] for s in WORKER_STAGES):.1f}"
            f" | {min(loads)}-{max(loads)} |"
        )
    lines.append("")
    lines.append("| repeat | " + " | ".join(WORKER_STAGES) + " | worker-side together |")
    lines.append("|" + "---|" * (len(WORKER_STAGES) + 2))
    for k in range(0, len(results) - 1, 2):
        one, two = results[k], results[k + 1]
        per = [efficiency(one, two, [s]) for s in WORKER_STAGES]
        lines.append(
            f"| {k // 2 + 1} | "
            + " | ".join(f"{e:.2f}" for e in per)
            + f" | {efficiency(one, two, WORKER_STAGES):.2f} |"
        )
    lines.append("")
    lines.append(cpu_table(results))
    return "\n".join(lines)


def cpu_table(results: list[dict]) -> str:
    """CPU seconds per stage and process: client main thread, client loop, each worker."""
    names = ["import", *WORKER_STAGES, *CLIENT_STAGES]
    lines = [
        "| run | workers | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 2),
    ]
    for i, r in enumerate(results):
        cells = []
        for s in names:
            st = r["stages"][s]
            workers = " + ".join(f"{w:.1f}" for w in st["worker_cpu"])
            cells.append(f"{st['client_main_cpu']:.1f} / {st['client_loop_cpu']:.1f} / {workers}")
        lines.append(f"| {i // 2 + 1} | {r['workers']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("CPU s as client main thread / client loop and scheduler / each worker.")
    return "\n".join(lines)


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--memory-per-worker", default="3GB")
    parser.add_argument("--work", default="/tmp/itme_bench_workers")
    parser.add_argument(
        "--base",
        help="a cohort written by bench_scale.make_cohort: link its first --files files "
        "(read only) instead of simulating one",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.events}_{args.files}" + ("_base" if args.base else "")
    base = Path(args.base) if args.base else None
    cohort = make_cohort(work / f"cohort_{tag}", args.events, args.files, base)
    store = work / f"cells_{tag}.zarr"
    convert(cohort, store, args.chunk_rows)
    results = []
    for _ in range(args.repeat):
        for workers in (1, 2):  # back to back
            result = run_once(store, workers, args.memory_per_worker)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(table(results))


if __name__ == "__main__":
    main()
