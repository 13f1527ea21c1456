"""The batch stage: drift within files and run effects seen (diagnostics) and corrected.

Runs between ``clean`` and ``cluster``. Files whose signal drifts over acquisition time by
more than ``batch.drift_min`` are corrected by :func:`itme.pp.correct_drift`. With a batch column holding at least two batches and
``batch.method`` ``auto`` or ``cycombine``, :func:`itme.pp.correct_batch` corrects the cleaned
events and writes ``work/batch.h5ad``, which ``cluster`` and ``annotate`` then read
(:func:`events_path`); otherwise the file is removed and they read ``work/clean.h5ad``. The
per-sample medians by batch are drawn before and after. After annotation,
:func:`label_diagnostics` adds each subset's share by batch (the batch split the data show).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import anndata as ad

from itme import pl, pp, tl
from itme.errors import ItmeStatisticsWarning
from itme.pipeline._runner import Context
from itme.pipeline._stages_store import (
    keys_before,
    on_store,
    open_events,
    record_unchanged,
    save_events,
)

logger = logging.getLogger(__name__)

BATCH_FILE = ("work", "batch.h5ad")
#: uns key of the subset shares by batch in cells.h5ad
SUBSETS_KEY = "batch_subsets"


def events_path(ctx: Context) -> Path:
    """The cleaned events the clustering reads: batch-corrected when the batch stage corrected."""
    corrected = ctx.out.joinpath(*BATCH_FILE)
    return corrected if corrected.is_file() else ctx.path("work", "clean.h5ad")


def _diagnose(ctx: Context, cells: ad.AnnData, column: str, variant: str, **kw: Any) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ItmeStatisticsWarning)
        res = tl.batch_diagnostics(cells, batch_key=column, rng=ctx.seed, **kw)
    for w in caught:
        if issubclass(w.category, ItmeStatisticsWarning):
            logger.warning("%s (%s)", w.message, variant)
        else:  # pragma: no cover - other warnings pass through unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return res


def _drift(ctx: Context, cells: ad.AnnData) -> dict[str, Any]:
    """pp.correct_drift when the time channel exists; its table and summary entries."""
    c = ctx.config.batch
    if not c.drift:
        return {"drift": "not checked (batch.drift: false)"}
    if c.time_channel not in cells.var_names and c.time_channel not in cells.obs:
        return {"drift": f"not checked: no time channel {c.time_channel!r}"}
    pp.correct_drift(cells, time_key=c.time_channel, min_drift=c.drift_min)
    table = cells.uns["drift"]["samples"]
    ctx.table("batch_drift", table, index=False)
    n = int(table["corrected"].sum())
    if n:
        logger.warning(
            "drift: %d of %d files lost or gained more than %.0f%% of their signal over "
            "acquisition time and were corrected (largest %.0f%%); see batch_drift.csv",
            n,
            len(table),
            100 * c.drift_min,
            100 * float(table["drift"].max()),
        )
    return {
        "drift": f"{n} of {len(table)} files corrected (> {c.drift_min:.0%}); "
        f"largest {float(table['drift'].max()):.1%}"
    }


def batch(ctx: Context) -> dict[str, Any]:
    """pp.correct_drift, tl.batch_diagnostics, pp.correct_batch → ``work/batch.h5ad``.

    The file is written when the drift or the batch correction changed the events, and
    removed otherwise (``cluster`` then reads ``work/clean.h5ad``). On the cohort store
    (``compute:``) the same functions run lazily and what they fitted (``uns["drift"]``,
    ``uns["batch_correction"]``, the diagnostics) is added to the store instead, from
    which later stages recompute the corrected events block by block (:mod:`itme._chain`).
    """
    c = ctx.config.batch
    target = ctx.out.joinpath(*BATCH_FILE)
    column = c.column
    store = on_store(ctx.config)
    if store:
        full, cells = open_events(ctx, "batch")
        keys = keys_before(cells)
    else:
        cells = ad.read_h5ad(ctx.path("work", "clean.h5ad"))
    summary = _drift(ctx, cells)
    changed = "drift" in cells.uns and bool(cells.uns["drift"]["samples"]["corrected"].any())
    n_batches = int(cells.obs[column].nunique()) if column in cells.obs else 0
    summary["batch column"] = column if column in cells.obs else f"{column} (not in the sheet)"
    summary["batches"] = n_batches
    method = "cycombine" if c.method == "auto" else c.method
    if n_batches >= 2 and c.diagnostics:
        before = _diagnose(ctx, cells, column, "before correction", groupby=None)
        ctx.table("batch_medians_r2", before["marker_r2"], variant="before", index=False)
        ctx.figure("batch_mds", pl.batch_mds(cells), variant="before")
        summary["R2 of sample medians before"] = round(before["r2"], 3)
        summary["R2 p before"] = round(before["pvalue"], 4)
        summary["warnings before"] = "; ".join(before["flags"]) or "none"
    if n_batches < 2:
        summary["correction"] = "none: fewer than 2 batches"
    elif method == "none":
        summary["correction"] = "none (batch.method: none)"
        logger.info("batch: %d batches in %r; correction switched off", n_batches, column)
    else:
        pp.correct_batch(cells, batch_key=column, method=method, grid=tuple(c.grid), rng=ctx.seed)
        changed = True
        info = cells.uns["batch_correction"]
        ctx.table("batch_shift", info["shift"], index=False)
        summary["correction"] = (
            f"{method}: ComBat within {len(info['nodes'])} SOM nodes of landmark-aligned "
            f"events, {info['events_left_unchanged']} events left unchanged"
            + (" (batch.method: auto)" if c.method == "auto" else "")
        )
        logger.info(
            "batch: %d batches in %r corrected by %s (set batch.method: none to switch it off)",
            n_batches,
            column,
            method,
        )
        if c.diagnostics:
            after = _diagnose(
                ctx, cells, column, "after correction", groupby=None, key_added="batch_after"
            )
            ctx.table("batch_medians_r2", after["marker_r2"], variant="after", index=False)
            ctx.figure("batch_mds", pl.batch_mds(cells, key="batch_after"), variant="after")
            summary["R2 of sample medians after"] = round(after["r2"], 3)
            summary["warnings after"] = "; ".join(after["flags"]) or "none"
            del cells.uns["batch_after"]
    if store and changed:
        save_events(ctx, "batch", full, cells, before=keys)
    elif store:  # as in memory, the later stages read the clean stage's events
        record_unchanged(ctx, "batch")
    elif changed:
        ctx.h5ad(cells, *BATCH_FILE)
    else:
        target.unlink(missing_ok=True)
    return summary


def label_diagnostics(ctx: Context, cells: ad.AnnData) -> dict[str, Any]:
    """Each subset's share of every batch's events after annotation (table, figure, warnings).

    Called by the annotate stage; returns its summary entries (empty without batches).
    """
    c = ctx.config.batch
    column = c.column
    if not c.diagnostics or column not in cells.obs or cells.obs[column].nunique() < 2:
        return {}
    res = _diagnose(
        ctx, cells, column, "subsets", groupby="subset", n_perm=0, key_added=SUBSETS_KEY
    )
    ctx.table("batch_label_share", res["label_share"], index=False)
    ctx.figure("batch_labels", pl.batch_labels(cells, key=SUBSETS_KEY))
    flags = [f for f in res["flags"] if f.startswith("subset")]
    return {"subsets split by batch": "; ".join(flags) or "none"}
