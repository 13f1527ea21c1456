"""Automatic one-dimensional gates on the arcsinh scale (numpy only).

Every cleaning gate of :func:`itme.pp.clean` is a one-sided threshold on one transformed
value per event (e.g. total DNA, cisplatin, CD45). :func:`auto_threshold` finds it from the
sample's own distribution in two stages:

1. **Separate population** ("valley"). The values are binned, the histogram is smoothed with
   a Gaussian kernel, and Otsu's split (the global optimum of 1-D 2-means) divides the
   events into a main class and a class on the gated side. When that class holds between
   ``min_fraction`` and half of the events, and the smoothed density has a minimum between
   the two class medians that is at most ``max_dip`` times the lower of the two peaks, the
   threshold is that minimum: the gate falls in the valley between the populations, as a
   person gating by eye would put it (the same idea as flowDensity's ``deGate``, Malek et
   al., *Bioinformatics* 2015). A valley with most events on the gated side is not used
   (the caller is told, so the user can decide with a threshold of their own).
2. **Tail** ("mad"). Otherwise the distribution is taken as one population with a tail, and
   the threshold is ``median ± max(k * 1.4826 * MAD, min_delta)``: ``k`` robust standard
   deviations from the centre, but never nearer than ``min_delta`` (so a channel whose MAD
   is 0, e.g. an empty cisplatin channel, does not gate at its own noise).

In both stages the threshold is kept at least ``min_delta`` away from the main population's
median, so a gate never cuts through the middle of the kept cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from itme.core.otsu import otsu_binned
from itme.errors import ItmeParameterError

__all__ = [
    "Threshold",
    "auto_threshold",
    "mad_threshold",
    "open_value",
    "robust_location_scale",
    "smoothed_histogram",
]

MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Threshold:
    """A one-sided threshold on the transformed scale and how it was found."""

    value: float  # on the transformed scale; +inf / -inf when nothing is gated
    method: str  # "valley", "mad", "user", or "none: <reason>"
    center: float = float("nan")  # median of the main population
    scale: float = float("nan")  # robust SD of the main population
    #: a valley that was found but not used because most events lie on the gated side
    unused_valley: float = float("nan")
    unused_fraction: float = float("nan")


def open_value(side: str) -> float:
    """The threshold that gates nothing on ``side``.

    Parameters
    ----------
    side
        ``"low"`` (events below the threshold fail) or ``"high"`` (events above fail).

    Returns
    -------
    ``-inf`` for ``"low"``, ``+inf`` for ``"high"``.
    """
    _check_side(side)
    return float("-inf") if side == "low" else float("inf")


def robust_location_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation of ``x``.

    Parameters
    ----------
    x
        1-D values.

    Returns
    -------
    ``(median, 1.4826 * MAD)``, both NaN when ``x`` is empty.
    """
    if x.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - np.float32(med))))
    return med, MAD_TO_SD * mad


def mad_threshold(x: np.ndarray, *, side: str, k: float, min_delta: float = 0.0) -> Threshold:
    """The tail rule: ``median - delta`` (side ``"low"``) or ``median + delta`` (``"high"``).

    ``delta = max(k * SD, min_delta)``, where SD is ``1.4826 * MAD`` (a consistent estimate
    of the standard deviation for normal data).

    Parameters
    ----------
    x
        1-D transformed values.
    side
        ``"low"`` or ``"high"``: the side on which events fail.
    k
        Robust SDs from the median.
    min_delta
        Smallest distance between the median and the threshold.

    Returns
    -------
    The :class:`Threshold` (method ``"mad"``; ``"none: no events"`` when ``x`` is empty).
    """
    _check_side(side)
    med, sd = robust_location_scale(x)
    if not np.isfinite(med):
        return Threshold(open_value(side), "none: no events", med, sd)
    delta = max(k * sd, min_delta)
    value = med - delta if side == "low" else med + delta
    return Threshold(value, "mad", med, sd)


