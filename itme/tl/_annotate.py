"""Subset names for clusters from a hierarchical marker table."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import check_markers, codes_dtype, markers_of_class, matrix, obs_dtype
from itme._colors import store_colors
from itme._dask import lazy_group_medians, lazy_matrix
from itme.core.annotate.naming import UNASSIGNED, assign_clusters, auto_thresholds
from itme.core.annotate.phenotypes import PhenotypeTable
from itme.core.cluster.codebook import group_medians
from itme.core.cluster.select import group_counts
from itme.errors import ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.io import read_phenotypes

__all__ = ["annotate", "cluster_phenotypes"]

logger = logging.getLogger(__name__)

#: clusters with fewer events are not named (see ``min_events`` of :func:`annotate`)
MIN_EVENTS = 20


def _groups(adata: AnnData, groupby: str) -> pd.Categorical:
    if groupby not in adata.obs:
        raise ItmeStateError(
            f'obs["{groupby}"] does not exist: run itme.tl.flowsom first (it writes '
            'obs["metacluster"] and obs["som_node"]), or pass groupby= an existing obs column.'
        )
    # plain labels (e.g. read back from a store as strings) in natural order (1, 2, ..., 10),
    # as flowsom's categories are, not as text (1, 10, 2, ...)
    return pd.Categorical(obs_dtype(adata.obs[groupby]))


def cluster_phenotypes(
    adata: AnnData,
    *,
    groupby: str = "metacluster",
    markers: Sequence[str] | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Median of each marker in each cluster (the ``cluster_phenotypes`` table).

    Parameters
    ----------
    adata
        Events × channels (arcsinh scale).
    groupby
        ``obs`` column of the clusters (or subsets).
    markers
        Markers to summarise; default the ``type`` and ``state`` markers (all channels when
        ``var["marker_class"]`` is absent).
    layer
        Layer to summarise; ``None`` uses ``X``.

    Returns
    -------
    pandas.DataFrame
        Clusters × markers medians (index: cluster names as strings, in category order;
        NaN rows for empty clusters). Exact on a lazy (dask) matrix too, the same values:
        computed on the workers by a few histogram passes over the blocks
        (:func:`itme._dask.lazy_group_medians`).
    """
    groups = _groups(adata, groupby)
    marker_list = (
        markers_of_class(adata, ("type", "state"))
        if markers is None
        else check_markers(adata, markers)
    )
    cols = adata.var_names.get_indexer(marker_list)
    lazy = lazy_matrix(adata, layer)
    if lazy is not None:  # exact medians, histogram passes on the workers
        med = lazy_group_medians(lazy, groups.codes, len(groups.categories), cols)
    else:
        med = group_medians(
            matrix(adata, layer), groups.codes, len(groups.categories), columns=cols
        )
    return pd.DataFrame(
        med, index=pd.Index([str(c) for c in groups.categories], name=groupby), columns=marker_list
    )


def _thresholds(
    medians: pd.DataFrame,
    n_events: np.ndarray,
    table: PhenotypeTable | None,
    given: Mapping[str, float] | None,
) -> pd.DataFrame:
    filled = medians.notna().any(axis=1).to_numpy()
    thr = auto_thresholds(medians[filled], n_events[filled])
    sources = [("table", table.thresholds if table is not None else {}), ("given", given or {})]
    for method, values in sources:
        for marker, value in values.items():
            if marker in thr.index:
                thr.loc[marker] = (float(value), method)
    return thr


