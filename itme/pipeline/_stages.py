"""The stages of an itme run: each unpacks its config section into library calls.

Stages exchange data through files in the run folder only (``work/*.h5ad``, ``patients.h5ad``,
``cells.h5ad``), so any stage can be rerun or resumed on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from itme import io, pl, pp, rna, stats, tl
from itme.core.clean.steps import GATING_COFACTOR
from itme.errors import ItmeInputError, ItmeStateError
from itme.io import BUILTIN_PHENOTYPES, read_samples
from itme.pipeline._config import Clean as CleanSection
from itme.pipeline._config import Config
from itme.pipeline._files import write_figure, write_h5ad, write_json, write_table
from itme.pipeline._runner import Context, Stage

logger = logging.getLogger(__name__)

Result = tuple[list[Path], dict[str, Any]]


def _params(config: Config, *sections: str) -> dict[str, Any]:
    return {s: getattr(config, s).model_dump(mode="json") for s in sections}


def _fcs_files(config: Config) -> list[Path]:
    table, folder = read_samples(config.inputs.samples)
    return [config.inputs.samples, config.inputs.panel, *[(folder / f) for f in table["file_name"]]]


def _phenotype_files(config: Config) -> list[Path]:
    ph = config.inputs.phenotypes
    return [] if ph in BUILTIN_PHENOTYPES else [Path(ph)]


def _optional(*paths: Path | None) -> list[Path]:
    return [p for p in paths if p is not None]


def _clinical(config: Config) -> pd.DataFrame | None:
    return io.read_clinical(config.inputs.clinical) if config.inputs.clinical else None


def _obs_only(adata: ad.AnnData, columns: list[str], uns_keys: list[str]) -> ad.AnnData:
    return ad.AnnData(
        obs=adata.obs[columns].copy(), uns={k: adata.uns[k] for k in uns_keys if k in adata.uns}
    )


# --- CyTOF stages --------------------------------------------------------------------------


def ingest(ctx: Context) -> Result:
    """io.read_cohort → ``work/ingest.h5ad``."""
    c = ctx.config
    cells = io.read_cohort(c.inputs.samples, c.inputs.panel, unpanelled=c.ingest.unpanelled)
    path = write_h5ad(ctx.path("work", "ingest.h5ad"), cells)
    files = cells.uns["io"]["files"]
    return [path], {"files": len(files), "events": int(cells.n_obs), "channels": int(cells.n_vars)}


def _clean_kwargs(section: CleanSection) -> dict[str, Any]:
    """The keyword arguments of pp.clean from the config's ``clean`` section.

    Config step names are pp.clean's (aliases resolved by the config) and config gates
    ``[low, high]`` are on pp.clean's gating scale ``arcsinh(raw / GATING_COFACTOR)``: both
    pass unchanged.
    """
    return {
        "steps": list(section.steps) if section.steps else None,
        "channels": section.channels,
        "thresholds": dict(section.thresholds) if section.thresholds else None,
        "method": section.method,
        "k": section.k,
        "cofactor": GATING_COFACTOR,
    }


def clean(ctx: Context) -> Result:
    """pp.arcsinh, pp.clean, pp.apply_qc, pp.downsample → ``work/clean.h5ad``, QC tables."""
    c = ctx.config
    cells = ad.read_h5ad(ctx.path("work", "ingest.h5ad"))
    pp.arcsinh(cells, cofactor=c.transform.cofactor)
    pp.clean(cells, **_clean_kwargs(c.clean))
    outputs = [
        write_table(
            ctx.path("tables", "qc_events.csv"), cells.uns["qc"]["accounting"], index=False
        ),
        write_table(
            ctx.path("tables", "qc_thresholds.csv"), cells.uns["qc"]["thresholds"], index=False
        ),
    ]
    outputs += write_figure(ctx.path("figures"), "qc_accounting", pl.qc_accounting(cells))
    for sample in list(cells.obs["sample_id"].cat.categories)[:3]:
        outputs += write_figure(
            ctx.path("figures"), f"qc_gates_{sample}", pl.qc_gates(cells, sample=sample)
        )
    events_in = int(cells.n_obs)
    kept = pp.apply_qc(cells)
    del cells
    d = c.downsample
    if d.n is not None or d.min_events is not None:
        kept = pp.downsample(
            kept, n=d.n, min_events=d.min_events, on_small=d.on_small, rng=ctx.seed
        )
    outputs.append(write_h5ad(ctx.path("work", "clean.h5ad"), kept))
    excluded = list(kept.uns.get("downsample", {}).get("excluded", []))
    return outputs, {
        "events_in": events_in,
        "events_kept": int(kept.n_obs),
        "samples_excluded": excluded,
    }


def cluster(ctx: Context) -> Result:
    """tl.flowsom → ``work/cluster.h5ad`` (the labels only)."""
    c = ctx.config.cluster
    cells = ad.read_h5ad(ctx.path("work", "clean.h5ad"))
    tl.flowsom(
        cells,
        markers=c.markers,
        grid=c.grid,
        n_metaclusters=c.n_metaclusters,
        train_cells=c.train_cells,
        rlen=c.rlen,
        metaclustering=c.metaclustering,
        merge_floor=c.merge_floor,
        rng=ctx.seed,
    )
    path = write_h5ad(
        ctx.path("work", "cluster.h5ad"), _obs_only(cells, ["som_node", "metacluster"], ["flowsom"])
    )
    return [path], {"metaclusters": int(cells.obs["metacluster"].nunique())}


def annotate(ctx: Context) -> Result:
    """tl.annotate, tl.embed → ``cells.h5ad``, cluster tables and figures."""
    c = ctx.config
    cells = ad.read_h5ad(ctx.path("work", "clean.h5ad"))
    labels = ad.read_h5ad(ctx.path("work", "cluster.h5ad"))
    for col in labels.obs.columns:
        cells.obs[col] = labels.obs[col].to_numpy()
    cells.uns.update(labels.uns)
    tl.annotate(cells, phenotypes=c.inputs.phenotypes, mapping=c.annotate.mapping)
    outputs = [
        write_table(
            ctx.path("tables", "cluster_phenotypes.csv"),
            tl.cluster_phenotypes(cells, groupby="metacluster"),
        ),
        write_table(ctx.path("tables", "cluster_annotation.csv"), cells.uns["subset"]["clusters"]),
    ]
    outputs += write_figure(
        ctx.path("figures"), "clusters_heatmap", pl.cluster_heatmap(cells, groupby="subset")
    )
    if c.embed.enabled:
        tl.embed(cells, n_cells=min(c.embed.n_cells, cells.n_obs), rng=ctx.seed)
        outputs += write_figure(
            ctx.path("figures"), "clusters_umap", pl.embedding(cells, color="subset")
        )
    outputs.append(write_h5ad(ctx.path("cells.h5ad"), cells))
    unassigned = float((cells.obs["subset"] == "unassigned").mean() * 100)
    return outputs, {
        "subsets": int(cells.obs["subset"].nunique()),
        "pct_unassigned": round(unassigned, 2),
    }


def abundance(ctx: Context) -> Result:
    """tl.abundance → ``work/abundance.h5ad`` and ``subset_frequencies.csv``."""
    cells = ad.read_h5ad(ctx.path("cells.h5ad"), backed="r")
    patients = tl.abundance(cells, phenotypes=ctx.config.inputs.phenotypes)
    cells.file.close()
    freq = patients.to_df().join(patients.obsm["derived"])
    outputs = [
        write_table(ctx.path("tables", "subset_frequencies.csv"), freq),
        write_h5ad(ctx.path("work", "abundance.h5ad"), patients),
    ]
    return outputs, {"samples": int(patients.n_obs), "subsets": int(patients.n_vars)}


# --- patient-level stages ------------------------------------------------------------------


def _joined_clinical(config: Config, patients: ad.AnnData) -> dict[str, Any] | None:
    """The clinical join the patients stage stored in ``patients.h5ad`` (None without clinical)."""
    joined = patients.uns.get("clinical")
    if joined is None and config.inputs.clinical is not None:
        raise ItmeStateError(
            "patients.h5ad has no joined clinical table (uns['clinical']) although the config "
            "names inputs.clinical: it was written by an older itme. Rerun from the patients "
            "stage: itme run CONFIG --from patients"
        )
    return joined


def _exclusions(config: Config, patients: ad.AnnData) -> list[str]:
    """Patients left out of the sensitivity re-clustering: a list, or a yes/no obs column."""
    spec = config.patients.sensitivity_exclude
    if spec is None:
        return []
    if isinstance(spec, list):
        return spec
    if spec not in patients.obs.columns:
        raise ItmeInputError(
            "patients.sensitivity_exclude names a column that is not in clinical.csv",
            where="config",
            found=spec,
            fix="Give a yes/no column of clinical.csv (inputs.clinical) or a list of patient ids",
        )
    values = patients.obs[spec].astype(object)
    numeric = pd.to_numeric(values, errors="coerce")
    flag = (numeric == 1) | values.astype(str).str.strip().str.lower().isin(["true", "yes", "y"])
    return sorted(set(patients.obs.loc[flag, "patient_id"].astype(str)))


def patients(ctx: Context) -> Result:
    """io.add_clinical, tl.patient_clusters, cluster_sensitivity, cluster_stability →
    ``patients.h5ad`` (with the clinical table joined into ``obs``)."""
    c = ctx.config
    adata = ad.read_h5ad(ctx.path("work", "abundance.h5ad"))
    clinical = _clinical(c)
    if clinical is not None:
        io.add_clinical(adata, clinical)
    transform = None if c.patients.transform == "none" else c.patients.transform
    tl.patient_clusters(
        adata,
        k=c.patients.k,
        transform=transform,
        features=c.patients.features,
        rng=ctx.seed,
    )
    outputs = []
    summary: dict[str, Any] = {
        "k": c.patients.k,
        "sizes": adata.obs["itme_cluster"].value_counts().sort_index().to_dict(),
    }
    exclude = _exclusions(c, adata)
    if exclude:
        tl.cluster_sensitivity(adata, exclude=exclude)
        sens = adata.uns["itme_cluster_sensitivity"]
        row = {k: sens[k] for k in ("kappa", "kappa_se", "z", "pvalue", "n", "n_changed")}
        row["changed"] = ";".join(map(str, sens["changed"]))
        row["excluded"] = ";".join(map(str, sens["excluded"]))
        outputs.append(
            write_table(ctx.path("tables", "sensitivity.csv"), pd.DataFrame([row]), index=False)
        )
        summary["kappa"] = float(sens["kappa"])
    if c.patients.bootstrap:
        tl.cluster_stability(adata, n_boot=c.patients.bootstrap, rng=ctx.seed)
        stab = adata.uns["itme_cluster_stability"]["clusters"]
        outputs.append(write_table(ctx.path("tables", "stability.csv"), stab, index=False))
        summary["min_mean_jaccard"] = float(stab["mean_jaccard"].min())
    assign = adata.obs[["patient_id", "itme_cluster"]].copy()
    outputs.append(write_table(ctx.path("tables", "itme_clusters.csv"), assign))
    outputs.append(
        write_table(
            ctx.path("tables", "cluster_diagnostics.csv"),
            adata.uns["itme_cluster"]["diagnostics"],
            index=False,
        )
    )
    outputs += write_figure(ctx.path("figures"), "patients_heatmap", pl.patient_heatmap(adata))
    outputs += write_figure(
        ctx.path("figures"), "patients_compartments", pl.compartment_bars(adata)
    )
    outputs.append(write_h5ad(ctx.path("patients.h5ad"), adata))
    return outputs, summary


def statistics(ctx: Context) -> Result:
    """Subset tests, clinical table, survival and cytokine tests → tables and figures.

    Reads ``patients.h5ad``, whose ``obs`` carries the clinical columns (joined once by the
    patients stage) and whose ``uns["clinical"]["table"]`` the whole clinical table.
    """
    c = ctx.config
    s = c.stats
    adata = ad.read_h5ad(ctx.path("patients.h5ad"))
    joined = _joined_clinical(c, adata)
    outputs: list[Path] = []
    tests = stats.compare_groups(adata, groupby=s.groupby)
    derived = stats.compare_groups(adata, groupby=s.groupby, source="derived")
    outputs.append(write_table(ctx.path("tables", "subset_tests.csv"), tests, index=False))
    outputs.append(write_table(ctx.path("tables", "compartment_tests.csv"), derived, index=False))
    significant = tests.loc[tests["padj"] < s.fdr, "feature"].tolist()
    if significant:
        post = stats.posthoc_dunn(adata, groupby=s.groupby, features=significant)
        outputs.append(write_table(ctx.path("tables", "subset_posthoc.csv"), post, index=False))
        outputs += write_figure(
            ctx.path("figures"),
            "stats_subset_boxplots",
            pl.subset_boxplots(adata, results=tests, groupby=s.groupby, alpha=s.fdr),
        )
    summary: dict[str, Any] = {
        "subsets_tested": len(tests),
        "subsets_significant": len(significant),
    }
    if joined is not None:
        table = stats.clinical_table(adata, groupby=s.groupby, variables=s.clinical_variables)
        outputs.append(write_table(ctx.path("tables", "clinical_table.csv"), table, index=False))
        km, lr, cox = [], [], []
        for endpoint in s.endpoints:
            km.append(
                stats.kaplan_meier(adata, endpoint=endpoint, groupby=s.groupby).assign(
                    endpoint=endpoint
                )
            )
            lr.append(
                stats.logrank_test(adata, endpoint=endpoint, groupby=s.groupby).assign(
                    endpoint=endpoint
                )
            )
            cox.append(
                stats.cox_ph(
                    adata,
                    covariates=[s.groupby, *s.cox_covariates],
                    endpoint=endpoint,
                    reference=s.reference_levels or None,
                ).assign(endpoint=endpoint)
            )
            outputs += write_figure(
                ctx.path("figures"),
                f"survival_{endpoint}",
                pl.kaplan_meier(adata, endpoint=endpoint),
            )
        outputs.append(write_table(ctx.path("tables", "survival.csv"), pd.concat(km), index=False))
        outputs.append(write_table(ctx.path("tables", "logrank.csv"), pd.concat(lr), index=False))
        outputs.append(write_table(ctx.path("tables", "cox.csv"), pd.concat(cox), index=False))
    if c.inputs.cytokines is not None:
        cyt = io.read_cytokines(c.inputs.cytokines)
        if joined is not None:  # every clinical patient, also those without a CyTOF sample
            io.add_clinical(cyt, joined["table"])
        frames = []
        for g in c.cytokines.groupby:
            frames.append(stats.compare_cytokines(cyt, groupby=g, patients=adata).assign(groupby=g))
        table = pd.concat(frames)
        outputs.append(write_table(ctx.path("tables", "cytokine_tests.csv"), table, index=False))
        summary["cytokines_significant"] = int((table["padj"] < s.fdr).sum())
    return outputs, summary


def rnaseq(ctx: Context) -> Result:
    """rna.differential_expression, rna.gsea, rna.pathway_scores per contrast → tables."""
    c = ctx.config
    if c.inputs.counts is None:
        return [], {"status": "no input"}
    patients_ = ad.read_h5ad(ctx.path("patients.h5ad"))
    joined = _joined_clinical(c, patients_)  # the whole table, read by the patients stage
    counts = rna.read_counts(c.inputs.counts, clinical=None if joined is None else joined["table"])
    io.add_clinical(counts, patients_.obs[["patient_id", "itme_cluster"]], key_added="patients")
    outputs: list[Path] = []
    summary: dict[str, Any] = {}
    # one independent GSEA seed per contrast (STYLE.md §7)
    seeds = np.random.SeedSequence(ctx.seed).spawn(len(c.rnaseq.contrasts))
    for k, (contrast, seed) in enumerate(zip(c.rnaseq.contrasts, seeds, strict=True)):
        suffix = "" if k == 0 else f"_{contrast.name}"
        design = "~ " + " + ".join([*c.rnaseq.covariates, contrast.groupby])
        de = rna.differential_expression(
            counts,
            contrast=(contrast.groupby, contrast.test, contrast.reference),
            design=design,
            min_count=c.rnaseq.min_count,
        )
        outputs.append(write_table(ctx.path("tables", f"de_results{suffix}.csv"), de))
        gs = rna.gsea(
            de, gene_sets=c.rnaseq.gene_sets, permutations=c.rnaseq.permutations, rng=seed
        )
        name = "gsea_hallmark" if c.rnaseq.gene_sets == "hallmark" else "gsea"
        outputs.append(write_table(ctx.path("tables", f"{name}{suffix}.csv"), gs, index=False))
        outputs += write_figure(
            ctx.path("figures"), f"rna_volcano_{contrast.name}", pl.volcano(de, title=contrast.name)
        )
        outputs += write_figure(
            ctx.path("figures"), f"rna_gsea_{contrast.name}", pl.gsea_nes(gs, title=contrast.name)
        )
        summary[contrast.name] = {
            "genes_tested": int(de["padj"].notna().sum()),
            "genes_padj_0.1": int((de["padj"] < 0.1).sum()),
            "pathways_fdr_0.05": int((gs["FDR"] < 0.05).sum()),
        }
    rna.pathway_scores(counts, gene_sets=c.rnaseq.gene_sets)
    scores = counts.obsm["pathway_scores"]
    outputs.append(write_table(ctx.path("tables", "pathway_scores.csv"), scores))
    # tumour pathways against immune subsets across patients (Pearson, as the paper; BH)
    immune = (
        patients_.to_df().join(patients_.obsm["derived"]).set_index(patients_.obs["patient_id"])
    )
    per_patient = scores.set_index(counts.obs["patient_id"]).join(immune, how="inner")
    corr = stats.correlate(
        per_patient, x=list(scores.columns), y=list(immune.columns), method="pearson"
    )
    outputs.append(
        write_table(ctx.path("tables", "pathway_subset_correlations.csv"), corr, index=False)
    )
    summary["pathway-subset pairs at q < 0.05"] = int((corr["padj"] < c.stats.fdr).sum())
    return outputs, summary


_SECTIONS = {
    "clean": "qc",
    "cluster": "clusters",
    "annotate": "clusters",
    "abundance": "patients",
    "patients": "patients",
    "stats": "stats",
    "rnaseq": "rna",
}


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    return value


def report(ctx: Context) -> Result:
    """``summary.json`` from the stage summaries, then report.write_report → ``report.html``."""
    from itme.report import write_report

    sections: dict[str, dict[str, Any]] = {}
    for stage, summary in ctx.summaries.items():
        target = _SECTIONS.get(stage)
        if target is None:
            continue
        for label, value in (summary or {}).items():
            if label == "cytokines_significant":
                label = f"analytes at q < {ctx.config.stats.fdr:g}"
                sections.setdefault("cytokines", {})[label] = value
            elif label == "status":
                sections.setdefault(target, {})["_status"] = value
            else:
                sections.setdefault(target, {})[label.replace("_", " ")] = _flat(value)
    outputs = [write_json(ctx.path("summary.json"), sections)]
    outputs.append(write_report(ctx.out, title=ctx.config.report.title))
    return outputs, {}


STAGES = [
    Stage("ingest", ingest, params=lambda c: _params(c, "ingest"), inputs=_fcs_files),
    Stage(
        "clean",
        clean,
        params=lambda c: _params(c, "transform", "clean", "downsample"),
        requires=("ingest",),
    ),
    Stage("cluster", cluster, params=lambda c: _params(c, "cluster"), requires=("clean",)),
    Stage(
        "annotate",
        annotate,
        params=lambda c: {**_params(c, "annotate", "embed"), "phenotypes": c.inputs.phenotypes},
        inputs=_phenotype_files,
        requires=("clean", "cluster"),
    ),
    Stage(
        "abundance",
        abundance,
        params=lambda c: {"phenotypes": c.inputs.phenotypes},
        inputs=_phenotype_files,
        requires=("annotate",),
    ),
    Stage(
        "patients",
        patients,
        params=lambda c: _params(c, "patients"),
        inputs=lambda c: _optional(c.inputs.clinical),
        requires=("abundance",),
    ),
    Stage(
        "stats",
        statistics,
        params=lambda c: _params(c, "stats", "cytokines"),
        inputs=lambda c: _optional(c.inputs.clinical, c.inputs.cytokines),
        requires=("patients",),
    ),
    Stage(
        "rnaseq",
        rnaseq,
        params=lambda c: _params(c, "rnaseq"),
        inputs=lambda c: _optional(c.inputs.clinical, c.inputs.counts),
        requires=("patients",),
    ),
    Stage(
        "report",
        report,
        params=lambda c: _params(c, "report"),
        requires=(
            "ingest",
            "clean",
            "cluster",
            "annotate",
            "abundance",
            "patients",
            "stats",
            "rnaseq",
        ),
    ),
]
STAGE_NAMES = [s.name for s in STAGES]
