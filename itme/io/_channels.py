"""Channel names of mass cytometry: the metal (mass, element) and the antigen, in any convention.

Instrument software, exports and analysis tools name the same channel differently:
``Pr141Di`` (CyTOF 2/Helios ``$PnN``), ``141Pr`` (mass then element), ``141Pr_CD3`` (Fluidigm
``$PnS``), ``CD3_Pr141`` (tidytof, Cytobank exports), ``CD3(Pr141)Di`` / ``CD3(141Pr)`` /
``(Pr141)Dd`` (older CyTOF software), ``CD3(110:114)Dd`` (a mass range, the Bodenmiller 2012
cadmium channel). :func:`parse_channel` reads every one of these into a :class:`Channel`
(mass, element, antigen, convention), so a panel written in one convention finds its channels
in files written in another: :func:`match_panel` matches by ``$PnN``, by ``$PnS``, then by
metal, then by antigen (through the alias table :data:`ANTIGEN_ALIASES`).

An element symbol is accepted only with a mass near its atomic weight (±8, which covers every
stable isotope of the metals used), so antigen names such as ``B220``, ``P53`` or ``Ki67`` are
not read as metals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from itme.errors import ItmeInputError

__all__ = ["ANTIGEN_ALIASES", "Channel", "metal_columns", "parse_channel"]

#: approximate atomic weights of the elements seen in mass cytometry (±8 accepted)
_ATOMIC_WEIGHT = {
    "Ti": 47.9, "Fe": 55.8, "Co": 58.9, "Ni": 58.7, "Cu": 63.5, "Zn": 65.4, "Ga": 69.7,
    "Ge": 72.6, "Se": 79.0, "Br": 79.9, "Rb": 85.5, "Sr": 87.6, "Y": 88.9, "Zr": 91.2,
    "Nb": 92.9, "Mo": 96.0, "Ru": 101.1, "Rh": 102.9, "Pd": 106.4, "Ag": 107.9, "Cd": 112.4,
    "In": 114.8, "Sn": 118.7, "Sb": 121.8, "Te": 127.6, "I": 126.9, "Xe": 131.3,
    "Cs": 132.9, "Ba": 137.3, "La": 138.9, "Ce": 140.1, "Pr": 140.9, "Nd": 144.2,
    "Sm": 150.4, "Eu": 152.0, "Gd": 157.3, "Tb": 158.9, "Dy": 162.5, "Ho": 164.9,
    "Er": 167.3, "Tm": 168.9, "Yb": 173.0, "Lu": 175.0, "Hf": 178.5, "Ta": 180.9,
    "W": 183.8, "Re": 186.2, "Os": 190.2, "Ir": 192.2, "Pt": 195.1, "Au": 197.0,
    "Hg": 200.6, "Tl": 204.4, "Pb": 207.2, "Bi": 209.0,
}  # fmt: skip

#: antigen names that mean the same marker; names are also compared ignoring case, spaces,
#: ``-``, ``_`` and ``.`` (so ``HLA-DR`` = ``HLADR``, ``Ki-67`` = ``Ki67`` need no entry).
#: Extend it per run with the config's ``ingest.antigen_aliases`` (or ``antigen_aliases=`` of
#: :func:`itme.io.read_cohort`).
ANTIGEN_ALIASES: dict[str, tuple[str, ...]] = {
    "CD3": ("CD3e", "CD3epsilon"),
    "HLA-DR": ("MHC-II", "MHCII"),
    "Ki-67": ("MKI67",),
    "PD-1": ("CD279", "PDCD1"),
    "PD-L1": ("CD274",),
    "CTLA-4": ("CD152",),
    "CD11b": ("ITGAM", "Mac-1"),
    "CD16": ("FcgRIII",),
    "DNA1": ("DNA-1", "Ir191"),
    "DNA2": ("DNA-2", "Ir193"),
    "Dead": ("Cisplatin", "Viability", "LiveDead"),
}

_METAL = r"(?P<el>[A-Z][a-z]?)(?P<mass>\d{2,3})"
_MASS_METAL = r"(?P<mass>\d{2,3})(?P<el>[A-Z][a-z]?)"
_RANGE = r"(?P<mass>\d{2,3}:\d{2,3})"
_SFX = r"(?P<sfx>Di|Dd)?"
_SEP = r"[_\- ]"
# (regex, convention label with {sfx} for the Di/Dd suffix); tried in order, first match wins
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rx), label)
    for rx, label in (
        (rf"^{_METAL}{_SFX}$", "Pr141{sfx}"),
        (rf"^{_MASS_METAL}{_SFX}$", "141Pr{sfx}"),
        (rf"^(?P<ag>.*?)\({_METAL}\){_SFX}$", "CD3(Pr141){sfx}"),
        (rf"^(?P<ag>.*?)\({_MASS_METAL}\){_SFX}$", "CD3(141Pr){sfx}"),
        (rf"^(?P<ag>.*?)\({_RANGE}\){_SFX}$", "CD3(110:114){sfx}"),
        (rf"^{_MASS_METAL}{_SEP}+(?P<ag>.+)$", "141Pr_CD3"),
        (rf"^{_METAL}{_SFX}{_SEP}+(?P<ag>.+)$", "Pr141{sfx}_CD3"),
        (rf"^(?P<ag>.+?){_SEP}+{_METAL}{_SFX}$", "CD3_Pr141{sfx}"),
        (rf"^(?P<ag>.+?){_SEP}+{_MASS_METAL}{_SFX}$", "CD3_141Pr{sfx}"),
    )
)


@dataclass(frozen=True)
class Channel:
    """One channel name read into its parts.

    Attributes
    ----------
    mass
        The mass as written (``"141"``, or a range ``"110:114"``); ``""`` when the name
        carries no metal (``Time``, ``CD3``).
    element
        The element symbol (``"Pr"``); ``""`` for a mass range or no metal.
    antigen
        The antigen part of the name (``""`` when absent).
    convention
        The naming convention, shown as an example (``"141Pr_CD3"``); ``""`` without a metal.
    """

    mass: str
    element: str
    antigen: str
    convention: str

    @property
    def metal(self) -> str:
        """``Pr141``, the mass range as written, or ``""``."""
        return f"{self.element}{self.mass}" if self.element else self.mass


def _element_ok(element: str, mass: str) -> bool:
    weight = _ATOMIC_WEIGHT.get(element)
    return weight is not None and abs(int(mass) - weight) <= 8


def parse_channel(name: str) -> Channel:
    """Read a channel name (``$PnN``, ``$PnS`` or a panel's ``fcs_colname``) into its parts.

    Parameters
    ----------
    name
        Any of ``Pr141Di``, ``141Pr``, ``Pr141``, ``141Pr_CD3``, ``CD3_Pr141``,
        ``CD3(Pr141)Di``, ``CD3(141Pr)``, ``CD3(110:114)Dd``, ``(Pr141)Dd``, ``209Bi_CD11b``,
        ``CD45_Y89``; anything else is read as an antigen (or a name such as ``Time``).

    Returns
    -------
    The :class:`Channel`; ``mass`` and ``element`` are empty when no metal was recognised.

    Examples
    --------
    >>> parse_channel("CD3(141Pr)").metal, parse_channel("209Bi_CD11b").antigen
    ('Pr141', 'CD11b')
    """
    text = name.strip()
    for pattern, label in _PATTERNS:
        m = pattern.match(text)
        if m is None:
            continue
        groups = m.groupdict()
        element = groups.get("el") or ""
        mass = groups["mass"]
        if element and not _element_ok(element, mass):
            continue
        antigen = (groups.get("ag") or "").strip(" _-")
        label = label.format(sfx=groups.get("sfx") or "")
        if label.startswith("CD3(") and not antigen:
            label = label[3:]
        return Channel(mass, element, antigen, label)
    return Channel("", "", text, "")


def metal_columns(names: Sequence[str], *, channels: Sequence[str] | None = None) -> dict[str, int]:
    """Metal (``Nd144``) → position of every channel named by a metal.

    Parameters
    ----------
    names
        The channels' names (var names).
    channels
        Their ``$PnN`` (``var["channel"]``), read first; ``None``: the names only.

    Returns
    -------
    The mapping in channel order; channels without a metal (``Time``, ``CD3(110:114)Dd``, a
    mass range) are left out.

    Raises
    ------
    ItmeInputError
        Two channels carry the same metal.
    """
    names = [str(n) for n in names]
    channels = names if channels is None else [str(c) for c in channels]
    out: dict[str, int] = {}
    for i, (chan, name) in enumerate(zip(channels, names, strict=True)):
        parsed = parse_channel(chan)
        if not parsed.element:
            parsed = parse_channel(name)
        if not parsed.element:
            continue
        if parsed.metal in out:
            raise ItmeInputError(
                where="var['channel']",
                expected="each metal on one channel",
                found=f"{parsed.metal} on {names[out[parsed.metal]]!r} and {name!r}",
            )
        out[parsed.metal] = i
    return out


def normalise_antigen(name: str) -> str:
    """An antigen name compared ignoring case, spaces, ``-``, ``_`` and ``.``.

    Parameters
    ----------
    name
        An antigen.

    Returns
    -------
    The lower-case name without separators.
    """
    return re.sub(r"[\s\-_.]", "", name).lower()


def alias_table(extra: Mapping[str, list[str] | tuple[str, ...]] | None = None) -> dict[str, str]:
    """Normalised antigen name → normalised canonical name, built-in aliases plus ``extra``.

    Parameters
    ----------
    extra
        More aliases: canonical name → other names of the same marker.

    Returns
    -------
    The lookup used by :func:`match_panel`.
    """
    table: dict[str, str] = {}
    merged: dict[str, list[str]] = {k: list(v) for k, v in ANTIGEN_ALIASES.items()}
    for key, names in (extra or {}).items():
        merged.setdefault(key, []).extend(names)
    for canonical, names in merged.items():
        target = normalise_antigen(canonical)
        for name in (canonical, *names):
            table[normalise_antigen(name)] = target
    return table


def _antigen_key(name: str, aliases: Mapping[str, str]) -> str:
    key = normalise_antigen(name)
    return aliases.get(key, key)


def file_channels(channels: pd.DataFrame) -> pd.DataFrame:
    """The parts of every channel of a file, from ``$PnN`` and ``$PnS`` together.

    The metal is taken from ``$PnN`` (or from ``$PnS`` when ``$PnN`` carries none); the
    antigen from ``$PnS`` (its antigen part when it names a metal too, e.g. ``209Bi_CD11b``),
    else from ``$PnN`` (``CD45_Y89``).

    Parameters
    ----------
    channels
        DataFrame with columns ``PnN`` and ``PnS`` (``FcsFile.channels``).

    Returns
    -------
    DataFrame (one row per channel, in file order) with ``PnN``, ``PnS``, ``metal``,
    ``antigen`` and ``convention`` (of ``$PnN``; of ``$PnS`` when only it names the metal).
    """
    rows = []
    for pnn, pns in zip(channels["PnN"], channels["PnS"], strict=True):
        n, s = parse_channel(str(pnn)), parse_channel(str(pns)) if pns else None
        metal, convention = n.metal, n.convention
        if not metal and s is not None and s.metal:
            metal, convention = s.metal, s.convention
        if s is not None and (s.antigen or s.metal):
            antigen = s.antigen if s.metal else str(pns)
        else:
            antigen = n.antigen if n.metal else ""
        rows.append(
            {"PnN": pnn, "PnS": pns, "metal": metal, "antigen": antigen, "convention": convention}
        )
    return pd.DataFrame(rows, columns=["PnN", "PnS", "metal", "antigen", "convention"])


@dataclass
class PanelMatch:
    """Where each panel row was found in one file."""

    columns: list[int | None]
    how: list[str]  # "$PnN", "$PnS", "metal", "antigen" or "" (absent)
    problems: list[str]
    conventions: list[str]  # the conventions of the file's channels that were matched by metal

    @property
    def matched_by(self) -> str:
        """The ways rows were matched, e.g. ``$PnN+metal`` (``-`` when none)."""
        return "+".join(sorted({h for h in self.how if h})) or "-"


def match_panel(
    channels: pd.DataFrame,
    panel_names: list[str],
    *,
    file: str,
    aliases: Mapping[str, str] | None = None,
) -> PanelMatch:
    """Find each panel channel in a file: by ``$PnN``, ``$PnS``, metal, then antigen.

    Parameters
    ----------
    channels
        The file's ``PnN`` and ``PnS`` (``FcsFile.channels``).
    panel_names
        The panel's ``fcs_colname`` values, in any convention (or a bare metal or antigen).
    file
        The file's name, for messages.
    aliases
        From :func:`alias_table` (default: the built-in aliases).

    Returns
    -------
    PanelMatch: the file column of each panel row (``None`` when absent), how it was found,
    the ambiguities (two channels of one metal, an antigen on two channels; both named), and
    the conventions of the channels matched by metal.
    """
    aliases = alias_table() if aliases is None else aliases
    parts = file_channels(channels)
    pnn = {name: i for i, name in enumerate(parts["PnN"])}
    pns_counts = parts["PnS"].value_counts()
    pns = {name: i for i, name in enumerate(parts["PnS"]) if name and pns_counts[name] == 1}
    by_metal: dict[str, list[int]] = {}
    by_antigen: dict[str, list[int]] = {}
    for i, row in parts.iterrows():
        if row["metal"]:
            by_metal.setdefault(row["metal"], []).append(int(i))
        if row["antigen"]:
            by_antigen.setdefault(_antigen_key(row["antigen"], aliases), []).append(int(i))
    columns: list[int | None] = []
    how: list[str] = []
    problems: list[str] = []
    conventions: list[str] = []

    def described(idx: list[int]) -> str:
        return " and ".join(
            f"{parts.at[i, 'PnN']}"
            + (f" ($PnS {parts.at[i, 'PnS']})" if parts.at[i, "PnS"] else "")
            for i in idx
        )

    for name in panel_names:
        if name in pnn:
            columns.append(pnn[name])
            how.append("$PnN")
            continue
        if name in pns:
            columns.append(pns[name])
            how.append("$PnS")
            continue
        wanted = parse_channel(name)
        if wanted.metal:
            hits, kind = by_metal.get(wanted.metal, []), "metal"
        else:
            hits, kind = by_antigen.get(_antigen_key(wanted.antigen, aliases), []), "antigen"
        if len(hits) == 1:
            columns.append(hits[0])
            how.append(kind)
            if kind == "metal":
                conventions.append(str(parts.at[hits[0], "convention"]))
        else:
            columns.append(None)
            how.append("")
            if len(hits) > 1:
                what = f"metal {wanted.metal}" if kind == "metal" else f"antigen {wanted.antigen}"
                problems.append(
                    f"{file}: panel channel {name} is ambiguous: {what} is on channels "
                    f"{described(hits)}"
                )
    return PanelMatch(columns, how, problems, conventions)
