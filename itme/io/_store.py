"""The cohort store: FCS files converted to an AnnData zarr store, one task per file.

Layout (an ordinary AnnData zarr store, readable by ``anndata.read_zarr``): ``obs``, ``var``,
``uns`` and ``obsm`` as anndata writes them (the obs index, the events' names, written a
chunk of events at a time), no ``X``, and the raw ion counts once, in
``layers/raw`` (float32, chunked by ``chunk_rows`` events × all channels, compressed with
zarr's default codec). :func:`open_store` opens it lazily: ``layers["raw"]`` (and ``X``, the
same object, as after :func:`itme.io.read_cohort`) is a dask array; ``pp.arcsinh`` then makes
``X`` a lazy blockwise transform of it, so the transformed matrix is never written. Later
stages add their columns with :func:`update_store` (``obs``, ``obsm``, ``uns``), never a new
copy of the matrix, so the store stays below the size of the FCS files.

Conversion is one dask task per file (in parallel on whatever scheduler is active: a
``distributed.Client`` or dask's threads). A task reads its file and writes the zarr chunks
its events cover; a chunk shared by two files is written under a lock named after the chunk
(read-modify-write), so the result does not depend on the order the tasks run in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import by_position
from itme._dask import map_rows
from itme._files import sha256
from itme.core.transform import arcsinh_block
from itme.errors import ItmeInputError

__all__ = ["open_store", "update_store"]

logger = logging.getLogger(__name__)

#: events per chunk of the store (47 channels: 12 MB per chunk of float32); a file shares at
#: most two chunks with its neighbours, rewritten under a lock
CHUNK_ROWS = 65_536
_RAW = "layers/raw"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(name: str) -> Any:
    """A lock shared by every task writing chunk ``name``: distributed on a cluster."""
    try:
        from distributed import Lock, get_worker

        get_worker()
        return Lock(name)
    except (ImportError, ValueError):
        with _LOCKS_GUARD:
            return _LOCKS.setdefault(name, threading.Lock())


def _convert_one(
    plan: Any, path: str, start: int, stop: int, chunk_rows: int, checksum: bool
) -> dict[str, Any]:
    """Read one file and write its events to rows ``start:stop`` of ``layers/raw``."""
    import zarr

    from itme.io._fcs_events import read_events

    fcs = plan.text
    values = np.zeros((stop - start, plan.columns.size), dtype=np.float32)
    read_events(fcs, values, plan.columns, None)
    array = zarr.open_array(f"{path}/{_RAW}", mode="r+")
    first, last = start // chunk_rows, (stop - 1) // chunk_rows if stop > start else -1
    for k in range(first, last + 1):
        a, b = max(start, k * chunk_rows), min(stop, (k + 1) * chunk_rows)
        own = a == k * chunk_rows and (b == (k + 1) * chunk_rows or b == array.shape[0])
        if own:
            array[a:b] = values[a - start : b - start]
        else:
            with _lock(f"itme-store-{path}-{k}"):
                array[a:b] = values[a - start : b - start]
    return {
        "sha256": sha256(plan.path) if checksum else "",
        "notes": list(fcs.notes),
        "warned": getattr(fcs, "warned", None),
    }


def write_store(
    store: str | PathLike[str],
    plans: list[Any],
    counts: np.ndarray,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    *,
    checksums: bool,
    chunk_rows: int = CHUNK_ROWS,
) -> list[dict[str, Any]]:
    """Convert the files of ``plans`` into a new store at ``store`` (one task per file).

    Parameters
    ----------
    store
        Folder of the zarr store (must not exist).
    plans
        The files and their columns, as planned by :func:`itme.io.read_cohort`.
    counts
        Events per file.
    obs, var
        The cohort's obs and var.
    checksums
        Compute the SHA-256 of every file (in its task).
    chunk_rows
        Events per chunk.

    Returns
    -------
    Per file: ``sha256`` and the ``notes`` of reading its events.

    Raises
    ------
    ItmeInputError
        The store exists already.
    """
    import dask

    path = Path(store)
    if path.exists():
        raise ItmeInputError(
            where=str(path),
            expected="a new store folder",
            found="an existing path",
            fix="Open it with itme.io.open_store, or remove it to convert the files again",
        )
    t0 = time.perf_counter()
    n, m = int(counts.sum()), int(var.shape[0])
    positional = isinstance(obs.index, pd.RangeIndex)
    with _zarr_settings():  # by position: a placeholder index, replaced by the names
        by_position(obs, var=var, named=not positional).write_zarr(path)
    if positional:
        _write_names(path, [plan.sample_id for plan in plans], counts, chunk_rows)
    group = _group(path)
    raw = group.require_group("layers").create_array(
        "raw", shape=(n, m), chunks=(max(1, min(int(chunk_rows), max(n, 1))), m), dtype="float32"
    )
    raw.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    rows = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    step = int(raw.chunks[0])
    tasks = [
        dask.delayed(_convert_one, pure=False)(
            plan, str(path), int(rows[k]), int(rows[k + 1]), step, checksums
        )
        for k, plan in enumerate(plans)
    ]
    results = list(dask.compute(*tasks))
    logger.info(
        "store %s: %d files, %d events x %d channels converted in %.2f s",
        path,
        len(plans),
        n,
        m,
        time.perf_counter() - t0,
    )
    return results


def _write_names(
    path: Path, sample_ids: Sequence[str], counts: np.ndarray, chunk_rows: int
) -> None:
    """Write the events' names ``<sample_id>_<event index>`` as the store's obs index.

    The names :func:`itme.io.read_cohort` gives in memory, in anndata's string-array
    encoding, so ``anndata.read_zarr`` reads them, while no process holds a Python string per
    event (:func:`open_store` names events by position): one dask task per
    :data:`NAME_CHUNKS` chunks of events writes their names.
    """
    import dask
    import zarr

    frame = zarr.open_group(str(path / "obs"), mode="r+", use_consolidated=False)
    key = str(frame.attrs["_index"])
    n = int(np.sum(counts))
    step = max(1, min(int(chunk_rows), n))
    del frame[key]  # the placeholder anndata wrote
    with _zarr_settings():
        names = frame.create_array(key, shape=(n,), chunks=(step,), dtype=str)
    names.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ids = [str(s) for s in sample_ids]
    span = step * NAME_CHUNKS
    tasks = [
        dask.delayed(_write_name_chunks, pure=False)(
            f"{path}/obs/{key}", ids, starts, a, min(n, a + span), step
        )
        for a in range(0, n, span)
    ]
    dask.compute(*tasks)
    _consolidate(zarr.open_group(str(path), mode="r+", use_consolidated=False))


#: chunks of event names written by one task of :func:`_write_names`
NAME_CHUNKS = 16


def _write_name_chunks(
    array: str, sample_ids: list[str], starts: np.ndarray, first: int, last: int, step: int
) -> None:
    """Write the names of events ``first:last`` (whole chunks of ``step`` events)."""
    import zarr

    names = zarr.open_array(array, mode="r+")
    text = np.dtypes.StringDType()
    for a in range(first, last, step):
        b = min(last, a + step)
        parts = []
        for k in range(int(np.searchsorted(starts, a, side="right")) - 1, len(sample_ids)):
            if starts[k] >= b:
                break
            rows = np.arange(max(a, starts[k]), min(b, starts[k + 1])) - starts[k]
            parts.append(np.strings.add(f"{sample_ids[k]}_", rows.astype(text)))
        names[a:b] = np.concatenate(parts)


@contextlib.contextmanager
def _zarr_settings() -> Iterator[None]:
    """The zarr settings of the store: format 3, no sharding (chunks are the unit).

    Consolidated metadata (which anndata writes, and reads, for format 3 too) is not yet in
    the zarr 3 specification; zarr's note about it is silenced here, nowhere else.
    """
    with (
        anndata.settings.override(zarr_write_format=3, auto_shard_zarr_v3=False),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        yield


def _group(path: str | PathLike[str]) -> Any:
    """The store's root group, opened for writing without consolidated metadata."""
    import zarr

    return zarr.open_group(str(path), mode="r+", use_consolidated=False)


