"""Sample sheets and panels: validation, and the helpers the one-row-per-patient tables share.

The files are read by :mod:`._delimited` (any common encoding and separator). Validation
collects every problem in a table before raising, so a user fixes a sample sheet in one go.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import pandas as pd

from itme._files import name_problem
from itme.errors import ItmeInputError
from itme.io._delimited import MISSING_TOKENS, line_list, read_delimited

__all__ = ["read_panel", "read_samples"]

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("file_name", "sample_id", "patient_id")
PANEL_COLUMNS = ("fcs_colname", "antigen", "marker_class")
MARKER_CLASSES = ("type", "state", "qc", "none")

TableSource = str | PathLike[str] | pd.DataFrame


def read_text_table(source: TableSource, *, name: str) -> tuple[pd.DataFrame, Path | None]:
    """A table as stripped strings indexed by file line (header = line 1), and its folder.

    Parameters
    ----------
    source
        A path (any common encoding and separator, see :func:`read_delimited`) or a DataFrame
        (its rows are numbered as if the header were line 1).
    name
        How the table is named in messages (e.g. ``"sample sheet"``).

    Returns
    -------
    The table and the folder of the file (``None`` for a DataFrame).
    """
    if isinstance(source, pd.DataFrame):
        # missing values (NaN, None) become empty cells, as in a file, so they are reported
        table = source.astype(object).where(source.notna(), "").astype(str)
        table.columns = [str(c).strip() for c in table.columns]
        table = table.apply(lambda col: col.str.strip())
        table.index = pd.RangeIndex(2, len(table) + 2, name="line")
        return table, None
    table, _ = read_delimited(source, what=name)
    return table, Path(source).parent


def _require_columns(table: pd.DataFrame, required: Iterable[str], where: str, fix: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if not missing:
        return
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, list(table.columns), n=1, cutoff=0.5)
        if close:
            hints.append(f"{close[0]!r} → {col!r}?")
    hint = f". Closest columns: {'; '.join(hints)}" if hints else ""
    raise ItmeInputError(
        f"missing required column(s) {', '.join(missing)}",
        where=where,
        expected=f"columns {', '.join(required)}",
        found=list(table.columns),
        fix=fix + hint,
    )


def canonical_columns(df: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Rename columns that match ``names`` but for case (``Patient_ID`` → ``patient_id``).

    Parameters
    ----------
    df
        The table.
    names
        Column names in their canonical spelling.

    Returns
    -------
    The table, with those columns renamed (a column already spelled right is kept).
    """
    lower = {c.lower(): c for c in df.columns}
    renames = {lower[n]: n for n in names if n not in df.columns and n in lower}
    return df.rename(columns=renames) if renames else df


def check_patient_ids(df: pd.DataFrame, where: str, *, fix: str) -> None:
    """Raise unless column ``patient_id`` of a one-row-per-patient table is filled and unique.

    Parameters
    ----------
    df
        Table from :func:`read_delimited` (index = file line numbers).
    where
        The file, for messages.
    fix
        What to do about duplicated ids.

    Raises
    ------
    ItmeInputError
        An empty or missing-value id (naming its lines), or a duplicated id (naming each
        id and its lines).
    """
    ids = df["patient_id"]
    blank = df.index[ids.str.lower().isin(MISSING_TOKENS)]
    if len(blank):
        raise ItmeInputError(
            where=f"{where} line(s) {line_list(blank)}, column patient_id",
            expected="a patient id",
            found="an empty value",
        )
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        pairs = [f"{p} (lines {line_list(dup.index[dup == p])})" for p in dict.fromkeys(dup)]
        raise ItmeInputError(
            where=f"{where}, column patient_id",
            expected="one row per patient",
            found=f"duplicated {'; '.join(pairs)}",
            fix=fix,
        )


def _duplicates(table: pd.DataFrame, column: str) -> list[str]:
    dup = table[column].duplicated(keep=False) & (table[column] != "")
    out = []
    for value, rows in table.loc[dup].groupby(column).groups.items():
        out.append(f"{value!r} on lines {line_list(rows, limit=len(rows))}")
    return out


