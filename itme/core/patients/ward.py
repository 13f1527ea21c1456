"""Hierarchical (Ward) clustering of samples with a canonical, documented cluster numbering.

Numbering rule (the contract of :func:`itme.tl.patient_clusters`)
---------------------------------------------------------------
1. The linkage is made *canonical*: at every merge the larger branch is put on the left
   (ties: the branch holding the alphabetically first sample name). This fixes the leaf
   order of the dendrogram independently of the order of the input rows.
2. The tree is cut into exactly ``k`` clusters by applying its first ``n - k`` merges
   (never fewer clusters, even when merge heights tie, unlike ``fcluster(maxclust)``).
3. Clusters are numbered ``1..k`` in order of first appearance from left to right along the
   canonical dendrogram, so the heatmap reads cluster 1, 2, ..., k from left to right, and
   the largest top-level branch holds cluster 1.

Diagnostics over ``k``: total within-cluster sum of squares, mean silhouette width (Rousseeuw
1987, singletons scoring 0 as in scikit-learn) and the gap statistic (Tibshirani, Walther &
Hastie 2001, reference data uniform over the box aligned with the principal components,
"method b" of the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist, squareform

from itme.core.patients.composition import transform as apply_transform
from itme.errors import ItmeParameterError

__all__ = [
    "canonical_linkage",
    "cluster",
    "cut",
    "diagnostics",
    "gap_k",
    "leaf_order",
    "linkage",
    "silhouette",
    "within_ss",
]

METHODS = ("ward", "average", "complete", "single")


def canonical_linkage(z: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Swap the children of every merge so the larger branch is left (ties: first name)."""
    z = np.array(z, dtype=float, copy=True)
    n = z.shape[0] + 1
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(np.asarray(names, dtype=str), kind="stable")] = np.arange(n)
    size = np.ones(2 * n - 1, dtype=np.int64)
    first = np.concatenate([rank, np.zeros(n - 1, dtype=np.int64)])
    for i in range(n - 1):
        a, b = int(z[i, 0]), int(z[i, 1])
        if (-size[b], first[b]) < (-size[a], first[a]):
            z[i, 0], z[i, 1] = b, a
        size[n + i] = size[a] + size[b]
        first[n + i] = min(first[a], first[b])
    return z


def linkage(
    xt: np.ndarray, *, method: str = "ward", names: Sequence[str] | None = None
) -> np.ndarray:
    """Canonical scipy linkage matrix of the rows of ``xt`` (Euclidean distance)."""
    xt = np.asarray(xt, dtype=float)
    if names is None:
        names = [f"{i:09d}" for i in range(xt.shape[0])]
    z = hierarchy.linkage(xt, method=method, metric="euclidean")
    return canonical_linkage(z, names)


def leaf_order(z: np.ndarray) -> np.ndarray:
    """Row indices from left to right along the dendrogram of ``z``."""
    return hierarchy.leaves_list(z)


def cut(z: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``k`` clusters (labels ``1..k``, numbered left to right along the dendrogram)."""
    n = z.shape[0] + 1
    if not 1 <= k <= n:
        raise ItmeParameterError("k", f"an integer between 1 and {n}", k)
    parent = np.arange(2 * n - 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n - k):
        a, b = root(int(z[i, 0])), root(int(z[i, 1]))
        parent[a] = n + i
        parent[b] = n + i
    roots = np.array([root(i) for i in range(n)])
    labels = np.zeros(n, dtype=np.int64)
    number: dict[int, int] = {}
    for leaf in leaf_order(z):
        r = roots[leaf]
        if r not in number:
            number[r] = len(number) + 1
        labels[leaf] = number[r]
    return labels


def within_ss(xt: np.ndarray, labels: np.ndarray) -> float:
    """Total within-cluster sum of squared distances to the cluster centroids."""
    xt = np.asarray(xt, dtype=float)
    total = 0.0
    for lab in np.unique(labels):
        part = xt[labels == lab]
        total += float(((part - part.mean(axis=0)) ** 2).sum())
    return total


def silhouette(xt: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette width (Euclidean); singletons score 0; NaN for one cluster or n clusters."""
    labels = np.asarray(labels)
    uniq, inv = np.unique(labels, return_inverse=True)
    n = labels.size
    if not 2 <= uniq.size <= n - 1:
        return float("nan")
    d = squareform(pdist(np.asarray(xt, dtype=float)))
    onehot = np.zeros((n, uniq.size))
    onehot[np.arange(n), inv] = 1.0
    sizes = onehot.sum(axis=0)
    sums = d @ onehot  # distance of each sample to every cluster, summed
    own = sums[np.arange(n), inv]
    own_size = sizes[inv]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = own / (own_size - 1)
        mean_other = sums / sizes
    mean_other[np.arange(n), inv] = np.inf
    b = mean_other.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(own_size > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(np.nan_to_num(s, nan=0.0).mean())


def _log_w(xt: np.ndarray, z: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    out = []
    for k in ks:
        w = within_ss(xt, cut(z, k))
        out.append(np.log(w) if w > 0 else -np.inf)
    return np.asarray(out)


def diagnostics(
    xt: np.ndarray,
    ks: Sequence[int],
    *,
    method: str = "ward",
    n_refs: int = 20,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Within-cluster SS, silhouette and gap statistic (with its s.e. ``s_k``) for each ``k``.

    Returns a DataFrame indexed by ``k`` with columns ``within_ss``, ``silhouette``, ``gap``,
    ``gap_sd``. The reference data sets (``n_refs``) are drawn uniformly over the box aligned
    with the principal components of ``xt`` and clustered with the same ``method``.
    """
    xt = np.asarray(xt, dtype=float)
    ks = [int(k) for k in ks]
    z = linkage(xt, method=method)
    cuts = [cut(z, k) for k in ks]
    wss = np.array([within_ss(xt, labels) for labels in cuts])
    sil = np.array([silhouette(xt, labels) for labels in cuts])
    with np.errstate(divide="ignore"):
        log_w = np.log(wss)
    centre = xt.mean(axis=0)
    _, _, vt = np.linalg.svd(xt - centre, full_matrices=False)
    rotated = (xt - centre) @ vt.T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    ref_log_w = np.empty((n_refs, len(ks)))
    for b in range(n_refs):
        ref = rng.uniform(lo, hi, size=rotated.shape) @ vt + centre
        ref_log_w[b] = _log_w(ref, hierarchy.linkage(ref, method=method), ks)
    gap = ref_log_w.mean(axis=0) - log_w
    sd = ref_log_w.std(axis=0, ddof=0) * np.sqrt(1 + 1 / n_refs)
    return pd.DataFrame(
        {"within_ss": wss, "silhouette": sil, "gap": gap, "gap_sd": sd},
        index=pd.Index(ks, name="k"),
    )


def gap_k(diag: pd.DataFrame) -> int:
    """Tibshirani's rule: the smallest ``k`` with ``gap(k) >= gap(k+1) - s(k+1)``."""
    ks = list(diag.index)
    for k, k1 in zip(ks[:-1], ks[1:], strict=True):
        if diag.loc[k, "gap"] >= diag.loc[k1, "gap"] - diag.loc[k1, "gap_sd"]:
            return int(k)
    return int(ks[-1])


def cluster(
    x: np.ndarray,
    k: int,
    *,
    transform: str = "zscore",
    method: str = "ward",
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Transform, link and cut: labels ``1..k`` (documented numbering) and the canonical linkage."""
    xt = apply_transform(x, transform)
    z = linkage(xt, method=method, names=names)
    return cut(z, k), z
