"""Render run.json: the overview facts and the provenance section."""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any

from itme.report._run import RunFolder
from itme.report._tables import fmt_bytes, fmt_value, plural, scroll_table

__all__ = ["render_provenance", "run_facts", "stage_badge"]

_KNOWN = {"itme_version", "started", "finished", "seed", "config", "inputs", "versions",
          "stages", "platform", "backend"}  # fmt: skip


def _e(value: Any) -> str:
    return html.escape(fmt_value(value))


def stage_badge(status: Any) -> str:
    """A coloured badge for a stage status.

    Parameters
    ----------
    status
        The status recorded in run.json (``done``, ``skipped ...``, ``failed``, ...).

    Returns
    -------
    The HTML ``<span>``.
    """
    text = str(status)
    if text == "done":
        cls = "done"
    elif text.startswith("skipped"):
        cls = "skipped"
    elif text == "failed":
        cls = "failed"
    else:
        cls = "not-run"
    return f'<span class="badge {cls}">{html.escape(text)}</span>'


def _duration(run: dict[str, Any]) -> str | None:
    try:
        start = datetime.fromisoformat(str(run["started"]))
        end = datetime.fromisoformat(str(run["finished"]))
        seconds = (end - start).total_seconds()
    except (KeyError, ValueError, TypeError):
        return None
    if seconds < 0:
        return None
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def run_facts(folder: RunFolder) -> list[tuple[str, str]]:
    """The overview facts of a run.

    Parameters
    ----------
    folder
        The run folder.

    Returns
    -------
    ``(label, HTML)`` pairs: version, times, duration, seed, inputs, stages.
    """
    run = folder.run
    if folder.run_problem:
        return [("run.json", html.escape(folder.run_problem))]
    facts = [("itme version", _e(run.get("itme_version")))]
    facts.append(("started", _e(run.get("started"))))
    facts.append(("finished", _e(run.get("finished"))))
    duration = _duration(run)
    if duration:
        facts.append(("duration", html.escape(duration)))
    facts.append(("seed", _e(run.get("seed"))))
    backend = _backend_text(run)
    if backend:
        facts.append(("cell-level stages", html.escape(backend)))
    inputs = run.get("inputs") if isinstance(run.get("inputs"), list) else []
    total = sum(int(i.get("bytes", 0) or 0) for i in inputs if isinstance(i, dict)
                and isinstance(i.get("bytes", 0), int | float))  # fmt: skip
    facts.append(("inputs", html.escape(f"{plural(len(inputs), 'file')}, {fmt_bytes(total)}")))
    stages = folder.stages()
    if stages:
        badges = " ".join(
            f'<span class="mono">{html.escape(str(s.get("name")))}</span> '
            f"{stage_badge(s.get('status', 'not run'))}"
            for s in stages
        )
        facts.append(("stages", badges))
    return facts


def _backend_text(run: dict[str, Any]) -> str | None:
    """Where the cell-level stages ran and why (run.json ``backend``), or ``None``."""
    backend = run.get("backend")
    if not isinstance(backend, dict) or backend.get("backend") not in ("memory", "store"):
        return None
    where = "in memory" if backend["backend"] == "memory" else "on the cohort store (Dask)"
    return f"{where}: {backend.get('reason', '')}".rstrip(": ")


def _kv_table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    return scroll_table(head, [f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows])


def _stages_table(stages: list[dict[str, Any]]) -> str:
    rows, total = [], 0.0
    for s in stages:
        seconds = s.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            total += float(seconds)
            sec = f"{float(seconds):.1f}"
        else:
            sec = _e(seconds)
        outputs = s.get("outputs") or []
        outputs = outputs if isinstance(outputs, list) else [outputs]
        out = "<br>".join(f'<span class="mono">{_e(o)}</span>' for o in outputs)
        rows.append(
            f"<tr><td>{_e(s.get('name'))}</td><td>{stage_badge(s.get('status', 'not run'))}</td>"
            f'<td class="num">{sec}</td><td>{out}</td></tr>'
        )
    rows.append(
        f'<tr><td><b>total</b></td><td></td><td class="num"><b>{total:.1f}</b></td><td></td></tr>'
    )
    return scroll_table(("stage", "status", "seconds", "outputs"), rows)


