"""Exact medians on a cohort store: where a selection pass spends its CPU, and both regimes.

The cohort store of ``bench_workers.py`` (``bench_scale.make_cohort`` written as FCS,
converted once; ``--base`` links the first ``--files`` files of a larger cohort, read only)
is opened and arcsinh-transformed as the pipeline does (``X`` a lazy chain over
``layers["raw"]``); the labels are ``--groups`` groups drawn at random per event (seeded), the
columns the type and state markers.

1. ``profile`` (this process, dask's synchronous scheduler, CPU seconds of this process):
   ``read``: every block of ``layers["raw"]`` read from the store; ``read+transform``:
   every block of ``X`` computed (the work every selection pass repeats);
   ``kernel pass k``: :func:`itme.core.cluster.select.histogram_block` of pass ``k`` on
   every block (already computed), as the workers run it, and how many blocks hold a value
   still needed (``blocks_used``: those a pass could not skip); after pass 1, the share of
   the values sharing a target's prefix (``keys_after``) and a collecting pass 2 instead
   (``candidates_block`` on every block, then ``GroupSelection.take`` on the client).
2. ``cluster`` (a LocalCluster of 1 worker × 1 thread, numba/BLAS/OpenMP on 1 thread):
   the annotate stage's two ``lazy_group_medians`` calls (``--groups`` groups, then those
   merged into a third as many, all markers) in both regimes: the columns gathered
   (``MEDIAN_BATCH_BYTES`` large, inside ``reuse_columns``: one read); selected on the
   workers as before (histogram passes only, ``MEDIAN_BATCH_BYTES = 0``, every call
   afresh); and as now, inside ``reuse_columns`` with the budget scaled to the events as
   at 10^7 events (512 MB × events / 10^7), so that the keys are collected in a last pass
   and the merged groups' first pass summed when they would be there. Wall seconds, the
   worker's and the client's CPU seconds, store reads; the results compared bit for bit.

Prints one JSON line per measurement and a markdown table. Run it under ``nice -n 10``::

    nice -n 10 python scripts/bench_medians.py --events 3000000 --files 6 \\
        --base /work/bench_ingest10m/cohort_10000000 --work /tmp/medians_bench
"""

from __future__ import annotations

import argparse
import contextlib
import copy
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
from bench_workers import convert  # noqa: E402


def _cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _open(store: Path, n_groups: int, seed: int) -> tuple:
    """``X`` (arcsinh chain), the marker columns and random labels."""
    import itme
    from itme._adata import markers_of_class

    cells = itme.io.open_store(store)
    itme.pp.arcsinh(cells)
    markers = cells.var_names.get_indexer(markers_of_class(cells, ("type", "state")))
    labels = np.random.default_rng(seed).integers(0, n_groups, size=cells.n_obs)
    return cells, markers, labels


def profile(store: Path, n_groups: int, seed: int) -> list[dict]:
    """CPU seconds of reading, transforming and counting, one pass at a time."""
    import dask

    from itme.core.cluster.select import (
        GroupSelection,
        candidates_block,
        group_counts,
        histogram_block,
    )

    cells, markers, labels = _open(store, n_groups, seed)
    raw, X = cells.layers["raw"], cells.X
    starts = np.cumsum((0, *X.chunks[0]))
    rows = []

    def timed(name, func):
        c0, t0 = _cpu(), time.perf_counter()
        out = func()
        rows.append(
            {
                "measure": name,
                "cpu_s": round(_cpu() - c0, 2),
                "seconds": round(time.perf_counter() - t0, 2),
                "load": round(os.getloadavg()[0], 1),
            }
        )
        return out

    with dask.config.set(scheduler="sync"):
        blocks = raw.to_delayed().ravel()
        timed("read", lambda: [np.asarray(b.compute()) for b in blocks])
        blocks = X.to_delayed().ravel()
        computed = timed("read+transform", lambda: [np.asarray(b.compute()) for b in blocks])
    histogram_block(
        computed[0][:10],
        labels[:10],
        markers,
        GroupSelection(group_counts(labels[:10], n_groups), markers.size, X.dtype).step(),
    )  # compile
    sel = GroupSelection(group_counts(labels, n_groups), markers.size, X.dtype)
    while not sel.done:
        step = sel.step()

        used = [0]

        def count(step=step, used=used):
            total = np.zeros((step.n_rows, step.n_bins), dtype=step.count_dtype)
            for i, block in enumerate(computed):
                part = histogram_block(block, labels[starts[i] : starts[i + 1]], markers, step)
                used[0] += bool(part.any())  # a block with a value still needed
                total += part
            return total

        name = f"kernel pass {sel.passes + 1} ({step.n_rows} rows)"
        sel.update(timed(name, count))
        rows[-1]["blocks_used"] = f"{used[0]}/{len(computed)}"
        if sel.passes == 1:  # the values a collecting pass 2 would return
            share = sel.inside[sel._own()].sum() / (X.shape[0] * markers.size)
            rows[-1]["keys_after"] = f"{share:.3f} of the values"
            step = sel.step(collect=True)
            parts = timed(
                "kernel collect (pass 2)",
                lambda step=step: [
                    candidates_block(b, labels[starts[i] : starts[i + 1]], markers, step)
                    for i, b in enumerate(computed)
                ],
            )
            probe = copy.deepcopy(sel)
            timed("client take (pass 2)", lambda probe=probe, parts=parts: probe.take(parts))
            rows[-1]["keys_mb"] = round(sum(k.nbytes for _, k in parts) / 2**20, 1)
            del parts
    if not np.array_equal(probe.medians(), sel.medians(), equal_nan=True):
        raise AssertionError("the collecting pass gives other medians")
    return rows


