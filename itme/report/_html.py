"""The self-contained HTML report of a pipeline run (docs/report.md)."""

from __future__ import annotations

import html
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from itme._files import write_text
from itme.errors import ItmeInputError, ItmeParameterError
from itme.report._figures import Figure, FigureIndex, find_figures, render_figure
from itme.report._provenance import render_provenance, run_facts
from itme.report._run import (
    SECTIONS,
    RunFolder,
    Section,
    load_run,
    section_of_figure,
    section_outputs,
    stage_of_table,
    table_status,
)
from itme.report._style import CSP, CSS
from itme.report._tables import (
    Q_THRESHOLD,
    fmt_value,
    plural,
    q_columns,
    read_table,
    render_table,
    scroll_table,
)

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

_OTHER = Section(
    "other", "Other results", "Tables and figures of this run that belong to no section above."
)


class _Tables:
    """Reads each CSV of the run once."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[pd.DataFrame | None, str | None]] = {}

    def get(self, name: str) -> tuple[pd.DataFrame | None, str | None]:
        if name not in self._cache:
            self._cache[name] = read_table(self.folder.tables[name])
        return self._cache[name]


def _section_summary(folder: RunFolder, sid: str) -> dict[str, Any]:
    entry = folder.summary.get(sid)
    return entry if isinstance(entry, dict) else {}


def _summary_items(folder: RunFolder, sid: str) -> list[tuple[str, str]]:
    entry = _section_summary(folder, sid)
    return [(str(k), fmt_value(v)) for k, v in entry.items() if not str(k).startswith("_")]


def _auto_headlines(name: str, frame: pd.DataFrame) -> list[str]:
    """Headline numbers read off a table (generic, so any table shape is fine)."""
    out = []
    cols = set(frame.columns)
    num = frame.select_dtypes("number")
    if name == "qc_events" and {"events_in", "events_out"} <= set(num.columns):
        n_in, n_out = int(num["events_in"].sum()), int(num["events_out"].sum())
        pct = 100 * n_out / n_in if n_in else float("nan")
        out.append(f"{len(frame)} samples: {n_in:,} events in, {n_out:,} out ({pct:.1f}% kept)")
    if "mean_jaccard" in num.columns:
        label = frame["cluster"].astype(str) if "cluster" in cols else frame.index.astype(str)
        pairs = ", ".join(f"{c} {v:.2f}" for c, v in zip(label, num["mean_jaccard"], strict=True))
        out.append(f"bootstrap mean Jaccard per cluster: {pairs}")
    if "kappa" in num.columns and len(frame):
        out.append(f"Cohen's kappa {float(num['kappa'].iloc[0]):.3f}")
    qs = [c for c in q_columns(frame.columns) if c in num.columns]
    if qs:
        n_sig = int((num[qs[0]] < Q_THRESHOLD).sum())
        out.append(f"{name}: {n_sig:,} of {len(frame):,} rows at {qs[0]} < {Q_THRESHOLD:g}")
    if not out:
        out.append(f"{name}: {plural(len(frame), 'row')}")
    return out


def _status_line(kind: str, reason: str, what: str = "") -> str:
    cls = "status failed" if kind == "failed" else "status"
    prefix = f"<code>{html.escape(what)}</code>: " if what else ""
    return (
        f'<p class="{cls}">{prefix}<strong>{html.escape(kind)}</strong> &mdash; '
        f"{html.escape(reason)}.</p>"
    )


def _dl(items: list[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def _note(summary: dict[str, Any]) -> list[str]:
    """The section's ``_note`` from summary.json as a paragraph (none when absent)."""
    if "_note" not in summary:
        return []
    return [f'<p class="note">{html.escape(str(summary["_note"]))}</p>']


