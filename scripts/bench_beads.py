"""Bead normalisation on simulated drift, and on a real file with spiked beads (issue 16).

Simulated (``itme.datasets.simulate_bead_run``, per seed): one file of 100,000 cells and
5,000 EQ beads (5 % of events) on the metals of the Bodenmiller 2012 panel (its Eu151, Eu153,
Ho165 and Lu175 carry antibodies; Ce140 added), the whole signal falling linearly by 30 %
over the acquisition (beads included) with Poisson counting noise. ``pp.normalize_beads``
(default: ``baseline="sample"``, window 501 beads, ``factor="geometric"``; and
``factor="least_squares"``, Finck's slope) is applied to the raw counts.

Metric: for every channel, the events truly positive in it (expected count > 50) are cut
into 10 windows of acquisition time; in each window the median of measured / expected
counts (the expected counts are the simulation's, before drift and noise) is taken;
``drift`` = (largest - smallest window median) / mean, the worst channel. ``floor`` is the
same on a run without drift and without normalisation (counting noise alone);
``floor_norm`` a run without drift, normalised (the noise the factors add). ``beads_ok`` is
the share of events whose bead label agrees with the truth, ``clean_agree`` whether
``pp.clean``'s bead step then removes the same events.

Real files: the ``cytonormpy`` Gates files (real CyTOF, human blood, 1,000 events each, a
Ce140 and a Time channel, beads already removed by the acquisition software) are shown
as acquired (no beads: the error), then the six of them are taken as one acquisition of
6,000 real cells with simulated EQ beads spiked in at random times (10 %), and the same
30 % drift on every event; the metric uses the files' own counts as "expected". The Bodenmiller files have no Ce140 channel: the
error message is shown.

    python scripts/bench_beads.py --seeds 0 1 2 3 4
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

from itme import datasets, pp
from itme.datasets._cells import apply_run_effects
from itme.errors import ItmeInputError
from itme.io import parse_channel, read_fcs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BODENMILLER = DATA / "bodenmiller2012_pbmc8_bcrxl_cytof" / "PBMC8_30min_patient1_Reference.fcs"
EQ = ("Ce140Di", "Eu151Di", "Eu153Di", "Ho165Di", "Lu175Di")


def quiet_read(path: Path) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_fcs(path)


def window_drift(a: ad.AnnData, expected: np.ndarray, keep: np.ndarray, n_windows: int = 10):
    """Worst channel's range of window medians of measured / expected (events in ``keep``)."""
    raw = np.asarray(a.layers["raw"], dtype=np.float64)
    t = a.obs["time_fraction"].to_numpy()
    w = np.minimum((t * n_windows).astype(int), n_windows - 1)
    worst, name = 0.0, ""
    for j, channel in enumerate(a.var_names):
        if (
            channel == "Time"
            or str(channel).startswith("Ce140")
            or not parse_channel(str(a.var["channel"].iloc[j])).element
        ):
            continue
        pos = keep & (expected[:, j] > 50)
        if pos.sum() < 20 * n_windows:
            continue
        ratio = raw[:, j] / np.maximum(expected[:, j], 1e-9)
        med = np.array([np.median(ratio[pos & (w == k)]) for k in range(n_windows)])
        value = float((med.max() - med.min()) / med.mean())
        if value > worst:
            worst, name = value, str(channel)
    return worst, name


def simulated(seed: int, channels: list[str], n_cells: int, n_beads: int) -> dict:
    row: dict = {"seed": seed}
    for drift, label in ((0.3, "drift"), (0.0, "floor")):
        run = datasets.simulate_bead_run(
            channels, n_cells=n_cells, n_beads=n_beads, drift=drift, rng=seed
        )
        cells = (run.obs["truth"] == "cell").to_numpy()
        expected = run.layers["truth"]
        row[f"{label}_before"], _ = window_drift(run, expected, cells)
        for factor in ("geometric", "least_squares"):
            out = pp.normalize_beads(run, factor=factor, copy=True)
            key = f"{label}_{'geo' if factor == 'geometric' else 'ls'}"
            row[key], row[f"{key}_worst"] = window_drift(out, expected, cells)
            if label == "drift" and factor == "geometric":
                t0 = time.perf_counter()
                pp.normalize_beads(run, factor=factor, copy=True)
                row["seconds"] = time.perf_counter() - t0
                truth = ~cells
                row["beads_found"] = int(out.obs["is_bead"].sum())
                row["beads_true"] = int(truth.sum())
                row["beads_ok"] = float((out.obs["is_bead"].to_numpy() == truth).mean())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pp.arcsinh(out)
                    pp.clean(out, steps=["bead"])
                removed = (out.obs["itme_qc"] == "bead").to_numpy()
                row["clean_agree"] = float((removed == out.obs["is_bead"].to_numpy()).mean())
    return row


