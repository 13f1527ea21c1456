"""The unit of analysis: which FCS files are one sample of one patient at one time point.

A tube split over two acquisitions gives two files of one sample; a patient sampled again at
relapse gives two samples of one patient. Files of one patient and time point (and equal in
every other sample-sheet column but ``file_name``, ``sample_id`` and ``batch``) are pooled into
one unit, so frequencies come from the pooled counts; different time points stay separate
units. Patient-level tests then count independent patients, not units.
"""

from __future__ import annotations

import pandas as pd

from itme.errors import ItmeInputError
from itme.io._channels import parse_channel

__all__ = ["TIMEPOINT_COLUMNS", "analysis_units", "check_unit_panels", "timepoint_column"]

#: sample-sheet columns read as the time point of a sample (the first present is used)
TIMEPOINT_COLUMNS = ("timepoint", "visit")
#: columns that may differ between the files of one unit
_PER_FILE = {"file_name", "sample_id", "batch"}


def timepoint_column(columns: pd.Index | list[str]) -> str | None:
    """The time-point column of a sample sheet (``timepoint``, else ``visit``), or ``None``.

    Parameters
    ----------
    columns
        The sheet's columns.

    Returns
    -------
    The column name, or ``None`` when the sheet has neither.
    """
    return next((c for c in TIMEPOINT_COLUMNS if c in columns), None)


def analysis_units(samples: pd.DataFrame) -> pd.DataFrame:
    """Map every sample (FCS file) of a sample sheet to its unit of analysis.

    Parameters
    ----------
    samples
        One row per file with ``sample_id``, ``patient_id`` and optionally ``timepoint`` (or
        ``visit``) and other columns (:func:`itme.io.read_samples`).

    Returns
    -------
    DataFrame indexed like ``samples``: ``sample_id``, ``patient_id``, ``timepoint`` (``""``
    without a time-point column), ``unit_id`` and ``n_files`` (files in the unit). A unit of
    one file keeps its ``sample_id`` as ``unit_id``; a pooled unit is named by its sample ids
    joined with ``+`` (``P7_a+P7_b``), so cohorts without split files keep their names.

    Raises
    ------
    ItmeInputError
        A blank time point (naming the lines and the column).
    """
    tp = timepoint_column(samples.columns)
    table = samples.copy()
    table["timepoint"] = samples[tp].astype(str) if tp is not None else ""
    if tp is not None:
        blank = table.index[table["timepoint"].str.strip().isin(["", "nan", "NA", "None"])]
        if len(blank):
            raise ItmeInputError(
                where=f"sample sheet line(s) {', '.join(map(str, blank))}, column {tp}",
                expected="a time point for every file (e.g. diagnosis, relapse)",
                found="an empty value",
                fix=f"Fill in {tp} for every row, or remove the column",
            )
    keys = [c for c in table.columns if c not in _PER_FILE and c != tp]
    keys = ["patient_id", "timepoint", *[c for c in keys if c not in ("patient_id", "timepoint")]]
    groups = table.groupby(keys, sort=False, dropna=False)["sample_id"]
    members = groups.transform(lambda s: "+".join(s.astype(str)))
    n_files = groups.transform("size")
    return pd.DataFrame(
        {
            "sample_id": table["sample_id"].astype(str),
            "patient_id": table["patient_id"].astype(str),
            "timepoint": table["timepoint"],
            "unit_id": members.astype(str),
            "n_files": n_files.astype(int),
        },
        index=samples.index,
    )


def check_unit_panels(units: pd.DataFrame, *, channel_map: pd.DataFrame) -> None:
    """Raise when the files of one unit measured a panel channel on different metals.

    Pooling adds the events of the files of a unit, so each marker must be the same
    measurement in each of them.

    Parameters
    ----------
    units
        From :func:`analysis_units`.
    channel_map
        ``uns["io"]["channel_map"]`` of :func:`itme.io.read_cohort`.

    Returns
    -------
    ``None``; the check passed.

    Raises
    ------
    ItmeInputError
        Naming the patient, the files, the panel channel and the channels each file took.
    """
    pooled = units[units["n_files"] > 1]
    if pooled.empty or channel_map.empty:
        return
    cmap = channel_map.assign(
        metal=[
            parse_channel(n).metal or parse_channel(s).metal or n
            for n, s in zip(channel_map["PnN"], channel_map["PnS"], strict=True)
        ]
    )
    problems = []
    for unit, members in pooled.groupby("unit_id", sort=False):
        rows = cmap[cmap["sample_id"].isin(members["sample_id"])]
        for panel_channel, grp in rows.groupby("panel_channel", sort=False):
            if grp["metal"].nunique() > 1:
                took = ", ".join(
                    f"{f}: {p}" for f, p in zip(grp["file_name"], grp["PnN"], strict=True)
                )
                problems.append(
                    f"patient {members['patient_id'].iloc[0]} ({unit}), {panel_channel}: {took}"
                )
    if problems:
        raise ItmeInputError(
            "files pooled into one sample measured a panel channel on different metals: "
            + "; ".join(problems),
            where="samples.csv (patient_id, timepoint) and panel.csv (fcs_colname)",
            fix="Give the files different time points if they are different samples, or "
            "correct the panel so each marker is one metal in both",
        )
