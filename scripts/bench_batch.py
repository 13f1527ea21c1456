"""Measure run (batch) effects and their correction on simulated cohorts with known truth (issue 20).

For each seed a cohort like the demo's (38 patients with CyTOF, three planted iTME clusters,
three acquisition runs B1–B3, files assigned to runs in turn) is simulated in memory with
``itme.datasets.simulate_cells`` and given run effects with ``itme.datasets.apply_run_effects``:

- ``none``: no run effect;
- ``mild``: per-run, per-channel gains in ±20 %, 30 % signal loss over run B3's acquisition;
- ``strong``: ±50 %, 50 % signal loss over run B3.

Signal loss is linear in acquisition time over the whole run (its files in order, events in
order within each file). Each cohort goes through arcsinh → [pp.correct_batch] → tl.flowsom
(10 × 10, 40 metaclusters) → tl.annotate → tl.abundance → tl.patient_clusters (Ward, k = 3).

Metrics (per seed; mean and range printed):

- ``split``: for each true subset, the distribution of itme's labels over its events in each
  run; the largest total-variation distance between two runs; ``split`` = the worst subset
  (0 = every subset named alike in every run), ``worst`` = its name;
- ``ari``: adjusted Rand index of the patient clusters against the planted clusters;
- ``bound``: the same for Ward on the true subset frequencies (what perfect labels give).

``--confounded`` puts most cluster-2/3 patients in run B3 (one batch holds mostly one iTME
cluster) to check that the correction keeps planted differences.

    python scripts/bench_batch.py --seeds 1 2 3 4 5 --levels none mild strong --cells 3000
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import kruskal
from sklearn.metrics import adjusted_rand_score
from statsmodels.stats.multitest import multipletests

from itme import pp, tl
from itme.datasets._cells import apply_run_effects, draw_run_gains, simulate_cells
from itme.datasets._simulate import PANEL, PLANTED_SUBSETS, _compositions, _panel, _patients
from itme.io import read_phenotypes

LEVELS = {"none": (0.0, 0.0), "mild": (0.2, 0.3), "strong": (0.5, 0.5)}
RUNS = ("B1", "B2", "B3")


def simulate(
    seed: int,
    level: str,
    cells: int,
    confounded: bool = False,
    drift_run: int = 2,
    noise: float = 0.3,
    sd: tuple[float, float] = (0.45, 0.35),
):
    """Cells AnnData (raw counts, obs: sample_id, patient_id, batch, truth, time) and patient truth."""
    gen = np.random.default_rng(seed)
    patients = _patients(39, gen)
    cytof = patients[patients["itme_cluster"] != ""].reset_index(drop=True)
    comps = _compositions(cytof["itme_cluster"], gen, noise=noise)
    panel = _panel()
    panel = panel[panel["marker_class"].isin(["type", "state"])]
    markers = list(panel["antigen"])
    table = read_phenotypes(PANEL)
    if confounded:  # clusters 2 and 3 mostly in B3, cluster 1 mostly in B1/B2
        runs = np.where(cytof["itme_cluster"] == "1", gen.choice([0, 1], len(cytof)), 2)
        flip = gen.random(len(cytof)) < 0.15
        runs = np.where(flip, gen.integers(0, 3, len(cytof)), runs)
    else:
        runs = np.arange(len(cytof)) % 3
    spread, drift = LEVELS[level]
    gains = draw_run_gains(3, len(markers), spread, rng=gen)
    blocks, obs = [], []
    for r in range(3):
        members = np.flatnonzero(runs == r)
        for pos, i in enumerate(members):
            x, labels = simulate_cells(
                table, markers, cells, comps.loc[i].to_dict(), rng=gen, hi_sd=sd[0], lo_sd=sd[1]
            )
            t_file = np.sort(gen.uniform(0, 1, cells))
            t_run = (pos + t_file) / len(members)
            x = apply_run_effects(
                x, gains=gains[r], drift=drift if r == drift_run else 0.0, time=t_run
            )
            blocks.append(x)
            pid = cytof.loc[i, "patient_id"]
            obs.append(
                pd.DataFrame(
                    {
                        "sample_id": f"{pid}_BM",
                        "patient_id": pid,
                        "batch": RUNS[r],
                        "truth": labels,
                        "time": (t_file * 600_000).astype(np.float32),
                    }
                )
            )
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    for col in ("sample_id", "patient_id", "batch", "truth"):
        obs[col] = pd.Categorical(obs[col])
    var = pd.DataFrame({"marker_class": list(panel["marker_class"])}, index=markers)
    X = np.vstack(blocks)
    cells_ad = ad.AnnData(X, obs=obs, var=var, layers={"raw": X})
    truth = dict(zip(cytof["patient_id"] + "_BM", cytof["itme_cluster"], strict=True))
    return cells_ad, truth


def batch_split(cells: ad.AnnData, label: str = "subset") -> tuple[float, str]:
    """Worst subset's largest total-variation distance of its label distribution between runs."""
    tab = pd.crosstab([cells.obs["truth"], cells.obs["batch"]], cells.obs[label])
    worst, name = 0.0, ""
    for subset in cells.obs["truth"].cat.categories:
        if subset not in tab.index.get_level_values(0):
            continue
        p = tab.loc[subset]
        p = p[p.sum(axis=1) >= 50]
        p = p.div(p.sum(axis=1), axis=0).to_numpy()
        for a in range(len(p)):
            for b in range(a + 1, len(p)):
                tv = 0.5 * np.abs(p[a] - p[b]).sum()
                if tv > worst:
                    worst, name = float(tv), str(subset)
    return worst, name


