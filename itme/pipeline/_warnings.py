"""Every warning of a run, by stage: recorded as it is shown, kept in the stage's record.

The terminal shows each distinct warning once (the CLI's ``showwarning``); the run keeps them
all in ``tables/warnings.csv`` (:func:`warnings_table`): stage, warning class, message and how
many times it was shown. A warning about many ids (an :class:`~itme.errors.ItmeWarning` with
``items``: samples, patients, features excluded) names a few in its message, which says where
the others are; every id is a row of ``tables/warning_items.csv`` (:func:`items_table`).
Each stage's warnings are recorded while it runs (:func:`record_warnings`) and saved in its
state record, so a stage skipped on resume still contributes the warnings of the run that
made its outputs (docs/running.md, "Warnings").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from itme._outputs import table
from itme.errors import PREVIEW

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "ITEMS",
    "ITEM_COLUMNS",
    "OUTPUT",
    "items_table",
    "record_warnings",
    "warnings_table",
]

#: columns of ``tables/warnings.csv``
COLUMNS = ["stage", "warning", "message", "count"]
#: the table's declaration: written by the runner at the end of every run, not by a stage
OUTPUT = table(
    "warnings",
    "provenance",
    "every warning the run's stages showed: stage, warning class, message, times shown",
)
#: columns of ``tables/warning_items.csv``
ITEM_COLUMNS = ["stage", "warning", "message", "item"]
#: the table of every id a warning is about (its message names the first few)
ITEMS = table(
    "warning_items",
    "provenance",
    "every id (sample, patient, feature) a warning is about, one per row: stage, warning "
    "class, message (as in warnings.csv), item",
)


def _text(message: Warning | str) -> tuple[str, list[str]]:
    """The text a warning is shown and recorded with, and the ids it carries.

    A warning naming fewer ids than it carries says where the full list is.
    """
    text = str(message).strip()
    items = list(getattr(message, "items", ()) or ())
    if len(items) > PREVIEW:
        text = f"{text} (all {len(items)} in tables/{ITEMS.name}.csv)"
    return text, items


@contextlib.contextmanager
def record_warnings() -> Iterator[list[dict[str, Any]]]:
    """Record every warning shown inside the block, and still show it.

    Wraps ``warnings.showwarning``, so the warning filters in force decide as before (a
    warning ignored is not recorded, one turned into an error is raised), and the warning
    reaches whoever shows it (the CLI's one line per fact, or Python's default). The filters'
    "shown once per code line" memory is reset on entry, so a stage records the same warnings
    whatever ran before it in the process.

    A warning carrying ids (:class:`~itme.errors.ItmeWarning` ``items``) beyond those its
    message names is shown and recorded with a pointer to ``tables/warning_items.csv``.

    Yields
    ------
    list of dict
        Filled as warnings are shown: one ``{"warning", "message", "count"}`` per distinct
        (class, message), in the order first shown, plus ``"items"`` (list of str) for a
        warning that carries ids.
    """
    rows: list[dict[str, Any]] = []
    index: dict[tuple[str, str], int] = {}
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text, items = _text(message)
        key = (category.__name__, text)
        if key in index:
            rows[index[key]]["count"] += 1
        else:
            index[key] = len(rows)
            rows.append({"warning": key[0], "message": text, "count": 1})
            if items:
                rows[-1]["items"] = items
        shown = message if text == str(message).strip() else text
        previous(shown, category, filename, lineno, file, line)

    # entering and leaving catch_warnings resets the filters' memory of what was shown, and
    # nothing else: filters a stage adds (e.g. a library on its first import) stay
    with warnings.catch_warnings():
        pass
    warnings.showwarning = show
    try:
        yield rows
    finally:
        warnings.showwarning = previous


def warnings_table(stages: Iterable[tuple[str, list[dict[str, Any]]]]) -> pd.DataFrame:
    """The ``warnings`` table of a run: one row per stage and distinct warning.

    Parameters
    ----------
    stages
        ``(stage name, recorded warnings)`` in run order (as :func:`record_warnings` yields).

    Returns
    -------
    pandas.DataFrame
        Columns ``stage, warning, message, count``, stages in run order and each stage's
        warnings in the order first shown.
    """
    import pandas as pd

    rows = [
        (name, str(w["warning"]), str(w["message"]), int(w["count"]))
        for name, recorded in stages
        for w in recorded
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def items_table(stages: Iterable[tuple[str, list[dict[str, Any]]]]) -> pd.DataFrame:
    """The ``warning_items`` table of a run: one row per id a recorded warning carries.

    Parameters
    ----------
    stages
        ``(stage name, recorded warnings)`` in run order (as :func:`record_warnings` yields).

    Returns
    -------
    pandas.DataFrame
        Columns ``stage, warning, message, item`` (``message`` as in :func:`warnings_table`),
        in the order of the warnings, each warning's ids in its order.
    """
    import pandas as pd

    rows = [
        (name, str(w["warning"]), str(w["message"]), str(item))
        for name, recorded in stages
        for w in recorded
        for item in w.get("items", ())
    ]
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)