def read_samples(samples: TableSource) -> tuple[pd.DataFrame, Path | None]:
    """Read and validate a sample sheet (one row per FCS file).

    Required columns are ``file_name``, ``sample_id`` and ``patient_id``; every other column
    (condition, batch, timepoint, ...) is kept. CATALYST metadata files load unchanged.

    Parameters
    ----------
    samples
        Path of samples.csv (any common encoding/separator) or a DataFrame.

    Returns
    -------
    The sheet as strings, and the folder ``file_name`` is relative to (``None`` for a
    DataFrame).

    Raises
    ------
    ItmeInputError
        Listing every problem at once: missing columns, empty required values (a missing-value
        token such as ``NA`` or ``NaN`` counts as empty), duplicated ``sample_id`` or
        ``file_name`` (with their lines), an empty ``timepoint`` or ``visit`` (when the
        column exists), a ``sample_id`` or ``patient_id`` that is not a safe
        file name (path separators, ``..``, control characters, characters Windows or macOS
        refuse; :func:`itme._files.name_problem`), naming its line.
    """
    where = str(samples) if not isinstance(samples, pd.DataFrame) else "samples table"
    table, folder = read_text_table(samples, name="sample sheet")
    _require_columns(
        table,
        SAMPLE_COLUMNS,
        where,
        "Rename the columns or add them (CATALYST metadata already has them; a sheet with "
        "'patient' needs it renamed to 'patient_id')",
    )
    problems = []
    for col in SAMPLE_COLUMNS:
        empty = table.index[table[col].str.lower().isin(MISSING_TOKENS)]
        if len(empty):
            shown = sorted({v for v in table.loc[empty, col] if v})
            token = f" or a missing-value token ({', '.join(shown)})" if shown else ""
            problems.append(
                f"column {col} is empty{token} on lines {line_list(empty, limit=len(empty))}"
            )
    for col in ("timepoint", "visit"):  # the unit of analysis: a blank would merge samples
        if col in table.columns:
            empty = table.index[table[col].str.lower().isin(MISSING_TOKENS)]
            if len(empty):
                problems.append(
                    f"column {col} is empty on lines {line_list(empty, limit=len(empty))} "
                    "(a time point is needed for every file once the column exists)"
                )
    for col in ("sample_id", "patient_id"):  # they become file names: must be safe ones
        for line, value in table[col].items():
            reason = name_problem(value) if value else None
            if reason is not None:
                problems.append(
                    f"line {int(line)}, column {col}: {value!r} {reason}; ids become file "
                    "names, use letters, digits, '-', '_' and '.'"
                )
    for col in ("sample_id", "file_name"):
        dups = _duplicates(table, col)
        if dups:
            problems.append(f"duplicate {col}: {'; '.join(dups)}")
    if len(table) == 0:
        problems.append("no rows")
    if problems:
        raise ItmeInputError(
            "; ".join(problems),
            where=where,
            fix="Each row is one FCS file with a unique sample_id; fix the rows listed",
        )
    return table, folder


def read_panel(panel: TableSource) -> pd.DataFrame:
    """Read and validate a panel (one row per channel).

    Columns ``fcs_colname`` (FCS ``$PnN``, or ``$PnS`` for files that name metals there),
    ``antigen`` and ``marker_class`` (``type``, ``state``, ``qc`` or ``none``; case is
    ignored). CATALYST panels load unchanged.

    Parameters
    ----------
    panel
        Path of panel.csv or a DataFrame.

    Returns
    -------
    DataFrame with the three columns, ``marker_class`` lower-cased.

    Raises
    ------
    ItmeInputError
        Missing columns, an unknown ``marker_class``, an empty or duplicated ``fcs_colname``
        (every problem listed with its line).
    """
    where = str(panel) if not isinstance(panel, pd.DataFrame) else "panel table"
    table, _ = read_text_table(panel, name="panel")
    _require_columns(
        table,
        PANEL_COLUMNS,
        where,
        "A panel has one row per channel: fcs_colname, antigen, marker_class",
    )
    table = table.loc[
        :, [*PANEL_COLUMNS, *[c for c in table.columns if c not in PANEL_COLUMNS]]
    ].copy()
    table["marker_class"] = table["marker_class"].str.lower()
    problems = []
    bad = table.index[~table["marker_class"].isin(MARKER_CLASSES)]
    for i in bad:
        problems.append(
            f"line {int(i)}, column marker_class: {table.at[i, 'marker_class']!r} is not one of "
            f"{', '.join(MARKER_CLASSES)}"
        )
    for i in table.index[table["fcs_colname"] == ""]:
        problems.append(f"line {int(i)}: fcs_colname is empty")
    # with a batch column (an antigen on another metal in some runs) a channel may appear
    # once per batch
    keyed = (
        table.assign(fcs_colname=table["fcs_colname"] + "\t" + table["batch"])
        if "batch" in table.columns
        else table
    )
    dups = [d.replace("\t", " in batch ") for d in _duplicates(keyed, "fcs_colname")]
    if dups:
        problems.append(f"duplicate fcs_colname: {'; '.join(dups)}")
    if len(table) == 0:
        problems.append("no rows")
    if problems:
        raise ItmeInputError("; ".join(problems), where=where, fix="Correct the rows listed")
    return table
