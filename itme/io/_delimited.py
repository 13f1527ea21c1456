"""Delimited text tables as every itme input is read (:func:`read_table`).

Encodings, separators and gzip are handled; empty, binary, ragged and undecodable files are
errors.

Tables from spreadsheets arrive in many encodings (UTF-8 with or without a BOM, Windows
code pages, UTF-16 from Excel's "Unicode text") and with `,`, `;` or tab separators; they
all just work. A file that cannot be a table is an :class:`~itme.errors.ItmeInputError`
naming the file and line, never a pandas or codec exception.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import warnings
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from itme.errors import ItmeInputError, ItmeInputWarning

__all__ = ["read_table"]

logger = logging.getLogger(__name__)

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
    """``utf-16-le``/``-be`` when every other byte of the start is NUL, else None.

    That is Excel's "Unicode text" saved without its byte-order mark.
    """
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