def _uns_to_store(uns: dict[str, Any]) -> dict[str, Any]:
    """``uns`` as stored: the FCS keywords (thousands of short strings) as one JSON string.

    One zarr array per keyword made writing and opening a store of 20 files take ~10 s.
    """
    io = uns.get("io")
    if not isinstance(io, dict) or "keywords" not in io:
        return uns
    io = {k: v for k, v in io.items() if k != "keywords"}
    io["keywords_json"] = json.dumps(uns["io"]["keywords"], default=str)
    return {**uns, "io": io}


def _uns_from_store(uns: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_uns_to_store`."""
    io = uns.get("io")
    if isinstance(io, dict) and "keywords_json" in io:
        io = dict(io)
        io["keywords"] = json.loads(str(io.pop("keywords_json")))
        uns = {**uns, "io": io}
    return uns


def _write_elem(group: Any, key: str, value: Any) -> None:
    """Write ``group[key]`` whole, replacing it by a rename so a kill never leaves it half-written.

    The element is written beside the old one (``<key>.new``), then the old one is renamed
    away (``<key>.old``), the new one into place, and the old one removed; :func:`_recover`
    puts ``<key>.old`` back when a process was killed between the two renames.
    """
    import zarr
    from anndata.io import write_elem

    root = Path(group.store.root)
    new, old = root / f"{key}.new", root / f"{key}.old"
    shutil.rmtree(new, ignore_errors=True)
    with _zarr_settings():
        write_elem(group, f"{key}.new", value)
    if (root / key).exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(root / key, old)
    os.rename(new, root / key)
    shutil.rmtree(old, ignore_errors=True)
    _consolidate(zarr.open_group(str(root), mode="r+", use_consolidated=False))


def _consolidate(group: Any) -> None:
    """Rewrite the consolidated metadata that ``anndata.read_zarr`` reads."""
    import zarr

    with _zarr_settings():
        zarr.consolidate_metadata(group.store)


def _recover(path: Path) -> None:
    """Undo an element replacement interrupted between its two renames (see :func:`_write_elem`)."""
    for old in path.glob("*.old"):
        target = old.with_suffix("")
        if not target.exists():
            os.rename(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for new in path.glob("*.new"):
        shutil.rmtree(new, ignore_errors=True)


def _write_obs(group: Any, obs: pd.DataFrame, columns: Sequence[str] | None) -> None:
    """Write the columns ``columns`` of ``obs`` (all when ``None``) into the store's ``obs``.

    The index (the events' names) and the columns not listed are not rewritten; columns
    of the store that ``obs`` no longer has are removed. The column order is written last,
    so a kill in between leaves at most an unlisted array, overwritten by the next write.
    """
    from anndata.io import write_elem

    if columns is None and pd.api.types.is_integer_dtype(obs.index.dtype) and "obs" in group:
        columns = [str(c) for c in obs.columns]  # events named by their row: names stay
    if columns is None or "obs" not in group:
        _write_elem(group, "obs", obs)
        return
    frame = group["obs"]
    stored = list(frame.attrs.get("column-order", []))
    wanted = [str(c) for c in obs.columns]
    missing = [c for c in wanted if c not in stored and c not in columns]
    if missing:
        raise ItmeInputError(
            where="update_store(obs=...)",
            expected="every obs column either stored already or listed in obs",
            found=f"{missing} neither",
        )
    with _zarr_settings():
        for col in columns:
            if col in frame:
                del frame[col]
            write_elem(frame, col, obs[col]._values)
        for col in stored:
            if col not in wanted and col in frame:
                del frame[col]
        frame.attrs["column-order"] = wanted
    _consolidate(group)


def _write_obsm(group: Any, obsm: Mapping[str, Any], keys: Sequence[str] | None) -> None:
    """Write the entries ``keys`` of ``obsm`` (all when ``None``); remove those no longer there."""
    from anndata.io import write_elem

    if "obsm" not in group:
        _write_elem(group, "obsm", dict(obsm))
        return
    folder = group["obsm"]
    with _zarr_settings():
        for key in list(folder):
            if key not in obsm or keys is None or key in keys:
                del folder[key]
        for key in obsm if keys is None else keys:
            write_elem(folder, key, obsm[key])
    _consolidate(group)


def open_store(store: str | PathLike[str]) -> AnnData:
    """Open a cohort store lazily: metadata in memory, the matrix as a dask array.

    Parameters
    ----------
    store
        Folder written by ``itme.io.read_cohort(..., store=...)``.

    Returns
    -------
    AnnData with ``obs`` (its columns), ``var``, ``obsm`` and ``uns`` read from the store and
    ``X`` = ``layers["raw"]`` = a dask array over ``layers/raw`` (one dask block per zarr chunk).
    ``obs_names`` are the events' rows (a ``pd.RangeIndex``), not the names on disk: no
    Python string per event is held (``anndata.read_zarr`` reads the names).
    When ``uns["arcsinh"]`` was stored, ``X`` is the lazy transform of ``layers["raw"]``.
    ``uns["store"]`` holds the store's path.

    Raises
    ------
    ItmeInputError
        The folder is not a cohort store.
    """
    import dask.array as da
    import zarr
    from anndata.io import read_elem

    path = Path(store)
    if path.is_dir():
        _recover(path)
    try:
        group = zarr.open_group(str(path), mode="r", use_consolidated=False)
        raw_array = group[_RAW]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ItmeInputError(
            where=str(path),
            expected="a cohort store with layers/raw (itme.io.read_cohort(..., store=...))",
            found="no such store",
            fix="Convert the FCS files first",
        ) from exc
    raw = da.from_zarr(raw_array)
    frame = group["obs"]  # its columns; the events are named by position, not by the index
    obs = pd.DataFrame(
        {c: read_elem(frame[c]) for c in frame.attrs.get("column-order", [])},
        index=pd.RangeIndex(raw.shape[0]),
        copy=False,
    )
    var = read_elem(group["var"])
    uns = _uns_from_store(read_elem(group["uns"])) if "uns" in group else {}
    obsm = {k: read_elem(group["obsm"][k]) for k in group["obsm"]} if "obsm" in group else {}
    adata = by_position(obs, var=var, uns=uns, obsm=obsm)
    adata.layers["raw"] = raw
    adata.X = raw
    if "arcsinh" in uns:  # transformed before it was stored: transform again, lazily
        cols = adata.var_names.get_indexer(list(uns["arcsinh"]["channels"]))
        cof = np.asarray(uns["arcsinh"]["cofactor"], dtype=np.float64)
        adata.X = map_rows(
            arcsinh_block, raw, cols, cof, dtype=np.float32, columns_out=raw.shape[1]
        )
    adata.uns["store"] = str(path)
    return adata


def update_store(
    adata: AnnData,
    *,
    store: str | PathLike[str] | None = None,
    obs: Sequence[str] | None = None,
    obsm: Sequence[str] | None = None,
) -> None:
    """Write ``obs``, ``obsm`` and ``uns`` of a lazily opened cohort into its store.

    The matrix is not written: ``X`` is recomputed from ``layers/raw`` and ``uns["arcsinh"]``
    when the store is opened and transformed again.

    Parameters
    ----------
    adata
        An AnnData opened with :func:`open_store` (same events, in the same order).
    store
        The store; default ``adata.uns["store"]``.
    obs
        The obs columns to write (the others are in the store already and are not rewritten);
        ``None``: all of obs, and its index too unless the events are named by their row
        (as :func:`open_store` names them: the store keeps its names).
        Either way, columns of the store that ``adata.obs`` lacks are removed and the column
        order becomes ``adata.obs``'s.
    obsm
        The obsm entries to write; ``None``: all. Entries ``adata.obsm`` lacks are removed.

    Returns
    -------
    None. Writes the store's ``obs``, ``obsm`` and ``uns`` (``uns["store"]`` left out).
    ``uns`` is replaced as a whole, by a rename: a process killed while writing leaves the
    previous ``uns`` (restored by :func:`open_store`).

    Raises
    ------
    ItmeInputError
        No store is given or known, its number of events differs from ``adata``, or an obs
        column is neither stored nor listed in ``obs``.
    """
    where = store if store is not None else adata.uns.get("store")
    if where is None:
        raise ItmeInputError(
            where="update_store(store=None)",
            expected="a store path or uns['store'] (set by itme.io.open_store)",
            found="neither",
        )
    _recover(Path(where))
    group = _group(where)
    n = int(group[_RAW].shape[0])
    if adata.n_obs != n:
        raise ItmeInputError(
            where=str(where),
            expected=f"{n} events (the store's)",
            found=f"{adata.n_obs} events in adata",
            fix="Keep every event in the AnnData written to a store (label, do not subset)",
        )
    _write_obs(group, adata.obs, obs)
    _write_obsm(group, adata.obsm, obsm)
    uns = {k: v for k, v in adata.uns.items() if k != "store"}
    _write_elem(group, "uns", _uns_to_store(uns))


def read_into_store(
    store: str | PathLike[str],
    plans: list[Any],
    counts: np.ndarray,
    var: pd.DataFrame,
    extra: dict[str, Any],
    checksums: bool,
    chunk_rows: int | None,
) -> AnnData:
    """The out-of-core end of :func:`itme.io.read_cohort`: convert, record, open lazily.

    Parameters
    ----------
    store
        Folder of the new store.
    plans
        The planned files.
    counts
        Events per file.
    var
        The cohort's var.
    extra
        ``panel``, ``dropped``, ``channel_map``, ``excluded``, ``table`` (the sample sheet)
        and ``start`` (timer) of read_cohort.
    checksums
        Record SHA-256 checksums.
    chunk_rows
        Events per chunk (default :data:`CHUNK_ROWS`).

    Returns
    -------
    The store opened with :func:`open_store`, with ``uns["io"]`` as read_cohort writes it.
    """
    from itme.io._cohort import _obs, _warn_files

    table = extra["table"]
    obs = _obs(table, counts, named=False)  # the names are written chunk by chunk
    results = write_store(
        store, plans, counts, obs, var, checksums=checksums, chunk_rows=chunk_rows or CHUNK_ROWS
    )
    records, keywords = [], {}
    for k, (plan, res) in enumerate(zip(plans, results, strict=True)):
        fcs = plan.text
        fcs.notes[:] = res["notes"]  # the events were read in the task (maybe another process)
        if res["warned"] is not None:
            fcs.warned = res["warned"]
        keywords[plan.sample_id.replace("/", "_")] = fcs.keywords
        records.append(
            {
                "sample_id": plan.sample_id,
                "file_name": table["file_name"].iloc[k],
                "path": str(plan.path),
                "sha256": res["sha256"],
                "n_events": int(fcs.n_events),
                "n_channels": int(fcs.channels.shape[0]),
                "fcs_version": fcs.version,
                "matched_by": plan.matched_by,
                "notes": "; ".join(fcs.notes),
            }
        )
    _warn_files(plans, records)
    uns = {
        "io": {
            "files": pd.DataFrame(records),
            "panel": extra["panel"].reset_index(drop=True),
            "keywords": keywords,
            "dropped_channels": extra["dropped"],
            "channel_map": extra["channel_map"],
            "excluded_markers": extra["excluded"],
        }
    }
    _write_elem(_group(store), "uns", _uns_to_store(uns))
    adata = open_store(store)
    logger.info(
        "read %d events from %d files into %s in %.2f s",
        adata.n_obs,
        len(plans),
        store,
        time.perf_counter() - extra["start"],
    )
    return adata
