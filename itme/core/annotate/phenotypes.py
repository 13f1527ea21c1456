"""Phenotype tables: hierarchical marker rules (lineage → subset) read from YAML.

A phenotype table names immune subsets by the state of their markers on the arcsinh scale:
``hi`` (above the marker's threshold), ``lo`` (below it) or ``any`` (not used). Each
*lineage* (CD4 T cells, NK cells, ...) has rules shared by its *subsets*; a subset's rules
are its lineage's rules plus its own. The same table defines *derived features* for the
per-sample abundance table (total T cells, CD4:CD8 ratio, naive CD4 compartment, ...), so
these are data, not code. The file format is documented in ``docs/clustering.md`` and by
the shipped table ``itme/data/phenotypes/lymphoid_visram2021.yaml``.

This module parses and checks the table (:func:`itme.io.read_phenotypes` reads the files); scoring clusters against it lives in
:mod:`itme.core.annotate.naming`, simulating cells from it in :mod:`itme.datasets._cells`.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itme.errors import ItmeInputError, ItmeInputWarning

__all__ = [
    "DerivedFeature",
    "Lineage",
    "PhenotypeTable",
    "Subset",
    "parse_phenotypes",
]

STATES = ("hi", "lo", "any")
_TOP_KEYS = ("name", "description", "reference", "panel", "thresholds", "lineages", "derived")
_LINEAGE_KEYS = ("label", "description", "markers", "subsets", "other")
_SUBSET_KEYS = ("description", "markers", "compartment", "source")
_DERIVED_KEYS = ("description", "sum", "of", "ratio")


@dataclass(frozen=True)
class Subset:
    """One named subset: its own marker rules (the lineage's rules are added by the table)."""

    name: str
    lineage: str
    markers: dict[str, str]
    description: str = ""
    compartment: str = ""
    source: str = ""


@dataclass(frozen=True)
class Lineage:
    """A lineage: shared marker rules, its subsets, and the name for lineage-only matches."""

    name: str
    markers: dict[str, str]
    subsets: tuple[Subset, ...]
    label: str = ""
    description: str = ""
    other: str = ""


@dataclass(frozen=True)
class DerivedFeature:
    """A per-sample feature computed from subset counts.

    ``kind == "sum"``: the events of ``terms`` as % of the events of ``of`` (all events of
    the sample, i.e. CD45+ events, when ``of`` is empty). ``kind == "ratio"``: the events of
    ``terms[0]`` divided by the events of ``terms[1]``. Every term names a subset, a lineage
    (all its subsets) or an earlier derived ``sum``.
    """

    name: str
    kind: str
    terms: tuple[str, ...]
    of: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PhenotypeTable:
    """A validated phenotype table (see the module docstring)."""

    name: str
    lineages: tuple[Lineage, ...]
    thresholds: dict[str, float]
    derived: tuple[DerivedFeature, ...] = ()
    description: str = ""
    reference: str = ""
    panel: str = ""
    text: str = field(default="", repr=False)

    @property
    def subsets(self) -> tuple[Subset, ...]:
        """Every subset of every lineage, in file order."""
        return tuple(s for lin in self.lineages for s in lin.subsets)

    @property
    def subset_names(self) -> list[str]:
        """Every name a cluster can receive (subsets, then lineage ``other`` names)."""
        names = [s.name for s in self.subsets]
        return names + [lin.other for lin in self.lineages if lin.other]

    @property
    def markers(self) -> list[str]:
        """Every marker used by a rule or a given threshold, in first-use order."""
        seen: dict[str, None] = {}
        for lin in self.lineages:
            seen.update(dict.fromkeys(lin.markers))
            for sub in lin.subsets:
                seen.update(dict.fromkeys(sub.markers))
        seen.update(dict.fromkeys(self.thresholds))
        return list(seen)

    def lineage(self, name: str) -> Lineage:
        """The lineage called ``name``."""
        for lin in self.lineages:
            if lin.name == name:
                return lin
        raise KeyError(name)

    def lineage_of(self, subset_name: str) -> str:
        """Lineage name of a subset or of a lineage's ``other`` name ("" when unknown)."""
        for lin in self.lineages:
            if subset_name == lin.other or any(s.name == subset_name for s in lin.subsets):
                return lin.name
        return ""

    def rules(self, subset_name: str) -> dict[str, str]:
        """All rules of a subset (its lineage's rules, then its own; ``any`` dropped)."""
        for lin in self.lineages:
            if subset_name == lin.other:
                return {m: s for m, s in lin.markers.items() if s != "any"}
            for sub in lin.subsets:
                if sub.name == subset_name:
                    merged = {**lin.markers, **sub.markers}
                    return {m: s for m, s in merged.items() if s != "any"}
        raise KeyError(subset_name)

    def expand(self, term: str) -> list[str]:
        """The subset names a term stands for (a subset, a lineage, or a derived sum)."""
        for lin in self.lineages:
            if term == lin.name:
                names = [s.name for s in lin.subsets]
                return names + ([lin.other] if lin.other else [])
        if term in self.subset_names:
            return [term]
        for feat in self.derived:
            if feat.name == term and feat.kind == "sum":
                out: list[str] = []
                for t in feat.terms:
                    out.extend(n for n in self.expand(t) if n not in out)
                return out
        raise KeyError(term)


def _where(source: str, *parts: str) -> str:
    return " ".join([source, *[p for p in parts if p]])


def _check_keys(obj: Any, allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise ItmeInputError(
            where=where, expected="a mapping (key: value)", found=type(obj).__name__
        )
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = (
                f'Did you mean "{close[0]}"?' if close else f"Allowed keys: {', '.join(allowed)}."
            )
            raise ItmeInputError(
                where=where, expected=f"one of {', '.join(allowed)}", found=f'key "{key}"', fix=hint
            )


def _markers(obj: Any, where: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ItmeInputError(
            where=where, expected="a mapping marker: hi|lo|any", found=type(obj).__name__
        )
    out = {}
    for marker, state in obj.items():
        value = str(state).strip().lower() if state is not None else ""
        if value not in STATES:
            raise ItmeInputError(
                where=f"{where}, marker {marker}",
                expected="hi, lo or any",
                found=repr(state),
                fix="Write the state of the marker as hi, lo or any.",
            )
        out[str(marker)] = value
    return out


def _text(obj: Any) -> str:
    return "" if obj is None else str(obj).strip()


def _contradicts(a: dict[str, str], b: dict[str, str]) -> bool:
    return any(m in b and {a[m], b[m]} == {"hi", "lo"} for m in a)


def _check_separable(items: list[tuple[str, dict[str, str]]], what: str, source: str) -> None:
    """Warn when two rule sets share no hi/lo contradiction (one cluster could match both)."""
    for i, (name_a, rules_a) in enumerate(items):
        for name_b, rules_b in items[i + 1 :]:
            if not _contradicts(rules_a, rules_b):
                warnings.warn(
                    f"{source}: {what} {name_a!r} and {name_b!r} have no marker that is hi in "
                    "one and lo in the other, so a cluster can match both; the higher match "
                    "score decides. Add a distinguishing marker to make the table unambiguous.",
                    ItmeInputWarning,
                    stacklevel=3,
                )


def _parse_derived(obj: Any, known: set[str], source: str) -> tuple[DerivedFeature, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, dict):
        raise ItmeInputError(
            where=f"{source} derived",
            expected="a mapping name: {sum: [...]}",
            found=type(obj).__name__,
        )
    out = []
    sums = set()
    for name, spec in obj.items():
        where = f"{source} derived {name}"
        _check_keys(spec, _DERIVED_KEYS, where)
        if str(name) in known or str(name) in sums:
            raise ItmeInputError(
                where=where,
                expected="a name not used by a lineage, subset or earlier derived feature",
                found=f'"{name}"',
            )
        if ("sum" in spec) == ("ratio" in spec):
            raise ItmeInputError(
                where=where, expected="exactly one of sum or ratio", found=", ".join(spec)
            )
        kind = "sum" if "sum" in spec else "ratio"
        terms = spec[kind]
        terms = [terms] if isinstance(terms, str) else list(terms or [])
        of = spec.get("of")
        of = [] if of is None else ([of] if isinstance(of, str) else list(of))
        if kind == "ratio" and (len(terms) != 2 or of):
            raise ItmeInputError(
                where=where, expected="ratio: [numerator, denominator] without of", found=terms
            )
        if not terms:
            raise ItmeInputError(where=where, expected="at least one term", found="none")
        for term in [*terms, *of]:
            if str(term) not in known and str(term) not in sums:
                close = difflib.get_close_matches(str(term), sorted(known | sums), n=1)
                raise ItmeInputError(
                    where=where,
                    expected="a subset, lineage or earlier derived sum",
                    found=f'"{term}"',
                    fix=f'Did you mean "{close[0]}"?' if close else "Check the spelling.",
                )
        out.append(
            DerivedFeature(
                name=str(name),
                kind=kind,
                terms=tuple(map(str, terms)),
                of=tuple(map(str, of)),
                description=_text(spec.get("description")),
            )
        )
        if kind == "sum":
            sums.add(str(name))
    return tuple(out)


def parse_phenotypes(text: str, *, source: str = "phenotype table") -> PhenotypeTable:
    """Parse and validate the YAML text of a phenotype table.

    Parameters
    ----------
    text
        YAML text (format in ``docs/clustering.md``).
    source
        Name used in error messages (usually the file path).

    Returns
    -------
    PhenotypeTable
        The validated table; ``text`` keeps the YAML so it can be stored with results.
    """
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last)."""

        def construct_mapping(self, node, deep=False):  # type: ignore[override]
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ItmeInputError(
                        where=f"{source} line {key_node.start_mark.line + 1}",
                        expected="names unique within a mapping",
                        found=f'"{key}" twice',
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ItmeInputError(
            where=source, expected="valid YAML", found=str(err).splitlines()[0]
        ) from err
    _check_keys(doc, _TOP_KEYS, source)
    if not doc.get("lineages"):
        raise ItmeInputError(where=source, expected="a non-empty 'lineages' mapping", found="none")
    thresholds: dict[str, float] = {}
    raw_thr = doc.get("thresholds") or {}
    if not isinstance(raw_thr, dict):
        raise ItmeInputError(
            where=f"{source} thresholds", expected="a mapping marker: number|auto", found=raw_thr
        )
    for marker, value in raw_thr.items():
        if isinstance(value, str) and value.strip().lower() == "auto":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ItmeInputError(
                where=f"{source} thresholds, marker {marker}",
                expected="a number on the arcsinh scale or auto",
                found=repr(value),
            )
        thresholds[str(marker)] = float(value)

    lineages = []
    names: set[str] = set()

    def claim(name: str, where: str) -> str:
        if not name:
            raise ItmeInputError(where=where, expected="a non-empty name", found="empty")
        if name in names or name == "unassigned":
            raise ItmeInputError(
                where=where,
                expected="names unique across lineages and subsets (and not 'unassigned')",
                found=f'"{name}" twice' if name in names else '"unassigned"',
            )
        names.add(name)
        return name

    if not isinstance(doc["lineages"], dict):
        raise ItmeInputError(
            where=f"{source} lineages",
            expected="a mapping name: {...}",
            found=type(doc["lineages"]).__name__,
        )
    for lin_name, spec in doc["lineages"].items():
        where = _where(source, f"lineage {lin_name}")
        _check_keys(spec, _LINEAGE_KEYS, where)
        claim(str(lin_name), where)
        lin_markers = _markers(spec.get("markers"), where)
        subsets = []
        raw_subsets = spec.get("subsets") or {}
        if not isinstance(raw_subsets, dict):
            raise ItmeInputError(
                where=f"{where} subsets",
                expected="a mapping name: {...}",
                found=type(raw_subsets).__name__,
            )
        for sub_name, sub_spec in raw_subsets.items():
            sub_where = f"{where}, subset {sub_name}"
            sub_spec = sub_spec or {}
            _check_keys(sub_spec, _SUBSET_KEYS, sub_where)
            subsets.append(
                Subset(
                    name=claim(str(sub_name), sub_where),
                    lineage=str(lin_name),
                    markers=_markers(sub_spec.get("markers"), sub_where),
                    description=_text(sub_spec.get("description")),
                    compartment=_text(sub_spec.get("compartment")),
                    source=_text(sub_spec.get("source")),
                )
            )
        other = _text(spec.get("other"))
        if other:
            claim(other, f"{where}, other")
        if not subsets and not other:
            raise ItmeInputError(
                where=where, expected="at least one subset or an 'other' name", found="neither"
            )
        lineages.append(
            Lineage(
                name=str(lin_name),
                markers=lin_markers,
                subsets=tuple(subsets),
                label=_text(spec.get("label")),
                description=_text(spec.get("description")),
                other=other,
            )
        )
        _check_separable([(s.name, s.markers) for s in subsets], "subsets", where)
    _check_separable([(lin.name, lin.markers) for lin in lineages], "lineages", source)

    derived = _parse_derived(doc.get("derived"), names, source)
    return PhenotypeTable(
        name=_text(doc.get("name")) or Path(source).stem,
        lineages=tuple(lineages),
        thresholds=thresholds,
        derived=derived,
        description=_text(doc.get("description")),
        reference=_text(doc.get("reference")),
        panel=_text(doc.get("panel")),
        text=text,
    )
