"""Batch correction without control samples: cyCombine-style (SOM, then ComBat per cluster)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import given_or_class
from itme._chain import expand, lazy_batch, runs
from itme._dask import is_lazy, per_sample, take_rows
from itme._random import RngLike, as_generator, draw_seed
from itme.core.batch.align import (
    affine_fit,
    block_moments,
    fit_sizes,
    landmark_maps,
    match_moments,
)
from itme.core.batch.passes import (
    aligned_weights,
    combine_moments,
    correct_block,
    part_moments,
    pick_fit_rows,
)
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError
from itme.pp._clean_inputs import sample_rows
from itme.pp._combat import combat, scanpy_version

__all__ = ["correct_batch"]

logger = logging.getLogger(__name__)

METHODS = ("cycombine",)
SOM_INPUTS = ("landmarks", "scale")
#: events per batch the marker peaks of ``som_input="landmarks"`` are estimated on
LANDMARK_CELLS = 100_000
#: the first rows, whose mean the group sums are centred on
CHUNK = 65_536
#: a batch keeps at least ``fit_cells // FLOOR_DIVISOR`` events in a node's ComBat fit
FLOOR_DIVISOR = 10
#: smallest standard deviation of a marker in a node and batch for ComBat to align it
VAR_TOL = 1e-6
#: largest departure of scanpy's ComBat output from a line per batch and marker
AFFINE_TOL = 1e-3


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


def _train_som(
    X: np.ndarray,
    cols: np.ndarray,
    codes: np.ndarray,
    maps: tuple[np.ndarray, np.ndarray],
    grid: tuple[int, int],
    train_cells: int | None,
    seed: int,
) -> np.ndarray:
    """Codes of flowsom's online SOM trained on the batch-aligned values of some events.

    The training events are drawn as ``tl.flowsom`` draws them (same seed, same events) and
    only they are aligned in memory.
    """
    from itme.tl._flowsom_model import FlowSOMModel

    n = X.shape[0]
    if train_cells is not None and n > train_cells:
        train = np.sort(as_generator(seed).choice(n, size=int(train_cells), replace=False))
    else:
        train = np.arange(n)
    slope, intercept = maps
    b = codes[train]
    x = np.asarray(take_rows(X, train, cols), dtype=np.float64) * slope[b] + intercept[b]
    x = x.astype(np.float32)
    model = FlowSOMModel(
        grid=grid, n_metaclusters=min(10, grid[0] * grid[1] - 1), train_cells=None, rng=seed
    ).fit(x)
    return model.codes_


def _scale_maps(
    X: np.ndarray, cols: np.ndarray, rows_of: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The per-batch standardisation of cyCombine as a linear map: ``(x - mean) / sd``."""
    slope = np.ones((len(rows_of), cols.size))
    intercept = np.zeros((len(rows_of), cols.size))
    for b, rows in enumerate(rows_of):
        if rows.size:
            mean, var, _, _ = block_moments(X, rows, cols)
            sd = np.sqrt(var)
            sd[sd == 0] = 1.0
            slope[b], intercept[b] = 1.0 / sd, -mean / sd
    return slope, intercept


