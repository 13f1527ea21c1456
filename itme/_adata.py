"""Package-level accessors of AnnData objects, shared by the adapter namespaces.

Internal (not public API), imported by :mod:`itme.io`, :mod:`itme.tl`, :mod:`itme.stats`,
:mod:`itme.rna` and :mod:`itme.pl` so that no namespace imports another's private module.
It holds three groups of helpers, all reading documented keys only (docs/data-model.md):

- **Cells: which matrix, which markers.** :func:`matrix` (``X`` or a layer, dense),
  :func:`markers_of_class`, :func:`type_markers`, :func:`check_markers`.
- **Patients: features, columns and groups.** The patient-level functions take the patients
  AnnData (samples × subsets, ``obs["patient_id"]``) or a plain DataFrame. :func:`feature_table`
  gives the numbers to test (``X`` or an ``obsm`` DataFrame), :func:`obs_columns` the
  ``obs`` columns (an error that says to join the clinical table when one is missing),
  :func:`one_row_per_patient` collapses samples to patients (samples of one patient must
  agree), :func:`group_labels` turns a column into categorical groups with every exclusion
  reported (:class:`~itme.errors.ItmeExclusionWarning`).
- **The per-patient join.** :func:`patient_table` normalises a table keyed by patient (one
  row per key, text as categoricals), :func:`join_table` joins it into ``obs`` and returns
  what it did (columns added, ids missing on either side), :func:`warn_unmatched` reports the
  ids in one warning. :func:`itme.io.add_clinical` is the public face;
  :func:`itme.rna.read_counts` and :func:`itme.stats.compare_cytokines` use the same join.

Small formatting helpers (:func:`fmt_ids`, :func:`as_list`, :func:`natural_key`) are here too
because every message of these modules uses them.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.core.annotate.naming import UNASSIGNED
from itme.errors import (
    PREVIEW,
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStateError,
    fmt_ids,
)

PATIENT = "patient_id"
#: clinical column mapping RNA-seq sample ids to patients (an identifier, not a covariate)
RNASEQ_ID = "rnaseq_id"


def by_position(obs: pd.DataFrame, **parts: Any) -> AnnData:
    """``AnnData(obs=obs, **parts)``, keeping an integer ``obs.index`` as the ``obs_names``.

    The events of a cohort store are named by their row in the store (a ``pd.RangeIndex``,
    or the integer rows of a selection) instead of one Python string per event (~70 bytes).
    anndata turns any other index than strings into strings on construction, so the
    AnnData is made with a one-category placeholder index (one byte per event) and the
    integer index is set after; an index of strings passes through unchanged.

    Parameters
    ----------
    obs
        The events' obs.
    **parts
        The other arguments of ``AnnData`` (``X``, ``var``, ``uns``, ``obsm``, ``layers``, ...).

    Returns
    -------
    The AnnData, ``obs_names`` = ``obs.index``.
    """
    import anndata

    if not pd.api.types.is_integer_dtype(obs.index.dtype):
        return AnnData(obs=obs, **parts)
    frame = obs.copy(deep=False)
    frame.index = pd.CategoricalIndex(
        pd.Categorical.from_codes(np.zeros(len(obs), dtype=np.int8), categories=[""])
    )
    with warnings.catch_warnings(), anndata.settings.override(check_uniqueness=False):
        warnings.filterwarnings("ignore", r"\s*AnnData expects \.obs\.index", UserWarning)
        out = AnnData(obs=frame, **parts)
        out.obs_names = obs.index  # a RangeIndex is accepted as is; integer rows warn
    return out


def codes_dtype(n_categories: int) -> type[np.signedinteger]:
    """The integer type pandas keeps the codes of ``n_categories`` categories in.

    Codes of this type given to ``pd.Categorical.from_codes`` are kept as they are (no copy
    of one code per event in another type).
    """
    return np.int8 if n_categories < 127 else np.int16 if n_categories < 32767 else np.int32


def matrix(adata: AnnData, layer: str | None) -> np.ndarray:
    """``X`` or ``layers[layer]`` as a dense array (no copy when already dense)."""
    if layer is not None and layer not in adata.layers:
        raise ItmeParameterError("layer", f"None or one of {list(adata.layers)}", layer)
    X = adata.X if layer is None else adata.layers[layer]
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X)


def _of_class(adata: AnnData, classes: Sequence[str]) -> list[str]:
    """var_names whose ``var["marker_class"]`` is in ``classes`` (the column must exist)."""
    return [
        str(v)
        for v, c in zip(adata.var_names, adata.var["marker_class"].astype(str), strict=True)
        if c in classes
    ]


def markers_of_class(adata: AnnData, classes: Sequence[str]) -> list[str]:
    """var_names whose ``var["marker_class"]`` is in ``classes`` (all when none or no column)."""
    chosen = _of_class(adata, classes) if "marker_class" in adata.var else []
    return chosen or [str(v) for v in adata.var_names]


def check_markers(adata: AnnData, markers: Sequence[str], name: str = "markers") -> list[str]:
    """Validate user-given markers against var_names, suggesting the nearest spelling."""
    names = [str(v) for v in adata.var_names]
    markers = [str(m) for m in markers]
    missing = [m for m in markers if m not in names]
    if missing:
        hints = {m: difflib.get_close_matches(m, names, n=1) for m in missing}
        fix = "; ".join(f"{m} -> {h[0]}?" for m, h in hints.items() if h) or "Check var_names."
        raise ItmeParameterError(name, "names in adata.var_names", missing, fix=fix)
    if not markers or len(set(markers)) != len(markers):
        raise ItmeParameterError(name, "a non-empty list of distinct markers", markers)
    return markers


def given_or_class(
    adata: AnnData, markers: Sequence[str] | None, classes: Sequence[str]
) -> list[str]:
    """``markers`` checked by :func:`check_markers`, or :func:`markers_of_class` when ``None``."""
    return (
        check_markers(adata, markers) if markers is not None else markers_of_class(adata, classes)
    )


def type_markers(adata: AnnData) -> list[str]:
    """The ``type`` markers of ``var["marker_class"]``; an error when there are none."""
    if "marker_class" not in adata.var:
        raise ItmeInputError(
            where='adata.var["marker_class"]',
            expected="a column marking the type markers to cluster on",
            found="no such column",
            fix="Read the data with itme.io.read_cohort (panel.csv), or pass markers=[...].",
        )
    chosen = _of_class(adata, ("type",))
    if not chosen:
        raise ItmeInputError(
            where='adata.var["marker_class"]',
            expected='at least one "type" marker',
            found="none",
            fix="Mark the clustering markers as type in panel.csv, or pass markers=[...].",
        )
    return chosen


# --- formatting ------------------------------------------------------------------------------


def as_list(names: str | Sequence[str]) -> list[str]:
    """A list of names; a single name (``"T1"``) is one name, not its characters."""
    return [names] if isinstance(names, str) else list(names)


def natural_key(value: str) -> tuple:
    """Sort "2" before "10" (cluster labels) while keeping strings sortable."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


