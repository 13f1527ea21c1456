"""Spillover matrices of mass cytometry as CSV, in CATALYST's layout.

CATALYST (``computeSpillmat``, ``compCytof``) writes and reads a spillover matrix as a table
whose rows are the emitting channels and whose columns are the receiving channels, both named
by metal (``Nd144Di``, ``Nd144``, ``144Nd``; any convention :func:`~itme.io.parse_channel`
reads), the first column holding the row names, the diagonal 1. ``computeSpillmat`` returns
rows for the stained channels only, so a matrix may have fewer rows than columns: a channel
without a row spills nowhere.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from itme.errors import ItmeInputError
from itme.io._channels import parse_channel
from itme.io._delimited import read_table

__all__ = ["read_spillover", "write_spillover"]

logger = logging.getLogger(__name__)

#: how far a diagonal entry may be from 1 (rounding in a CSV written by hand or by R)
DIAGONAL_TOLERANCE = 1e-6


def _metal(name: str, where: str) -> str:
    parsed = parse_channel(str(name))
    if not parsed.element:
        raise ItmeInputError(
            where=where,
            expected="a channel named by metal (Nd144Di, Nd144, 144Nd, CD3(Nd144)Di)",
            found=repr(str(name)),
            fix="Name every row and column of the spillover matrix by its metal, as "
            "CATALYST writes it",
        )
    return parsed.metal


def read_spillover(spillover: str | PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read and check a spillover matrix (CATALYST's layout).

    Parameters
    ----------
    spillover
        A CSV/TSV file (first column: the emitting channel of each row; header: the receiving
        channels), or a DataFrame in the same layout (index = emitting channels).

    Returns
    -------
    float64 DataFrame, index = emitting channels, columns = receiving channels, names as in
    the file; ``attrs["metals"]`` maps every name to its metal (``Nd144``) and
    ``attrs["path"]`` is the file (``""`` for a DataFrame).

    Raises
    ------
    ItmeInputError
        A name that is not a metal, a metal named twice, a row whose metal is not among the
        columns (the matrix cannot be completed to a square one), a cell that is not a
        number, a negative entry, a diagonal entry that is not 1; ragged or empty files (the
        error names the file, row and column).
    """
    if isinstance(spillover, pd.DataFrame):
        source = "spillover DataFrame"
        path = ""
        table = spillover.copy()
        table.index = table.index.astype(str)
        table.columns = table.columns.astype(str)
        cells = table.astype(object).map(lambda v: "" if v is None else str(v))
        lines = {name: f"row {name}" for name in table.index}
    else:
        path = str(Path(spillover))
        source = path
        raw = read_table(spillover, what="spillover matrix")
        if raw.shape[1] < 2:
            raise ItmeInputError(
                where=source,
                expected="a first column of row names (emitting channels) and one column per "
                "receiving channel",
                found=f"{raw.shape[1]} column(s)",
            )
        first = raw.columns[0]
        cells = raw.drop(columns=first)
        cells.index = raw[first].astype(str).to_numpy()
        lines = {name: f"line {line}" for name, line in zip(cells.index, raw.index, strict=True)}
        table = cells
    row_metals = [_metal(r, f"{source} {lines[r]} (row name)") for r in table.index]
    col_metals = [_metal(c, f"{source} header, column {c!r}") for c in table.columns]
    for kind, names, metals in (
        ("row", list(table.index), row_metals),
        ("column", list(table.columns), col_metals),
    ):
        seen: dict[str, str] = {}
        for name, metal in zip(names, metals, strict=True):
            if metal in seen:
                raise ItmeInputError(
                    where=source,
                    expected=f"each metal in one {kind}",
                    found=f"{metal} in {kind}s {seen[metal]!r} and {name!r}",
                    fix="Remove the repeated one",
                )
            seen[metal] = name
    missing = [r for r, m in zip(table.index, row_metals, strict=True) if m not in col_metals]
    if missing:
        raise ItmeInputError(
            where=f"{source} {lines[missing[0]]}",
            expected="a square matrix: every emitting channel (row) also a receiving channel "
            "(column)",
            found=f"row(s) {', '.join(map(repr, missing))} without a column "
            f"({len(table.index)} rows, {len(table.columns)} columns)",
            fix="Give the matrix one column per channel, as CATALYST's computeSpillmat writes it",
        )
    values = np.empty(table.shape, dtype=np.float64)
    for i, r in enumerate(table.index):
        for j, c in enumerate(table.columns):
            text = str(cells.iat[i, j]).strip()
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise ItmeInputError(
                    where=f"{source} {lines[r]}, row {r!r}, column {c!r}",
                    expected="a finite number",
                    found=repr(text),
                )
            if value < 0:
                raise ItmeInputError(
                    where=f"{source} {lines[r]}, row {r!r}, column {c!r}",
                    expected="a spillover fraction >= 0",
                    found=value,
                    fix="Spillover adds signal: negative entries are not spillover",
                )
            values[i, j] = value
    col_of = {m: j for j, m in enumerate(col_metals)}
    for i, (r, m) in enumerate(zip(table.index, row_metals, strict=True)):
        diag = values[i, col_of[m]]
        if abs(diag - 1.0) > DIAGONAL_TOLERANCE:
            raise ItmeInputError(
                where=f"{source} {lines[r]}, row {r!r}, column {table.columns[col_of[m]]!r}",
                expected="1 on the diagonal (a channel receives all its own signal)",
                found=diag,
                fix="Divide the row by its diagonal entry if the matrix is scaled",
            )
    out = pd.DataFrame(values, index=list(table.index), columns=list(table.columns))
    out.attrs = {
        "metals": dict(
            zip([*table.index, *table.columns], [*row_metals, *col_metals], strict=True)
        ),
        "path": path,
    }
    if len(table.index) < len(table.columns):
        logger.info(
            "%s: %d emitting rows for %d channels; channels without a row spill nowhere",
            source,
            len(table.index),
            len(table.columns),
        )
    return out


def write_spillover(spillover: pd.DataFrame, *, path: str | PathLike[str]) -> Path:
    """Write a spillover matrix as CSV in CATALYST's layout (readable by :func:`read_spillover`).

    Parameters
    ----------
    spillover
        Index = emitting channels, columns = receiving channels.
    path
        The CSV file to write.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    frame = pd.DataFrame(spillover)
    frame.index.name = ""
    frame.to_csv(path, float_format="%.10g")
    return path
