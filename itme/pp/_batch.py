"""Batch correction without control samples: cyCombine-style (SOM, then ComBat per cluster)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import check_markers, markers_of_class
from itme._random import RngLike, draw_seed
from itme.core.batch.align import align_landmarks, cap_to_range, scale_by_batch
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError
from itme.pp._combat import combat, scanpy_version

__all__ = ["correct_batch"]

logger = logging.getLogger(__name__)

METHODS = ("cycombine",)
SOM_INPUTS = ("landmarks", "scale")


def _batches(adata: AnnData, batch_key: str) -> pd.Categorical:
    if batch_key not in adata.obs:
        raise ItmeInputError(
            where=f"adata.obs[{batch_key!r}]",
            expected="a column with the acquisition batch (run) of each event",
            found=f"obs columns {list(adata.obs.columns)}",
            fix="add a batch column to the sample sheet or pass batch_key=",
        )
    values = adata.obs[batch_key]
    if values.isna().any():
        raise ItmeInputError(
            where=f"adata.obs[{batch_key!r}]",
            expected="a batch for every event",
            found=f"{int(values.isna().sum())} events without a batch",
            fix="fill the batch column of the sample sheet",
        )
    return pd.Categorical(values.astype(str))


def _som_nodes(
    scaled: np.ndarray,
    markers: list[str],
    grid: tuple[int, int],
    train_cells: int | None,
    seed: int,
) -> np.ndarray:
    """SOM node of every event, trained on the batch-standardised values (itme.tl.flowsom)."""
    from itme.tl import flowsom

    tmp = AnnData(
        scaled,
        var=pd.DataFrame({"marker_class": "type"}, index=pd.Index(markers)),
    )
    tmp.obs["sample_id"] = pd.Categorical(["all"] * tmp.n_obs)
    flowsom(
        tmp,
        markers=markers,
        grid=grid,
        n_metaclusters=min(10, grid[0] * grid[1] - 1),
        train_cells=train_cells,
        rng=seed,
    )
    return tmp.obs["som_node"].cat.codes.to_numpy().astype(np.int64)


def correct_batch(
    adata: AnnData,
    *,
    batch_key: str = "batch",
    method: str = "cycombine",
    markers: Sequence[str] | None = None,
    grid: tuple[int, int] = (8, 8),
    som_input: str = "landmarks",
    min_cells: int = 10,
    train_cells: int | None = 200_000,
    rng: RngLike = None,
    copy: bool = False,
) -> AnnData | None:
    """Remove run-to-run (batch) differences without control samples, as cyCombine does.

    cyCombine (Pedersen et al., *Nat Commun* 2022): (1) every marker is standardised within
    each batch (``som_input="scale"``; by default itme maps each batch's negative and
    positive peak of every marker onto their mean over batches instead, which a batch's
    composition does not move, see below), (2) a coarse SOM (``grid``, 64 nodes by default) is trained on the pooled,
    standardised events, so its nodes follow cell types rather than batches, (3) within each
    node, every marker of every batch is aligned by ComBat (scanpy's ``pp.combat``:
    location and scale per batch, empirical-Bayes shrunk) on the arcsinh values, and (4) the
    corrected values are capped to the node's range before correction. Because the alignment
    happens within nodes of one cell type, a batch holding more of one subset keeps it:
    composition differences (the biology of iTME clusters) are not aligned away, provided the
    nodes are the same cell types in every batch. cyCombine's per-batch standardisation
    breaks that when batches differ in composition (a batch holding mostly one cell type has
    other means and deviations, so its cells land in nodes of their own and are left
    uncorrected); the peaks (``core.batch.align.align_landmarks``) do not. Marker
    expression differences within a cell type that are confounded with batch would be.

    Run it on the arcsinh-transformed ``X`` after cleaning (``pp.apply_qc``), before
    ``tl.flowsom``. Events of a batch with fewer than ``min_cells`` events in a node, and
    nodes seen in one batch only, are left unchanged (counted in ``uns``).

    Parameters
    ----------
    adata
        Events × channels, arcsinh scale.
    batch_key
        ``obs`` column of each event's batch (from the sample sheet).
    method
        ``"cycombine"`` (the only method so far).
    markers
        Markers to correct (and cluster on); default the ``type`` and ``state`` markers.
    grid
        SOM grid of the coarse clustering (cyCombine's default 8 × 8).
    som_input
        What the SOM is trained on: ``"landmarks"`` (each batch's marker peaks aligned,
        robust to composition; default) or ``"scale"`` (cyCombine's per-batch z-scores).
    min_cells
        Fewest events of a batch in a node for the node to be aligned in that batch.
    train_cells
        Events the SOM is trained on (``None``: all). 50,000 costs less (1 M events: 47 s
        against 17 s for ``tl.flowsom``) but split subsets more on the benchmark (worst-subset
        batch split 0.030 against 0.010 at 200,000; docs/batch.md).
    rng
        Seed or generator of the SOM; the integer seed used is stored.
    copy
        Return a corrected copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Modifies ``X`` on the corrected markers and
        writes ``uns["batch_correction"]``: ``method``, ``batch_key``, ``batches``,
        ``markers``, ``grid``, ``som_input``, ``min_cells``, ``train_cells``, ``seed``, ``scanpy_version``,
        ``nodes`` (DataFrame: node, n_events, n_batches, aligned_batches),
        ``events_left_unchanged`` (int), ``shift`` (DataFrame: batch × marker mean change of
        the arcsinh value).
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ItmeParameterError("method", f"one of {METHODS}", method)
    if som_input not in SOM_INPUTS:
        raise ItmeParameterError("som_input", f"one of {SOM_INPUTS}", som_input)
    if "arcsinh" not in adata.uns:
        raise ItmeStateError("correct_batch works on arcsinh values: run itme.pp.arcsinh first")
    if "batch_correction" in adata.uns:
        raise ItmeStateError(
            "uns['batch_correction'] exists: these events were corrected already; "
            "start again from uncorrected events"
        )
    if int(min_cells) < 2:
        raise ItmeParameterError(
            "min_cells", "an integer >= 2 (ComBat needs a variance)", min_cells
        )
    batches = _batches(adata, batch_key)
    if len(batches.categories) < 2:
        raise ItmeInputError(
            where=f"adata.obs[{batch_key!r}]",
            expected="at least two batches",
            found=f"{len(batches.categories)} batch ({', '.join(batches.categories)})",
            fix="nothing to correct; skip correct_batch",
        )
    markers = (
        check_markers(adata, markers)
        if markers is not None
        else markers_of_class(adata, ("type", "state"))
    )
    adata = adata.copy() if copy else adata
    cols = [adata.var_names.get_loc(m) for m in markers]
    original = np.asarray(adata.X[:, cols], dtype=np.float32)
    codes = batches.codes.astype(np.int64)
    seed = draw_seed(rng)
    if som_input == "landmarks":
        som_values = align_landmarks(original, codes)[0]
    else:
        som_values = scale_by_batch(original, codes)
    nodes = _som_nodes(som_values, list(markers), tuple(grid), train_cells, seed)
    del som_values
    corrected = original.copy()
    rows_info = []
    unchanged = 0
    for node in np.unique(nodes):
        rows = np.flatnonzero(nodes == node)
        counts = np.bincount(codes[rows], minlength=len(batches.categories))
        ok = counts >= int(min_cells)
        fit = rows[ok[codes[rows]]]
        unchanged += int(rows.size - fit.size)
        aligned = int(ok.sum())
        if aligned >= 2:
            block = original[fit]
            varies = np.ones(len(cols), dtype=bool)
            for b in np.flatnonzero(ok):
                varies &= block[codes[fit] == b].std(axis=0) > 0
            if varies.any():
                out = combat(block[:, varies], codes[fit])
                sub = corrected[fit]
                sub[:, varies] = out
                corrected[fit] = sub
        else:
            unchanged += int(fit.size)
            aligned = 0
        rows_info.append(
            {
                "node": int(node),
                "n_events": int(rows.size),
                "n_batches": int((counts > 0).sum()),
                "aligned_batches": aligned,
            }
        )
    cap_to_range(corrected, original, nodes)
    delta = corrected - original
    shift = pd.DataFrame(
        [delta[codes == b].mean(axis=0) for b in range(len(batches.categories))],
        index=pd.Index(list(batches.categories), name=batch_key),
        columns=list(markers),
    )
    X = np.asarray(adata.X)
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    X[:, cols] = corrected
    adata.X = X
    adata.uns["batch_correction"] = {
        "method": method,
        "batch_key": batch_key,
        "batches": [str(b) for b in batches.categories],
        "markers": list(markers),
        "grid": list(grid),
        "som_input": som_input,
        "min_cells": int(min_cells),
        "train_cells": int(train_cells) if train_cells is not None else -1,
        "seed": int(seed),
        "scanpy_version": scanpy_version(),
        "nodes": pd.DataFrame(rows_info),
        "events_left_unchanged": int(unchanged),
        "shift": shift.reset_index(),
    }
    logger.info(
        "correct_batch (%s): %d events, %d batches, %d markers, %d SOM nodes; "
        "%d events left unchanged (%.1f s)",
        method,
        adata.n_obs,
        len(batches.categories),
        len(markers),
        len(rows_info),
        unchanged,
        time.perf_counter() - t0,
    )
    return adata if copy else None
