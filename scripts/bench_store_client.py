"""The client's memory per event on the cohort-store path, at any number of events, in minutes.

What the client of ``itme run`` with ``compute:`` holds grows with the number of events
through ``obs`` (the events' names, sample columns, QC, cluster and subset labels) and the
lazy selections of the kept events; the events matrix stays in the store and on the
workers. This script measures that part alone, at cohort sizes the full benchmark
(``scripts/bench_scale.py``) cannot reach quickly: it writes a store whose ``layers/raw``
chunks are never written (zarr's fill value) and whose ``obs`` is that of ``n_files``
samples, then runs the client's bookkeeping of the pipeline stages with the library
functions the stages use, and records the RSS of this process after each step:

- ``open``: :func:`itme.io.open_store` (obs columns, events named by their row);
- ``clean``: ``obs["itme_qc"]`` (20 % of events removed), :func:`itme.pp.apply_qc`
  (a lazy selection), the kept events' mask written with :func:`itme.io.update_store`;
- ``cluster``/``annotate``: the store reopened, the kept events selected, a SOM node,
  metacluster and subset label per kept event, expanded to every event and written.

Usage::

    python scripts/bench_store_client.py --events 100000000 --files 200 --work /data/tmp

With ``--reuse`` the store is kept, and a store already there is used as it is: the same
steps can then be measured with another version of itme (``PYTHONPATH``) on the same store.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


class Peak:
    """The peak RSS of this process between two ``take()`` calls, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = rss()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        me = psutil.Process()
        while True:
            self.peak = max(self.peak, me.memory_info().rss)
            time.sleep(0.02)

    def take(self) -> int:
        out, self.peak = self.peak, rss()
        return out


def write_store(path: Path, events: int, files: int, channels: int, chunk_rows: int) -> None:
    """A store with the obs of ``files`` samples and an unwritten ``layers/raw``."""
    import anndata as ad

    from itme._adata import by_position
    from itme.io._store import _group, _write_names, _zarr_settings

    counts = np.full(files, events // files, dtype=np.int64)
    counts[: events % files] += 1
    ids = [f"S{k:04d}" for k in range(files)]
    sample = pd.Categorical.from_codes(np.repeat(np.arange(files, dtype=np.int16), counts), ids)
    patient = pd.Categorical.from_codes(
        np.repeat(np.arange(files, dtype=np.int16), counts), [f"P{k:04d}" for k in range(files)]
    )
    obs = pd.DataFrame(
        {"sample_id": sample, "patient_id": patient}, index=pd.RangeIndex(events), copy=False
    )
    var = pd.DataFrame(index=[f"ch{k}" for k in range(channels)])
    with _zarr_settings():
        by_position(obs, var=var).write_zarr(path)
    _write_names(path, ids, counts, chunk_rows)
    raw = (
        _group(path)
        .require_group("layers")
        .create_array(
            "raw", shape=(events, channels), chunks=(chunk_rows, channels), dtype="float32"
        )
    )
    raw.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    with _zarr_settings():
        ad.io.write_elem(_group(path), "uns", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--channels", type=int, default=47)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--work", default="/tmp/itme_bench_store_client")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the store, and reuse it when it exists (e.g. to measure another itme)",
    )
    args = parser.parse_args()
    import anndata.io  # noqa: F401  (imported before the baseline: not memory per event)
    import dask.array  # noqa: F401
    import zarr  # noqa: F401

    import itme
    from itme.pp._subset import subset_events

    path = Path(args.work) / f"client_{args.events}.zarr"
    if not args.reuse:
        shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = args.events
    steps: dict[str, dict] = {}
    base = rss()
    peak = Peak()
    t0 = time.perf_counter()

    def step(name: str) -> None:
        top, now = peak.take(), rss()
        steps[name] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": round(top / 1e9, 3),
            "rss_after_gb": round(now / 1e9, 3),
            "peak_bytes_per_event": round((top - base) / n, 1),
            "bytes_per_event_after": round((now - base) / n, 1),
        }
        print(name, json.dumps(steps[name]), flush=True)

    if not path.exists():
        write_store(path, n, args.files, args.channels, args.chunk_rows)
        step("write (names chunk by chunk)")
    cells = itme.io.open_store(path)
    step("open")
    rng = np.random.default_rng(1)
    qc = (rng.random(n) < 0.2).astype(np.int8)  # 20 % removed
    cells.obs["itme_qc"] = pd.Categorical.from_codes(qc, ["kept", "debris"])
    del qc
    kept = itme.pp.apply_qc(cells)
    step("clean: apply_qc")
    if pd.api.types.is_integer_dtype(kept.obs_names.dtype):  # named by row (this version)
        chosen = np.zeros(n, dtype=bool)
        chosen[kept.obs_names.to_numpy()] = True
    else:  # named by strings (itme before the events were named by row)
        chosen = cells.obs_names.isin(kept.obs_names)
    cells.obs["itme_clean"] = chosen
    del kept, chosen
    itme.io.update_store(cells, obs=["itme_qc", "itme_clean"])
    step("clean: written")
    del cells
    cells = itme.io.open_store(path)
    mask = cells.obs["itme_clean"].to_numpy(dtype=bool)
    events = subset_events(cells, np.flatnonzero(mask))
    step("cluster: kept events selected")
    m = events.n_obs
    nodes = rng.integers(0, 100, m).astype(np.int32)
    events.obs["som_node"] = pd.Categorical.from_codes(nodes, [str(i) for i in range(100)])
    events.obs["metacluster"] = pd.Categorical.from_codes(
        nodes % 40, [str(i + 1) for i in range(40)]
    )
    events.obs["subset"] = pd.Categorical.from_codes(nodes % 20, [f"T{i}" for i in range(20)])
    del nodes
    step("annotate: labels")
    for col in ("som_node", "metacluster", "subset"):
        values = events.obs[col]
        codes = np.full(n, -1, dtype=values.cat.codes.dtype)
        codes[mask] = values.cat.codes.to_numpy()
        cells.obs[col] = pd.Categorical.from_codes(codes, dtype=values.dtype)
    itme.io.update_store(cells, obs=["som_node", "metacluster", "subset"])
    step("annotate: written")
    summary = {
        "events": n,
        "files": args.files,
        "baseline_rss_gb": round(base / 1e9, 3),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in steps.values()),
        "peak_bytes_per_event": max(s["peak_bytes_per_event"] for s in steps.values()),
        "steps": steps,
    }
    print(json.dumps(summary))
    if not args.reuse:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
