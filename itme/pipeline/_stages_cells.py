"""The cell-level stages: ingest, clean, cluster, annotate, abundance.

Stages exchange data through files in the run folder only (``work/*.h5ad``, ``cells.h5ad``),
so any stage can be rerun or resumed on its own. A stage that adds to the cells without
changing them (cluster) writes only what it added (:func:`write_additions`); the next stage
applies it (:func:`apply_additions`), so nothing it added is lost and the events matrix is not
written twice. On the cohort store (``compute.backend``) the same stages run on the run's
``cells.zarr`` instead, each adding its columns to it (:mod:`itme.pipeline._stages_store`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from itme import io, pl, pp, tl
from itme._adata import markers_of_class
from itme._dask import reuse_columns
from itme._files import safe_name
from itme.core.clean.steps import GATING_COFACTOR
from itme.errors import ItmeExclusionWarning, ItmeStateError
from itme.pipeline._background import start_early, take_early
from itme.pipeline._config import Clean as CleanSection
from itme.pipeline._runner import Context, stage_seeds
from itme.pipeline._stages_batch import events_path, label_diagnostics
from itme.pipeline._stages_store import (
    ingest_store,
    keys_before,
    on_store,
    open_events,
    save_events,
)

logger = logging.getLogger(__name__)

#: figures of the gates drawn for the first samples of the sheet when no sample failed QC
QC_GATE_FIGURES = 3


def keys_of(cells: ad.AnnData) -> tuple[frozenset[str], ...]:
    """The obs columns, obsm keys and uns keys of ``cells`` (for :func:`write_additions`)."""
    return frozenset(cells.obs.columns), frozenset(cells.obsm), frozenset(cells.uns)


def write_additions(
    ctx: Context, cells: ad.AnnData, before: tuple[frozenset[str], ...], *parts: str
) -> Path:
    """Write what a stage added to ``cells`` (obs columns, obsm entries, uns keys) as an h5ad.

    ``before`` is :func:`keys_of` the cells when the stage started; the stage must not have
    changed the events.
    """
    obs, obsm, uns = before
    additions = ad.AnnData(
        obs=cells.obs[[c for c in cells.obs.columns if c not in obs]].copy(),
        obsm={k: v for k, v in cells.obsm.items() if k not in obsm},
        uns={k: v for k, v in cells.uns.items() if k not in uns},
    )
    return ctx.h5ad(additions, *parts)


def keys_before_of(keys: tuple[frozenset[str], ...]) -> dict[str, list[str]]:
    """:func:`keys_of` in the form of :func:`itme.pipeline._stages_store.keys_before`."""
    obs, obsm, uns = keys
    return {"obs": sorted(obs), "obsm": sorted(obsm), "uns": sorted(uns)}


def apply_additions(cells: ad.AnnData, path: Path) -> None:
    """Add the obs columns, obsm entries and uns keys of :func:`write_additions` to ``cells``."""
    additions = ad.read_h5ad(path)
    if not additions.obs_names.equals(cells.obs_names):
        raise ItmeStateError(f"{path} does not hold the events of this run: rerun its stage")
    for col in additions.obs.columns:
        # .values keeps a categorical's categories and their order (metaclusters 1, 2, ...,
        # 10), where an object array would be re-sorted as text
        cells.obs[col] = additions.obs[col].values
    for key, value in additions.obsm.items():
        cells.obsm[key] = value
    cells.uns.update(additions.uns)


def ingest(ctx: Context) -> dict[str, Any]:
    """io.read_cohort → ``work/ingest.h5ad`` (with ``compute:``, the cohort store ``cells.zarr``)."""
    c = ctx.config
    options = {
        "unpanelled": c.ingest.unpanelled,
        "antigen_aliases": c.ingest.antigen_aliases,
        "missing_markers": c.ingest.missing_markers,
    }

    def preprocess(cells: ad.AnnData) -> None:  # lazily on the store (parameters in uns)
        if c.ingest.beads != "none":
            pp.normalize_beads(cells, baseline=c.ingest.beads)
        if c.inputs.spillover is not None and c.ingest.compensation != "none":
            pp.compensate(cells, spillover=c.inputs.spillover, method=c.ingest.compensation)

    if on_store(c):
        cells = ingest_store(ctx, preprocess, **options)
    else:
        cells = io.read_cohort(c.inputs.samples, c.inputs.panel, **options)
        preprocess(cells)
        ctx.h5ad(cells, "work", "ingest.h5ad")
    files = cells.uns["io"]["files"]
    return {"files": len(files), "events": int(cells.n_obs), "channels": int(cells.n_vars)}


def preprocessing_lines(cells: ad.AnnData) -> dict[str, str]:
    """The report lines of the ingest stage's bead normalisation and compensation.

    Lists stored in ``uns`` come back from h5ad as arrays: tested with ``len``.
    """
    out = {}
    beads = cells.uns.get("bead_normalization")
    if beads is not None:
        table = beads["samples"]
        out["bead_normalization"] = (
            f"{beads['baseline']} baseline on {', '.join(beads['bead_channels'])}: "
            f"{int(table['n_beads'].sum())} beads in {len(table)} files (removed by the bead "
            f"step), factors {float(table['factor_min'].min()):.3g}-"
            f"{float(table['factor_max'].max()):.3g}"
            + (
                f"; bead channels absent: {', '.join(beads['absent'])}"
                if len(beads["absent"])
                else ""
            )
        )
    comp = cells.uns.get("compensation")
    if comp is not None:
        out["compensation"] = (
            f"{comp['method']} with {Path(comp['source']).name}: {len(comp['channels'])} "
            "channels matched by metal"
            + (f"; matrix channels absent from the data: {', '.join(comp['absent'])}"
               if len(comp["absent"]) else "")
            + (f"; not in the matrix: {', '.join(comp['not_in_matrix'])}"
               if len(comp["not_in_matrix"]) else "")
        )  # fmt: skip
    return out


def clean_kwargs(section: CleanSection) -> dict[str, Any]:
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


def clean(ctx: Context) -> dict[str, Any]:
    """pp.arcsinh, pp.clean, pp.sample_qc, pp.apply_qc, pp.exclude_samples, pp.downsample.

    Writes ``work/clean.h5ad`` (with ``compute:``, ``obs["itme_qc"]`` and the kept events
    ``obs["itme_clean"]`` into the store), the QC tables (``qc_samples``: the status of every sample)
    and the gate figures of every sample that failed sample-level QC (of the first three of
    the sheet when none failed). The summary lists ``samples_excluded`` and
    ``samples_flagged``, each with its reason.
    """
    c = ctx.config
    if on_store(c):
        full, cells = open_events(ctx, "clean")
        before = keys_before(cells)
    else:
        cells = ad.read_h5ad(ctx.path("work", "ingest.h5ad"))
    preprocessing = preprocessing_lines(cells)
    pp.arcsinh(cells, cofactor=c.transform.cofactor)
    pp.clean(cells, **clean_kwargs(c.clean))
    ctx.table("qc_events", cells.uns["qc"]["accounting"], index=False)
    ctx.table("qc_thresholds", cells.uns["qc"]["thresholds"], index=False)
    ctx.figure("qc_accounting", pl.qc_accounting(cells))
    pp.sample_qc(
        cells,
        min_cells=c.clean.min_cells,
        min_fraction_kept=c.clean.min_fraction_kept,
        on_fail=c.clean.on_failed_sample,
    )
    status = cells.uns["sample_qc"]
    failed = list(status.loc[status["status"] != "pass", "sample_id"])
    # the gates of every failed sample; of the first samples of the sheet when none failed
    shown = failed or list(cells.obs["sample_id"].cat.categories)[:QC_GATE_FIGURES]
    for sample in shown:
        ctx.figure("qc_gates", pl.qc_gates(cells, sample=sample), variant=sample)
    ctx.table(
        "qc_samples",
        status.assign(
            gate_figure=[
                f"qc_gates_{safe_name(s)}.png" if s in shown else "" for s in status["sample_id"]
            ]
        ),
        index=False,
    )
    events_in = int(cells.n_obs)
    with warnings.catch_warnings():
        # the events removed by each step are the qc_events table and this stage's summary:
        # the normal work of cleaning, not a warning (excluded samples still warn)
        warnings.simplefilter("ignore", ItmeExclusionWarning)
        applied = pp.apply_qc(cells)
    kept = pp.exclude_samples(applied)
    del applied
    del cells
    d = c.downsample
    if d.n is not None or d.min_events is not None:
        kept = pp.downsample(
            kept, n=d.n, min_events=d.min_events, on_small=d.on_small, rng=ctx.seed
        )
    if on_store(c):
        chosen = np.zeros(full.n_obs, dtype=bool)
        chosen[kept.obs_names.to_numpy()] = True  # the store's events are named by their row
        save_events(ctx, "clean", full, kept, before=before, subset=chosen)
    else:
        ctx.h5ad(kept, "work", "clean.h5ad")

    def listed(state: str) -> list[str]:
        rows = status[status["status"] == state]
        return [f"{s}: {r}" for s, r in zip(rows["sample_id"], rows["reason"], strict=True)]

    small = kept.uns.get("downsample", {}).get("excluded", [])
    excluded = [
        *listed("excluded"),
        *(f"{s}: fewer events than downsample.min_events" for s in small),
    ]
    return {
        **preprocessing,
        "events_in": events_in,
        "events_kept": int(kept.n_obs),
        "samples_excluded": excluded,
        "samples_flagged": listed("flagged"),
    }


def cluster(ctx: Context) -> dict[str, Any]:
    """tl.flowsom → ``work/cluster.h5ad`` (what it added to the cells: labels, codebook).

    With ``compute:``, the labels and codebook are added to the store instead.
    """
    c = ctx.config.cluster
    if on_store(ctx.config):
        full, cells = open_events(ctx, "cluster")
    else:
        path = events_path(ctx)
        cells = ad.read_h5ad(path)
        embed = ctx.config.embed
        if embed.enabled:  # the annotate stage's UMAP, on the second core while the SOM trains
            start_early(
                path,
                cells,
                n_cells=min(embed.n_cells, cells.n_obs),
                seed=stage_seeds(ctx.config.seed, ["annotate"])["annotate"],
                threads=ctx.config.threads,
            )
    before = keys_of(cells)
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
    if on_store(ctx.config):
        save_events(ctx, "cluster", full, cells, before=keys_before_of(before))
    else:
        write_additions(ctx, cells, before, "work", "cluster.h5ad")
    return metacluster_summary(cells.uns["flowsom"], cells.obs["metacluster"])


def metacluster_summary(info: dict[str, Any], labels: pd.Series) -> dict[str, Any]:
    """How many metaclusters were asked for, made and hold events, and why any are missing.

    FlowSOM's metaclustering groups SOM nodes; a metacluster whose nodes received no event
    is empty (it has a code but no cells; :func:`itme.tl.flowsom` lists it in
    ``uns["flowsom"]["empty_metaclusters"]`` and leaves it out of the categories), and
    ``merge_floor`` merges small ones: either way the report shows fewer metaclusters than
    ``cluster.n_metaclusters``, and says why.
    """
    asked = int(info["n_metaclusters"])
    made = int(info["n_metaclusters_final"])
    sizes = labels.value_counts()
    unused = {str(c) for c in labels.cat.categories if sizes.get(c, 0) == 0}
    recorded = {str(int(i)) for i in info.get("empty_metaclusters", [])}
    empty = sorted(unused | recorded, key=int)
    out: dict[str, Any] = {
        "metaclusters asked": asked,
        "metaclusters with events": made - len(empty),
    }
    merges = info.get("merges")
    if merges is not None and len(merges):
        out["merged (cluster.merge_floor)"] = int(asked - made)
    if empty:
        out["empty (their SOM nodes received no events)"] = empty
    return out


def annotate(ctx: Context) -> dict[str, Any]:
    """tl.annotate, pp.split_channels, tl.embed → ``cells.h5ad``, cluster tables and figures.

    ``cells.h5ad`` is written in scanpy's layout (:func:`itme.pp.split_channels`): ``X``
    holds the ``type`` and ``state`` markers only, the QC and technical channels (Time,
    DNA, Event_length, beads, ...) are in ``obsm["other_channels"]``, so scanpy's default
    workflow on the file clusters by the markers. With ``compute:``, the labels and the
    embedding are added to the cohort store instead (which keeps every channel).
    """
    c = ctx.config
    if on_store(c):
        full, cells = open_events(ctx, "annotate")
    else:
        path = events_path(ctx)
        cells = ad.read_h5ad(path)
        apply_additions(cells, ctx.path("work", "cluster.h5ad"))
    before = keys_of(cells)
    n_embed = min(c.embed.n_cells, cells.n_obs)
    embedding = None
    if c.embed.enabled and not on_store(c):  # UMAP in a second process (started by cluster)
        embedding = take_early(path, cells, n_cells=n_embed, seed=ctx.seed, threads=c.threads)
    # on the store: the marker columns gathered once for every median when they fit in
    # _dask.MEDIAN_BATCH_BYTES, else each median call selects on the workers
    with reuse_columns():
        tl.annotate(
            cells,
            phenotypes=c.inputs.phenotypes,
            mapping=c.annotate.mapping,
            min_events=c.annotate.min_events,
        )
        # tl.cluster_phenotypes of the type and state markers: tl.annotate's medians hold
        # them (and the phenotype table's other markers); empty metaclusters (no event)
        # are not categories (uns["flowsom"]["empty_metaclusters"], the cluster stage's
        # summary); rows of NA medians are dropped all the same
        medians = cells.uns["subset"]["medians"]
        phenotypes = medians[markers_of_class(cells, ("type", "state"))].dropna(how="all")
        ctx.table("cluster_phenotypes", phenotypes)
        ctx.table("cluster_annotation", cells.uns["subset"]["clusters"])
        ctx.figure("clusters_heatmap", pl.cluster_heatmap(cells, groupby="subset"))
    if not on_store(c):  # the store keeps every channel; cells.h5ad is scanpy's layout
        cells = pp.split_channels(cells)
    if c.embed.enabled:
        if embedding is None:
            tl.embed(cells, n_cells=n_embed, rng=ctx.seed)
        else:
            embedding(cells)
        ctx.figure("clusters_umap", pl.embedding(cells, color="subset"))
    batch_summary = label_diagnostics(ctx, cells)
    if on_store(c):
        save_events(ctx, "annotate", full, cells, before=keys_before_of(before))
    else:
        ctx.h5ad(cells, "cells.h5ad")
    unassigned = float((cells.obs["subset"] == "unassigned").mean() * 100)
    table = cells.uns["subset"]["clusters"]
    small = table[table["method"] == "too small"]
    summary: dict[str, Any] = {
        "subsets": int(cells.obs["subset"].nunique()),
        "pct_unassigned": round(unassigned, 2),
    }
    if len(small):
        summary[f"metaclusters of fewer than {c.annotate.min_events} events (unassigned)"] = (
            f"{len(small)} ({int(small['n_events'].sum())} events)"
        )
    return {**summary, **batch_summary}


def abundance(ctx: Context) -> dict[str, Any]:
    """io.analysis_units, tl.abundance → ``work/abundance.h5ad``, ``subset_frequencies.csv``.

    Files of one patient and time point are pooled (frequencies from the pooled counts,
    io.analysis_units); the units and their files are listed in ``sample_units.csv`` when the
    sheet pools files or has a time-point column.
    """
    store = on_store(ctx.config)
    if store:
        _, cells = open_events(ctx, "abundance")
    else:
        cells = ad.read_h5ad(ctx.path("cells.h5ad"), backed="r")
    sheet, _ = io.read_samples(ctx.config.inputs.samples)
    present = {str(s) for s in cells.obs["sample_id"].unique()}  # by code when categorical
    units = io.analysis_units(sheet[sheet["sample_id"].isin(present)])
    pooled = bool((units["n_files"] > 1).any())
    key = "sample_id"
    if pooled:
        io.check_unit_panels(units, channel_map=cells.uns["io"]["channel_map"])
        to_unit = dict(zip(units["sample_id"], units["unit_id"], strict=True))
        cells.obs["unit_id"] = pd.Categorical(
            cells.obs["sample_id"].astype(str).map(to_unit),
            categories=list(dict.fromkeys(units["unit_id"])),
        )
        key = "unit_id"
    patients = tl.abundance(cells, phenotypes=ctx.config.inputs.phenotypes, sample_key=key)
    if not store:
        cells.file.close()
    summary: dict[str, Any] = {}
    if pooled or io.timepoint_column(sheet.columns) is not None:
        per_unit = units.drop_duplicates("unit_id").set_index("unit_id")
        patients.obs["patient_id"] = per_unit.loc[patients.obs_names, "patient_id"].to_numpy()
        patients.obs["timepoint"] = per_unit.loc[patients.obs_names, "timepoint"].to_numpy()
        patients.obs["n_files"] = per_unit.loc[patients.obs_names, "n_files"].to_numpy()
        ctx.table("sample_units", units, index=False)
        summary["files_pooled"] = int(units.loc[units["n_files"] > 1, "sample_id"].size)
        summary["units"] = int(patients.n_obs)
        summary["patients"] = int(patients.obs["patient_id"].nunique())
    ctx.table("subset_frequencies", patients.to_df().join(patients.obsm["derived"]))
    ctx.h5ad(patients, "work", "abundance.h5ad")
    return {"samples": int(patients.n_obs), "subsets": int(patients.n_vars), **summary}