# --- patients: observations, features, groups ------------------------------------------------


def is_anndata(data: Any) -> bool:
    """True for an AnnData (checked without importing anndata)."""
    return hasattr(data, "obs") and hasattr(data, "var") and hasattr(data, "X")


def observation_frame(data: Any) -> pd.DataFrame:
    """``obs`` of an AnnData or a copy of a DataFrame; ``patient_id`` defaults to the index."""
    if is_anndata(data):
        obs = data.obs.copy()
    elif isinstance(data, pd.DataFrame):
        obs = data.copy()
    else:
        raise ItmeParameterError(
            "data", "an AnnData (samples × subsets) or a pandas DataFrame", type(data).__name__
        )
    if PATIENT not in obs.columns:
        obs[PATIENT] = obs.index.astype(str)
    return obs


def require_columns(data: Any, columns: Sequence[str], *, param: str = "columns") -> None:
    """An ItmeParameterError naming ``param`` unless every one of ``columns`` is in ``obs``.

    For an AnnData the message says to join the clinical table first
    (:func:`itme.io.add_clinical`); for a DataFrame it lists the DataFrame's columns.
    """
    have = data.obs.columns if is_anndata(data) else data.columns
    missing = [c for c in dict.fromkeys(columns) if c not in have and c != PATIENT]
    if not missing:
        return
    if is_anndata(data):
        raise ItmeParameterError(
            param,
            f"columns of obs ({fmt_ids(have)})",
            missing,
            fix="Clinical columns must be joined into obs first: "
            "itme.io.add_clinical(adata, itme.io.read_clinical(path)).",
        )
    raise ItmeParameterError(param, f"columns of the DataFrame ({fmt_ids(have)})", missing)


