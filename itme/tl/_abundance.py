"""Per-sample subset frequencies (% of CD45+ events)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.core.annotate.phenotypes import PhenotypeTable, parse_phenotypes
from itme.core.cluster.select import cross_counts
from itme.errors import (
    ItmeExclusionWarning,
    ItmeParameterError,
    ItmeStateError,
    ItmeStatisticsWarning,
)
from itme.io import read_phenotypes

__all__ = ["abundance"]

logger = logging.getLogger(__name__)

# per-event columns written by itme itself: never sample-sheet columns
_CELL_COLUMNS = {"itme_qc", "som_node", "metacluster", "subset"}


def _table(
    adata: AnnData, groupby: str, phenotypes: str | Path | PhenotypeTable | None
) -> PhenotypeTable | None:
    if phenotypes is not None:
        return read_phenotypes(phenotypes)
    info = adata.uns.get(groupby)
    text = info.get("phenotypes") if isinstance(info, dict) else None
    if text:
        return parse_phenotypes(str(text), source=f'uns["{groupby}"]["phenotypes"]')
    return None


def _labels(adata: AnnData, groupby: str) -> pd.Categorical:
    """``obs[groupby]`` with every name of ``uns[groupby]["names"]`` as a category, in its order.

    ``tl.annotate`` keeps only the subsets with events as categories of ``obs["subset"]``
    and lists every subset of the table in ``uns["subset"]["names"]``: those without events
    get a column of zeros here. Without the list, the categories of ``obs[groupby]``.
    """
    labels = pd.Categorical(adata.obs[groupby])
    labels = labels.rename_categories([str(c) for c in labels.categories])
    info = adata.uns.get(groupby)
    names = info.get("names") if isinstance(info, dict) else None
    if names is None:
        return labels
    order = [str(n) for n in np.asarray(names, dtype=object).ravel()]
    order += [c for c in labels.categories if c not in order]
    return labels.set_categories(order)


def _sample_sheet(
    obs: pd.DataFrame, keep: np.ndarray, sample_key: str, groupby: str, samples: pd.Index
) -> pd.DataFrame:
    """Columns of obs that are constant within every sample (the sample-sheet columns).

    Among the ``keep`` events. A categorical column is checked by counting the events of each
    (sample, category) pair in parts (:func:`itme.core.cluster.select.cross_counts`), with no
    per-event copy or sort: pandas' ``groupby().nunique()`` held ~40 bytes an event.
    """
    out = pd.DataFrame(index=samples)
    skip = _CELL_COLUMNS | {groupby, sample_key}
    by = pd.Categorical(obs[sample_key])
    row = pd.Index([str(c) for c in by.categories]).get_indexer(samples)  # -1: no events
    counted = keep & (by.codes >= 0)
    grouped = None
    for col in obs.columns:
        if col in skip or col.endswith(("_subsample", "_som_node", "_metacluster")):
            continue
        values = obs[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            cats = np.array(["nan", *(str(c) for c in values.cat.categories)], dtype=object)
            codes = values.cat.codes.to_numpy()
            wide = np.int16 if len(cats) < 2**15 else np.int32
            table = cross_counts(  # column 0: missing values (code -1)
                by.codes, len(by.categories), np.add(codes, 1, dtype=wide), len(cats), mask=counted
            )
            if ((table > 0).sum(axis=1) > 1).any():
                continue
            first = np.where(table.any(axis=1), table.argmax(axis=1), 0)
            out[col] = pd.Categorical(np.where(row >= 0, cats[first[row]], "nan").astype(str))
        elif values.dtype == object:
            if grouped is None:
                grouped = obs.loc[keep].groupby(sample_key, observed=True)
            if (grouped[col].nunique(dropna=False) > 1).any():
                continue
            out[col] = pd.Categorical(grouped[col].first().reindex(samples).astype(str).to_numpy())
    return out


def _derived(
    counts: pd.DataFrame, totals: pd.Series, table: PhenotypeTable
) -> tuple[pd.DataFrame, pd.DataFrame]:
    def events(term_list: tuple[str, ...]) -> pd.Series:
        names: list[str] = []
        for term in term_list:
            names += [n for n in table.expand(term) if n not in names]
        present = [n for n in names if n in counts.columns]
        return counts[present].sum(axis=1).astype(float)

    values = {}
    rows = []
    nan_notes: list[str] = []
    for feat in table.derived:
        if feat.kind == "sum":
            num = events(feat.terms)
            den = events(feat.of) if feat.of else totals.astype(float)
            value = num / den.where(den > 0) * 100.0
            unit = f"% of {' + '.join(feat.of)}" if feat.of else "% of CD45+ events"
        else:
            num, den = events(feat.terms[:1]), events(feat.terms[1:])
            value = num / den.where(den > 0)
            unit = "ratio of events"
        empty = value.index[value.isna()]
        if len(empty):
            nan_notes.append(f"{feat.name} ({', '.join(map(str, empty[:10]))})")
        values[feat.name] = value
        rows.append(
            (
                feat.name,
                feat.kind,
                "; ".join(feat.terms),
                "; ".join(feat.of),
                unit,
                feat.description,
            )
        )
    if nan_notes:
        warnings.warn(
            "derived features set to NaN where their denominator has no events: "
            + "; ".join(nan_notes),
            ItmeStatisticsWarning,
            stacklevel=3,
        )
    defs = pd.DataFrame(rows, columns=["feature", "kind", "terms", "of", "unit", "description"])
    return pd.DataFrame(values, index=counts.index), defs


def abundance(
    adata: AnnData,
    *,
    groupby: str = "subset",
    sample_key: str = "sample_id",
    phenotypes: str | Path | PhenotypeTable | None = None,
) -> AnnData:
    """Samples × subsets table: event counts and % of CD45+ events, plus derived features.

    Every event of a sample counts in its denominator, whatever its label (non-lymphoid
    groups and ``"unassigned"`` included), so ``X`` rows sum to 100. When ``obs["itme_qc"]``
    exists only ``kept`` events count; the others are excluded with a warning. Derived
    features (total T cells, CD4:CD8 ratio, naive/memory compartments, ...) come from the
    ``derived`` section of the phenotype table.

    Parameters
    ----------
    adata
        Events with labels in ``obs[groupby]`` and samples in ``obs[sample_key]``.
    groupby
        ``obs`` column of the labels (``"subset"`` after ``tl.annotate``; ``"metacluster"``
        works too, without derived features).
    sample_key
        ``obs`` column of the sample of each event.
    phenotypes
        Phenotype table for the derived features; default the table stored by
        ``tl.annotate`` in ``uns[groupby]["phenotypes"]`` (none: no derived features).

    Returns
    -------
    AnnData
        New AnnData, samples × labels (one per name of ``uns[groupby]["names"]``, written by
        ``tl.annotate``: every subset of the table in its order, 0 % where it has no events;
        without it one per category of ``obs[groupby]``): ``X`` (float64 % of the sample's events),
        ``layers["counts"]`` (int64 events), ``obs_names`` = sample ids, ``obs`` = the
        sample-sheet columns (constant within each sample) and ``n_events``,
        ``var["lineage"]`` (from the table; ``""`` when unknown), ``obsm["derived"]``
        (DataFrame of the derived features), ``uns["abundance"]``: ``groupby``,
        ``sample_key``, ``derived`` (definitions: ``feature, kind, terms, of, unit,
        description``), ``excluded_samples``, ``excluded_events``.
    """
    if groupby not in adata.obs:
        raise ItmeStateError(
            f'obs["{groupby}"] does not exist: run itme.tl.annotate (or tl.flowsom) first.'
        )
    if sample_key not in adata.obs:
        raise ItmeParameterError(
            "sample_key", f"a column of obs {list(adata.obs.columns)}", sample_key
        )
    obs = adata.obs
    keep = np.ones(adata.n_obs, dtype=bool)
    excluded_events = 0
    if "itme_qc" in obs:
        keep = (obs["itme_qc"] == "kept").to_numpy()
        excluded_events = int((~keep).sum())
        if excluded_events:
            warnings.warn(
                f'abundance: {excluded_events} events not kept by pp.clean (obs["itme_qc"] != '
                '"kept") are excluded from counts and denominators.',
                ItmeExclusionWarning,
                stacklevel=2,
            )
    labels = _labels(adata, groupby)
    samples = pd.Categorical(obs[sample_key])
    if (samples.codes[keep] < 0).any():
        raise ItmeStateError(f'obs["{sample_key}"] has missing values; every event needs a sample.')
    if (labels.codes[keep] < 0).any():
        raise ItmeStateError(f'obs["{groupby}"] has missing values; label every event first.')
    n_labels = len(labels.categories)
    counts = cross_counts(samples.codes, len(samples.categories), labels.codes, n_labels, mask=keep)
    sample_names = pd.Index([str(s) for s in samples.categories], name=None)
    counts_df = pd.DataFrame(
        counts, index=sample_names, columns=[str(c) for c in labels.categories]
    )
    totals = counts_df.sum(axis=1)
    empty = totals.index[totals == 0]
    if len(empty):
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"abundance: {len(empty)} sample(s) without events are excluded", empty
            ),
            stacklevel=2,
        )
        counts_df, totals = counts_df.loc[totals > 0], totals[totals > 0]

    table = _table(adata, groupby, phenotypes)
    sheet = _sample_sheet(obs, keep, sample_key, groupby, counts_df.index)
    sheet["n_events"] = totals.to_numpy().astype(np.int64)
    pct = counts_df.to_numpy(float) / totals.to_numpy(float)[:, None] * 100.0
    out = AnnData(X=pct, obs=sheet, var=pd.DataFrame(index=counts_df.columns.copy()))
    out.layers["counts"] = counts_df.to_numpy()
    out.var["lineage"] = [table.lineage_of(c) if table is not None else "" for c in out.var_names]
    if table is not None and table.derived:
        derived, defs = _derived(counts_df, totals, table)
    else:
        derived = pd.DataFrame(index=counts_df.index)
        defs = pd.DataFrame(columns=["feature", "kind", "terms", "of", "unit", "description"])
    derived.index = out.obs_names
    out.obsm["derived"] = derived
    out.uns["abundance"] = {
        "groupby": groupby,
        "sample_key": sample_key,
        "derived": defs,
        "excluded_samples": np.array([str(s) for s in empty], dtype=object),
        "excluded_events": excluded_events,
    }
    logger.info("abundance: %d samples x %d %s", out.n_obs, out.n_vars, groupby)
    return out
