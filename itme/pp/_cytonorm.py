"""Batch normalisation with CytoNorm (the cytonormpy adapter)."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._random import RngLike, draw_seed
from itme.errors import (
    ItmeDependencyError,
    ItmeInputError,
    ItmeParameterError,
    ItmeStateError,
    ItmeStatisticsWarning,
)

__all__ = ["cytonorm"]

logger = logging.getLogger(__name__)


def cytonorm(
    adata: AnnData,
    *,
    batch_key: str = "batch",
    reference_key: str = "reference",
    reference_value: str = "ref",
    sample_key: str = "sample_id",
    channels: Sequence[str] | None = None,
    cluster_channels: Sequence[str] | None = None,
    grid: tuple[int, int] = (5, 5),
    n_metaclusters: int = 5,
    n_quantiles: int = 99,
    min_cells: int = 50,
    train_cells: int | None = 6000,
    goal: Literal["batch_mean", "batch_median"] = "batch_mean",
    rng: RngLike = None,
    copy: bool = False,
) -> AnnData | None:
    """Remove batch effects with CytoNorm (Van Gassen et al., *Cytometry A* 2020) via cytonormpy.

    Each acquisition batch holds one or more reference samples (the same control sample
    measured in every batch). A FlowSOM model trained on the reference events splits
    events into metaclusters; per metacluster, batch and channel, the quantiles of the
    reference events are mapped by a monotone spline onto the mean quantiles over batches
    (``goal="batch_mean"``), and every event of that batch and metacluster goes through the
    spline. Works on the arcsinh-transformed ``X`` (the cofactor of :func:`itme.pp.arcsinh`),
    so run it after ``arcsinh``, ``clean`` and ``apply_qc``. Needs the optional package
    cytonormpy (``pip install 'itme[cytonorm]'``).

    Parameters
    ----------
    adata
        Events x channels after :func:`itme.pp.arcsinh`, with sample, batch and reference
        columns in ``obs``.
    batch_key
        obs column naming the acquisition batch.
    reference_key
        obs column marking reference samples.
    reference_value
        Value of ``reference_key`` that marks a reference sample (others: anything else).
    sample_key
        obs column naming the sample (each sample must be in one batch).
    channels
        var names to normalise. Default: the channels transformed by ``pp.arcsinh``.
    cluster_channels
        var names FlowSOM clusters on. Default: ``channels``.
    grid
        FlowSOM grid (xdim, ydim).
    n_metaclusters
        FlowSOM metaclusters (CytoNorm's clusters), at least 2.
    n_quantiles
        Quantiles per cluster and channel (99: the 1st to 99th percentiles).
    min_cells
        Reference events a batch needs in a metacluster to fit a spline there; otherwise
        that batch and metacluster keep their values (identity), with a warning.
    train_cells
        Reference events used to train FlowSOM (``None``: all).
    goal
        Target distribution: mean or median of the batches' quantiles.
    rng
        Seed or generator; the integer given to FlowSOM is recorded as ``seed``.
    copy
        Return a normalised copy instead of modifying ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes:

    - ``X``: normalised values on ``channels`` for the events labelled ``kept`` (all events
      when ``obs["itme_qc"]`` is absent); ``layers["raw"]`` is untouched.
    - ``uns["cytonorm"]``: ``channels``, ``cluster_channels``, ``batch_key``,
      ``reference_key``, ``reference_value``, ``grid``, ``n_metaclusters``, ``n_quantiles``,
      ``min_cells``, ``train_cells`` (absent when all were used), ``goal``, ``seed``,
      ``cytonormpy_version``,
      ``identity_clusters`` (DataFrame ``batch, cluster``: left unnormalised for lack of
      reference events) and ``shift`` (DataFrame, one row per sample: ``sample_id, batch,
      reference, mean_abs_median_shift`` over the normalised channels).

    Raises
    ------
    ItmeDependencyError
        cytonormpy is not installed.
    ItmeStateError
        ``X`` is not arcsinh-transformed, or CytoNorm was applied already.
    ItmeInputError
        Missing obs columns, a sample in several batches, a batch without a reference sample.
    """
    start = time.perf_counter()
    if "arcsinh" not in adata.uns:
        raise ItmeStateError(
            "CytoNorm works on arcsinh-transformed values: run itme.pp.arcsinh first"
        )
    if "cytonorm" in adata.uns:
        raise ItmeStateError("CytoNorm was applied already (uns['cytonorm'] exists)")
    if goal not in ("batch_mean", "batch_median"):
        raise ItmeParameterError("goal", "'batch_mean' or 'batch_median'", goal)
    if n_metaclusters < 2:
        raise ItmeParameterError("n_metaclusters", "an integer >= 2", n_metaclusters)
    if len(grid) != 2 or min(grid) < 2:
        raise ItmeParameterError("grid", "(xdim, ydim), each >= 2", grid)
    names = list(map(str, adata.var_names))
    channels = list(channels) if channels is not None else list(adata.uns["arcsinh"]["channels"])
    cluster_channels = list(cluster_channels) if cluster_channels is not None else channels
    for pname, chosen in (("channels", channels), ("cluster_channels", cluster_channels)):
        unknown = [c for c in chosen if c not in names]
        if unknown or not chosen:
            raise ItmeParameterError(pname, "a non-empty list of var names", unknown or chosen)
    meta = _metadata(adata, batch_key, reference_key, reference_value, sample_key)
    if "raw" in adata.layers and adata.X is adata.layers["raw"]:  # never write into raw
        raise ItmeStateError("X is the raw layer: run itme.pp.arcsinh first")
    # imported after validation: importing cytonormpy compiles numba code (15-35 s)
    try:
        import cytonormpy as cnp
    except ImportError as exc:
        raise ItmeDependencyError(
            "cytonormpy", "cytonorm", "CytoNorm batch normalisation (itme.pp.cytonorm)"
        ) from exc
    if copy:
        adata = adata.copy()

    rows = np.arange(adata.n_obs)
    if "itme_qc" in adata.obs:
        rows = np.flatnonzero(adata.obs["itme_qc"].astype(str).to_numpy() == "kept")
        if rows.size < adata.n_obs:
            logger.info(
                "cytonorm: normalising the %d kept events; %d removed events keep their values",
                rows.size,
                adata.n_obs - rows.size,
            )
    cols = np.array([names.index(c) for c in channels])
    before = np.asarray(adata.X[np.ix_(rows, cols)], dtype=np.float64)
    obs = pd.DataFrame(
        {
            "sample": adata.obs[sample_key].astype(str).to_numpy()[rows],
            "batch": adata.obs[batch_key].astype(str).to_numpy()[rows],
            "reference": np.where(
                adata.obs[reference_key].astype(str).to_numpy()[rows] == str(reference_value),
                "ref",
                "other",
            ),
        },
        index=pd.Index(np.arange(rows.size).astype(str)),
    )
    work = AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(channels)), layers={"x": before})
    seed = draw_seed(rng)
    model = cnp.CytoNorm()
    model.add_clusterer(
        cnp.FlowSOM(n_clusters=int(n_metaclusters), xdim=int(grid[0]), ydim=int(grid[1]), seed=seed)
    )
    n_train = None
    if train_cells is not None:
        n_ref = int((obs["reference"] == "ref").sum())
        n_train = min(int(train_cells), n_ref)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # cytonormpy warns per cluster; summarised below
        try:
            model.run_anndata_setup(
                work,
                layer="x",
                reference_column="reference",
                reference_value="ref",
                batch_column="batch",
                sample_identifier_column="sample",
                channels=channels,
                key_added="normalised",
            )
            model.run_clustering(n_cells=n_train, test_cluster_cv=False, markers=cluster_channels)
            model.calculate_quantiles(n_quantiles=int(n_quantiles), min_cells=int(min_cells))
            model.calculate_splines(goal=goal)
            model.normalize_data(n_jobs=1)
        except (ValueError, KeyError, IndexError) as exc:
            raise ItmeInputError(
                "cytonormpy could not normalise these data",
                where="itme.pp.cytonorm",
                found=f"{type(exc).__name__}: {exc}",
                fix="Check that every batch has reference events and that channels are numeric",
            ) from exc
    after = np.asarray(work.layers["normalised"], dtype=np.float32)
    identity = pd.DataFrame(
        [(str(b), int(c)) for b, cl in model._not_calculated.items() for c in cl],
        columns=["batch", "cluster"],
    )
    if len(identity):
        warnings.warn(
            f"CytoNorm left {len(identity)} batch x metacluster combination(s) unnormalised "
            f"(fewer than {min_cells} reference events): "
            + ", ".join(f"batch {b} cluster {c}" for b, c in identity.itertuples(index=False))
            + ". Lower n_metaclusters or min_cells, or add reference events.",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    adata.X[np.ix_(rows, cols)] = after
    shift = _shift(obs, before, after, meta)
    adata.uns["cytonorm"] = {
        "channels": channels,
        "cluster_channels": cluster_channels,
        "batch_key": batch_key,
        "reference_key": reference_key,
        "reference_value": str(reference_value),
        "grid": [int(grid[0]), int(grid[1])],
        "n_metaclusters": int(n_metaclusters),
        "n_quantiles": int(n_quantiles),
        "min_cells": int(min_cells),
        "goal": goal,
        "seed": int(seed),
        "cytonormpy_version": _version(),
        "identity_clusters": identity,
        "shift": shift,
    }
    if n_train is not None:  # absent: FlowSOM trained on every reference event
        adata.uns["cytonorm"]["train_cells"] = int(n_train)
    logger.info(
        "cytonorm: %d channels, %d events, %d batches in %.1f s (seed %d)",
        len(channels),
        rows.size,
        meta["batch"].nunique(),
        time.perf_counter() - start,
        seed,
    )
    return adata if copy else None


def _metadata(
    adata: AnnData, batch_key: str, reference_key: str, reference_value: str, sample_key: str
) -> pd.DataFrame:
    """One row per sample (``sample_id, batch, reference``), checked.

    One batch per sample, a reference sample in every batch, at least two batches.
    """
    missing = [k for k in (batch_key, reference_key, sample_key) if k not in adata.obs]
    if missing:
        raise ItmeInputError(
            where="adata.obs",
            expected=f"columns {batch_key}, {reference_key}, {sample_key}",
            found=f"missing {', '.join(missing)}",
            fix="Add them to samples.csv (e.g. batch, reference = ref / other)",
        )
    meta = (
        pd.DataFrame(
            {
                "sample_id": adata.obs[sample_key].astype(str).to_numpy(),
                "batch": adata.obs[batch_key].astype(str).to_numpy(),
                "reference": adata.obs[reference_key].astype(str).to_numpy()
                == str(reference_value),
            }
        )
        .drop_duplicates()
        .reset_index(drop=True)
    )
    dup = meta["sample_id"][meta["sample_id"].duplicated()].unique().tolist()
    if dup:
        raise ItmeInputError(
            where=f"obs['{batch_key}'] / obs['{reference_key}']",
            expected="one batch and one reference flag per sample",
            found=f"several for {', '.join(dup)}",
        )
    no_ref = sorted(set(meta["batch"]) - set(meta.loc[meta["reference"], "batch"]))
    if no_ref:
        raise ItmeInputError(
            where=f"obs['{reference_key}']",
            expected=f"a reference sample ({reference_key} == {reference_value!r}) in every batch",
            found=f"none in batch(es) {', '.join(no_ref)}",
            fix="CytoNorm learns each batch's shift from its reference sample",
        )
    if meta["batch"].nunique() < 2:
        raise ItmeInputError(
            where=f"obs['{batch_key}']", expected="at least two batches", found="one"
        )
    return meta


def _shift(
    obs: pd.DataFrame, before: np.ndarray, after: np.ndarray, meta: pd.DataFrame
) -> pd.DataFrame:
    """Per sample: mean over channels of the absolute change of the median."""
    records = []
    samples = obs["sample"].to_numpy()
    for row in meta.itertuples(index=False):
        sel = samples == row.sample_id
        if not sel.any():
            continue
        d = np.median(after[sel], axis=0) - np.median(before[sel], axis=0)
        records.append((row.sample_id, row.batch, bool(row.reference), float(np.mean(np.abs(d)))))
    return pd.DataFrame(
        records, columns=["sample_id", "batch", "reference", "mean_abs_median_shift"]
    )


def _version() -> str:
    from importlib.metadata import version

    return version("cytonormpy")
