"""Column transforms of a samples × subsets frequency matrix before patient clustering.

All functions take and return float arrays (samples × features) and never modify their input.
The AnnData adapter (:func:`itme.tl.patient_clusters`) validates the input first (no missing
values, no constant columns for ``zscore``, percentages in [0, 100] for ``clr`` and
``arcsine_sqrt``).
"""

from __future__ import annotations

import numpy as np

from itme.errors import ItmeParameterError

__all__ = ["TRANSFORMS", "arcsine_sqrt", "clr", "transform", "zscore"]

#: the accepted transform names, ``"none"`` meaning raw percentages
TRANSFORMS = ("zscore", "clr", "arcsine_sqrt", "none")


def zscore(x: np.ndarray, *, ddof: int = 1) -> np.ndarray:
    """Standardise each column to mean 0 and standard deviation 1.

    ``ddof=1`` (sample standard deviation) is what JMP's "Standardize Data" option of its
    hierarchical clustering platform does, which the paper used (Visram et al. 2021).
    A constant column becomes 0 (it carries no distance); the adapters report and remove such
    columns before clustering, but a bootstrap resample can make a rare subset constant.
    """
    x = np.asarray(x, dtype=float)
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=ddof)
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, (x - mean) / safe, 0.0)


def clr(x: np.ndarray, *, pseudocount: float | None = None) -> np.ndarray:
    """Centred log-ratio of each row: ``log(x + c) - mean(log(x + c))`` over the row's features.

    ``pseudocount`` ``c`` defaults to half the smallest positive value of ``x`` (zeros are
    common for rare subsets); it is 0 when ``x`` has no zeros.
    """
    x = np.asarray(x, dtype=float)
    if pseudocount is None:
        positive = x[x > 0]
        pseudocount = 0.0 if (x > 0).all() else (positive.min() / 2 if positive.size else 1.0)
    logx = np.log(x + pseudocount)
    return logx - logx.mean(axis=1, keepdims=True)


def arcsine_sqrt(x: np.ndarray, *, scale: float = 100.0) -> np.ndarray:
    """Variance-stabilising ``arcsin(sqrt(x / scale))`` for percentages (``scale=100``)."""
    x = np.asarray(x, dtype=float)
    return np.arcsin(np.sqrt(np.clip(x / scale, 0.0, 1.0)))


def transform(x: np.ndarray, name: str) -> np.ndarray:
    """Apply the transform called ``name`` (one of :data:`TRANSFORMS`)."""
    if name == "zscore":
        return zscore(x)
    if name == "clr":
        return clr(x)
    if name == "arcsine_sqrt":
        return arcsine_sqrt(x)
    if name == "none":
        return np.asarray(x, dtype=float).copy()
    raise ItmeParameterError("transform", f"one of {', '.join(TRANSFORMS)}", name)
