"""A real Dask cluster on loopback for tests: ``dask scheduler`` and ``dask worker`` processes.

Each worker runs under its nanny (the ``dask worker`` default), so a worker process killed by
a test is restarted, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def dask_cluster(folder: Path, *, workers: int = 2, memory: str = "1GB") -> Iterator[str]:
    """Start a scheduler and ``workers`` single-threaded workers on 127.0.0.1; its address."""
    info = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = {"env": env, "cwd": folder, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    dask_cli = [sys.executable, "-m", "dask"]
    scheduler = [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    procs = [subprocess.Popen([*scheduler, "--scheduler-file", str(info)], **common)]
    try:
        deadline = time.monotonic() + 30
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        worker = [*dask_cli, "worker", address, "--interface", "lo"]  # binds 127.0.0.1
        worker += ["--nthreads", "1", "--nworkers", "1", "--memory-limit", memory]
        for _ in range(workers):
            procs.append(subprocess.Popen([*worker, "--no-dashboard"], **common))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a loaded machine: reap it, no zombie
                p.kill()
                p.wait()
