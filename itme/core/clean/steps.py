"""The CyTOF cleaning chain on arrays: beads, debris, doublets, dead cells, CD45- (numpy only).

One sample at a time. Each step is a set of one-sided gates on transformed values
(``arcsinh(raw / cofactor)``; a role with several channels, e.g. Ir191 + Ir193, is gated on
the sum of their raw counts). Steps run in order on the events that passed the earlier
steps, each step's thresholds are fitted on those events only (as in manual hierarchical
gating), and the first failing step labels the event.

Step     | gates (fail when)                                         | combined
-------- | --------------------------------------------------------- | --------
bead     | Ce140 high, and every bead partner (Eu151, Eu153, Ho165, Lu175) high | all
debris   | DNA low                                                   | any
doublet  | DNA high, Event_length high, Residual/Width/Offset/Center high | any
dead     | cisplatin high                                            | any
cd45_negative | CD45 low                                             | any
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from itme.core.clean.gating import (
    Threshold,
    auto_threshold,
    mad_threshold,
    open_value,
    robust_location_scale,
)
from itme.core.transform import arcsinh_values

__all__ = [
    "DEFAULT_K",
    "DEFAULT_MIN_DELTA",
    "STEPS",
    "GateSpec",
    "gate_sample",
    "gates_for_roles",
]

#: cleaning steps in the order they run (the order decides the label of an event failing several)
STEPS = ("bead", "debris", "doublet", "dead", "cd45_negative")

#: robust SDs from the median for the tail rule, per step
DEFAULT_K = {"bead": 4.0, "debris": 4.0, "doublet": 3.5, "dead": 4.0, "cd45_negative": 4.0}

#: smallest distance (arcsinh units) between a threshold and the kept population's median
DEFAULT_MIN_DELTA = {
    "bead": 2.0,
    "debris": 0.5,
    "doublet": 0.3,
    "dead": 1.0,
    "cd45_negative": 1.0,
}

#: roles and the side on which they fail, per step
STEP_ROLES: dict[str, tuple[tuple[str, str], ...]] = {
    "bead": (("bead", "high"), ("bead_distance", "low")),
    "debris": (("dna", "low"),),
    "doublet": (
        ("dna", "high"),
        ("event_length", "high"),
        ("residual", "high"),
        ("width", "high"),
        ("offset", "high"),
        ("center", "high"),
    ),
    "dead": (("cisplatin", "high"),),
    "cd45_negative": (("cd45", "low"),),
}


@dataclass(frozen=True)
class GateSpec:
    """One one-sided gate: ``columns`` summed, transformed, compared with a threshold."""

    step: str
    role: str
    columns: tuple[int, ...]
    name: str  # channel name(s) for the record, "+"-joined
    side: str  # "low" or "high"
    automatic: bool = True  # False: gates only with a user threshold (beadDist)


@dataclass
class SampleResult:
    """Labels (index into ``("kept",) + STEPS``) and one record per gate."""

    codes: np.ndarray
    records: list[dict] = field(default_factory=list)


def gates_for_roles(
    roles: Mapping[str, Sequence[tuple[int, str]]], steps: Sequence[str]
) -> dict[str, list[GateSpec]]:
    """The gates of each step from the channel roles found.

    The bead role gives one gate per channel (an event is a bead when high in all); every
    other role gives one gate on the sum of its channels.

    Parameters
    ----------
    roles
        Role -> ``[(column, name), ...]`` of the channels found for it.
    steps
        Steps to build gates for, among :data:`STEPS`.

    Returns
    -------
    Step -> its gates (an empty list when none of its roles was found).
    """
    out: dict[str, list[GateSpec]] = {}
    for step in steps:
        gates: list[GateSpec] = []
        for role, side in STEP_ROLES[step]:
            chans = list(roles.get(role, ()))
            if not chans:
                continue
            if role == "bead":
                gates.extend(GateSpec(step, role, (c,), n, side) for c, n in chans)
            else:
                gates.append(
                    GateSpec(
                        step,
                        role,
                        tuple(c for c, _ in chans),
                        "+".join(n for _, n in chans),
                        side,
                        automatic=role != "bead_distance",
                    )
                )
        out[step] = gates
    return out


def gate_sample(
    load: Callable[[tuple[int, ...]], np.ndarray],
    n_events: int,
    gates: Mapping[str, Sequence[GateSpec]],
    *,
    cofactor: float,
    k: Mapping[str, float],
    min_delta: Mapping[str, float],
    method: str = "auto",
    user: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    max_fit_events: int | None = None,
) -> SampleResult:
    """Run the cleaning steps on one sample.

    Parameters
    ----------
    load
        ``load(columns)`` returns the raw values of one sample summed over ``columns``
        (1-D float array of length ``n_events``).
    n_events
        Events in the sample.
    gates
        Step -> its gates, in the order the steps run (from :func:`gates_for_roles`).
    cofactor
        arcsinh cofactor of the gating scale.
    k, min_delta
        Per step: robust SDs for the tail rule and the minimal distance to the kept median.
    method
        ``"auto"`` (valley between populations, else tail rule) or ``"mad"`` (tail rule only).
    user
        ``(step, gate name) -> (low, high)`` in raw units (NaN = not set): user thresholds
        replacing the automatic ones for those gates.
    max_fit_events
        Fit each automatic threshold on at most this many of the events reaching the step,
        taken at a regular stride (events are in acquisition order, so the stride spans the
        whole run). ``None``: all events.

    Returns
    -------
    :class:`SampleResult`: ``codes`` (int8, 0 = kept, i = ``STEPS[i - 1]``) and one record per
    gate: ``step, role, channel, low, high`` (raw units, NaN when open), ``method``,
    ``n_outside`` (events reaching the step that fall outside that gate) and ``note`` (why
    a valley was not used, else empty).
    """
    user = user or {}
    codes = np.zeros(n_events, dtype=np.int8)
    alive = np.ones(n_events, dtype=bool)
    records: list[dict] = []
    for step_index, (step, step_gates) in enumerate(gates.items(), start=1):
        code = STEPS.index(step) + 1 if step in STEPS else step_index
        if not step_gates:
            continue
        fail_any = np.zeros(n_events, dtype=bool)
        n_ref = int(alive.sum())
        stride = 1 if not max_fit_events else max(1, -(-n_ref // max_fit_events))
        fit = alive if stride == 1 else _strided(alive, stride)
        bead_candidates: np.ndarray | None = None
        primary_method = ""
        for gate in step_gates:
            values = arcsinh_values(load(gate.columns), cofactor)
            given = user.get((step, gate.name))
            if gate.role == "bead" and bead_candidates is not None:
                # a bead partner channel (Eu151, Eu153, Ho165, Lu175): judged on the candidates
                thr = _bead_partner_threshold(
                    values,
                    fit,
                    bead_candidates & fit,
                    given,
                    cofactor,
                    k[step],
                    min_delta[step],
                    separate=primary_method in ("valley", "user"),
                )
            else:
                thr = _threshold(
                    values[fit], gate, given, cofactor, k[step], min_delta[step], method
                )
            fails = values < thr.value if gate.side == "low" else values > thr.value
            records.append(
                {
                    "step": step,
                    "role": gate.role,
                    "channel": gate.name,
                    "low": _to_raw(thr.value, cofactor) if gate.side == "low" else np.nan,
                    "high": _to_raw(thr.value, cofactor) if gate.side == "high" else np.nan,
                    "method": thr.method,
                    "n_outside": int(np.count_nonzero(fails & alive)) if n_ref else 0,
                    "note": _note(thr, cofactor),
                }
            )
            if gate.role == "bead" and bead_candidates is None:
                primary_method = thr.method
            if gate.role == "bead":
                # the first bead channel (Ce140) finds candidates; each partner must agree
                bead_candidates = (
                    fails & alive if bead_candidates is None else bead_candidates & fails
                )
            else:
                fail_any |= fails
            del values
        if bead_candidates is not None:
            fail_any |= bead_candidates
        removed = fail_any & alive
        codes[removed] = code
        alive &= ~removed
    return SampleResult(codes, records)


def _note(thr: Threshold, cofactor: float) -> str:
    if not np.isfinite(thr.unused_valley):
        return ""
    return (
        f"valley at {_to_raw(thr.unused_valley, cofactor):.4g} not used: "
        f"{100 * thr.unused_fraction:.0f} % of the events lie beyond it"
    )


def _strided(mask: np.ndarray, stride: int) -> np.ndarray:
    """Every ``stride``-th True of ``mask``."""
    out = np.zeros_like(mask)
    out[np.flatnonzero(mask)[::stride]] = True
    return out


def _to_raw(value: float, cofactor: float) -> float:
    if not np.isfinite(value):
        return float("nan")
    return float(cofactor * np.sinh(value))


def _threshold(
    ref: np.ndarray,
    gate: GateSpec,
    given: tuple[float, float] | None,
    cofactor: float,
    k: float,
    min_delta: float,
    method: str,
) -> Threshold:
    if given is not None:
        raw = given[0] if gate.side == "low" else given[1]
        if raw is not None and np.isfinite(raw):
            return Threshold(float(np.arcsinh(raw / cofactor)), "user")
    if not gate.automatic:
        return Threshold(open_value(gate.side), "none: needs a user threshold")
    if ref.size == 0:
        return Threshold(open_value(gate.side), "none: no events reach this step")
    if method == "mad":
        return mad_threshold(ref, side=gate.side, k=k, min_delta=min_delta)
    return auto_threshold(ref, side=gate.side, k=k, min_delta=min_delta)


def _bead_partner_threshold(
    values: np.ndarray,
    alive: np.ndarray,
    candidates: np.ndarray,
    given: tuple[float, float] | None,
    cofactor: float,
    k: float,
    min_delta: float,
    *,
    separate: bool,
) -> Threshold:
    """Threshold of a bead partner channel (Eu151, Eu153, Ho165, Lu175): beads are bright in all.

    When the first bead channel (Ce140) showed a separate bright population of 20 or more
    events (``separate``), those candidates are beads and the partner threshold is their own
    lower bound, ``median - k * SD`` of the candidates: a bead must look like the other
    beads. Otherwise the few candidates are stray cells, and each partner must be at least
    ``min_delta`` above the median of all events (so a cell bright in one antibody channel
    does not pass for a bead).
    """
    if given is not None and given[1] is not None and np.isfinite(given[1]):
        return Threshold(float(np.arcsinh(given[1] / cofactor)), "user")
    ref = values[alive]
    if ref.size == 0:
        return Threshold(open_value("high"), "none: no events reach this step")
    cand = values[candidates]
    if separate and cand.size >= 20:
        med_c, sd_c = robust_location_scale(cand)
        return Threshold(med_c - k * sd_c, "bead-population", med_c, sd_c)
    med_all = float(np.median(ref))
    return Threshold(med_all + min_delta, "median+delta", med_all)
