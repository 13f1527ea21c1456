"""Simulated patients tables in the shape ``itme.tl.abundance`` makes (docs/data-model.md §2).

Samples × subsets, ``X`` = % of CD45+, ``layers["counts"]``, ``obs`` with ``patient_id`` and
``disease_status``, ``obsm["derived"]`` with total T, CD4, CD8 and the CD4:CD8 ratio. Clusters are
planted by shifting a few subsets (log scale) in one cluster; every other subset is drawn from
the same distribution in all clusters (the null subsets). A large "Myeloid" population absorbs
the rest of the 100 % (it changes with the planted subsets, so it is neither planted nor null).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CD4 = [f"T{i}" for i in range(1, 11)]
CD8 = [f"T{i}" for i in range(11, 21)]
OTHER = ["TCRgd-1", "TCRgd-2", "TCRgd-3", "NK-1", "NK-2", "NK-3", "NK-4", "NK-5", "B"]
SUBSETS = CD4 + CD8 + OTHER
# cluster (0-based) -> {subset: log fold change}; echoes the paper's Fig. 3 directions
PLANTED = {
    0: {"T1": 1.5, "T2": 1.5, "T12": 1.5},
    1: {"T10": 1.5, "T16": 1.5, "T18": 1.5, "T19": 1.5, "T20": 1.5},
    2: {"T8": -1.5, "T15": -1.5, "T9": -1.5, "T13": -1.5, "NK-5": 1.5},
}
PLANTED_SUBSETS = sorted({s for d in PLANTED.values() for s in d})
NULL_SUBSETS = [s for s in SUBSETS if s not in PLANTED_SUBSETS]


def simulate_patients(seed: int, sizes=(24, 5, 9), noise: float = 0.3, shuffle: bool = True):
    """Return ``(adata, truth)``: a patients AnnData and the planted cluster (0-based) per sample."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    if shuffle:
        truth = rng.permutation(truth)
    n = truth.size
    base = np.log(np.where(np.isin(SUBSETS, CD4), 1.6, np.where(np.isin(SUBSETS, CD8), 1.1, 0.8)))
    logx = base + noise * rng.standard_normal((n, len(SUBSETS)))
    for c, shifts in PLANTED.items():
        for s, lfc in shifts.items():
            logx[truth == c, SUBSETS.index(s)] += lfc
    pct = np.exp(logx)
    myeloid = 100 - pct.sum(axis=1)
    x = np.column_stack([pct, myeloid])
    names = [f"S{i:02d}" for i in range(n)]
    var = pd.DataFrame(index=[*SUBSETS, "Myeloid"])
    status_by_cluster = {
        0: ["NDMM", "RMM", "NDMM", "TRMM"],
        1: ["TRMM"],
        2: ["TRMM", "RMM", "TRMM"],
    }
    status = [
        status_by_cluster.get(int(c), ["TRMM"])[i % len(status_by_cluster.get(int(c), ["TRMM"]))]
        for i, c in enumerate(truth)
    ]
    obs = pd.DataFrame(
        {"patient_id": [f"P{i:02d}" for i in range(n)], "disease_status": status}, index=names
    )
    events = rng.integers(40_395, 120_000, size=n)
    counts = np.rint(x / 100 * events[:, None]).astype(np.int64)
    adata = ad.AnnData(X=x, obs=obs, var=var, layers={"counts": counts})
    cd4 = pct[:, [SUBSETS.index(s) for s in CD4]].sum(axis=1)
    cd8 = pct[:, [SUBSETS.index(s) for s in CD8]].sum(axis=1)
    adata.obsm["derived"] = pd.DataFrame(
        {
            "T_total": cd4 + cd8 + pct[:, :3].sum(axis=1) * 0,
            "CD4": cd4,
            "CD8": cd8,
            "CD4_CD8_ratio": cd4 / cd8,
        },
        index=names,
    )
    return adata, truth


def simulate_clinical(adata, seed: int, extra_patients=(), drop_patients=()):
    """Clinical table for the simulated patients: age, risk, lines, OS/PFS (cluster 1 lives longer)."""
    rng = np.random.default_rng(seed + 1000)
    ids = [p for p in adata.obs["patient_id"] if p not in set(drop_patients)] + list(extra_patients)
    n = len(ids)
    status = dict(zip(adata.obs["patient_id"], adata.obs["disease_status"], strict=True))
    df = pd.DataFrame(
        {
            "patient_id": ids,
            "disease_status": [status.get(p, "RMM") for p in ids],
            "age": rng.normal(62, 9, n).round(),
            "cytogenetic_risk": rng.choice(["standard", "high"], n, p=[0.65, 0.35]),
            "lines_of_therapy": rng.integers(0, 9, n),
            "os_months": rng.exponential(40, n).round(1),
            "os_event": rng.integers(0, 2, n),
            "pfs_months": rng.exponential(15, n).round(1),
            "pfs_event": rng.integers(0, 2, n),
        }
    )
    return df
