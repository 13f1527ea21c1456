"""What a stage writes: its tables and figures, each with the report section that shows it.

A contract between the pipeline and the report. Each stage of :mod:`itme.pipeline._stages`
declares its outputs once, as :class:`Output` records; stages write them through :meth:`itme.pipeline._runner.Context.table` and
:meth:`~itme.pipeline._runner.Context.figure`, which refuse a name the stage did not declare,
and the report (:mod:`itme.report`) places every table and figure by the same declarations.
Adding a table is therefore one line in its stage's declaration and one write call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from itme._files import safe_name

__all__ = ["Output", "find_output"]


@dataclass(frozen=True)
class Output:
    """One table (``tables/<name>.csv``) or figure (``figures/<name>.png`` and ``.svg``).

    ``variants=True``: the stage writes ``<name>_<variant>`` files (one per sample, endpoint,
    contrast, ...), and the plain ``<name>`` too when it writes a variant ``None``.
    """

    name: str
    kind: Literal["table", "figure"]
    section: str
    variants: bool = False
    description: str = ""

    def stem(self, variant: str | None = None) -> str:
        """File stem of this output, or of one of its variants (made a safe file name)."""
        return self.name if variant is None else f"{self.name}_{safe_name(variant)}"

    def matches(self, stem: str) -> bool:
        """True when ``stem`` is this output or one of its variants."""
        return stem == self.name or (self.variants and stem.startswith(f"{self.name}_"))


def table(name: str, section: str, description: str = "", *, variants: bool = False) -> Output:
    """A table output (``tables/<name>.csv``)."""
    return Output(name, "table", section, variants, description)


def figure(name: str, section: str, description: str = "", *, variants: bool = False) -> Output:
    """A figure output (``figures/<name>.png`` and ``.svg``)."""
    return Output(name, "figure", section, variants, description)


def find_output(
    outputs: Iterable[tuple[str, Output]], kind: str, stem: str
) -> tuple[str, Output] | None:
    """The ``(stage, output)`` declaring a file stem, preferring an exact name over a variant.

    Parameters
    ----------
    outputs
        ``(stage name, output)`` pairs, e.g. :data:`itme.pipeline.OUTPUTS`.
    kind
        ``"table"`` or ``"figure"``.
    stem
        File name without its suffix.

    Returns
    -------
    The declaring pair, or ``None`` when no stage declares it.
    """
    candidates = [(s, o) for s, o in outputs if o.kind == kind and o.matches(stem)]
    exact = [c for c in candidates if c[1].name == stem]
    if exact:
        return exact[0]
    # the longest declared name wins: "rna_gsea_x" belongs to rna_gsea, not to rna
    return max(candidates, key=lambda c: len(c[1].name), default=None)
