"""Sample sheets and panels: robust CSV reading and validation.

Tables from spreadsheets arrive in many encodings (UTF-8 with or without a BOM, Windows
code pages, UTF-16 from Excel's "Unicode text") and with `,`, `;` or tab separators; they
all just work. Validation collects every problem in a table before raising, so a user fixes
a sample sheet in one go.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import pandas as pd

from ..errors import ItmeInputError

__all__ = ["read_panel", "read_samples"]

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("file_name", "sample_id", "patient_id")
PANEL_COLUMNS = ("fcs_colname", "antigen", "marker_class")
MARKER_CLASSES = ("type", "state", "qc", "none")

TableSource = str | PathLike[str] | pd.DataFrame


def decode_text(raw: bytes, where: str) -> str:
    """Decode bytes of a text table: BOMs honoured, UTF-8 first, then Windows-1252/Latin-1."""
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if raw.startswith(bom):
            return raw.decode(codec)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for codec in ("cp1252", "latin-1"):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        logger.info("%s is not UTF-8; read it as %s", where, codec)
        return text
    raise ItmeInputError("cannot decode the file as text", where=where)  # pragma: no cover


def read_text_table(source: TableSource, *, name: str) -> tuple[pd.DataFrame, Path | None]:
    """Read a delimited table as strings (no NA guessing); return it and its folder.

    Parameters
    ----------
    source
        A path (CSV/TSV, any common encoding and separator) or a DataFrame.
    name
        How the table is named in messages (e.g. ``"samples.csv"``).
    """
    if isinstance(source, pd.DataFrame):
        table = source.copy()
        table.columns = [str(c).strip() for c in table.columns]
        return table.astype(str).apply(lambda col: col.str.strip()), None
    path = Path(source)
    if not path.is_file():
        raise ItmeInputError(
            f"{name} not found", where=str(path), fix="Check the path in the config or command"
        )
    text = decode_text(path.read_bytes(), str(path))
    if not text.strip():
        raise ItmeInputError(
            f"{name} is empty", where=str(path), expected="a header line and one row per entry"
        )
    first = text.splitlines()[0]
    try:
        sep = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter
    except csv.Error:
        sep = ","
    try:
        table = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ItmeInputError(
            f"{name} is not a valid delimited table ({exc})", where=str(path)
        ) from exc
    table.columns = [str(c).strip().lstrip("\ufeff") for c in table.columns]
    table = table.apply(lambda col: col.str.strip())
    # drop rows that are entirely empty (trailing lines from spreadsheets)
    empty = (table == "").all(axis=1)
    return table.loc[~empty].reset_index(drop=True), path.parent


def line_of(index: int) -> int:
    """File line of data row ``index`` (the header is line 1)."""
    return int(index) + 2


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


def _duplicates(table: pd.DataFrame, column: str) -> list[str]:
    dup = table[column].duplicated(keep=False) & (table[column] != "")
    out = []
    for value, rows in table.loc[dup].groupby(column).groups.items():
        out.append(f"{value!r} on lines {', '.join(str(line_of(i)) for i in rows)}")
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
        Listing every problem at once: missing columns, empty required values, duplicated
        ``sample_id`` or ``file_name`` (with their lines).
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
        empty = table.index[table[col] == ""]
        if len(empty):
            problems.append(
                f"column {col} is empty on lines {', '.join(str(line_of(i)) for i in empty)}"
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
            f"line {line_of(i)}, column marker_class: {table.at[i, 'marker_class']!r} is not one of "
            f"{', '.join(MARKER_CLASSES)}"
        )
    for i in table.index[table["fcs_colname"] == ""]:
        problems.append(f"line {line_of(i)}: fcs_colname is empty")
    dups = _duplicates(table, "fcs_colname")
    if dups:
        problems.append(f"duplicate fcs_colname: {'; '.join(dups)}")
    if len(table) == 0:
        problems.append("no rows")
    if problems:
        raise ItmeInputError("; ".join(problems), where=where, fix="Correct the rows listed")
    return table
