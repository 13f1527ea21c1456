"""Synthetic CyTOF events of named subsets, following a phenotype table.

:func:`simulate_cells` draws raw ion counts (the scale of ``layers["raw"]``) for cells of the
subsets of a :class:`~itme.core.annotate.phenotypes.PhenotypeTable`. A marker a subset's rules call
``hi`` is drawn around the marker's positive level, ``lo`` (and every unmentioned marker,
unless ``background`` says otherwise) around its negative level, on the arcsinh scale, then
mapped back with ``cofactor * sinh(v)``. Marker levels depend only on the marker's and
subset's names, never on ``rng``, so separate calls (one per simulated patient) share the
same phenotypes and only the cells differ; that is what a cohort simulator needs.

The result carries the true label of every cell, so clustering accuracy (F1) and
annotation accuracy can be measured against it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from itme.core.annotate.phenotypes import PhenotypeTable
from itme.errors import ItmeParameterError

__all__ = ["apply_run_effects", "draw_run_gains", "marker_levels", "simulate_cells"]

#: default arcsinh-scale ranges of a marker's negative and positive levels
LO_RANGE = (0.05, 0.6)
HI_RANGE = (2.6, 4.2)


def _unit(*names: str) -> float:
    """A number in [0, 1) fixed by the names (CRC32), the same in every run and platform."""
    return zlib.crc32("\x1f".join(names).encode()) / 2**32


def marker_levels(marker: str) -> tuple[float, float]:
    """The default (negative, positive) mean of ``marker`` on the arcsinh scale.

    Parameters
    ----------
    marker
        Antigen name.

    Returns
    -------
    tuple of float
        ``(lo, hi)``, fixed by the name so every call agrees.
    """
    lo = LO_RANGE[0] + (LO_RANGE[1] - LO_RANGE[0]) * _unit("lo", marker)
    hi = HI_RANGE[0] + (HI_RANGE[1] - HI_RANGE[0]) * _unit("hi", marker)
    return lo, hi


def simulate_cells(
    phenotypes: PhenotypeTable,
    channels: Sequence[str],
    n_cells: int,
    proportions: Mapping[str, float] | None = None,
    *,
    rng: np.random.Generator,
    cofactor: float = 5.0,
    background: Mapping[str, str] | None = None,
    levels: Mapping[str, tuple[float, float]] | None = None,
    hi_sd: float = 0.45,
    lo_sd: float = 0.35,
    subset_shift: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n_cells`` events of the subsets of a phenotype table on the raw scale.

    Parameters
    ----------
    phenotypes
        The table whose rules define each subset (its lineage's rules plus its own).
        A lineage's ``other`` name may be simulated too: lineage rules only.
    channels
        Antigen names of the output columns, in order. Channels no rule mentions take
        their ``background`` state (``lo`` unless given), e.g. DNA or bead channels.
    n_cells
        Number of events.
    proportions
        Subset name → relative weight (normalised to 1). Names absent get no cells.
        ``None``: every subset of the table (not the ``other`` names) equally.
    rng
        Random generator for the cells (counts per subset, noise, order).
    cofactor
        arcsinh cofactor linking the simulated scale to raw counts (5 for CyTOF).
    background
        Marker → ``hi``/``lo`` for markers a subset's rules leave open. Default
        ``{"CD45": "hi"}``: every simulated event is a leukocyte.
    levels
        Marker → ``(lo, hi)`` arcsinh-scale means overriding :func:`marker_levels`.
    hi_sd, lo_sd
        Standard deviation of positive and negative cells on the arcsinh scale.
    subset_shift
        Largest shift of a subset's level from the marker's level (fixed by the names), so
        that subsets differ a little, as real ones do.

    Returns
    -------
    X : numpy.ndarray
        float32, ``(n_cells, len(channels))`` raw ion counts (≥ 0).
    labels : numpy.ndarray
        object array of the true subset name of each event, in the same (shuffled) order.
    """
    if int(n_cells) < 0:
        raise ItmeParameterError("n_cells", "an integer >= 0", n_cells)
    known = phenotypes.subset_names
    if proportions is None:
        proportions = {s.name: 1.0 for s in phenotypes.subsets}
    names = [n for n, w in proportions.items() if w > 0]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ItmeParameterError(
            "proportions", f"subset names of the table {phenotypes.name!r}", unknown
        )
    weights = np.array([float(proportions[n]) for n in names])
    if not names or not np.isfinite(weights).all():
        raise ItmeParameterError(
            "proportions", "finite positive weights for >= 1 subset", proportions
        )
    background = {"CD45": "hi"} if background is None else dict(background)
    levels = dict(levels or {})
    channels = list(channels)
    counts = rng.multinomial(int(n_cells), weights / weights.sum())

    X = np.empty((int(n_cells), len(channels)), dtype=np.float32)
    labels = np.empty(int(n_cells), dtype=object)
    start = 0
    for name, count in zip(names, counts, strict=True):
        rules = phenotypes.rules(name)
        stop = start + int(count)
        for j, marker in enumerate(channels):
            state = rules.get(marker, background.get(marker, "lo"))
            lo, hi = levels.get(marker, marker_levels(marker))
            mean = hi if state == "hi" else lo
            sd = hi_sd if state == "hi" else lo_sd
            mean += subset_shift * (2 * _unit("shift", name, marker) - 1)
            v = rng.normal(mean, sd, size=int(count))
            np.maximum(v, 0.0, out=v)
            X[start:stop, j] = cofactor * np.sinh(v)
        labels[start:stop] = name
        start = stop
    order = rng.permutation(int(n_cells))
    return X[order], labels[order]


