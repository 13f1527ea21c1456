"""Agreement between two clusterings: contingency tables, label alignment, bootstrap Jaccard.

Cohen's kappa itself comes from statsmodels (``cohens_kappa``, in :mod:`itme.tl._robustness`)
on the square table :func:`square_table` builds here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["align_labels", "bootstrap_jaccard", "contingency", "square_table"]


def contingency(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts table of labels ``a`` (rows) × ``b`` (columns), with the row and column labels."""
    ra, ia = np.unique(np.asarray(a), return_inverse=True)
    rb, ib = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ra.size, rb.size), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table, ra, rb


def align_labels(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Relabel ``other`` to agree as much as possible with ``reference`` (Hungarian matching).

    Each label of ``other`` is mapped to a distinct label of ``reference`` so that the number
    of samples with equal labels is maximal; labels of ``other`` left unmatched (when it has
    more clusters) keep a new label ``"<label>*"``.
    """
    reference = np.asarray(reference).astype(str)
    other = np.asarray(other).astype(str)
    table, ref_labels, other_labels = contingency(reference, other)
    rows, cols = linear_sum_assignment(-table)
    mapping = {other_labels[c]: ref_labels[r] for r, c in zip(rows, cols, strict=True)}
    return np.array([mapping.get(lab, f"{lab}*") for lab in other], dtype=object)


def square_table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of label pairs on the union of both label sets (rows ``a``, columns ``b``).

    The square table agreement statistics (Cohen's kappa) need: the same label on row and
    column ``i``, labels sorted.
    """
    a = np.asarray(a).astype(str)
    b = np.asarray(b).astype(str)
    labels, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    table = np.zeros((labels.size, labels.size), dtype=np.int64)
    np.add.at(table, (inverse[: a.size], inverse[a.size :]), 1)
    return table


def bootstrap_jaccard(
    labels: np.ndarray,
    recluster: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int,
    rng: np.random.Generator,
    progress: Callable[[range], Iterable[int]] = iter,
) -> np.ndarray:
    """Hennig's (2007) clusterwise stability: Jaccard of each cluster with its best match.

    For each bootstrap sample (rows drawn with replacement), ``recluster(indices)`` returns the
    labels of the resampled rows; each original cluster, restricted to the rows drawn, is
    compared with every new cluster (as sets of distinct original rows) and the largest
    Jaccard coefficient is kept. ``progress`` wraps the loop (e.g. a progress bar).

    Returns an ``n_boot × n_clusters`` array (NaN when a cluster had no row in a bootstrap
    sample), columns in the order of ``np.unique(labels)``.
    """
    labels = np.asarray(labels)
    clusters = np.unique(labels)
    n = labels.size
    out = np.full((n_boot, clusters.size), np.nan)
    for b in progress(range(n_boot)):
        idx = rng.integers(0, n, size=n)
        new = np.asarray(recluster(idx))
        drawn = np.unique(idx)
        new_sets = [set(np.unique(idx[new == lab]).tolist()) for lab in np.unique(new)]
        for j, c in enumerate(clusters):
            orig = set(drawn[labels[drawn] == c].tolist())
            if not orig:
                continue
            out[b, j] = max(len(orig & s) / len(orig | s) for s in new_sets)
    return out
