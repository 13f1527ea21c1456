"""Spillover estimation and compensation on simulated beads and cells with a known matrix (issue 16).

For each seed, on the metals of a real panel (the Bodenmiller 2012 BCR-XL files: 32 metal
channels; ``--panel krieg`` for the Krieg 2018 anti-PD-1 panel, 30):

1. a true spillover matrix is drawn with CATALYST's interactions
   (``itme.datasets.simulate_spillover_matrix``: ±1 mass 0.3-3 %, +16 oxide 0.5-3 %,
   same-element isotopes 0.1-1 %);
2. single-stained beads (``simulate_single_stains``: 1,000 beads per channel, medians
   500-5,000 counts, Poisson counting noise) → ``tl.estimate_spillover`` (automatic
   population assignment) → ``err_pp`` = the largest |estimate - truth| over all entries,
   in percentage points;
3. cells positive in random channels (``simulate_spilled_cells``: 50,000 events, Poisson
   noise) → ``pp.compensate`` with the *estimated* matrix (nnls and flow) → for each channel
   the median over the events truly positive in it, compared with the true median:
   ``med_err`` = the largest relative error over channels (``raw_err``: before
   compensation; ``floor``: nnls with the *true* matrix, i.e. what counting noise alone
   leaves); ``neg_med`` = the largest median, over events truly negative in a channel, of
   that channel (spillover left in negative cells; before / after);
4. NNLS: the minimum compensated count (never negative), the largest difference from
   ``scipy.optimize.nnls`` on 2,000 events, and the time per event of both (itme's over all
   50,000 events; run with ``OPENBLAS_NUM_THREADS=1`` for a like-for-like comparison with
   the single-threaded scipy solver).

Then a smoke test on a real file: one Bodenmiller FCS file (and one Krieg file) compensated
with the seed-0 estimated matrix: channels matched, absent, not in the matrix, time.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_compensation.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.optimize import nnls

from itme import datasets, pp, tl
from itme.core.compensate import compensate_nnls
from itme.io import parse_channel, read_fcs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = {
    "bodenmiller": DATA
    / "bodenmiller2012_pbmc8_bcrxl_cytof"
    / "PBMC8_30min_patient1_Reference.fcs",
    "krieg": DATA / "krieg2018_antipd1_cytof_subsample" / "Data23_Panel3_base_NR4_Patient9.fcs",
}


def panel_channels(path: Path) -> list[str]:
    """The metal channels of a real file, named ``<Element><mass>Di``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = read_fcs(path)
    out = []
    for c in a.var["channel"]:
        parsed = parse_channel(str(c))
        if parsed.element:
            out.append(f"{parsed.metal}Di")
    return out


def cells_adata(values: np.ndarray, names: list[str]) -> ad.AnnData:
    a = ad.AnnData(values.astype(np.float32), var=pd.DataFrame({"channel": names}, index=names))
    a.layers["raw"] = a.X
    return a