def draw_run_gains(
    n_runs: int, n_channels: int, spread: float, *, rng: np.random.Generator
) -> np.ndarray:
    """Per-run, per-channel signal gains drawn uniformly from ``[1 - spread, 1 + spread]``.

    Models what differs between acquisitions months apart (detector age, tuning, a new
    detector after a service): every channel of a run is scaled by its own factor.

    Parameters
    ----------
    n_runs
        Number of runs (rows of the result).
    n_channels
        Number of channels (columns).
    spread
        Largest relative change, in ``[0, 1)`` (0.2 = ±20 %; 0 = no run effect).
    rng
        Random generator.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_runs, n_channels)`` multiplicative gains.
    """
    if not 0 <= float(spread) < 1:
        raise ItmeParameterError("spread", "a fraction in [0, 1)", spread)
    return rng.uniform(1 - float(spread), 1 + float(spread), size=(int(n_runs), int(n_channels)))


def apply_run_effects(
    X: np.ndarray,
    *,
    gains: np.ndarray | None = None,
    drift: float = 0.0,
    time: np.ndarray | None = None,
) -> np.ndarray:
    """Apply a run's channel gains and its signal loss over acquisition time to raw counts.

    ``X * gains * (1 - drift * time)``: raw ion counts scale with the detector's gain, so a
    gain is a multiplication on the raw scale (a shift of ``log(gain)`` on the arcsinh scale
    for bright events). Signal loss over a run's acquisition (instrument sensitivity that
    falls as the run goes on) is linear in the acquisition time ``time`` scaled to ``[0, 1]``
    over the whole run, so a run's first file loses nothing and its last up to ``drift``.

    Parameters
    ----------
    X
        Raw counts, events × channels (not modified).
    gains
        ``(n_channels,)`` gains of the run (:func:`draw_run_gains`); ``None``: 1.
    drift
        Fraction of the signal lost from the run's start (``time`` 0) to its end (1).
    time
        ``(n_events,)`` acquisition time of each event in ``[0, 1]`` over the run; needed
        when ``drift > 0``.

    Returns
    -------
    numpy.ndarray
        float32 counts, the same shape as ``X``.
    """
    out = np.asarray(X, dtype=np.float32).copy()
    if gains is not None:
        gains = np.asarray(gains, dtype=np.float64)
        if gains.shape != (out.shape[1],) or not (gains > 0).all():
            raise ItmeParameterError(
                "gains", f"{out.shape[1]} positive gains, one per channel", gains.shape
            )
        out *= gains.astype(np.float32)[None, :]
    if drift:
        if not 0 <= float(drift) < 1:
            raise ItmeParameterError("drift", "a fraction in [0, 1)", drift)
        t = None if time is None else np.asarray(time, dtype=np.float64)
        if t is None or t.shape != (out.shape[0],) or t.min() < 0 or t.max() > 1:
            raise ItmeParameterError("time", "one value in [0, 1] per event", time)
        out *= (1.0 - float(drift) * t).astype(np.float32)[:, None]
    return out
