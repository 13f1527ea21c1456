"""``itme validate``: every input of a config checked before work starts, all problems listed."""

from __future__ import annotations

import os
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from itme import io, rna
from itme.errors import ItmeError
from itme.io import read_phenotypes
from itme.pipeline._config import Config, rnaseq_contrasts
from itme.pipeline._config_check import check_config
from itme.pipeline._lock import holder_problem
from itme.pipeline._validate_cohort import cohort_problems
from itme.pipeline._validate_design import design_problems


def _attempt(problems: list[str], what: str, func: Callable[[], Any]) -> Any:
    """``func()``, or ``None`` with the error appended to ``problems``."""
    try:
        return func()
    except (ItmeError, OSError) as exc:
        problems.append(f"{what}: {exc}")
    return None


def problems(config: Config) -> list[str]:
    """All problems of ``config`` and its inputs.

    Parameters
    ----------
    config
        The validated config.

    Returns
    -------
    One line per problem; empty when the run can start.
    """
    found: list[str] = []
    i = config.inputs
    found += cohort_problems(config)
    _attempt(found, "phenotypes", lambda: read_phenotypes(i.phenotypes))
    sheet = _attempt([], "samples", lambda: io.read_samples(i.samples))  # check_cohort reports
    if sheet is not None:
        n_patients = sheet[0]["patient_id"].nunique()
        if config.patients.k >= n_patients:  # Ward: fewer clusters than patients clustered
            found.append(
                f"patients.k: {config.patients.k} iTME clusters cannot be made from the "
                f"{n_patients} patients of {i.samples} (Ward needs fewer clusters than "
                f"patients); choose k <= {n_patients - 1}"
            )
    if config.rnaseq.gene_sets.lower() != "hallmark":
        _attempt(found, "rnaseq.gene_sets", lambda: io.read_gene_sets(config.rnaseq.gene_sets))
    clinical = None
    if i.clinical is not None:
        clinical = _attempt(found, "clinical", lambda: io.read_clinical(i.clinical))
    if i.counts is not None:
        _attempt(found, "counts", lambda: rna.read_counts(i.counts, clinical=clinical))
    if i.cytokines is not None:
        _attempt(found, "cytokines", lambda: io.read_cytokines(i.cytokines))
    if i.spillover is not None:
        _attempt(found, "spillover", lambda: io.read_spillover(i.spillover))
    if config.cluster.markers:
        try:
            panel = io.read_panel(i.panel)
        except ItmeError:
            panel = None  # check_cohort reported it
        if panel is not None:
            missing = sorted(set(config.cluster.markers) - set(panel["antigen"]))
            if missing:
                found.append(f"cluster.markers: not antigens of the panel: {', '.join(missing)}")
    columns = set(clinical.columns) if clinical is not None else set()
    groupings = {"itme_cluster", *columns}

    def need_column(where: str, name: str, allowed: set[str]) -> None:
        if name not in allowed:
            where_from = "clinical.csv" if clinical is not None else "clinical.csv (not given)"
            found.append(f"{where}: {name!r} is neither itme_cluster nor a column of {where_from}")

    need_column("stats.groupby", config.stats.groupby, groupings)
    for name in config.cytokines.groupby:
        need_column("cytokines.groupby", name, groupings)
    for contrast in rnaseq_contrasts(config):
        need_column(f"rnaseq.contrasts[{contrast.name}].groupby", contrast.groupby, groupings)
        if clinical is not None and contrast.groupby in columns:
            levels = set(clinical[contrast.groupby].dropna().astype(str))
            absent = sorted(set(contrast.test + contrast.reference) - levels)
            if absent:
                found.append(
                    f"rnaseq.contrasts[{contrast.name}]: levels {absent} not in clinical column {contrast.groupby!r} ({', '.join(sorted(levels))})"
                )
        if contrast.groupby == "itme_cluster":
            allowed = {str(k) for k in range(1, config.patients.k + 1)}
            absent = sorted(set(contrast.test + contrast.reference) - allowed)
            if absent:
                found.append(
                    f"rnaseq.contrasts[{contrast.name}]: iTME clusters {absent} do not exist with patients.k = {config.patients.k}"
                )
    if clinical is not None:
        for name in [*config.stats.cox_covariates, *config.rnaseq.covariates]:
            if name not in columns:
                found.append(f"covariate {name!r} is not a column of clinical.csv")
        for endpoint in config.stats.endpoints:
            for col in (f"{endpoint}_months", f"{endpoint}_event"):
                if col not in columns:
                    found.append(f"stats.endpoints: {col!r} is not a column of clinical.csv")
    # without clinical.csv, survival and the clinical table are skipped: not a problem; but
    # a sensitivity exclusion named by a clinical column needs it
    spec = config.patients.sensitivity_exclude
    if isinstance(spec, str) and i.clinical is None:
        found.append(
            f"patients.sensitivity_exclude: {spec!r} names a clinical column, "
            "but inputs.clinical is not given"
        )
    elif isinstance(spec, str) and clinical is not None and spec not in columns:
        found.append(f"patients.sensitivity_exclude: {spec!r} is not a column of clinical.csv")
    if config.design is not None:
        found += design_problems(config, clinical)
    found += output_problems(config.output)
    return found


def output_problems(out: Path) -> list[str]:
    """Problems of the output folder: an existing file, no write permission, a live lock.

    Parameters
    ----------
    out
        The output folder.

    Returns
    -------
    One line per problem.
    """
    if out.exists() and not out.is_dir():
        return [f"output: {out} is an existing file, not a folder; choose another output"]
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return [f"output: {blocking} is a file, so the folder {out} cannot be made"]
    parent = next(p for p in (out, *out.parents) if p.exists())  # the run creates the rest
    if not os.access(parent, os.W_OK):
        return [f"output: cannot write to {parent}; choose a folder you can write to"]
    held = holder_problem(out)
    return [f"output: {held}"] if held else []


def check(
    config: str | PathLike[str] | Config, *, out: str | PathLike[str] | None = None
) -> tuple[Config | None, list[str]]:
    """The config and every problem of it and its inputs: what ``validate`` and ``run`` check.

    Parameters
    ----------
    config
        Path of a YAML config, or a validated :class:`Config`.
    out
        Output folder replacing the config's ``output``.

    Returns
    -------
    The config (``None`` when it cannot be made) and one line per problem, config keys and
    input files together.
    """
    if isinstance(config, Config):
        cfg, found = config, []
    else:
        cfg, found = check_config(Path(config))
    if cfg is None:
        return None, found
    if out is not None:
        cfg = cfg.model_copy(update={"output": Path(out)})
    return cfg, found + problems(cfg)
