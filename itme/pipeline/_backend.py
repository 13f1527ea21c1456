"""In memory or on the cohort store: ``compute.backend`` resolved before the first stage.

``auto`` (the default) keeps the cell-level stages in memory while the run fits: the peak of
an in-memory run is estimated from the FCS TEXT segments (``$TOT`` events × channels × 4
bytes, :data:`MEMORY_FACTOR` times, plus :data:`BASE_BYTES`; docs/cluster.md §1 measured
~5× the matrix) and compared with the memory this run may use (:func:`available_memory`:
the memory available now, a cgroup limit, SLURM's ``SLURM_MEM_PER_NODE``). When it would
not fit in :data:`HEADROOM` of that, the stages run on the cohort store with a local Dask
cluster sized to the machine (:func:`local_sizing`). A ``compute.scheduler`` other than
``local`` (an address, slurm, pbs) means a cluster was set up for the run: the store.
``memory`` and ``store`` force the choice. The choice and why are logged and recorded in
``run.json`` (``backend``) and the report's provenance.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from itme import io
from itme.pipeline._config import Config

__all__ = [
    "Backend",
    "available_memory",
    "choose_backend",
    "in_memory_peak",
    "local_sizing",
    "resolve_backend",
]

logger = logging.getLogger(__name__)

#: an in-memory run peaks at about this many times the float32 events matrix
MEMORY_FACTOR = 5
#: and needs this much besides (Python, the libraries, figures)
BASE_BYTES = 2**30
#: share of the available memory a run is planned to use
HEADROOM = 0.8
#: memory of the client per event on the store path (obs labels, obs_names; docs/cluster.md §6)
CLIENT_BYTES_PER_EVENT = 100
#: the least memory a worker of a sized local cluster gets (Python, dask, a few blocks)
MIN_WORKER_BYTES = 2**30
#: cgroup memory limits (v2, v1); a value of ``max`` or above 2**60 means no limit
CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


@dataclass(frozen=True)
class Backend:
    """The backing chosen for the cell-level stages, and why.

    Attributes
    ----------
    backend
        ``"memory"`` or ``"store"``.
    reason
        Why, in one sentence (logged, in ``run.json`` and the report).
    events, channels
        The cohort's size from the FCS TEXT segments (``None``: not read).
    peak_bytes
        The estimated peak of an in-memory run (:func:`in_memory_peak`).
    available_bytes, available_from
        The memory the run may use and where that bound comes from.
    """

    backend: str
    reason: str
    events: int | None = None
    channels: int | None = None
    peak_bytes: int | None = None
    available_bytes: int | None = None
    available_from: str | None = None

    def record(self) -> dict[str, Any]:
        """The fields as a dict (``run.json``'s ``backend``)."""
        return asdict(self)


def in_memory_peak(events: int, channels: int) -> int:
    """Estimated peak memory of an in-memory run, in bytes.

    Parameters
    ----------
    events
        Events of the cohort (sum of ``$TOT``).
    channels
        Channels of the events matrix.

    Returns
    -------
    ``MEMORY_FACTOR`` × events × channels × 4 bytes + ``BASE_BYTES``.
    """
    return int(MEMORY_FACTOR * events * channels * 4 + BASE_BYTES)


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= 2**60:  # "max", or v1's "no limit"
        return None
    return int(text)


def available_memory(environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The memory this run may use: the smallest of what the machine, cgroup and SLURM allow.

    Parameters
    ----------
    environ
        Environment variables (default ``os.environ``): ``SLURM_MEM_PER_NODE`` (MB), or
        ``SLURM_MEM_PER_CPU`` (MB) × ``SLURM_CPUS_ON_NODE``.

    Returns
    -------
    ``(bytes, source)``: the bound and what it is (``psutil``'s available memory, a cgroup
    limit file, a SLURM variable).
    """
    import psutil

    env = os.environ if environ is None else environ
    bounds = [(int(psutil.virtual_memory().available), "memory available (psutil)")]
    for path in CGROUP_LIMITS:
        limit = _read_limit(path)
        if limit is not None:
            bounds.append((limit, f"cgroup limit ({path})"))
    per_node, per_cpu = env.get("SLURM_MEM_PER_NODE"), env.get("SLURM_MEM_PER_CPU")
    if per_node and per_node.isdigit():
        bounds.append((int(per_node) * 2**20, f"SLURM_MEM_PER_NODE={per_node}"))
    elif per_cpu and per_cpu.isdigit():
        cpus = env.get("SLURM_CPUS_ON_NODE", "1")
        n = int(cpus) if cpus.isdigit() else 1
        bounds.append((int(per_cpu) * 2**20 * n, f"SLURM_MEM_PER_CPU={per_cpu} x {n} CPUs"))
    return min(bounds)


def choose_backend(
    requested: str,
    *,
    scheduler: str = "local",
    events: int | None = None,
    channels: int | None = None,
    available: tuple[int, str] | None = None,
) -> Backend:
    """Decide where the cell-level stages run.

    Parameters
    ----------
    requested
        ``compute.backend``: ``auto``, ``memory`` or ``store``.
    scheduler
        ``compute.scheduler``; anything but ``local`` is a cluster set up for the run.
    events, channels
        The cohort's size (needed by ``auto`` with the local scheduler).
    available
        ``(bytes, source)`` of :func:`available_memory` (likewise).

    Returns
    -------
    The :class:`Backend`.
    """
    peak = in_memory_peak(events, channels) if events is not None and channels else None
    size = {
        "events": events,
        "channels": channels,
        "peak_bytes": peak,
        "available_bytes": available[0] if available else None,
        "available_from": available[1] if available else None,
    }
    if requested in ("memory", "store"):
        return Backend(requested, f"compute.backend: {requested}", **size)
    if scheduler != "local":
        return Backend("store", f"compute.scheduler: {scheduler} (a Dask cluster)", **size)
    if peak is None or available is None:
        return Backend("memory", "the cohort's size is unknown", **size)
    gb = 1e9
    estimate = (
        f"an in-memory run of {events:,} events x {channels} channels would peak at "
        f"~{peak / gb:.1f} GB ({MEMORY_FACTOR}x the matrix + {BASE_BYTES / gb:.1f} GB)"
    )
    budget = f"{HEADROOM:.0%} of the {available[0] / gb:.1f} GB of {available[1]}"
    if peak > HEADROOM * available[0]:
        return Backend("store", f"{estimate}, more than {budget}", **size)
    return Backend("memory", f"{estimate}, within {budget}", **size)


def _cpus(environ: Mapping[str, str]) -> int:
    """CPUs this process may use (SLURM's allocation, else the affinity mask)."""
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def local_sizing(
    choice: Backend, threads_per_worker: int = 1, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Workers and memory per worker of a local cluster sized to the machine.

    The workers share ``HEADROOM`` × the available memory less the client's
    (``BASE_BYTES`` + ``CLIENT_BYTES_PER_EVENT`` per event) equally: one worker per
    ``threads_per_worker`` CPUs this process may use, fewer when a worker would get less
    than ``MIN_WORKER_BYTES`` (which is then what it gets).

    Parameters
    ----------
    choice
        The :class:`Backend` with the cohort's size and the available memory.
    threads_per_worker
        Threads of each worker.
    environ
        Environment variables (default ``os.environ``).

    Returns
    -------
    ``{"workers": n}``, with ``"memory_per_worker"`` (e.g. ``"3500MB"``) when the
    available memory is known.
    """
    env = os.environ if environ is None else environ
    workers = max(1, _cpus(env) // max(1, threads_per_worker))
    if choice.available_bytes is None:
        return {"workers": workers}
    client = BASE_BYTES + CLIENT_BYTES_PER_EVENT * (choice.events or 0)
    budget = HEADROOM * choice.available_bytes - client
    workers = max(1, min(workers, int(budget // MIN_WORKER_BYTES)))
    share = max(budget / workers, MIN_WORKER_BYTES)
    return {"workers": workers, "memory_per_worker": f"{share / 1e6:.0f}MB"}


def cohort_size(config: Config) -> tuple[int, int]:
    """Events (sum of ``$TOT``) and channels (the most of any file) of the config's cohort."""
    files = io.summarize(config.inputs.samples, panel=config.inputs.panel).files
    return int(files["events"].sum()), int(files["channels"].max()) if len(files) else 0


def resolve_backend(config: Config) -> tuple[Config, Backend]:
    """``config`` with ``compute.backend`` decided (``memory`` or ``store``), and the choice.

    With the local scheduler the cohort's size is read from the FCS TEXT segments; a store
    run on a local cluster whose workers or memory per worker are not given is sized to the
    machine (:func:`local_sizing`). ``auto`` stays on the store when the previous run in the
    output folder ran there with the same cohort size, so a resumed run continues where it
    stopped whatever the memory available now. The choice is logged; a forced ``memory``
    whose estimate does not fit is a logged warning.

    Parameters
    ----------
    config
        The validated config (its inputs checked).

    Returns
    -------
    The config to run and the :class:`Backend`.
    """
    c = config.compute
    events = channels = available = None
    if c.scheduler == "local":
        events, channels = cohort_size(config)
        available = available_memory()
    choice = choose_backend(
        c.backend, scheduler=c.scheduler, events=events, channels=channels, available=available
    )
    before = _previous(config.output)
    if (
        c.backend == "auto"
        and choice.backend == "memory"
        and before is not None
        and before.get("backend") == "store"
        and (before.get("events"), before.get("channels")) == (events, channels)
    ):  # the same cohort: resume on the store (more memory may be available now)
        choice = replace(
            choice,
            backend="store",
            reason=f"{choice.reason}; kept the store of the previous run of this cohort in "
            "the output folder (resumed there)",
        )
    update: dict[str, Any] = {"backend": choice.backend}
    if choice.backend == "store" and c.scheduler == "local":
        sized = local_sizing(choice, c.threads_per_worker)
        update.update({k: v for k, v in sized.items() if getattr(c, k) is None})
    logger.info("cell-level stages %s: %s", _where(choice.backend), choice.reason)
    if (
        choice.backend == "memory"
        and choice.peak_bytes is not None
        and choice.available_bytes is not None
        and choice.peak_bytes > HEADROOM * choice.available_bytes
    ):
        logger.warning(
            "compute.backend: memory, but %s; the run may run out of memory "
            "(auto would use the cohort store)",
            choose_backend("auto", events=events, channels=channels, available=available).reason,
        )
    compute = c.model_copy(update=update)
    return config.model_copy(update={"compute": compute}), choice


def _previous(out: Path) -> dict[str, Any] | None:
    """The ``backend`` record of the run before in ``out`` (``None``: none readable)."""
    try:
        record = json.loads((out / "run.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return record if isinstance(record, dict) else None


def _where(backend: str) -> str:
    return "in memory" if backend == "memory" else "on the cohort store (Dask, out of core)"
