"""The ``itme`` command line: parse, set up logging, call the library. Nothing else.

Exit codes: 0 success, 2 bad usage or bad input, 1 failure at run time.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from . import __version__
from ._progress import settings
from .errors import ItmeError

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
    settings.progress = not quiet and sys.stderr.isatty()


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
    from .io import summarize

    summary = summarize(path, panel=panel)
    click.echo(summary.to_text())
    if summary.problems:
        sys.exit(EXIT_INPUT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None, prog_name="itme", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return EXIT_INPUT
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILURE
    except SystemExit as exc:
        return int(exc.code or 0)
    except ItmeError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_INPUT
    except Exception as exc:
        logger.exception("failed: %s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