def medians_error(comp: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Largest relative error of positive medians; largest median of negative events."""
    rel, neg = [], []
    for j in range(true.shape[1]):
        pos = true[:, j] > 0
        t = np.median(true[pos, j])
        rel.append(abs(np.median(comp[pos, j]) - t) / t)
        neg.append(np.median(comp[~pos, j]))
    return float(max(rel)), float(max(neg))


def one_seed(
    seed: int, names: list[str], n_beads: int, n_cells: int, intensity: tuple[float, float]
) -> dict:
    rng = np.random.default_rng(seed)
    S = datasets.simulate_spillover_matrix(names, rng=rng)
    beads = datasets.simulate_single_stains(S, n_per_channel=n_beads, intensity=intensity, rng=rng)
    t0 = time.perf_counter()
    est = tl.estimate_spillover(beads)
    t_est = time.perf_counter() - t0
    err_pp = 100 * float((est - S).abs().to_numpy().max())
    true, measured = datasets.simulate_spilled_cells(S, n_events=n_cells, rng=rng)
    raw_err, raw_neg = medians_error(measured, true)
    row = {"seed": seed, "err_pp": err_pp, "n_spill": int((S.to_numpy() > 0).sum() - len(names))}
    row["est_s"] = t_est
    for method in ("nnls", "flow"):
        cells = cells_adata(measured, names)
        t0 = time.perf_counter()
        pp.compensate(cells, spillover=est, method=method)
        row[f"{method}_s"] = time.perf_counter() - t0
        comp = np.asarray(cells.layers["raw"], dtype=np.float64)
        row[f"{method}_med_err"], row[f"{method}_neg_med"] = medians_error(comp, true)
        row[f"{method}_min"] = float(comp.min())
    floor = cells_adata(measured, names)
    pp.compensate(floor, spillover=S)
    row["floor"], _ = medians_error(np.asarray(floor.layers["raw"], dtype=np.float64), true)
    row["raw_err"], row["raw_neg_med"] = raw_err, raw_neg
    # NNLS against the reference solver
    sub = measured[:2000]
    Sm = est.to_numpy()
    t0 = time.perf_counter()
    ours = compensate_nnls(measured, Sm)[:2000]
    row["nnls_us"] = 1e6 * (time.perf_counter() - t0) / len(measured)
    t0 = time.perf_counter()
    ref = np.array([nnls(Sm.T, m)[0] for m in sub])
    row["scipy_us"] = 1e6 * (time.perf_counter() - t0) / len(sub)
    row["vs_scipy"] = float(np.abs(ours - ref).max())
    return row, est


def smoke(path: Path, spill: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = read_fcs(path)
    before = np.asarray(a.X).copy()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pp.compensate(a, spillover=spill, method="nnls")
    dt = time.perf_counter() - t0
    c = a.uns["compensation"]
    after = np.asarray(a.layers["raw"])
    cols = [list(a.var_names).index(n) for n in c["channels"]]
    change = np.median(before[:, cols] - after[:, cols], axis=0)
    print(
        f"  {path.name}: {a.n_obs} events, {len(c['channels'])} channels matched by metal, "
        f"absent from the file: {c['absent'] or 'none'}, not in the matrix: "
        f"{c['not_in_matrix'] or 'none'}; min count {after[:, cols].min():.3g}; "
        f"largest median change {change.max():.3g} counts; {dt:.2f} s; "
        f"{len(caught)} warning(s)" + (f": {caught[0].message}" if caught else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--panel", choices=sorted(FILES), default="bodenmiller")
    parser.add_argument("--beads", type=int, default=1000, help="beads per stained channel")
    parser.add_argument("--cells", type=int, default=50000)
    parser.add_argument(
        "--bead-intensity", type=float, nargs=2, default=(1000.0, 10000.0),
        help="range of the stained populations' median counts",
    )  # fmt: skip
    args = parser.parse_args()
    with os.popen("uptime") as up:
        print(f"uptime: {up.read().strip()}")
    print(f"beads: {args.beads} per channel, medians {args.bead_intensity}; cells {args.cells}")
    names = panel_channels(FILES[args.panel])
    print(f"panel {args.panel}: {len(names)} metal channels: {' '.join(names)}")
    rows, first = [], None
    for seed in args.seeds:
        row, est = one_seed(seed, names, args.beads, args.cells, tuple(args.bead_intensity))
        first = est if first is None else first
        rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(5).to_string(index=False))
    print("\nsummary over seeds (min / mean / max):")
    for col in ("err_pp", "nnls_med_err", "flow_med_err", "floor", "raw_err", "nnls_neg_med",
                "flow_neg_med", "raw_neg_med", "nnls_min", "flow_min", "vs_scipy", "nnls_us",
                "scipy_us"):  # fmt: skip
        v = table[col]
        print(f"  {col:14s} {v.min():.4g} / {v.mean():.4g} / {v.max():.4g}")
    print("\nreal files (compensated with the seed-0 estimate on the Bodenmiller metals):")
    for path in FILES.values():
        if path.exists():
            smoke(path, first)
        else:
            print(f"  {path}: absent")


if __name__ == "__main__":
    main()
