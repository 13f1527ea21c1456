"""Run mutated FCS files through ``itme.io.read_fcs`` in forked workers, bounded in time and memory.

A few long-lived workers (forked once, so the sources and itme are already in memory) each
read many cases; every worker runs under ``RLIMIT_AS`` and the parent kills and replaces a
worker whose case exceeds the time limit (a *hang*). Outcomes of one case:

``read``        read, the values equal the original's where a comparison is possible
``read_note``   read with an ``ItmeInputWarning`` about something the original does not have
``itme_error``  refused with an ``ItmeError``
``other``       any other exception, including one the reader's last-resort guard converted
``memory``      ``MemoryError`` under the memory cap
``hang``        no answer within the time limit
``crash``       the worker died (segfault, killed by the kernel)

and the check that matters for the data: ``silent`` counts reads whose values differ from the
original's without any new warning, although the mutation was one a reader can detect.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path

import numpy as np

from fuzz.fcs_mutator import Case, Source, make_case, warned_notes

_SOURCES: list[Source] = []  # set in the parent before the workers fork
_SEED = 0


def evaluate(case: Case, folder: Path) -> dict:
    """Read one case and classify what happened."""
    import itme
    from itme.errors import ItmeError, ItmeWarning

    path = folder / "case.fcs"
    path.write_bytes(case.blob)
    result = {
        "index": case.index,
        "source": case.source,
        "kind": case.kind,
        "detail": case.detail,
        "expect": case.expect,
        "message": "",
        "same": None,
        "warned": False,
    }
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            adata = itme.io.read_fcs(path)
        except ItmeError as exc:
            guarded = exc.__cause__ is not None and not isinstance(
                exc.__cause__, ItmeError | OSError
            )
            result["outcome"] = "other" if guarded else "itme_error"
            result["message"] = str(exc).replace(str(path), "<file>")[:300]
            if guarded:
                result["message"] += (
                    " | " + "".join(traceback.format_exception(exc.__cause__)[-2:]).strip()[-400:]
                )
            adata = None
        except MemoryError:
            result["outcome"], adata = "memory", None
        except Exception as exc:
            result["outcome"], adata = "other", None
            result["message"] = "".join(traceback.format_exception(exc)[-3:]).strip()[-600:]
    result["seconds"] = time.perf_counter() - start
    itme_warnings = [str(w.message) for w in caught if issubclass(w.category, ItmeWarning)]
    if adata is not None:
        # only what the original file does not already warn about is news
        result["warned"] = bool(warned_notes(itme_warnings, path) - case.warned)
        result["outcome"] = "read_note" if result["warned"] else "read"
        result["n_obs"] = adata.n_obs
        if case.reference is not None:
            x = np.asarray(adata.X)
            result["same"] = bool(
                x.shape == case.reference.shape
                and np.array_equal(x, case.reference, equal_nan=True)
            )
        result["message"] = "; ".join(adata.uns["fcs"]["notes"])[:300]
    return result


def _worker(conn, folder: str, mem_limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import logging

    logging.disable(logging.CRITICAL)
    while True:
        index = conn.recv()
        if index is None:
            conn.send({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
            return
        try:
            conn.send(evaluate(make_case(_SOURCES, _SEED, index), Path(folder)))
        except MemoryError:
            conn.send({"index": index, "outcome": "memory", "message": "in the harness"})


@dataclass
class Campaign:
    """The outcome of many cases."""

    results: list[dict]
    seconds: float
    peak_rss_mb: float
    workers: int
    stats: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for r in self.results:
            self.stats[r["outcome"]] += 1
            if r.get("same") is False and not r.get("warned") and r.get("expect") != "free":
                self.stats["silent"] += 1
            if r.get("expect") == "same" and not (
                r["outcome"].startswith("read") and r.get("same")
            ):
                self.stats["same_violated"] += 1
            if r.get("expect") == "free" and r.get("same") is False and not r.get("warned"):
                self.stats["free_changed"] += 1
            if r.get("same") is False and r.get("warned"):
                self.stats["changed_warned"] += 1

    def problems(self) -> list[dict]:
        """Cases that break the contract (reported in full by the test)."""
        bad = []
        for r in self.results:
            silent = r.get("same") is False and not r.get("warned") and r.get("expect") != "free"
            broken_same = r.get("expect") == "same" and not (
                r["outcome"].startswith("read") and r.get("same") is not False
            )
            if r["outcome"] in ("other", "memory", "hang", "crash") or silent or broken_same:
                bad.append(r)
        return bad

    def table(self) -> str:
        """The outcome table, as printed by scripts/fuzz_readers.py."""
        s = self.stats
        rows = [
            ("cases", len(self.results)),
            ("read (values as the original's where comparable)", s["read"]),
            ("read with a note (ItmeInputWarning)", s["read_note"]),
            ("ItmeError", s["itme_error"]),
            ("other exceptions", s["other"]),
            ("hangs", s["hang"]),
            ("memory blow-ups (MemoryError or killed)", s["memory"] + s["crash"]),
            ("silent alterations (values differ, no warning, detectable)", s["silent"]),
            ("meaning-preserving mutations not read identically", s["same_violated"]),
            ("values differ with a warning", s["changed_warned"]),
            ("DATA bytes / reinterpretations read as they are (undetectable)", s["free_changed"]),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{name:<{width}}  {value:>7,}" for name, value in rows]
        lines.append(f"{'run time':<{width}}  {self.seconds:>7.1f} s ({self.workers} workers)")
        lines.append(f"{'peak memory of a worker (max RSS)':<{width}}  {self.peak_rss_mb:>7.0f} MB")
        return "\n".join(lines)

    def by_kind(self) -> str:
        """Outcomes per mutation kind."""
        kinds: dict[str, Counter] = {}
        for r in self.results:
            kinds.setdefault(r["kind"], Counter())[r["outcome"]] += 1
        cols = ["read", "read_note", "itme_error", "other", "memory", "hang", "crash"]
        lines = [f"{'kind':<22}" + "".join(f"{c:>11}" for c in cols)]
        for kind in sorted(kinds):
            lines.append(f"{kind:<22}" + "".join(f"{kinds[kind][c]:>11}" for c in cols))
        return "\n".join(lines)


def run_campaign(
    sources: list[Source],
    *,
    seed: int,
    n_cases: int,
    workers: int = 2,
    timeout: float = 20.0,
    mem_limit: int = 4 << 30,
    progress=None,
) -> Campaign:
    """Run cases ``0 .. n_cases-1`` of campaign ``seed`` in ``workers`` forked processes.

    Parameters
    ----------
    sources
        The real files, taken apart (:func:`fuzz.fcs_mutator.load_source`).
    seed
        The campaign; case ``i`` is the same bytes for the same seed.
    n_cases
        How many cases.
    workers
        Forked worker processes, each reading many cases.
    timeout
        Seconds one case may take before its worker is killed and the case counted as a hang.
    mem_limit
        ``RLIMIT_AS`` of each worker, in bytes.
    progress
        Optional callable ``(done, total)``.

    Returns
    -------
    The :class:`Campaign`.
    """
    global _SOURCES, _SEED
    _SOURCES, _SEED = sources, seed
    ctx = get_context("fork")
    folder = Path(tempfile.mkdtemp(prefix="itme_fuzz_"))
    start = time.perf_counter()
    pending = list(range(n_cases))[::-1]
    results: list[dict] = []
    peak_kb = 0
    slots: dict = {}  # conn -> [process, case index or None, started]

    def spawn(k: int):
        parent, child = ctx.Pipe()
        sub = folder / f"w{k}_{time.monotonic_ns()}"
        sub.mkdir()
        proc = ctx.Process(target=_worker, args=(child, str(sub), mem_limit), daemon=True)
        proc.start()
        child.close()
        slots[parent] = [proc, None, 0.0, k]

    def feed(conn) -> None:
        if pending:
            index = pending.pop()
            conn.send(index)
            slots[conn][1:3] = [index, time.perf_counter()]
        else:
            slots[conn][1] = None

    try:
        for k in range(workers):
            spawn(k)
        for conn in list(slots):
            feed(conn)
        while any(s[1] is not None for s in slots.values()):
            ready = connection.wait([c for c, s in slots.items() if s[1] is not None], 0.25)
            for conn in ready:
                proc, index, _, k = slots[conn]
                try:
                    results.append(conn.recv())
                except (EOFError, OSError):
                    proc.join(1)
                    code = proc.exitcode
                    outcome = "memory" if code == -signal.SIGKILL else "crash"
                    results.append(_lost(index, outcome, f"worker exit code {code}"))
                    del slots[conn]
                    spawn(k)
                    conn = next(c for c, s in slots.items() if s[3] == k and s[1] is None)
                feed(conn)
                if progress is not None:
                    progress(len(results), n_cases)
            now = time.perf_counter()
            for conn, (proc, index, started, k) in list(slots.items()):
                if index is not None and now - started > timeout:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.join(5)
                    results.append(_lost(index, "hang", f"no answer in {timeout:.0f} s"))
                    del slots[conn]
                    spawn(k)
                    feed(next(c for c, s in slots.items() if s[3] == k and s[1] is None))
        for conn, (proc, _, _, _) in slots.items():
            conn.send(None)
            peak_kb = max(peak_kb, conn.recv().get("maxrss_kb", 0))
            proc.join(5)
    finally:
        for proc, *_ in slots.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(5)
        for sub in folder.glob("*/case.fcs"):
            sub.unlink()
        for sub in folder.glob("*"):
            sub.rmdir()
        folder.rmdir()
    results.sort(key=lambda r: r["index"])
    return Campaign(results, time.perf_counter() - start, peak_kb / 1024, workers)


def _lost(index: int, outcome: str, message: str) -> dict:
    case = make_case(_SOURCES, _SEED, index)
    return {
        "index": index,
        "source": case.source,
        "kind": case.kind,
        "detail": case.detail,
        "expect": case.expect,
        "outcome": outcome,
        "message": message,
        "same": None,
        "warned": False,
    }


def real_sources(shared_data: Path | None, fcsparser_dir: Path | None) -> list[Source]:
    """Every real FCS file of ../shared/data and of fcsparser's test set, taken apart."""
    from fuzz.fcs_mutator import load_source

    paths: list[tuple[Path, str]] = []
    if shared_data is not None:
        paths += [(p, str(p.relative_to(shared_data))) for p in sorted(shared_data.rglob("*.fcs"))]
    if fcsparser_dir is not None:
        paths += [
            (p, "fcsparser/" + str(p.relative_to(fcsparser_dir)))
            for p in sorted(fcsparser_dir.rglob("*"))
            if p.suffix.lower() in {".fcs", ".lmd"}
        ]
    return [load_source(p, name) for p, name in paths]


def describe(result: dict) -> str:
    """One line per problem case, for assertion messages."""
    message = re.sub(r"\s+", " ", result.get("message", ""))[:400]
    return (
        f"case {result['index']} {result['source']} {result['kind']} ({result['detail']}): "
        f"{result['outcome']}, same={result.get('same')}, warned={result.get('warned')}: {message}"
    )