def obs_columns(data: Any, columns: Sequence[str], *, param: str = "columns") -> pd.DataFrame:
    """One row per observation of ``data``: ``patient_id`` (str) and ``columns``.

    The columns are read from ``obs`` (AnnData) or the DataFrame's own columns; a missing one
    is an error (:func:`require_columns`).
    """
    obs = observation_frame(data)
    require_columns(data, columns, param=param)
    obs[PATIENT] = obs[PATIENT].astype(str)
    columns = [c for c in dict.fromkeys(columns) if c != PATIENT]
    return obs[[PATIENT, *columns]].copy()


def one_row_per_patient(
    frame: pd.DataFrame, columns: Sequence[str], *, what: str, fix: str
) -> pd.DataFrame:
    """``frame`` (from :func:`obs_columns`) indexed by ``patient_id``, one row per patient.

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
    DataFrame input, ``features`` default to its numeric columns. The default features of
    ``X`` leave out ``"unassigned"`` (events no subset fits: part of every denominator, but
    not a subset to cluster on or test); name it in ``features`` to use it.
    """
    if is_anndata(data):
        if source == "X":
            x = data.X.toarray() if hasattr(data.X, "toarray") else np.asarray(data.X)
            table = pd.DataFrame(x, index=data.obs_names, columns=data.var_names.astype(str))
            if features is None:
                table = table.drop(columns=[UNASSIGNED], errors="ignore")
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
    Categories follow ``groups``, else the existing categorical order, else natural order.
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
            ItmeExclusionWarning.listing(f"{what}: {len(ids)} excluded, {reason}", ids),
            stacklevel=3,
        )
    order = [g for g in order if g in set(labels)]
    return pd.Series(pd.Categorical(labels, categories=order), index=labels.index, name=groupby)


# --- the per-patient join --------------------------------------------------------------------


