"""Errors and warnings raised by itme.

Every error says what was expected, what was found, where (file, row, column or
parameter) and what to do next. All errors derive from :class:`ItmeError`, which is a
:class:`ValueError`, so ``except ValueError`` in user code keeps working.

Warnings derive from :class:`ItmeWarning` so users can filter all of them at once
(``warnings.filterwarnings("ignore", category=itme.errors.ItmeWarning)``) or one kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

__all__ = [
    "ItmeDependencyError",
    "ItmeError",
    "ItmeExclusionWarning",
    "ItmeInputError",
    "ItmeInputWarning",
    "ItmeParameterError",
    "ItmeRunError",
    "ItmeStateError",
    "ItmeStatisticsWarning",
    "ItmeWarning",
]


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        return ", ".join(str(v) for v in value)
    return repr(value)


class ItmeError(ValueError):
    """Base class of every error itme raises on purpose."""


class ItmeInputError(ItmeError):
    """An input file or table is missing or does not follow the input contract.

    Parameters
    ----------
    message
        Free text; used as is when the structured fields are not given.
    where
        The place: ``"samples.csv row 4, column sample_id"``, a file path, ...
    expected, found
        What the contract asks for and what the input holds.
    fix
        What the user should do about it.
    problems
        When one error reports several problems (a config, a sample sheet), one line each.

    Examples
    --------
    >>> str(ItmeInputError(where="panel.csv row 12, column marker_class",
    ...     expected="one of type, state, qc, none", found='"lineage"',
    ...     fix="Correct the value or remove the row."))
    'panel.csv row 12, column marker_class: expected one of type, state, qc, none, found "lineage". Correct the value or remove the row.'
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        where: str | None = None,
        expected: Any = None,
        found: Any = None,
        fix: str | None = None,
        problems: list[str] | None = None,
    ) -> None:
        self.where, self.expected, self.found, self.fix = where, expected, found, fix
        self.problems = list(problems) if problems else []
        parts = []
        if message:
            parts.append(message)
        if expected is not None or found is not None:
            detail = ", ".join(
                f"{label} {_fmt(v)}"
                for label, v in (("expected", expected), ("found", found))
                if v is not None
            )
            parts.append(detail)
        text = ": ".join(parts) if parts else "invalid input"
        if where:
            text = f"{where}: {text}"
        if fix:
            text = f"{text}. {fix}"
        super().__init__(text)


class ItmeParameterError(ItmeError):
    """A function argument has a value outside what the function accepts.

    Always has the same shape: the parameter name, what is allowed, what was given.
    """

    def __init__(self, name: str, allowed: Any, got: Any, fix: str | None = None) -> None:
        self.name, self.allowed, self.got = name, allowed, got
        text = f"parameter {name!r}: expected {_fmt(allowed)}, got {got!r}"
        if fix:
            text = f"{text}. {fix}"
        super().__init__(text)


class ItmeStateError(ItmeError):
    """The AnnData is not in the state a function needs.

    For example ``pp.arcsinh`` applied twice, or ``tl.annotate`` before ``tl.flowsom``.
    """


class ItmeRunError(ItmeError):
    """A pipeline stage failed at run time (e.g. its output folder became read-only).

    ``stage`` and ``path`` name where; the message says what to do. The original exception
    is the ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        path: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.stage, self.path, self.fix = stage, path, fix
        text = message
        if path:
            text = f"{path}: {text}"
        if stage:
            text = f"stage {stage!r}: {text}"
        if fix:
            text = f"{text}. {fix}"
        super().__init__(text)


class ItmeDependencyError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'itme[{extra}]'"
        )


#: ids a warning's message names before "... and N more" (every id is in its ``items``)
PREVIEW = 5


def fmt_ids(ids: Iterable[Any], limit: int = 20) -> str:
    """``"a, b, c"`` (at most ``limit`` ids, then ``"... and N more"``)."""
    ids = [str(i) for i in ids]
    text = ", ".join(ids[:limit])
    if len(ids) > limit:
        text += f" ... and {len(ids) - limit} more"
    return text


class ItmeWarning(UserWarning):
    """Base class of every warning itme emits.

    A warning about many ids (samples, patients, genes excluded) names a few in its message
    and carries every one in ``items``: the pipeline writes them to the run's
    ``tables/warning_items.csv`` (docs/running.md, "Warnings"). Build it with :meth:`listing`.

    Parameters
    ----------
    message
        The text shown.
    items
        Every id the warning is about (kept as text), or none.
    """

    def __init__(self, message: str = "", items: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.items: tuple[str, ...] = tuple(str(i) for i in items)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its items (a warning sent back from a dask worker keeps them)."""
        return type(self), (str(self), self.items)

    @classmethod
    def listing(cls, text: str, items: Iterable[Any]) -> Self:
        """``f"{text}: a, b, c, d, e ... and N more"``, carrying every id in ``items``.

        Parameters
        ----------
        text
            The fact, with its count (``"4 of 300 sample(s) have no row in the clinical table"``).
        items
            Every id; the first :data:`PREVIEW` are named in the message.

        Returns
        -------
        ItmeWarning
            An instance of ``cls`` (pass it to :func:`warnings.warn`).
        """
        items = [str(i) for i in items]
        return cls(f"{text}: {fmt_ids(items, PREVIEW)}", items)


class ItmeInputWarning(ItmeWarning):
    """Input was accepted but something in it deserves attention (e.g. unpanelled channels)."""


class ItmeExclusionWarning(ItmeWarning):
    """Events, samples, patients or genes were excluded; the warning says how many and why."""


class ItmeStatisticsWarning(ItmeWarning):
    """A statistical method fell back or may be unreliable (small groups, chi-square fallback, no convergence)."""
