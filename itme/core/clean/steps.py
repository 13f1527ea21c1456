"""The CyTOF cleaning steps: their one definition (:data:`STEPS`) and the chain on arrays.

One sample at a time. Each step is a set of one-sided gates on the gating scale
``arcsinh(raw / cofactor)`` (cofactor :data:`GATING_COFACTOR`; a role with several channels,
e.g. Ir191 + Ir193, is gated on the sum of their raw counts). Steps run in the order of
:data:`STEPS` on the events that passed the earlier steps, each step's thresholds are fitted on
those events only (as in manual hierarchical gating), and the first failing step labels the
event.

:data:`STEPS` is the only place a step is defined: its name (also the label of the events it
removes in ``obs["itme_qc"]`` and its column of the accounting table), the channel roles it
gates and on which side, its default ``k`` and ``min_delta``, and the QC-figure panels that
show it. The library (:func:`itme.pp.clean`), the pipeline config, the QC figures, the
artefact simulator and the docs all read it.
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
    "GATING_COFACTOR",
    "KEPT",
    "QC_LABELS",
    "STEPS",
    "STEP_NAMES",
    "GateSpec",
    "Step",
    "canonical_step",
    "gate_sample",
    "gates_for_roles",
    "step_by_name",
]

#: cofactor of the gating scale ``arcsinh(raw / cofactor)`` on which every threshold is given
#: and stored (pp.clean's default, the pipeline config's scale, the QC figures' axes)
GATING_COFACTOR = 5.0

#: the label of the events no step removed
KEPT = "kept"


@dataclass(frozen=True)
class Step:
    """One cleaning step.

    Attributes
    ----------
    name
        The step's name, which is also the label of the events it removes
        (``obs["itme_qc"]``), its column of ``uns["qc"]["accounting"]`` and its value in the
        ``step`` column of ``uns["qc"]["thresholds"]``.
    roles
        ``(role, side)`` pairs: the channel roles the step gates (see
        :data:`itme.core.clean.channels.ROLES`) and the side on which an event fails. The
        first is the step's primary role (the artefact simulator needs it to plant the
        step's events).
    k
        Default robust SDs from the median for the tail rule.
    min_delta
        Smallest distance (gating scale) between a threshold and the kept median.
    description
        When an event fails, in words (the step table of docs/cleaning.md, checked by a
        test).
    all_of
        A role whose channels are gated one by one and must all fail (beads: Ce140 and every
        bead partner); the other roles are gated on the sum of their channels, and any
        failing gate (or the ``all_of`` group) fails the step.
    manual
        Roles gated only with a user threshold (their scale is not the sample's own).
    panels
        ``(x role, y role)`` of the QC-figure panels that show this step's gates (y
        ``None``: a histogram of x). Steps naming the same panel share it.
    aliases
        Other names accepted for the step (kept for existing configs).
    """

    name: str
    roles: tuple[tuple[str, str], ...]
    k: float
    min_delta: float
    description: str
    all_of: str = ""
    manual: tuple[str, ...] = ()
    panels: tuple[tuple[str, str | None], ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def automatic_roles(self) -> tuple[str, ...]:
        """The roles gated automatically (named when the step is skipped for want of them)."""
        return tuple(r for r, _ in self.roles if r not in self.manual)


#: the cleaning steps in the order they run (the order decides the label of an event failing
#: several); the only definition of a step
STEPS: tuple[Step, ...] = (
    Step(
        "bead",
        roles=(("bead", "high"), ("bead_distance", "low")),
        k=4.0,
        min_delta=2.0,
        description="Ce140 high and every bead partner present high (or beadDist low, with a "
        "user threshold)",
        all_of="bead",
        manual=("bead_distance",),
        panels=(("bead", "dna"),),
    ),
    Step(
        "debris",
        roles=(("dna", "low"),),
        k=4.0,
        min_delta=0.5,
        description="total DNA low",
        panels=(("dna", "event_length"),),
    ),
    Step(
        "doublet",
        roles=(
            ("dna", "high"),
            ("event_length", "high"),
            ("residual", "high"),
            ("width", "high"),
            ("offset", "high"),
            ("center", "high"),
        ),
        k=3.5,
        min_delta=0.3,
        description="total DNA high, or Event_length high, or Residual / Width / Offset / "
        "Center high",
        panels=(("dna", "event_length"), ("width", "residual")),
    ),
    Step(
        "dead",
        roles=(("cisplatin", "high"),),
        k=4.0,
        min_delta=1.0,
        description="total cisplatin high",
        panels=(("cisplatin", "dna"),),
    ),
    Step(
        "cd45_negative",
        roles=(("cd45", "low"),),
        k=4.0,
        min_delta=1.0,
        description="CD45 low",
        panels=(("cd45", None),),
        aliases=("cd45",),
    ),
)

#: step names in the order they run
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)
#: categories of ``obs["itme_qc"]``: kept, then the steps in order
QC_LABELS: tuple[str, ...] = (KEPT, *STEP_NAMES)
_BY_NAME = {name: s for s in STEPS for name in (s.name, *s.aliases)}


def canonical_step(name: str) -> str | None:
    """The step a name or alias refers to.

    Parameters
    ----------
    name
        A step name of :data:`STEPS` or one of its aliases (``cd45``).

    Returns
    -------
    The step's name, or ``None`` when ``name`` names no step.
    """
    step = _BY_NAME.get(name)
    return None if step is None else step.name


def step_by_name(name: str) -> Step:
    """The :class:`Step` of a name or alias (``KeyError`` when there is none).

    Parameters
    ----------
    name
        A step name or alias.

    Returns
    -------
    The step.
    """
    return _BY_NAME[name]


@dataclass(frozen=True)
class GateSpec:
    """One one-sided gate: ``columns`` summed, transformed, compared with a threshold."""

    step: str
    role: str
    columns: tuple[int, ...]
    name: str  # channel name(s) for the record, "+"-joined
    side: str  # "low" or "high"
    automatic: bool = True  # False: gates only with a user threshold (beadDist)
    all_of: bool = False  # one of the channels that must all fail (beads)


@dataclass
class SampleResult:
    """Labels (index into ``("kept",) + STEPS``) and one record per gate."""

    codes: np.ndarray
    records: list[dict] = field(default_factory=list)


def gates_for_roles(
    roles: Mapping[str, Sequence[tuple[int, str]]], steps: Sequence[str]
) -> dict[str, list[GateSpec]]:
    """The gates of each step from the channel roles found.

    The ``all_of`` role of a step (beads) gives one gate per channel (an event is a bead
    when high in all); every other role gives one gate on the sum of its channels.

    Parameters
    ----------
    roles
        Role -> ``[(column, name), ...]`` of the channels found for it.
    steps
        Names of the steps to build gates for, among :data:`STEP_NAMES`.

    Returns
    -------
    Step name -> its gates (an empty list when none of its roles was found).
    """
    out: dict[str, list[GateSpec]] = {}
    for name in steps:
        step = step_by_name(name)
        gates: list[GateSpec] = []
        for role, side in step.roles:
            chans = list(roles.get(role, ()))
            if not chans:
                continue
            if role == step.all_of:
                gates.extend(
                    GateSpec(step.name, role, (c,), n, side, all_of=True) for c, n in chans
                )
            else:
                gates.append(
                    GateSpec(
                        step.name,
                        role,
                        tuple(c for c, _ in chans),
                        "+".join(n for _, n in chans),
                        side,
                        automatic=role not in step.manual,
                    )
                )
        out[step.name] = gates
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
        Step name -> its gates, in the order the steps run (from :func:`gates_for_roles`).
    cofactor
        Cofactor of the gating scale ``arcsinh(raw / cofactor)``.
    k, min_delta
        Per step: robust SDs for the tail rule and the minimal distance to the kept median.
    method
        ``"auto"`` (valley between populations, else tail rule) or ``"mad"`` (tail rule only).
    user
        ``(step, gate name) -> (low, high)`` on the gating scale (NaN = not set): user
        thresholds replacing the automatic ones for those gates.
    max_fit_events
        Fit each automatic threshold on at most this many of the events reaching the step,
        taken at a regular stride (events are in acquisition order, so the stride spans the
        whole run). ``None``: all events.

    Returns
    -------
    :class:`SampleResult`: ``codes`` (int8, index into :data:`QC_LABELS`: 0 = kept) and one
    record per gate: ``step, role, channel``, ``low, high`` (gating scale, NaN when open),
    ``low_raw, high_raw`` (the same in raw units, ``cofactor * sinh``), ``method``,
    ``n_outside`` (events reaching the step that fall outside that gate) and ``note`` (a
    valley not used, on the gating scale, else empty).
    """
    user = user or {}
    codes = np.zeros(n_events, dtype=np.int8)
    alive = np.ones(n_events, dtype=bool)
    records: list[dict] = []
    for step, step_gates in gates.items():
        code = QC_LABELS.index(step)
        if not step_gates:
            continue
        fail_any = np.zeros(n_events, dtype=bool)
        n_ref = int(alive.sum())
        stride = 1 if not max_fit_events else max(1, -(-n_ref // max_fit_events))
        fit = alive if stride == 1 else _strided(alive, stride)
        # events failing every gate of the all-of group so far (beads), None before its first
        candidates: np.ndarray | None = None
        primary_method = ""
        for gate in step_gates:
            values = arcsinh_values(load(gate.columns), cofactor)
            given = user.get((step, gate.name))
            if gate.all_of and candidates is not None:
                # a bead partner channel (Eu151, Eu153, Ho165, Lu175): judged on the candidates
                thr = _partner_threshold(
                    values,
                    fit,
                    candidates & fit,
                    given,
                    k[step],
                    min_delta[step],
                    separate=primary_method in ("valley", "user"),
                )
            else:
                thr = _threshold(values[fit], gate, given, k[step], min_delta[step], method)
            fails = values < thr.value if gate.side == "low" else values > thr.value
            value = float(thr.value) if np.isfinite(thr.value) else np.nan
            records.append(
                {
                    "step": step,
                    "role": gate.role,
                    "channel": gate.name,
                    "low": value if gate.side == "low" else np.nan,
                    "high": value if gate.side == "high" else np.nan,
                    "low_raw": _to_raw(thr.value, cofactor) if gate.side == "low" else np.nan,
                    "high_raw": _to_raw(thr.value, cofactor) if gate.side == "high" else np.nan,
                    "method": thr.method,
                    "n_outside": int(np.count_nonzero(fails & alive)) if n_ref else 0,
                    "note": _note(thr, cofactor),
                }
            )
            if gate.all_of:
                if candidates is None:
                    # the first channel of the group (Ce140) finds candidates ...
                    primary_method = thr.method
                    candidates = fails & alive
                else:
                    # ... and each partner must agree
                    candidates &= fails
            else:
                fail_any |= fails
            del values
        if candidates is not None:
            fail_any |= candidates
        removed = fail_any & alive
        codes[removed] = code
        alive &= ~removed
    return SampleResult(codes, records)


def _note(thr: Threshold, cofactor: float) -> str:
    """Where a valley not used lies: on the gating scale, with its raw counts in brackets."""
    if not np.isfinite(thr.unused_valley):
        return ""
    return (
        f"valley at {thr.unused_valley:.4g} (raw {_to_raw(thr.unused_valley, cofactor):.4g}) "
        f"not used: {100 * thr.unused_fraction:.0f} % of the events lie beyond it"
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
    k: float,
    min_delta: float,
    method: str,
) -> Threshold:
    if given is not None:
        value = given[0] if gate.side == "low" else given[1]
        if value is not None and np.isfinite(value):
            return Threshold(float(value), "user")
    if not gate.automatic:
        return Threshold(open_value(gate.side), "none: needs a user threshold")
    if ref.size == 0:
        return Threshold(open_value(gate.side), "none: no events reach this step")
    if method == "mad":
        return mad_threshold(ref, side=gate.side, k=k, min_delta=min_delta)
    return auto_threshold(ref, side=gate.side, k=k, min_delta=min_delta)


def _partner_threshold(
    values: np.ndarray,
    alive: np.ndarray,
    candidates: np.ndarray,
    given: tuple[float, float] | None,
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
        return Threshold(float(given[1]), "user")
    ref = values[alive]
    if ref.size == 0:
        return Threshold(open_value("high"), "none: no events reach this step")
    cand = values[candidates]
    if separate and cand.size >= 20:
        med_c, sd_c = robust_location_scale(cand)
        return Threshold(med_c - k * sd_c, "bead-population", med_c, sd_c)
    med_all = float(np.median(ref))
    return Threshold(med_all + min_delta, "median+delta", med_all)
