"""Benchmark: read a cohort of FCS files into one AnnData (issue: foundation).

Target: 38 files × 100,000 events × 40 channels, written with itme.io.write_fcs, read with
itme.io.read_cohort at ≥ 200 MB/s of FCS data; peak RSS ≤ 2× the final float32 matrix.

Each measurement runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own; the
baseline is the RSS after importing itme. A second table times itme.io.read_fcs on every real
FCS file of ../shared/data and fcsparser's test set (HEADER/TEXT parsing dominates there).
Usage:

    python scripts/bench_io.py [--files 38] [--events 100000] [--channels 40] [--dir /tmp/itme_bench_io]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import itme
r0 = resource.getrusage(resource.RUSAGE_SELF)
base = r0.ru_maxrss * 1024
t = time.perf_counter()
adata = itme.io.read_cohort(sys.argv[1], sys.argv[2], checksums=sys.argv[3] == "1")
elapsed = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
peak = r1.ru_maxrss * 1024
print(json.dumps({"elapsed": elapsed, "cpu": cpu, "base": base, "peak": peak, "matrix": adata.X.nbytes, "n_obs": adata.n_obs}))
"""


REAL = r"""
import importlib.util, json, sys, time, warnings
from pathlib import Path
import itme
warnings.simplefilter("ignore")
files = sorted(Path(sys.argv[1]).rglob("*.fcs"))
spec = importlib.util.find_spec("fcsparser")
if spec is not None:
    root = Path(spec.origin).parent / "tests" / "data" / "FlowCytometers"
    files += sorted(p for p in root.rglob("*") if p.suffix.lower() in {".fcs", ".lmd"})
runs = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    for f in files:
        try:
            itme.io.read_fcs(f)
        except itme.errors.ItmeError:
            pass
    runs.append(time.perf_counter() - t)
size = sum(f.stat().st_size for f in files)
print(json.dumps({"files": len(files), "mb": size / 1e6, "runs": runs}))
"""


def make_cohort(
    folder: Path, n_files: int, n_events: int, n_channels: int
) -> tuple[Path, Path, int]:
    import anndata as ad
    import numpy as np
    import pandas as pd

    import itme

    folder.mkdir(parents=True, exist_ok=True)
    samples, panel = folder / "samples.csv", folder / "panel.csv"
    channels = [f"Ch{j:02d}Di" for j in range(n_channels)]
    if not samples.exists() or len(pd.read_csv(samples)) != n_files:
        rng = np.random.default_rng(0)
        var = pd.DataFrame(
            {"channel": channels, "antigen": [f"M{j}" for j in range(n_channels)]}, index=channels
        )
        for k in range(n_files):
            x = rng.gamma(1.5, 40.0, size=(n_events, n_channels)).astype(np.float32)
            itme.io.write_fcs(ad.AnnData(x, var=var), folder / f"f{k:02d}.fcs")
        pd.DataFrame(
            {
                "file_name": [f"f{k:02d}.fcs" for k in range(n_files)],
                "sample_id": [f"S{k}" for k in range(n_files)],
                "patient_id": [f"P{k}" for k in range(n_files)],
            }
        ).to_csv(samples, index=False)
        pd.DataFrame(
            {
                "fcs_colname": channels,
                "antigen": [f"M{j}" for j in range(n_channels)],
                "marker_class": "type",
            }
        ).to_csv(panel, index=False)
    size = sum(p.stat().st_size for p in folder.glob("*.fcs"))
    return samples, panel, size


def run(samples: Path, panel: Path, checksums: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(samples), str(panel), "1" if checksums else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=38)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--channels", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/itme_bench_io"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--profile", action="store_true", help="print where the time goes (cProfile, one run)"
    )
    args = ap.parse_args()
    t = time.perf_counter()
    samples, panel, size = make_cohort(args.dir, args.files, args.events, args.channels)
    print(
        f"cohort: {args.files} files × {args.events:,} events × {args.channels} channels, {size / 1e6:.1f} MB of FCS ({time.perf_counter() - t:.1f} s to prepare)"
    )
    if args.profile:
        import cProfile
        import pstats

        import itme

        cProfile.runctx(
            "itme.io.read_cohort(samples, panel, checksums=False)",
            {"itme": itme},
            {"samples": samples, "panel": panel},
            "/tmp/bench_io.prof",
        )
        pstats.Stats("/tmp/bench_io.prof").sort_stats("tottime").print_stats(12)
        return
    shared = Path(
        os.environ.get("ITME_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    if shared.is_dir():
        out = subprocess.run(
            [sys.executable, "-c", REAL, str(shared), str(max(args.repeats, 3))],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        runs = sorted(m["runs"])
        print(
            f"read_fcs on {m['files']} real files ({m['mb']:.1f} MB): min {runs[0] * 1e3:.0f} ms, "
            f"median {runs[len(runs) // 2] * 1e3:.0f} ms over {len(runs)} runs"
        )
    print(
        f"{'checksums':>9} {'run':>3} {'seconds':>8} {'MB/s':>7} {'CPU s':>6} {'MB/CPU s':>8} {'matrix MB':>9} {'base RSS MB':>11} {'peak RSS MB':>11} {'peak/matrix':>11} {'(peak-base)/matrix':>18}"
    )
    for checksums in (False, True):
        for r in range(args.repeats):
            m = run(samples, panel, checksums)
            print(
                f"{checksums!s:>9} {r:>3} {m['elapsed']:8.2f} {size / 1e6 / m['elapsed']:7.0f} {m['cpu']:6.2f} "
                f"{size / 1e6 / m['cpu']:8.0f} {m['matrix'] / 1e6:9.0f} "
                f"{m['base'] / 1e6:11.0f} {m['peak'] / 1e6:11.0f} {m['peak'] / m['matrix']:11.2f} {(m['peak'] - m['base']) / m['matrix']:18.2f}"
            )


if __name__ == "__main__":
    main()
