"""The cell-level stages: ingest, clean, cluster, annotate, abundance.

Stages exchange data through files in the run folder only (``work/*.h5ad``, ``cells.h5ad``),
so any stage can be rerun or resumed on its own. A stage that adds to the cells without
changing them (cluster) writes only what it added (:func:`write_additions`); the next stage
applies it (:func:`apply_additions`), so nothing it added is lost and the events matrix is not
written twice. With a ``compute:`` section the same stages run on the run's cohort store
``cells.zarr`` instead, each adding its columns to it (:mod:`itme.pipeline._stages_store`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from itme import io, pl, pp, tl
from itme._files import safe_name
from itme.core.clean.steps import GATING_COFACTOR
from itme.errors import ItmeStateError
from itme.pipeline._config import Clean as CleanSection
from itme.pipeline._runner import Context
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
        cells.obs[col] = additions.obs[col].to_numpy()
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
    if on_store(c):
        cells = ingest_store(ctx, **options)
    else:
        cells = io.read_cohort(c.inputs.samples, c.inputs.panel, **options)
        ctx.h5ad(cells, "work", "ingest.h5ad")
    files = cells.uns["io"]["files"]
    return {"files": len(files), "events": int(cells.n_obs), "channels": int(cells.n_vars)}


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
    kept = pp.exclude_samples(pp.apply_qc(cells))
    del cells
    d = c.downsample
    if d.n is not None or d.min_events is not None:
        kept = pp.downsample(
            kept, n=d.n, min_events=d.min_events, on_small=d.on_small, rng=ctx.seed
        )
    if on_store(c):
        chosen = full.obs_names.isin(kept.obs_names)
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
        cells = ad.read_h5ad(events_path(ctx))
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
    return {"metaclusters": int(cells.obs["metacluster"].nunique())}


def annotate(ctx: Context) -> dict[str, Any]:
    """tl.annotate, tl.embed → ``cells.h5ad``, cluster tables and figures.

    With ``compute:``, the labels and the embedding are added to the store instead.
    """
    c = ctx.config
    if on_store(c):
        full, cells = open_events(ctx, "annotate")
    else:
        cells = ad.read_h5ad(events_path(ctx))
        apply_additions(cells, ctx.path("work", "cluster.h5ad"))
    before = keys_of(cells)
    tl.annotate(cells, phenotypes=c.inputs.phenotypes, mapping=c.annotate.mapping)
    ctx.table("cluster_phenotypes", tl.cluster_phenotypes(cells, groupby="metacluster"))
    ctx.table("cluster_annotation", cells.uns["subset"]["clusters"])
    ctx.figure("clusters_heatmap", pl.cluster_heatmap(cells, groupby="subset"))
    if c.embed.enabled:
        tl.embed(cells, n_cells=min(c.embed.n_cells, cells.n_obs), rng=ctx.seed)
        ctx.figure("clusters_umap", pl.embedding(cells, color="subset"))
    batch_summary = label_diagnostics(ctx, cells)
    if on_store(c):
        save_events(ctx, "annotate", full, cells, before=keys_before_of(before))
    else:
        ctx.h5ad(cells, "cells.h5ad")
    unassigned = float((cells.obs["subset"] == "unassigned").mean() * 100)
    return {
        "subsets": int(cells.obs["subset"].nunique()),
        "pct_unassigned": round(unassigned, 2),
        **batch_summary,
    }


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
    present = set(cells.obs["sample_id"].astype(str))
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