def _landmark_maps(
    X: np.ndarray, cols: np.ndarray, rows_of: list[np.ndarray], gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Peak alignment of each batch, its peaks estimated on ``LANDMARK_CELLS`` events at most."""
    picked, labels = [], []
    for b, rows in enumerate(rows_of):
        if rows.size > LANDMARK_CELLS:
            rows = np.sort(gen.choice(rows, size=LANDMARK_CELLS, replace=False))
        picked.append(np.asarray(take_rows(X, rows, cols), dtype=np.float32))
        labels.append(np.full(rows.size, b, dtype=np.int64))
    slope, intercept, _ = landmark_maps(np.vstack(picked), np.concatenate(labels), len(rows_of))
    return slope, intercept


def _part_pass(
    block: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    n_batches: int,
    center: np.ndarray,
    *,
    batch_runs: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`part_moments` of one part's rows (all channels), its batches run-length coded."""
    batch = expand(*batch_runs, 0, block.shape[0])
    return part_moments(block[:, cols], batch, weights, offsets, n_batches, center)


def _part_change(
    block: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    offsets: np.ndarray,
    line: dict[str, np.ndarray],
    *,
    batch_runs: tuple[np.ndarray, np.ndarray],
    copy: bool = False,
) -> np.ndarray:
    """:func:`correct_block` of one part's rows (in place unless ``copy``); change per batch."""
    if copy:  # a lazy block may be a view of a chunk other tasks read
        block = np.array(block, dtype=np.float32)
    batch = expand(*batch_runs, 0, block.shape[0])
    return correct_block(block, cols, batch, weights, offsets, **line)


def _passes(X: Any, parts: list, codes: np.ndarray, cols: np.ndarray, *args: Any) -> list[Any]:
    """:func:`_part_pass` of every part: in turn in memory, one task per part when lazy."""
    extra = [{"batch_runs": runs(codes[rows])} for rows in parts]
    if is_lazy(X):
        return per_sample(_part_pass, X, parts, cols, *args, per_call=extra)
    return [_part_pass(X[r], cols, *args, **e) for r, e in zip(parts, extra, strict=True)]


def _apply(X: Any, parts: list, codes: np.ndarray, cols: np.ndarray, *args: Any) -> list[Any]:
    """:func:`_part_change` of every part: in place in memory; on lazy data, the changes only."""
    extra = [{"batch_runs": runs(codes[rows])} for rows in parts]
    if is_lazy(X):
        return per_sample(_part_change, X, parts, cols, *args, per_call=extra, copy=True)
    out = []
    for rows, e in zip(parts, extra, strict=True):
        block = X[rows]  # a view for a slice (corrected in place), else a copy written back
        out.append(_part_change(block, cols, *args, **e))
        if not isinstance(rows, slice):
            X[rows] = block
    return out


def correct_batch(
    adata: AnnData,
    *,
    batch_key: str = "batch",
    sample_key: str = "sample_id",
    method: str = "cycombine",
    markers: Sequence[str] | None = None,
    grid: tuple[int, int] = (8, 8),
    som_input: str = "landmarks",
    min_cells: int = 10,
    train_cells: int | None = 200_000,
    fit_cells: int | None = 6_000,
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

    Speed (10 M events): the SOM is trained on ``train_cells`` events and every event is
    mapped in chunks with its batch's alignment folded into the codes; ComBat is fitted per
    node on at most about ``fit_cells`` events (each batch's share, at least a tenth of
    ``fit_cells`` per batch), first shifted and scaled to the exact mean and standard
    deviation of all the node's events of their batch; without covariates ComBat maps each
    batch's marker linearly, so that line (read off scanpy's output) is applied to every
    event. Against the fit on all events this changes corrected values by 0.0006 on average
    (99.9 % within 0.032) on 1 M simulated events (docs/batch.md).

    On lazy data (``X`` a dask array: a cohort store, :func:`itme.io.open_store`) the same
    kernels run one task per sample and the subsamples are gathered by event index, so the
    values are the in-memory ones, bit for bit; the corrected matrix is not written but
    recomputed block by block from the parameters stored in ``uns``.

    Run it on the arcsinh-transformed ``X`` after cleaning (``pp.apply_qc``), before
    ``tl.flowsom``. Events of a batch with fewer than ``min_cells`` events in a node, and
    nodes seen in one batch only, are left unchanged (counted in ``uns``).

    Parameters
    ----------
    adata
        Events × channels, arcsinh scale.
    batch_key
        ``obs`` column of each event's batch (from the sample sheet).
    sample_key
        ``obs`` column of each event's sample: the parts the passes over the events are
        split into (one task per sample on lazy data; all events as one part when absent).
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
        Events the SOM is trained on (``None``: all). 50,000 costs less but split subsets
        more on the benchmark (worst-subset batch split 0.030 against 0.010 at 200,000;
        docs/batch.md). The marker peaks are estimated on at most 100,000 events per batch.
    fit_cells
        Events per SOM node ComBat is fitted on (``None``: all; the result then is scanpy's
        ComBat on every event of the node). Must be at least ``2 * min_cells``.
    rng
        Seed or generator of the SOM and the subsamples; the integer seed used is stored.
    copy
        Return a corrected copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Modifies ``X`` on the corrected markers and
        writes ``uns["batch_correction"]``: ``method``, ``batch_key``, ``batches``,
        ``markers``, ``grid``, ``som_input``, ``min_cells``, ``train_cells``, ``fit_cells``
        (-1: all), ``seed``, ``scanpy_version``,
        ``nodes`` (DataFrame: node, n_events, n_batches, aligned_batches),
        ``events_left_unchanged`` (int), ``shift`` (DataFrame: batch × marker mean change of
        the arcsinh value), and the fitted per-event map: ``align_slope``,
        ``align_intercept`` (batch × marker peak alignment), ``codes`` (node × marker SOM
        codes), ``slope``, ``intercept`` (node·batch × marker lines), ``lo``, ``hi`` (node ×
        marker cap). On lazy data (a cohort store) ``X`` becomes the lazy corrected matrix
        (:func:`itme._chain.lazy_batch`), recomputed from these when the store is opened.
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
    markers = given_or_class(adata, markers, ("type", "state"))
    if fit_cells is not None and int(fit_cells) < 2 * int(min_cells):
        raise ItmeParameterError(
            "fit_cells", f"None or an integer >= {2 * int(min_cells)}", fit_cells
        )
    if som_input == "scale" and is_lazy(adata.X):
        raise ItmeParameterError(
            "som_input", "'landmarks' on lazy data (a cohort store)", som_input,
            fix="som_input='scale' reads every event of a batch at once: run it in memory",
        )  # fmt: skip
    adata = adata.copy() if copy else adata
    X = adata.X
    if not is_lazy(X):
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = X.astype(np.float32)
    cols = np.asarray([adata.var_names.get_loc(m) for m in markers], dtype=np.intp)
    codes = batches.codes.astype(np.int64)
    n_batches = len(batches.categories)
    seed = draw_seed(rng)
    # own streams for the peaks' and the fits' subsamples; the SOM draws as tl.flowsom does
    gen_peaks, gen_fit = (np.random.default_rng([seed, k]) for k in (1, 2))
    rows_of = [np.flatnonzero(codes == b) for b in range(n_batches)]
    if som_input == "landmarks":
        maps = _landmark_maps(X, cols, rows_of, gen_peaks)
    else:
        maps = _scale_maps(X, cols, rows_of)
    del rows_of
    t_som = time.perf_counter()
    som_codes = _train_som(X, cols, codes, maps, tuple(grid), train_cells, seed)
    t_som = time.perf_counter() - t_som
    weights, offsets = aligned_weights(*maps, som_codes)
    n = X.shape[0]
    if sample_key in adata.obs:
        parts = [rows for _, rows in sample_rows(adata, sample_key)]
    else:
        parts = [slice(0, n)]
    # sums centred on the first rows' mean, accumulated per part (sample) in row order and
    # added in part order: the same bits in memory and on any layout of a lazy store
    center = np.asarray(take_rows(X, np.arange(min(n, CHUNK)), cols), dtype=np.float64)
    center = center.mean(axis=0) if n else np.zeros(cols.size)
    passes = _passes(X, parts, codes, cols, weights, offsets, n_batches, center)
    nodes = np.empty(n, dtype=np.int32)
    for rows, (part_nodes, _) in zip(parts, passes, strict=True):
        nodes[rows] = part_nodes
    mom = combine_moments([p for _, p in passes], n_batches, center)
    del passes
    n_nodes = som_codes.shape[0]
    floor = max(int(min_cells), (int(fit_cells) // FLOOR_DIVISOR) if fit_cells else 0)
    # which node x batch groups ComBat aligns, and on how many of their events it is fitted
    ok = mom.counts >= int(min_cells)
    ok &= ok.sum(axis=1, keepdims=True) >= 2
    sizes = np.zeros_like(mom.counts)
    for node in np.flatnonzero(ok.any(axis=1)):
        sizes[node, ok[node]] = fit_sizes(mom.counts[node, ok[node]], fit_cells, floor)
    group = nodes.astype(np.int64) * n_batches + codes
    del nodes
    fit_rows, fit_group = pick_fit_rows(group, sizes.ravel(), gen_fit)
    del group
    fit_x = np.asarray(take_rows(X, fit_rows, cols), dtype=np.float64)
    del fit_rows
    slope = np.ones((n_nodes * n_batches, cols.size))
    intercept = np.zeros((n_nodes * n_batches, cols.size))
    present = np.flatnonzero(mom.counts.sum(axis=1))
    rows_info = []
    for node in present:
        cnt = mom.counts[node]
        aligned = int(ok[node].sum())
        rows_info.append(
            {
                "node": int(node),
                "n_events": int(cnt.sum()),
                "n_batches": int((cnt > 0).sum()),
                "aligned_batches": aligned,
            }
        )
        if not aligned:
            continue
        todo = np.flatnonzero(ok[node])
        blocks = []
        for b in todo:
            x = fit_x[fit_group == node * n_batches + b]
            if sizes[node, b] < cnt[b]:  # a subsample: give it the group's mean and SD
                x = match_moments(x, mom.mean[node, b], np.sqrt(mom.var[node, b]))
            blocks.append(x)
        # ComBat needs a variance in every batch (and so does the fitted line)
        varies = np.all([x.std(axis=0) > VAR_TOL for x in blocks], axis=0)
        varies &= np.all(mom.var[node, todo] > VAR_TOL**2, axis=0)
        if not varies.any():
            continue
        blocks = [x[:, varies] for x in blocks]
        label = np.repeat(todo, [x.shape[0] for x in blocks])
        out = combat(np.vstack(blocks), label)
        for b, x in zip(todo, blocks, strict=True):
            a, c, residual = affine_fit(x, out[label == b])
            if residual > AFFINE_TOL:
                raise ItmeStateError(
                    f"scanpy {scanpy_version()}'s ComBat is not a linear map per batch and "
                    f"marker here (residual {residual:.2g}); correct_batch applies ComBat as "
                    "that line: install the scanpy of requirements/constraints.txt"
                )
            slope[node * n_batches + b, varies] = a
            intercept[node * n_batches + b, varies] = c
    del fit_x
    unchanged = int(mom.counts[~ok].sum())
    fitted = int(sizes.sum())
    line = {"slope": slope, "intercept": intercept, "lo": mom.lo, "hi": mom.hi}
    # the per-event step (node, line, cap): in place in memory, lazily on a store; the mean
    # change per batch is summed per part either way
    parts_change = _apply(X, parts, codes, cols, weights, offsets, line)
    change = np.zeros((n_batches, cols.size))
    for part in parts_change:
        change += part
    n_of = np.bincount(codes, minlength=n_batches).astype(np.float64)
    shift = pd.DataFrame(
        change / n_of[:, None],
        index=pd.Index(list(batches.categories), name=batch_key),
        columns=list(markers),
    )
    adata.uns["batch_correction"] = {
        "method": method,
        "batch_key": batch_key,
        "batches": [str(b) for b in batches.categories],
        "markers": list(markers),
        "grid": list(grid),
        "som_input": som_input,
        "min_cells": int(min_cells),
        "train_cells": int(train_cells) if train_cells is not None else -1,
        "fit_cells": int(fit_cells) if fit_cells is not None else -1,
        "seed": int(seed),
        "scanpy_version": scanpy_version(),
        "nodes": pd.DataFrame(rows_info),
        "events_left_unchanged": int(unchanged),
        "shift": shift.reset_index(),
        "align_slope": np.asarray(maps[0], dtype=np.float64),
        "align_intercept": np.asarray(maps[1], dtype=np.float64),
        "codes": np.asarray(som_codes, dtype=np.float64),
        **line,
    }
    adata.X = lazy_batch(adata, X) if is_lazy(X) else X
    logger.info(
        "correct_batch (%s): %d events, %d batches, %d markers, %d SOM nodes; "
        "%d events left unchanged; ComBat fitted on %d events (%.1f s, SOM %.1f s)",
        method,
        adata.n_obs,
        len(batches.categories),
        len(markers),
        len(rows_info),
        unchanged,
        fitted,
        time.perf_counter() - t0,
        t_som,
    )
    return adata if copy else None