def cluster(store: Path, n_groups: int, seed: int) -> list[dict]:
    """Both regimes of ``lazy_group_medians`` on a LocalCluster of 1 worker × 1 thread."""
    from distributed import Client, LocalCluster

    import itme._dask as itme_dask

    cells, markers, labels = _open(store, n_groups, seed)
    from itme.core.cluster.select import GroupSelection

    X = cells.X
    rows, results = [], {}
    passes = [0]
    step = GroupSelection.step

    def counted(self, **kwargs):
        passes[0] += 1
        return step(self, **kwargs)

    GroupSelection.step = counted
    # selected with the budget MEDIAN_BATCH_BYTES has at 10^7 events (the same share of
    # the columns), so that the collecting pass is taken as it would be there
    scaled = int(2**29 * X.shape[0] / 1e7)
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit="3GB",
            env=THREAD_ENV,
        ) as lc,
        Client(lc) as client,
    ):
        client.run(lambda: __import__("itme.core.cluster._select_jit"))  # numba loaded
        default = itme_dask.MEDIAN_BATCH_BYTES
        # the annotate stage's calls: the metaclusters' medians, then those of the subsets
        # named from them (``--groups`` merged into a third as many)
        merged = (np.arange(n_groups) % max(1, n_groups // 3))[labels]
        calls = [(labels, n_groups), (merged, max(1, n_groups // 3))]
        cases = (
            ("gathered", 2**40, True),
            ("selected, before", 0, False),  # histogram passes only, every call afresh
            ("selected, after", scaled, True),  # keys collected, first pass summed
        )
        for regime, batch, reuse in cases:
            itme_dask.MEDIAN_BATCH_BYTES = batch
            with itme_dask.reuse_columns() if reuse else contextlib.nullcontext():
                for k, (lab, n) in enumerate(calls):
                    passes[0] = 0
                    w0, c0, t0 = client.run(_cpu), _cpu(), time.perf_counter()
                    results[regime, k] = itme_dask.lazy_group_medians(X, lab, n, markers)
                    seconds = time.perf_counter() - t0
                    w1, c1 = client.run(_cpu), _cpu()
                    reads = passes[0] if batch < 2**40 else int(k == 0)
                    worker = sum(w1[w] - w0[w] for w in w0)
                    rows.append(
                        {
                            "measure": f"{regime}: call {k + 1}, {n} groups, {reads} reads",
                            "seconds": round(seconds, 2),
                            "worker_cpu_s": round(worker, 2),
                            "client_cpu_s": round(c1 - c0, 2),
                            "worker_cpu_s_per_pass": round(worker / reads, 2) if reads else "",
                            "load": round(os.getloadavg()[0], 1),
                        }
                    )
        itme_dask.MEDIAN_BATCH_BYTES = default
    GroupSelection.step = step
    same = all(
        np.array_equal(results["gathered", k], value, equal_nan=True)
        for (_, k), value in results.items()
    )
    rows.append({"measure": "every regime == gathered", "equal": same})
    return rows


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--work", default="/tmp/medians_bench")
    parser.add_argument("--base", help="a cohort written by bench_scale.make_cohort (read only)")
    parser.add_argument("--only", choices=["profile", "cluster"], help="one part only")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.events}_{args.files}" + ("_base" if args.base else "")
    cohort = make_cohort(
        work / f"cohort_{tag}", args.events, args.files, Path(args.base) if args.base else None
    )
    store = work / f"cells_{tag}.zarr"
    convert(cohort, store, args.chunk_rows)
    rows = []
    if args.only in (None, "profile"):
        rows += profile(store, args.groups, args.seed)
    if args.only in (None, "cluster"):
        rows += cluster(store, args.groups, args.seed)
    keys = ["measure", "seconds", "cpu_s", "worker_cpu_s", "client_cpu_s"]
    keys += ["worker_cpu_s_per_pass", "blocks_used", "keys_after", "keys_mb", "load", "equal"]
    print(f"| {args.events} events, {args.groups} groups | " + " | ".join(keys[1:]) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print(json.dumps(row), file=sys.stderr)
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    main()
