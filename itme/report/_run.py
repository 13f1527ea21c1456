"""Read what a pipeline run left in its folder: run.json, summary.json, tables, figures.

Nothing here raises on a damaged file: the report says what could not be read instead
(a report is most useful exactly when a run went wrong).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itme._outputs import Output, find_output
from itme.errors import ItmeInputWarning
from itme.pipeline import OUTPUTS, STAGE_NAMES

#: the stage that writes the report runs last: while it writes, run.json says it is running
_REPORT_STAGE = STAGE_NAMES[-1]

__all__ = [
    "SECTIONS",
    "SECTION_IDS",
    "RunFolder",
    "Section",
    "load_run",
    "section_of_figure",
    "section_outputs",
    "stage_of_table",
    "table_status",
]


@dataclass(frozen=True)
class Section:
    """One report section: anchor and summary key, heading, intro.

    Which tables and figures it shows is declared by the stages that write them
    (:data:`itme.pipeline.OUTPUTS`); see :func:`section_outputs`.
    """

    id: str
    title: str
    intro: str


SECTIONS: tuple[Section, ...] = (
    Section("overview", "Overview", "What was run, when, and the headline numbers."),
    Section(
        "qc",
        "QC accounting",
        "Events in and out per sample, and the events removed at each cleaning step "
        "(beads, debris, doublets, dead cells, CD45&minus;; the first failing step wins).",
    ),
    Section(
        "batch",
        "Batch effects",
        "Per-sample marker medians by acquisition batch before and after correction, the share "
        "of their variance explained by batch, and each subset's share of every batch's events.",
    ),
    Section(
        "clusters",
        "Cluster phenotypes",
        "Median marker expression of each cluster and the subset it was annotated as.",
    ),
    Section(
        "patients",
        "iTME clusters and robustness",
        "Patients clustered (Ward) on subset frequencies (% of CD45+), with bootstrap "
        "stability (mean Jaccard per cluster) and the sensitivity analysis (Cohen's kappa).",
    ),
    Section(
        "stats",
        "Subset statistics",
        "Subset frequencies compared between iTME clusters (Kruskal&ndash;Wallis, "
        "Benjamini&ndash;Hochberg FDR).",
    ),
    Section(
        "differential",
        "Differential abundance and state",
        "Subset abundance (negative-binomial GLM with the sample totals as offset, or binomial "
        "GLMM) and state-marker medians within subsets (linear mixed model with a random "
        "intercept per pairing level, or least squares) between the conditions of the "
        "config's design, as diffcyt/CATALYST; Benjamini&ndash;Hochberg FDR.",
    ),
    Section(
        "clinical",
        "Clinical table",
        "Patient characteristics by iTME cluster.",
    ),
    Section(
        "survival",
        "Survival",
        "Kaplan&ndash;Meier medians with 95% CI and Cox proportional-hazards models.",
    ),
    Section(
        "rna",
        "Differential expression and GSEA",
        "Tumour RNA-seq between iTME clusters (DESeq2 model) and Hallmark gene-set "
        "enrichment (preranked GSEA).",
    ),
    Section(
        "cytokines",
        "Cytokines",
        "Cytokine concentrations (log10) compared between iTME clusters.",
    ),
    Section("provenance", "Provenance", "Versions, configuration, seed, inputs and timings."),
)

#: ids of the report sections (a stage summary entry with one of these names goes there)
SECTION_IDS = tuple(s.id for s in SECTIONS)


def section_outputs(section: str, kind: str) -> list[Output]:
    """The tables or figures the stages declare for a section, in run order.

    Parameters
    ----------
    section
        A section id.
    kind
        ``"table"`` or ``"figure"``.

    Returns
    -------
    The declared outputs.
    """
    return [o for _, o in OUTPUTS if o.kind == kind and o.section == section]


def section_of_figure(stem: str) -> str:
    """The section of a figure file (by the declaring stage), ``"other"`` when undeclared.

    Parameters
    ----------
    stem
        The figure's file name without suffix.

    Returns
    -------
    A section id.
    """
    found = find_output(OUTPUTS, "figure", stem)
    return "other" if found is None else found[1].section


@dataclass
class RunFolder:
    """What :func:`load_run` found."""

    root: Path
    run: dict[str, Any] = field(default_factory=dict)
    run_problem: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    summary_problem: str | None = None
    tables: dict[str, Path] = field(default_factory=dict)  # name -> csv path
    other_files: list[str] = field(default_factory=list)  # tables/ entries that are not CSV

    def stages(self) -> list[dict[str, Any]]:
        """The stage records of run.json that are mappings (others are ignored).

        Returns
        -------
        The records, in run order.
        """
        stages = self.run.get("stages")
        if not isinstance(stages, list):
            return []
        return [s for s in stages if isinstance(s, dict)]


def _read_json(path: Path, what: str) -> tuple[dict[str, Any], str | None]:
    if not path.is_file():
        return {}, "not found"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"could not be read ({type(exc).__name__}: {exc})"
        warnings.warn(f"report: {what} {problem}", ItmeInputWarning, stacklevel=4)
        return {}, problem
    if not isinstance(data, dict):
        problem = f"is not a JSON object (found {type(data).__name__})"
        warnings.warn(f"report: {what} {problem}", ItmeInputWarning, stacklevel=4)
        return {}, problem
    return data, None


def load_run(run_dir: Path) -> RunFolder:
    """Index a run folder (reads the JSON files; tables and figures are read later).

    Parameters
    ----------
    run_dir
        The run folder.

    Returns
    -------
    The :class:`RunFolder`; a missing or damaged JSON file is recorded (and warned about),
    not raised.
    """
    folder = RunFolder(root=run_dir)
    folder.run, folder.run_problem = _read_json(run_dir / "run.json", "run.json")
    _report_stage_done(folder.run)
    if folder.run_problem == "not found":
        warnings.warn(
            f"report: {run_dir / 'run.json'} not found; the provenance section will be empty",
            ItmeInputWarning,
            stacklevel=3,
        )
    folder.summary, folder.summary_problem = _read_json(run_dir / "summary.json", "summary.json")
    table_dir = run_dir / "tables"
    if table_dir.is_dir():
        for path in sorted(table_dir.iterdir(), key=lambda p: p.name):
            if path.name.startswith("."):
                continue  # e.g. the temporary file of an atomic write in progress
            if path.suffix == ".csv" and path.is_file():
                folder.tables[path.stem] = path
            else:
                folder.other_files.append(path.name)
    return folder


def _report_stage_done(run: dict[str, Any]) -> None:
    """run.json as the report stage sees it, with that stage done: it is writing this page.

    The runner records a stage as running before calling it, so the page written by the
    report stage would otherwise show the report stage (and the run) as still running.
    """
    stages = run.get("stages")
    if run.get("status") != "running" or not isinstance(stages, list):
        return
    running = [s for s in stages if isinstance(s, dict) and s.get("status") == "running"]
    if len(running) == 1 and running[0].get("name") == _REPORT_STAGE:
        running[0]["status"] = "done"
        run["status"] = "done"


def _record(folder: RunFolder, stage: str | None) -> dict[str, Any] | None:
    return next((s for s in folder.stages() if str(s.get("name")) == stage), None)


def _owner_stage(folder: RunFolder, table: str) -> str | None:
    for stage in folder.stages():
        outputs = stage.get("outputs") or []
        if isinstance(outputs, list) and any(
            str(o).replace("\\", "/").rsplit("/", 1)[-1] == f"{table}.csv" for o in outputs
        ):
            return str(stage.get("name"))
    found = find_output(OUTPUTS, "table", table)
    return None if found is None else found[0]


def table_status(folder: RunFolder, table: str) -> tuple[str, str]:
    """Why a table is absent from a run.

    Parameters
    ----------
    folder
        The run folder.
    table
        The table's name (CSV stem).

    Returns
    -------
    ``(kind, reason)``, kind one of ``not run``, ``no input``, ``failed``.
    """
    stage = _owner_stage(folder, table)
    if stage is None:
        return "not run", f"no stage of this run writes {table}.csv"
    record = _record(folder, stage)
    if record is None:
        return "not run", f"the {stage} stage is not in run.json"
    status = str(record.get("status", "not run"))
    if status == "failed":
        return "failed", f"the {stage} stage failed"
    if status == "not run":
        return "not run", f"the {stage} stage was not run"
    return "no input", f"the {stage} stage ran ({status}) and wrote no {table}.csv"


def stage_of_table(folder: RunFolder, table: str) -> dict[str, Any] | None:
    """The run.json record of the stage that writes a table.

    Parameters
    ----------
    folder
        The run folder.
    table
        The table's name (CSV stem).

    Returns
    -------
    The stage's record, or ``None`` when no stage in run.json writes it.
    """
    return _record(folder, _owner_stage(folder, table))
