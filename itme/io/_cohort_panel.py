"""How a cohort's panel meets its files: the match per file, naming conventions, changed panels.

Used by :func:`itme.io.read_cohort` and :func:`itme.io.summarize`; the name parsing itself is
:mod:`._channels`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeInputWarning
from itme.io._channels import PanelMatch, match_panel
from itme.io._fcs_format import FcsFile


def match_file(
    fcs: FcsFile, panel: pd.DataFrame, aliases: Mapping[str, str] | None = None
) -> PanelMatch:
    """Column of each panel row in this file: by $PnN, $PnS, metal, then antigen."""
    return match_panel(
        fcs.channels, list(panel["fcs_colname"]), file=fcs.path.name, aliases=aliases
    )


def warn_conventions(texts: list[FcsFile], matches: list[PanelMatch]) -> None:
    """One warning per channel-naming convention matched by metal, listing its files."""
    by_convention: dict[str, list[str]] = {}
    for fcs, match in zip(texts, matches, strict=True):
        if match.conventions:
            label = Counter(match.conventions).most_common(1)[0][0]
            by_convention.setdefault(label, []).append(fcs.path.name)
    for label, files in by_convention.items():
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        warnings.warn(
            f"{len(files)} file(s) name their channels as {label!r}, not as the panel's "
            f"fcs_colname: matched to the panel by metal (mass and element; the mapping of "
            f"every file is in uns['io']['channel_map']): {shown}",
            ItmeInputWarning,
            stacklevel=4,
        )


_TRUE = ("yes", "y", "true", "1")


def drop_partial_markers(
    panel: pd.DataFrame, texts: list[FcsFile], matches: list[PanelMatch], missing: str
) -> tuple[pd.DataFrame, list[PanelMatch], list[set[int]], pd.DataFrame]:
    """Leave out panel rows found in some files but not all (unless required): one warning.

    Returns the reduced panel and matches, per file the columns of the markers left out (not
    "unpanelled" channels), and a table of the markers left out and the files that lack them.
    """
    ignored: list[set[int]] = [set() for _ in texts]
    none = pd.DataFrame(columns=["fcs_colname", "antigen", "files_without"])
    if missing != "exclude" or len(texts) < 2:
        return panel, matches, ignored, none
    required = (
        panel["required"].str.strip().str.lower().isin(_TRUE).to_numpy()
        if "required" in panel.columns
        else np.zeros(len(panel), dtype=bool)
    )
    drop, rows = [], []
    for r, (name, antigen) in enumerate(zip(panel["fcs_colname"], panel["antigen"], strict=True)):
        lacking = [f.path.name for f, m in zip(texts, matches, strict=True) if m.columns[r] is None]
        if 0 < len(lacking) < len(texts) and not required[r]:
            drop.append(r)
            rows.append(
                {"fcs_colname": name, "antigen": antigen, "files_without": ", ".join(lacking)}
            )
    if not drop:
        return panel, matches, ignored, none
    for k, m in enumerate(matches):
        ignored[k] = {m.columns[r] for r in drop if m.columns[r] is not None}
    keep = [r for r in range(len(panel)) if r not in drop]
    reduced = [
        PanelMatch(
            [m.columns[r] for r in keep], [m.how[r] for r in keep], m.problems, m.conventions
        )
        for m in matches
    ]
    warnings.warn(
        f"{len(drop)} panel channel(s) missing from some files are left out of the analysis "
        "(clustering included; listed in uns['io']['excluded_markers']; a panel column "
        "'required' = yes makes a missing marker an error): "
        + "; ".join(
            f"{r['fcs_colname']} ({r['antigen']}) missing from {r['files_without']}" for r in rows
        ),
        ItmeExclusionWarning,
        stacklevel=4,
    )
    return panel.iloc[keep], reduced, ignored, pd.DataFrame(rows, columns=list(none.columns))


def batch_panels(panel: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, list[list[str]]]:
    """A panel with a ``batch`` column (an antigen on another metal in some runs) per file.

    Rows with an empty ``batch`` apply to every file; a row with a batch applies to the files
    of that ``batch`` in samples.csv. Rows of one antigen are one variable.

    Returns the panel of one row per variable (the first row of each antigen) and, per file,
    the ``fcs_colname`` each variable has in that file's batch.
    """
    if "batch" not in panel.columns or not (panel["batch"] != "").any():
        return panel, [list(panel["fcs_colname"])] * len(table)
    if "batch" not in table.columns:
        raise ItmeInputError(
            "the panel has a batch column but samples.csv has none",
            where="samples.csv, column batch",
            fix="Add the batch (acquisition run) of every file to samples.csv",
        )
    unknown = sorted(set(panel["batch"]) - {""} - set(table["batch"]))
    if unknown:
        raise ItmeInputError(
            where="panel.csv, column batch",
            expected=f"batches of samples.csv ({', '.join(sorted(set(table['batch'])))})",
            found=", ".join(unknown),
        )
    key = panel["antigen"].where(panel["antigen"] != "", panel["fcs_colname"])
    canonical = panel.loc[~key.duplicated()]
    names = []
    for batch in table["batch"]:
        rows = panel[(panel["batch"] == "") | (panel["batch"] == batch)]
        by_key = dict(zip(key[rows.index], rows["fcs_colname"], strict=True))
        names.append(
            [
                by_key.get(k, name)
                for k, name in zip(key[canonical.index], canonical["fcs_colname"], strict=True)
            ]
        )
    return canonical, names
