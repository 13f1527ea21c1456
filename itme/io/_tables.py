"""Delimited text tables (sample sheets, panels, clinical and cytokine tables): reading and validation.

Tables from spreadsheets arrive in many encodings (UTF-8 with or without a BOM, Windows
code pages, UTF-16 from Excel's "Unicode text") and with `,`, `;` or tab separators; they
all just work. Validation collects every problem in a table before raising, so a user fixes
a sample sheet in one go.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import logging
import warnings
import zlib
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from itme.errors import ItmeInputError, ItmeInputWarning

__all__ = ["read_panel", "read_samples", "read_table"]

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("file_name", "sample_id", "patient_id")
PANEL_COLUMNS = ("fcs_colname", "antigen", "marker_class")
MARKER_CLASSES = ("type", "state", "qc", "none")

TableSource = str | PathLike[str] | pd.DataFrame


MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "."})


def line_list(lines: Sequence, limit: int = 10) -> str:
    """``"2, 5, 9"``: file line numbers (or ids) for a message, the first ``limit`` of them.

    Parameters
    ----------
    lines
        Line numbers or ids, in order.
    limit
        How many to name; the rest are counted (``"... and 4 more"``).

    Returns
    -------
    The comma-separated text.
    """
    items = [str(i) for i in lines]
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _utf16_without_bom(raw: bytes) -> str | None:
    """``utf-16-le``/``-be`` when every other byte of the start is NUL (Excel's "Unicode text"
    saved without its byte-order mark), else None."""
    head = raw[:4000]
    if len(head) < 4 or len(head) % 2:
        return None
    if head[1::2].count(0) > 0.9 * len(head) / 2 and head[0::2].count(0) == 0:
        return "utf-16-le"
    if head[0::2].count(0) > 0.9 * len(head) / 2 and head[1::2].count(0) == 0:
        return "utf-16-be"
    return None


def decode(raw: bytes, *, where: str) -> tuple[str, str]:
    """Text and encoding of a text file's bytes; a file that is not UTF-8 is warned about.

    Parameters
    ----------
    raw
        The file's bytes.
    where
        The file, for messages.

    Returns
    -------
    The text and the encoding used: UTF-8 (with or without BOM), UTF-16 (with a BOM, or
    recognised by its NUL bytes), else Windows-1252 (Latin-1 when even that fails).

    Raises
    ------
    ItmeInputError
        Binary content (NUL bytes that are not UTF-16) or a broken UTF-16 file.
    """
    encoding = "utf-16" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else _utf16_without_bom(raw)
    if encoding is not None:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            raise ItmeInputError(
                where=where,
                expected="a text table (UTF-8, UTF-16, Windows-1252)",
                found=f"a UTF-16 file broken at byte {err.start}",
                fix="Save the table again as CSV (UTF-8)",
            ) from err
        return text.lstrip("\ufeff"), "utf-16"
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ItmeInputError(
            where=where,
            expected="a text table (CSV or TSV)",
            found=f"binary content (a NUL byte at offset {nul})",
            fix="Export the table as CSV from the spreadsheet (an .xlsx file is not a CSV file)",
        )
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
        encoding = "cp1252"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin-1"
    warnings.warn(
        f"{where}: not UTF-8; read as {encoding} (check accented names)",
        ItmeInputWarning,
        stacklevel=4,
    )
    return text, encoding


def _file_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ItmeInputError(
            where=str(path),
            expected=f"the {what} file",
            found="no such file",
            fix="Check the path in the config.",
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ItmeInputError(
            where=str(path), expected=f"a readable {what} file", found=err.strerror or str(err)
        ) from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ItmeInputError(
                where=str(path),
                expected=f"a gzip-compressed {what} table",
                found=f"a broken gzip file ({err})",
                fix="Compress the table again, or give it uncompressed",
            ) from err
    return raw


def _first_row(text: str, sep: str) -> list[str]:
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True):
        if any(cell.strip() for cell in row):
            return row
    return []


def _field_counts(text: str, sep: str, where: str, what: str) -> dict[int, int]:
    """Fields of every non-blank line, by file line (quote-aware only when there are quotes)."""
    if '"' not in text:
        lines = io.StringIO(text, newline=None)  # \n, \r\n and \r end lines, as for pandas
        return {i: ln.count(sep) + 1 for i, ln in enumerate(lines, start=1) if ln.strip()}
    counts = {}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                counts[reader.line_num] = len(row)
    except csv.Error as err:
        raise ItmeInputError(
            where=f"{where} line {reader.line_num}",
            expected=f"a {what} table with balanced quotes",
            found=str(err),
            fix="Check the quoting of that line.",
        ) from err
    return counts


def read_table(
    path: str | PathLike[str], *, what: str = "input", sep: str | None = None
) -> pd.DataFrame:
    """Read a delimited text table the way every itme input table is read.

    UTF-8 (with or without a byte-order mark), UTF-16 (Excel's "Unicode text") or
    Windows-1252/Latin-1 (warned); ``,``, ``;`` or tab separators (the one the header uses
    most); gzip-compressed files; empty lines ignored. A file that is empty, binary, ragged
    (a row with more or fewer fields than the header) or has repeated column names is an
    error naming the file and line.

    Parameters
    ----------
    path
        The file.
    what
        How the table is named in messages (e.g. ``"clinical"``).
    sep
        The separator; ``None`` guesses it from the header.

    Returns
    -------
    All cells as stripped strings, indexed by file line number (header = line 1; empty rows
    dropped and logged); ``attrs`` holds ``encoding``, ``separator`` and ``path``.

    Raises
    ------
    ItmeInputError
        Missing, empty, binary, undecodable or ragged files; repeated column names.
    """
    path = Path(path)
    where = str(path)
    text, encoding = decode(_file_bytes(path, what), where=where)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ItmeInputError(
            where=where,
            expected=f"a header row and rows of the {what} table",
            found="an empty file",
        )
    header = lines[0]
    if sep is None:
        sep = max([",", ";", "\t"], key=header.count)
        if header.count(sep) == 0:
            sep = ","
    widths = _field_counts(text, sep, where, what)
    names = [c.strip().lstrip("\ufeff") for c in _first_row(text, sep)]
    # cells past the header's width are tolerated when empty (a trailing separator)
    ragged = [(line, n) for line, n in widths.items() if n < len(names)]
    wider = {line: n for line, n in widths.items() if n > len(names)}
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            names=range(max(widths.values(), default=len(names))),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
            header=None,
            engine="c" if len(sep) == 1 else "python",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as err:
        raise ItmeInputError(
            where=where,
            expected=f"a rectangular {what} table",
            found=str(err).splitlines()[0],
            fix="Check quoting and the separator.",
        ) from err
    df.index = pd.RangeIndex(1, len(df) + 1, name="line")
    if wider:
        extra = df.iloc[:, len(names) :]
        ragged += [
            (line, wider[line])
            for line in df.index[(extra.apply(lambda c: c.str.strip()) != "").any(axis=1)]
        ]
    if ragged:
        ragged.sort()
        raise ItmeInputError(
            where=f"{where} line(s) {line_list([line for line, _ in ragged])}",
            expected=f"{len(names)} fields as in the header (separator {sep!r})",
            found=", ".join(f"{n} on line {line}" for line, n in ragged[:5]),
            fix="A row with more or fewer fields than the header puts values into the wrong "
            "columns: add the missing separators (empty cells are fine) or check the quoting",
        )
    df = df.iloc[:, : len(names)]
    header_line = int(min(widths))
    body = df.loc[df.index > header_line].apply(lambda col: col.str.strip())
    blank = (body == "").all(axis=1)
    if blank.any():
        logger.info("%s: %d empty row(s) ignored", path, int(blank.sum()))
        body = body[~blank]
    unnamed = [i for i, c in enumerate(names) if c == "" and (body[i] == "").all()]
    body = body.drop(columns=unnamed)
    names = [c for i, c in enumerate(names) if i not in unnamed]
    body.columns = names
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ItmeInputError(
            where=f"{where} header",
            expected="unique column names",
            found=f"duplicated column(s) {', '.join(repr(c) for c in dup)}",
            fix="Rename or remove the repeated columns",
        )
    body.attrs = {"encoding": encoding, "separator": sep, "path": where}
    return body


def read_delimited(path: str | Path, *, what: str) -> tuple[pd.DataFrame, dict]:
    """:func:`read_table`, returning the table and ``{"encoding", "separator", "path"}``.

    Parameters
    ----------
    path
        The file.
    what
        How the table is named in messages (e.g. ``"clinical"``).

    Returns
    -------
    The table (see :func:`read_table`) and its ``attrs``.
    """
    table = read_table(path, what=what)
    return table, dict(table.attrs)


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
        ``file_name`` (with their lines).
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
    dups = _duplicates(table, "fcs_colname")
    if dups:
        problems.append(f"duplicate fcs_colname: {'; '.join(dups)}")
    if len(table) == 0:
        problems.append("no rows")
    if problems:
        raise ItmeInputError("; ".join(problems), where=where, fix="Correct the rows listed")
    return table
