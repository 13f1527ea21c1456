"""Warnings of dask tasks run by other processes, shown again on the client.

A kernel that warns on a ``distributed`` worker process (a per-sample gate that falls back,
a sample left out) would be shown in the worker's log only: the client's warning filters,
the CLI's one line per fact and the run's ``tables/warnings.csv``
(:func:`itme.pipeline._warnings.record_warnings`) never see it. :class:`WarningsBack` wraps
a kernel so that its task returns the warnings it raised beside its result, and
:func:`show_again` shows them on the client, in task order, where the client's filters
decide as they would for the kernel run in the client.

On the worker every warning of the task is kept (whatever the worker's filters, which a
kernel's own ``catch_warnings`` still overrides), by one ``showwarning`` hook installed per
process that keeps the warnings of the task running in its thread (thread-local), so
several threads per worker do not mix their warnings. A task that runs in the client's own
process (dask's threaded scheduler, a cluster of threads) is not wrapped: its warnings
reach the client's filters directly.
"""

from __future__ import annotations

import os
import pickle
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["WarningsBack", "show_again"]

#: a warning as sent back: (the warning, its class, file name, line)
Caught = tuple[Warning, type[Warning], str, int]

_LOCAL = threading.local()
_LOCK = threading.Lock()


def _hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    """A ``showwarning`` keeping the warnings of this thread's task, else ``previous``."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        caught = getattr(_LOCAL, "caught", None)
        if caught is None:
            previous(message, category, filename, lineno, file, line)
            return
        if not isinstance(message, Warning):
            message = category(message)
        caught.append((message, category, filename, lineno))

    show.itme_task_hook = True  # type: ignore[attr-defined]
    return show


def _install() -> None:
    """The hook, and a filter that shows every warning to it, once per worker process."""
    with _LOCK:
        if getattr(warnings.showwarning, "itme_task_hook", False):
            return
        warnings.showwarning = _hook(warnings.showwarning)
        # every warning reaches the hook (the client's filters decide when shown again);
        # a kernel's own catch_warnings/simplefilter goes in front of this one
        warnings.simplefilter("always")


def _sendable(caught: Caught) -> Caught:
    """``caught``, its warning made a plain ``UserWarning`` of its text if it cannot be pickled."""
    message, category, filename, lineno = caught
    try:
        pickle.loads(pickle.dumps((message, category)))
    except Exception:  # noqa: BLE001 - any class a library warns with: send its text
        return UserWarning(f"{category.__name__}: {message}"), UserWarning, filename, lineno
    return caught


class WarningsBack:
    """A kernel whose task returns ``(result, warnings raised)`` when run in another process.

    Parameters
    ----------
    kernel
        The function a task runs.
    client_pid
        Process id of the client: a task run in it returns ``(result, [])`` and its
        warnings are shown as they are raised.
    """

    def __init__(self, kernel: Callable[..., Any], client_pid: int) -> None:
        self.kernel = kernel
        self.client_pid = client_pid
        self.__name__ = getattr(kernel, "__name__", "kernel")  # dask's task names

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, list[Caught]]:
        """Run the kernel; return its result and the warnings it raised."""
        if os.getpid() == self.client_pid:
            return self.kernel(*args, **kwargs), []
        _install()
        _LOCAL.caught = caught = []
        try:
            result = self.kernel(*args, **kwargs)
        finally:
            _LOCAL.caught = None
        return result, [_sendable(w) for w in caught]


def show_again(caught: Iterable[list[Caught]]) -> None:
    """Show on the client the warnings tasks sent back, in task order.

    Parameters
    ----------
    caught
        The warnings of each task (the second item of a :class:`WarningsBack` result).

    Returns
    -------
    None. Each warning goes through the client's filters (as ``warnings.warn`` would for
    the kernel run here: one registry for the call, so a warning the filters show once per
    code line is shown once however many tasks raised it).
    """
    registry: dict[Any, Any] = {}
    for task in caught:
        for message, category, filename, lineno in task:
            warnings.warn_explicit(message, category, filename, lineno, registry=registry)
