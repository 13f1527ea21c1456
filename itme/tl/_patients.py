"""Ward clustering of patients into iTME clusters (the paper's Fig. 1)."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import feature_table, fmt_ids, group_labels, obs_columns
from itme._colors import store_colors
from itme._random import RngLike, as_generator, draw_seed
from itme.core.patients import ward
from itme.core.patients.composition import TRANSFORMS
from itme.core.patients.composition import transform as apply_transform
from itme.core.stats.fisher import independence_test
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["patient_clusters"]

logger = logging.getLogger(__name__)


def clustering_matrix(
    adata: AnnData, features: Sequence[str] | None, transform: str, *, warn: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """The validated samples × features frequency table used for clustering.

    All-missing and constant features are dropped (reported); any other missing value is an
    error, since Ward clustering needs complete rows.
    """
    table = feature_table(adata, features=features, source="X")
    excluded = []
    all_missing = [c for c in table.columns if table[c].isna().all()]
    constant = [
        c for c in table.columns if c not in all_missing and table[c].nunique(dropna=True) <= 1
    ]
    for name, cols in (("all missing", all_missing), ("constant", constant)):
        if cols:
            excluded += cols
            if warn:
                warnings.warn(
                    ItmeExclusionWarning.listing(
                        f"patient_clusters: {len(cols)} feature(s) {name}, not used for clustering",
                        cols,
                    ),
                    stacklevel=3,
                )
    table = table.drop(columns=excluded)
    if table.shape[1] == 0:
        raise ItmeInputError(
            where="patients.X",
            expected="at least one feature that varies",
            found="none",
            fix="Check the abundance table.",
        )
    holes = table.isna()
    if holes.any().any():
        rows, cols = np.nonzero(holes.to_numpy())
        cells = [f"{table.index[r]}:{table.columns[c]}" for r, c in zip(rows, cols, strict=True)]
        raise ItmeInputError(
            where="patients.X",
            expected="no missing values in the clustering features",
            found=f"{len(cells)} missing: {fmt_ids(cells)}",
            fix="Remove those samples or features (features=...), or fill them.",
        )
    if transform in ("clr", "arcsine_sqrt"):
        bad = table.columns[((table < 0) | (table > 100)).any()]
        if len(bad):
            raise ItmeInputError(
                where="patients.X",
                expected=f"percentages in [0, 100] for transform={transform!r}",
                found=f"values outside in {fmt_ids(bad)}",
                fix="Use transform='zscore' or 'none'.",
            )
    return table, excluded


def _composition(adata: AnnData, labels: pd.Series, status_key: str) -> dict:
    """Cluster × status counts and Fisher's exact test (chi-square when too large)."""
    if status_key not in adata.obs.columns:
        logger.info(
            "patient_clusters: no obs[%r] column; cluster composition not computed", status_key
        )
        return {}
    frame = obs_columns(adata, [status_key], param="status_key")
    status = group_labels(frame, status_key, min_size=1, what="patient_clusters (composition)")
    counts = pd.crosstab(
        pd.Categorical(labels.loc[status.index], categories=labels.cat.categories),
        status,
        dropna=False,
    )
    counts.index = counts.index.astype(str)
    counts.index.name = "cluster"
    counts.columns = counts.columns.astype(str)
    counts.columns.name = None  # h5ad keeps no column-index name
    test, stat, p = independence_test(counts.to_numpy())
    if test != "fisher":
        warnings.warn(
            "patient_clusters: cluster × status table too large for Fisher's exact test; "
            "used Pearson's chi-square",
            ItmeStatisticsWarning,
            stacklevel=3,
        )
    return {
        "composition": counts.astype(np.int64),
        "composition_test": test,
        "composition_pvalue": p,
        "status_key": status_key,
    }


