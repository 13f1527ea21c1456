"""Tolerant reading of small per-patient text tables (clinical.csv, cytokines.csv).

These files are usually exported from Excel or a lab system: they may carry a UTF-8 byte-order
mark, be UTF-16 ("Unicode text") or Windows-1252 encoded, use ``,``, ``;`` or tab as separator,
and end with empty rows. Everything is read as text first so that each reader can validate
and convert with messages that name the row and column.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import pandas as pd

from ..errors import ItmeInputError, ItmeInputWarning

logger = logging.getLogger(__name__)

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "."})


def decode(raw: bytes, *, where: str) -> tuple[str, str]:
    """Text and encoding name: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
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


def read_text_table(path: str | Path, *, what: str) -> tuple[pd.DataFrame, dict]:
    """All cells as stripped strings, plus ``{"encoding", "separator", "path"}``.

    Row numbers in later messages are file line numbers (header = line 1).
    """
    path = Path(path)
    if not path.is_file():
        raise ItmeInputError(
            where=str(path),
            expected=f"the {what} file",
            found="no such file",
            fix="Check the path in the config.",
        )
    text, encoding = decode(path.read_bytes(), where=str(path))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ItmeInputError(
            where=str(path),
            expected=f"a header row and one row per patient ({what})",
            found="an empty file",
        )
    header = lines[0]
    separator = max([",", ";", "\t"], key=header.count)
    if header.count(separator) == 0:
        separator = ","
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=separator,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
        )
    except pd.errors.ParserError as err:
        raise ItmeInputError(
            where=str(path),
            expected=f"a rectangular {what} table",
            found=str(err).splitlines()[0],
            fix="Check quoting and the separator.",
        ) from err
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    unnamed = [
        c for c in df.columns if c.startswith("Unnamed:") and (df[c].str.strip() == "").all()
    ]
    df = df.drop(columns=unnamed)
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise ItmeInputError(
            where=f"{path} header",
            expected="unique column names",
            found=f"duplicated {', '.join(dup)}",
        )
    df = df.fillna("").apply(lambda col: col.str.strip())
    df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    empty = (df == "").all(axis=1)
    if empty.any():
        logger.info("%s: %d empty row(s) ignored", path, int(empty.sum()))
        df = df[~empty]
    return df, {"encoding": encoding, "separator": separator, "path": str(path)}
