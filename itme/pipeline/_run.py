"""Entry points of the pipeline: run(), validate(), run_demo()."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path

import yaml

from itme.datasets import simulate_cohort
from itme.errors import ItmeInputError
from itme.pipeline import _rnaseq_early as rnaseq_early
from itme.pipeline._backend import resolve_backend
from itme.pipeline._compute import compute_context
from itme.pipeline._config import Config
from itme.pipeline._files import write_text
from itme.pipeline._runner import StageRecord, run_stages
from itme.pipeline._stages import STAGES
from itme.pipeline._validate import check

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where a run wrote its outputs and what each stage did."""

    out: Path
    stages: list[StageRecord]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP (threadpoolctl) and numba threads for the duration of a run."""
    if n is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(before)


def run(
    config: str | PathLike[str] | Config,
    *,
    out: str | PathLike[str] | None = None,
    from_stage: str | None = None,
    until_stage: str | None = None,
) -> RunResult:
    """Run the analysis of a config; skip stages whose inputs and parameters are unchanged.

    Parameters
    ----------
    config
        Path of a YAML config, or a validated :class:`Config`.
    out
        Output folder (default: the config's ``output``).
    from_stage
        Rerun from this stage on, keeping the outputs of earlier stages.
    until_stage
        Stop after this stage.

    Returns
    -------
    RunResult with the output folder and one record per stage (status, seconds, outputs).

    Raises
    ------
    ItmeInputError
        The config or its inputs have problems (every one listed, as :func:`validate` does),
        or another run holds the output folder, before any stage runs.
    ItmeRunError
        A stage could not write its outputs (e.g. the folder became read-only); the message
        names the stage and the file, ``run.json`` records the failure.
    """
    # everything validate() checks is checked before the first stage, not after FlowSOM;
    # the warnings of reading the inputs come once, from the stage that reads them for use
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg, found = check(config, out=out)
    if found or cfg is None:
        raise ItmeInputError(
            f"{len(found)} problem(s) in the config or its inputs (itme validate lists the "
            "same):\n  " + "\n  ".join(found),
            problems=found,
        )
    cfg, backend = resolve_backend(cfg)  # in memory or on the cohort store
    names = [s.name for s in STAGES]
    if {from_stage, until_stage} <= {None, *names}:  # run_stages reports unknown names
        first = names.index(from_stage) if from_stage else 0
        last = names.index(until_stage) if until_stage else len(names) - 1
        rnaseq_early.start(cfg, first=first, last=last, names=names)
    try:
        with _threads(cfg.threads), compute_context(cfg.compute):  # compute: checked first
            records = run_stages(
                cfg,
                STAGES,
                out=cfg.output,
                from_stage=from_stage,
                until_stage=until_stage,
                record={"backend": backend.record()},
            )
    finally:
        rnaseq_early.stop(cfg)
    return RunResult(cfg.output, records)


def validate(config: str | PathLike[str] | Config) -> list[str]:
    """Check a config and every input it names before any work starts.

    Parameters
    ----------
    config
        Path of a YAML config, or a validated :class:`Config`.

    Returns
    -------
    Every problem found, one line each (empty when all is well): config keys, parameter
    ranges, input files, the output folder (an existing file, not writable, in use by a run).
    """
    return check(config)[1]


def demo_config_text() -> str:
    """The demo config shipped with itme.

    Returns
    -------
    The YAML text of ``itme/data/configs/demo.yaml`` (also ``configs/demo.yaml``).
    """
    return (
        resources.files("itme").joinpath("data", "configs", "demo.yaml").read_text(encoding="utf-8")
    )


def run_demo(
    out: str | PathLike[str],
    *,
    n_patients: int = 39,
    cells_per_sample: int = 20_000,
    n_genes: int = 20_000,
    seed: int = 2021,
    until_stage: str | None = None,
) -> RunResult:
    """Simulate the synthetic demo cohort into ``out/input`` and run the analysis into ``out``.

    The cohort is simulated only when ``out/input`` does not already hold one made with the
    same parameters, so a killed demo resumes where it stopped.

    Parameters
    ----------
    out
        Output folder: ``input/`` (the synthetic cohort and its ``truth.json``),
        ``config.yaml`` (the demo config), and the results of the run.
    n_patients
        Patients in the cohort (one of them has no CyTOF file, as in the paper).
    cells_per_sample
        Events per FCS file, artefacts included.
    n_genes
        Genes in the RNA-seq count matrix.
    seed
        Seed of the cohort and of the run.
    until_stage
        Stop after this stage (default: run every stage).

    Returns
    -------
    RunResult of the run.
    """
    out = Path(out)
    inputs = out / "input"
    stamp = {
        "n_patients": n_patients,
        "cells_per_sample": cells_per_sample,
        "n_genes": n_genes,
        "seed": seed,
    }
    stamp_file = inputs / "simulation.json"
    if not (stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp):
        if inputs.exists():
            shutil.rmtree(inputs)
        logger.info(
            "simulating the demo cohort (%d patients × %d events)", n_patients, cells_per_sample
        )
        simulate_cohort(
            inputs,
            n_patients=n_patients,
            cells_per_sample=cells_per_sample,
            n_genes=n_genes,
            rng=seed,
        )
        write_text(stamp_file, json.dumps(stamp) + "\n")
    config = yaml.safe_load(demo_config_text())
    config["seed"] = seed
    # the demo's minimum of CD45+ events per file scales with the simulated file size
    config["downsample"]["min_events"] = min(
        config["downsample"]["min_events"], cells_per_sample // 4
    )
    header = "# written by `itme demo`; the commented original is itme/data/configs/demo.yaml\n"
    config_path = write_text(out / "config.yaml", header + yaml.safe_dump(config, sort_keys=False))
    return run(config_path, out=out, until_stage=until_stage)


def warm_up() -> float:
    """Compile the numba code of a run once on this machine, so that the first run is fast.

    umap-learn, pynndescent, flowsom and itme's batch kernels keep their compiled code in
    numba's on-disk cache (:mod:`itme._numba`); a process finding it there skips ~20 s of
    compilation. This runs the cell stages of a tiny demo (12 patients × 1,000 events, up to
    ``annotate``) in a temporary folder, which compiles every function the demo and the
    pipeline call with the same argument types, and removes the folder. ``make env`` calls it
    (``itme warmup``) after installing.

    Returns
    -------
    float
        Seconds it took.
    """
    import tempfile
    import time

    start = time.perf_counter()
    # the tiny demo's warnings (e.g. its patient without an FCS file) say nothing about yours
    with tempfile.TemporaryDirectory(prefix="itme-warmup-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_demo(tmp, n_patients=12, cells_per_sample=1_000, n_genes=5_000, until_stage="annotate")
    return time.perf_counter() - start
