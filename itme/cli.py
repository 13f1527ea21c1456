"""The ``itme`` command line: parse, set up logging, call the library. Nothing else.

Exit codes: 0 success, 2 bad usage or bad input, 1 failure at run time.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import click

from itme import __version__
from itme._progress import settings
from itme.errors import ItmeError, ItmeRunError, ItmeWarning

logger = logging.getLogger("itme")

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("itme")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)] + [handler]
    root.setLevel(level)
    # library warnings become log lines with the same handler: one line per fact
    # (_WarningLog), without the source line Python's own format echoes
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = [handler]
    warnings_logger.setLevel(logging.WARNING)
    warnings.showwarning = _WarningLog(warnings_logger)
    # every itme warning reaches it (not once per line of code), so tables/warnings.csv counts
    # each time a fact was raised
    warnings.filterwarnings("always", category=ItmeWarning)
    settings.progress = not quiet and sys.stderr.isatty()


class _WarningLog:
    """``warnings.showwarning`` of the CLI: ``<Category>: <message>`` once per distinct message.

    The same message raised from several places (a caveat about a small group, repeated by
    every test on it) is one fact: it is logged the first time, and at DEBUG afterwards.
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.seen: set[tuple[str, str]] = set()

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> Any:
        text = str(message).strip()
        key = (category.__name__, text)
        if key in self.seen:
            self.log.debug("%s (again): %s", category.__name__, text)
            return
        self.seen.add(key)
        self.log.warning("%s: %s", category.__name__, text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="itme")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
def cli(verbose: int, quiet: bool) -> None:
    """itme: CyTOF immune-microenvironment analysis for multiple myeloma."""
    _setup_logging(verbose, quiet)


@cli.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--panel", type=click.Path(exists=True, dir_okay=False), help="panel.csv to check against."
)
def inspect(path: str, panel: str | None) -> None:
    """Summarise an FCS file, a folder of FCS files or a samples.csv, and list problems.

    Exits with 2 when problems are found.
    """
    from itme.io import summarize

    summary = summarize(path, panel=panel)
    click.echo(summary.to_text())
    if summary.problems:
        sys.exit(EXIT_INPUT)


# itme.pipeline.STAGE_NAMES, spelled out so that `itme --help` does not import the pipeline
# (pydantic); tests/unit/test_cli.py checks the two agree
_STAGES = click.Choice(
    [
        "ingest",
        "clean",
        "batch",
        "cluster",
        "annotate",
        "abundance",
        "patients",
        "stats",
        "rnaseq",
        "differential",
        "report",
    ]
)


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", type=click.Path(file_okay=False), help="Output folder (overrides the config's output)."
)
@click.option(
    "--from",
    "from_stage",
    type=_STAGES,
    help="Rerun from this stage on (earlier outputs are kept).",
)
@click.option("--until", "until_stage", type=_STAGES, help="Stop after this stage.")
@click.option(
    "--scheduler",
    help="Dask scheduler: local, slurm, pbs or tcp://host:8786 (overrides compute.scheduler; "
    "docs/cluster.md).",
)
def run(
    config: str,
    out: str | None,
    from_stage: str | None,
    until_stage: str | None,
    scheduler: str | None = None,
) -> None:
    """Run the analysis described by CONFIG (YAML); resumes where a previous run stopped."""
    from itme.pipeline import load_config, with_scheduler
    from itme.pipeline import run as run_pipeline

    source: object = config
    if scheduler is not None:
        cfg = load_config(config)
        source = cfg.model_copy(update={"compute": with_scheduler(cfg.compute, scheduler)})
    result = run_pipeline(source, out=out, from_stage=from_stage, until_stage=until_stage)
    _done(result)


def _done(result: Any) -> None:
    """The report's path, and where the run's warnings are listed (when it had any)."""
    shown = sum(int(w["count"]) for s in result.stages for w in s.warnings)
    if shown:
        facts = sum(len(s.warnings) for s in result.stages)
        click.echo(
            f"{facts} distinct warning(s), shown {shown} time(s) in all; each with its stage "
            f"and count in {result.out / 'tables' / 'warnings.csv'}"
        )
    click.echo(f"done: {result.out / 'report.html'}")


@cli.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
def validate(config: str) -> None:
    """Check every input of CONFIG before any work starts; list all problems at once."""
    from itme.pipeline import validate as validate_config

    problems = validate_config(config)
    if problems:
        click.echo(f"{len(problems)} problem(s):")
        for p in problems:
            click.echo(f"- {p}")
        sys.exit(EXIT_INPUT)
    click.echo("config and inputs are valid")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo_output", show_default=True)
@click.option("--patients", "n_patients", type=int, default=39, show_default=True)
@click.option(
    "--cells",
    "cells_per_sample",
    type=int,
    default=20_000,
    show_default=True,
    help="Events per FCS file.",
)
@click.option(
    "--genes",
    "n_genes",
    type=int,
    default=20_000,
    show_default=True,
    help="Genes in the RNA-seq counts.",
)
@click.option("--seed", type=int, default=2021, show_default=True)
def demo(out: str, n_patients: int, cells_per_sample: int, n_genes: int, seed: int) -> None:
    """Simulate the synthetic demo cohort into OUT/input and run the whole analysis on it.

    Everything in OUT/input is synthetic; OUT/input/truth.json holds what was planted.
    """
    from itme.pipeline import run_demo

    result = run_demo(
        out, n_patients=n_patients, cells_per_sample=cells_per_sample, n_genes=n_genes, seed=seed
    )
    _done(result)


@cli.command()
def warmup() -> None:
    """Compile the numba code of a run once on this machine (~20-40 s; `make env` runs it).

    umap-learn, pynndescent, flowsom and itme cache their compiled code on disk; without
    this, the first run after an install pays the compilation (~20 s of the demo).
    """
    from itme.pipeline import warm_up

    logging.disable(logging.WARNING)  # the tiny demo's log says nothing about the user's data
    click.echo(f"numba code compiled and cached in {warm_up():.0f} s")


@cli.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown) generated from the config models."""
    from itme.pipeline import config_reference as reference

    click.echo(reference(), nl=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    The exit code: 0 success, 2 bad usage or bad input, 1 failure at run time.
    """
    try:
        cli.main(
            args=list(argv) if argv is not None else None, prog_name="itme", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return EXIT_INPUT
    except click.Abort as exc:
        # click turns EOFError and KeyboardInterrupt raised anywhere into a bare Abort
        cause = exc.__cause__ or exc.__context__
        if cause is None or isinstance(cause, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return EXIT_FAILURE
        return _report(cause)
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - every exception reaching the CLI is reported
        return _report(exc)
    return EXIT_OK


def _report(exc: BaseException) -> int:
    """Print an exception that reached the CLI; return the exit code.

    An :class:`ItmeError` is a message for the user (exit 2 for bad input, 1 for a failure at
    run time); anything else is a bug in itme: its message, and the traceback in the log.
    """
    notes = "".join(f"\n  {note}" for note in getattr(exc, "__notes__", ()))
    if isinstance(exc, ItmeError):
        click.echo(f"error: {exc}{notes}", err=True)
        return EXIT_FAILURE if isinstance(exc, ItmeRunError) else EXIT_INPUT
    click.echo(
        f"error: {type(exc).__name__}: {exc}{notes}\n"
        "This is a bug in itme (an error it should have reported in its own words); please "
        "report it with the traceback below.",
        err=True,
    )
    logger.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return EXIT_FAILURE


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