def spiked_real(paths: list[Path], seed: int) -> None:
    """Real cells (files concatenated) + simulated beads at random times, 30 % drift, normalised."""
    rng = np.random.default_rng(seed)
    parts = [quiet_read(p) for p in paths]
    a = parts[0]
    names = list(a.var_names)
    chans = list(a.var["channel"])
    raw = np.vstack([np.asarray(p.X, dtype=np.float64) for p in parts])
    n_cells = raw.shape[0]
    n_beads = n_cells // 10
    beads = rng.poisson(2.0, size=(n_beads, raw.shape[1])).astype(np.float64)
    cols = [chans.index(c) for c in EQ]
    level = np.exp(rng.uniform(np.log(2000), np.log(8000), size=len(cols)))
    beads[:, cols] = level * rng.lognormal(0.0, 0.15, size=(n_beads, len(cols)))
    skip = [i for i, c in enumerate(chans) if not parse_channel(str(c)).element]
    beads[:, skip] = 0.0
    values = np.vstack([raw, beads])
    truth = np.r_[np.zeros(n_cells, bool), np.ones(n_beads, bool)]
    order = rng.permutation(values.shape[0])
    values, truth = values[order], truth[order]
    tfrac = np.sort(rng.uniform(0, 1, size=values.shape[0]))
    metal = np.array([bool(parse_channel(str(c)).element) for c in chans])
    expected = values.copy()
    drifted = values.copy()
    drifted[:, metal] = apply_run_effects(values[:, metal], drift=0.3, time=tfrac)
    time_col = chans.index("Time")
    drifted[:, time_col] = tfrac * 600_000
    out = ad.AnnData(
        drifted.astype(np.float32),
        obs=pd.DataFrame(
            {"sample_id": "gates", "time_fraction": tfrac},
            index=[f"e{i}" for i in range(len(tfrac))],
        ),
        var=a.var.copy(),
    )
    out.var_names = names
    out.layers["raw"] = out.X
    before, _ = window_drift(out, expected, ~truth, n_windows=5)
    pp.normalize_beads(out, window=101)
    after, worst = window_drift(out, expected, ~truth, n_windows=5)
    s = out.uns["bead_normalization"]["samples"].iloc[0]
    print(
        f"  {len(paths)} Gates files as one acquisition ({n_cells} real cells) + {n_beads} "
        "spiked beads (5 time windows, bead window 101): "
        f"drift {100 * before:.1f} % -> {100 * after:.2f} % (worst {worst}); beads found "
        f"{int(s['n_beads'])} of {n_beads}, label agreement "
        f"{(out.obs['is_bead'].to_numpy() == truth).mean():.4f}; factors "
        f"{s['factor_min']:.3f}-{s['factor_max']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--beads", type=int, default=5_000)
    args = parser.parse_args()
    with os.popen("uptime") as up:
        print(f"uptime: {up.read().strip()}")
    panel = quiet_read(BODENMILLER)
    channels = [
        f"{parse_channel(str(c)).metal}Di"
        for c in panel.var["channel"]
        if parse_channel(str(c)).element
    ]
    print(
        f"panel: {len(channels)} Bodenmiller metals + Ce140; {args.cells} cells, {args.beads} beads"
    )
    table = pd.DataFrame([simulated(s, channels, args.cells, args.beads) for s in args.seeds])
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print(table.round(4).to_string(index=False))
    print("\nsummary over seeds (min / mean / max), drift as % of signal:")
    for col in ("drift_before", "drift_geo", "drift_ls", "floor_before", "floor_geo", "floor_ls",
                "beads_ok", "clean_agree", "seconds"):  # fmt: skip
        v = table[col] * (100 if "drift" in col or "floor" in col else 1)
        print(f"  {col:14s} {v.min():.4g} / {v.mean():.4g} / {v.max():.4g}")
    print("\nreal files:")
    try:
        import cytonormpy

        files = sorted(
            (Path(cytonormpy.__file__).parent / "_resources").glob("Gates_PTLG0*_Unstim_*.fcs")
        )
        files = [f for f in files if "_dup" not in f.name]
        gates = files[0]
        a = quiet_read(gates)
        a.obs["sample_id"] = "gates"
        try:
            pp.normalize_beads(a)
        except ItmeInputError as err:
            print(f"  {gates.name} as acquired: {err}")
        spiked_real(files, 0)
    except ImportError:
        print("  cytonormpy not installed: Gates files unavailable")
    a = quiet_read(BODENMILLER)
    a.obs["sample_id"] = "p1"
    try:
        pp.normalize_beads(a)
    except ItmeInputError as err:
        print(f"  {BODENMILLER.name}: {err}")


if __name__ == "__main__":
    main()
