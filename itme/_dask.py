"""Dask backing of the cell-level functions: lazy arrays, blockwise kernels and the cluster.

The per-event numerics live in :mod:`itme.core` as numpy kernels on one block of rows. The
AnnData adapters (``io pp tl``) call them directly on an in-memory array and, when ``X`` or
``layers["raw"]`` is a dask array (a cohort store opened with :func:`itme.io.open_store`),
through the helpers here: :func:`map_rows` (one kernel call per block of events, results
concatenated in event order) and :func:`per_sample` (one task per sample's contiguous rows).
A task that needs several blocks of events (a sample's, a run of a median pass) computes
them itself (:class:`_Carried`): no block of events moves between workers. Every
reduction is explicit in the adapter: counts summed; exact per-group medians over
the marker columns gathered when they fit in :data:`MEDIAN_BATCH_BYTES`, else by histogram
passes whose per-block histograms are summed by a tree of tasks on the workers
(:func:`lazy_group_medians`, :mod:`itme.core.cluster.select`); rows gathered block by block
(:func:`gather_rows`). Randomness is keyed by event index, never by block, so results do
not depend on the chunking or on the number of workers.

:func:`start_compute` turns the ``compute:`` settings into a ``distributed.Client`` (a local
cluster, an existing scheduler, or SLURM/PBS jobs through dask-jobqueue) and checks every
setting before any work starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from itme._progress import cluster_status
from itme._task_warnings import WarningsBack, show_again
from itme.errors import ItmeDependencyError, ItmeInputError, ItmeParameterError

if TYPE_CHECKING:
    from itme.core.cluster.select import GroupSelection

__all__ = [
    "ComputeSettings",
    "as_computed",
    "block_bytes",
    "compute",
    "gather_rows",
    "gathers_columns",
    "is_lazy",
    "lazy_group_medians",
    "lazy_matrix",
    "map_rows",
    "per_block",
    "per_sample",
    "reuse_columns",
    "select_rows",
    "start_compute",
    "take_row_groups",
    "take_rows",
]

logger = logging.getLogger(__name__)

#: schedulers that are not an address
SCHEDULERS = ("local", "slurm", "pbs")
#: working memory of one block while a kernel runs, in multiples of the block (input, float64
#: temporaries of the SOM mapping, output)
BLOCK_WORKING_FACTOR = 4


def is_lazy(x: object) -> bool:
    """Whether ``x`` is a dask array (checked without importing dask).

    Parameters
    ----------
    x
        Any object.

    Returns
    -------
    ``True`` for a ``dask.array.Array``.
    """
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "map_blocks")


def compute(x: Any) -> Any:
    """``x.compute()`` for a dask object, ``x`` otherwise.

    Parameters
    ----------
    x
        A dask collection or anything else.

    Returns
    -------
    The computed value.
    """
    return x.compute() if hasattr(x, "dask") and hasattr(x, "compute") else x


def _distributed_client() -> Any:
    """The ``distributed.Client`` dask computes on now, or ``None`` (threads, synchronous)."""
    import dask

    scheduler = getattr(dask.base.get_scheduler(), "__self__", None)
    if scheduler is None or type(scheduler).__module__.split(".")[0] != "distributed":
        return None
    return scheduler


def _held(values: np.ndarray) -> np.ndarray:
    """The values of a task's argument (a block of :func:`per_block`)."""
    return values


def per_block(values: np.ndarray, chunks: tuple[int, ...]) -> Any:
    """A 1-D dask array of ``values`` in blocks of ``chunks`` whose graphs carry no values.

    On a distributed cluster each block is sent to the workers once, as the argument of a
    task that returns it (``client.map``, the blocks submitted in graphs of at most a quarter
    of ``distributed.admin.large-graph-warning-threshold``, 2.5 MB by default), and the array
    is made of those futures: a graph that uses it carries one key per block instead of the
    values, so arrays of one value per event (a selection's mask, the labels of a median
    selection) do not travel inside every graph ("Sending large graph", 1 byte per event
    for a mask). The tasks keep their blocks on the scheduler (as every task's arguments),
    so a block lost with a worker is computed again, and the array's graph holds the futures:
    the blocks stay on the workers as long as the array or an array computed from it exists.
    The blocks are views of ``values`` while they are sent (no copy on the client). Without
    a distributed client (dask's threaded or synchronous scheduler): ``da.from_array`` (the
    graph holds ``values`` itself, in this process).

    Parameters
    ----------
    values
        1-D numpy array.
    chunks
        Lengths of the blocks (summing to ``len(values)``), e.g. ``X.chunks[0]``.

    Returns
    -------
    The dask array, chunked by ``chunks``.
    """
    import dask
    import dask.array as da

    chunks = tuple(int(c) for c in chunks)
    client = _distributed_client()
    if client is None or not chunks:
        return da.from_array(values, chunks=(chunks,))
    from dask._task_spec import Alias
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from dask.utils import parse_bytes

    threshold = parse_bytes(dask.config.get("distributed.admin.large-graph-warning-threshold"))
    batch = max(1, threshold // 4 // max(1, max(chunks) * values.itemsize))
    stops = np.cumsum(chunks)
    pieces = [values[a:b] for a, b in zip(stops - chunks, stops, strict=True)]
    futures = []
    for i in range(0, len(pieces), batch):  # one graph a batch of blocks
        futures += client.map(_held, pieces[i : i + batch], pure=False)
    del pieces
    name = "per-block-" + tokenize([f.key for f in futures])
    dsk: dict[Any, Any] = {}
    for i, future in enumerate(futures):
        dsk[(name, i)] = Alias((name, i), future.key)
        dsk[future.key] = future  # the graph holds the future: its block stays on the workers
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, (chunks,), meta=np.empty(0, dtype=values.dtype))


