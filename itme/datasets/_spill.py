"""Simulated spillover and bead-normalisation data with a known truth.

:func:`simulate_spillover_matrix` draws a spillover matrix over a panel's metals with
CATALYST's physically plausible interactions (±1 mass: detector abundance sensitivity, 0.3-3
%; +16: oxides, 0.5-3 %; the same element's other isotopes: isotopic impurity, 0.1-1 %).
:func:`simulate_single_stains` makes single-stained beads (one population per channel)
measured through that matrix with Poisson counting noise; :func:`simulate_spilled_cells`
makes cells with several positive channels, returned both true and spilled, so that
compensation can be scored against the truth. :func:`simulate_bead_run` makes a file of
cells and EQ beads whose signal falls over the acquisition (the sensitivity loss bead
normalisation removes), with its Time channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from itme.core.clean.steps import STEPS
from itme.core.compensate import spill_targets
from itme.datasets._cells import apply_run_effects
from itme.errors import ItmeParameterError
from itme.io import parse_channel

__all__ = [
    "simulate_bead_run",
    "simulate_single_stains",
    "simulate_spilled_cells",
    "simulate_spillover_matrix",
]

#: ranges (fractions) of simulated spillover by kind
SPILL_RANGES = {"mass": (0.003, 0.03), "oxide": (0.005, 0.03), "isotope": (0.001, 0.01)}
#: the truth label of bead events: the name of pp.clean's bead step (the labels it gives)
BEAD = next(s.name for s in STEPS if s.all_of)
#: the metals of EQ four-element beads
EQ_BEADS = ("Ce140", "Eu151", "Eu153", "Ho165", "Lu175")


def _parts(names: Sequence[str]) -> tuple[list[int], list[str]]:
    masses, elements = [], []
    for n in names:
        c = parse_channel(str(n))
        if not c.element:
            raise ItmeParameterError("channels", "channel names with a metal (Nd144Di)", n)
        masses.append(int(c.mass))
        elements.append(c.element)
    return masses, elements


def simulate_spillover_matrix(
    channels: Sequence[str], *, rng: np.random.Generator | None = None
) -> pd.DataFrame:
    """A random spillover matrix with CATALYST's default interactions over ``channels``.

    Parameters
    ----------
    channels
        Channel names with a metal (``Nd144Di``), e.g. a real panel's ``$PnN``.
    rng
        Random generator.

    Returns
    -------
    DataFrame, index = emitting and columns = receiving channels (``channels``), diagonal 1,
    spillover drawn uniformly from :data:`SPILL_RANGES` by kind (±1 mass, +16, isotope).
    """
    rng = np.random.default_rng(rng)
    masses, elements = _parts(channels)
    targets = spill_targets(masses, elements)
    m = np.asarray(masses)
    S = np.eye(len(m))
    for i, j in zip(*np.nonzero(targets), strict=True):
        delta = m[j] - m[i]
        kind = "mass" if abs(delta) == 1 else "oxide" if delta == 16 else "isotope"
        low, high = SPILL_RANGES[kind]
        S[i, j] = rng.uniform(low, high)
    return pd.DataFrame(S, index=list(channels), columns=list(channels))


def simulate_single_stains(
    spillover: pd.DataFrame,
    *,
    n_per_channel: int = 1000,
    intensity: tuple[float, float] = (1000.0, 10000.0),
    sdlog: float = 0.3,
    background: float = 1.0,
    rng: np.random.Generator | None = None,
) -> ad.AnnData:
    """Single-stained beads, one population per channel, measured through ``spillover``.

    Parameters
    ----------
    spillover
        The true matrix (:func:`simulate_spillover_matrix`), channels as index and columns.
    n_per_channel
        Beads per stained channel.
    intensity
        Range of the populations' median counts (drawn log-uniformly per channel; antibody
        capture beads stained for compensation are bright, thousands of counts). At a few
        hundred counts a 1 % spillover is a handful of counts, and the median of Poisson
        counts that small is biased by a fraction of a count.
    sdlog
        Bead-to-bead spread of the stained channel (log scale).
    background
        Mean true counts of unstained channels (Poisson).
    rng
        Random generator.

    Returns
    -------
    AnnData: ``X`` = ``layers["raw"]`` measured counts (float32; Poisson noise on the spilled
    signal), ``var["channel"]`` = ``var_names`` = the channels, ``obs["stained"]`` (the
    stained channel), ``obs["sample_id"]`` (``"beads"``); ``uns["truth"]``: ``spillover``.
    """
    rng = np.random.default_rng(rng)
    names = list(spillover.columns)
    S = spillover.loc[names, names].to_numpy(dtype=np.float64)
    p, n = len(names), int(n_per_channel)
    medians = np.exp(rng.uniform(np.log(intensity[0]), np.log(intensity[1]), size=p))
    true = rng.poisson(background, size=(p * n, p)).astype(np.float64)
    stained = np.repeat(np.arange(p), n)
    true[np.arange(p * n), stained] = medians[stained] * rng.lognormal(0.0, sdlog, size=p * n)
    measured = rng.poisson(true @ S).astype(np.float32)
    out = ad.AnnData(
        X=measured,
        obs=pd.DataFrame(
            {
                "stained": pd.Categorical(np.asarray(names)[stained], categories=names),
                "sample_id": pd.Categorical(["beads"] * (p * n)),
            },
            index=[f"ss{i}" for i in range(p * n)],
        ),
        var=pd.DataFrame({"channel": names}, index=names),
    )
    out.layers["raw"] = out.X
    out.uns["truth"] = {"spillover": spillover.loc[names, names].copy()}
    return out


def simulate_spilled_cells(
    spillover: pd.DataFrame,
    *,
    n_events: int = 20000,
    positive_fraction: float = 0.3,
    intensity: tuple[float, float] = (100.0, 3000.0),
    sdlog: float = 0.4,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells positive in a random subset of channels: true counts and counts after spillover.

    Parameters
    ----------
    spillover
        The true matrix, channels as index and columns.
    n_events
        Events.
    positive_fraction
        Probability that an event is positive in a channel.
    intensity
        Range of the channels' positive median counts (log-uniform).
    sdlog
        Spread of positive events (log scale).
    rng
        Random generator.

    Returns
    -------
    true
        ``(n_events, p)`` true counts (0 where negative).
    measured
        ``true @ S`` with Poisson counting noise, float64.
    """
    rng = np.random.default_rng(rng)
    names = list(spillover.columns)
    S = spillover.loc[names, names].to_numpy(dtype=np.float64)
    p = len(names)
    medians = np.exp(rng.uniform(np.log(intensity[0]), np.log(intensity[1]), size=p))
    positive = rng.random((int(n_events), p)) < positive_fraction
    true = np.where(positive, medians * rng.lognormal(0.0, sdlog, size=(int(n_events), p)), 0.0)
    measured = rng.poisson(true @ S).astype(np.float64)
    return true, measured