def annotate(
    adata: AnnData,
    *,
    phenotypes: str | Path | PhenotypeTable | None,
    groupby: str = "metacluster",
    mapping: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    min_score: float = 0.8,
    min_lineage_score: float = 1.0,
    tolerance: float = 0.25,
    min_events: int = MIN_EVENTS,
    layer: str | None = None,
    key_added: str = "subset",
    copy: bool = False,
) -> AnnData | None:
    """Name clusters as immune subsets from a hierarchical hi/lo marker table.

    Each cluster's median of every rule marker is compared with the marker's threshold
    (automatic, from the table, or given); the cluster gets the lineage whose rules all hold
    and, within it, the subset satisfying the largest fraction of its rules (at least
    ``min_score``), else the lineage's ``other`` name or ``"unassigned"``. A manual
    ``mapping`` (cluster → name) overrides the table for the clusters it lists, for users
    who curate by hand. Details in ``docs/clustering.md``.

    Parameters
    ----------
    adata
        Events × channels (arcsinh scale) with clusters in ``obs[groupby]``.
    phenotypes
        Phenotype table: a built-in name (``"lymphoid_visram2021"``), a YAML path or a
        :class:`~itme.core.annotate.phenotypes.PhenotypeTable`. ``None``: only ``mapping`` names clusters.
    groupby
        ``obs`` column of the clusters (``"metacluster"``, ``"som_node"``, ...).
    mapping
        Cluster → subset name, overriding the table for the clusters listed.
    thresholds
        Marker → threshold (arcsinh scale), overriding the table's and the automatic ones.
    min_score
        Smallest fraction of a subset's own rules a cluster must satisfy to get its name.
    min_lineage_score
        Smallest fraction of a lineage's rules a cluster must satisfy (1: all).
    tolerance
        Dim band around each threshold (arcsinh units): a median closer than this to the
        threshold satisfies both ``hi`` and ``lo``.
    min_events
        Clusters with fewer events (but at least one) are not named: they become
        ``"unassigned"`` with method ``"too small"`` (a median of a handful of events says
        little about a phenotype; FlowSOM leaves such slivers between populations). Their
        events are counted in the log and in ``clusters``. A ``mapping`` still names them.
    layer
        Layer used for the medians; ``None`` uses ``X``.
    key_added
        ``obs`` and ``uns`` key of the result.
    copy
        Return a modified copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Writes ``obs[key_added]`` (categorical
        subset name, ``"unassigned"`` when nothing fits; the categories are the names that
        have events, in the order of ``names``, so scanpy's group-wise tools work on it) and
        ``uns[key_added]``: ``clusters`` (DataFrame per cluster: ``subset, lineage, score,
        lineage_score, subset_score, margin, failed, method, n_events``; ``method`` is
        ``phenotypes``, ``manual``, ``too small`` (fewer than ``min_events``), ``empty`` (no
        event) or ``none``), ``medians`` (clusters × markers, the cluster phenotype table),
        ``thresholds`` (DataFrame ``marker, threshold, method``), ``phenotypes`` (the YAML
        text, when a table was used), ``table``, ``groupby``, ``names`` (every name a
        cluster can get, events or not: the table's subsets in its order, then names of
        ``mapping`` not in it, then ``"unassigned"``; :func:`itme.tl.abundance` reports each,
        0 % when it has no events), ``min_score``, ``min_lineage_score``, ``tolerance``,
        ``min_events``; and
        ``uns[f"{key_added}_colors"]`` (one colour per category, in category order, as
        scanpy stores them; ``"unassigned"`` grey; colours already stored for the same
        categories are kept).
    """
    t0 = time.perf_counter()
    if phenotypes is None and not mapping:
        raise ItmeParameterError(
            "phenotypes", "a phenotype table, or a non-empty mapping when None", phenotypes
        )
    if not isinstance(tolerance, int | float) or tolerance < 0:
        raise ItmeParameterError("tolerance", "a number >= 0 (arcsinh units)", tolerance)
    if (
        isinstance(min_events, bool)
        or not isinstance(min_events, int | np.integer)
        or min_events < 0
    ):
        raise ItmeParameterError(
            "min_events", "an integer >= 0 (0: name every cluster)", min_events
        )
    for name, value in (("min_score", min_score), ("min_lineage_score", min_lineage_score)):
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ItmeParameterError(name, "a fraction in [0, 1]", value)
    table = read_phenotypes(phenotypes) if phenotypes is not None else None
    adata = adata.copy() if copy else adata
    groups = _groups(adata, groupby)
    clusters = [str(c) for c in groups.categories]
    n_events = group_counts(groups.codes, len(clusters))  # in parts, no copy of the events

    markers = markers_of_class(adata, ("type", "state"))
    if table is not None:
        rule_markers = table.markers
        missing = [m for m in rule_markers if m not in adata.var_names]
        if missing:
            warnings.warn(
                f"phenotype table {table.name!r}: {len(missing)} marker(s) not measured "
                f"({', '.join(missing)}); rules on them are ignored.",
                ItmeInputWarning,
                stacklevel=2,
            )
        markers += [m for m in rule_markers if m in adata.var_names and m not in markers]
    medians = cluster_phenotypes(adata, groupby=groupby, markers=markers, layer=layer)

    result = pd.DataFrame(
        {
            "subset": UNASSIGNED,
            "lineage": "",
            "score": np.nan,
            "lineage_score": np.nan,
            "subset_score": np.nan,
            "margin": np.nan,
            "failed": "",
            "method": "none",
        },
        index=pd.Index(clusters, name=groupby),
    )
    thr = pd.DataFrame(columns=["threshold", "method"])
    if table is not None:
        used = [m for m in table.markers if m in medians.columns]
        thr = _thresholds(medians[used], n_events, table, thresholds)
        filled = medians.dropna(how="all")
        if len(filled):
            auto = assign_clusters(
                filled,
                table,
                thr["threshold"],
                min_score=float(min_score),
                min_lineage_score=float(min_lineage_score),
                tolerance=float(tolerance),
            )
            result.loc[auto.index, auto.columns] = auto
            result.loc[auto.index, "method"] = "phenotypes"
    empty = n_events == 0
    result.loc[empty, ["failed", "method"]] = ["no events", "empty"]
    small = (n_events > 0) & (n_events < min_events)
    if small.any():
        result.loc[small, ["subset", "lineage", "failed", "method"]] = [
            UNASSIGNED,
            "",
            f"fewer than {min_events} events",
            "too small",
        ]
        logger.info(
            "annotate: %d cluster(s) of fewer than %d events (%d events in all) left unassigned",
            int(small.sum()),
            min_events,
            int(n_events[small].sum()),
        )
    for cluster, name in (mapping or {}).items():
        if str(cluster) not in result.index:
            raise ItmeParameterError("mapping", f"cluster names of obs[{groupby!r}]", cluster)
        lineage = table.lineage_of(str(name)) if table is not None else ""
        result.loc[str(cluster), ["subset", "lineage", "method"]] = [str(name), lineage, "manual"]
        result.loc[str(cluster), ["score", "lineage_score", "subset_score", "margin"]] = np.nan
        result.loc[str(cluster), "failed"] = ""
    result["n_events"] = n_events.astype(np.int64)
    for col in ("score", "lineage_score", "subset_score", "margin"):
        result[col] = result[col].astype(float)

    # every name a cluster can get, in the table's order; obs keeps those with events (scanpy's
    # group-wise tools need every category to have events), tl.abundance reports them all
    names = list(table.subset_names) if table is not None else []
    names += [n for n in result["subset"] if n not in names and n != UNASSIGNED]
    names.append(UNASSIGNED)
    # the names with events, from the clusters' sizes; then one lookup per event (1 byte an
    # event; no sort of the events' labels, ~27 bytes an event, 2 GB at 10^8 events)
    per_cluster = result["subset"].to_numpy()
    of_cluster = pd.Categorical(per_cluster, categories=names).codes
    unassigned = names.index(UNASSIGNED)
    held = np.zeros(len(names), dtype=bool)
    held[of_cluster[n_events > 0]] = True
    held[unassigned] |= bool((groups.codes < 0).any())  # events of no cluster
    position = np.cumsum(held) - 1  # of each held name among the categories
    lookup = position[np.append(of_cluster, unassigned)]  # code -1 (no cluster): the last
    adata.obs[key_added] = pd.Categorical.from_codes(
        lookup.astype(codes_dtype(int(held.sum())))[groups.codes],
        categories=[n for n, h in zip(names, held, strict=True) if h],
    )
    store_colors(adata, key_added, unassigned=UNASSIGNED)

    info: dict[str, Any] = {
        "clusters": result,
        "medians": medians,
        "thresholds": thr.reset_index().rename(columns={"index": "marker"}),
        "groupby": groupby,
        "names": names,
        "min_score": float(min_score),
        "min_lineage_score": float(min_lineage_score),
        "tolerance": float(tolerance),
        "min_events": int(min_events),
    }
    if table is not None:
        info["phenotypes"] = table.text
        info["table"] = table.name
    adata.uns[key_added] = info
    n_un = int(n_events[per_cluster == UNASSIGNED].sum())
    logger.info(
        "annotate: %d clusters -> %d names; %d of %d events unassigned (%.1f s)",
        len(clusters),
        len(set(per_cluster) - {UNASSIGNED}),
        n_un,
        adata.n_obs,
        time.perf_counter() - t0,
    )
    return adata if copy else None
