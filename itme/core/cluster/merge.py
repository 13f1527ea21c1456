"""Over-clustering control: merge clusters whose median size is below a floor.

Visram et al. 2021 (Methods): "astrolabe-identified cell clusters were sometimes merged so
that the minimum median cluster size was not smaller than the median doublet rate". Here a
cluster's size in a sample is its % of the sample's events and its *median size* is the median
over samples. While the smallest median size is below ``floor`` (in %), that cluster is merged
into the cluster with the nearest centroid (Euclidean, on the clustering markers); the merged
centroid is the event-weighted mean of the two. Every merge is reported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from itme.errors import ItmeParameterError

__all__ = ["MERGE_COLUMNS", "median_cluster_size", "merge_metaclusters", "merge_small_clusters"]

MERGE_COLUMNS = ["step", "cluster", "into", "median_pct", "floor_pct", "distance", "n_events"]


def median_cluster_size(counts: np.ndarray) -> np.ndarray:
    """Median over samples of each cluster's % of the sample's events.

    Parameters
    ----------
    counts
        Samples × clusters event counts. Samples without events are ignored.

    Returns
    -------
    numpy.ndarray
        One median percentage per cluster.
    """
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1)
    pct = counts[totals > 0] / totals[totals > 0, None] * 100.0
    if pct.shape[0] == 0:
        return np.zeros(counts.shape[1])
    return np.median(pct, axis=0)


def merge_small_clusters(
    counts: np.ndarray,
    centroids: np.ndarray,
    floor: float,
    *,
    names: list[str] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Merge clusters until the smallest median cluster size reaches ``floor`` %.

    Parameters
    ----------
    counts
        Samples × clusters event counts.
    centroids
        Clusters × markers centroids (e.g. event-weighted mean of SOM codes).
    floor
        Smallest allowed median cluster size, in % of a sample's events (the paper used
        the median doublet rate).
    names
        Cluster names used in the report (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    mapping : numpy.ndarray
        For each input cluster, the index of its output cluster; output clusters are
        numbered 0.. in the order of their lowest input index.
    merges : pandas.DataFrame
        One row per merge: ``step, cluster, into, median_pct, floor_pct, distance, n_events``
        (names are input cluster names; ``into`` is the surviving cluster's name).
    """
    counts = np.asarray(counts, dtype=float).copy()
    centroids = np.asarray(centroids, dtype=float).copy()
    k = counts.shape[1]
    if centroids.shape[0] != k:
        raise ItmeParameterError("centroids", f"{k} rows (one per cluster)", centroids.shape[0])
    if not np.isfinite(floor) or floor < 0:
        raise ItmeParameterError("floor", "a percentage >= 0", floor)
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    alive = list(range(k))
    parent = np.arange(k)
    rows = []
    step = 0
    while len(alive) > 1:
        med = median_cluster_size(counts[:, alive])
        totals = counts[:, alive].sum(axis=0)
        # smallest median first; ties: fewer events, then lower index
        order = np.lexsort((np.arange(len(alive)), totals, med))
        pos = int(order[0])
        if med[pos] >= floor:
            break
        small = alive[pos]
        others = [c for c in alive if c != small]
        d = np.linalg.norm(centroids[others] - centroids[small], axis=1)
        into = others[int(np.argmin(d))]
        step += 1
        w_small, w_into = counts[:, small].sum(), counts[:, into].sum()
        if w_small + w_into > 0:
            centroids[into] = (w_small * centroids[small] + w_into * centroids[into]) / (
                w_small + w_into
            )
        counts[:, into] += counts[:, small]
        parent[parent == small] = into
        alive.remove(small)
        rows.append(
            (
                step,
                names[small],
                names[into],
                float(med[pos]),
                float(floor),
                float(d.min()),
                int(w_small),
            )
        )
    final = {c: i for i, c in enumerate(sorted(alive))}
    mapping = np.array([final[p] for p in parent], dtype=np.int64)
    return mapping, pd.DataFrame(rows, columns=MERGE_COLUMNS)


def merge_metaclusters(
    node_metacluster: np.ndarray,
    codes: np.ndarray,
    nodes: np.ndarray,
    groups: np.ndarray,
    floor: float,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Merge the metaclusters of a SOM until their median size reaches ``floor`` %.

    Parameters
    ----------
    node_metacluster
        0-based metacluster of every SOM node.
    codes
        Nodes × markers codebook; a metacluster's centroid is the event-weighted mean of its
        nodes' codes.
    nodes
        Node of every counted event.
    groups
        0-based sample of every counted event (same length as ``nodes``).
    floor
        Smallest allowed median metacluster size, in % of a sample's events.

    Returns
    -------
    mapping : numpy.ndarray
        0-based merged metacluster of every input metacluster.
    merges : pandas.DataFrame
        The merges (see :func:`merge_small_clusters`), metaclusters named ``"1"``….
    """
    node_metacluster = np.asarray(node_metacluster)
    k = int(node_metacluster.max()) + 1
    node_sizes = np.bincount(nodes, minlength=codes.shape[0]).astype(float)
    counts = np.zeros((int(groups.max()) + 1 if len(groups) else 1, k))
    np.add.at(counts, (groups, node_metacluster[nodes]), 1)
    weights = np.bincount(node_metacluster, weights=node_sizes, minlength=k)
    centroids = np.zeros((k, codes.shape[1]))
    np.add.at(centroids, node_metacluster, codes * node_sizes[:, None])
    centroids /= np.maximum(weights, 1)[:, None]
    return merge_small_clusters(counts, centroids, floor, names=[str(i + 1) for i in range(k)])
