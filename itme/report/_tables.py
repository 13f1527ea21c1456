"""Render result tables (any DataFrame) as escaped HTML for the report.

Formatting rules (docs/report.md):

- p- and q-value columns (``pvalue``, ``padj``, ``FDR``, ``qvalue``, gseapy's ``NOM p-val``
  and ``FDR q-val``, ...) get 3 significant digits, scientific notation below 1e-3.
- Rows whose q-value column (``padj``, ``FDR``, ``qvalue``, ...) is below 0.05 are
  highlighted.
- Tables longer than ``max_rows`` show the top rows by q-value (or p-value when there is
  no q-value column; file order when there is neither) with a note giving the total and
  a relative link to the full CSV.
- Every value and column name is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

__all__ = [
    "Q_THRESHOLD",
    "fmt_bytes",
    "fmt_number",
    "fmt_p",
    "fmt_value",
    "p_columns",
    "plural",
    "q_columns",
    "read_table",
    "render_table",
    "scroll_table",
]

#: significance threshold used for highlighting
Q_THRESHOLD = 0.05
#: long text cells are cut to this many characters (the full text is in the title attribute)
MAX_CELL_CHARS = 80
_MAX_TITLE_CHARS = 2000

# column names compared after lower-casing and removing everything but letters and digits
_Q_NAMES = ("padj", "fdr", "fdrqval", "qvalue", "qval", "q", "padjusted", "pvaladj", "adjp")
_P_NAMES = ("pvalue", "pval", "p", "nompval", "fwerpval", "pvaluelogrank", "phpvalue")
_P_SUFFIXES = ("pvalue", "pval", "padj", "fdr", "qvalue", "qval")


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def q_columns(columns: pd.Index | list) -> list:
    """Columns holding multiple-testing adjusted values.

    Parameters
    ----------
    columns
        A table's column names.

    Returns
    -------
    The q-value columns (``padj``, ``FDR``, ``qvalue``, ...), in priority order.
    """
    cols = list(columns)
    found = [c for name in _Q_NAMES for c in cols if _key(c) == name]
    return list(dict.fromkeys(found))


def p_columns(columns: pd.Index | list) -> list:
    """Columns formatted as p-values.

    Parameters
    ----------
    columns
        A table's column names.

    Returns
    -------
    The p- and q-value columns, in table order.
    """
    qs = set(q_columns(columns))
    return [c for c in columns if c in qs or _key(c) in _P_NAMES or _key(c).endswith(_P_SUFFIXES)]


def fmt_p(value: float | None, floor: float | None = None) -> str:
    """Format a p- or q-value.

    Parameters
    ----------
    value
        The value (``None`` or NaN: missing).
    floor
        The smallest non-zero value the test can give (``1 / permutations`` of a
        permutation test): a 0 is shown as ``"< floor"``, what the test can say.

    Returns
    -------
    3 significant digits, scientific below 1e-3; ``"NA"`` when missing.
    """
    if value is None:
        return "NA"
    v = float(value)
    if math.isnan(v):
        return "NA"
    if v == 0:
        return f"< {floor:.3g}" if floor else "0"
    if abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}"


def fmt_number(value: float) -> str:
    """Format a number for a table cell.

    Parameters
    ----------
    value
        The number.

    Returns
    -------
    4 significant digits, no needless exponent; ``"NA"`` for NaN.
    """
    v = float(value)
    if math.isnan(v):
        return "NA"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.3e}"
    if a >= 1e4:
        return f"{v:.0f}"
    return f"{v:.4g}"


def read_table(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """Read one CSV of a run, never raising.

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    ``(frame, None)``, or ``(None, reason)`` when the file cannot be read.
    """
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{type(exc).__name__}: {reason[:300]}"
    frame.columns = ["" if str(c).startswith("Unnamed: ") else str(c) for c in frame.columns]
    return frame, None


def _numeric(series: pd.Series) -> pd.Series | None:
    """The column as floats when it is numeric (ignoring blanks), else ``None``."""
    if pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    return None


def _cell(text: str, classes: list[str]) -> str:
    cls = f' class="{" ".join(classes)}"' if classes else ""
    if len(text) > MAX_CELL_CHARS:
        title = html.escape(text[:_MAX_TITLE_CHARS], quote=True)
        shown = html.escape(text[: MAX_CELL_CHARS - 1]) + "&hellip;"
        return f'<td{cls} title="{title}">{shown}</td>'
    return f"<td{cls}>{html.escape(text)}</td>"


def _column_cells(
    series: pd.Series, is_p: bool, is_q: bool, p_floor: float | None = None
) -> list[str]:
    num = _numeric(series)
    if num is None:
        return [
            _cell("" if (isinstance(v, float) and math.isnan(v)) or v is None else str(v), [])
            for v in series.tolist()
        ]
    values = num.to_numpy()
    if is_p:
        out = []
        for v in values:
            cls = ["num"]
            if is_q and not math.isnan(v) and v < Q_THRESHOLD:
                cls.append("q-sig")
            out.append(_cell(fmt_p(v, p_floor), cls))
        return out
    finite = values[np.isfinite(values)]
    integral = (
        finite.size > 0
        and bool(np.all(finite == np.round(finite)))
        and bool(np.all(np.abs(finite) < 1e15))
    )
    if integral:
        return [_cell("NA" if math.isnan(v) else str(int(v)), ["num"]) for v in values]
    return [_cell(fmt_number(v), ["num"]) for v in values]


def _sort_for_top(frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    qs = q_columns(frame.columns)
    ps = p_columns(frame.columns)
    for col in [*qs, *ps]:
        num = _numeric(frame[col])
        if num is not None:
            order = np.argsort(num.fillna(np.inf).to_numpy(), kind="mergesort")
            return frame.iloc[order], col
    return frame, None


def render_table(
    frame: pd.DataFrame,
    *,
    name: str,
    csv_href: str | None,
    max_rows: int = 50,
    max_cols: int = 60,
    p_floor: float | None = None,
) -> str:
    """HTML for one table, with its caption, truncation note and significance legend.

    Parameters
    ----------
    frame
        The table.
    name
        Its name (the CSV stem), shown in the caption and used in the anchor.
    csv_href
        Relative link to the full CSV (``None``: no link).
    max_rows, max_cols
        Larger tables show their top rows (by q-value, else p-value, else file order) and
        their first columns, with a note.
    p_floor
        Smallest non-zero p-value of a permutation test (``1 / permutations``): zeros are
        shown as ``< p_floor``.

    Returns
    -------
    The HTML, every value escaped.
    """
    n_rows, n_cols = frame.shape
    notes = []
    link = ""
    if csv_href is not None:
        link = f'<a href="{html.escape(quote(csv_href), quote=True)}">{html.escape(csv_href)}</a>'
    shown = frame
    if n_rows > max_rows:
        shown, by = _sort_for_top(frame)
        shown = shown.iloc[:max_rows]
        order = f"sorted by {html.escape(by)} (ascending)" if by else "in file order"
        notes.append(
            f"Showing the top {max_rows:,} of {n_rows:,} rows, {order}. "
            f"The full table is {link or 'not available as a file'}."
        )
    if n_cols > max_cols:
        shown = shown.iloc[:, :max_cols]
        notes.append(f"Showing the first {max_cols} of {n_cols} columns; see {link}.")
    qs = [c for c in q_columns(shown.columns) if _numeric(shown[c]) is not None]
    ps = set(p_columns(shown.columns))
    flags = np.zeros(len(shown), dtype=bool)
    if qs:
        primary = qs[0]
        flags = shown[primary].astype(float).lt(Q_THRESHOLD).to_numpy()
        n_sig = int(frame[primary].astype(float).lt(Q_THRESHOLD).sum())
        notes.append(
            f"{n_sig:,} of {n_rows:,} rows have {html.escape(str(primary))} &lt; "
            f"{Q_THRESHOLD:g}" + (" (highlighted)." if n_sig else ".")
        )
    if n_rows == 0:
        notes.append("The table has no rows.")
    if p_floor:
        notes.append(
            f"p- and q-values come from {round(1 / p_floor):,} permutations: 0 is shown as "
            f"&lt; {p_floor:.3g}, the smallest value they can resolve."
        )

    columns = [
        _column_cells(shown.iloc[:, j], shown.columns[j] in ps, shown.columns[j] in qs, p_floor)
        for j in range(shown.shape[1])
    ]
    head = [html.escape(str(c)) for c in shown.columns]
    body = []
    for i in range(len(shown)):
        cls = ' class="sig"' if flags[i] else ""
        body.append(f"<tr{cls}>" + "".join(col[i] for col in columns) + "</tr>")
    caption = f"<code>{html.escape(name)}</code>"
    if link and n_rows <= max_rows and n_cols <= max_cols:
        caption += f" &middot; {link}"
    parts = [
        f'<div class="table" id="table-{html.escape(name, quote=True)}">',
        f'<p class="caption">{caption} &middot; {plural(n_rows, "row")} &times; '
        f"{plural(n_cols, 'column')}</p>",
    ]
    parts += [f'<p class="note">{n}</p>' for n in notes]
    if shown.shape[1]:
        parts.append(scroll_table(head, body))
    parts.append("</div>")
    return "\n".join(parts)


def scroll_table(headers: Sequence[str], rows: Sequence[str]) -> str:
    """An HTML table in a horizontally scrolling box.

    Parameters
    ----------
    headers
        Column headings, already HTML (escaped by the caller).
    rows
        Rows, each a complete ``<tr>...</tr>`` of HTML.

    Returns
    -------
    The HTML.
    """
    head = "".join(f"<th>{h}</th>" for h in headers)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def plural(n: int, word: str) -> str:
    """A count and its noun: ``"1 row"``, ``"2 rows"``, ``"1,234 rows"``.

    Parameters
    ----------
    n
        The count.
    word
        The singular noun.

    Returns
    -------
    The text.
    """
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def fmt_bytes(n: float) -> str:
    """A file size for people.

    Parameters
    ----------
    n
        Bytes.

    Returns
    -------
    The size in B, kB, MB or GB (decimal units).
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def fmt_value(value: object) -> str:
    """Plain text for a value from run.json or summary.json.

    Parameters
    ----------
    value
        Any JSON value.

    Returns
    -------
    The text (not yet HTML-escaped); lists and dicts are flattened.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {fmt_value(v)}" for k, v in value.items())
    return str(value)