def gather_rows(x: Any) -> np.ndarray:
    """A dask array as one numpy array, each block of rows gathered as soon as it is computed.

    On a distributed cluster, ``x.compute()`` concatenates every block in one ``finalize``
    task on one worker (the other workers' blocks moved to it first) and sends the whole
    array to the client after the last block: a serial tail while the other workers idle
    (docs/cluster.md §7). Here every block is a future (``client.compute``), gathered while
    the other blocks are still computing (``distributed.as_completed``), copied into its
    rows of the result (allocated once) and released on its worker at once. The values are
    those of ``x.compute()``. Without a distributed client (dask's threaded or synchronous
    scheduler): ``x.compute()``.

    Parameters
    ----------
    x
        Dask array, 1-D or 2-D (events first).

    Returns
    -------
    The computed numpy array.
    """
    if _distributed_client() is None or x.ndim not in (1, 2) or x.numblocks[0] < 2:
        return np.asarray(x.compute())
    if x.ndim == 2 and len(x.chunks[1]) > 1:
        x = x.rechunk({1: -1})
    starts = np.cumsum((0, *x.chunks[0]))
    out = np.empty(x.shape, dtype=x.dtype)
    for i, values in as_computed(list(x.to_delayed().ravel())):
        out[starts[i] : starts[i + 1]] = values
    return out


def as_computed(parts: list[Any]) -> Iterator[tuple[int, Any]]:
    """Compute dask objects; yield each one's position and value as soon as it is computed.

    On a distributed cluster every part is a future (``client.compute``), gathered while
    the others are still computing (``distributed.as_completed``) and released on its worker
    once yielded: the client holds what the caller keeps. Without a distributed client
    (dask's threaded or synchronous scheduler): ``dask.compute`` of all, then in order.

    Parameters
    ----------
    parts
        Dask objects (e.g. the delayed blocks of an array).

    Yields
    ------
    tuple of (int, object)
        The position of a part in ``parts`` and its computed value.
    """
    client = _distributed_client()
    if client is None:
        import dask

        yield from enumerate(dask.compute(*parts))
        return
    from distributed import as_completed

    futures = client.compute(parts)
    position = {f.key: i for i, f in enumerate(futures)}
    try:
        for batch in as_completed(futures).batches():
            for future, value in zip(batch, client.gather(batch), strict=True):
                yield position[future.key], value
                future.release()
    finally:
        client.cancel([f for f in futures if f.status == "pending"])


def map_rows(
    kernel: Callable[..., np.ndarray],
    X: Any,
    *args: Any,
    dtype: Any,
    columns_out: int | None = None,
    **kwargs: Any,
) -> Any:
    """Apply a row-block kernel to every block of events of a dask array, lazily.

    Parameters
    ----------
    kernel
        ``kernel(block, *args, **kwargs)`` on a numpy block of rows (all columns); returns
        an array with as many rows as the block (1-D, or 2-D with ``columns_out`` columns).
    X
        Dask array, events × channels. Blocks spanning several column chunks are merged
        first (the store is chunked by events only).
    *args, **kwargs
        Passed to the kernel (small objects: codes, cofactors, column indices).
    dtype
        dtype of the result.
    columns_out
        Columns of a 2-D result; ``None`` for a 1-D result (one value per event).

    Returns
    -------
    A lazy dask array chunked like ``X`` along the events.
    """
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if columns_out is None:
        return X.map_blocks(kernel, *args, dtype=dtype, drop_axis=1, **kwargs)
    return X.map_blocks(kernel, *args, dtype=dtype, chunks=(X.chunks[0], (columns_out,)), **kwargs)


