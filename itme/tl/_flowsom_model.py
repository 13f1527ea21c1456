"""The FlowSOM estimator: every use of the ``flowsom`` package lives in this module.

:class:`FlowSOMModel` trains, maps and metaclusters on arrays; :func:`itme.tl.flowsom`
(:mod:`itme.tl._flowsom`) is its AnnData wrapper, and small-metacluster merging is
:mod:`itme.core.cluster.merge`.

How flowsom is driven, and why (numbers in ``docs/clustering.md`` and
``scripts/bench_flowsom.py``):

1. The SOM is trained with flowsom's own online SOM (``flowsom.models.SOMEstimator``, the
   algorithm of the R package) on a random subsample of ``train_cells`` events (200,000 by
   default). Training cost grows linearly with the training events, while F1 against known
   labels did not change beyond seed-to-seed variation when the SOM saw a subsample, so a
   subsample keeps the accuracy at a fraction of the time.
2. Every event is then mapped to its nearest code by :func:`itme.core.cluster.codebook.nearest_code`
   (one BLAS product per chunk). ``flowsom.FlowSOM`` instead builds a full events × codes
   float64 distance matrix (3.2 GB for 4 million events) and maps twice.
3. Codes are metaclustered with ``flowsom.models.ConsensusCluster`` exactly as
   ``flowsom.FlowSOM`` does (``metaclustering="hierarchical"``, the default: one
   average-linkage clustering of the codes; with the same seed and all events as training
   set, itme reproduces ``flowsom.FlowSOM`` label for label). ``"consensus"`` runs the
   resampling of R's ConsensusClusterPlus (``consensus_reps`` resamples of 90 % of the codes,
   average linkage, then average linkage on 1 - consensus, cut into exactly k groups).
4. Optionally, metaclusters below a median-size floor are merged (paper's over-clustering
   control, :mod:`itme.core.cluster.merge`).

flowsom seeds NumPy's global generator; every call into it runs inside
:func:`_numpy_global_seed`, which restores the caller's global state afterwards. The integer
seed given to flowsom is drawn from ``rng`` and recorded.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin

from itme._dask import gather_rows, is_lazy, map_rows, take_rows
from itme._numba import cache_compiled
from itme._random import RngLike, as_generator, draw_seed
from itme.core.cluster.codebook import nearest_code
from itme.core.cluster.merge import MERGE_COLUMNS, merge_metaclusters
from itme.core.cluster.select import group_counts
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError

__all__ = ["FlowSOMModel"]

logger = logging.getLogger(__name__)

METACLUSTERING = ("consensus", "hierarchical")
SOM_KINDS = ("online", "batch")


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for flowsom, then restore the caller's state."""
    state = np.random.get_state()  # noqa: NPY002  (flowsom uses the global generator)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _nearest(X: Any, codes: np.ndarray, cols: np.ndarray | None, chunk_size: int) -> np.ndarray:
    """Nearest code of every event; blockwise on the dask cluster when ``X`` is lazy."""
    if is_lazy(X):
        kernel_kw = {"columns": cols, "chunk_size": chunk_size}
        return gather_rows(map_rows(nearest_code, X, codes, dtype=np.int32, **kernel_kw))
    return nearest_code(X, codes, columns=cols, chunk_size=chunk_size)


def _flowsom_models() -> Any:
    """``flowsom.models``, imported on first use (it pulls in numba: slow to import)."""
    import flowsom.models as models
    import flowsom.models._som as som_code
    import flowsom.models.batch._som as batch_som_code

    cache_compiled(som_code, batch_som_code)  # compiled once per machine, not per process
    return models


def flowsom_version() -> str:
    """Installed version of the ``flowsom`` package (stored with every result)."""
    from importlib.metadata import version

    return version("flowsom")


