"""The report's inline stylesheet and Content-Security-Policy (no external resources)."""

from __future__ import annotations

__all__ = ["CSP", "CSS"]

#: the page may load nothing from anywhere: images only as data: URIs, inline CSS only
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2b5fa8;
        --sig: #fff3c4; --bad: #b3261e; --okc: #1b6e3a; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--line); background: #f6f8fb; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 32px; border-bottom: 1px solid var(--line); }
nav ol { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav a { color: var(--accent); text-decoration: none; }
nav .tag { font-size: 11px; color: var(--muted); }
main { padding: 0 32px 40px; max-width: 1500px; }
section { padding: 8px 0 16px; border-bottom: 1px solid var(--line); }
h2 { font-size: 20px; margin: 18px 0 6px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
p.intro { color: var(--muted); margin: 0 0 10px; }
p.note { color: var(--muted); margin: 4px 0; font-size: 13px; }
p.status { font-size: 15px; padding: 8px 12px; background: #f1f3f7; border-left: 4px solid #9aa3b2; }
p.status.failed, p.banner { border-left-color: var(--bad); background: #fdecea; }
p.banner { padding: 8px 12px; border-left: 4px solid var(--bad); }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f8fb; border: 1px solid var(--line); padding: 10px; overflow-x: auto; max-height: 600px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.scroll { overflow: auto; max-width: 100%; max-height: 70vh; border-bottom: 1px solid var(--line); }
table { border-collapse: collapse; margin: 4px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid var(--line); padding: 3px 7px; vertical-align: top; }
th { background: #eef1f6; position: sticky; top: 0; text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.sig td { background: var(--sig); }
td.q-sig { font-weight: 600; }
p.caption { margin: 10px 0 2px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { color: var(--muted); font-size: 13px; }
figcaption .file { font-size: 12px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; background: #e7eaf0; }
.badge.done { background: #dff3e5; color: var(--okc); }
.badge.skipped { background: #e4ecf8; color: var(--accent); }
.badge.failed { background: #fdecea; color: var(--bad); }
.badge.not-run { background: #f1f3f7; color: var(--muted); }
footer { padding: 12px 32px 30px; color: var(--muted); font-size: 12px; }
@media print { nav { display: none; } th { position: static; } pre, .scroll { max-height: none; } }
"""
