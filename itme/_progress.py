"""Progress reporting for long loops and the Dask cluster: silent in library calls unless on.

The CLI switches it on (``settings.progress = True``); library users may do the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _Settings:
    progress: bool = False


settings = _Settings()


def track(iterable: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``iterable``, showing a rich progress bar when ``settings.progress`` is on."""
    if not settings.progress:
        yield from iterable
        return
    from rich.progress import track as rich_track

    yield from rich_track(iterable, description=description, total=total, transient=True)


def task_counts(dask_scheduler: Any) -> dict[str, int]:
    """Tasks on the scheduler by state (run on the scheduler by :func:`cluster_status`)."""
    counts: dict[str, int] = {}
    for ts in dask_scheduler.tasks.values():
        counts[ts.state] = counts.get(ts.state, 0) + 1
    counts["workers"] = len(dask_scheduler.workers)
    return counts


@contextlib.contextmanager
def cluster_status(client: Any, interval: float = 0.5) -> Iterator[None]:
    """Show the cluster's tasks on the terminal while the block runs (when progress is on).

    Progress is off in library calls and switched on by the CLI on a terminal
    (:data:`settings`): a status line polled from the scheduler every
    ``interval`` seconds (tasks processing, waiting, held in memory; workers); the dashboard
    link is in the log (:func:`itme._dask.start_compute`).
    """
    if not settings.progress:
        yield
        return
    import threading

    from rich.console import Console

    stop = threading.Event()
    status = Console(stderr=True).status("dask: starting")

    def poll() -> None:
        while not stop.wait(interval):
            try:
                c = client.run_on_scheduler(task_counts)
            except Exception:  # noqa: BLE001 - the display must never fail the run
                continue
            status.update(
                f"dask: {c.get('processing', 0)} tasks running, {c.get('waiting', 0)} waiting, "
                f"{c.get('memory', 0)} results held; {c['workers']} workers"
            )

    thread = threading.Thread(target=poll, name="itme-dask-progress", daemon=True)
    status.start()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        status.stop()
