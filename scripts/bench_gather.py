"""``x.compute()`` against ``itme._dask.gather_rows(x)``: the medians' columns to the client.

On one LocalCluster of ``--workers`` × 1 thread, the type and state marker columns of a
cohort store (arcsinh-transformed, as for the exact medians) are gathered by both, in
turn, ``--repeat`` times (interleaved: both see the same load). For each: wall seconds, the
tail from the last block computed to the result on the client, the duration of dask's
``finalize`` tasks, CPU seconds of the client and of each worker, the load average. One
JSON line per gather. A store is written by ``bench_workers.py``::

    nice -n 10 python scripts/bench_gather.py /tmp/itme_bench_workers/cells_3000000_6_base.zarr
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

THREAD_ENV = {
    k: "1"
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
}
os.environ.update(THREAD_ENV)

import numpy as np  # noqa: E402
import psutil  # noqa: E402


def _cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _import_itme() -> None:
    import itme  # noqa: F401


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from distributed import Client, LocalCluster, get_task_stream

    import itme
    from itme._adata import markers_of_class
    from itme._dask import gather_rows

    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        memory_limit="3GB",
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env=THREAD_ENV,
    )
    client = Client(cluster)
    client.wait_for_workers(args.workers)
    client.run(_import_itme)
    cells = itme.io.open_store(args.store)
    itme.pp.arcsinh(cells)
    x = cells.X[:, cells.var_names.get_indexer(markers_of_class(cells, ("type", "state")))]
    ways = {"compute": lambda: np.asarray(x.compute()), "gather_rows": lambda: gather_rows(x)}
    try:
        for rep in range(args.repeat):
            for how, gather in ways.items():
                load = os.getloadavg()[0]
                w0, c0, t0 = client.run(_cpu), _cpu(), time.perf_counter()
                with get_task_stream(client) as ts:
                    gather()
                wall, end = time.perf_counter() - t0, time.time()
                w1, c1 = client.run(_cpu), _cpu()
                spans = [(str(t["key"]), s) for t in ts.data for s in t["startstops"]]
                blocks = [
                    s["stop"] for k, s in spans if s["action"] == "compute" and "finalize" not in k
                ]
                row = {
                    "repeat": rep,
                    "how": how,
                    "workers": args.workers,
                    "wall_s": round(wall, 2),
                    "tail_after_last_block_s": round(end - max(blocks), 2),
                    "finalize_s": [
                        round(s["stop"] - s["start"], 2) for k, s in spans if "finalize" in k
                    ],
                    "client_cpu": round(c1 - c0, 2),
                    "worker_cpu": [round(w1[w] - w0[w], 2) for w in sorted(w0)],
                    "load": round(load, 1),
                }
                print(json.dumps(row), flush=True)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
