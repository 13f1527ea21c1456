"""Annotation accuracy: simulated samples following the lymphoid table, and real PBMC/blood CyTOF.

Run: ``/work/venv/bin/python scripts/bench_annotate.py [--quick]``

A. Simulated samples (itme.datasets._cells, shipped lymphoid table, the 36-antibody
   panel's type + state markers): flowsom → annotate; % of events named correctly, for
   several seeds, metacluster counts and annotating SOM nodes directly.
B. Real files (no per-cell truth): Bodenmiller 2012 PBMC (8 Reference files) and the
   cytonormpy Gates_*.fcs blood files, annotated with the small marker tables of
   tests/integration/test_tl_real_data.py; prints each population's share of events and the
   medians of its defining markers. Nothing is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import itme
from itme.datasets._cells import simulate_cells
from itme.io import read_phenotypes

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ITME_SHARED_DATA", ROOT.parent / "shared" / "data"))


def simulated(seed: int, n: int) -> ad.AnnData:
    table = read_phenotypes("lymphoid_visram2021")
    panel = pd.read_csv(ROOT / "itme" / "data" / "panels" / "lymphoid_visram2021.csv")
    panel = panel[panel["marker_class"].isin(["type", "state"])]
    rng = np.random.default_rng(1000 + seed)
    props = {s.name: rng.uniform(0.5, 3.0) for s in table.subsets}
    props.update({"Monocytes": 15.0, "Other CD45+": 10.0, "CD4 T other": 2.0, "NK other": 1.0})
    raw, labels = simulate_cells(table, panel["antigen"], n, props, rng=rng)
    adata = ad.AnnData(np.arcsinh(raw / 5).astype(np.float32))
    adata.var_names = list(panel["antigen"])
    adata.var["marker_class"] = pd.Categorical(panel["marker_class"])
    adata.obs["sample_id"] = pd.Categorical(np.where(np.arange(n) % 2, "s1", "s2"))
    adata.obs["truth"] = labels
    adata.uns["arcsinh"] = {"cofactor": np.full(adata.n_vars, 5.0)}
    return adata


def part_a(seeds, n) -> None:
    rows = []
    worst = {}
    for seed in seeds:
        base = simulated(seed, n)
        for k, groupby in [(40, "metacluster"), (60, "metacluster"), (40, "som_node")]:
            adata = base.copy()
            t0 = time.perf_counter()
            itme.tl.flowsom(adata, n_metaclusters=k, rng=seed)
            itme.tl.annotate(adata, phenotypes="lymphoid_visram2021", groupby=groupby)
            secs = time.perf_counter() - t0
            ok = adata.obs["subset"].astype(str).to_numpy() == adata.obs["truth"].to_numpy()
            rows.append((f"k={k}, annotate {groupby}", seed, ok.mean() * 100, secs))
            recall = pd.Series(ok).groupby(adata.obs["truth"].to_numpy()).mean()
            worst.setdefault(f"k={k}, annotate {groupby}", []).append(
                recall.idxmin() + f" {recall.min():.2f}"
            )
    df = pd.DataFrame(rows, columns=["setting", "seed", "pct_correct", "seconds"])
    print(f"A. simulated samples, {n} events, {df['seed'].nunique()} seeds, 31 populations")
    print(
        df.groupby("setting", sort=False)
        .agg(mean=("pct_correct", "mean"), min=("pct_correct", "min"), seconds=("seconds", "mean"))
        .round(2)
        .to_string()
    )
    for setting, items in worst.items():
        print(f"  lowest recall per seed, {setting}: {'; '.join(items)}")


def part_b() -> None:
    spec = importlib.util.spec_from_file_location(
        "real", ROOT / "tests" / "integration" / "test_tl_real_data.py"
    )
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    sets = []
    folder = SHARED / "bodenmiller2012_pbmc8_bcrxl_cytof"
    if folder.is_dir():
        types = ["CD3", "CD45", "CD4", "CD20", "CD33", "CD123", "CD14", "IgM", "HLA-DR", "CD7"]
        sets.append(("Bodenmiller PBMC, 8 Reference files", sorted(folder.glob("*_Reference.fcs")), types, real.BODENMILLER, 20,
                     ["CD3", "CD4", "CD20", "CD7", "CD14", "CD33"]))  # fmt: skip
    spec_c = importlib.util.find_spec("cytonormpy")
    if spec_c is not None:
        res = Path(spec_c.origin).parent / "_resources"
        paths = [p for p in sorted(res.glob("Gates_*.fcs")) if "dup" not in p.name]
        types = ["CD45", "CD3", "CD4", "CD8a", "CD56", "CD16", "CD14", "CD33", "CD11c", "HLADR", "CD66",
                 "CD15", "CD7", "TCRgd", "CD123", "CD161", "CD45RA", "CD11b"]  # fmt: skip
        sets.append(("cytonormpy Gates blood, 6 files", paths, types, real.GATES, 25,
                     ["CD3", "CD4", "CD8a", "HLADR", "CD45RA", "CD7", "CD56", "CD14", "CD66"]))  # fmt: skip
    for title, paths, types, table, k, show in sets:
        adata = real.cohort(paths, types)
        for seed in (1, 2):
            itme.tl.flowsom(adata, n_metaclusters=k, rng=seed)
            itme.tl.annotate(adata, phenotypes=table)
            med = adata.to_df().groupby(adata.obs["subset"].to_numpy())[show].median()
            med.insert(0, "pct_events", adata.obs["subset"].value_counts(normalize=True) * 100)
            print(f"\nB. {title}: {adata.n_obs} events, k = {k}, rng = {seed}")
            print(med.sort_values("pct_events", ascending=False).round(2).to_string())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    pd.set_option("display.width", 160)
    print(f"load average: {os.getloadavg()}")
    part_a(range(2) if args.quick else range(5), 20_000 if args.quick else 60_000)
    part_b()


if __name__ == "__main__":
    sys.exit(main())
