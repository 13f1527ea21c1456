"""The annotate stage's embedding computed by a second process while the stage goes on.

UMAP's layout runs on one core (umap-learn uses one thread when given a seed, so that the
result is reproducible) for ~10 s on the demo, while the rest of the annotate stage (the
subset medians, the heatmap, the batch diagnostics, writing ``cells.h5ad``) also runs on one
core. :func:`start_embed` hands :func:`itme.tl.embed` to a second Python process
(:mod:`itme.pipeline._second_process`) with exactly the data ``tl.embed`` reads (the
columns of the markers it embeds, their ``var`` rows, ``obs["itme_qc"]``) and the seed, so
the embedding is the one ``tl.embed`` computes in the stage's own process; the returned function waits for it and adds it to the cells.

The embedding reads only the events the clustering reads (``work/batch.h5ad`` or
``work/clean.h5ad``), not the clusters, so the cluster stage starts it (:func:`start_early`)
and the annotate stage takes it over (:func:`take_early`): the UMAP runs on the second core
while flowsom's SOM, sequential by construction, runs on the first. A start is taken over
only for the same events file (path, size, modification time), number of events and seed;
otherwise (``--from annotate``, a changed file) the annotate stage starts its own, and an
early start nobody takes is stopped at the end of the run (:func:`discard_early`).

On one core (``os.cpu_count() < 2`` or ``threads: 1``) nothing is started and ``tl.embed``
runs in the stage; when the second process fails (killed, out of memory, no interpreter),
the embedding is computed in the stage after all, so an error of ``tl.embed`` itself is
raised as usual.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from itme import tl
from itme._adata import markers_of_class
from itme.pipeline._second_process import SecondProcess, one_core, stop

logger = logging.getLogger(__name__)


def _inputs(cells: ad.AnnData) -> dict:
    """What ``tl.embed`` reads of ``cells`` with its default markers: columns, var, QC flag."""
    markers = markers_of_class(cells, ("type",))
    view = cells[:, markers]
    obs = cells.obs[["itme_qc"]] if "itme_qc" in cells.obs else pd.DataFrame(index=cells.obs_names)
    return {"X": np.asarray(view.X), "var": view.var.copy(), "obs": obs.copy()}


def _embed(inputs: dict, n_cells: int, seed: int) -> dict:
    """``tl.embed`` of the inputs; what it added (obsm, obs columns, uns)."""
    adata = ad.AnnData(X=inputs["X"], obs=inputs["obs"], var=inputs["var"])
    before = set(adata.obs.columns)
    tl.embed(adata, n_cells=n_cells, rng=seed)
    return {
        "obsm": dict(adata.obsm),
        "obs": {c: adata.obs[c].to_numpy() for c in adata.obs.columns if c not in before},
        "uns": dict(adata.uns),
    }


def _add(cells: ad.AnnData, result: dict) -> None:
    for key, value in result["obsm"].items():
        cells.obsm[key] = value
    for col, values in result["obs"].items():
        cells.obs[col] = values
    cells.uns.update(result["uns"])


def start_embed(
    cells: ad.AnnData, *, n_cells: int, seed: int, threads: int | None
) -> Callable[[ad.AnnData], None]:
    """Start ``tl.embed(cells, n_cells=n_cells, rng=seed)``, in a second process when possible.

    Parameters
    ----------
    cells
        The events (in memory), before or after :func:`itme.pp.split_channels` (the embedded
        markers are in both).
    n_cells
        Events to embed.
    seed
        The seed of ``tl.embed``.
    threads
        The config's ``threads`` (1: everything in this process).

    Returns
    -------
    A function that waits for the embedding and adds it to the cells given to it (the same
    events, e.g. the cells after ``pp.split_channels``): ``obsm["X_itme_umap"]``,
    ``obs["itme_umap_subsample"]``, ``uns["itme_umap"]`` as ``tl.embed`` writes them.
    """
    inputs = _inputs(cells)
    if one_core(threads):
        return lambda target: _add(target, _embed(inputs, n_cells, seed))
    second = SecondProcess(f"{__name__}:_embed", inputs, n_cells, seed, name="embed")

    def finish(target: ad.AnnData) -> None:
        result = second.wait()
        _add(target, _embed(inputs, n_cells, seed) if result is None else result)

    # the stage failed before waiting: the process is stopped and its files removed
    weakref.finalize(finish, stop, second.proc, second.tmp)
    return finish


#: embeddings started ahead of their stage, by what they embed (:func:`_early_key`)
_EARLY: dict[tuple, Callable[[ad.AnnData], None]] = {}


def _early_key(path: Path, n_cells: int, seed: int, threads: int | None) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, n_cells, seed, threads


def start_early(
    path: Path, cells: ad.AnnData, *, n_cells: int, seed: int, threads: int | None
) -> None:
    """:func:`start_embed` of the events read from ``path``, for a later :func:`take_early`.

    Only on two cores or more (on one, the later stage embeds in its own process).
    """
    discard_early()
    if not one_core(threads):
        _EARLY[_early_key(path, n_cells, seed, threads)] = start_embed(
            cells, n_cells=n_cells, seed=seed, threads=threads
        )


def take_early(
    path: Path, cells: ad.AnnData, *, n_cells: int, seed: int, threads: int | None
) -> Callable[[ad.AnnData], None]:
    """The embedding :func:`start_early` started for these events, or :func:`start_embed` now.

    ``cells`` must be the events read from ``path`` (the same values as when it started).
    """
    finish = _EARLY.pop(_early_key(path, n_cells, seed, threads), None)
    discard_early()
    if finish is not None:
        logger.info("embed: taking over the embedding started by an earlier stage")
        return finish
    return start_embed(cells, n_cells=n_cells, seed=seed, threads=threads)


def discard_early() -> None:
    """Stop the embeddings started early that no stage took over (their files removed)."""
    _EARLY.clear()  # the last reference: weakref.finalize stops the process
