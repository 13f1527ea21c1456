"""The design checks of ``itme validate``: columns, contrast levels, pairing, markers, cell counts.

:func:`design_problems` (called by ``pipeline/_validate.py``) checks the config's ``design``
against the inputs before any stage runs: every column the formula, the contrasts and the
pairing name must be a sample-sheet column, a clinical column or ``itme_cluster``; each
contrast's levels must occur; the pairing column must repeat (a random intercept per level
needs several samples per level); the state markers must be panel antigens; and no unit of
analysis may hold fewer events than ``design.min_cells`` (``$TOT`` of its files, or
``downsample.n``). Whether each sample × subset reaches ``min_cells`` is known only after
annotation: the differential stage lists the cells left out and fails with an
:class:`~itme.errors.ItmeInputError` when none is left.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from itme import io
from itme.errors import ItmeError
from itme.pipeline._config import Config, Design
from itme.pipeline._stages_differential import design_columns


def _values(
    column: str, sheet: pd.DataFrame, clinical: pd.DataFrame | None, k: int
) -> tuple[str, set[str]] | None:
    """Where a design column comes from and its values (``None`` when it exists nowhere)."""
    if column in sheet.columns:
        return "samples.csv", set(sheet[column].dropna().astype(str))
    if clinical is not None and column in clinical.columns:
        patients = set(sheet["patient_id"].astype(str))
        rows = clinical[clinical.index.astype(str).isin(patients)]  # indexed by patient_id
        return "clinical.csv", set(rows[column].dropna().astype(str))
    if column == "itme_cluster":
        return "itme_cluster", {str(c) for c in range(1, k + 1)}
    return None


def _units(sheet: pd.DataFrame) -> pd.DataFrame:
    """The sheet's units of analysis, one row per file (``io.analysis_units``)."""
    return io.analysis_units(sheet)


def _events_problems(config: Config, design: Design, sheet: pd.DataFrame) -> list[str]:
    """Units whose events (``$TOT``, or ``downsample.n``) cannot reach ``min_cells``."""
    found = []
    n = config.downsample.n
    if n is not None and n < design.min_cells:
        found.append(
            f"design.min_cells: downsample.n keeps {n} events per sample, fewer than "
            f"design.min_cells = {design.min_cells} in a single subset; lower min_cells or raise n"
        )
    summary = io.summarize(config.inputs.samples, panel=config.inputs.panel)
    files = summary.files
    if "events" not in files or "file" not in files or files.empty:
        return found
    events = dict(zip(files["file"].astype(str), files["events"], strict=True))
    units = _units(sheet)
    per_unit: dict[str, int] = {}
    for unit, name in zip(units["unit_id"], sheet["file_name"].astype(str), strict=True):
        hit = events.get(name, events.get(Path(name).name))
        if hit is not None and pd.notna(hit):
            per_unit[unit] = per_unit.get(unit, 0) + int(hit)
    small = {u: e for u, e in per_unit.items() if e < design.min_cells}
    if small:
        listed = ", ".join(f"{u} ({e})" for u, e in sorted(small.items()))
        found.append(
            f"design.min_cells: {len(small)} sample(s) hold fewer events than min_cells = "
            f"{design.min_cells} in all, so none of their subsets can be tested: {listed}; "
            "lower min_cells or leave them out of samples.csv"
        )
    return found


def design_problems(config: Config, clinical: pd.DataFrame | None) -> list[str]:
    """Problems of the config's ``design`` against the sample sheet, clinical table and panel.

    Parameters
    ----------
    config
        The validated config (``design`` not ``None``).
    clinical
        The clinical table as read (``None`` without one, or when it could not be read).

    Returns
    -------
    One line per problem (empty when the design can run).
    """
    design = config.design
    if design is None:
        return []
    try:
        sheet, _ = io.read_samples(config.inputs.samples)
    except ItmeError:
        return []  # the cohort checks report it
    found: list[str] = []
    k = config.patients.k
    for column in design_columns(design):
        if _values(column, sheet, clinical, k) is None:
            source = "clinical.csv" if clinical is not None else "clinical.csv (not given)"
            role = "design.random" if column == design.random else "design.formula"
            found.append(
                f"{role}: column {column!r} is neither a column of samples.csv "
                f"({', '.join(map(str, sheet.columns))}), of {source}, nor itme_cluster"
            )
    for i, con in enumerate(design.contrasts):
        got = _values(con.column, sheet, clinical, k)
        if got is None:
            continue
        source, values = got
        absent = [v for v in (con.level, con.reference) if v not in values]
        if absent:
            found.append(
                f"design.contrasts[{i}] ({con.label}): {', '.join(map(repr, absent))} "
                f"not a value of {source} column {con.column!r} ({', '.join(sorted(values))})"
            )
    if design.random is not None and _values(design.random, sheet, clinical, k) is not None:
        units = _units(sheet).drop_duplicates("unit_id")
        if design.random in sheet.columns:
            level = sheet.loc[units.index, design.random].astype(str)
        else:
            level = units["patient_id"].astype(str)  # a clinical column: per patient
        if level.value_counts().max() < 2:
            found.append(
                f"design.random: every level of {design.random!r} has a single sample, so a "
                "pairing / blocking term cannot be estimated; remove design.random (unpaired "
                "design) or add the repeated samples"
            )
    if design.markers:
        try:
            panel = io.read_panel(config.inputs.panel)
        except ItmeError:
            panel = None
        if panel is not None:
            missing = sorted(set(design.markers) - set(panel["antigen"]))
            if missing:
                found.append(f"design.markers: not antigens of the panel: {', '.join(missing)}")
    found += _events_problems(config, design, sheet)
    return found
