"""UMAP (or t-SNE) embedding of a subsample of cells.

A cohort holds millions of events; an embedding of all of them is slow and unreadable.
:func:`embed` embeds a random subsample and stores it in the cells AnnData itself:
``obsm["X_<key>"]`` has one row per event, NaN for the events outside the subsample, and the
boolean ``obs["<key>_subsample"]`` marks the embedded ones. Plots (``itme.pl.embedding``)
draw only the marked events. Keeping one AnnData avoids a second object whose rows must be
kept in step with the first.

The key is ``itme_umap`` (``itme_tsne``) by default, not scanpy's ``umap``: ``sc.tl.umap``
writes ``obsm["X_umap"]`` and ``uns["umap"]`` over whatever is there, so with scanpy's keys
its embedding of every event would erase this one and its provenance (seed, markers,
subsample). Both coexist; ``sc.pl.embedding(adata, basis="itme_umap")`` draws this one.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
from anndata import AnnData

from itme._adata import check_markers, markers_of_class
from itme._dask import is_lazy, take_rows
from itme._numba import cache_compiled, caching_imports
from itme._random import RngLike, as_generator, draw_seed
from itme.errors import ItmeParameterError

__all__ = ["embed"]

logger = logging.getLogger(__name__)

METHODS = ("umap", "tsne")


def embed(
    adata: AnnData,
    *,
    method: str = "umap",
    n_cells: int = 50_000,
    markers: Sequence[str] | None = None,
    layer: str | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    rng: RngLike = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Embed a random subsample of events in two dimensions (UMAP or t-SNE).

    Parameters
    ----------
    adata
        Events × channels (arcsinh scale).
    method
        ``"umap"`` (umap-learn) or ``"tsne"`` (scikit-learn; the paper used viSNE).
    n_cells
        Events to embed (all when there are fewer). When ``obs["itme_qc"]`` exists only
        ``kept`` events are drawn.
    markers
        Markers to embed on; default the ``type`` markers.
    layer
        Layer to use; ``None`` uses ``X``.
    n_neighbors
        UMAP neighbours (UMAP only).
    min_dist
        UMAP minimum distance (UMAP only).
    rng
        Seed or generator for the subsample and the embedding; the seed is stored.
    key_added
        Name of the result (default ``"itme_" + method``: ``itme_umap``, ``itme_tsne``; kept
        apart from scanpy's ``umap`` so that ``sc.tl.umap`` does not overwrite it).
    copy
        Return a modified copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else ``None``. Writes ``obsm["X_<key>"]`` (float32,
        n_obs × 2, NaN for events not embedded), ``obs["<key>_subsample"]`` (bool, True for
        embedded events) and ``uns[<key>]``: ``method``, ``n_cells`` (embedded), ``markers``,
        ``seed``, ``version`` (of umap-learn or scikit-learn), and ``n_neighbors``,
        ``min_dist``, ``knn`` (``"exact"``: the neighbours are found by scikit-learn, not
        approximated) (UMAP) or ``perplexity`` (t-SNE).
    """
    if method not in METHODS:
        raise ItmeParameterError("method", METHODS, method)
    if not isinstance(n_cells, int | np.integer) or n_cells < 3:
        raise ItmeParameterError("n_cells", "an integer >= 3", n_cells)
    if layer is not None and layer not in adata.layers:
        raise ItmeParameterError("layer", f"None or one of {list(adata.layers)}", layer)
    key = key_added or f"itme_{method}"
    t0 = time.perf_counter()
    adata = adata.copy() if copy else adata
    marker_list = (
        markers_of_class(adata, ("type",)) if markers is None else check_markers(adata, markers)
    )
    seed = draw_seed(rng)
    gen = as_generator(rng)
    pool = np.arange(adata.n_obs)
    if "itme_qc" in adata.obs:
        pool = np.flatnonzero((adata.obs["itme_qc"] == "kept").to_numpy())
    if pool.size < 3:
        raise ItmeParameterError("adata", "at least 3 events to embed", pool.size)
    idx = (
        np.sort(gen.choice(pool, size=int(n_cells), replace=False)) if pool.size > n_cells else pool
    )
    X = adata.X if layer is None else adata.layers[layer]
    cols = adata.var_names.get_indexer(marker_list)
    if is_lazy(X):  # a cohort store: gather the subsample only
        data = np.asarray(take_rows(X, idx, cols), dtype=np.float32)
    else:
        data = X[np.ix_(idx, cols)]
        data = np.asarray(data.toarray() if hasattr(data, "toarray") else data, dtype=np.float32)

    params: dict[str, Any] = {"method": method, "markers": np.array(marker_list, dtype=object)}
    if method == "umap":
        # pynndescent (imported by umap-learn) compiles its distances at import: cached
        with caching_imports(), warnings.catch_warnings():
            # umap-learn warns at import that ParametricUMAP needs TensorFlow (not used here)
            warnings.filterwarnings("ignore", message=".*ParametricUMAP.*", category=ImportWarning)
            import umap
            import umap.layouts
            import umap.umap_

        cache_compiled(umap.umap_, umap.layouts)  # compiled once per machine, not per process

        k = min(int(n_neighbors), idx.size - 1)
        knn = _exact_knn(data, k)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
            # no search index: only `transform` of new data needs one, and it is not used
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            reducer = umap.UMAP(
                n_neighbors=k,
                min_dist=float(min_dist),
                n_components=2,
                random_state=seed,
                precomputed_knn=knn,
            )
            coords = reducer.fit_transform(data)
        params.update(
            n_neighbors=int(n_neighbors),
            min_dist=float(min_dist),
            knn="exact",
            version=version("umap-learn"),
        )
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (idx.size - 1) / 3.0)))
        coords = TSNE(
            n_components=2, init="pca", perplexity=perplexity, random_state=seed
        ).fit_transform(data)
        params.update(perplexity=perplexity, version=version("scikit-learn"))
    full = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    full[idx] = coords.astype(np.float32)
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[idx] = True
    adata.obsm[f"X_{key}"] = full
    adata.obs[f"{key}_subsample"] = mask
    params.update(n_cells=int(idx.size), seed=int(seed))
    adata.uns[key] = params
    logger.info("embed: %s of %d events in %.1f s", method, idx.size, time.perf_counter() - t0)
    return adata if copy else None


def _exact_knn(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``k`` nearest neighbours of every row (itself first), for umap-learn.

    umap-learn finds neighbours with pynndescent above 4,096 rows, whose numba code takes
    ~15 s to compile in every new process, longer than the search itself takes with
    scikit-learn on an embedding subsample (tens of thousands of events, a few dozen
    markers). Exact neighbours are what umap-learn computes itself on small inputs.
    """
    from sklearn.neighbors import NearestNeighbors

    dist, ind = NearestNeighbors(n_neighbors=k).fit(data).kneighbors(data)
    return ind.astype(np.int32), dist.astype(np.float32)
