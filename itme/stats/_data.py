"""Shared plumbing of the statistics adapters: features, group labels and the clinical join.

Every public function of :mod:`itme.stats` (and :func:`itme.tl.patient_clusters`) takes either
a patients AnnData (samples × subsets, ``obs["patient_id"]``) or a plain DataFrame, and
optionally the clinical table. Columns are looked up in the data first (``obs`` for AnnData)
and then in ``clinical``, joined by ``patient_id``. Nothing is dropped silently: samples
without a clinical row and clinical patients without a sample are reported by id in an
:class:`~itme.errors.ItmeExclusionWarning`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from itme.core.stats.groups import holm
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError

logger = logging.getLogger(__name__)

PATIENT = "patient_id"


def as_list(names: str | Sequence[str]) -> list[str]:
    """A list of names; a single name (``"T1"``) is one name, not its characters."""
    return [names] if isinstance(names, str) else list(names)


def fmt_ids(ids: Sequence[Any], limit: int = 20) -> str:
    """``"a, b, c"`` (at most ``limit`` ids, then ``"... and N more"``)."""
    ids = [str(i) for i in ids]
    text = ", ".join(ids[:limit])
    if len(ids) > limit:
        text += f" ... and {len(ids) - limit} more"
    return text


def is_anndata(data: Any) -> bool:
    """True for an AnnData (checked without importing anndata)."""
    return hasattr(data, "obs") and hasattr(data, "var") and hasattr(data, "X")


def clinical_frame(clinical: pd.DataFrame, *, where: str = "clinical") -> pd.DataFrame:
    """The clinical table indexed by ``patient_id`` (as str); the column is moved to the index."""
    if not isinstance(clinical, pd.DataFrame):
        raise ItmeParameterError(
            "clinical", "a pandas DataFrame (itme.io.read_clinical)", type(clinical).__name__
        )
    df = clinical.copy()
    if PATIENT in df.columns:
        df = df.set_index(PATIENT)
    elif df.index.name != PATIENT:
        raise ItmeInputError(
            where=where,
            expected="a patient_id column (or an index named patient_id)",
            found=f"columns {fmt_ids(df.columns)}",
            fix="Read the table with itme.io.read_clinical.",
        )
    df.index = df.index.astype(str)
    df.index.name = PATIENT
    dup = df.index[df.index.duplicated()].unique()
    if len(dup):
        raise ItmeInputError(
            where=f"{where}, column patient_id",
            expected="unique patient ids",
            found=f"duplicated {fmt_ids(dup)}",
            fix="Keep one row per patient.",
        )
    return df


def observation_frame(data: Any) -> pd.DataFrame:
    """``obs`` of an AnnData or a copy of a DataFrame; ``patient_id`` defaults to the index."""
    if is_anndata(data):
        obs = data.obs.copy()
        if PATIENT not in obs.columns:
            obs[PATIENT] = obs.index.astype(str)
        return obs
    if isinstance(data, pd.DataFrame):
        df = data.copy()
        if PATIENT not in df.columns:
            df[PATIENT] = df.index.astype(str)
        return df
    raise ItmeParameterError(
        "data", "an AnnData (samples × subsets) or a pandas DataFrame", type(data).__name__
    )


def lookup(
    data: Any,
    columns: Sequence[str],
    *,
    clinical: pd.DataFrame | None = None,
    what: str = "analysis",
    param: str = "columns",
) -> pd.DataFrame:
    """One row per observation of ``data`` with ``columns`` (plus ``patient_id``).

    Columns present in the data win; the others come from ``clinical`` joined by
    ``patient_id``. Observations whose patient has no clinical row are dropped and clinical
    patients without an observation are reported, both by id (ItmeExclusionWarning).
    """
    obs = observation_frame(data)
    obs[PATIENT] = obs[PATIENT].astype(str)
    columns = [c for c in dict.fromkeys(columns) if c != PATIENT]
    missing = [c for c in columns if c not in obs.columns]
    out = obs[[PATIENT, *[c for c in columns if c in obs.columns]]].copy()
    if not missing:
        return out
    if clinical is None:
        raise ItmeParameterError(
            param,
            "columns of the data" + (" (obs)" if is_anndata(data) else "") + " or of clinical=",
            missing,
            fix="Pass the clinical table (itme.io.read_clinical) as clinical=.",
        )
    clin = clinical_frame(clinical)
    absent = [c for c in missing if c not in clin.columns]
    if absent:
        raise ItmeParameterError(
            param, f"columns of the data or of clinical ({fmt_ids(clin.columns)})", absent
        )
    in_data = pd.Index(out[PATIENT].unique())
    no_clinical = out.index[~out[PATIENT].isin(clin.index)]
    no_sample = clin.index.difference(in_data)
    if len(no_clinical):
        ids = [
            f"{i} (patient {p})" if str(i) != p else p
            for i, p in zip(no_clinical, out.loc[no_clinical, PATIENT], strict=True)
        ]
        warnings.warn(
            f"{what}: {len(no_clinical)} sample(s) have no row in the clinical table and are "
            f"left out: {fmt_ids(ids)}",
            ItmeExclusionWarning,
            stacklevel=3,
        )
    if len(no_sample):
        warnings.warn(
            f"{what}: {len(no_sample)} patient(s) of the clinical table have no sample in the "
            f"data and are left out: {fmt_ids(no_sample)}",
            ItmeExclusionWarning,
            stacklevel=3,
        )
    out = out.drop(index=no_clinical)
    joined = clin.loc[out[PATIENT], missing]
    joined.index = out.index
    return pd.concat([out, joined], axis=1)


def one_row_per_patient(
    frame: pd.DataFrame, columns: Sequence[str], *, what: str, fix: str
) -> pd.DataFrame:
    """``frame`` (from :func:`lookup`) indexed by ``patient_id``, one row per patient.

    A patient with several samples keeps the row of its first sample; the samples must agree
    on every column of ``columns`` (a group, a covariate), else an ItmeInputError names the
    patients that disagree.
    """
    for col in columns:
        per = frame.groupby(PATIENT, observed=True)[col].nunique()
        if (per > 1).any():
            raise ItmeInputError(
                where=f"{what}, column {col}",
                expected="one value per patient",
                found=f"several for {fmt_ids(per.index[per > 1])}",
                fix=fix,
            )
    return frame.drop_duplicates(PATIENT).set_index(PATIENT)


def feature_table(
    data: Any, *, features: Sequence[str] | None = None, source: str = "X"
) -> pd.DataFrame:
    """Observations × features (float) from ``X``, an ``obsm`` DataFrame, or a DataFrame's columns.

    ``source="X"`` reads the AnnData matrix (columns ``var_names``); any other value names an
    ``obsm`` entry holding a DataFrame (e.g. ``"derived"``: total T, CD4, CD8, ...). For a
    DataFrame input, ``features`` default to its numeric columns.
    """
    if is_anndata(data):
        if source == "X":
            x = data.X.toarray() if hasattr(data.X, "toarray") else np.asarray(data.X)
            table = pd.DataFrame(x, index=data.obs_names, columns=data.var_names.astype(str))
        else:
            if source not in data.obsm:
                raise ItmeParameterError(
                    "source", f"'X' or an obsm key ({fmt_ids(list(data.obsm))})", source
                )
            table = data.obsm[source]
            if not isinstance(table, pd.DataFrame):
                table = pd.DataFrame(np.asarray(table), index=data.obs_names)
                table.columns = table.columns.astype(str)
    elif isinstance(data, pd.DataFrame):
        table = data
        if features is None:
            table = table.select_dtypes(include="number").drop(columns=[PATIENT], errors="ignore")
    else:
        raise ItmeParameterError("data", "an AnnData or a pandas DataFrame", type(data).__name__)
    if features is not None:
        features = as_list(features)
        unknown = [f for f in features if f not in table.columns]
        if unknown:
            raise ItmeParameterError("features", f"names among {fmt_ids(table.columns)}", unknown)
        table = table[features]
    try:
        return table.astype(float)
    except (TypeError, ValueError) as err:
        bad = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
        raise ItmeInputError(
            where=f"features ({source})",
            expected="numeric columns",
            found=f"non-numeric {fmt_ids(bad)}",
        ) from err


def group_labels(
    frame: pd.DataFrame,
    groupby: str,
    *,
    groups: Sequence[str] | None = None,
    min_size: int = 2,
    what: str = "analysis",
) -> pd.Series:
    """Categorical group labels of ``frame[groupby]``, with exclusions reported.

    Rows with a missing label, a label outside ``groups`` (when given), or in a group with
    fewer than ``min_size`` members are excluded with an ItmeExclusionWarning naming them.
    Categories follow ``groups``, else the existing categorical order, else sorted order.
    """
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 1:
        raise ItmeParameterError("min_group_size", "an integer >= 1", min_size)
    if groupby not in frame.columns:
        raise ItmeParameterError("groupby", f"a column among {fmt_ids(frame.columns)}", groupby)
    raw = frame[groupby]
    if isinstance(raw.dtype, pd.CategoricalDtype):
        order = [str(c) for c in raw.cat.categories]
    else:
        order = sorted(raw.dropna().astype(str).unique(), key=natural_key)
    labels = raw.astype(object).where(raw.notna(), None)
    labels = labels.map(lambda v: None if v is None else str(v))
    drop: dict[str, list[str]] = {}
    missing = labels.index[labels.isna()]
    if len(missing):
        drop[f"no {groupby} value"] = list(missing)
    if groups is not None:
        order = [str(g) for g in groups]
        unknown = labels.index[labels.notna() & ~labels.isin(order)]
        if len(unknown):
            drop[f"{groupby} not among {fmt_ids(order)}"] = [f"{i} ({labels[i]})" for i in unknown]
            labels = labels.drop(index=unknown)
    labels = labels.dropna()
    sizes = labels.value_counts()
    small = [g for g in order if 0 < sizes.get(g, 0) < min_size]
    if small:
        members = labels.index[labels.isin(small)]
        drop[f"group(s) with fewer than {min_size} members ({fmt_ids(small)})"] = [
            f"{i} ({labels[i]})" for i in members
        ]
        labels = labels.drop(index=members)
        order = [g for g in order if g not in small]
    for reason, ids in drop.items():
        warnings.warn(
            f"{what}: {len(ids)} excluded, {reason}: {fmt_ids(ids)}",
            ItmeExclusionWarning,
            stacklevel=3,
        )
    order = [g for g in order if g in set(labels)]
    return pd.Series(pd.Categorical(labels, categories=order), index=labels.index, name=groupby)


def natural_key(value: str) -> tuple:
    """Sort "2" before "10" (cluster labels) while keeping strings sortable."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def padjust(pvalues: np.ndarray, method: str) -> np.ndarray:
    """Multiple-testing adjustment via statsmodels, NaN p-values left out of the family."""
    methods = {"bh": "fdr_bh", "by": "fdr_by", "bonferroni": "bonferroni", "holm": "holm"}
    if method not in (*methods, "none"):
        raise ItmeParameterError("fdr", "one of bh, by, bonferroni, holm, none", method)
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method == "none":
        out[ok] = p[ok]
    elif method == "holm":
        out[ok] = holm(p[ok])
    elif ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method=methods[method])[1]
    return out