def patient_clusters(
    adata: AnnData,
    *,
    k: int = 3,
    method: str = "ward",
    features: Sequence[str] | None = None,
    transform: str | None = "zscore",
    k_range: Sequence[int] | None = None,
    gap_refs: int = 20,
    status_key: str = "disease_status",
    key_added: str = "itme_cluster",
    rng: RngLike = None,
    copy: bool = False,
) -> AnnData | None:
    """Hierarchical (Ward) clustering of samples on their immune-subset frequencies.

    The paper (Visram et al. 2021) clustered patients on subset % of CD45+ with Ward's method
    in JMP 14, whose clustering platform standardises every column by default, so the
    default ``transform="zscore"`` reproduces it: every subset weighs the same, instead of the
    most abundant populations dominating the Euclidean distance. The ``k`` asked for is always
    the one returned; diagnostics for other ``k`` (silhouette, gap statistic) are reported
    next to it, never applied.

    Cluster numbering (stable, see :mod:`itme.core.patients.ward`): at every merge of the dendrogram
    the larger branch is drawn on the left (ties: the branch with the alphabetically first
    sample), and clusters are numbered 1..k from left to right. The numbering therefore
    does not depend on the order of the samples, and the heatmap (:func:`itme.pl.patient_heatmap`)
    reads 1..k from left to right.

    Parameters
    ----------
    adata
        Patients AnnData from :func:`itme.tl.abundance` (samples × subsets, ``X`` = % of CD45+).
    k
        Number of clusters, 2 ≤ k < number of samples (the paper: 3).
    method
        Linkage: ``"ward"`` (default), ``"average"``, ``"complete"`` or ``"single"``
        (Euclidean distance).
    features
        Subsets to cluster on (default: all ``var_names`` but ``"unassigned"``, which is
        not a subset). All-missing and constant ones are dropped with an
        ItmeExclusionWarning; other missing values are an error.
    transform
        ``"zscore"`` (default, JMP's standardisation), ``"clr"`` (centred log-ratio with
        half the smallest positive value as pseudocount), ``"arcsine_sqrt"`` or ``None``
        (raw percentages).
    k_range
        Values of k for the diagnostics (default 1..min(10, n - 1)); ``k`` is added.
    gap_refs
        Reference data sets for the gap statistic (0 switches the gap statistic off).
    status_key
        ``obs`` column with the disease status (from the sample sheet, or joined from the
        clinical table by :func:`itme.io.add_clinical`), for the cluster composition table and
        its test; skipped when absent. Samples without a status are excluded from it and
        reported.
    key_added
        Name of the ``obs`` column and ``uns`` entry written.
    rng
        Seed or Generator for the gap statistic's reference data.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` (or the copy when ``copy=True``), having written:

    ``obs[key_added]``
        Categorical cluster ``"1"``..``"k"``.
    ``uns[f"{key_added}_colors"]``
        One colour per cluster, in cluster order (scanpy's layout; kept when already stored
        for k clusters), used by every :mod:`itme.pl` figure and by scanpy's plots.
    ``uns[key_added]``
        ``linkage`` (canonical scipy linkage matrix over the rows of ``adata``), ``leaf_order``
        (row indices left to right), ``method``, ``k``, ``transform`` (``"none"`` for raw),
        ``features`` (used), ``excluded_features``, ``numbering`` (``"dendrogram"``),
        ``diagnostics`` (DataFrame over k: ``within_ss``, ``silhouette``, ``gap``,
        ``gap_sd``), ``k_gap`` (Tibshirani's rule; absent when ``gap_refs=0``),
        ``k_silhouette`` (best silhouette), ``gap_refs``, ``seed``, ``sizes`` (DataFrame: cluster, n), and when the status is
        known: ``composition`` (DataFrame clusters × statuses), ``composition_test``
        (``"fisher"`` or ``"chi-square"``), ``composition_pvalue``, ``status_key``.
    """
    started = time.perf_counter()
    transform_name = "none" if transform is None else transform
    if transform_name not in TRANSFORMS:
        raise ItmeParameterError("transform", ["zscore", "clr", "arcsine_sqrt", None], transform)
    if method not in ward.METHODS:
        raise ItmeParameterError("method", ward.METHODS, method)
    n = adata.n_obs
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= n - 1:
        raise ItmeParameterError(
            "k",
            f"an integer from 2 to n_samples - 1 = {n - 1}",
            k,
            fix="Ward clusters must be fewer than the samples clustered.",
        )
    if isinstance(gap_refs, bool) or not isinstance(gap_refs, int | np.integer) or gap_refs < 0:
        raise ItmeParameterError("gap_refs", "an integer >= 0", gap_refs)
    try:
        ks = sorted(
            {int(v) for v in (range(1, min(10, n - 1) + 1) if k_range is None else k_range)}
        )
    except (TypeError, ValueError) as err:
        raise ItmeParameterError("k_range", f"integers from 1 to {n - 1}", k_range) from err
    bad_ks = [v for v in ks if not 1 <= v <= n - 1]
    if bad_ks:
        raise ItmeParameterError("k_range", f"integers from 1 to {n - 1}", bad_ks)
    ks = sorted({*ks, int(k)})
    adata = adata.copy() if copy else adata
    table, excluded = clustering_matrix(adata, features, transform_name)
    names = [str(s) for s in adata.obs_names]
    xt = apply_transform(table.to_numpy(), transform_name)
    z = ward.linkage(xt, method=method, names=names)
    labels_int = ward.cut(z, int(k))
    cats = [str(i) for i in range(1, int(k) + 1)]
    labels = pd.Series(
        pd.Categorical(labels_int.astype(str), categories=cats),
        index=adata.obs_names,
        name=key_added,
    )

    seed = draw_seed(rng)
    diag = ward.diagnostics(xt, ks, method=method, n_refs=max(gap_refs, 1), rng=as_generator(seed))
    if gap_refs == 0:
        diag[["gap", "gap_sd"]] = np.nan
    k_gap = ward.gap_k(diag) if gap_refs else None
    sil = diag["silhouette"].dropna()
    k_sil = int(sil.idxmax()) if len(sil) else None
    if k not in (k_gap, k_sil):
        logger.info(
            "patient_clusters: k=%d asked; gap statistic suggests %s, silhouette %s (kept k=%d)",
            k,
            k_gap,
            k_sil,
            k,
        )

    sizes = labels.value_counts().reindex(cats)
    singles = [c for c in cats if sizes[c] == 1]
    if singles:
        who = [f"{c} ({labels.index[labels == c][0]})" for c in singles]
        warnings.warn(
            f"patient_clusters: cluster(s) with a single sample: {fmt_ids(who)}; group tests "
            "need at least two members and will exclude them",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    adata.obs[key_added] = labels
    store_colors(adata, key_added)
    uns = {
        "linkage": z,
        "leaf_order": ward.leaf_order(z).astype(np.int64),
        "method": method,
        "k": int(k),
        "transform": transform_name,
        "features": list(table.columns),
        "excluded_features": list(excluded),
        "numbering": "dendrogram",
        "diagnostics": diag.reset_index(),
        "gap_refs": int(gap_refs),
        "seed": int(seed),
        "sizes": pd.DataFrame({"cluster": cats, "n": sizes.to_numpy(dtype=np.int64)}),
    }
    uns.update(
        {name: int(v) for name, v in (("k_gap", k_gap), ("k_silhouette", k_sil)) if v is not None}
    )
    uns.update(_composition(adata, labels, status_key))
    adata.uns[key_added] = uns
    logger.info(
        "patient_clusters: %d samples into %d clusters (sizes %s) on %d features, "
        "transform=%s, %.2fs",
        n,
        k,
        "/".join(map(str, sizes.tolist())),
        table.shape[1],
        transform_name,
        time.perf_counter() - started,
    )
    return adata if copy else None
