"""How much two processes get out of this machine's cores: the ceiling of 1 vs 2 workers.

Runs the same kernel in 1 process, then in 2 processes at once, and prints the
throughput of 2 against twice that of 1 (1.0: the cores scale perfectly). Kernels:

- ``arcsinh``: ``np.arcsinh`` of a block of 262,144 events × 47 channels (float32), as the
  store's transform (memory traffic and arithmetic);
- ``cache``: ``np.arcsinh`` of a block that fits in the L2 cache (arithmetic only);
- ``copy``: a copy of the block (memory bandwidth only).

Usage: ``python scripts/bench_cores.py [--seconds 8] [--repeat 3]``. Nothing else should run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import numpy as np

KERNELS = {
    "arcsinh": ((262_144, 47), lambda x, out: np.arcsinh(x, out=out)),
    "cache": ((2_048, 47), lambda x, out: np.arcsinh(x, out=out)),
    "copy": ((262_144, 47), lambda x, out: np.copyto(out, x)),
}


def _run(kernel: str, seconds: float, start: float, done: mp.Queue) -> None:
    shape, func = KERNELS[kernel]
    x = np.random.default_rng(0).gamma(2.0, 50.0, size=shape).astype(np.float32)
    out = np.empty_like(x)
    while time.time() < start:
        time.sleep(0.001)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        func(x, out)
        n += 1
    done.put(n * x.size / (time.perf_counter() - t0))


def throughput(kernel: str, processes: int, seconds: float) -> float:
    """Values a second summed over ``processes`` running ``kernel`` at once."""
    done: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    procs = [mp.Process(target=_run, args=(kernel, seconds, start, done)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [done.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for kernel in KERNELS:
        ratios = []
        for _ in range(args.repeat):
            one = throughput(kernel, 1, args.seconds)
            two = throughput(kernel, 2, args.seconds)
            ratios.append(two / (2 * one))
        print(json.dumps({"kernel": kernel, "two_vs_twice_one": [round(r, 3) for r in ratios]}))


if __name__ == "__main__":
    main()
