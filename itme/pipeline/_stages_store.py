"""The cell-level stages on the cohort store (``compute.backend``): one copy of the matrix.

On the store (``compute.backend: store``, or ``auto`` for a cohort that does not fit in
memory: :mod:`itme.pipeline._backend`) the ingest stage converts the FCS files once into the run's
cohort store ``cells.zarr`` (:func:`itme.io.read_cohort` with ``store=``; raw counts only,
chunked by events), and every later cell-level stage opens it lazily, runs the same library
functions on dask arrays, and adds its ``obs``/``obsm`` columns and ``uns`` entries to the
store (:func:`itme.io.update_store`) instead of writing a new copy of the events.

The store keeps every event. The events the clean stage keeps (after QC, sample exclusion
and downsampling) are marked by ``obs["itme_clean"]``; later stages work on that subset
(:func:`open_events`, a lazy selection), and what they add is written back with missing
values (NaN, False) on the other events. Each stage that writes the store records what it
added in ``work/store/<stage>.json`` (its output, written last): a stage opening the store
keeps only what the stages before it added, so a rerun never sees the columns of a later
stage, and it removes the records of the stages after it, which therefore rerun. The ingest
stage's output includes the matrix's metadata (``cells.zarr/layers/raw/zarr.json``):
removing the store reruns everything.

The batch stage adds no events either: its drift and batch corrections store their fitted
parameters in ``uns``, and :func:`open_events` recomputes the corrected ``X`` of the later
stages from the raw counts (:func:`itme._chain.rebuild`). When nothing was corrected it
records that it added nothing, and the later stages read the clean stage's events, as in
memory.

What the in-memory path does between stages through ``h5ad`` files (strings become
categoricals on writing, :func:`itme.pipeline._stages_cells.apply_additions` keeps the
cluster labels' categories) is done the same way here, so both paths give identical tables
(tests/integration/test_pipeline_store.py).

The client holds no Python object per event: the store's events are named by their row in
it (``obs_names`` a ``pd.RangeIndex``, the integer rows of a selection; the names
``<sample_id>_<event index>`` are on disk, :func:`itme.io.open_store`), and every per-event
obs column is a categorical's codes, a bool or a number.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme import io
from itme._chain import rebuild
from itme.errors import ItmeStateError
from itme.pipeline._config import Config
from itme.pipeline._runner import Context

__all__ = [
    "STORE",
    "SUBSET",
    "ingest_store",
    "on_store",
    "open_events",
    "save_events",
]

logger = logging.getLogger(__name__)

#: the run's cohort store, in the output folder
STORE = "cells.zarr"
#: folder of the run holding what each stage added to the store (its output)
RECORDS = ("work", "store")
#: obs column of the store: the events of the clean stage's output
SUBSET = "itme_clean"
#: the stages that write the store, in run order
WRITERS = ("ingest", "clean", "batch", "cluster", "annotate")


def on_store(config: Config) -> bool:
    """Whether the cell-level stages run on the cohort store (``compute.backend`` resolved)."""
    return config.compute.backend == "store"


def _store(ctx: Context) -> Path:
    return ctx.out / STORE


def _record_path(ctx: Context, stage: str) -> Path:
    return ctx.out.joinpath(*RECORDS, f"{stage}.json")


def _read_record(ctx: Context, stage: str) -> dict[str, Any]:
    path = _record_path(ctx, stage)
    if not path.is_file():
        raise ItmeStateError(
            f"{path} is missing: the {stage} stage has not written the cohort store of this "
            f"run; rerun it (itme run --from {stage})"
        )
    return json.loads(path.read_text())


def _write_record(ctx: Context, stage: str, record: dict[str, Any]) -> None:
    ctx.json(record, *RECORDS, f"{stage}.json")


def ingest_store(
    ctx: Context, preprocess: Callable[[AnnData], None], **read_kwargs: Any
) -> AnnData:
    """io.read_cohort into a new ``cells.zarr`` of the run (an existing one is replaced).

    Parameters
    ----------
    ctx
        The ingest stage's context.
    preprocess
        Bead normalisation and compensation of the lazily opened cohort (as in memory):
        they record their parameters in ``uns`` and the obs column ``is_bead``, which are
        written to the store; its counts stay as read (:func:`itme.io.open_store`
        recomputes the normalised, compensated counts from ``uns``).
    **read_kwargs
        Keyword arguments of :func:`itme.io.read_cohort` (besides the sheet and panel).

    Returns
    -------
    The cohort, opened lazily from the store.
    """
    c = ctx.config
    store = _store(ctx)
    for folder in (store, ctx.out.joinpath(*RECORDS)):  # the later stages rerun too
        if folder.exists():
            shutil.rmtree(folder)
    cells = io.read_cohort(
        c.inputs.samples,
        c.inputs.panel,
        store=store,
        chunk_rows=c.compute.chunk_rows,
        **read_kwargs,
    )
    before = _keys(cells)
    preprocess(cells)
    added = _keys(cells)
    if added != before:
        new_obs = [c for c in added["obs"] if c not in before["obs"]]
        io.update_store(cells, store=store, obs=new_obs, obsm=[])
    # the matrix's metadata, written once: a store removed or replaced reruns ingest
    ctx.record(store / "layers" / "raw" / "zarr.json")
    _write_record(ctx, "ingest", {**_keys(cells), "events": int(cells.n_obs)})
    return cells


def _keys(cells: AnnData) -> dict[str, list[str]]:
    return {
        "obs": [str(c) for c in cells.obs.columns],
        "obsm": [str(k) for k in cells.obsm],
        "uns": [str(k) for k in cells.uns if k != "store"],
    }


def open_events(ctx: Context, stage: str) -> tuple[AnnData, AnnData]:
    """Open the store for ``stage``: every event, and the events the stage works on.

    What the store holds from ``stage`` itself or a later stage (a previous run) is dropped,
    and the records of ``stage`` and later writers are removed (those stages rerun).

    Parameters
    ----------
    ctx
        The stage's context.
    stage
        The stage name.

    Returns
    -------
    ``(full, events)``: the lazily opened store (every event), and, after the clean stage,
    the clean stage's events (a lazy selection with the categories the clean stage's output
    had, ``obs["itme_clean"]`` left out); before it, ``full`` itself.
    """
    records = _earlier_records(ctx, stage)
    if stage in WRITERS:
        for later in WRITERS[WRITERS.index(stage) :]:
            _record_path(ctx, later).unlink(missing_ok=True)
    full = io.open_store(_store(ctx))
    n = records["ingest"]["events"]
    if full.n_obs != n:
        raise ItmeStateError(f"{_store(ctx)} holds {full.n_obs} events, its record {n}")
    keep = {part: [k for r in records.values() for k in r[part]] for part in ("obs", "obsm", "uns")}
    # in place: anndata would name every event by a string again on assigning a new obs
    for col in [c for c in full.obs.columns if c not in keep["obs"]]:
        del full.obs[col]
    for key in [k for k in full.obsm if k not in keep["obsm"]]:
        del full.obsm[key]
    for key in [k for k in full.uns if k not in keep["uns"] and k != "store"]:
        del full.uns[key]
    # X from what the earlier stages stored only (raw counts before clean; then arcsinh,
    # and the batch stage's drift and batch corrections)
    full.X = rebuild(full)
    if "clean" not in records:
        return full, full
    from itme.pp._subset import subset_events

    mask = full.obs[SUBSET].to_numpy(dtype=bool)
    events = subset_events(full, np.flatnonzero(mask))
    del events.obs[SUBSET]
    # the events hold the stored columns they need; every event's copy of them is dropped
    # (10 bytes an event; save_events adds columns to the store and keeps the others)
    for col in [c for c in full.obs.columns if c != SUBSET]:
        del full.obs[col]
    for col, (cats, ordered) in records["clean"]["categories"].items():
        values = events.obs[col]
        events.obs[col] = values.cat.set_categories(
            pd.Index(cats, dtype=values.cat.categories.dtype), ordered=ordered
        )
    return full, events


def _earlier_records(ctx: Context, stage: str) -> dict[str, dict[str, Any]]:
    """The records of the writers before ``stage``: what the store holds for it."""
    return {w: _read_record(ctx, w) for w in WRITERS if _order(w) < _order(stage)}


def _order(stage: str) -> int:
    order = ("ingest", "clean", "batch", "cluster", "annotate", "abundance")
    return order.index(stage)


def _expand(values: pd.Series, mask: np.ndarray) -> Any:
    """A column of the selected events as a column of every event (missing elsewhere)."""
    n = mask.size
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.full(n, -1, dtype=values.cat.codes.dtype)
        codes[mask] = values.cat.codes.to_numpy()
        return pd.Categorical.from_codes(codes, dtype=values.dtype)
    arr = values.to_numpy()
    if arr.dtype == bool:
        out = np.zeros(n, dtype=bool)
    elif arr.dtype.kind in "iuf":
        out = np.full(n, np.nan, dtype=np.float64 if arr.dtype.kind != "f" else arr.dtype)
    else:
        raise ItmeStateError(f"obs column {values.name!r} of dtype {arr.dtype} cannot be stored")
    out[mask] = arr
    return out


def save_events(
    ctx: Context,
    stage: str,
    full: AnnData,
    events: AnnData,
    *,
    before: dict[str, list[str]],
    subset: np.ndarray | None = None,
) -> None:
    """Add what ``stage`` added to ``events`` to the store; record it (the stage's output).

    Parameters
    ----------
    ctx
        The stage's context.
    stage
        The stage name.
    full
        The store's events, as :func:`open_events` returned them.
    events
        The stage's result: ``full`` itself, or a selection of its events in store order.
    before
        :func:`_keys` of ``events`` when the stage started.
    subset
        The clean stage only: whether each event of ``full`` is in ``events``.

    Returns
    -------
    None. The store's obs, obsm and uns are updated; ``work/store/<stage>.json`` lists
    the obs columns, obsm entries and uns keys the stage added.
    """
    events.strings_to_categoricals()  # as writing the in-memory path's h5ad does
    if subset is not None:
        mask = np.asarray(subset, dtype=bool)
    elif SUBSET in full.obs:
        mask = full.obs[SUBSET].to_numpy(dtype=bool)
    else:
        mask = np.ones(full.n_obs, dtype=bool)
    if int(mask.sum()) != events.n_obs:
        raise ItmeStateError(f"{stage}: {events.n_obs} events but {int(mask.sum())} selected")
    added = {
        "obs": [c for c in events.obs.columns if c not in before["obs"]],
        "obsm": [k for k in events.obsm if k not in before["obsm"]],
        "uns": [k for k in events.uns if k not in before["uns"] and k != "store"],
    }
    written = list(added["obs"])
    for col in added["obs"]:
        if col not in full.obs:  # added to the selection (else to every event, e.g. itme_qc)
            full.obs[col] = _expand(events.obs[col], mask)
    for key in added["obsm"]:
        if key not in full.obsm:
            value = np.asarray(events.obsm[key])
            out = np.full((full.n_obs, *value.shape[1:]), np.nan, dtype=value.dtype)
            out[mask] = value
            full.obsm[key] = out
    record: dict[str, Any] = dict(added)
    if subset is not None:
        full.obs[SUBSET] = mask
        written.append(SUBSET)
        record["obs"] = [*added["obs"], SUBSET]
        # categories of the selection that differ from the store's (samples excluded)
        record["categories"] = {
            str(col): [events.obs[col].cat.categories.tolist(), bool(events.obs[col].cat.ordered)]
            for col in events.obs.columns
            if isinstance(events.obs[col].dtype, pd.CategoricalDtype)
            and col in full.obs
            and not events.obs[col].cat.categories.equals(full.obs[col].cat.categories)
        }
    full.uns.clear()
    full.uns.update({k: v for k, v in events.uns.items() if k != "store"})
    # the columns of the earlier stages stay (open_events dropped them from full.obs)
    keep = [c for r in _earlier_records(ctx, stage).values() for c in r["obs"]]
    io.update_store(full, store=_store(ctx), obs=written, obsm=added["obsm"], keep=keep)
    full.uns["store"] = str(_store(ctx))
    _write_record(ctx, stage, record)
    logger.info(
        "%s: added %s to %s (%d of %d events)",
        stage,
        ", ".join([*record["obs"], *added["obsm"], *added["uns"]]) or "nothing",
        STORE,
        events.n_obs,
        full.n_obs,
    )


def record_unchanged(ctx: Context, stage: str) -> None:
    """Record that ``stage`` added nothing to the store (as in memory: no file of events)."""
    _write_record(ctx, stage, {"obs": [], "obsm": [], "uns": []})
    logger.info("%s: nothing added to %s", stage, STORE)


def keys_before(cells: AnnData) -> dict[str, list[str]]:
    """What ``cells`` holds when a stage starts (for :func:`save_events`)."""
    return _keys(cells)
