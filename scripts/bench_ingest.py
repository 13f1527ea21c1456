"""Ingest benchmark: FCS files → cohort store (``read_cohort(..., store=...)``), warm cache.

Writes (or reuses) a synthetic cohort as ``scripts/bench_scale.py`` does (``simulate_cohort``,
47 channels, float32 FCS), reads every file once so the page cache is warm, then

- ``--breakdown``: the conversion's parts one after the other in this process, on one
  thread: the TEXT pass, building ``obs``, the skeleton (groups, var, empty arrays), the
  parts that ``read_cohort`` writes beside the conversion tasks (``beside:`` obs's columns,
  ``uns`` but the files' table), reading DATA, SHA-256, building the events' names (each
  alone, ``(part)``; the names as built in memory and as encoded into the store's chunks),
  the conversion tasks, the shared chunks, the files' table with ``uns``
  put in place, opening the store. ``serial_total_but_beside_s`` leaves out the ``beside:``
  parts, which overlap the conversion tasks;
- ``--codecs``: each candidate codec on the first file's events: seconds, MB/s and the
  stored size against the FCS bytes;
- end to end, ``read_cohort(samples, panel, store=...)`` under each scheduler of
  ``--setups``: ``threads`` (dask's threaded scheduler, 2 threads), ``local1`` / ``local2``
  (a ``LocalCluster`` of 1 or 2 worker processes, 1 thread each, started before the clock).

MB/s = bytes of the FCS files / wall seconds. CPU seconds are those of this process and its
children (the workers). The load average is printed with every line. Run it under
``nice -n 10`` on a shared machine::

    nice -n 10 python scripts/bench_ingest.py --events 10000000 --breakdown --codecs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import folder_bytes, make_cohort


def warm(files: list[Path]) -> None:
    """Read every file once (into the page cache)."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live children."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for p in me.children(recursive=True):
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def load() -> float:
    return round(os.getloadavg()[0], 2)


