"""FlowSOM clustering of a cells AnnData: the wrapper around :class:`FlowSOMModel`.

The estimator, and every use of the ``flowsom`` package, is in :mod:`itme.tl._flowsom_model`;
this module chooses the markers and training events from the AnnData, fits, and writes the
labels and the fitted model where ``docs/data-model.md`` says.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import check_markers, codes_dtype, matrix, type_markers
from itme._dask import lazy_matrix, take_rows
from itme._random import RngLike
from itme.core.cluster.select import group_counts
from itme.errors import ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.tl._flowsom_model import FlowSOMModel, flowsom_version

__all__ = ["FlowSOMModel", "flowsom"]

logger = logging.getLogger(__name__)


def _obs_key(key_added: str, name: str) -> str:
    return name if key_added == "flowsom" else f"{key_added}_{name}"


def _doublet_floor(adata: AnnData) -> float:
    """Median doublet rate (% of events) over samples, from ``uns["qc"]["accounting"]``."""
    acc = adata.uns.get("qc", {}).get("accounting")
    if not isinstance(acc, pd.DataFrame) or not {"doublet", "events_in"} <= set(acc.columns):
        raise ItmeStateError(
            'merge_floor="doublet_rate" needs uns["qc"]["accounting"] with columns doublet and '
            "events_in (written by itme.pp.clean); run pp.clean first or give merge_floor as a "
            "percentage."
        )
    rate = acc["doublet"].to_numpy(float) / np.maximum(acc["events_in"].to_numpy(float), 1) * 100
    return float(np.median(rate))


def flowsom(
    adata: AnnData,
    *,
    markers: Sequence[str] | None = None,
    layer: str | None = None,
    grid: tuple[int, int] = (10, 10),
    n_metaclusters: int = 20,
    train_cells: int | None = 200_000,
    rlen: int = 10,
    som: str = "online",
    metaclustering: str = "hierarchical",
    merge_floor: float | str | None = None,
    sample_key: str = "sample_id",
    rng: RngLike = None,
    key_added: str = "flowsom",
    copy: bool = False,
) -> AnnData | None:
    """Cluster events with FlowSOM: SOM nodes, then metaclusters of the nodes.

    The SOM is trained on a random subsample of ``train_cells`` events with flowsom's
    online SOM (drawn by event index, so a lazily opened store, see
    :func:`itme.io.open_store`, trains on the same events and every event is then mapped
    block by block on the dask cluster), every event is mapped to its nearest node, the node codes are metaclustered
    (as ``flowsom.FlowSOM`` does, or by R's consensus clustering) and, optionally, metaclusters
    whose median size over samples is below ``merge_floor`` are merged into their nearest
    neighbour (the paper's over-clustering control). When ``obs["itme_qc"]`` exists, only
    ``kept`` events train the SOM and count in the sizes; every event gets labels.
    ``FlowSOMModel.from_uns(adata.uns[key_added])`` rebuilds the fitted model, whose
    ``predict`` maps new files onto the same nodes and metaclusters.

    Parameters
    ----------
    adata
        Events × channels, arcsinh-transformed (``itme.pp.arcsinh``).
    markers
        Markers to cluster on; default the ``type`` markers of ``var["marker_class"]``.
    layer
        Layer to cluster; ``None`` uses ``X``.
    grid
        SOM grid ``(xdim, ydim)``.
    n_metaclusters
        Metaclusters before merging.
    train_cells
        Events the SOM is trained on; ``None`` trains on all events.
    rlen
        Passes over the training events.
    som
        ``"online"`` (flowsom's SOMEstimator, the R algorithm) or ``"batch"``.
    metaclustering
        ``"hierarchical"`` (default; flowsom's ConsensusCluster as ``flowsom.FlowSOM`` runs
        it) or ``"consensus"`` (R's ConsensusClusterPlus resampling).
    merge_floor
        Smallest allowed median metacluster size in % of a sample's events; ``"doublet_rate"``
        takes the median doublet rate of ``uns["qc"]["accounting"]`` (as the paper did);
        ``None`` merges nothing.
    sample_key
        ``obs`` column of the sample of each event (for the median sizes).
    rng
        Seed or generator; the integer seed given to flowsom is stored as ``seed``.
    key_added
        ``uns`` key of the result. With the default ``"flowsom"`` labels go to
        ``obs["som_node"]`` and ``obs["metacluster"]``; otherwise to
        ``obs["<key_added>_som_node"]`` and ``obs["<key_added>_metacluster"]``.
    copy
        Return a modified copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Writes ``obs["som_node"]`` (categorical
        node ``"0"``…), ``obs["metacluster"]`` (categorical ``"1"``…, after merging; the
        categories are the metaclusters that hold events, numbered as ``node_metacluster``)
        and ``uns[key_added]``: ``codes``, ``node_sizes``, ``node_metacluster`` (1-based,
        after merging), ``node_metacluster_unmerged``, ``markers``, ``grid``,
        ``n_metaclusters`` (requested), ``n_metaclusters_final``, ``empty_metaclusters``
        (1-based ids of the metaclusters without events, not among the categories),
        ``train_cells`` (used), ``rlen``, ``som``,
        ``metaclustering``, ``merge_floor`` (when set), ``merges`` (DataFrame), ``seed``,
        ``flowsom_version``.
    """
    t_start = time.perf_counter()
    adata = adata.copy() if copy else adata
    marker_list = type_markers(adata) if markers is None else check_markers(adata, markers)
    X = lazy_matrix(adata, layer)  # a dask array stays lazy: mapped blockwise
    X = matrix(adata, layer) if X is None else X
    cols = adata.var_names.get_indexer(marker_list)
    if layer is None and "arcsinh" not in adata.uns:
        probe = take_rows(X, np.arange(min(X.shape[0], 10_000)), cols)
        if probe.size and np.nanmax(probe) > 100:
            warnings.warn(
                "X does not look arcsinh-transformed (values above 100 and no uns['arcsinh']); "
                "FlowSOM on raw ion counts is dominated by the brightest markers. Run "
                "itme.pp.arcsinh first.",
                ItmeInputWarning,
                stacklevel=2,
            )
    groups = None
    if sample_key in adata.obs:
        groups = pd.Categorical(adata.obs[sample_key]).codes
    elif merge_floor is not None:
        raise ItmeParameterError(
            "sample_key", f"a column of obs {list(adata.obs.columns)}", sample_key
        )
    train_mask = None
    if "itme_qc" in adata.obs:
        train_mask = (adata.obs["itme_qc"] == "kept").to_numpy()
        logger.info(
            "flowsom: %d of %d events are kept by pp.clean", train_mask.sum(), train_mask.size
        )
    floor = _doublet_floor(adata) if merge_floor == "doublet_rate" else merge_floor
    if isinstance(floor, str):
        raise ItmeParameterError("merge_floor", 'a percentage, "doublet_rate" or None', merge_floor)

    model = FlowSOMModel(
        grid=grid,
        n_metaclusters=n_metaclusters,
        train_cells=train_cells,
        rlen=rlen,
        som=som,
        metaclustering=metaclustering,
        merge_floor=floor,
        rng=rng,
    ).fit(X, columns=cols, groups=groups, train_mask=train_mask)

    n_nodes = model.codes_.shape[0]
    node_codes = model.nodes_.astype(codes_dtype(n_nodes), copy=False)
    adata.obs[_obs_key(key_added, "som_node")] = pd.Categorical.from_codes(
        node_codes, categories=[str(i) for i in range(n_nodes)]
    )
    # the categories are the metaclusters that hold events (scanpy's plots and
    # sc.get.aggregate then show no empty group); the numbering stays that of
    # node_metacluster, and the empty ones (their nodes received no event) are listed in uns.
    # Looked up per node, then per event (1 byte an event; no sort of the events' labels)
    meta = model.node_metacluster_ - 1
    held = np.zeros(model.n_metaclusters_, dtype=bool)
    held[meta[group_counts(node_codes, n_nodes) > 0]] = True
    code_of_meta = np.cumsum(held) - 1  # category position of each metacluster that holds events
    code_of_node = code_of_meta[meta].astype(codes_dtype(int(held.sum())))
    adata.obs[_obs_key(key_added, "metacluster")] = pd.Categorical.from_codes(
        code_of_node[node_codes], categories=[str(i + 1) for i in np.flatnonzero(held)]
    )
    result: dict[str, Any] = {
        "codes": model.codes_.astype(np.float32),
        "node_sizes": model.node_sizes_,
        "node_metacluster": model.node_metacluster_,
        "node_metacluster_unmerged": model.node_metacluster_unmerged_,
        "markers": np.array(marker_list, dtype=object),
        "grid": np.array(tuple(grid), dtype=np.int64),
        "n_metaclusters": int(n_metaclusters),
        "n_metaclusters_final": int(model.n_metaclusters_),
        "empty_metaclusters": np.flatnonzero(~held).astype(np.int64) + 1,
        "train_cells": int(model.train_cells_),
        "rlen": int(rlen),
        "som": som,
        "metaclustering": metaclustering,
        "merges": model.merges_.reset_index(drop=True),
        "seed": int(model.seed_),
        "flowsom_version": flowsom_version(),
    }
    if floor is not None:
        result["merge_floor"] = float(floor)
    adata.uns[key_added] = result
    logger.info(
        "flowsom: %d events, %d nodes, %d metaclusters (%d with events) in %.1f s",
        adata.n_obs,
        n_nodes,
        model.n_metaclusters_,
        int(held.sum()),
        time.perf_counter() - t_start,
    )
    return adata if copy else None
