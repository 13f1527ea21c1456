"""Low-dimensional maps of samples and smoothed densities of marker values (numpy only).

:func:`classical_mds` places samples from their pseudobulk profiles (CATALYST's ``pbMDS``
draws the same map from per-sample medians with limma's ``plotMDS``: with every marker used,
limma's distance is the root-mean-square difference, a Euclidean distance up to a constant,
whose classical MDS is the principal-component map of the centred profiles).
:func:`binned_density` is a Gaussian kernel density evaluated on a fixed grid by smoothing a
fine histogram, so millions of events cost one pass and no subsampling (no randomness).
"""

from __future__ import annotations

import numpy as np

__all__ = ["binned_density", "classical_mds"]


def classical_mds(profiles: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Classical (Torgerson) MDS of the rows of ``profiles`` under Euclidean distance.

    Parameters
    ----------
    profiles
        Samples × features (e.g. per-sample marker medians); no missing values.
    n_components
        Dimensions returned.

    Returns
    -------
    coords
        ``(n_samples, n_components)``: the centred profiles projected on their principal
        axes; each axis's sign is fixed so that its largest loading is positive.
    explained
        Share of the total squared distance carried by each returned axis.
    """
    X = np.asarray(profiles, dtype=float)
    X = X - X.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    k = min(n_components, s.size)
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])
    signs[signs == 0] = 1.0
    coords = np.zeros((X.shape[0], n_components))
    coords[:, :k] = u[:, :k] * s[:k] * signs
    total = float((s**2).sum())
    explained = np.zeros(n_components)
    if total > 0:
        explained[:k] = s[:k] ** 2 / total
    return coords, explained


def binned_density(values: np.ndarray, edges: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of ``values`` at the centres of the bins ``edges``.

    Parameters
    ----------
    values
        1-D sample (NaN ignored).
    edges
        Equally spaced bin edges; the density is evaluated at the bin centres.
    bandwidth
        Standard deviation of the Gaussian kernel, in the units of ``values``.

    Returns
    -------
    numpy.ndarray
        ``len(edges) - 1`` densities integrating to ~1 over the grid (all zero when no value
        falls inside it).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    counts, _ = np.histogram(v, bins=edges)
    width = float(edges[1] - edges[0])
    half = max(1, int(np.ceil(4 * bandwidth / width)))
    offsets = np.arange(-half, half + 1) * width
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    kernel /= kernel.sum()
    smooth = np.convolve(counts.astype(float), kernel, mode="full")[half : half + counts.size]
    total = smooth.sum() * width
    return smooth / total if total > 0 else smooth
