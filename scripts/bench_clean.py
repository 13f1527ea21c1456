"""Benchmark: pp.arcsinh + pp.clean on a synthetic cohort (default 4,000,000 events x 40 channels).

Run: /work/venv/bin/python scripts/bench_clean.py [--events N] [--samples S] [--seed K]

The cohort is the reference lymphoid panel cut to 40 channels (all QC channels kept), 20
samples, with beads, debris, doublets, dead and CD45- events planted
(itme.datasets._qc). Memory is read from the kernel: the peak resident set (VmHWM) is
reset through /proc/self/clear_refs just before each step, so each step's peak is its own
(Linux only). A sampler thread also records VmRSS every 5 ms as a cross-check. Nothing is
written to disk.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

import itme
from itme.core.clean.channels import detect_roles
from itme.datasets._qc import plant_qc_events, simulate_good_cells

PANEL = Path(__file__).resolve().parents[1] / "itme" / "data" / "panels" / "lymphoid_visram2021.csv"
FRACTIONS = {"bead": 0.02, "debris": 0.05, "doublet": 0.05, "dead": 0.08, "cd45_negative": 0.10}


def _status(field: str) -> int:
    """A VmXXX field of /proc/self/status in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _status("VmRSS"))
            time.sleep(0.005)


def make_cohort(n_events: int, n_samples: int, seed: int) -> tuple[AnnData, np.ndarray]:
    table = pd.read_csv(PANEL)
    droppable = table.index[table["marker_class"].eq("type") & table["antigen"].ne("CD45")]
    drop = droppable[len(droppable) - (len(table) - 40) :]
    table = table.drop(index=drop).reset_index(drop=True)
    names = table["antigen"].tolist()
    roles = detect_roles(names, table["fcs_colname"].tolist(), names)
    channels = {r: v for r, v in roles.items() if r != "bead_distance"}
    rng = np.random.default_rng(seed)
    X = np.empty((n_events, len(names)), dtype=np.float32)
    classes = ["kept", *FRACTIONS]
    truth = np.empty(n_events, dtype=np.int8)
    bounds = np.linspace(0, n_events, n_samples + 1).astype(int)
    for i in range(n_samples):
        a, b = bounds[i], bounds[i + 1]
        good = simulate_good_cells(b - a, len(names), cd45=roles["cd45"][0], rng=rng)
        X[a:b], labels = plant_qc_events(good, channels=channels, fractions=FRACTIONS, rng=rng)
        truth[a:b] = pd.Categorical(labels, categories=classes).codes
        del good, labels
    sid = np.repeat([f"S{i + 1:02d}" for i in range(n_samples)], np.diff(bounds))
    obs = pd.DataFrame(
        {"sample_id": pd.Categorical(sid), "patient_id": pd.Categorical(sid)},
        index=pd.RangeIndex(n_events).astype(str),
    )
    var = pd.DataFrame(
        {
            "channel": table["fcs_colname"].to_numpy(),
            "antigen": table["antigen"].to_numpy(),
            "marker_class": pd.Categorical(table["marker_class"]),
        },
        index=pd.Index(names),
    )
    return AnnData(X=X, obs=obs, var=var, layers={"raw": X}), truth


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so the baseline is what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measure(label: str, func) -> dict:
    gc.collect()
    _trim()
    base = _status("VmRSS")
    exact = _reset_peak()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    func()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    peak = _status("VmHWM") if exact else sampler.peak
    return {
        "step": label,
        "seconds": seconds,
        "rss_before_MB": base / 1e6,
        "peak_MB": peak / 1e6,
        "sampled_peak_MB": sampler.peak / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"RSS after imports: {_status('VmRSS') / 1e6:.0f} MB")
    t0 = time.perf_counter()
    adata, truth = make_cohort(args.events, args.samples, args.seed)
    gc.collect()
    _trim()
    matrix_mb = adata.X.nbytes / 1e6
    print(
        f"cohort: {adata.n_obs:,} events x {adata.n_vars} channels, float32 matrix "
        f"{matrix_mb:.0f} MB, made in {time.perf_counter() - t0:.1f} s"
    )
    rows = [
        measure("arcsinh", lambda: itme.pp.arcsinh(adata)),
        measure("clean", lambda: itme.pp.clean(adata)),
    ]
    total = rows[0]["seconds"] + rows[1]["seconds"]
    base = rows[0]["rss_before_MB"]
    peak = max(r["peak_MB"] for r in rows)
    print(f"\n{'step':<10}{'seconds':>9}{'RSS before MB':>15}{'peak MB':>10}{'sampled MB':>12}")
    for r in rows:
        print(
            f"{r['step']:<10}{r['seconds']:>9.2f}{r['rss_before_MB']:>15.0f}"
            f"{r['peak_MB']:>10.0f}{r['sampled_peak_MB']:>12.0f}"
        )
    print(f"\narcsinh + clean: {total:.2f} s (target <= 20 s)")
    print(
        f"peak RSS {peak:.0f} MB = {peak / matrix_mb:.2f} x the matrix ({matrix_mb:.0f} MB); "
        f"baseline before the steps {base:.0f} MB (raw matrix + interpreter), so the steps "
        f"added {peak - base:.0f} MB = {(peak - base) / matrix_mb:.2f} x the matrix "
        "(the new X is 1.00 x by contract)"
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(f"ru_maxrss over the whole run (includes making the cohort): {maxrss:.0f} MB")
    labels = adata.obs["itme_qc"].astype(str).to_numpy()
    truth = np.asarray(["kept", *FRACTIONS])[truth]
    recovered = {c: 100 * np.mean(labels[truth == c] == c) for c in FRACTIONS}
    print(
        "recovery %: "
        + ", ".join(f"{c} {v:.1f}" for c, v in recovered.items())
        + f"; good cells removed {100 * np.mean(labels[truth == 'kept'] != 'kept'):.2f} %"
    )


if __name__ == "__main__":
    main()
