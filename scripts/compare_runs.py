"""Compare the tables of two itme run folders, byte for byte and value by value.

Used to check that a change of code keeps results (the renovation, the Dask path, chunk
sizes, worker counts): every ``tables/*.csv`` present in either folder is reported as
identical, missing on one side, or different, with the largest absolute difference of the
numeric columns and the columns or rows that differ.

Usage::

    python scripts/compare_runs.py RUN_A RUN_B [--ignore qc_thresholds ...]

Exit status 0 when every compared table is byte-identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def compare_table(a: Path, b: Path) -> str:
    """One line saying how two CSV tables differ ("identical" when their bytes are equal)."""
    if a.read_bytes() == b.read_bytes():
        return "identical"
    ta, tb = pd.read_csv(a), pd.read_csv(b)
    if list(ta.columns) != list(tb.columns):
        only_a = [c for c in ta.columns if c not in tb.columns]
        only_b = [c for c in tb.columns if c not in ta.columns]
        return f"columns differ: only in A {only_a}, only in B {only_b}"
    if ta.shape != tb.shape:
        return f"shape {ta.shape} vs {tb.shape}"
    parts = []
    for col in ta.columns:
        x, y = ta[col], tb[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(float), y.to_numpy(float)
            same_nan = np.isnan(xv) == np.isnan(yv)
            diff = np.nanmax(np.abs(xv - yv)) if np.isfinite(xv - yv).any() else 0.0
            if not same_nan.all() or diff > 0:
                parts.append(f"{col} max|Δ| {diff:.3g} (NaN pattern same: {same_nan.all()})")
        elif not x.astype(str).equals(y.astype(str)):
            parts.append(f"{col}: {int((x.astype(str) != y.astype(str)).sum())} rows differ")
    return "values differ: " + "; ".join(parts) if parts else "same values, other bytes"


def main(argv: list[str] | None = None) -> int:
    """Compare ``tables/`` of two runs; print one line per table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--ignore", nargs="*", default=[], help="table stems not compared")
    args = parser.parse_args(argv)
    ta, tb = args.run_a / "tables", args.run_b / "tables"
    names = sorted({p.name for p in ta.glob("*.csv")} | {p.name for p in tb.glob("*.csv")})
    ok = True
    for name in names:
        if Path(name).stem in args.ignore:
            print(f"{name}: ignored")
            continue
        a, b = ta / name, tb / name
        if not a.exists() or not b.exists():
            print(f"{name}: only in {'B' if not a.exists() else 'A'}")
            ok = False
            continue
        verdict = compare_table(a, b)
        ok &= verdict == "identical"
        print(f"{name}: {verdict}")
    print("ALL IDENTICAL" if ok else "DIFFERENCES FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
