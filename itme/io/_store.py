"""The cohort store: FCS files converted to an AnnData zarr store, one task per file.

Layout (an ordinary AnnData zarr store, readable by ``anndata.read_zarr``): ``obs``, ``var``,
``uns`` and ``obsm`` as anndata writes them (the obs index, the events' names, written by the
conversion tasks), no ``X``, and the raw ion counts once, in
``layers/raw`` (float32, chunked by ``chunk_rows`` events × all channels, uncompressed: see
:func:`_write_skeleton`). :func:`open_store` opens it lazily: ``layers["raw"]`` (and ``X``, the
same object, as after :func:`itme.io.read_cohort`) is a dask array; ``pp.arcsinh`` then makes
``X`` a lazy blockwise transform of it, so the transformed matrix is never written. Later
stages add their columns with :func:`update_store` (``obs``, ``obsm``, ``uns``), never a new
copy of the matrix, so the store stays about the size of the FCS files.

Conversion is one dask task per file (in parallel on whatever scheduler is active: a
``distributed.Client`` or dask's threads). A task reads its file (once: the SHA-256 comes
from the same bytes) and writes the zarr chunks that lie wholly in it, values and event
names; a chunk shared by neighbouring files is written once, by a task that depends on those
files' tasks and gets their edge rows from them. Every chunk is written exactly once, whole:
no lock, no read-modify-write, and the result does not depend on the order tasks run in.
The chunks are written by the task's thread as their files, encoded by numpy
(:mod:`itme.io._chunk_files`: the bytes zarr writes, without zarr's per-event strings for the
names), or through zarr's array API when the store is not one those writes understand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import by_position
from itme._chain import counts, rebuild
from itme.errors import ItmeInputError
from itme.io._chunk_files import Piece

__all__ = ["open_store", "update_store"]

logger = logging.getLogger(__name__)

#: events per chunk of the store (47 channels: 12 MB per chunk of float32)
CHUNK_ROWS = 65_536
_RAW = "layers/raw"
_NAMES = "obs/_index"  # obs_names, written by the conversion tasks


def _split(start: int, stop: int, chunk_rows: int, n: int) -> tuple[int, int, list[int]]:
    """Rows ``start:stop`` of ``n``: the whole chunks ``lo:hi`` and the edge rows' chunks.

    Rows ``start:lo`` and ``hi:stop`` (each empty or inside one chunk) share their chunk
    with a neighbouring file; the chunks are listed by index.
    """
    lo = min(stop, -(-start // chunk_rows) * chunk_rows)
    hi = stop if stop == n else max(lo, stop // chunk_rows * chunk_rows)
    shared = [a // chunk_rows for a, b in ((start, lo), (hi, stop)) if a < b]
    return lo, hi, shared


def _convert_one(
    plan: Any, path: str, start: int, stop: int, chunk_rows: int, checksum: bool
) -> tuple[dict[str, Any], dict[int, tuple[int, np.ndarray, Piece]]]:
    """Read one file; write the whole chunks of its rows ``start:stop``, return the others.

    The file is read once: its SHA-256 is computed from the same bytes (``checksum``). The
    events (``layers/raw``) and their names (``obs/_index``) of the chunks that lie wholly in
    this file are written; those of the (at most two) chunks shared with a neighbouring file
    are returned as ``{chunk: (first row, values, names)}``, for :func:`_write_shared`. The
    names are ``(sample id, first event, events)``: built (or encoded) when written.
    """
    from itme.io._fcs_events import read_events

    fcs = plan.text
    values = np.zeros((stop - start, plan.columns.size), dtype=np.float32)
    digest = hashlib.sha256() if checksum else None
    read_events(fcs, values, plan.columns, None, digest=digest)
    writer = _writer(path)
    lo, hi, shared = _split(start, stop, chunk_rows, writer.rows)
    writer.write(lo, values[lo - start : hi - start], [(plan.sample_id, lo - start, hi - lo)])
    edges = {}
    for k in shared:
        a, b = max(start, k * chunk_rows), min(stop, (k + 1) * chunk_rows)
        edges[k] = (a, values[a - start : b - start].copy(), (plan.sample_id, a - start, b - a))
    info = {
        "sha256": digest.hexdigest() if digest is not None else "",
        "notes": list(fcs.notes),
        "warned": getattr(fcs, "warned", None),
    }
    return info, edges


def _write_shared(path: str, k: int, *edges: dict[int, tuple[int, Any, Piece]]) -> None:
    """Write chunk ``k``, shared by several files, at once from their edge rows."""
    pieces = sorted((e[k] for e in edges if k in e), key=lambda piece: piece[0])
    values = np.concatenate([p[1] for p in pieces])
    _writer(path).write(pieces[0][0], values, [p[2] for p in pieces])


#: write the chunks as files, pre-encoded (:mod:`itme.io._chunk_files`), when the store
#: allows it; ``False``: always through zarr's array API
PRE_ENCODED = True


def _writer(path: str) -> Any:
    """What writes the store's chunks: their files directly, or zarr's array API.

    Both write the same bytes; the files directly when :func:`itme.io._chunk_files.chunk_files`
    recognises the store's arrays (a local folder, the codecs of :func:`_write_skeleton`,
    a zarr version whose output was compared), zarr otherwise.
    """
    from itme.io._chunk_files import chunk_files

    files = chunk_files(path, _RAW, _NAMES) if PRE_ENCODED else None
    if files is None:
        logger.debug("store %s: chunks written through zarr", path)
        return _ZarrChunks(path)
    return files


class _ZarrChunks:
    """Writes whole chunks of ``layers/raw`` and ``obs/_index`` through zarr's array API.

    ``write_empty_chunks``: every chunk is written, as it is, without zarr first comparing
    each value with the fill value to leave out chunks that hold only the fill value (a
    second pass over the events that cost more CPU than the write itself).
    """

    def __init__(self, path: str) -> None:
        import zarr

        config = {"write_empty_chunks": True}
        self.raw, self.index = (
            zarr.open_array(f"{path}/{key}", mode="r+").with_config(config)
            for key in (_RAW, _NAMES)
        )
        self.rows = int(self.raw.shape[0])

    def write(self, first: int, values: np.ndarray, pieces: Sequence[Piece]) -> None:
        """Write ``values`` and the names of ``pieces`` as rows ``first:`` of the arrays.

        ``first`` is a chunk's first row; the rows end at a chunk's end or the store's. One
        zarr write per chunk: a chunk's values then go to zarr's codecs as they are (a write
        of several chunks at once has zarr copy each one into a new array first).
        """
        from itme.io._cohort import event_names

        names = [event_names(sample_id, n, first=j) for sample_id, j, n in pieces]
        names = names[0] if len(names) == 1 else np.concatenate(names)
        step = self.raw.chunks[0]
        for r in range(0, len(values), step):
            self.raw[first + r : first + r + step] = values[r : r + step]
            self.index[first + r : first + r + step] = names[r : r + step]


def write_store(
    store: str | PathLike[str],
    plans: list[Any],
    counts: np.ndarray,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    *,
    checksums: bool,
    chunk_rows: int = CHUNK_ROWS,
    beside: Sequence[Callable[[], None]] = (),
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
    beside
        Functions that write metadata into the store, run one after the other in a thread
        of this process while the tasks convert (after the columns of ``obs``).

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
    step = max(1, min(int(chunk_rows), max(n, 1)))
    _write_skeleton(path, obs, var, step)
    rows = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    infos, sharing = [], {}  # sharing: chunk -> the edges of the files that share it
    for k, plan in enumerate(plans):
        start, stop = int(rows[k]), int(rows[k + 1])
        info, edges = dask.delayed(_convert_one, pure=False, nout=2)(
            plan, str(path), start, stop, step, checksums
        )
        infos.append(info)
        for chunk in _split(start, stop, step, n)[2]:
            sharing.setdefault(chunk, []).append(edges)
    shared = [
        dask.delayed(_write_shared, pure=False)(str(path), chunk, *edges)
        for chunk, edges in sharing.items()
    ]
    # the metadata (obs's columns, ``beside``) are written in a thread of this process while
    # the tasks convert (as a task, dask's threaded scheduler ran it last, after every
    # conversion); written before or after them, it added to the conversion's time
    with ThreadPoolExecutor(1, thread_name_prefix="itme-store") as pool:
        writes = [pool.submit(_write_obs_columns, str(path), obs)]
        writes += [pool.submit(func) for func in beside]
        results = list(dask.compute(*infos, *shared)[: len(infos)])
        for done in writes:
            done.result()
    logger.info(
        "store %s: %d files, %d events x %d channels converted in %.2f s",
        path,
        len(plans),
        n,
        m,
        time.perf_counter() - t0,
    )
    return results


def _write_skeleton(path: Path, obs: pd.DataFrame, var: pd.DataFrame, step: int) -> None:
    """The store's groups, ``var`` and the empty arrays of the events' values and names.

    The conversion tasks write the events' values and names, :func:`_write_obs_columns`
    (in a thread, beside them) the columns of ``obs``; only ``obs``'s length is used here.

    ``layers/raw`` is stored uncompressed: the FCS values (noise-randomised counts) gain
    little from a codec (zstd: 0.80x at 90 MB/s of one core; blosc-lz4 with shuffle:
    0.92-0.98x at ~600 MB/s; measured by scripts/bench_ingest.py) while ingest and every
    later pass over the store would pay for it. ``obs/_index`` (one string per event) is
    created empty, chunked like ``layers/raw``, compressed by zstd at level 1 (~0.3 bytes
    per name, 2% of the strings; cheaper to write and smaller than zarr's default, zstd's 3).
    """
    from zarr.codecs import ZstdCodec

    n, m = len(obs), var.shape[0]
    with _zarr_settings():
        AnnData(var=var).write_zarr(path)  # no events yet: groups, var, attributes
        frame = _group(path)["obs"]
        del frame["_index"]
        names = frame.create_array(
            "_index", shape=(n,), chunks=(step,), dtype=str, compressors=ZstdCodec(level=1)
        )
        names.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
        raw = (
            _group(path)
            .require_group("layers")
            .create_array("raw", shape=(n, m), chunks=(step, m), dtype="float32", compressors=None)
        )
        raw.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})


def _write_obs_columns(path: str, obs: pd.DataFrame) -> None:
    """Write the columns of ``obs`` (per-event categoricals) and their order into the store.

    Run by :func:`write_store` while the conversion tasks run (they write only
    ``obs/_index``'s chunks, never ``obs``'s attributes); written before them, in the
    skeleton, it delayed every conversion.
    """
    from anndata.io import write_elem

    with _zarr_settings():
        frame = _group(path)["obs"]
        for col in obs.columns:
            write_elem(frame, str(col), obs[col]._values)
        frame.attrs["column-order"] = [str(c) for c in obs.columns]


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
    _write_new(group, key, value)
    _put_in_place(group, key)


def _write_new(group: Any, key: str, value: Any) -> None:
    """Write ``value`` as ``group["<key>.new"]``, the first half of :func:`_write_elem`."""
    from anndata.io import write_elem

    new = Path(group.store.root) / f"{key}.new"
    shutil.rmtree(new, ignore_errors=True)
    with _zarr_settings():
        write_elem(group, f"{key}.new", value)


def _put_in_place(group: Any, key: str) -> None:
    """Rename ``<key>.new`` to ``key``, the second half of :func:`_write_elem`."""
    import zarr

    root = Path(group.store.root)
    new, old = root / f"{key}.new", root / f"{key}.old"
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


def _write_obs(
    group: Any,
    obs: pd.DataFrame,
    columns: Sequence[str] | None,
    keep: Sequence[str] = (),
) -> None:
    """Write the columns ``columns`` of ``obs`` (all when ``None``) into the store's ``obs``.

    The index (the events' names) and the columns not listed are not rewritten; columns
    of the store that ``obs`` no longer has are removed, but those in ``keep`` (``obs``'s
    columns then follow them). The column order is written last,
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
    if keep:  # the stored order, the new columns after
        wanted = [c for c in stored if c in keep or c in wanted] + [
            c for c in wanted if c not in stored
        ]
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
    AnnData with ``obs``, ``var``, ``obsm`` and ``uns`` read from the store and ``X`` =
    ``layers["raw"]`` = a dask array over ``layers/raw`` (one dask block per zarr chunk),
    bead-normalised and compensated by ``uns["bead_normalization"]`` and
    ``uns["compensation"]`` when they were stored (:func:`itme._chain.counts`; the store's
    ``layers/raw`` keeps the counts as read). When ``uns["arcsinh"]`` was stored, ``X`` is
    the lazy transform of ``layers["raw"]``, followed by the drift and batch corrections of ``uns["drift"]`` and
    ``uns["batch_correction"]`` when they were stored (:func:`itme._chain.rebuild`).
    ``obs_names`` are the events' rows (a ``pd.RangeIndex``), not the names on disk: no
    Python string per event is held (``anndata.read_zarr`` reads the names).
    ``uns["store"]`` holds the store's path.

    Raises
    ------
    ItmeInputError
        The folder is not a cohort store.
    """
    import zarr
    from anndata.io import read_elem

    path = Path(store)
    if path.is_dir():
        _recover(path)
    try:
        group = zarr.open_group(str(path), mode="r", use_consolidated=False)
        group[_RAW]  # KeyError: not a cohort store
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ItmeInputError(
            where=str(path),
            expected="a cohort store with layers/raw (itme.io.read_cohort(..., store=...))",
            found="no such store",
            fix="Convert the FCS files first",
        ) from exc
    frame = group["obs"]  # its columns; the events are named by position, not by the index
    obs = pd.DataFrame(
        {c: read_elem(frame[c]) for c in frame.attrs.get("column-order", [])},
        index=pd.RangeIndex(group[_RAW].shape[0]),
        copy=False,
    )
    return _lazy(path, group, obs)


def _lazy(path: Path, group: Any, obs: pd.DataFrame) -> AnnData:
    """The store as an AnnData: ``obs`` as given (events named by position), the rest read."""
    import dask.array as da
    from anndata.io import read_elem

    raw = da.from_zarr(group[_RAW])
    var = read_elem(group["var"])
    uns = _uns_from_store(read_elem(group["uns"])) if "uns" in group else {}
    obsm = {k: read_elem(group["obsm"][k]) for k in group["obsm"]} if "obsm" in group else {}
    adata = by_position(obs, var=var, uns=uns, obsm=obsm)
    adata.layers["raw"] = raw
    # bead-normalised and compensated, transformed, drift- or batch-corrected before it was
    # stored: again, lazily (the stored counts stay as read from the FCS files)
    adata.layers["raw"] = counts(adata)
    adata.X = rebuild(adata)
    adata.uns["store"] = str(path)
    return adata


def update_store(
    adata: AnnData,
    *,
    store: str | PathLike[str] | None = None,
    obs: Sequence[str] | None = None,
    obsm: Sequence[str] | None = None,
    keep: Sequence[str] = (),
) -> None:
    """Write ``obs``, ``obsm`` and ``uns`` of a lazily opened cohort into its store.

    The matrix is not written: ``X`` is recomputed from ``layers/raw`` and ``uns``
    (``arcsinh``, ``drift``, ``batch_correction``) when the store is opened.

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
        order becomes ``adata.obs``'s (but for ``keep``).
    obsm
        The obsm entries to write; ``None``: all. Entries ``adata.obsm`` lacks are removed.
    keep
        With ``obs`` given: stored obs columns kept although ``adata.obs`` lacks them (in
        their stored order; ``adata.obs``'s new columns follow), so ``adata.obs`` need only
        hold the columns written (a client need not hold every stored column to add one).

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
    _write_obs(group, adata.obs, obs, keep=keep if obs is not None else ())
    _write_obsm(group, adata.obsm, obsm)
    uns = {k: v for k, v in adata.uns.items() if k != "store"}
    _write_elem(group, "uns", _uns_to_store(uns))


def _io_but_files(plans: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``uns["io"]`` of :func:`read_into_store` but the files' table (known before conversion)."""
    return {
        "panel": extra["panel"].reset_index(drop=True),
        "keywords": {plan.sample_id.replace("/", "_"): plan.text.keywords for plan in plans},
        "dropped_channels": extra["dropped"],
        "channel_map": extra["channel_map"],
        "excluded_markers": extra["excluded"],
    }


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
    import zarr
    from anndata.io import write_elem

    from itme.io._cohort import _obs, _warn_files

    table = extra["table"]
    obs = _obs(table, counts, named=False)  # the names are written chunk by chunk
    # uns["io"] but the files' table (their checksums and notes come from the tasks): written
    # as uns.new while the tasks convert, the table added after them, then put in place
    io = _io_but_files(plans, extra)
    results = write_store(
        store,
        plans,
        counts,
        obs,
        var,
        checksums=checksums,
        chunk_rows=chunk_rows or CHUNK_ROWS,
        beside=[lambda: _write_new(_group(store), "uns", _uns_to_store({"io": io}))],
    )
    records = []
    for k, (plan, res) in enumerate(zip(plans, results, strict=True)):
        fcs = plan.text
        fcs.notes[:] = res["notes"]  # the events were read in the task (maybe another process)
        if res["warned"] is not None:
            fcs.warned = res["warned"]
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
    group = _group(store)
    with _zarr_settings():
        write_elem(group["uns.new"]["io"], "files", pd.DataFrame(records))
    _put_in_place(group, "uns")
    # open the store with the obs just written, not read back (one string per event)
    adata = _lazy(Path(store), zarr.open_group(str(store), mode="r", use_consolidated=False), obs)
    logger.info(
        "read %d events from %d files into %s in %.2f s",
        adata.n_obs,
        len(plans),
        store,
        time.perf_counter() - extra["start"],
    )
    return adata
