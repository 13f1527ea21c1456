"""Reading clinical.csv (one row per patient; docs/input-formats.md) and joining it into ``obs``."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import PATIENT, join_table, warn_unmatched
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError
from itme.io._tables import (
    MISSING_TOKENS,
    canonical_columns,
    check_patient_ids,
    line_list,
    read_delimited,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["add_clinical", "read_clinical"]

logger = logging.getLogger(__name__)

DISEASE_LEVELS = ("NDMM", "RMM", "TRMM")
_ENDPOINT = re.compile(r"^(?P<name>.+)_(?P<kind>months|event)$")


def read_clinical(
    path: str | Path,
    *,
    disease_levels: Sequence[str] | None = DISEASE_LEVELS,
) -> pd.DataFrame:
    """Read clinical.csv: one row per patient, validated against the input contract.

    Required columns: ``patient_id`` (unique, non-empty) and ``disease_status`` (one of
    ``disease_levels``, case-insensitive; empty = missing, warned). Survival endpoints come in
    pairs ``<endpoint>_months`` (non-negative number) + ``<endpoint>_event`` (1 = event,
    0 = censored); a column without its partner is an error. Every other column is kept:
    numeric when all its non-missing values are numbers, text otherwise. Missing-value tokens:
    empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``none``, ``-``, ``.``. Files with a UTF-8 BOM, in
    UTF-16 or Windows-1252 (warned), and with ``,``, ``;`` or tab separators are read.

    Parameters
    ----------
    path
        The clinical table (CSV/TSV).
    disease_levels
        Allowed ``disease_status`` values, in display order; ``None`` accepts any value.

    Returns
    -------
    DataFrame indexed by ``patient_id`` (str): ``disease_status`` as a categorical with
    ``disease_levels`` as categories, ``<endpoint>_months`` float, ``<endpoint>_event``
    nullable integer, other columns numeric or text (missing = NaN). ``attrs`` holds
    ``endpoints`` (list of endpoint names), ``encoding``, ``separator`` and ``path``.
    """
    df, info = read_delimited(path, what="clinical")
    where = str(info["path"])
    df = canonical_columns(df, ("patient_id", "disease_status"))
    missing_cols = [c for c in ("patient_id", "disease_status") if c not in df.columns]
    if missing_cols:
        raise ItmeInputError(
            where=f"{where} header",
            expected="columns patient_id and disease_status",
            found=f"columns {', '.join(df.columns)}",
            fix=f"Add {', '.join(missing_cols)}.",
        )
    check_patient_ids(df, where, fix="Merge or remove the duplicate rows.")
    ids = df["patient_id"]

    out = pd.DataFrame(index=pd.Index(ids.to_numpy(), name="patient_id"))
    status = df["disease_status"]
    status_missing = status.str.lower().isin(MISSING_TOKENS)
    if disease_levels is not None:
        canon = {lv.lower(): lv for lv in disease_levels}
        unknown = df.index[~status_missing & ~status.str.lower().isin(canon)]
        if len(unknown):
            found = "; ".join(f"line {i}: {status[i]!r}" for i in unknown[:10])
            raise ItmeInputError(
                where=f"{where}, column disease_status",
                expected=f"one of {', '.join(disease_levels)}",
                found=found,
                fix="Correct the labels, or pass disease_levels= with the cohort's groups.",
            )
        values = [
            None if m else canon[s.lower()] for s, m in zip(status, status_missing, strict=True)
        ]
        out["disease_status"] = pd.Categorical(values, categories=list(disease_levels))
    else:
        out["disease_status"] = pd.Categorical(
            [None if m else s for s, m in zip(status, status_missing, strict=True)]
        )
    if status_missing.any():
        warnings.warn(
            f"{where}: disease_status missing for {int(status_missing.sum())} patient(s): "
            f"{line_list(ids[status_missing])}",
            ItmeInputWarning,
            stacklevel=2,
        )

    endpoints: dict[str, set[str]] = {}
    for col in df.columns:
        m = _ENDPOINT.match(col)
        if m:
            endpoints.setdefault(m["name"], set()).add(m["kind"])
    for name, kinds in endpoints.items():
        if kinds != {"months", "event"}:
            have = f"{name}_{next(iter(kinds))}"
            need = f"{name}_{({'months', 'event'} - kinds).pop()}"
            raise ItmeInputError(
                where=f"{where} header",
                expected=f"{need} next to {have}",
                found=f"{have} alone",
                fix="Survival columns come in pairs <endpoint>_months + <endpoint>_event.",
            )

    for col in df.columns:
        if col in ("patient_id", "disease_status"):
            continue
        raw = df[col]
        is_missing = raw.str.lower().isin(MISSING_TOKENS)
        numbers = pd.to_numeric(raw.where(~is_missing), errors="coerce")
        not_number = df.index[~is_missing & numbers.isna()]
        m = _ENDPOINT.match(col)
        if m and m["kind"] == "months":
            bad = list(not_number) + list(df.index[(numbers < 0) | np.isinf(numbers)])
            if bad:
                raise ItmeInputError(
                    where=f"{where}, column {col}",
                    expected="a finite, non-negative number of months",
                    found="; ".join(f"line {i}: {raw[i]!r}" for i in sorted(bad)[:10]),
                    fix="Give the time to the event or to the last follow-up (censored); leave "
                    "it empty when unknown",
                )
            out[col] = numbers.to_numpy(dtype=float)
        elif m and m["kind"] == "event":
            bad = list(not_number) + list(df.index[numbers.notna() & ~numbers.isin([0, 1])])
            if bad:
                raise ItmeInputError(
                    where=f"{where}, column {col}",
                    expected="1 (event) or 0 (censored)",
                    found="; ".join(f"line {i}: {raw[i]!r}" for i in bad[:10]),
                )
            out[col] = pd.array(numbers.to_numpy(), dtype="Int64")
        elif len(not_number) == 0 and (~is_missing).any():
            if np.isinf(numbers).any():
                warnings.warn(
                    f"{where}, column {col}: infinite value(s) on line(s) "
                    f"{line_list(df.index[np.isinf(numbers)])}; kept as numbers",
                    ItmeInputWarning,
                    stacklevel=2,
                )
            out[col] = numbers.to_numpy(dtype=float)
        else:
            n_numbers = int(numbers.notna().sum())
            if 0 < len(not_number) <= n_numbers:  # mostly numbers: the text is likely a typo
                shown = "; ".join(f"line {i}: {raw[i]!r}" for i in not_number[:5])
                warnings.warn(
                    f"{where}, column {col}: {n_numbers} number(s) but {len(not_number)} text "
                    f"value(s) ({shown}), so the column is kept as text; write missing values "
                    "as NA if it is numeric",
                    ItmeInputWarning,
                    stacklevel=2,
                )
            out[col] = raw.where(~is_missing).to_numpy(dtype=object)
    for name in sorted(endpoints):
        months, event = out[f"{name}_months"], out[f"{name}_event"]
        half = months.isna() != event.isna()
        if half.any():
            warnings.warn(
                f"{where}: {int(half.sum())} patient(s) have only one of {name}_months and "
                f"{name}_event ({line_list(list(out.index[half]))}); survival analyses of "
                f"{name} leave them out",
                ItmeInputWarning,
                stacklevel=2,
            )
    out.attrs.update({"endpoints": sorted(endpoints), **info})
    logger.info(
        "read_clinical: %d patients, %d columns, endpoints %s (%s, %r)",
        len(out),
        out.shape[1],
        ", ".join(sorted(endpoints)) or "none",
        info["encoding"],
        info["separator"],
    )
    return out


def add_clinical(
    adata: AnnData,
    clinical: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    on: str = PATIENT,
    overwrite: bool = False,
    key_added: str = "clinical",
    copy: bool = False,
) -> AnnData | None:
    """Join a per-patient table (the clinical table) into ``obs`` by ``obs["patient_id"]``.

    Done once, before the patient-level analyses: :mod:`itme.stats`, :func:`itme.tl.patient_clusters`
    and :mod:`itme.pl` read the clinical columns from ``obs`` and never join tables themselves.
    Every sample of a patient gets the patient's row. Nothing is dropped: samples without a
    row keep missing values (each analysis then excludes and reports them), and one
    :class:`~itme.errors.ItmeExclusionWarning` lists the samples without a row and the table's
    patients without a sample (counts and ids). Works on any AnnData with ``obs[on]``: the
    patients AnnData (samples × subsets), the RNA-seq AnnData, the cytokines AnnData, cells.

    Parameters
    ----------
    adata
        AnnData whose ``obs[on]`` names the patient of each observation.
    clinical
        Per-patient table: :func:`read_clinical`'s DataFrame, or any DataFrame with an ``on``
        column or index (e.g. ``patients.obs[["patient_id", "itme_cluster"]]``). Repeated ids
        are accepted when their rows agree on the joined columns, else an ItmeInputError.
    columns
        Columns to join (default: all but ``on``).
    on
        Key column of ``obs`` and of the table.
    overwrite
        Replace ``obs`` columns of the same name. By default an existing column is an
        :class:`~itme.errors.ItmeStateError` (e.g. the table was joined already).
    key_added
        ``uns`` entry recording the join.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` (or the copy when ``copy=True``), having written:

    ``obs[<column>]``
        One column per joined column: text as a categorical (of the values present; the
        categories of a categorical column, such as ``disease_status``, are kept), numbers
        numeric (integers with a missing value as ``Int64``), booleans ``boolean``.
    ``uns[key_added]``
        ``on``, ``columns`` (joined, in table order), ``n_samples_without_row``,
        ``samples_without_row`` (obs names), ``n_patients_without_sample``,
        ``patients_without_sample`` (ids of the table), ``table`` (the table as joined: one
        row per patient, index ``on``; the patients without a sample are kept, so analyses
        of other data, such as cytokines or RNA-seq, can use it), and ``source`` (the file
        read by :func:`read_clinical`, when known).
    """
    if not isinstance(key_added, str) or not key_added:
        raise ItmeParameterError("key_added", "a non-empty string", key_added)
    if not isinstance(clinical, pd.DataFrame):
        raise ItmeParameterError(
            "clinical", "a pandas DataFrame (itme.io.read_clinical)", type(clinical).__name__
        )
    adata = adata.copy() if copy else adata
    joined, record = join_table(
        adata.obs, clinical, on=on, columns=columns, overwrite=overwrite, where="clinical"
    )
    name = "the clinical table" if key_added == "clinical" else f"the table of uns[{key_added!r}]"
    warn_unmatched(record, adata.obs, what="add_clinical", table_name=name)
    for col in joined.columns:
        adata.obs[col] = joined[col]
    record = {
        "on": record["on"],
        "columns": record["columns"],
        "n_samples_without_row": len(record["samples_without_row"]),
        "samples_without_row": record["samples_without_row"],
        "n_patients_without_sample": len(record["patients_without_sample"]),
        "patients_without_sample": record["patients_without_sample"],
        "table": record["table"],
    }
    if clinical.attrs.get("path"):
        record["source"] = str(clinical.attrs["path"])
    adata.uns[key_added] = record
    logger.info(
        "add_clinical: %d column(s) joined into obs by %s (%d of %d observations matched)",
        len(record["columns"]),
        on,
        adata.n_obs - record["n_samples_without_row"],
        adata.n_obs,
    )
    return adata if copy else None
