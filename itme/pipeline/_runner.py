"""Run the stages of an itme analysis, resuming where a previous run stopped.

Each stage has a fingerprint: the hash of its parameters, its seed, the checksums of its
input files, the fingerprints of the stages it reads from, and the itme version. A stage
whose fingerprint matches the one recorded after its last successful run, and whose outputs
are all still there, is skipped. Outputs are written atomically and the record is written
after them, so a run killed at any moment resumes with the same result.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from itme._files import inside
from itme._outputs import Output
from itme.errors import (
    ItmeInputError,
    ItmeParameterError,
    ItmeRunError,
    ItmeStateError,
)
from itme.pipeline._background import discard_early
from itme.pipeline._config import Config
from itme.pipeline._files import (
    remove_leftovers,
    sha256,
    write_figure,
    write_h5ad,
    write_json,
    write_table,
)
from itme.pipeline._lock import output_lock
from itme.pipeline._warnings import ITEMS as WARNING_ITEMS
from itme.pipeline._warnings import OUTPUT as WARNINGS
from itme.pipeline._warnings import items_table, record_warnings, warnings_table

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

logger = logging.getLogger(__name__)

STATE_DIR = ".itme"
PACKAGES = [
    "itme", "numpy", "scipy", "pandas", "anndata", "scanpy", "flowio", "flowsom", "scikit-learn",
    "statsmodels", "scikit-posthocs", "pydeseq2", "gseapy", "lifelines", "matplotlib",
    "pydantic", "pyyaml", "numba", "umap-learn",
]  # fmt: skip


@dataclass
class Context:
    """What a stage sees: the config, the output folder, its seed, upstream summaries.

    A stage writes every file through :meth:`table`, :meth:`figure`, :meth:`h5ad` or
    :meth:`json`: the writes are atomic, tables and figures must be declared by the stage
    (:class:`~itme._outputs.Output`), and the runner records each file written.
    """

    config: Config
    out: Path
    seed: int
    summaries: dict[str, dict[str, Any]]
    stage: Stage | None = None
    written: list[Path] = field(default_factory=list)

    def path(self, *parts: str) -> Path:
        """``out/<parts>``, its folder created."""
        p = inside(self.out, self.out.joinpath(*parts))  # never outside the output folder
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _declared(self, kind: str, name: str, variant: str | None) -> Output:
        for output in self.stage.outputs if self.stage else ():
            if output.kind == kind and output.name == name:
                if variant is not None and not output.variants:
                    break
                return output
        stage = self.stage.name if self.stage else "?"
        raise ItmeStateError(
            f"stage {stage!r} writes the {kind} {name!r}"
            + (f" (variant {variant!r})" if variant is not None else "")
            + " without declaring it in its outputs: this is a bug in itme"
        )

    def table(
        self, name: str, frame: pd.DataFrame, *, variant: str | None = None, index: bool = True
    ) -> Path:
        """Write a declared table as ``tables/<name>[_<variant>].csv``."""
        stem = self._declared("table", name, variant).stem(variant)
        path = write_table(self.path("tables", f"{stem}.csv"), frame, index=index)
        self.written.append(path)
        return path

    def figure(self, name: str, fig: Any, *, variant: str | None = None) -> list[Path]:
        """Save a declared figure as ``figures/<name>[_<variant>].png`` and ``.svg``."""
        stem = self._declared("figure", name, variant).stem(variant)
        paths = write_figure(self.path("figures", stem).parent, stem, fig)
        self.written.extend(paths)
        return paths

    def h5ad(self, adata: AnnData, *parts: str) -> Path:
        """Write ``adata`` to ``out/<parts>``."""
        path = write_h5ad(self.path(*parts), adata)
        self.written.append(path)
        return path

    def json(self, record: Any, *parts: str) -> Path:
        """Write ``record`` as JSON to ``out/<parts>``."""
        path = write_json(self.path(*parts), record)
        self.written.append(path)
        return path

    def record(self, path: Path) -> Path:
        """Record a file the stage wrote by other means (e.g. the report)."""
        self.written.append(path)
        return path


@dataclass
class Stage:
    """One step of the pipeline.

    ``run(ctx)`` does the work and returns the stage's summary (written files are recorded by
    the :class:`Context`); ``outputs`` declares its tables and figures and the report section
    of each; ``section`` is the report section of its summary (``None``: not shown).
    """

    name: str
    run: Callable[[Context], dict[str, Any]]
    params: Callable[[Config], Any]
    inputs: Callable[[Config], list[Path]] = lambda config: []
    requires: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()
    section: str | None = None


@dataclass
class StageRecord:
    """What happened to one stage in a run (written to ``run.json``)."""

    name: str
    status: str = "not run"
    seconds: float = 0.0
    seed: int = 0
    fingerprint: str = ""
    outputs: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    #: the warnings it showed (``warning, message, count``, ``items`` when it carries ids);
    #: a skipped stage's come from the run that made its outputs
    warnings: list[dict[str, Any]] = field(default_factory=list)


class _Checksums:
    """sha256 of input files, cached by (size, mtime) in the state folder."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.known: dict[str, list[Any]] = json.loads(cache.read_text()) if cache.is_file() else {}

    def many(self, paths: Iterable[Path]) -> dict[str, str]:
        """The digests of ``paths`` (keyed by ``str(path)``).

        Files not cached are hashed at once on a thread per core (hashlib releases the GIL):
        200 FCS files of 18.8 GB before the first stage took 39 s one after the other,
        20 s on 2 cores.
        """
        paths = list(paths)
        stats = {p: p.stat() for p in paths}  # before hashing: a file changed since is new
        out = {str(p): self._cached(p, st) for p, st in stats.items()}
        new = list(dict.fromkeys(p for p in paths if out[str(p)] is None))
        if not new:  # every file cached (a resumed run, a later stage's inputs)
            return out
        with ThreadPoolExecutor(min(len(new), os.cpu_count() or 1)) as pool:
            for path, digest in zip(new, pool.map(sha256, new), strict=True):
                st = stats[path]
                self.known[str(path.resolve())] = [st.st_size, st.st_mtime_ns, digest]
                out[str(path)] = digest
        return out

    def _cached(self, path: Path, st: os.stat_result) -> str | None:
        hit = self.known.get(str(path.resolve()))
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        return None

    def save(self) -> None:
        write_json(self.cache, self.known)