def simulate_bead_run(
    channels: Sequence[str],
    *,
    n_cells: int = 20000,
    n_beads: int = 1500,
    drift: float = 0.3,
    sample_id: str = "run1",
    rng: np.random.Generator | None = None,
) -> ad.AnnData:
    """One file of cells and EQ beads whose signal falls linearly by ``drift`` over the run.

    Cells carry DNA (Ir191/Ir193, when in ``channels``) and are positive in each other
    channel with probability 0.4 (log-normal counts around a channel level); beads are
    bright in the EQ bead channels (Ce140, Eu151, Eu153, Ho165, Lu175; ~10^3-10^4 counts),
    dim elsewhere and carry no DNA; cells are at background in Ce140 only (the other bead
    metals may carry antibodies). The whole signal of every event is multiplied by
    ``1 - drift * t`` (``t`` the acquisition time scaled to [0, 1]; beads included), as
    :func:`itme.datasets._cells.apply_run_effects` does.

    Parameters
    ----------
    channels
        Metal channel names (``Nd144Di``); the EQ bead metals are added when missing.
    n_cells
        Cell events.
    n_beads
        Bead events, interleaved with the cells at random times.
    drift
        Fraction of signal lost from the start to the end of the acquisition.
    sample_id
        The file's sample id.
    rng
        Random generator.

    Returns
    -------
    AnnData: ``X`` = ``layers["raw"]`` (float32), channels ``Time`` then the metal
    channels (``var["channel"]``, ``var["marker_class"]``: ``qc`` for DNA and beads, else
    ``type``); ``obs["sample_id"]``, ``obs["truth"]`` (``cell`` / ``bead``),
    ``obs["time_fraction"]``; ``layers["truth"]``: the expected counts before the drift and
    the counting noise (0 in Time); ``uns["truth"]``: ``drift``, ``cell_levels`` (the median of
    each channel's positive cells before drift).
    """
    rng = np.random.default_rng(rng)
    names = list(channels)
    have = {parse_channel(c).metal for c in names}
    names += [f"{m}Di" for m in EQ_BEADS if m not in have]
    metals = [parse_channel(c).metal for c in names]
    bead_cols = [metals.index(m) for m in EQ_BEADS]
    dna_cols = [i for i, m in enumerate(metals) if m in ("Ir191", "Ir193")]
    p, n = len(names), int(n_cells) + int(n_beads)
    levels = np.exp(rng.uniform(np.log(100.0), np.log(2000.0), size=p))
    X = np.zeros((n, p))
    cells = np.arange(int(n_cells))
    pos = rng.random((cells.size, p)) < 0.4
    X[cells] = np.where(pos, levels * rng.lognormal(0.0, 0.35, size=(cells.size, p)), 0.0)
    X[cells] += rng.poisson(0.5, size=(cells.size, p))
    X[cells, bead_cols[0]] = rng.poisson(1.0, size=cells.size)  # partners may carry antibodies
    for c in dna_cols:
        X[cells, c] = 800.0 * rng.lognormal(0.0, 0.3, size=cells.size)
    beads = np.arange(int(n_cells), n)
    X[beads] = rng.poisson(2.0, size=(beads.size, p))
    bead_level = np.exp(rng.uniform(np.log(2000.0), np.log(8000.0), size=len(bead_cols)))
    X[np.ix_(beads, bead_cols)] = bead_level * rng.lognormal(0.0, 0.15, size=(beads.size, 5))
    time_fraction = np.sort(rng.uniform(0.0, 1.0, size=n))
    order = rng.permutation(n)  # which event comes at which time
    X, truth = X[order], np.where(order < int(n_cells), "cell", BEAD)
    expected = np.column_stack([np.zeros(n), X]).astype(np.float32)
    X = apply_run_effects(X, drift=float(drift), time=time_fraction).astype(np.float64)
    X = rng.poisson(X).astype(np.float32)
    Time = (time_fraction * 600_000).astype(np.float32)  # ms of a 10-minute acquisition
    values = np.column_stack([Time, X])
    var_names = ["Time", *names]
    classes = ["none"] + ["qc" if i in bead_cols or i in dna_cols else "type" for i in range(p)]
    out = ad.AnnData(
        X=values,
        obs=pd.DataFrame(
            {
                "sample_id": pd.Categorical([sample_id] * n),
                "truth": pd.Categorical(truth, categories=["cell", BEAD]),
                "time_fraction": time_fraction,
            },
            index=[f"{sample_id}_{i}" for i in range(n)],
        ),
        var=pd.DataFrame(
            {
                "channel": var_names,
                "antigen": [""] * len(var_names),
                "marker_class": pd.Categorical(classes, categories=["type", "state", "qc", "none"]),
            },
            index=var_names,
        ),
    )
    out.layers["raw"] = out.X
    out.layers["truth"] = expected
    out.uns["truth"] = {"drift": float(drift), "cell_levels": levels}
    return out