def ward_ari(cells: ad.AnnData, label: str, truth: dict, seed: int) -> tuple[float, float]:
    """ARI of Ward's clusters against the planted ones; recall of the planted subsets.

    Recall: share of the planted subsets (``PLANTED_SUBSETS``) whose frequencies differ
    between the planted clusters (Kruskal–Wallis, BH q < 0.05), on ``label``'s frequencies.
    """
    patients = tl.abundance(cells, groupby=label)
    tl.patient_clusters(patients, k=3, gap_refs=0, rng=seed)
    planted = np.asarray(patients.obs_names.map(truth))
    ari = float(adjusted_rand_score(planted, patients.obs["itme_cluster"]))
    subsets = sorted({s for d in PLANTED_SUBSETS.values() for s in d})
    pvals = []
    for s in subsets:
        x = patients[:, s].X.ravel() if s in patients.var_names else np.zeros(len(planted))
        groups = [x[planted == g] for g in np.unique(planted)]
        pvals.append(kruskal(*groups).pvalue if np.ptp(x) > 0 else 1.0)
    q = multipletests(pvals, method="fdr_bh")[1]
    return ari, float(np.mean(q < 0.05))


def run_one(
    seed: int,
    level: str,
    cells: int,
    correct: bool,
    confounded: bool,
    correct_kw: dict | None = None,
    **kw,
) -> dict:
    adata, truth = simulate(seed, level, cells, confounded, **kw)
    pp.arcsinh(adata, cofactor=5.0)
    t0 = time.perf_counter()
    if correct:
        pp.correct_batch(adata, batch_key="batch", rng=seed, **(correct_kw or {}))
    t_corr = time.perf_counter() - t0
    tl.flowsom(adata, grid=(10, 10), n_metaclusters=40, rng=seed)
    tl.annotate(adata, phenotypes=PANEL)
    split, worst = batch_split(adata)
    ari, recall = ward_ari(adata, "subset", truth, seed)
    bound, recall_truth = ward_ari(adata, "truth", truth, seed)
    return {
        "seed": seed,
        "level": level,
        "corrected": correct,
        "confounded": confounded,
        "split": round(split, 4),
        "worst": worst,
        "ari": round(ari, 4),
        "bound": round(bound, 4),
        "recall": round(recall, 3),
        "recall_truth": round(recall_truth, 3),
        "correct_s": round(t_corr, 2),
        "events": int(adata.n_obs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--levels", nargs="+", default=list(LEVELS))
    ap.add_argument("--cells", type=int, default=3000)
    ap.add_argument("--modes", nargs="+", default=["raw", "corrected"])
    ap.add_argument("--confounded", action="store_true")
    ap.add_argument("--noise", type=float, default=0.3, help="patient composition noise (log)")
    ap.add_argument(
        "--sd", type=float, nargs=2, default=[0.45, 0.35], help="hi and lo marker SD (arcsinh)"
    )
    ap.add_argument(
        "--correct-kw",
        default="{}",
        help="JSON keyword arguments of pp.correct_batch, e.g. '{\"fit_cells\": null}'",
    )
    ap.add_argument("--out", default=None, help="write the per-seed rows as CSV")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for level in args.levels:
        for seed in args.seeds:
            for mode in args.modes:
                row = run_one(
                    seed,
                    level,
                    args.cells,
                    mode == "corrected",
                    args.confounded,
                    correct_kw=json.loads(args.correct_kw),
                    noise=args.noise,
                    sd=tuple(args.sd),
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    summary = df.groupby(["level", "corrected"], sort=False)[
        ["split", "ari", "bound", "recall"]
    ].agg(["mean", "min", "max"])
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
