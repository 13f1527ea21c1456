"""Agreement between two clusterings: label alignment, Cohen's kappa, bootstrap Jaccard.

Why kappa is computed here: scikit-learn's ``cohen_kappa_score`` gives kappa only, and
statsmodels' ``cohens_kappa`` (kappa, its standard errors and p-value from a square table of
matched labels) may not be imported by ``itme.core``, the numpy/scipy layer. The formulas are
those of Fleiss, Cohen & Everitt (1969); the tests check kappa against scikit-learn and both
standard errors, z and the p-value against statsmodels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment

__all__ = ["align_labels", "bootstrap_jaccard", "cohen_kappa", "contingency"]


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


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Cohen's kappa of two label vectors with its null standard error, z and two-sided p.

    The standard error under H0 (kappa = 0) is that of Fleiss, Cohen & Everitt (1969), the
    one statsmodels' ``cohens_kappa`` reports as ``std_kappa0``; ``se`` is the large-sample
    standard error of kappa itself (same source, ``std_kappa``).
    """
    a = np.asarray(a).astype(str)
    b = np.asarray(b).astype(str)
    labels = np.union1d(a, b)
    idx = {lab: i for i, lab in enumerate(labels)}
    table = np.zeros((labels.size, labels.size))
    for x, y in zip(a, b, strict=True):
        table[idx[x], idx[y]] += 1
    n = table.sum()
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    po = np.trace(p)
    pe = float(row @ col)
    if pe >= 1:
        return {
            "kappa": float("nan"),
            "se": float("nan"),
            "se0": float("nan"),
            "z": float("nan"),
            "pvalue": float("nan"),
            "n": float(n),
        }
    kappa = (po - pe) / (1 - pe)
    se0 = np.sqrt((pe + pe**2 - float(np.sum(row * col * (row + col)))) / (n * (1 - pe) ** 2))
    # large-sample variance of kappa (Fleiss, Cohen & Everitt 1969, eq. 13)
    diag = np.diag(p)
    term1 = float(np.sum(diag * (1 - (row + col) * (1 - kappa)) ** 2))
    off = p * (col[:, None] + row[None, :]) ** 2
    term2 = (1 - kappa) ** 2 * float(off.sum() - np.trace(off))
    term3 = (kappa - pe * (1 - kappa)) ** 2
    se = np.sqrt(max(term1 + term2 - term3, 0.0) / (n * (1 - pe) ** 2))
    z = kappa / se0 if se0 > 0 else float("nan")
    pvalue = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else float("nan")
    return {
        "kappa": float(kappa),
        "se": float(se),
        "se0": float(se0),
        "z": float(z),
        "pvalue": pvalue,
        "n": float(n),
    }


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
