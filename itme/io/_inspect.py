"""Summaries of FCS files, folders and sample sheets (``itme inspect``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import pandas as pd

from itme._progress import track
from itme.errors import ItmeInputError
from itme.io._channels import file_channels
from itme.io._cohort_panel import match_file
from itme.io._fcs_format import FcsFile, parse_fcs
from itme.io._tables import read_panel, read_samples

__all__ = ["CohortSummary", "summarize"]

_TABLE_SUFFIXES = {".csv", ".tsv", ".txt"}


@dataclass
class CohortSummary:
    """What :func:`summarize` found: one row per file, one row per channel, the problems."""

    files: pd.DataFrame
    channels: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    mapping: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_text(self) -> str:
        """Plain-text rendering.

        Returns
        -------
        What ``itme inspect`` prints: totals, the files, the channels, the panel channels
        found other than by ``$PnN`` (file by file) and the problems.
        """
        parts = [f"{len(self.files)} file(s), {int(self.files['events'].sum())} events"]
        with pd.option_context(
            "display.width", 200, "display.max_colwidth", 60, "display.max_rows", 500
        ):
            parts += ["", "Files", self.files.to_string(index=False)]
            parts += ["", "Channels", self.channels.to_string(index=False)]
            if len(self.mapping):
                other = self.mapping[self.mapping["matched_by"] != "$PnN"]
                parts += ["", "Panel channels found other than by $PnN (per file)"]
                parts += [other.to_string(index=False) if len(other) else "none"]
        parts += ["", f"Problems ({len(self.problems)})"]
        parts += [f"- {p}" for p in self.problems] or ["none"]
        return "\n".join(parts)


def _files_of(path: Path) -> tuple[list[Path], list[str], Path | None]:
    """FCS files behind ``path`` (a file, a folder or a sample sheet) and early problems."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".fcs")
        return files, ([] if files else [f"no .fcs files under {path}"]), None
    if path.suffix.lower() in _TABLE_SUFFIXES:
        try:
            table, folder = read_samples(path)
        except ItmeInputError as exc:
            return [], [str(exc)], None
        files = [folder / name for name in table["file_name"]]
        return files, [], folder
    return [path], [], None


def summarize(
    path: str | PathLike[str], *, panel: str | PathLike[str] | None = None
) -> CohortSummary:
    """Summarise an FCS file, a folder of FCS files or a sample sheet, and list problems.

    Every file's HEADER and TEXT are parsed and its DATA segment located and checked against
    ``$TOT``, ``$PAR`` and the file size, so offset errors and truncation are found without
    reading the events; nothing raises: problems are collected. With a sample sheet, ``panel.csv`` in the same folder is
    used when ``panel`` is not given.

    Parameters
    ----------
    path
        An ``.fcs`` file, a folder (searched recursively for ``.fcs``), or samples.csv.
    panel
        Optional panel.csv: its marker classes are shown and its channels checked in every file.

    Returns
    -------
    CohortSummary with ``files`` (file, version, cytometer, date, events, channels, naming
    (the channel-naming convention of ``$PnN``, e.g. ``Pr141Di``), notes), ``mapping`` (with
    a panel: the ``$PnN`` each panel channel took in each file and how it was matched),
    ``channels`` (``$PnN``, ``$PnS``, marker class, number of files holding it) and
    ``problems`` (one line per problem).
    """
    path = Path(path)
    if not path.exists():
        return CohortSummary(
            pd.DataFrame(columns=["file", "events"]), pd.DataFrame(), [f"{path} does not exist"]
        )
    files, problems, folder = _files_of(path)
    if panel is None and folder is not None and (folder / "panel.csv").is_file():
        panel = folder / "panel.csv"
    panel_table = None
    if panel is not None:
        try:
            panel_table = read_panel(panel)
        except ItmeInputError as exc:
            problems.append(str(exc))
    rows, parsed, mapping = [], [], []
    for file in track(files, description="inspecting FCS files"):
        try:
            fcs: FcsFile = parse_fcs(file, only_text=True)
        except ItmeInputError as exc:
            problems.append(str(exc))
            rows.append(
                {
                    "file": file.name,
                    "version": "",
                    "cytometer": "",
                    "date": "",
                    "events": 0,
                    "channels": 0,
                    "naming": "",
                    "notes": "unreadable",
                }
            )
            continue
        parsed.append(fcs)
        notes = list(fcs.notes)
        if fcs.layout.error is not None:
            problems.append(str(fcs.layout.error))
            notes.append("events unreadable")
        kw = fcs.keywords
        conventions = [c for c in file_channels(fcs.channels)["convention"] if c]
        rows.append(
            {
                "file": file.name,
                "version": fcs.version,
                "cytometer": kw.get("$CYT", ""),
                "date": kw.get("$DATE", ""),
                "events": fcs.n_events,
                "channels": fcs.channels.shape[0],
                "naming": Counter(conventions).most_common(1)[0][0] if conventions else "",
                "notes": "; ".join(notes),
            }
        )
        if fcs.n_events == 0:
            problems.append(f"{file.name}: no events")
        dup = [n for n, c in Counter(fcs.channels["PnN"]).items() if c > 1]
        if dup:
            problems.append(f"{file.name}: duplicated $PnN {', '.join(dup)}")
        if panel_table is not None:
            match = match_file(fcs, panel_table)
            problems.extend(match.problems)
            found = match.columns
            absent = [
                n for n, i in zip(panel_table["fcs_colname"], found, strict=True) if i is None
            ]
            for name, col, how in zip(panel_table["fcs_colname"], found, match.how, strict=True):
                if col is not None:
                    mapping.append(
                        {
                            "file": file.name,
                            "panel": name,
                            "$PnN": fcs.channels["PnN"].iloc[col],
                            "matched_by": how,
                        }
                    )
            if absent:
                problems.append(f"{file.name}: panel channel(s) absent: {', '.join(absent)}")
    counts: Counter[tuple[str, str]] = Counter()
    for fcs in parsed:
        counts.update(zip(fcs.channels["PnN"], fcs.channels["PnS"], strict=True))
    groups: dict[frozenset[str], list[str]] = {}
    for fcs in parsed:
        parts = file_channels(fcs.channels)  # by metal: naming conventions may differ
        key = frozenset(m or n for m, n in zip(parts["metal"], parts["PnN"], strict=True))
        groups.setdefault(key, []).append(fcs.path.name)
    if len(groups) > 1:
        described = [
            f"{len(chans)} channels in {', '.join(names)}" for chans, names in groups.items()
        ]
        problems.append(
            f"{len(groups)} different channel sets among {len(parsed)} files ("
            + "; ".join(described)
            + "); read_cohort needs the panel channels in every file"
        )
    classes = {}
    if panel_table is not None:
        classes = dict(zip(panel_table["fcs_colname"], panel_table["marker_class"], strict=True))
    channels = pd.DataFrame(
        [
            {
                "$PnN": pnn,
                "$PnS": pns,
                "marker_class": classes.get(
                    pnn, classes.get(pns, "" if not classes else "(not in panel)")
                ),
                "files": n,
            }
            for (pnn, pns), n in counts.items()
        ],
        columns=["$PnN", "$PnS", "marker_class", "files"],
    )
    mapping_table = pd.DataFrame(mapping, columns=["file", "panel", "$PnN", "matched_by"])
    return CohortSummary(pd.DataFrame(rows), channels, problems, mapping_table)