class _Page:
    def __init__(self, folder: RunFolder, figures: FigureIndex, max_rows: int) -> None:
        self.folder = folder
        self.figures = figures
        self.max_rows = max_rows
        self.tables = _Tables(folder)
        captions = folder.summary.get("captions")
        self.captions = captions if isinstance(captions, dict) else {}
        self.status: dict[str, str] = {}  # section id -> "" (has content) or a status kind
        self.n_embedded = 0

    # -- sections with results -------------------------------------------------------
    def _figures_html(self, figs: list[Figure]) -> list[str]:
        parts = []
        for fig in figs:
            body, embedded = render_figure(fig, self.captions)
            self.n_embedded += embedded
            parts.append(body)
        return parts

    def _table_html(self, name: str) -> str:
        frame, problem = self.tables.get(name)
        if frame is None:
            return (
                f'<p class="status failed"><code>{html.escape(name)}.csv</code> could not be '
                f"read: {html.escape(problem or '')}</p>"
            )
        return render_table(
            frame,
            name=name,
            csv_href=f"tables/{name}.csv",
            max_rows=self.max_rows,
            p_floor=self._p_floor(name),
        )

    def _p_floor(self, name: str) -> float | None:
        """``1 / permutations`` for the GSEA tables (permutation p- and q-values), else None."""
        if not name.startswith("gsea"):
            return None
        config = self.folder.run.get("config")
        rnaseq = config.get("rnaseq") if isinstance(config, dict) else None
        n = rnaseq.get("permutations") if isinstance(rnaseq, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return 1.0 / n
        return None

    def results_section(self, section: Section, tables: list[str]) -> str:
        present = [t for t in tables if t in self.folder.tables]
        figs = self.figures.by_section.get(section.id, [])
        summary = _section_summary(self.folder, section.id)
        items = _summary_items(self.folder, section.id)
        parts = [f'<p class="intro">{section.intro}</p>']
        if not present and not figs and not items:
            if "_status" in summary:
                kind = str(summary["_status"])
                self.status[section.id] = kind
                parts.append(_status_line(kind, str(summary.get("_note", "see summary.json"))))
                return "\n".join(parts)
            statuses = [table_status(self.folder, t) for t in tables] or [
                ("not run", "this run wrote nothing for this section")
            ]
            kinds = {k for k, _ in statuses}
            self.status[section.id] = (
                "failed" if "failed" in kinds else statuses[0][0] if len(kinds) == 1 else "not run"
            )
            if len({s for s in statuses}) == 1:
                parts.append(_status_line(*statuses[0]))
            else:
                parts += [
                    _status_line(k, r, f"{t}.csv")
                    for t, (k, r) in zip(tables, statuses, strict=True)
                ]
            parts += _note(summary)
            return "\n".join(parts)

        self.status[section.id] = ""
        failed = sorted(
            {
                str(rec.get("name"))
                for t in tables
                if (rec := stage_of_table(self.folder, t)) is not None
                and str(rec.get("status")) == "failed"
            }
        )
        for stage in failed:
            parts.append(
                f'<p class="banner">The <code>{html.escape(stage)}</code> stage failed in this run: '
                "results shown here may be left from an earlier run.</p>"
            )
        if items:
            parts.append(_dl(items))
        parts += _note(summary)
        parts += self._figures_html(figs)
        for name in tables:
            if name in self.folder.tables:
                parts.append(self._table_html(name))
            else:
                kind, reason = table_status(self.folder, name)
                parts.append(_status_line(kind, reason, f"{name}.csv"))
        return "\n".join(parts)

    def other_section(self, known: set[str]) -> str | None:
        tables = [t for t in self.folder.tables if t not in known]
        figs = self.figures.by_section.get("other", [])
        loose = self.folder.other_files
        if not tables and not figs and not self.figures.unsupported and not loose:
            return None
        parts = [f'<p class="intro">{_OTHER.intro}</p>', *self._figures_html(figs)]
        if self.figures.unsupported:
            names = ", ".join(
                f"<code>{html.escape(p.name)}</code>" for p in self.figures.unsupported
            )
            parts.append(
                f'<p class="note">Files in figures/ that are neither PNG nor SVG (not embedded): {names}</p>'
            )
        if loose:
            names = ", ".join(f"<code>{html.escape(p)}</code>" for p in loose)
            parts.append(
                f'<p class="note">Files in tables/ that are not CSV (not shown): {names}</p>'
            )
        parts += [self._table_html(t) for t in tables]
        self.status["other"] = ""
        return "\n".join(parts)

    # -- overview ----------------------------------------------------------------------
    def overview(self, result_sections: list[Section], tables: dict[str, list[str]]) -> str:
        parts = [f'<p class="intro">{SECTIONS[0].intro}</p>']
        facts = run_facts(self.folder)
        parts.append(
            '<dl class="facts">'
            + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
            + "</dl>"
        )
        own = _summary_items(self.folder, "overview")
        if own:
            parts.append(_dl(own))
        used = {"overview", "captions", *(s.id for s in result_sections)}
        extra = [(str(k), fmt_value(v)) for k, v in self.folder.summary.items() if k not in used]
        if extra:
            parts.append("<h3>Other summary.json entries</h3>" + _dl(extra))
        if self.folder.summary_problem and self.folder.summary_problem != "not found":
            parts.append(
                f'<p class="note">summary.json {html.escape(self.folder.summary_problem)}.</p>'
            )
        rows = []
        for section in result_sections:
            kind = self.status.get(section.id, "")
            lines = [f"{k}: {v}" for k, v in _summary_items(self.folder, section.id)]
            for t in tables.get(section.id, []):
                if t in self.folder.tables:
                    frame, problem = self.tables.get(t)
                    lines += (
                        _auto_headlines(t, frame) if frame is not None else [f"{t}: unreadable"]
                    )
            if kind and not lines:
                lines = [kind]
            cell = "<br>".join(html.escape(line) for line in lines) or "figures only"
            link = f'<a href="#{section.id}">{html.escape(section.title)}</a>'
            rows.append(f"<tr><td>{link}</td><td>{cell}</td></tr>")
        parts.append("<h3>Headline numbers</h3>" + scroll_table(("section", "result"), rows))
        return "\n".join(parts)


def _page(folder: RunFolder, figures: FigureIndex, title: str, max_rows: int) -> tuple[str, int]:
    page = _Page(folder, figures, max_rows)

    # the tables the stages declare for a section: each one present with its variants
    # (e.g. de_results_<contrast>), or its name when absent (the section says why)
    def section_tables(section: Section) -> list[str]:
        names: list[str] = []
        for output in section_outputs(section.id, "table"):
            found = sorted(t for t in folder.tables if output.matches(t) and t not in names)
            names += found or ([output.name] if output.name not in names else [])
        return names

    results = [s for s in SECTIONS if s.id not in ("overview", "provenance")]
    tables = {s.id: section_tables(s) for s in results}
    # the provenance section's own tables (the run's warnings) are shown there
    known = {t for names in tables.values() for t in names} | {
        o.name for o in section_outputs("provenance", "table")
    }
    bodies: dict[str, str] = {s.id: page.results_section(s, tables[s.id]) for s in results}
    other = page.other_section(known)
    if other is not None:
        results.append(_OTHER)
        bodies["other"] = other
    bodies["overview"] = page.overview(results, tables)
    bodies["provenance"] = render_provenance(folder)
    order = [SECTIONS[0], *results, SECTIONS[-1]]

    nav = []
    sections = []
    for i, section in enumerate(order, start=1):
        kind = page.status.get(section.id, "")
        tag = f' <span class="tag">({html.escape(kind)})</span>' if kind else ""
        nav.append(f'<li><a href="#{section.id}">{i}. {html.escape(section.title)}</a>{tag}</li>')
        sections.append(
            f'<section id="{section.id}">\n<h2>{i}. {html.escape(section.title)}</h2>\n'
            f"{bodies[section.id]}\n</section>"
        )
    run = folder.run
    sub = " &middot; ".join(
        html.escape(text)
        for text in (
            f"itme {fmt_value(run.get('itme_version'))}" if "itme_version" in run else "",
            f"run started {fmt_value(run.get('started'))}" if "started" in run else "",
            f"seed {fmt_value(run.get('seed'))}" if "seed" in run else "",
        )
        if text
    )
    from itme import __version__

    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1><p>{sub}</p></header>
<nav><ol>{"".join(nav)}</ol></nav>
<main>
{chr(10).join(sections)}
</main>
<footer>Written by itme {html.escape(__version__)} from the files of this run folder; times are
those recorded in run.json. Self-contained: figures are embedded, links to tables/ and figures/
point to the full files next to this page.</footer>
</body>
</html>
"""
    return doc, page.n_embedded


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    max_rows: int = 50,
) -> Path:
    """Write ``run_dir/report.html``: one self-contained page summarising a pipeline run.

    Reads ``run.json``, the optional ``summary.json``, ``tables/*.csv`` and
    ``figures/*.png|svg`` of the run folder (layout in docs/report.md). Sections, in order:
    overview, QC accounting, cluster phenotypes, iTME clusters and robustness, subset
    statistics, clinical table, survival, differential expression and GSEA, cytokines,
    (other results, only when some file fits no section), provenance. A section without
    results says "not run", "no input" or "failed" and why. Figures are embedded as
    ``data:`` URIs and the stylesheet is inline, so the page loads nothing from anywhere;
    every value read from a file is HTML-escaped. Times shown come from ``run.json``, never
    from the clock, so the same run folder always gives the same bytes. The file is
    written atomically (temporary file, then ``os.replace``).

    Parameters
    ----------
    run_dir
        The run folder (the pipeline's output directory).
    title
        Page title (default ``"itme report"``).
    max_rows
        Tables longer than this show their top rows by q-value (or p-value, or file order)
        with a note giving the total and a link to the full CSV.

    Returns
    -------
    Path of the report written (``run_dir/report.html``).
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ItmeParameterError("max_rows", "a positive integer", max_rows)
    if title is not None and not isinstance(title, str):
        raise ItmeParameterError("title", "a string or None", title)
    root = Path(run_dir)
    if not root.is_dir():
        raise ItmeInputError(
            where=str(root),
            expected="a pipeline run folder (with run.json, tables/, figures/)",
            found="no such directory" if not root.exists() else "a file",
            fix="Pass the --out folder of `itme run`.",
        )
    started = time.perf_counter()
    folder = load_run(root)
    figures = find_figures(root / "figures", section_of_figure)
    text, n_embedded = _page(folder, figures, title or "itme report", max_rows)
    out = root / "report.html"
    write_text(out, text)
    logger.info(
        "report: wrote %s (%.0f kB, %d tables, %d figures embedded) in %.2fs",
        out,
        len(text.encode("utf-8")) / 1024,
        len(folder.tables),
        n_embedded,
        time.perf_counter() - started,
    )
    return out
