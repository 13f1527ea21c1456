"""Where the time of `itme demo` goes: wall and CPU seconds of every stage (issue 14, item 10).

Runs :func:`itme.pipeline.run_demo` in this process with every stage function wrapped, so the
table shows the simulation, each stage and the total, in wall seconds and in CPU seconds
(user + system of all threads and of the annotate stage's second process: less sensitive
than wall time to other jobs on a shared machine) and their ratio, the cores a step kept
busy. Note ``uptime`` next to the numbers.

    python scripts/bench_demo_stages.py [--out /tmp/itme_demo_stages] [--patients 39] [--cells 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import time
import warnings
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its finished children.

    The children: the annotate stage's UMAP runs in a second process
    (:mod:`itme.pipeline._background`) started by the cluster stage; it is counted once it has
    been waited for, i.e. in the annotate stage, though most of it runs during the cluster stage.
    """
    return sum(
        r.ru_utime + r.ru_stime
        for r in (
            resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/itme_demo_stages"))
    ap.add_argument("--patients", type=int, default=39)
    ap.add_argument("--cells", type=int, default=20_000)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average)", flush=True)
    t_start, c_start = time.perf_counter(), cpu_seconds()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("itme.tl._embed").setLevel(logging.INFO)

    from itme.pipeline import run_demo
    from itme.pipeline._stages import STAGES

    t_import, c_import = time.perf_counter() - t_start, cpu_seconds() - c_start
    rows: list[tuple[str, float, float]] = [("import itme", t_import, c_import)]
    marks = {"t": time.perf_counter(), "c": cpu_seconds()}

    def timed(name, fn):
        def wrapper(ctx):
            if not any(r[0] == "simulate + validate" for r in rows):
                rows.append(
                    (
                        "simulate + validate",
                        time.perf_counter() - marks["t"],
                        cpu_seconds() - marks["c"],
                    )
                )
            t, c = time.perf_counter(), cpu_seconds()
            try:
                return fn(ctx)
            finally:
                rows.append((name, time.perf_counter() - t, cpu_seconds() - c))

        return wrapper

    for stage in STAGES:
        stage.run = timed(stage.name, stage.run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_demo(args.out, n_patients=args.patients, cells_per_sample=args.cells)
    total = (time.perf_counter() - t_start, cpu_seconds() - c_start)
    # cpu / wall: the cores a step kept busy (up to 2 on the 2-core machine; less under load)
    print(f"{'step':<22}{'wall s':>9}{'cpu s':>9}{'cpu/wall':>10}")
    stages = [r for r in rows if r[0] not in ("import itme", "simulate + validate")]
    for name, wall, cpu in [
        *rows,
        ("stages", sum(r[1] for r in stages), sum(r[2] for r in stages)),
    ]:
        print(f"{name:<22}{wall:>9.1f}{cpu:>9.1f}{cpu / max(wall, 1e-9):>10.2f}")
    print(f"{'total':<22}{total[0]:>9.1f}{total[1]:>9.1f}{total[1] / total[0]:>10.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")


if __name__ == "__main__":
    main()