def _metacluster(codes: np.ndarray, k: int, method: str, reps: int, seed: int) -> np.ndarray:
    """0-based metacluster of every code."""
    from scipy.cluster.hierarchy import cut_tree, linkage
    from scipy.spatial.distance import squareform

    models = _flowsom_models()
    k = min(k, codes.shape[0])
    with _numpy_global_seed(seed):
        if method == "hierarchical":
            labels = models.ConsensusCluster(n_clusters=k).fit_predict(codes)
        else:
            cc = models.ConsensusCluster(n_clusters=k, H=reps, resample_proportion=0.9)
            cc.fit(codes)
            dist = 1.0 - cc.Mk
            np.fill_diagonal(dist, 0.0)
            dist = np.clip((dist + dist.T) / 2.0, 0.0, None)
            tree = linkage(squareform(dist, checks=False), method="average")
            # cut into exactly k groups by merge order (R's cutree(k=)); a height cut
            # (fcluster maxclust) collapses when many consensus distances tie at 1
            labels = cut_tree(tree, n_clusters=k).ravel()
    # number metaclusters in the order of their first code (as R's cutree does)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[np.unique(labels, return_inverse=True)[1]]


class FlowSOMModel(ClusterMixin, BaseEstimator):
    """FlowSOM as an estimator: SOM codebook + metaclusters, reusable on new files.

    A scikit-learn estimator (``get_params``/``set_params``/``clone``/``fit_predict`` come from
    :class:`~sklearn.base.BaseEstimator` and :class:`~sklearn.base.ClusterMixin`).
    ``__init__`` only stores the parameters; :meth:`fit` validates, trains and sets the
    fitted attributes (ending in ``_``); :meth:`predict` maps new events to the fitted
    metaclusters. :func:`itme.tl.flowsom` is the AnnData wrapper.

    Parameters
    ----------
    grid
        SOM grid ``(xdim, ydim)``; ``xdim * ydim`` nodes.
    n_metaclusters
        Number of metaclusters before merging.
    train_cells
        Events the SOM is trained on (a random subsample); ``None`` trains on all events.
        Every event is mapped afterwards either way.
    rlen
        Passes over the training events (flowsom/R default 10).
    alpha
        Start and end learning rate (flowsom/R default ``(0.05, 0.01)``).
    som
        ``"online"``: flowsom's ``SOMEstimator`` (the R algorithm). ``"batch"``: flowsom's
        parallel ``BatchSOMEstimator``.
    metaclustering
        ``"hierarchical"`` (default: one average-linkage clustering of the codes, as
        ``flowsom.FlowSOM`` does) or ``"consensus"`` (ConsensusClusterPlus as in R FlowSOM).
    consensus_reps
        Resamples of the consensus metaclustering.
    merge_floor
        Merge metaclusters until the smallest median size (in % of a group's events, median
        over ``groups``) is at least this; ``None`` merges nothing.
    chunk_size
        Events mapped per chunk.
    rng
        Seed or generator for the subsample and the integer seed given to flowsom.

    Attributes
    ----------
    codes_ : numpy.ndarray
        Nodes × markers codebook.
    node_sizes_ : numpy.ndarray
        Events of the fit data mapped to each node.
    node_metacluster_ : numpy.ndarray
        Metacluster (1-based, after merging) of each node.
    node_metacluster_unmerged_ : numpy.ndarray
        Metacluster (1-based) of each node before merging.
    n_metaclusters_ : int
        Metaclusters after merging.
    merges_ : pandas.DataFrame
        One row per merge (``step, cluster, into, median_pct, floor_pct, distance, n_events``).
    seed_ : int
        Integer seed given to flowsom.
    train_cells_ : int
        Events the SOM was trained on.
    n_features_in_ : int
        Number of markers.
    labels_ : numpy.ndarray
        Metacluster (1-based) of every event of the fit data.
    nodes_ : numpy.ndarray
        Node (0-based) of every event of the fit data.
    feature_names_in_ : numpy.ndarray
        Marker names, set by :meth:`from_uns` (``fit`` sees arrays only).
    """

    def __init__(
        self,
        *,
        grid: tuple[int, int] = (10, 10),
        n_metaclusters: int = 20,
        train_cells: int | None = 200_000,
        rlen: int = 10,
        alpha: tuple[float, float] = (0.05, 0.01),
        som: str = "online",
        metaclustering: str = "hierarchical",
        consensus_reps: int = 100,
        merge_floor: float | None = None,
        chunk_size: int = 32_768,
        rng: RngLike = None,
    ) -> None:
        self.grid = grid
        self.n_metaclusters = n_metaclusters
        self.train_cells = train_cells
        self.rlen = rlen
        self.alpha = alpha
        self.som = som
        self.metaclustering = metaclustering
        self.consensus_reps = consensus_reps
        self.merge_floor = merge_floor
        self.chunk_size = chunk_size
        self.rng = rng

    def _validate(self) -> tuple[int, int]:
        grid = tuple(self.grid)
        if len(grid) != 2 or not all(isinstance(g, int | np.integer) and g >= 1 for g in grid):
            raise ItmeParameterError("grid", "two positive integers (xdim, ydim)", self.grid)
        if grid[0] * grid[1] < 2:
            raise ItmeParameterError("grid", "at least 2 nodes", self.grid)
        k = self.n_metaclusters
        if not isinstance(k, int | np.integer) or not 1 <= k <= grid[0] * grid[1]:
            raise ItmeParameterError(
                "n_metaclusters", f"an integer from 1 to {grid[0] * grid[1]} (the nodes)", k
            )
        if self.train_cells is not None and (
            not isinstance(self.train_cells, int | np.integer) or self.train_cells < 1
        ):
            raise ItmeParameterError("train_cells", "a positive integer or None", self.train_cells)
        if not isinstance(self.rlen, int | np.integer) or self.rlen < 1:
            raise ItmeParameterError("rlen", "a positive integer", self.rlen)
        if len(tuple(self.alpha)) != 2 or not all(0 < a <= 1 for a in self.alpha):
            raise ItmeParameterError("alpha", "two learning rates in (0, 1]", self.alpha)
        if self.som not in SOM_KINDS:
            raise ItmeParameterError("som", SOM_KINDS, self.som)
        if self.metaclustering not in METACLUSTERING:
            raise ItmeParameterError("metaclustering", METACLUSTERING, self.metaclustering)
        if not isinstance(self.consensus_reps, int | np.integer) or self.consensus_reps < 1:
            raise ItmeParameterError("consensus_reps", "a positive integer", self.consensus_reps)
        if self.merge_floor is not None and not (
            isinstance(self.merge_floor, int | float) and 0 <= self.merge_floor < 100
        ):
            raise ItmeParameterError(
                "merge_floor", "a percentage in [0, 100) or None", self.merge_floor
            )
        return int(grid[0]), int(grid[1])

    def _training_rows(
        self, n: int, mask: np.ndarray | None, n_nodes: int, gen: np.random.Generator
    ) -> np.ndarray:
        """Sorted rows the SOM trains on: ``train_cells`` drawn from the allowed events."""
        # no arange over all events unless needed: the matrix alone should dominate memory
        pool = None if mask is None else np.flatnonzero(mask)
        n_pool = n if pool is None else pool.size
        if n_pool < n_nodes:
            raise ItmeInputError(
                where="clustering input",
                expected=f"at least {n_nodes} events allowed for training (one per SOM node)",
                found=f"{n_pool} of {n} events",
                fix="Use a smaller grid or more events.",
            )
        if self.train_cells is not None and n_pool > self.train_cells:
            pick = gen.choice(n_pool, size=int(self.train_cells), replace=False)
            return np.sort(pick if pool is None else pool[pick])
        return np.arange(n) if pool is None else pool

    def _merge(
        self,
        meta0: np.ndarray,
        codes: np.ndarray,
        nodes: np.ndarray,
        groups: np.ndarray | None,
        mask: np.ndarray | None,
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Merged metacluster of every metacluster (identity without ``merge_floor``)."""
        if self.merge_floor is None:
            return np.arange(int(meta0.max()) + 1), pd.DataFrame(columns=MERGE_COLUMNS)
        counted = nodes if mask is None else nodes[mask]
        if groups is None:
            g = np.zeros(counted.size, dtype=np.int8)
        else:
            g = pd.factorize(np.asarray(groups))[0]
            g = g if mask is None else g[mask]
        mapping, merges = merge_metaclusters(meta0, codes, counted, g, float(self.merge_floor))
        if len(merges):
            logger.info("merged %d metaclusters below %.3g %%", len(merges), self.merge_floor)
        return mapping, merges

    def fit(
        self,
        X: np.ndarray,
        y: None = None,
        *,
        columns: Sequence[int] | None = None,
        groups: np.ndarray | None = None,
        train_mask: np.ndarray | None = None,
    ) -> FlowSOMModel:
        """Train the SOM, map every event, metacluster the codes and merge small metaclusters.

        Parameters
        ----------
        X
            Events × channels (arcsinh scale).
        y
            Ignored (scikit-learn convention).
        columns
            Columns of ``X`` to cluster on (all when ``None``); ``X`` is read in chunks, so
            no copy of the selected columns is made.
        groups
            Sample of each event, for the median sizes of ``merge_floor`` (one group when
            ``None``).
        train_mask
            Events allowed in the training subsample and in the sizes (all when ``None``).

        Returns
        -------
        FlowSOMModel
            ``self``, fitted.
        """
        xdim, ydim = self._validate()
        n = X.shape[0]
        cols = None if columns is None else np.asarray(columns, dtype=np.intp)
        n_feat = X.shape[1] if cols is None else cols.size
        mask = None if train_mask is None else np.asarray(train_mask, dtype=bool)
        if groups is not None and len(groups) != n:
            raise ItmeParameterError("groups", f"{n} labels (one per event)", len(groups))
        if mask is not None and mask.shape != (n,):
            raise ItmeParameterError("train_mask", f"{n} booleans (one per event)", mask.shape)
        seed = draw_seed(self.rng)  # an int rng is the seed itself
        train_idx = self._training_rows(n, mask, xdim * ydim, as_generator(self.rng))
        X_train = take_rows(X, train_idx, cols)  # numpy or dask X: the same events
        dtype = np.float32 if X_train.dtype == np.float32 else np.float64
        X_train = np.ascontiguousarray(X_train, dtype=dtype)
        if not np.isfinite(X_train).all():
            raise ItmeInputError(
                where="clustering markers",
                expected="finite values",
                found="NaN or infinite values",
                fix="Remove or impute those events before clustering.",
            )

        t0 = time.perf_counter()
        models = _flowsom_models()
        kind = models.SOMEstimator if self.som == "online" else models.batch.BatchSOMEstimator
        som = kind(xdim=xdim, ydim=ydim, rlen=int(self.rlen), alpha=tuple(self.alpha), seed=seed)
        with _numpy_global_seed(seed):
            som.fit(X_train)
        codes = np.asarray(som.codes, dtype=np.float64)
        logger.info(
            "SOM %dx%d trained on %d events in %.1f s",
            xdim,
            ydim,
            train_idx.size,
            time.perf_counter() - t0,
        )

        t0 = time.perf_counter()
        nodes = _nearest(X, codes, cols, self.chunk_size)
        logger.info(
            "mapped %d events to %d codes in %.1f s", n, codes.shape[0], time.perf_counter() - t0
        )
        # counted in parts: no copy of the nodes of every event (at 10^8 events each is GBs)
        node_sizes = group_counts(nodes, codes.shape[0], mask=mask)

        meta0 = _metacluster(
            codes, int(self.n_metaclusters), self.metaclustering, int(self.consensus_reps), seed
        )
        mapping, merges = self._merge(meta0, codes, nodes, groups, mask)

        self.codes_ = codes
        self.node_sizes_ = node_sizes.astype(np.int64)
        self.node_metacluster_unmerged_ = (meta0 + 1).astype(np.int64)
        self.node_metacluster_ = (mapping[meta0] + 1).astype(np.int64)
        self.n_metaclusters_ = int(mapping.max()) + 1
        self.merges_ = merges
        self.seed_ = int(seed)
        self.train_cells_ = int(train_idx.size)
        self.n_features_in_ = int(n_feat)
        self.nodes_ = nodes
        return self

    @property
    def labels_(self) -> np.ndarray:
        """Metacluster (1-based, after merging, int32) of every event of the fit data.

        Looked up from ``nodes_`` on each access, not kept beside them (4 bytes an event).
        """
        if not hasattr(self, "nodes_"):
            raise AttributeError("labels_: FlowSOMModel is not fitted (call fit())")
        return self.node_metacluster_.astype(np.int32)[self.nodes_]

    @classmethod
    def from_uns(cls, info: dict[str, Any]) -> FlowSOMModel:
        """Rebuild a fitted model from the ``uns`` entry written by :func:`flowsom`.

        Parameters
        ----------
        info
            ``adata.uns["flowsom"]`` (or the ``key_added`` used).

        Returns
        -------
        FlowSOMModel
            A model whose :meth:`predict` maps new events (the markers ``info["markers"]``,
            in that order) to the stored nodes and metaclusters.
        """
        try:
            model = cls(
                grid=tuple(int(g) for g in info["grid"]),
                n_metaclusters=int(info["n_metaclusters"]),
                train_cells=int(info["train_cells"]),
                rlen=int(info["rlen"]),
                som=str(info["som"]),
                metaclustering=str(info["metaclustering"]),
                merge_floor=float(info["merge_floor"]) if "merge_floor" in info else None,
                rng=int(info["seed"]),
            )
            model.codes_ = np.asarray(info["codes"], dtype=np.float64)
            model.node_sizes_ = np.asarray(info["node_sizes"], dtype=np.int64)
            model.node_metacluster_ = np.asarray(info["node_metacluster"], dtype=np.int64)
            model.node_metacluster_unmerged_ = np.asarray(
                info["node_metacluster_unmerged"], dtype=np.int64
            )
            model.n_metaclusters_ = int(info["n_metaclusters_final"])
            model.merges_ = pd.DataFrame(info["merges"])
            model.seed_ = int(info["seed"])
            model.train_cells_ = int(info["train_cells"])
            model.n_features_in_ = int(model.codes_.shape[1])
            model.feature_names_in_ = np.asarray(info["markers"], dtype=object)
        except (KeyError, TypeError, ValueError) as err:
            raise ItmeInputError(
                where="uns entry of tl.flowsom",
                expected="the keys written by itme.tl.flowsom",
                found=f"{type(err).__name__}: {err}",
            ) from err
        return model

    def _check_fitted(self, X: np.ndarray, columns: Sequence[int] | None) -> None:
        if not hasattr(self, "codes_"):
            raise ItmeStateError("FlowSOMModel is not fitted: call fit() before predict().")
        n_feat = X.shape[1] if columns is None else len(columns)
        if n_feat != self.n_features_in_:
            raise ItmeParameterError(
                "X", f"{self.n_features_in_} markers (as in fit)", f"{n_feat} markers"
            )

    def predict_nodes(self, X: np.ndarray, *, columns: Sequence[int] | None = None) -> np.ndarray:
        """Nearest SOM node (0-based) of every event.

        Parameters
        ----------
        X
            Events × channels, the markers of ``fit`` in the same order.
        columns
            Columns of ``X`` to use (all when ``None``).

        Returns
        -------
        numpy.ndarray
            int32 node per event.
        """
        self._check_fitted(X, columns)
        cols = None if columns is None else np.asarray(columns, dtype=np.intp)
        return _nearest(X, self.codes_, cols, self.chunk_size)

    def predict(self, X: np.ndarray, *, columns: Sequence[int] | None = None) -> np.ndarray:
        """Metacluster (1-based, after merging) of every event.

        Parameters
        ----------
        X
            Events × channels, the markers of ``fit`` in the same order.
        columns
            Columns of ``X`` to use (all when ``None``).

        Returns
        -------
        numpy.ndarray
            int64 metacluster per event.
        """
        nodes = self.predict_nodes(X, columns=columns)
        return self.node_metacluster_[nodes]
