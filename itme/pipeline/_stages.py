"""The stages of an itme run, each declared once: function, parameters, inputs, outputs.

The stage functions live in :mod:`itme.pipeline._stages_cells` and
:mod:`itme.pipeline._stages_patients`; each unpacks its config section into library calls.
A stage's declaration lists every table and figure it writes and the report section that
shows it (:class:`~itme._outputs.Output`); the report reads the same declarations
(:data:`OUTPUTS`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from itme._outputs import Output, figure, table
from itme.io import BUILTIN_PHENOTYPES, read_samples
from itme.pipeline._config import Config
from itme.pipeline._runner import Context, Stage
from itme.pipeline._stages_batch import batch
from itme.pipeline._stages_cells import abundance, annotate, clean, cluster, ingest
from itme.pipeline._stages_differential import differential
from itme.pipeline._stages_patients import patients, rnaseq, statistics
from itme.pipeline._stages_store import on_store
from itme.pipeline._warnings import ITEMS as WARNING_ITEMS
from itme.pipeline._warnings import OUTPUT as WARNINGS

logger = logging.getLogger(__name__)


def _params(config: Config, *sections: str) -> dict[str, Any]:
    return {s: getattr(config, s).model_dump(mode="json") for s in sections}


def _cells(config: Config, *sections: str) -> dict[str, Any]:
    """Parameters of a cell-level stage: on the cohort store (``compute.backend``) it says so.

    The in-memory fingerprints are unchanged; switching between the paths reruns the stages.
    Nothing else of ``compute:`` (scheduler, workers, chunks) changes a result.
    """
    params = _params(config, *sections)
    return {**params, "backing": "store"} if on_store(config) else params


def _fcs_files(config: Config) -> list[Path]:
    samples, folder = read_samples(config.inputs.samples)
    return [
        config.inputs.samples,
        config.inputs.panel,
        *[(folder / f) for f in samples["file_name"]],
    ]


def _phenotype_files(config: Config) -> list[Path]:
    ph = config.inputs.phenotypes
    return [] if ph in BUILTIN_PHENOTYPES else [Path(ph)]


def _optional(*paths: Path | None) -> list[Path]:
    return [p for p in paths if p is not None]


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    return value


def report(ctx: Context) -> dict[str, Any]:
    """``summary.json`` from the stage summaries, then report.write_report → ``report.html``.

    A stage's summary goes to its declared report section; an entry named after a report
    section and holding a mapping (e.g. the stats stage's ``cytokines``) goes to that section.
    """
    from itme.report import SECTION_IDS, write_report

    sections: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        summary = ctx.summaries.get(stage.name) or {}
        if stage.section is None:
            continue
        for label, value in summary.items():
            if label in SECTION_IDS and isinstance(value, dict):
                for k, v in value.items():
                    sections.setdefault(label, {})[k] = _flat(v)
            elif label == "status":
                sections.setdefault(stage.section, {})["_status"] = value
            else:
                sections.setdefault(stage.section, {})[label.replace("_", " ")] = _flat(value)
    ctx.json(sections, "summary.json")
    ctx.record(write_report(ctx.out, title=ctx.config.report.title))
    return {}


STAGES = [
    Stage(
        "ingest",
        ingest,
        params=lambda c: _cells(c, "ingest"),
        inputs=lambda c: [*_fcs_files(c), *_optional(c.inputs.spillover)],
    ),
    Stage(
        "clean",
        clean,
        params=lambda c: _cells(c, "transform", "clean", "downsample"),
        requires=("ingest",),
        section="qc",
        outputs=(
            table("qc_events", "qc", "events in, removed by each step, out, per sample"),
            table("qc_thresholds", "qc", "every gate of every sample"),
            figure("qc_accounting", "qc", "events removed per step and sample"),
            figure("qc_gates", "qc", "the gates of a sample", variants=True),
            table(
                "qc_samples",
                "qc",
                "per-sample QC status: events kept, fraction kept, pass / excluded / flagged "
                "and why (clean.min_cells, clean.min_fraction_kept)",
            ),
        ),
    ),
    Stage(
        "batch",
        batch,
        params=lambda c: _cells(c, "batch"),
        requires=("clean",),
        section="batch",
        outputs=(
            table(
                "batch_medians_r2",
                "batch",
                "share of each marker's per-sample medians explained by batch",
                variants=True,
            ),
            table(
                "batch_shift", "batch", "mean change of each marker in each batch by the correction"
            ),
            table("batch_drift", "batch", "signal drift over acquisition time of each file"),
            figure("batch_mds", "batch", "per-sample marker medians (PCA) by batch", variants=True),
        ),
    ),
    Stage(
        "cluster",
        cluster,
        params=lambda c: _cells(c, "cluster"),
        requires=("clean", "batch"),
        section="clusters",
    ),
    Stage(
        "annotate",
        annotate,
        params=lambda c: {**_cells(c, "annotate", "embed"), "phenotypes": c.inputs.phenotypes},
        inputs=_phenotype_files,
        requires=("clean", "batch", "cluster"),
        section="clusters",
        outputs=(
            table("batch_label_share", "batch", "each subset's share of every batch's events"),
            figure("batch_labels", "batch", "each subset's share of every batch's events"),
            table("cluster_phenotypes", "clusters", "median marker expression per metacluster"),
            table("cluster_annotation", "clusters", "the subset each metacluster was named"),
            figure("clusters_heatmap", "clusters", "subset × marker medians"),
            figure("clusters_umap", "clusters", "UMAP of a subsample, by subset"),
        ),
    ),
    Stage(
        "abundance",
        abundance,
        params=lambda c: {**_cells(c), "phenotypes": c.inputs.phenotypes},
        inputs=lambda c: [*_phenotype_files(c), c.inputs.samples],
        requires=("annotate",),
        section="patients",
        outputs=(
            table("subset_frequencies", "patients", "samples × subsets, % of CD45+"),
            table(
                "sample_units",
                "patients",
                "the unit of analysis (patient and time point) of every file; files of one "
                "unit are pooled",
            ),
        ),
    ),
    Stage(
        "patients",
        patients,
        params=lambda c: _params(c, "patients"),
        inputs=lambda c: _optional(c.inputs.clinical),
        requires=("abundance",),
        section="patients",
        outputs=(
            table("itme_clusters", "patients", "iTME cluster of every sample"),
            table("cluster_diagnostics", "patients", "within-SS, silhouette, gap over k"),
            table("stability", "patients", "bootstrap mean Jaccard per cluster"),
            table("sensitivity", "patients", "re-clustering without some patients: kappa"),
            table(
                "timepoint_changes",
                "patients",
                "patients with several time points: iTME cluster at each, changed or not",
            ),
            figure("patients_heatmap", "patients", "Ward dendrogram and subset heatmap"),
            figure("patients_compartments", "patients", "compartments by iTME cluster"),
        ),
    ),
    Stage(
        "stats",
        statistics,
        params=lambda c: _params(c, "stats", "cytokines"),
        inputs=lambda c: _optional(c.inputs.clinical, c.inputs.cytokines),
        requires=("patients",),
        section="stats",
        outputs=(
            table("subset_tests", "stats", "Kruskal–Wallis + BH per subset"),
            table("compartment_tests", "stats", "Kruskal–Wallis + BH per derived feature"),
            table(
                "subsets_not_tested",
                "stats",
                "features left out of the tests and why: unassigned events (with their count), "
                "subsets never found, constant or missing features",
            ),
            table("subset_posthoc", "stats", "Dunn's pairwise tests of significant subsets"),
            table("clinical_table", "clinical", "patient characteristics by group"),
            table("survival", "survival", "Kaplan–Meier medians per group"),
            table("logrank", "survival", "log-rank tests"),
            table("cox", "survival", "Cox proportional-hazards models"),
            table("cytokine_tests", "cytokines", "cytokines compared between groups"),
            figure("stats_subset_boxplots", "stats", "significant subsets by group"),
            figure("survival", "survival", "Kaplan–Meier curves of an endpoint", variants=True),
        ),
    ),
    Stage(
        "rnaseq",
        rnaseq,
        params=lambda c: {**_params(c, "rnaseq"), "timepoint": c.stats.timepoint},
        inputs=lambda c: _optional(c.inputs.clinical, c.inputs.counts),
        requires=("patients",),
        section="rna",
        outputs=(
            table("de_results", "rna", "DESeq2 results of a contrast", variants=True),
            table("gsea", "rna", "GSEA of a contrast (gsea_hallmark[_<contrast>])", variants=True),
            table("pathway_scores", "rna", "per-sample pathway scores"),
            table("pathway_subset_correlations", "rna", "pathway scores × subsets"),
            figure("rna_volcano", "rna", "volcano plot of a contrast", variants=True),
            figure("rna_gsea", "rna", "NES of the gene sets of a contrast", variants=True),
        ),
    ),
    Stage(
        "differential",
        differential,
        params=lambda c: {
            "design": None if c.design is None else c.design.model_dump(mode="json"),
            "fdr": c.stats.fdr,
        },
        inputs=lambda c: [] if c.design is None else [c.inputs.samples],
        requires=("annotate", "patients"),
        section="differential",
        outputs=(
            table(
                "differential_abundance",
                "differential",
                "subset abundance between conditions (NB GLM or binomial GLMM; R-style columns)",
                variants=True,
            ),
            table(
                "differential_state",
                "differential",
                "state-marker medians within subsets between conditions (LMM / least squares)",
                variants=True,
            ),
            figure("ds_heatmap", "differential", "top differential-state calls", variants=True),
            figure("ds_density", "differential", "densities of the top state calls", variants=True),
            figure("pbmds", "differential", "pseudobulk MDS of the samples by condition"),
        ),
    ),
    Stage(
        "report",
        report,
        params=lambda c: _params(c, "report"),
        requires=(
            "ingest",
            "clean",
            "batch",
            "cluster",
            "annotate",
            "abundance",
            "patients",
            "stats",
            "rnaseq",
            "differential",
        ),
    ),
]
STAGE_NAMES = [s.name for s in STAGES]
#: every declared table and figure, as (stage name, output) pairs, in run order; last the
#: tables the runner writes at the end of every run (``tables/warnings.csv``,
#: ``tables/warning_items.csv``), as stage "run"
OUTPUTS: tuple[tuple[str, Output], ...] = (
    *((s.name, o) for s in STAGES for o in s.outputs),
    ("run", WARNINGS),
    ("run", WARNING_ITEMS),
)
