"""One run per output folder: a lock file naming its holder, stale locks detected.

``itme run`` creates ``<out>/.itme/lock`` with ``O_EXCL`` before the first stage and removes it
when the run ends. The file holds the holder's host, pid, process start time and the time the
run started. A second run on the folder stops with an error naming the holder. A lock whose
process is gone (same host and boot, the pid is dead or now belongs to another process) is
stale: it is replaced, with a warning. A lock from another host cannot be checked and is
respected; the message says how to remove it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from itme.errors import ItmeInputError

logger = logging.getLogger(__name__)

LOCK_FILE = Path(".itme") / "lock"
#: a lock file still empty or unreadable after this many seconds was left by a killed run
_UNWRITTEN_GRACE = 10.0


def _read_proc(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid."""
    stat = _read_proc(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name in ( ) may hold blanks


def _me() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _start_ticks(os.getpid()),
        "boot_id": _read_proc("/proc/sys/kernel/random/boot_id"),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process holding a lock still runs (``True`` when it cannot be told)."""
    me = _me()
    if holder.get("host") != me["host"]:
        return True  # another machine: nothing to check against
    if holder.get("boot_id") and me["boot_id"] and holder["boot_id"] != me["boot_id"]:
        return False  # the machine rebooted since
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    recorded, now = holder.get("pid_start"), _start_ticks(pid)
    return not (recorded and now and recorded != now)  # a reused pid is another process


def _describe(holder: dict[str, Any], path: Path) -> str:
    return (
        f"the output folder {path.parent.parent} is in use by the itme run of pid "
        f"{holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
        f"(lock file {path})"
    )


def read_holder(out: Path) -> dict[str, Any] | None:
    """The holder of the lock of ``out``, or ``None`` when there is no lock.

    Parameters
    ----------
    out
        The output folder.

    Returns
    -------
    The lock's record (host, pid, pid_start, boot_id, started, command); ``{}`` when the file
    exists but is empty or unreadable.
    """
    path = out / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _stale(out: Path, holder: dict[str, Any]) -> bool:
    if not holder:  # created but never written: a run killed at that instant, or one starting
        try:
            age = time.time() - (out / LOCK_FILE).stat().st_mtime
        except FileNotFoundError:
            return True
        return age > _UNWRITTEN_GRACE
    return not _alive(holder)


def holder_problem(out: Path) -> str | None:
    """A line saying who holds a live lock on ``out``; ``None`` when a run may start there.

    Parameters
    ----------
    out
        The output folder.

    Returns
    -------
    The problem line, or ``None``.
    """
    holder = read_holder(out)
    if holder is None or _stale(out, holder):
        return None
    return _describe(holder, out / LOCK_FILE)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[dict[str, Any]]:
    """Hold the lock of the output folder ``out`` for the duration of the block.

    Parameters
    ----------
    out
        The output folder (created when missing).

    Returns
    -------
    A context manager yielding this run's lock record.

    Raises
    ------
    ItmeInputError
        Another live run holds the folder (the message names its host, pid and start time),
        or the lock file cannot be created.
    """
    path = out / LOCK_FILE
    record = _me()
    for _ in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(out)
            if holder is None:
                continue  # released meanwhile
            if not _stale(out, holder):
                raise ItmeInputError(
                    _describe(holder, path),
                    fix="Wait for that run to finish or use another --out; if that run is "
                    "known to be dead (e.g. on another host), delete the lock file",
                ) from None
            logger.warning(
                "removing the stale lock of a run that is no longer running (pid %s on %s, "
                "started %s)",
                holder.get("pid"),
                holder.get("host"),
                holder.get("started"),
            )
            path.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise ItmeInputError(
                f"cannot create the lock file of the output folder ({exc.strerror or exc})",
                where=str(path),
                fix="Choose an output folder you can write to",
            ) from exc
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
        break
    else:
        raise ItmeInputError(
            "could not take the lock of the output folder (another run keeps taking it)",
            where=str(path),
            fix="Make sure a single itme run uses this folder",
        )
    try:
        yield record
    finally:
        try:
            if read_holder(out) == record:
                path.unlink()
        except OSError as exc:  # never hides the run's own error
            logger.warning("could not remove the lock file %s: %s", path, exc)
