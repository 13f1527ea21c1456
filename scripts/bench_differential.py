"""Differential abundance and state on simulated paired cohorts: power, FDR, paired vs unpaired.

Cohorts from tests/helpers/differential_sim.py (built on itme.datasets' cell simulator and the
demo cohort's reference composition): ``--patients`` donors × conditions A/B, ``--cells``
events per sample, a patient effect on every subset's abundance (log-normal sd 0.5) and on
every state marker (sd 0.3) shared by the donor's two samples; planted: 4 subsets changing
abundance (×0.5, ×0.5, ×2.5, ×2.5) and 4 subset × state-marker shifts (0.5–0.6 arcsinh) under
B. Labels are the true subsets (no clustering: the statistics are measured, not the
annotation). Each design is scored per seed at padj < 0.05: power (planted calls found) and
the false-discovery proportion (false calls / calls); the FDR is the mean FDP over seeds.
A second set of cohorts has nothing planted (every call false).

Usage::

    python scripts/bench_differential.py [--seeds 6] [--patients 8] [--cells 3000]

Simulation only: these numbers rest on the simulator's assumptions (log-normal patient
effects, Gaussian state shifts, true labels).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's itme, not an installed one

from helpers.differential_sim import evaluate  # noqa: E402

import itme  # noqa: E402


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per design: mean and range over seeds of power and FDP, total false calls."""
    out = rows.groupby("design", sort=False).agg(
        seeds=("seed", "nunique"),
        power_mean=("power", "mean"),
        power_min=("power", "min"),
        power_max=("power", "max"),
        fdr=("fdp", "mean"),
        fdp_min=("fdp", "min"),
        fdp_max=("fdp", "max"),
        false_calls=("fp", "sum"),
        seeds_with_false_call=("fp", lambda s: int((s > 0).sum())),
    )
    return out.round(3)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--cells", type=int, default=3000)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    planted, null = [], []
    for seed in range(args.seeds):
        planted += evaluate(seed, n_patients=args.patients, cells=args.cells)
        null += evaluate(1000 + seed, n_patients=args.patients, cells=args.cells, null=True)
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    pd.set_option("display.width", 200)
    print(f"\nitme {itme.__file__}\n{args.patients} donors × 2 conditions, {args.cells} events "
          f"per sample, {args.seeds} seeds; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("\nPlanted effects (power over the 4 planted; FDP among the calls):")
    print(summarise(pd.DataFrame(planted)).to_string())
    print("\nNothing planted (every call is false):")
    print(
        summarise(pd.DataFrame(null))
        .drop(columns=["power_mean", "power_min", "power_max"])
        .to_string()
    )
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
