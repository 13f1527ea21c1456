"""`itme warmup` fills numba's on-disk cache with the code a run compiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_warmup_caches_the_compiled_code_of_a_run(tmp_path):
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", "from itme.cli import entry_point; entry_point()", "-q", "warmup"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("numba code compiled and cached in ")
    assert proc.stderr == ""  # the tiny demo's warnings and log are not the user's
    cached = {p.name.split("-")[0] for p in cache.rglob("*.nbi")}
    # flowsom's SOM, umap-learn's layout, pynndescent's distances, itme's batch kernels
    assert {"_som.SOM", "layouts._optimize_layout_euclidean_single_epoch", "_jit.apply"} <= cached
    assert any(name.startswith("distances.") for name in cached)
