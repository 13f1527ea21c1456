"""Array steps of a cyCombine-style batch correction (Pedersen et al., Nat Commun 2022).

cyCombine clusters the pooled events on values standardised within each batch (so that the
clusters follow cell types, not batches), then aligns each batch's marker distribution to the
others within each cluster (ComBat) and caps the corrected values to the range the cluster
had before. The clustering and ComBat are run by the adapters (``itme.tl.flowsom``, scanpy);
this module holds the array arithmetic around them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cap_to_range", "scale_by_batch"]


def scale_by_batch(X: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Standardise every column within each batch (mean 0, standard deviation 1).

    Parameters
    ----------
    X
        Events × markers.
    batch
        Integer batch code of each event (``0 … n_batches - 1``).

    Returns
    -------
    numpy.ndarray
        float32 array of ``X``'s shape; a constant column of a batch becomes 0.
    """
    out = np.empty(X.shape, dtype=np.float32)
    for b in np.unique(batch):
        rows = batch == b
        block = np.asarray(X[rows], dtype=np.float64)
        sd = block.std(axis=0)
        sd[sd == 0] = 1.0
        out[rows] = (block - block.mean(axis=0)) / sd
    return out


def cap_to_range(corrected: np.ndarray, original: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Clip each group's corrected values to the range that group had before correction.

    cyCombine's last step: the alignment is linear, so it may push values below 0 or beyond
    anything measured; within every cluster each marker is kept inside the cluster's own
    observed ``[min, max]`` over all batches.

    Parameters
    ----------
    corrected, original
        Events × markers, the same shape.
    groups
        Integer group (cluster) code of each event.

    Returns
    -------
    numpy.ndarray
        ``corrected`` clipped in place (and returned).
    """
    for g in np.unique(groups):
        rows = groups == g
        lo = original[rows].min(axis=0)
        hi = original[rows].max(axis=0)
        corrected[rows] = np.clip(corrected[rows], lo, hi)
    return corrected
