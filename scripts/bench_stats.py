"""Benchmark of the patient-level statistics (issue 5): accuracy on planted clusters and timings.

Run: /work/venv/bin/python scripts/bench_stats.py [--seeds 50]

Prints tables; writes nothing. The simulated patients tables are the test simulator's
(tests/helpers/patients_sim.py): 38 samples in clusters of 24/5/9 (the paper's sizes),
29 subsets of which 13 carry a planted shift, 16 are null, plus an abundant "Myeloid" rest.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.patients_sim import NULL_SUBSETS, PLANTED_SUBSETS, simulate_patients
from sklearn.metrics import adjusted_rand_score

import itme
from itme.core.stats.fisher import fisher_exact_rxc

warnings.simplefilter("ignore")


def accuracy(seeds: int) -> pd.DataFrame:
    rows = []
    for transform in ("zscore", None, "clr", "arcsine_sqrt"):
        aris, recall, false, nulls, fdp, kappas, jacc = [], [], 0, 0, [], [], []
        for seed in range(seeds):
            adata, truth = simulate_patients(seed)
            itme.tl.patient_clusters(adata, k=3, transform=transform, rng=seed, gap_refs=0)
            aris.append(adjusted_rand_score(truth, adata.obs["itme_cluster"]))
            res = itme.stats.compare_groups(adata, groupby="itme_cluster").set_index("feature")
            sig = set(res.index[res["padj"] < 0.05])
            recall.append(len(sig & set(PLANTED_SUBSETS)) / len(PLANTED_SUBSETS))
            f = len(sig & set(NULL_SUBSETS))
            false += f
            nulls += len(NULL_SUBSETS)
            called = len(sig & set(PLANTED_SUBSETS + NULL_SUBSETS))
            fdp.append(f / called if called else 0.0)
            drop = np.random.default_rng(seed).choice(adata.obs_names, 7, replace=False)
            itme.tl.cluster_sensitivity(adata, exclude=list(drop))
            kappas.append(adata.uns["itme_cluster_sensitivity"]["kappa"])
            if seed < 10:
                itme.tl.cluster_stability(adata, n_boot=50, rng=seed)
                jacc.append(adata.uns["itme_cluster_stability"]["clusters"]["mean_jaccard"].min())
        rows.append(
            {
                "transform": transform or "none",
                "seeds": seeds,
                "ARI min": min(aris),
                "ARI mean": np.mean(aris),
                "runs ARI>=0.9": f"{np.sum(np.array(aris) >= 0.9)}/{seeds}",
                "planted found": np.mean(recall),
                "null called": false / nulls,
                "mean FDP": np.mean(fdp),
                "kappa (7 left out) median": np.median(kappas),
                "min cluster Jaccard (10 seeds)": np.mean(jacc),
            }
        )
    return pd.DataFrame(rows)


def timings() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    rows = []

    def timed(name, fn, repeat=3):
        best = min(_clock(fn) for _ in range(repeat))
        rows.append({"step": name, "seconds": best})

    adata, _ = simulate_patients(0)
    timed(
        "patient_clusters n=38 (gap 20 refs, k 1..10)",
        lambda: itme.tl.patient_clusters(adata, k=3, rng=0, copy=True),
    )
    itme.tl.patient_clusters(adata, k=3, rng=0)
    timed(
        "compare_groups 30 features",
        lambda: itme.stats.compare_groups(adata, groupby="itme_cluster"),
    )
    timed(
        "posthoc_dunn 30 features", lambda: itme.stats.posthoc_dunn(adata, groupby="itme_cluster")
    )
    timed(
        "cluster_stability 100 bootstraps",
        lambda: itme.tl.cluster_stability(adata, n_boot=100, rng=0, copy=True),
    )
    big, _ = simulate_patients(0, sizes=(400, 200, 200))
    timed(
        "patient_clusters n=800 (gap 5 refs)",
        lambda: itme.tl.patient_clusters(big, k=3, rng=0, gap_refs=5, copy=True),
        1,
    )
    job = np.array([[1, 2, 1, 0], [3, 3, 6, 1], [10, 10, 14, 9], [6, 7, 12, 11]])
    timed("Fisher exact 4x4 n=96 (R Job example)", lambda: fisher_exact_rxc(job), 1)
    timed(
        "Fisher exact 3x3 n=38 (paper Table 1)",
        lambda: fisher_exact_rxc(np.array([[12, 8, 4], [1, 0, 4], [0, 2, 7]])),
    )
    r = load_rossi().rename(columns={"week": "os_months", "arrest": "os_event"})
    r["patient_id"] = np.arange(len(r)).astype(str)
    timed(
        "cox_ph Rossi 432 x 7 + PH test",
        lambda: itme.stats.cox_ph(
            r, covariates=["fin", "age", "race", "wexp", "mar", "paro", "prio"]
        ),
    )
    return pd.DataFrame(rows)


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.precision", 3)
    print(accuracy(args.seeds).to_string(index=False))
    print()
    print(timings().to_string(index=False))


if __name__ == "__main__":
    main()