def obs_dtype(values: pd.Series) -> pd.Series:
    """``values`` with the ``obs`` conventions: text as a categorical, numbers numeric.

    Categoricals, numbers and booleans are kept (booleans with a missing value become the
    nullable ``boolean``); an object column holding only numbers becomes numeric; any other
    object or string column becomes a categorical of its text values in natural order
    (``"2"`` before ``"10"``).
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return values
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return values
    present = values.dropna()
    if len(present) and all(isinstance(v, bool | np.bool_) for v in present):
        return values.astype("boolean")
    if len(present) and all(
        isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
        for v in present
    ):
        return pd.to_numeric(values)
    text = values.astype(object).where(values.notna(), None)
    text = text.map(lambda v: None if v is None else str(v))
    categories = sorted(set(text.dropna()), key=natural_key)
    return pd.Series(
        pd.Categorical(text, categories=categories), index=values.index, name=values.name
    )


def patient_table(
    table: pd.DataFrame,
    *,
    on: str = PATIENT,
    columns: Sequence[str] | None = None,
    where: str = "table",
) -> pd.DataFrame:
    """``table`` indexed by ``on`` (str), one row per key, columns in the ``obs`` dtypes.

    The key is a column or the index's name. Repeated keys are accepted when their rows agree
    on every selected column (a patients ``obs`` with two samples per patient); rows that
    differ are an ItmeInputError naming the keys. Empty keys are an error.
    """
    if not isinstance(table, pd.DataFrame):
        raise ItmeParameterError("table", f"a pandas DataFrame keyed by {on}", type(table).__name__)
    if on in table.columns:
        df = table.set_index(on)
    elif table.index.name == on:
        df = table
    else:
        raise ItmeInputError(
            where=where,
            expected=f"a {on} column (or an index named {on})",
            found=f"columns {fmt_ids(table.columns)}",
            fix="Read the clinical table with itme.io.read_clinical, or name its key column.",
        )
    keys = pd.Series(df.index, dtype="string").str.strip()
    if keys.isna().any() or (keys == "").any():
        raise ItmeInputError(
            where=f"{where}, column {on}",
            expected="a non-empty id on every row",
            found=f"{int((keys.isna() | (keys == '')).sum())} empty",
        )
    if columns is None:
        columns = [c for c in df.columns if c != on]
    else:
        columns = as_list(columns)
        unknown = [c for c in columns if c not in df.columns or c == on]
        if unknown:
            raise ItmeParameterError(
                "columns", f"columns of {where} ({fmt_ids(df.columns)})", unknown
            )
    df = df[list(columns)].copy()
    df.index = pd.Index(keys.to_numpy(dtype=object), name=on)
    if df.index.has_duplicates:
        distinct = df.astype(str).groupby(level=0, sort=False).nunique()
        bad = distinct.index[(distinct > 1).any(axis=1)]
        if len(bad):
            cols = distinct.columns[(distinct.loc[bad] > 1).any(axis=0)]
            raise ItmeInputError(
                where=f"{where}, column(s) {fmt_ids(cols)}",
                expected=f"one value per {on}",
                found=f"rows that differ for {fmt_ids(bad)}",
                fix=f"Keep one row per {on}, or join only the columns that agree (columns=).",
            )
        df = df[~df.index.duplicated()]
    for col in df.columns:
        df[col] = obs_dtype(df[col])
    df.columns = [str(c) for c in df.columns]
    return df


def join_table(
    obs: pd.DataFrame,
    table: pd.DataFrame,
    *,
    on: str = PATIENT,
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
    where: str = "table",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Join a per-patient ``table`` onto ``obs`` by ``obs[on]``; nothing is dropped.

    Returns
    -------
    ``(joined, record)``: ``joined`` has the table's columns, one row per row of ``obs`` (same
    index; missing values where ``obs[on]`` has no row in the table), text columns as
    categoricals of the values present (categoricals of the table keep their categories);
    ``record`` holds ``on``, ``columns`` (added), ``samples_without_row`` (obs names),
    ``patients_without_sample`` (table keys) and ``table`` (:func:`patient_table`).
    """
    if on not in obs.columns:
        raise ItmeStateError(
            f"obs has no {on!r} column to join {where} on: the AnnData must carry "
            f"obs[{on!r}] (itme.io.read_cohort, itme.tl.abundance, itme.rna.read_counts)"
        )
    tab = patient_table(table, on=on, columns=columns, where=where)
    declared = {c for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)}
    clash = [c for c in tab.columns if c in obs.columns]
    if clash and not overwrite:
        raise ItmeStateError(
            f"obs already has column(s) {fmt_ids(clash)} that {where} would replace: pass "
            "overwrite=True to replace them, or columns=[...] to join only the others"
        )
    keys = pd.Series(obs[on].to_numpy(), index=obs.index, dtype="string").str.strip()
    found = keys.isin(tab.index).fillna(False).to_numpy(dtype=bool)
    source = tab
    if not found.all():
        source = tab.copy()
        for col in source.columns:
            if pd.api.types.is_bool_dtype(source[col].dtype):
                source[col] = source[col].astype("boolean")
            elif pd.api.types.is_integer_dtype(source[col].dtype):
                source[col] = source[col].astype("Int64")
    joined = source.reindex(keys.fillna("").to_numpy(dtype=object))
    joined.index = obs.index
    for col in joined.columns:
        if isinstance(joined[col].dtype, pd.CategoricalDtype) and col not in declared:
            joined[col] = joined[col].cat.remove_unused_categories()
    present = set(keys[found])
    record = {
        "on": on,
        "columns": list(tab.columns),
        "samples_without_row": [str(i) for i in obs.index[~found]],
        "patients_without_sample": [str(p) for p in tab.index if p not in present],
        "table": tab,
    }
    return joined, record


def warn_unmatched(
    record: dict[str, Any],
    obs: pd.DataFrame,
    *,
    what: str,
    table_name: str = "the clinical table",
    consequence: str = "their columns are left empty",
    stacklevel: int = 3,
) -> None:
    """One ItmeExclusionWarning with the ids a :func:`join_table` could not match, if any.

    The message names the first ids of each side (:data:`itme.errors.PREVIEW`); the
    warning's ``items`` holds all of them (samples first, then the table's keys).
    """
    on = record["on"]
    no_row = list(record["samples_without_row"])
    no_sample = list(record["patients_without_sample"])
    parts, items = [], []
    if no_row:
        ids = [
            f"{i} ({on.removesuffix('_id')} {p})" if str(i) != str(p) else str(p)
            for i, p in zip(no_row, obs.loc[no_row, on].astype(str), strict=True)
        ]
        parts.append(
            f"{len(no_row)} of {len(obs)} sample(s) have no row in {table_name} "
            f"({consequence}): {fmt_ids(ids, PREVIEW)}"
        )
        items += ids
    if no_sample:
        n_table = len(record["table"])
        parts.append(
            f"{len(no_sample)} of {n_table} {on.removesuffix('_id')}(s) of {table_name} have no "
            f"sample: {fmt_ids(no_sample, PREVIEW)}"
        )
        items += no_sample
    if parts:
        warnings.warn(
            ItmeExclusionWarning(f"{what}: " + "; ".join(parts), items), stacklevel=stacklevel
        )