def stage_seeds(seed: int, names: Sequence[str]) -> dict[str, int]:
    """Independent per-stage seeds from the master seed (docs/architecture.md, "Randomness").

    Each stage's seed is the child of ``SeedSequence(seed)`` whose spawn key is the CRC-32 of
    the stage's name, so adding, removing or reordering stages leaves every other stage's
    random stream unchanged.

    Parameters
    ----------
    seed
        The config's master seed.
    names
        Stage names.

    Returns
    -------
    Stage name -> a non-negative 31-bit integer seed.
    """
    return {
        name: int(
            np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),)).generate_state(1)[
                0
            ]
            & 0x7FFFFFFF
        )
        for name in names
    }


@functools.cache
def versions() -> dict[str, str]:
    """Installed version of itme and of each package in :data:`PACKAGES`."""
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _fingerprint(
    stage: Stage, config: Config, seed: int, inputs: list[tuple[str, str]], upstream: dict[str, str]
) -> str:
    payload = {
        "stage": stage.name,
        "itme": versions()["itme"],
        "params": stage.params(config),
        "seed": seed,
        "inputs": inputs,
        "upstream": upstream,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_state(out: Path, name: str) -> dict[str, Any] | None:
    path = out / STATE_DIR / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _outputs_intact(out: Path, state: dict[str, Any]) -> bool:
    for item in state.get("outputs", []):
        p = out / item["path"]
        if not p.is_file() or p.stat().st_size != item["bytes"]:
            return False
    return True


def run_stages(
    config: Config,
    stages: Sequence[Stage],
    *,
    out: Path,
    from_stage: str | None = None,
    until_stage: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> list[StageRecord]:
    """Run ``stages`` in order into ``out``, skipping those whose fingerprint is unchanged.

    ``run.json`` is written before each stage starts and when the run ends (also on failure).

    Parameters
    ----------
    config
        The validated config.
    stages
        The stages, in run order.
    out
        The run folder.
    from_stage
        Rerun from this stage on; earlier stages must have complete outputs in ``out``.
    until_stage
        Stop after this stage.
    record
        More entries of ``run.json`` (the cell-level backend chosen).

    Returns
    -------
    One :class:`StageRecord` per stage.

    Raises
    ------
    ItmeParameterError
        An unknown stage name, or ``from_stage`` after ``until_stage``.
    ItmeInputError
        A stage before ``from_stage`` has no complete outputs, or another live run holds the
        lock of ``out`` (docs/running.md).
    ItmeRunError
        A file could not be read or written (the message names the stage and the file).
    """
    names = [s.name for s in stages]
    for param, value in (("from_stage", from_stage), ("until_stage", until_stage)):
        if value is not None and value not in names:
            raise ItmeParameterError(param, f"one of {', '.join(names)}", value)
    first = names.index(from_stage) if from_stage else 0
    last = names.index(until_stage) if until_stage else len(names) - 1
    if first > last:
        raise ItmeParameterError("from_stage", f"a stage before {until_stage}", from_stage)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / STATE_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise _as_run_error(exc, None, out) from exc
    with output_lock(out):
        _note_interrupted(out)
        removed = remove_leftovers(out)
        if removed:
            logger.info("removed %d temporary file(s) left by an interrupted run", removed)
        return _run_locked(config, stages, out, first, last, from_stage, dict(record or {}))


def _note_interrupted(out: Path) -> None:
    """Log when the previous run in ``out`` was killed (its run.json still says running)."""
    try:
        previous = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(previous, dict) and previous.get("status") == "running":
        stages = [s.get("name") for s in previous.get("stages", []) if s.get("status") == "running"]
        logger.warning(
            "the previous run in %s (started %s) was interrupted%s; resuming",
            out,
            previous.get("started"),
            f" in stage {stages[0]!r}" if stages else "",
        )


def _as_run_error(exc: OSError, stage: str | None, out: Path) -> ItmeRunError:
    """An OS error during a run: which file, which stage, what to do."""
    path = Path(exc.filename) if exc.filename else out
    name = path.name
    if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
        path = path.with_name(name[1:].rsplit(".", 2)[0])  # the file being written
    inside = path == out or out in path.parents
    return ItmeRunError(
        f"cannot {'write' if inside else 'read'} ({exc.strerror or exc})",
        stage=stage,
        path=str(path),
        fix=(
            f"Make {out} writable (and check free space), then rerun: finished stages are kept"
            if inside
            else "Check that the input is there and readable, then rerun: finished stages are kept"
        ),
    )


def _error_record(exc: BaseException, stage: str | None) -> dict[str, Any]:
    """The ``error`` of ``run.json``: stage, exception type and message."""
    cause = exc.__cause__ if isinstance(exc, ItmeRunError) and exc.__cause__ else None
    return {
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc),
        "cause": f"{type(cause).__name__}: {cause}" if cause is not None else None,
    }


def _run_locked(
    config: Config,
    stages: Sequence[Stage],
    out: Path,
    first: int,
    last: int,
    from_stage: str | None,
    extra: dict[str, Any],
) -> list[StageRecord]:
    names = [s.name for s in stages]
    checksums = _Checksums(out / STATE_DIR / "checksums.json")
    seeds = stage_seeds(config.seed, names)
    records = {name: StageRecord(name, seed=seeds[name]) for name in names}
    fingerprints: dict[str, str] = {}
    summaries: dict[str, dict[str, Any]] = {}
    inputs_used: dict[str, str] = {}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    failure: BaseException | None = None
    current: str | None = None
    try:
        for k, stage in enumerate(stages):
            if k > last:
                break
            current = stage.name
            rec = records[stage.name]
            state = _load_state(out, stage.name)
            # provenance: the checksums of every input the run depends on
            digests = checksums.many(stage.inputs(config))
            inputs_used.update(digests)
            if k < first:
                if state is None or not _outputs_intact(out, state):
                    raise ItmeInputError(
                        f"stage {stage.name!r} has no complete outputs in {out}",
                        fix=f"run it first (drop --from, or use --from {stage.name})",
                    )
                fingerprints[stage.name] = state["fingerprint"]
                summaries[stage.name] = state.get("summary", {})
                rec.status, rec.fingerprint = "kept (before --from)", state["fingerprint"]
                rec.outputs = [o["path"] for o in state["outputs"]]
                rec.summary = summaries[stage.name]
                rec.warnings = state.get("warnings", [])
                continue
            upstream = {name: fingerprints.get(name, "") for name in stage.requires}
            # inputs by content (file name + checksum), so a moved or copied run folder still resumes
            content = sorted((Path(p).name, h) for p, h in digests.items())
            fp = _fingerprint(stage, config, seeds[stage.name], content, upstream)
            rec.fingerprint = fp
            if k != first or from_stage is None:
                if state and state.get("fingerprint") == fp and _outputs_intact(out, state):
                    rec.status = "skipped (unchanged)"
                    rec.outputs = [o["path"] for o in state["outputs"]]
                    rec.summary = summaries[stage.name] = state.get("summary", {})
                    rec.warnings = state.get("warnings", [])
                    fingerprints[stage.name] = fp
                    logger.info("stage %s: unchanged, skipped", stage.name)
                    continue
            logger.info("stage %s: started", stage.name)
            rec.status = "running"
            _write_run_json(
                out, config, records, inputs_used, started, None, extra
            )  # report reads it
            (out / STATE_DIR / f"{stage.name}.json").unlink(missing_ok=True)
            t = time.perf_counter()
            ctx = Context(config, out, seeds[stage.name], summaries, stage)
            try:
                with record_warnings() as rec.warnings:
                    summary = stage.run(ctx)
                outputs = ctx.written
            except OSError as exc:
                rec.status, rec.seconds = "failed", round(time.perf_counter() - t, 2)
                raise _as_run_error(exc, stage.name, out) from exc
            except BaseException:
                rec.status, rec.seconds = "failed", round(time.perf_counter() - t, 2)
                raise
            rec.seconds = round(time.perf_counter() - t, 2)
            rec.status = "done"
            rec.outputs = [str(p.relative_to(out)) for p in outputs]
            rec.summary = summaries[stage.name] = summary
            fingerprints[stage.name] = fp
            write_json(
                out / STATE_DIR / f"{stage.name}.json",
                {
                    "fingerprint": fp,
                    "seconds": rec.seconds,
                    "outputs": [
                        {"path": str(p.relative_to(out)), "bytes": p.stat().st_size}
                        for p in outputs
                    ],
                    "summary": summary,
                    "warnings": rec.warnings,
                },
            )
            logger.info("stage %s: done in %.1f s", stage.name, rec.seconds)
        current = None
    except OSError as exc:  # checksums of inputs, run.json, the stage's state record
        failure = _as_run_error(exc, current, out)
        raise failure from exc
    except BaseException as exc:
        failure = exc
        if current is not None and not isinstance(exc, ItmeRunError):
            exc.add_note(f"(in stage {current!r} of the itme run into {out})")
        raise
    finally:
        discard_early()  # an embedding started for a stage that did not run (--until, failure)
        # saving must not hide the run's own error: a failure here is logged, not raised,
        # when the run has already failed
        error = _error_record(failure, current) if failure is not None else None
        for what, save in (
            ("input checksums", checksums.save),
            (
                "run.json",
                lambda: _write_run_json(out, config, records, inputs_used, started, error, extra),
            ),
            ("the warnings table", lambda: _write_warnings(out, records)),
        ):
            try:
                save()
            except Exception as exc:  # logged when the run already failed: its error goes on
                if failure is None:
                    if isinstance(exc, OSError):
                        raise _as_run_error(exc, None, out) from exc
                    raise
                logger.warning("could not save %s after the failure: %s", what, exc)
    return list(records.values())


def _write_run_json(
    out: Path,
    config: Config,
    records: dict[str, StageRecord],
    inputs: dict[str, str],
    started: str,
    error: dict[str, Any] | None,
    extra: dict[str, Any],
) -> None:
    record = {
        "itme_version": versions()["itme"],
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "failed"
        if error
        else ("running" if any(r.status == "running" for r in records.values()) else "done"),
        "error": error,
        "seed": config.seed,
        "config": json.loads(config.model_dump_json()),
        "inputs": [{"path": p, "sha256": h, "bytes": _size(p)} for p, h in sorted(inputs.items())],
        "versions": versions(),
        "stages": [
            {
                "name": r.name,
                "status": r.status,
                "seconds": r.seconds,
                "seed": r.seed,
                "fingerprint": r.fingerprint,
                "outputs": r.outputs,
                "summary": r.summary,
                # the ids a warning carries are in tables/warning_items.csv
                "warnings": [{k: v for k, v in w.items() if k != "items"} for w in r.warnings],
            }
            for r in records.values()
        ],
        "platform": {
            "python": sys.version.split()[0],
            "system": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "threads": config.threads,
        },
        **extra,
    }
    write_json(out / "run.json", record)


def _write_warnings(out: Path, records: dict[str, StageRecord]) -> None:
    """``tables/warnings.csv`` and ``tables/warning_items.csv`` of the run's stages.

    Every warning of the stages (run, skipped or kept), and every id one is about.
    """
    stages = [(r.name, r.warnings) for r in records.values()]
    (out / "tables").mkdir(exist_ok=True)
    write_table(out / "tables" / f"{WARNINGS.name}.csv", warnings_table(stages), index=False)
    write_table(out / "tables" / f"{WARNING_ITEMS.name}.csv", items_table(stages), index=False)


def _size(path: str) -> int | None:
    """Bytes of an input, ``None`` when it is gone (run.json still records the failure)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None