def _warnings_rows(stages: list[dict[str, Any]]) -> list[str]:
    """Rows of the warnings of run.json's stages (``tables/warnings.csv`` of the run)."""
    rows = []
    for s in stages:
        recorded = s.get("warnings")
        for w in recorded if isinstance(recorded, list) else []:
            if isinstance(w, dict):
                rows.append(
                    f"<tr><td>{_e(s.get('name'))}</td>"
                    f'<td class="mono">{_e(w.get("warning"))}</td>'
                    f"<td>{_e(w.get('message'))}</td>"
                    f'<td class="num">{_e(w.get("count"))}</td></tr>'
                )
    return rows


def _inputs_table(inputs: list[Any]) -> str:
    rows = []
    for i in inputs:
        i = i if isinstance(i, dict) else {"path": i}
        size = i.get("bytes")
        size_text = (
            f"{size:,}" if isinstance(size, int) and not isinstance(size, bool) else fmt_value(size)
        )
        rows.append(
            f'<tr><td class="mono">{_e(i.get("path"))}</td><td class="num">{html.escape(size_text)}'
            f'</td><td class="mono">{_e(i.get("sha256"))}</td></tr>'
        )
    return scroll_table(("path", "bytes", "sha256"), rows)


def _config_text(config: Any) -> str:
    import yaml

    try:
        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except yaml.YAMLError:
        return json.dumps(config, indent=2, ensure_ascii=False, default=str)


def render_provenance(folder: RunFolder) -> str:
    """HTML body of the provenance section.

    Parameters
    ----------
    folder
        The run folder.

    Returns
    -------
    The HTML: stages and timings, the stages' warnings, input files, package versions,
    platform, configuration and any other run.json fields.
    """
    run = folder.run
    if folder.run_problem:
        return (
            f'<p class="status"><strong>no input</strong> &mdash; run.json '
            f"{html.escape(folder.run_problem)}.</p>"
        )
    parts = ['<dl class="facts">']
    for key in ("itme_version", "started", "finished", "seed"):
        parts.append(f"<dt>{key}</dt><dd>{_e(run.get(key))}</dd>")
    backend = _backend_text(run)
    if backend:
        parts.append(f"<dt>cell-level stages</dt><dd>{html.escape(backend)}</dd>")
    parts.append("</dl>")

    parts.append("<h3>Stages and timings</h3>")
    stages = folder.stages()
    parts.append(
        _stages_table(stages) if stages else '<p class="note">run.json lists no stages.</p>'
    )

    parts.append("<h3>Warnings</h3>")
    warned = _warnings_rows(stages)
    if warned:
        parts.append(
            '<p class="note">Every warning the stages showed (the terminal shows each once), '
            'also in <a href="tables/warnings.csv">tables/warnings.csv</a>; every id a '
            'warning names is a row of <a href="tables/warning_items.csv">'
            "tables/warning_items.csv</a>.</p>"
        )
        parts.append(scroll_table(("stage", "warning", "message", "times"), warned))
    else:
        parts.append('<p class="note">No stage showed a warning.</p>')

    parts.append("<h3>Input files</h3>")
    inputs = run.get("inputs")
    if isinstance(inputs, list) and inputs:
        parts.append(_inputs_table(inputs))
    else:
        parts.append('<p class="note">run.json lists no input files.</p>')

    for key, title, head in (
        ("versions", "Package versions", ("package", "version")),
        ("platform", "Platform", ("item", "value")),
    ):
        parts.append(f"<h3>{title}</h3>")
        value = run.get(key)
        if isinstance(value, dict) and value:
            items = sorted(value.items()) if key == "versions" else list(value.items())
            rows = [(f'<span class="mono">{html.escape(str(k))}</span>', _e(v)) for k, v in items]
            parts.append(_kv_table(rows, head))
        else:
            parts.append(f'<p class="note">run.json has no {key}.</p>')

    parts.append("<h3>Configuration</h3>")
    if "config" in run:
        parts.append(f"<pre>{html.escape(_config_text(run['config']))}</pre>")
    else:
        parts.append('<p class="note">run.json has no config.</p>')

    extra = {k: v for k, v in run.items() if k not in _KNOWN}
    if extra:
        parts.append("<h3>Other run.json fields</h3>")
        text = json.dumps(extra, indent=2, ensure_ascii=False, default=str)
        parts.append(f"<pre>{html.escape(text)}</pre>")
    return "\n".join(parts)
