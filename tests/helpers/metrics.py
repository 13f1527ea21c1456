"""Clustering accuracy against reference labels (manual gates or simulated truth).

:func:`f1_hungarian` is the measure of Weber & Robinson 2016 (Cytometry A 89:1084,
doi:10.1002/cyto.a.23030), also used by Aghaeepour et al. 2013 (FlowCAP): every
reference population is matched one-to-one to a cluster by the Hungarian algorithm so as to
maximise the total F1 score; a population left without a cluster (fewer clusters than
populations) scores 0; the mean over populations is reported. Events without a reference
label ("unassigned"/"Unlabeled") are left out before scoring, as in that benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from itme.errors import ItmeParameterError

__all__ = ["f1_hungarian"]


def f1_hungarian(
    truth: np.ndarray | pd.Series | Iterable,
    clusters: np.ndarray | pd.Series | Iterable,
    *,
    exclude: Iterable[str] = ("unassigned", "Unlabeled", "unlabeled"),
) -> tuple[float, pd.DataFrame]:
    """Mean F1 of reference populations after Hungarian matching to clusters.

    Parameters
    ----------
    truth
        Reference label of each event.
    clusters
        Cluster label of each event (same length).
    exclude
        Reference labels whose events are left out before scoring.

    Returns
    -------
    mean_f1 : float
        Mean F1 over the reference populations.
    table : pandas.DataFrame
        One row per population: ``population, n_events, cluster, precision, recall, F1``
        (``cluster`` is ``""`` when the population got no cluster).
    """
    truth = np.asarray(truth, dtype=object).astype(str)
    clusters = np.asarray(clusters, dtype=object).astype(str)
    if truth.shape != clusters.shape:
        raise ItmeParameterError(
            "clusters", f"{truth.shape[0]} labels, one per event of truth", clusters.shape[0]
        )
    keep = ~np.isin(truth, list(exclude))
    truth, clusters = truth[keep], clusters[keep]
    pops, t_idx = np.unique(truth, return_inverse=True)
    clus, c_idx = np.unique(clusters, return_inverse=True)
    table = np.zeros((pops.size, clus.size), dtype=np.int64)
    np.add.at(table, (t_idx, c_idx), 1)
    n_pop = table.sum(axis=1, keepdims=True).astype(float)
    n_clu = table.sum(axis=0, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(table > 0, 2 * table / (n_pop + n_clu), 0.0)
    rows, cols = linear_sum_assignment(f1, maximize=True)
    match = dict(zip(rows, cols, strict=True))
    out = []
    for i, pop in enumerate(pops):
        j = match.get(i)
        if j is None:
            out.append((pop, int(n_pop[i, 0]), "", 0.0, 0.0, 0.0))
            continue
        tp = table[i, j]
        out.append((pop, int(n_pop[i, 0]), clus[j], tp / n_clu[0, j], tp / n_pop[i, 0], f1[i, j]))
    df = pd.DataFrame(
        out, columns=["population", "n_events", "cluster", "precision", "recall", "F1"]
    )
    return float(df["F1"].mean()) if len(df) else float("nan"), df