def per_sample(
    kernel: Callable[..., Any],
    X: Any,
    rows: list[slice | np.ndarray],
    *args: Any,
    per_call: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Run ``kernel(X[rows_i], *args, **kwargs)`` as one task per sample and gather the results.

    Parameters
    ----------
    kernel
        Function of one sample's numpy block (events × channels) and the extra arguments.
    X
        Dask array, events × channels.
    rows
        The events of each sample (a slice of contiguous events, or positions).
    *args, **kwargs
        Passed to every call.
    per_call
        Keyword arguments that differ between samples, one dict per entry of ``rows``.

    Each task computes the blocks of ``X`` that hold its sample's rows (:class:`_Carried`:
    the blocks do not move between workers) and copies the sample's rows out of each block
    as it comes.

    Returns
    -------
    The kernel's results, in the order of ``rows``. On a ``distributed`` cluster of worker
    processes, the warnings a task raised are shown again here (in the order of ``rows``,
    through this process's filters: :mod:`itme._task_warnings`), so a run records them.
    """
    import dask
    from dask.base import tokenize
    from dask.delayed import Delayed

    extra = per_call if per_call is not None else [{}] * len(rows)
    client = _distributed_client()
    # on a cluster of worker processes, the task's warnings come back (threads share ours)
    call = kernel if client is None else WarningsBack(kernel, os.getpid())
    carried = _Carried(X)
    name = "per-sample-" + tokenize(X.name, call, rows, args, kwargs, extra)
    graph = dict(carried.graph)
    for i, (r, more) in enumerate(zip(rows, extra, strict=True)):
        blocks = carried.spanned(r)
        start = int(carried.starts[blocks.start]) if blocks else 0
        graph[(name, i)] = carried.task(
            (name, i),
            _sample_call,
            blocks,
            start,
            r,
            carried.shape,
            carried.dtype,
            call,
            *args,
            **kwargs,
            **more,
        )
    done = dask.compute(*[Delayed((name, i), graph) for i in range(len(rows))])
    if client is None:
        return list(done)
    show_again(caught for _, caught in done)
    return [result for result, _ in done]


def block_bytes(chunk_rows: int, n_channels: int) -> int:
    """Bytes of one float32 block of ``chunk_rows`` events × ``n_channels`` channels.

    Parameters
    ----------
    chunk_rows
        Events per block.
    n_channels
        Channels of the matrix.

    Returns
    -------
    The block's size in bytes.
    """
    return int(chunk_rows) * int(n_channels) * 4


@dataclass
class ComputeSettings:
    """Where and how the lazy cell-level work runs (the ``compute:`` config section).

    Attributes
    ----------
    scheduler
        ``"local"`` (a ``LocalCluster`` of worker processes on this machine), a scheduler
        address (``tcp://host:8786``), ``"slurm"`` or ``"pbs"`` (workers submitted as batch
        jobs through dask-jobqueue).
    workers
        Worker processes (jobs for slurm/pbs); ``None``: one per core (local) or 1.
    threads_per_worker
        Threads of each worker.
    memory_per_worker
        Memory limit of each worker, e.g. ``"2GB"``; ``None``: dask's default share.
    chunk_rows
        Events per block of the store and of every blockwise task.
    jobqueue
        Extra keyword arguments of the dask-jobqueue cluster (``queue``, ``account``,
        ``walltime``, ``job_extra_directives``, ...).
    connect_timeout
        How long to wait for the scheduler before failing, e.g. ``"10s"``.
    """

    scheduler: str = "local"
    workers: int | None = None
    threads_per_worker: int = 1
    memory_per_worker: str | None = None
    chunk_rows: int = 65_536
    jobqueue: Mapping[str, Any] = field(default_factory=dict)
    connect_timeout: str = "10s"

    def check(self, n_channels: int | None = None) -> None:
        """Check every setting that can be checked without starting anything.

        Parameters
        ----------
        n_channels
            Channels of the matrix, to check that one block fits in a worker's memory.

        Raises
        ------
        ItmeParameterError
            An unknown scheduler, non-positive counts, an unreadable memory size, or memory per
            worker smaller than the working memory of one block.
        ItmeDependencyError
            ``slurm``/``pbs`` without dask-jobqueue installed.
        """
        s = self.scheduler
        if s not in SCHEDULERS and "://" not in s and ":" not in s:
            raise ItmeParameterError(
                "compute.scheduler",
                "local, slurm, pbs or a scheduler address such as tcp://host:8786",
                s,
            )
        for name in ("workers", "threads_per_worker", "chunk_rows"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ItmeParameterError(f"compute.{name}", "a positive integer", value)
        if self.memory_per_worker is not None and n_channels is not None:
            limit = self.memory_bytes()
            need = BLOCK_WORKING_FACTOR * block_bytes(self.chunk_rows, n_channels)
            if limit < need:
                raise ItmeParameterError(
                    "compute.memory_per_worker",
                    f"at least {need / 1e6:.0f} MB ({BLOCK_WORKING_FACTOR}x one block of "
                    f"{self.chunk_rows} events x {n_channels} channels, float32)",
                    self.memory_per_worker,
                    fix="Give the workers more memory or lower compute.chunk_rows",
                )
        if s in ("slurm", "pbs"):
            try:
                import dask_jobqueue  # noqa: F401
            except ImportError as exc:
                raise ItmeDependencyError(
                    "dask-jobqueue", "jobqueue", f"compute.scheduler: {s}"
                ) from exc

    def memory_bytes(self) -> int:
        """``memory_per_worker`` in bytes.

        Returns
        -------
        The parsed size.

        Raises
        ------
        ItmeParameterError
            The size cannot be read (``"2GB"``, ``"512 MiB"``, ...).
        """
        from dask.utils import parse_bytes

        try:
            return int(parse_bytes(self.memory_per_worker))
        except (TypeError, ValueError) as exc:
            raise ItmeParameterError(
                "compute.memory_per_worker", "a size such as '2GB'", self.memory_per_worker
            ) from exc


def _local_cluster(settings: ComputeSettings) -> Any:
    from distributed import LocalCluster

    workers = settings.workers or max(1, (os.cpu_count() or 1) // settings.threads_per_worker)
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=settings.threads_per_worker,
        memory_limit=settings.memory_per_worker or "auto",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        processes=True,
    )


def _jobqueue_cluster(settings: ComputeSettings) -> Any:
    import dask_jobqueue

    kind = dask_jobqueue.SLURMCluster if settings.scheduler == "slurm" else dask_jobqueue.PBSCluster
    options = {
        "cores": settings.threads_per_worker,
        "processes": 1,
        "memory": settings.memory_per_worker or "2GB",
        **dict(settings.jobqueue),
    }
    try:
        cluster = kind(**options)
    except (TypeError, ValueError) as exc:
        raise ItmeParameterError(
            "compute.jobqueue", f"options of dask_jobqueue.{kind.__name__}", str(exc)
        ) from exc
    cluster.scale(jobs=settings.workers or 1)
    return cluster


@contextlib.contextmanager
def start_compute(settings: ComputeSettings, *, n_channels: int | None = None) -> Iterator[Any]:
    """Start (or connect to) the Dask cluster of ``settings`` and make it the default.

    Parameters
    ----------
    settings
        The compute settings (checked first).
    n_channels
        Channels of the matrix, to check memory per worker against one block.

    Yields
    ------
    distributed.Client
        The client; every dask computation inside the ``with`` block runs on it.

    Raises
    ------
    ItmeInputError
        The scheduler address cannot be reached.
    """
    settings.check(n_channels)
    from distributed import Client

    cluster = None
    if settings.scheduler == "local":
        cluster = _local_cluster(settings)
        target: Any = cluster
    elif settings.scheduler in ("slurm", "pbs"):
        cluster = _jobqueue_cluster(settings)
        target = cluster
    else:
        target = settings.scheduler
    try:
        client = Client(target, timeout=settings.connect_timeout, set_as_default=True)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ItmeInputError(
            where="compute.scheduler",
            expected="a reachable Dask scheduler",
            found=f"{settings.scheduler!r} ({type(exc).__name__}: {exc})",
            fix="Start it with `dask scheduler` (and `dask worker ADDRESS`) or correct the "
            "address; `itme run --scheduler local` runs on this machine",
        ) from exc
    if cluster is not None and settings.scheduler != "local":
        client.wait_for_workers(1, timeout=300)
    logger.info(
        "dask: scheduler %s, %d workers; dashboard %s",
        client.scheduler.address,
        len(client.scheduler_info().get("workers", {})),
        client.dashboard_link,
    )
    try:
        with cluster_status(client):
            yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def lazy_matrix(adata: Any, layer: str | None) -> Any:
    """``X`` or ``layers[layer]`` when it is a dask array, else ``None``.

    Parameters
    ----------
    adata
        An AnnData.
    layer
        A layer name, or ``None`` for ``X``.

    Returns
    -------
    The dask array, or ``None`` (use :func:`itme._adata.matrix`).
    """
    if layer is not None and layer not in adata.layers:
        return None
    X = adata.X if layer is None else adata.layers[layer]
    return X if is_lazy(X) else None


#: bytes of rows gathered at once by :func:`take_row_groups`, and of marker columns
#: gathered for exact medians (:func:`lazy_group_medians`; larger ones are selected on
#: the workers)
MEDIAN_BATCH_BYTES = 512 * 2**20


def take_row_groups(X: Any, groups: list[np.ndarray], columns: np.ndarray) -> Iterator[np.ndarray]:
    """``X[rows][:, columns]`` of each group of rows, gathered several groups at a time.

    Consecutive groups are gathered together (one :func:`take_rows`, so a lazy matrix is
    read once per batch instead of once per group) while their values fit in
    :data:`MEDIAN_BATCH_BYTES`; a larger group is gathered alone.

    Parameters
    ----------
    X
        Events × channels, numpy or dask.
    groups
        Sorted row positions of each group (e.g. the events drawn from each sample).
    columns
        Column positions.

    Yields
    ------
    numpy.ndarray
        The values of each group, in the order of ``groups``.
    """
    row_bytes = max(1, len(columns) * np.dtype(X.dtype).itemsize)
    start = 0
    while start < len(groups):
        stop, size = start + 1, groups[start].size
        while stop < len(groups) and (size + groups[stop].size) * row_bytes <= MEDIAN_BATCH_BYTES:
            size += groups[stop].size
            stop += 1
        rows = np.concatenate([np.zeros(0, dtype=np.intp), *groups[start:stop]])
        order = np.argsort(rows, kind="stable")  # take_rows reads sorted rows
        values = np.empty((rows.size, len(columns)), dtype=X.dtype)
        values[order] = take_rows(X, rows[order], columns)
        end = 0
        for rows_i in groups[start:stop]:
            yield values[end : end + rows_i.size]
            end += rows_i.size
        start = stop


def take_rows(X: Any, rows: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """``X[rows][:, columns]`` as a numpy array, for numpy and dask ``X`` alike.

    Parameters
    ----------
    X
        Events × channels.
    rows
        Sorted integer positions.
    columns
        Column positions (all when ``None``).

    Returns
    -------
    The gathered numpy array.
    """
    if is_lazy(X):
        rows = np.asarray(rows, dtype=np.intp)
        if not rows.size:
            part = X[rows]
        elif rows[-1] - rows[0] + 1 == rows.size:  # one run (a sample): a slice
            part = X[int(rows[0]) : int(rows[-1]) + 1]
        else:  # the blocks that hold rows, each keeping its rows on a worker (no dask index)
            start = int(rows[0])
            part = select_rows(X[start : int(rows[-1]) + 1], rows - start)
        if columns is not None:
            part = part[:, np.asarray(columns, dtype=np.intp)]
        return gather_rows(part)
    return X[rows] if columns is None else X[np.ix_(rows, columns)]


#: the gathered columns kept by :func:`reuse_columns` (``None``: not kept)
_KEPT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "itme_gathered_columns", default=None
)


def gathers_columns(n_events: int, n_columns: int, dtype: Any) -> bool:
    """Whether :func:`lazy_group_medians` gathers the columns (else: selects on the workers).

    Parameters
    ----------
    n_events, n_columns
        Size of the columns.
    dtype
        dtype of the matrix.

    Returns
    -------
    bool
        ``n_events × n_columns × itemsize <= MEDIAN_BATCH_BYTES`` (read at call time).
    """
    return n_events * n_columns * np.dtype(dtype).itemsize <= MEDIAN_BATCH_BYTES


def _positions(have: np.ndarray, columns: np.ndarray) -> np.ndarray | None:
    """Where ``columns`` are in ``have`` (``None``: not all there)."""
    where = {int(c): i for i, c in enumerate(have)}
    if not all(int(c) in where for c in columns):
        return None
    return np.array([where[int(c)] for c in columns], dtype=np.intp)


class _Gathered:
    """Columns of a dask array read once and held in memory.

    At most :data:`MEDIAN_BATCH_BYTES` (the caller checks :func:`gathers_columns`),
    computed at once in parallel on the cluster (:func:`gather_rows`).
    """

    def __init__(self, X: Any, columns: np.ndarray) -> None:
        self.name, self.columns = str(X.name), columns
        self.dtype = np.dtype(X.dtype)
        self.values = np.asarray(gather_rows(X[:, columns]), dtype=self.dtype)

    def positions(self, columns: np.ndarray) -> np.ndarray | None:
        """Where ``columns`` are among the gathered ones (``None``: not all gathered)."""
        return _positions(self.columns, columns)

    def medians(self, positions: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
        """:func:`~itme.core.cluster.codebook.group_medians` of the columns at ``positions``."""
        from itme.core.cluster.codebook import group_medians

        # no copy of the columns: the kernel selects them
        return group_medians(self.values, labels, n_groups, columns=positions)


@contextlib.contextmanager
def reuse_columns() -> Iterator[None]:
    """Keep the columns gathered for exact medians until the block ends; reuse them.

    Inside the block, :func:`lazy_group_medians` keeps the last columns it gathered from a
    dask array (in memory, at most :data:`MEDIAN_BATCH_BYTES`), and a later call on the same
    array (same dask name) for the same columns or a subset of them, with any labels, uses
    those instead of reading the store: ``tl.annotate``, its cluster phenotype table and the
    subset heatmap then read and transform the store once. Columns too large to gather are
    selected on the workers; the first-pass histogram of the last selection is kept (with
    a copy of its labels, 1-8 bytes per event; the histogram is the size of one block's,
    e.g. 11.8 MB for 40 groups × 36 columns), and a later selection on the same array
    for the same columns or a subset, with labels that merge its groups (the subsets named
    from metaclusters), sums it instead of a first pass over the store
    (:func:`itme.core.cluster.select.regroup_histogram`). All is dropped when the block
    ends.

    Yields
    ------
    None
    """
    token = _KEPT.set({"gathered": None, "first": None})
    try:
        yield
    finally:
        _KEPT.reset(token)


#: histograms summed per task in the tree reduction of :func:`lazy_group_medians`
MEDIAN_SPLIT_EVERY = 8


def _pass_of_run(
    blocks: Iterator[np.ndarray], labels: list[np.ndarray], columns: np.ndarray, step: Any
) -> Any:
    """A run of blocks' part of a selection pass (computed in one task: :class:`_Carried`).

    Their histograms summed into one (a worker holds one histogram per run of
    :data:`MEDIAN_SPLIT_EVERY` blocks until the tree sums it, not one per block), or,
    collecting, the list of each block's keys.
    """
    from itme.core.cluster.select import candidates_block, histogram_block

    if step.collect:
        return [
            candidates_block(x, lab, columns, step) for x, lab in zip(blocks, labels, strict=True)
        ]
    total = None
    for x, lab in zip(blocks, labels, strict=True):
        hist = histogram_block(x, lab, columns, step)
        total = hist if total is None else np.add(total, hist, out=total)
    return total


def _with_blocks(
    func: Callable[..., Any],
    blocks: tuple[Any, ...],
    inputs: tuple[Any, ...],
    values: list[Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``func(computed blocks, *args, **kwargs)``: the task of :meth:`_Carried.task`.

    ``blocks`` are the dask tasks of the blocks, ``inputs`` the keys they read and
    ``values`` those keys' values; each block is computed when ``func`` asks for the next.
    """
    known = dict(zip(inputs, values, strict=True))
    computed = (task({k: known[k] for k in task.dependencies}) for task in blocks)
    return func(computed, *args, **kwargs)


class _Carried:
    """The blocks of a dask array, each computed inside the task that uses it.

    A task that took blocks of events as arguments would make dask compute each block as a
    task of its own, queued on whichever worker is free: about half of the blocks of a run
    (or of a sample) then moved between two workers (2.1 GB a median call at 10^7 events,
    188 bytes an event). Here the task of each block (the store read and the transform,
    fused by dask into one task a block) is carried inside the task that uses the block
    and computed there, so no block of events leaves its worker; that task depends on what
    the blocks' tasks read (the store's array, a selection's per-block mask: a few bytes an
    event) instead. These tasks are marked as data producers: dask queues them as it
    queued the store reads they replace (a worker takes the next when it is free, so memory
    stays bounded).
    """

    def __init__(self, X: Any) -> None:
        import dask

        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        (X,) = dask.optimize(X)
        graph = dict(X.__dask_graph__())
        self.blocks = [graph.pop(row[0]) for row in X.__dask_keys__()]
        self.graph = graph
        self.starts = np.cumsum((0, *X.chunks[0]))
        self.shape, self.dtype = X.shape, X.dtype

    def task(
        self, key: Any, func: Callable[..., Any], blocks: range, *args: Any, **kwargs: Any
    ) -> Any:
        """The task ``key``: ``func(blocks computed in order, *args, **kwargs)``."""
        from dask._task_spec import List, Task, TaskRef

        tasks = tuple(self.blocks[i] for i in blocks)
        inputs = tuple(sorted({k for t in tasks for k in t.dependencies}, key=str))
        refs = List(*(TaskRef(k) for k in inputs))
        return Task(
            key, _with_blocks, func, tasks, inputs, refs, *args, _data_producer=True, **kwargs
        )

    def spanned(self, rows: slice | np.ndarray) -> range:
        """The blocks that hold ``rows`` (sorted positions or a slice)."""
        if isinstance(rows, slice):
            first, last = rows.start, rows.stop - 1
        elif len(rows):
            first, last = int(rows[0]), int(rows[-1])
        else:
            return range(0)
        if last < first:
            return range(0)
        lo = int(np.searchsorted(self.starts, first, side="right")) - 1
        hi = int(np.searchsorted(self.starts, last, side="right"))
        return range(lo, hi)


def _sample_call(
    blocks: Iterator[np.ndarray],
    start: int,
    rows: slice | np.ndarray,
    shape: tuple[int, ...],
    dtype: Any,
    kernel: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``kernel(X[rows], *args, **kwargs)``: the task of a sample in :func:`per_sample`.

    ``blocks`` are the consecutive blocks that hold ``rows`` (a slice, or sorted positions),
    the first starting at row ``start``; each block's rows are copied into the sample's
    array as the block comes (a block is dropped before the next is computed).
    """
    n = rows.stop - rows.start if isinstance(rows, slice) else len(rows)
    values = np.empty((n, *shape[1:]), dtype=dtype)
    done = 0
    for block in blocks:
        stop = start + block.shape[0]
        if isinstance(rows, slice):
            part = block[max(rows.start, start) - start : min(rows.stop, stop) - start]
        else:
            part = block[rows[done : int(np.searchsorted(rows, stop))] - start]
        values[done : done + part.shape[0]] = part
        done, start = done + part.shape[0], stop
    return kernel(values, *args, **kwargs)


def _added(*parts: np.ndarray) -> np.ndarray:
    """The sum of histograms, in one new array (the parts are left as they are)."""
    out = parts[0].copy()
    for part in parts[1:]:
        out += part
    return out


def _gathered_for(X: Any, columns: np.ndarray) -> tuple[_Gathered, np.ndarray] | None:
    """The gathered columns holding ``columns`` and their positions, or ``None``.

    Inside :func:`reuse_columns`, the kept columns when they hold ``columns`` (else these are
    gathered and kept in their place); outside, ``columns`` gathered for this call. ``None``
    when they do not fit in :data:`MEDIAN_BATCH_BYTES` (:func:`gathers_columns`) and no kept
    columns hold them.
    """
    kept = _KEPT.get()
    if kept is not None and (gathered := kept["gathered"]) is not None:
        if gathered.name == str(X.name) and (positions := gathered.positions(columns)) is not None:
            return gathered, positions
    if not gathers_columns(int(X.shape[0]), int(columns.size), X.dtype):
        return None
    if kept is not None:
        kept["gathered"] = None  # the old columns freed before the new ones are read
    gathered = _Gathered(X, columns)
    if kept is not None:
        kept["gathered"] = gathered
    return gathered, np.arange(columns.size, dtype=np.intp)


def _run_tasks(carried: _Carried, labels: Any, columns: np.ndarray, step: Any) -> list[Any]:
    """One delayed task a run of :data:`MEDIAN_SPLIT_EVERY` blocks: :func:`_pass_of_run`."""
    import dask
    from dask._task_spec import List, TaskRef
    from dask.base import tokenize
    from dask.delayed import Delayed

    shared = dask.delayed(step, pure=True)  # one copy in the graph, not one a run
    label_keys = list(labels.__dask_keys__())
    name = "median-pass-" + tokenize(labels.name, columns, shared.key)
    graph = dict(carried.graph)
    graph.update(labels.__dask_graph__())
    graph.update(shared.__dask_graph__())
    keys = []
    for r, first in enumerate(range(0, len(carried.blocks), MEDIAN_SPLIT_EVERY)):
        run = range(first, min(first + MEDIAN_SPLIT_EVERY, len(carried.blocks)))
        lab = List(*(TaskRef(label_keys[i]) for i in run))
        graph[(name, r)] = carried.task(
            (name, r), _pass_of_run, run, lab, columns, TaskRef(shared.key)
        )
        keys.append((name, r))
    return [Delayed(k, graph) for k in keys]


def _select_on_workers(
    X: Any, labels: np.ndarray, n_groups: int, columns: np.ndarray
) -> np.ndarray:
    """Exact per-group medians by histogram passes on the workers (:func:`lazy_group_medians`)."""
    import dask

    from itme.core.cluster.select import GroupSelection, group_counts

    kept = _KEPT.get()
    counts = group_counts(labels, n_groups)
    sel = _regrouped(kept, X, labels, counts, columns)
    if sel is None:
        sel = GroupSelection(counts, columns.size, X.dtype)
    if sel.done:  # no events, groups or columns
        return sel.medians()
    lab = per_block(labels, X.chunks[0])  # on the workers, once: the graphs carry its keys
    carried = _Carried(X)
    add = dask.delayed(_added, pure=True)
    while not sel.done:
        step = sel.step(collect=sel.collects(MEDIAN_BATCH_BYTES))
        parts = _run_tasks(carried, lab, columns, step)
        if step.collect:  # the keys with the known prefixes: the last pass
            sel.take(block for _, run in as_computed(parts) for block in run)
            logger.debug("medians: pass %d collected the keys", sel.passes)
            break
        while len(parts) > 1:  # a tree of sums on the workers, one new array a task
            parts = [
                add(*parts[i : i + MEDIAN_SPLIT_EVERY])
                for i in range(0, len(parts), MEDIAN_SPLIT_EVERY)
            ]
        hist = np.asarray(parts[0].compute())
        sel.update(hist)
        if step.first and kept is not None:  # for a later call with merged groups
            hist = hist.reshape(sel.n_groups, sel.n_columns, -1)
            kept["first"] = _FirstPass(str(X.name), labels.copy(), columns, sel.widths, hist)
        logger.debug("medians: pass %d of %d", sel.passes, len(sel.widths))
    return sel.medians()


@dataclass(frozen=True)
class _FirstPass:
    """The first-pass histogram of a selection, kept by :func:`reuse_columns`."""

    name: str  # of the dask array
    labels: np.ndarray
    columns: np.ndarray
    widths: tuple[int, ...]
    hist: np.ndarray  # groups × columns × bins

    def positions(self, columns: np.ndarray) -> np.ndarray | None:
        """Where ``columns`` are among the counted ones (``None``: not all counted)."""
        return _positions(self.columns, columns)


def _regrouped(
    kept: dict[str, Any] | None, X: Any, labels: np.ndarray, counts: np.ndarray, columns: np.ndarray
) -> GroupSelection | None:
    """A selection past its first pass, summed from the kept one (``None``: not possible).

    Possible inside :func:`reuse_columns` after a selection on the same array, for the same
    or fewer columns and as many or fewer (group, column) histograms, when every kept group
    lies within one of ``labels``' groups (:func:`itme.core.cluster.select.regroup_histogram`).
    """
    from itme.core.cluster.select import GroupSelection, regroup_histogram

    first = None if kept is None else kept["first"]
    if first is None or first.name != str(X.name) or counts.size * columns.size == 0:
        return None
    positions = first.positions(columns)
    if positions is None or counts.size * columns.size > first.hist.shape[0] * first.hist.shape[1]:
        return None
    hist = regroup_histogram(first.hist, first.labels, labels, counts.size, positions)
    if hist is None:
        return None
    sel = GroupSelection(counts, columns.size, X.dtype, widths=first.widths)
    if not sel.done:
        sel.update(hist)
    logger.info("medians: first pass summed from the last selection's groups (no store read)")
    return sel


def lazy_group_medians(
    X: Any, labels: np.ndarray, n_groups: int, columns: np.ndarray
) -> np.ndarray:
    """Exact per-group medians of ``columns`` of a dask array: gathered, or on the workers.

    The medians need every value of a group, so this is not blockwise. Two regimes, the
    same values:

    - **gathered** when the columns fit in :data:`MEDIAN_BATCH_BYTES`
      (n_events × len(columns) × itemsize, :func:`gathers_columns`): one pass over the
      matrix brings them to the client (:func:`gather_rows`) and the numpy kernel
      :func:`itme.core.cluster.codebook.group_medians` runs on them. Inside
      :func:`reuse_columns` they are kept for the next call on the same array.
    - **selected on the workers** otherwise (:mod:`itme.core.cluster.select`): a few passes
      over the matrix (3 for float32 with up to ~56 groups × 36 columns, else 4; float64 6
      or 8), each a sum of per-block histograms: one task per run of
      :data:`MEDIAN_SPLIT_EVERY` blocks computes each block (:class:`_Carried`) and counts
      the digit of the values of each (group, column) whose key starts with the digits
      known so far, and the runs' histograms are summed by a tree of tasks on the workers
      (:data:`MEDIAN_SPLIT_EVERY` at a time). The client receives one histogram array per
      pass (groups × columns × bins × 4 bytes at most, ~12 MB for 40 groups × 36 columns);
      nothing as large as the events is gathered or written to disk. The labels are sent
      to the workers once (:func:`per_block`), not inside the graph of every pass.

    Parameters
    ----------
    X
        Dask array, events × channels.
    labels
        Integer group per event (negative or ``>= n_groups``: left out).
    n_groups
        Number of groups.
    columns
        Column positions.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_groups, len(columns))``: the values of
        :func:`itme.core.cluster.codebook.group_medians` on the computed matrix, bit for bit
        (selected on the workers, a median of zero is +0.0 where numpy may give -0.0); NaN
        where a group's column holds a NaN and NaN rows for empty groups.
    """
    labels = np.asarray(labels)
    columns = np.asarray(columns, dtype=np.intp)
    if labels.shape != (int(X.shape[0]),):
        raise ItmeParameterError("labels", f"one label per event ({X.shape[0]})", labels.shape)
    found = _gathered_for(X, columns)
    if found is not None:
        gathered, positions = found
        return gathered.medians(positions, labels, n_groups)
    logger.info(
        "medians: %d events × %d columns exceed %d MB: selected on the workers",
        X.shape[0],
        columns.size,
        MEDIAN_BATCH_BYTES // 2**20,
    )
    return _select_on_workers(X, labels, n_groups, columns)


def _rows_of_block(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return block[mask]


def select_rows(X: Any, rows: np.ndarray, masks: dict[Any, Any] | None = None) -> Any:
    """``X[rows]`` of a dask array for increasing ``rows``, lazily, one task per block.

    Each block keeps the boolean mask of its rows (one byte per event); dask's fancy
    indexing (``X[rows]``, ``np.take``) instead splits and sorts the integer index on the
    client, ~60 bytes and ~20 µs per selected row at 10^6 rows. On a distributed cluster the
    mask is sent to the workers once (:func:`per_block`): the graphs that use the selection
    carry one key per block, not the mask, and the client keeps no copy of it.

    Parameters
    ----------
    X
        A dask array, events × channels.
    rows
        Strictly increasing integer positions.
    masks
        The per-block masks made for these ``rows`` by earlier calls, by ``X.chunks[0]``
        (filled here): arrays of the same events chunked alike (``X`` and the raw counts of
        a store) share one mask on the workers.

    Returns
    -------
    The dask array of the selected rows, one block per block of ``X`` (some may be empty).
    """
    import dask.array as da

    masks = {} if masks is None else masks
    if X.chunks[0] not in masks:
        n = int(X.shape[0])
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        if n == 0 or int(mask.sum()) != len(rows):
            return X[np.asarray(rows, dtype=np.intp)]  # repeated rows: dask's own indexing
        stops = np.cumsum(X.chunks[0])
        # a block at a time (np.add.reduceat casts every event to int64: 1.9 s at 10^8)
        counts = tuple(
            int(np.count_nonzero(mask[a:b]))
            for a, b in zip(stops - X.chunks[0], stops, strict=True)
        )
        # on a cluster: on the workers, once
        masks[X.chunks[0]] = per_block(mask, X.chunks[0]), counts
        del mask
    blocks, counts = masks[X.chunks[0]]
    return da.blockwise(
        _rows_of_block,
        "ij",
        X,
        "ij",
        blocks,
        "i",
        dtype=X.dtype,
        adjust_chunks={"i": counts},
        meta=np.empty((0, 0), dtype=X.dtype),
    )
