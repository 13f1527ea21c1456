"""The patient-level stages: patients (iTME clusters), stats, rnaseq.

They read ``work/abundance.h5ad`` (samples × subsets) and ``patients.h5ad``; the clinical
table is read once, by the patients stage, and joined into ``patients.obs``.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import anndata as ad
import pandas as pd

from itme import io, pl, rna, stats, tl
from itme.core.annotate.naming import UNASSIGNED
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeStateError,
)
from itme.pipeline import _rnaseq_early as rnaseq_early
from itme.pipeline._config import Config, clusters_left_out, rnaseq_contrasts
from itme.pipeline._left_out import caveats, not_tested, small_groups, subsets_found
from itme.pipeline._runner import Context

logger = logging.getLogger(__name__)


def _clinical(config: Config) -> pd.DataFrame | None:
    return io.read_clinical(config.inputs.clinical) if config.inputs.clinical else None


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


def _several_timepoints(adata: ad.AnnData) -> bool:
    """True when some patient has several units (time points) in ``adata``."""
    return bool("timepoint" in adata.obs and adata.obs["patient_id"].duplicated().any())


def _timepoint_changes(adata: ad.AnnData) -> pd.DataFrame:
    """Patients with several time points: their iTME cluster at each and whether it changed."""
    obs = adata.obs[["patient_id", "timepoint", "itme_cluster"]].astype(str)
    rows = []
    for pid, grp in obs.groupby("patient_id", sort=False):
        if len(grp) < 2:
            continue
        rows.append(
            {
                "patient_id": pid,
                "timepoints": " → ".join(grp["timepoint"]),
                "itme_clusters": " → ".join(grp["itme_cluster"]),
                "changed": grp["itme_cluster"].nunique() > 1,
            }
        )
    return pd.DataFrame(rows, columns=["patient_id", "timepoints", "itme_clusters", "changed"])


def _patient_ids(adata: ad.AnnData) -> list[str]:
    return [str(p) for p in adata.obs["patient_id"].astype(str).unique()]


def _sizes(labels: pd.Series) -> dict[str, int]:
    """Members of each cluster, in numeric order (1, 2, ..., 10, not as text)."""
    counts = labels.value_counts()
    return {str(c): int(counts.get(c, 0)) for c in labels.cat.categories}


def _one_per_patient(config: Config, adata: ad.AnnData) -> tuple[ad.AnnData, dict[str, Any]]:
    """One unit per patient for the between-patient tests, and a summary of the choice.

    With several units per patient (time points, or conditions), units are not independent:
    the tests use the time point ``stats.timepoint`` (default: each patient's first unit in
    samples.csv), so ``n`` counts patients; the units left out are listed. Without repeated
    patients, ``adata`` unchanged.
    """
    obs = adata.obs
    if not obs["patient_id"].duplicated().any():
        return adata, {}
    wanted = config.stats.timepoint
    if wanted is None or "timepoint" not in obs:
        # several units per patient (time points, or conditions such as stimulated /
        # reference): one per patient, the first in samples.csv, so no patient counts twice
        keep = ~obs["patient_id"].duplicated().to_numpy()
        rule = "each patient's first " + ("time point" if "timepoint" in obs else "sample")
    else:
        keep = (obs["timepoint"].astype(str) == wanted).to_numpy()
        rule = f"time point {wanted!r} (stats.timepoint)"
        if not keep.any():
            raise ItmeInputError(
                f"no sample has time point {wanted!r}",
                where="config stats.timepoint",
                expected=", ".join(sorted(set(obs["timepoint"].astype(str)))),
                found=wanted,
            )
        if obs.loc[keep, "patient_id"].duplicated().any():
            raise ItmeInputError(
                "several units of one patient at one time point",
                where="samples.csv, column timepoint",
                fix="Give each patient one time point per value",
            )
    left_out = [str(u) for u in adata.obs_names[~keep]]
    n = int(keep.sum())
    logger.info("between-patient tests on %s: n = %d patients", rule, n)
    return adata[keep].copy(), {
        "unit_of_tests": f"{rule}: n = {n} independent patients",
        "units_not_in_tests": left_out,
    }


def patients(ctx: Context) -> dict[str, Any]:
    """io.add_clinical, tl.patient_clusters, cluster_sensitivity, cluster_stability.

    Writes ``patients.h5ad``, with the clinical table joined into ``obs``.
    """
    notes: dict[str, Any] = {}
    with caveats(notes, "patients"):
        summary = _patients(ctx)
    return {**summary, **notes}


def _patients(ctx: Context) -> dict[str, Any]:
    c = ctx.config
    adata = ad.read_h5ad(ctx.path("work", "abundance.h5ad"))
    clinical = _clinical(c)
    if clinical is not None:
        io.add_clinical(adata, clinical)
    transform = None if c.patients.transform == "none" else c.patients.transform
    # default: every subset found in some sample (never-found subsets and "unassigned" are
    # not clustered on; the stats stage lists them in subsets_not_tested)
    found, absent = subsets_found(adata)
    tl.patient_clusters(
        adata,
        k=c.patients.k,
        transform=transform,
        features=c.patients.features or found,
        rng=ctx.seed,
    )
    summary: dict[str, Any] = {
        "k": c.patients.k,
        "sizes": _sizes(adata.obs["itme_cluster"]),
        "features clustered on": len(adata.uns["itme_cluster"]["features"]),
    }
    if absent and not c.patients.features:
        summary["subsets never found (not clustered on)"] = absent
    exclude = _exclusions(c, adata)
    if exclude:
        tl.cluster_sensitivity(adata, exclude=exclude)
        sens = adata.uns["itme_cluster_sensitivity"]
        row = {k: sens[k] for k in ("kappa", "kappa_se", "z", "pvalue", "n", "n_changed")}
        row["changed"] = ";".join(map(str, sens["changed"]))
        row["excluded"] = ";".join(map(str, sens["excluded"]))
        ctx.table("sensitivity", pd.DataFrame([row]), index=False)
        summary["kappa"] = float(sens["kappa"])
    if c.patients.bootstrap:
        tl.cluster_stability(adata, n_boot=c.patients.bootstrap, rng=ctx.seed)
        stab = adata.uns["itme_cluster_stability"]["clusters"]
        ctx.table("stability", stab, index=False)
        summary["min_mean_jaccard"] = float(stab["mean_jaccard"].min())
    columns = ["patient_id", *(["timepoint"] if "timepoint" in adata.obs else []), "itme_cluster"]
    assign = adata.obs[columns].copy()
    ctx.table("itme_clusters", assign)
    if _several_timepoints(adata):  # the relapse question: did the iTME cluster change?
        changes = _timepoint_changes(adata)
        ctx.table("timepoint_changes", changes, index=False)
        summary["patients_with_several_timepoints"] = len(changes)
        summary["itme_cluster_changed"] = list(changes.loc[changes["changed"], "patient_id"])
    ctx.table("cluster_diagnostics", adata.uns["itme_cluster"]["diagnostics"], index=False)
    ctx.figure("patients_heatmap", pl.patient_heatmap(adata))
    ctx.figure("patients_compartments", pl.compartment_bars(adata))
    ctx.h5ad(adata, "patients.h5ad")
    return summary


def statistics(ctx: Context) -> dict[str, Any]:
    """Subset tests, clinical table, survival and cytokine tests → tables and figures.

    Reads ``patients.h5ad``, whose ``obs`` carries the clinical columns (joined once by the
    patients stage) and whose ``uns["clinical"]["table"]`` the whole clinical table.
    """
    notes: dict[str, Any] = {}
    with caveats(notes, "stats"):
        summary = _statistics(ctx)
    return {**summary, **notes}


def _statistics(ctx: Context) -> dict[str, Any]:
    c = ctx.config
    s = c.stats
    adata = ad.read_h5ad(ctx.path("patients.h5ad"))
    joined = _joined_clinical(c, adata)
    adata, unit_note = _one_per_patient(c, adata)
    found, absent = subsets_found(adata)
    tests = stats.compare_groups(adata, groupby=s.groupby, features=found)
    derived = stats.compare_groups(adata, groupby=s.groupby, source="derived")
    # features that could not be tested (constant, all missing) and the subsets never found
    # are listed in subsets_not_tested, not as rows of NA in the test tables
    left_out = not_tested(adata, absent, {"subset_tests": tests, "compartment_tests": derived})
    tests = tests[tests["note"] == ""].reset_index(drop=True)
    derived = derived[derived["note"] == ""].reset_index(drop=True)
    ctx.table("subset_tests", tests, index=False)
    ctx.table("compartment_tests", derived, index=False)
    ctx.table("subsets_not_tested", left_out, index=False)
    significant = tests.loc[tests["padj"] < s.fdr, "feature"].tolist()
    if significant:
        post = stats.posthoc_dunn(adata, groupby=s.groupby, features=significant)
        ctx.table("subset_posthoc", post, index=False)
        ctx.figure(
            "stats_subset_boxplots",
            pl.subset_boxplots(adata, results=tests, groupby=s.groupby, alpha=s.fdr),
        )
    summary: dict[str, Any] = {
        **unit_note,
        "subsets_tested": len(tests),
        "subsets_significant": len(significant),
        "features not tested (subsets_not_tested)": len(left_out),
    }
    un = left_out[left_out["feature"] == UNASSIGNED]
    if len(un):
        summary["unassigned events (not tested)"] = (
            f"{int(un['events'].iloc[0]):,} ({float(un['pct_events'].iloc[0]):.2f} % of events)"
        )
    if joined is not None:
        table = stats.clinical_table(adata, groupby=s.groupby, variables=s.clinical_variables)
        ctx.table("clinical_table", table, index=False)
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
            ctx.figure("survival", pl.kaplan_meier(adata, endpoint=endpoint), variant=endpoint)
        ctx.table("survival", pd.concat(km), index=False)
        ctx.table("logrank", pd.concat(lr), index=False)
        ctx.table("cox", pd.concat(cox), index=False)
    if c.inputs.cytokines is not None:
        cyt = io.read_cytokines(c.inputs.cytokines)
        if joined is not None:  # every clinical patient, also those without a CyTOF sample
            io.add_clinical(cyt, joined["table"])
        # patients without a CyTOF sample have no iTME cluster: the patients stage reported
        # them (add_clinical); a grouping by a column of the patients leaves them out
        no_cluster = sorted(set(cyt.obs["patient_id"].astype(str)) - set(_patient_ids(adata)))
        frames = []
        for g in c.cytokines.groupby:
            data = cyt
            if g not in cyt.obs.columns and no_cluster:
                data = cyt[~cyt.obs["patient_id"].astype(str).isin(no_cluster)].copy()
            frames.append(
                stats.compare_cytokines(data, groupby=g, patients=adata).assign(groupby=g)
            )
        table = pd.concat(frames)
        ctx.table("cytokine_tests", table, index=False)
        summary["cytokines"] = {f"analytes at q < {s.fdr:g}": int((table["padj"] < s.fdr).sum())}
        if no_cluster:
            summary["cytokines"]["patients without an iTME cluster (no CyTOF sample)"] = no_cluster
    return summary


def rnaseq(ctx: Context) -> dict[str, Any]:
    """rna.differential_expression, rna.gsea, rna.pathway_scores per contrast → tables."""
    notes: dict[str, Any] = {}
    with caveats(notes, "rnaseq"):
        summary = _rnaseq(ctx)
    return {**summary, **notes}


def _rnaseq(ctx: Context) -> dict[str, Any]:
    c = ctx.config
    if c.inputs.counts is None:
        return {"status": "no input"}
    patients_ = ad.read_h5ad(ctx.path("patients.h5ad"))
    joined = _joined_clinical(c, patients_)  # the whole table, read by the patients stage
    patients_, _ = _one_per_patient(c, patients_)  # one tumour sample per patient
    counts = rna.read_counts(c.inputs.counts, clinical=None if joined is None else joined["table"])
    # every RNA-seq patient gets a row, with no iTME cluster when it has no CyTOF sample
    # (a fact the patients stage reported): samples are left out only of the contrasts
    # between iTME clusters, and said so in the summary
    clusters = patients_.obs[["patient_id", "itme_cluster"]].astype({"patient_id": str})
    rna_patients = counts.obs["patient_id"].dropna().astype(str).unique()
    no_cluster = sorted(set(rna_patients) - set(clusters["patient_id"]))
    rows = pd.DataFrame({"patient_id": no_cluster})
    rows["itme_cluster"] = pd.Categorical(
        [None] * len(no_cluster), categories=clusters["itme_cluster"].cat.categories
    )
    io.add_clinical(counts, pd.concat([clusters, rows], ignore_index=True), key_added="patients")
    summary: dict[str, Any] = {}
    if no_cluster:
        summary["samples without an iTME cluster (patient without CyTOF sample)"] = list(
            counts.obs_names[counts.obs["patient_id"].astype(str).isin(no_cluster)]
        )
    # one independent GSEA seed per contrast (docs/architecture.md, "Randomness")
    contrasts = rnaseq_contrasts(c)
    derived = c.rnaseq.contrasts is None
    seeds = rnaseq_early.contrast_seeds(ctx.seed, len(contrasts))
    done = 0
    for contrast, seed in zip(contrasts, seeds, strict=True):
        data = counts
        if contrast.groupby == "itme_cluster" and no_cluster:
            data = counts[counts.obs["itme_cluster"].notna().to_numpy()].copy()
        small = small_groups(data, contrast) if derived else []
        if small:  # a default contrast DESeq2 cannot fit: said, not dropped silently
            warnings.warn(
                f"rnaseq: contrast {contrast.name} skipped: {'; '.join(small)} (DESeq2 needs "
                "at least 2 samples per group)",
                ItmeExclusionWarning,
                stacklevel=2,
            )
            summary[contrast.name] = {"status": "skipped: " + "; ".join(small)}
            continue
        variant = None if done == 0 else contrast.name
        done += 1
        left_out = clusters_left_out(contrast, c.patients.k)
        if left_out:  # never silently: a cluster in neither group is not in this DE
            warnings.warn(
                f"rnaseq.contrasts[{contrast.name}]: iTME cluster(s) {', '.join(left_out)} "
                f"of patients.k = {c.patients.k} are in neither test ({', '.join(contrast.test)}) "
                f"nor reference ({', '.join(contrast.reference)}); their samples are not in "
                "this comparison. Add them to a group, or remove rnaseq.contrasts to test the "
                "default contrasts (each cluster vs the rest when k is not 3)",
                ItmeExclusionWarning,
                stacklevel=2,
            )
        # a contrast between clinical groups may have been computed from the run's start
        early = rnaseq_early.take(
            ctx.out, contrast.name, rnaseq_early.design_key(data, contrast, c)
        )
        de, gs = early or rnaseq_early.contrast_tables(
            data, contrast, c, seed, threads=c.threads or os.cpu_count() or 1
        )
        ctx.table("de_results", de, variant=variant)
        # gsea_hallmark[_<contrast>] for the Hallmark sets, gsea[_<contrast>] for others
        collection = "hallmark" if c.rnaseq.gene_sets == "hallmark" else None
        gsea_variant = "_".join(v for v in (collection, variant) if v) or None
        ctx.table("gsea", gs, variant=gsea_variant, index=False)
        ctx.figure("rna_volcano", pl.volcano(de, title=contrast.name), variant=contrast.name)
        ctx.figure(
            "rna_gsea",
            pl.gsea_nes(gs, title=contrast.name, permutations=c.rnaseq.permutations),
            variant=contrast.name,
        )
        summary[contrast.name] = {
            "test": " + ".join(contrast.test),
            "reference": " + ".join(contrast.reference),
            **({"clusters left out": left_out} if left_out else {}),
            "genes_tested": int(de["padj"].notna().sum()),
            "genes_padj_0.1": int((de["padj"] < 0.1).sum()),
            "pathways_fdr_0.05": int((gs["FDR"] < 0.05).sum()),
        }
    rna.pathway_scores(counts, gene_sets=c.rnaseq.gene_sets)
    scores = counts.obsm["pathway_scores"]
    ctx.table("pathway_scores", scores)
    # tumour pathways against immune subsets across patients (Pearson, as the paper; BH)
    found, _ = subsets_found(patients_)  # never-found subsets and "unassigned" left out
    immune = (
        patients_.to_df()[found]
        .join(patients_.obsm["derived"])
        .set_index(patients_.obs["patient_id"])
    )
    per_patient = scores.set_index(counts.obs["patient_id"]).join(immune, how="inner")
    corr = stats.correlate(
        per_patient, x=list(scores.columns), y=list(immune.columns), method="pearson"
    )
    ctx.table("pathway_subset_correlations", corr, index=False)
    summary["pathway-subset pairs at q < 0.05"] = int((corr["padj"] < c.stats.fdr).sum())
    return summary