def smoothed_histogram(
    x: np.ndarray, *, bins: int = 256, sd: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of ``x`` and its Gaussian-smoothed density.

    The range is the 0.05-99.95 % quantile range widened by 3 bandwidths; the bandwidth is
    Silverman's rule (``1.06 * SD * n^(-1/5)``) on the robust SD, and at least one bin wide.

    Parameters
    ----------
    x
        1-D finite values (at least one).
    bins
        Number of bins.
    sd
        Robust SD of ``x`` when already known (computed otherwise).

    Returns
    -------
    ``(centres, counts, density)``: bin centres, event counts per bin and the smoothed
    density (integrating to 1).
    """
    lo, hi = np.quantile(x, [0.0005, 0.9995])
    if sd is None:
        sd = robust_location_scale(x)[1]
    spread = sd if sd > 0 else max(hi - lo, 1e-3) / 4
    bandwidth = max(1.06 * spread * x.size ** (-0.2), 1e-3)
    lo, hi = lo - 3 * bandwidth, hi + 3 * bandwidth
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    width = edges[1] - edges[0]
    sigma_bins = max(bandwidth / width, 1.0)
    half = int(np.ceil(4 * sigma_bins))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_bins) ** 2)
    kernel /= kernel.sum()
    # "full" then the centre: "same" would return the kernel's length when it is the longer
    density = np.convolve(counts.astype(np.float64), kernel, mode="full")[half : half + bins]
    density /= max(density.sum() * width, 1e-300)
    return 0.5 * (edges[:-1] + edges[1:]), counts, density


def auto_threshold(
    x: np.ndarray,
    *,
    side: str,
    k: float,
    min_delta: float,
    min_fraction: float = 0.002,
    max_dip: float = 0.5,
    bins: int = 256,
) -> Threshold:
    """Automatic one-sided threshold: the valley before a separate population, else median ± k·SD.

    Parameters
    ----------
    x
        Transformed values (1-D) of the events the gate is fitted on.
    side
        ``"low"``: events below the threshold fail; ``"high"``: events above fail.
    k
        Robust SDs from the median for the tail rule.
    min_delta
        Smallest distance between the main population's median and the threshold.
    min_fraction
        Smallest fraction of events the population on the gated side must hold (and it
        must be the smaller class, at most half) to be cut at a valley.
    max_dip
        The valley's density must be at most this fraction of the smaller of the two peaks.
    bins
        Histogram bins.

    Returns
    -------
    The :class:`Threshold`; ``center`` and ``scale`` describe the population kept (the
    whole distribution for the tail rule, the main class for a valley). When a valley
    separates a majority of the events on the gated side (e.g. most events CD45-low), the
    tail rule is used (nothing is cut automatically through the bulk of a sample) and the
    valley and that fraction are returned in ``unused_valley`` / ``unused_fraction``.
    """
    _check_side(side)
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    if x.size < 20:
        return Threshold(open_value(side), "none: fewer than 20 events")
    tail = mad_threshold(x, side=side, k=k, min_delta=min_delta)
    centres, counts, density = smoothed_histogram(x, bins=bins, sd=tail.scale)
    split = otsu_binned(centres, density)
    lower = centres < split
    gated_bins = lower if side == "low" else ~lower
    frac = float(counts[gated_bins].sum() / max(counts.sum(), 1))
    if min_fraction <= frac <= 1.0 - min_fraction:
        med_main = _binned_median(centres[~gated_bins], counts[~gated_bins])
        med_other = _binned_median(centres[gated_bins], counts[gated_bins])
        valley = _valley(centres, density, med_main, med_other, max_dip)
        if valley is not None and frac > 0.5:
            # most events would be removed: never done automatically, but reported
            return Threshold(tail.value, tail.method, tail.center, tail.scale, float(valley), frac)
        if valley is not None:
            # never nearer to the main population than min_delta
            limit = med_main - min_delta if side == "low" else med_main + min_delta
            value = min(valley, limit) if side == "low" else max(valley, limit)
            return Threshold(float(value), "valley", med_main, tail.scale)
    return tail


def _binned_median(centres: np.ndarray, counts: np.ndarray) -> float:
    """Median of binned data (to the bin centre)."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    i = int(np.searchsorted(np.cumsum(counts), 0.5 * total))
    return float(centres[min(i, centres.size - 1)])


def _valley(
    centres: np.ndarray,
    density: np.ndarray,
    med_main: float,
    med_other: float,
    max_dip: float,
) -> float | None:
    """Deepest density minimum strictly between the two class medians, if deep enough.

    Deep enough: the density there is at most ``max_dip`` times the lower of the highest
    densities on either side, i.e. both classes have a mode of their own.
    """
    if not (np.isfinite(med_main) and np.isfinite(med_other)):
        return None
    a, b = sorted((med_main, med_other))
    inside = np.flatnonzero((centres >= a) & (centres <= b))
    if inside.size < 3:
        return None
    seg = density[inside]
    i_min = int(np.argmin(seg))
    if i_min in (0, seg.size - 1):
        return None
    peak_left = float(seg[: i_min + 1].max())
    peak_right = float(seg[i_min:].max())
    if seg[i_min] > max_dip * min(peak_left, peak_right):
        return None
    return float(centres[inside[i_min]])


def _check_side(side: str) -> None:
    if side not in ("low", "high"):
        raise ItmeParameterError("side", "'low' or 'high'", side)
