"""Find the technical channels of a CyTOF panel from their names (pure Python, no AnnData).

Files name channels in many styles: ``$PnN`` ``Ir191Di`` with ``$PnS`` ``DNA1``;
``191Ir_DNA1``; ``DNA-1(Ir191)Dd`` (Bodenmiller 2012); ``Pt195Di`` with an empty ``$PnS``
(Gates, cytonormpy); ``198Pt_Dead``; ``beadDist``; ``Cell_length`` (CyTOF 1) or
``Event_length`` (CyTOF 2 / Helios). :func:`detect_roles` looks at every name a channel has
(var name, ``$PnN``, ``$PnS``) and returns, per role, the channel positions found.

Roles: ``dna`` (Ir191, Ir193 or a DNA/intercalator name), ``cisplatin`` (Pt194-198 without an
antibody name, or a cisplatin / viability / live-dead / dead name), ``bead`` (Ce140 or a
``bead(s)`` name, first; then the EQ-bead partners Eu151, Eu153, Ho165, Lu175, only when a
Ce140 channel is present), ``bead_distance`` (``beadDist`` of the bead normaliser),
``event_length`` (``Event_length`` / ``Cell_length``), ``center``, ``offset``, ``width``,
``residual`` (Helios Gaussian parameters) and ``cd45`` (a CD45 token, not CD45RA/RO).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["ROLES", "channel_metals", "detect_roles", "name_tokens"]

ROLES = (
    "bead",
    "bead_distance",
    "dna",
    "event_length",
    "center",
    "offset",
    "width",
    "residual",
    "cisplatin",
    "cd45",
)

_METALS = "Ir|Pt|Ce|Eu|Ho|Lu|Rh"
_METAL_FIRST = re.compile(rf"(?<![A-Za-z])({_METALS})(\d{{3}})(?![0-9])")
_MASS_FIRST = re.compile(rf"(?<![0-9])(\d{{3}})({_METALS})(?![a-z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")

_DNA_METALS = {"Ir191", "Ir193"}
_PT_METALS = {"Pt194", "Pt195", "Pt196", "Pt198"}
_BEAD_PRIMARY = {"Ce140"}
_BEAD_PARTNERS = ("Eu151", "Eu153", "Ho165", "Lu175")

_DNA_WORD = re.compile(r"^(dna\d*|ir\d*|iridium|intercalator\d*)$", re.I)
_VIABILITY_WORD = re.compile(
    r"^(cisplatin|cis|cispt|viability|viab|live|dead|livedead|ld|alive)$", re.I
)
_BEAD_WORD = re.compile(r"^(beads?|eq|eqbeads?)$", re.I)
_EVENT_LENGTH = {"eventlength", "celllength"}
_GAUSSIAN = ("center", "offset", "width", "residual")


def name_tokens(name: str) -> list[str]:
    """Split a channel name on non-alphanumerics.

    Parameters
    ----------
    name
        A channel name.

    Returns
    -------
    The non-empty tokens: ``"DNA-1(Ir191)Dd"`` -> ``["DNA", "1", "Ir191", "Dd"]``.
    """
    return [t for t in _SPLIT.split(name) if t]


def channel_metals(name: str) -> set[str]:
    """Metal isotopes of the QC roles (Ir, Pt, Ce, Eu, Ho, Lu, Rh) named in a channel name.

    Parameters
    ----------
    name
        A channel name: ``Ir191Di``, ``191Ir_DNA1``, ``DNA-1(Ir191)Dd``, ...

    Returns
    -------
    The isotopes written element first, e.g. ``{"Ir191"}``.
    """
    found = {f"{el}{mass}" for el, mass in _METAL_FIRST.findall(name)}
    found |= {f"{el}{mass}" for mass, el in _MASS_FIRST.findall(name)}
    return found


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ELEMENTS = set(
    "Y La Ce Pr Nd Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi "
    "Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba Ru Mo Zr Nb Sr Rb Se Br Kr Ga Ge As Zn Cu".split()
)
_METAL_TOKEN = re.compile(r"^(?:([A-Z][a-z]?)(\d{2,3})|(\d{2,3})([A-Z][a-z]?))(Di|Dd)?$")


def _is_metal_token(token: str) -> bool:
    if token in ("Di", "Dd") or token.isdigit():
        return True
    m = _METAL_TOKEN.match(token)
    return bool(m) and (m.group(1) or m.group(4)) in _ELEMENTS


def _is_technical_name(antigen: str, channel: str) -> bool:
    """True when the antigen names no antibody: empty, the channel itself, or only metal tokens."""
    if not antigen or antigen == channel:
        return True
    return all(_is_metal_token(t) for t in name_tokens(antigen))


def detect_roles(
    names: Sequence[str], channels: Sequence[str], antigens: Sequence[str]
) -> dict[str, list[int]]:
    """Positions of the channels of each QC role.

    Parameters
    ----------
    names, channels, antigens
        Per channel: its var name, FCS ``$PnN`` and ``$PnS`` (empty string when absent).

    Returns
    -------
    Role -> list of channel positions (roles not found are absent). ``bead`` lists the
    primary bead channel (Ce140) first, then the partners present.
    """
    roles: dict[str, list[int]] = {}

    def add(role: str, i: int) -> None:
        roles.setdefault(role, [])
        if i not in roles[role]:
            roles[role].append(i)

    partners: dict[str, int] = {}
    for i, (name, chan, ag) in enumerate(zip(names, channels, antigens, strict=True)):
        name, chan, ag = str(name), str(chan), str(ag or "")
        all_names = (name, chan, ag)
        metals = set().union(*(channel_metals(n) for n in all_names))
        tokens = [t for n in all_names for t in name_tokens(n)]
        compact = {_compact(n) for n in all_names if n}
        technical = _is_technical_name(ag, chan)
        ag_tokens = name_tokens(ag)

        if compact & _EVENT_LENGTH:
            add("event_length", i)
            continue
        gaussian = [g for g in _GAUSSIAN if g in compact]
        if gaussian:
            add(gaussian[0], i)
            continue
        if "beaddist" in compact:
            add("bead_distance", i)
            continue
        # a DNA (bead) word in $PnS, or the metal on a channel that names no antibody
        if any(_DNA_WORD.match(t) for t in ag_tokens) or (metals & _DNA_METALS and technical):
            add("dna", i)
            continue
        if any(_VIABILITY_WORD.match(t) for t in tokens) or (metals & _PT_METALS and technical):
            add("cisplatin", i)
            continue
        if any(_BEAD_WORD.match(t) for t in ag_tokens) or (metals & _BEAD_PRIMARY and technical):
            add("bead", i)
            continue
        for metal in _BEAD_PARTNERS:
            if metal in metals:
                partners.setdefault(metal, i)
        if any(t.upper() == "CD45" for t in tokens):
            add("cd45", i)
    if "bead" in roles:
        roles["bead"] = roles["bead"][:1] + [
            partners[m]
            for m in _BEAD_PARTNERS
            if m in partners and partners[m] not in roles["bead"]
        ]
    return roles