def end_to_end(cohort: Path, work: Path, setup: str, chunk_rows: int) -> dict:
    import dask

    import itme

    store = work / "cells.zarr"
    shutil.rmtree(store, ignore_errors=True)
    client = None
    config = {}
    if setup == "threads":
        config = {"scheduler": "threads", "num_workers": 2}
    else:
        from itme._dask import ComputeSettings, start_compute

        workers = int(setup.removeprefix("local"))
        client = start_compute(ComputeSettings(scheduler="local", workers=workers))
        client.__enter__()
    files = sorted((cohort / "fcs").glob("*.fcs"))
    fcs_bytes = sum(f.stat().st_size for f in files)
    warm(files)
    before, l0 = cpu_seconds(), load()
    t0 = time.perf_counter()
    with dask.config.set(config), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = itme.io.read_cohort(
            cohort / "samples.csv", cohort / "panel.csv", store=store, chunk_rows=chunk_rows
        )
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - before
    if client is not None:
        client.__exit__(None, None, None)
    result = {
        "setup": setup,
        "events": int(cells.n_obs),
        "fcs_mb": fcs_bytes / 1e6,
        "seconds": round(seconds, 2),
        "mb_per_s": round(fcs_bytes / 1e6 / seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "store_x_fcs": round(folder_bytes(store) / fcs_bytes, 3),
        "load": [l0, load()],
    }
    shutil.rmtree(store, ignore_errors=True)
    return result


def breakdown(cohort: Path, work: Path, chunk_rows: int, compressors: object = None) -> dict:
    """The conversion's parts, one after the other, on one thread."""
    from itme._files import sha256
    from itme.io import _cohort, _store
    from itme.io._channels import alias_table
    from itme.io._fcs_events import read_events
    from itme.io._tables import read_panel, read_samples

    store = work / "parts.zarr"
    shutil.rmtree(store, ignore_errors=True)
    files = sorted((cohort / "fcs").glob("*.fcs"))
    fcs_bytes = sum(f.stat().st_size for f in files)
    warm(files)
    parts: dict[str, float] = {}

    cpu: dict[str, float] = {}

    def timed(name, func, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = func(*args, **kwargs)
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - c0
        return out

    warnings.simplefilter("ignore")
    table, folder = read_samples(cohort / "samples.csv")
    panel = read_panel(cohort / "panel.csv")

    def text_pass():
        paths = _cohort._resolve_files(table, folder, None)
        return _cohort._plan(table, paths, panel, "keep", alias_table(None), "exclude")

    plans, extra, dropped, channel_map, used_panel, excluded = timed("TEXT pass (plan)", text_pass)
    var = _cohort._var(used_panel, extra)
    info = {"panel": panel, "dropped": dropped, "channel_map": channel_map, "excluded": excluded}
    counts = np.array([p.text.n_events for p in plans], dtype=np.int64)
    obs = timed("obs built in the client (codes)", _cohort._obs, table, counts, named=False)
    n, m = int(counts.sum()), var.shape[0]
    timed(
        "skeleton: groups, var, empty arrays", _store._write_skeleton, store, obs, var, chunk_rows
    )
    group = _store._group(store)
    # written beside the tasks (in a thread of the client) by read_cohort(store=)
    timed("beside: obs columns", _store._write_obs_columns, str(store), obs)
    io = _store._uns_to_store({"io": _store._io_but_files(plans, info)})
    timed("beside: uns but the files' table", _store._write_new, group, "uns", io)
    if compressors is not None:  # the zarr default instead, for comparison
        del group["layers"]["raw"]
        group["layers"].create_array(
            "raw", shape=(n, m), chunks=(chunk_rows, m), dtype="float32", compressors=compressors
        )
    rows = np.concatenate([[0], np.cumsum(counts)])
    sharing: dict[int, list] = {}

    def names_encoded(sample_id: str, count: int) -> None:
        """The names as the store's chunks hold them: vlen-utf8 (numpy) and zstd."""
        from numcodecs.zstd import Zstd

        from itme.io._chunk_files import encode_names

        zstd = Zstd(level=1)
        for a in range(0, count, chunk_rows):
            n = min(chunk_rows, count - a)
            zstd.encode(encode_names([(sample_id, a, n)], n))

    for k, plan in enumerate(plans):
        values = np.zeros((counts[k], m), dtype=np.float32)
        # the task's parts, each alone (not summed: the task below does them again)
        timed("(part) DATA read into float32", read_events, plan.text, values, plan.columns)
        timed("(part) sha256 alone, a 2nd read", sha256, plan.path)
        digest = hashlib.sha256()
        args = (plan.text, values, plan.columns, None)
        timed("(part) DATA read + sha256, one read", read_events, *args, digest=digest)
        timed("(part) names built", _cohort.event_names, plan.sample_id, int(counts[k]))
        timed("(part) names encoded as chunks", names_encoded, plan.sample_id, int(counts[k]))
        a, b = int(rows[k]), int(rows[k + 1])
        args = (plan, str(store), a, b, chunk_rows, True)
        _, edges = timed("conversion tasks (_convert_one)", _store._convert_one, *args)
        for chunk in edges:
            sharing.setdefault(chunk, []).append(edges)
    for chunk, edges in sharing.items():
        timed("shared chunks (_write_shared)", _store._write_shared, str(store), chunk, *edges)

    def files_table():  # after the tasks: the files' table (checksums), uns put in place
        from anndata.io import write_elem

        files = pd.DataFrame({"sha256": ["0" * 64] * len(plans), "notes": [""] * len(plans)})
        with _store._zarr_settings():
            write_elem(group["uns.new"]["io"], "files", files)
        _store._put_in_place(group, "uns")

    timed("files' table, uns put in place + consolidated", files_table)
    timed("open_store (reads obs back)", _store.open_store, store)
    # not on the path of read_cohort(store=): the parts alone, reopening the store
    total = sum(v for k, v in parts.items() if not k.startswith("(part)") and "open" not in k)
    beside = sum(v for k, v in parts.items() if k.startswith("beside"))
    stored = folder_bytes(store)
    shutil.rmtree(store, ignore_errors=True)
    return {
        "events": n,
        "fcs_mb": fcs_bytes / 1e6,
        "compressors": str(compressors),
        "parts_wall_s": {k: round(v, 2) for k, v in parts.items()},
        "parts_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "serial_total_s": round(total, 2),
        "serial_total_but_beside_s": round(total - beside, 2),
        "serial_mb_per_s": round(fcs_bytes / 1e6 / total, 1),
        "store_x_fcs": round(stored / fcs_bytes, 3),
        "load": load(),
    }


def codecs(cohort: Path, chunk_rows: int) -> list[dict]:
    """Each candidate codec on the first file's events, chunk by chunk, one thread."""
    import numcodecs

    from itme.io._fcs_format import parse_fcs

    files = sorted((cohort / "fcs").glob("*.fcs"))
    fcs = parse_fcs(files[0], only_text=True)
    values = np.zeros((fcs.n_events, fcs.channels.shape[0]), dtype=np.float32)
    from itme.io._fcs_events import read_events

    read_events(fcs, values, np.arange(fcs.channels.shape[0]))
    chunks = [values[i : i + chunk_rows] for i in range(0, len(values), chunk_rows)]
    candidates = {
        "zstd level 0 (zarr default)": numcodecs.Zstd(level=0),
        "zstd level 1": numcodecs.Zstd(level=1),
        "zstd level -1": numcodecs.Zstd(level=-1),
        "blosc zstd 1 shuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE),
        "blosc zstd 1 bitshuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE),
        "blosc lz4 5 shuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
        "blosc lz4 1 shuffle": numcodecs.Blosc("lz4", 1, numcodecs.Blosc.SHUFFLE),
        "blosc lz4 5 bitshuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
        "blosc blosclz 5 shuffle": numcodecs.Blosc("blosclz", 5, numcodecs.Blosc.SHUFFLE),
        "lz4 1": numcodecs.LZ4(1),
    }
    numcodecs.blosc.set_nthreads(1)
    out = []
    for name, codec in candidates.items():
        t0 = time.perf_counter()
        size = sum(len(codec.encode(c)) for c in chunks)
        enc = time.perf_counter() - t0
        blobs = [codec.encode(c) for c in chunks]
        t0 = time.perf_counter()
        for blob in blobs:
            codec.decode(blob)
        dec = time.perf_counter() - t0
        out.append(
            {
                "codec": name,
                "encode_mb_per_s": round(values.nbytes / 1e6 / enc),
                "decode_mb_per_s": round(values.nbytes / 1e6 / dec),
                "size_x_float32": round(size / values.nbytes, 3),
                "load": load(),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--setups", default="threads,local1,local2")
    parser.add_argument("--repeat", type=int, default=1, help="end-to-end runs per setup")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--codecs", action="store_true")
    parser.add_argument("--work", default="/tmp/itme_bench_ingest")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cohort = make_cohort(work / f"cohort_{args.events}", args.events, args.files)
    if args.codecs:
        for row in codecs(cohort, args.chunk_rows):
            print(json.dumps(row), flush=True)
    if args.breakdown:
        print(json.dumps(breakdown(cohort, work, args.chunk_rows)), flush=True)
        if args.codecs:  # the zarr default (zstd) for comparison
            print(json.dumps(breakdown(cohort, work, args.chunk_rows, "auto")), flush=True)
    for _ in range(args.repeat):
        for setup in [s for s in args.setups.split(",") if s]:
            print(json.dumps(end_to_end(cohort, work, setup, args.chunk_rows)), flush=True)


if __name__ == "__main__":
    main()
