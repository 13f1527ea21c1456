"""Cluster phenotype heatmaps and embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import check_markers, markers_of_class, matrix
from itme._colors import category_colors
from itme._dask import lazy_group_medians, lazy_matrix
from itme.core.cluster.codebook import group_medians
from itme.core.cluster.select import group_counts
from itme.errors import ItmeParameterError, ItmeStateError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["cluster_heatmap", "embedding"]

SCALES = ("none", "marker")


def cluster_heatmap(
    adata: AnnData,
    *,
    groupby: str = "subset",
    markers: Sequence[str] | None = None,
    scale: str = "none",
    cmap: str = "viridis",
    show_counts: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of the median of each marker in each cluster or subset (paper Fig. 2).

    Parameters
    ----------
    adata
        Events × channels (arcsinh scale, ``X``) with labels in ``obs[groupby]``.
    groupby
        ``obs`` column of the rows (``"subset"``, ``"metacluster"``, ...). Empty labels are
        not drawn.
    markers
        Columns; default the ``type`` and ``state`` markers.
    scale
        ``"none"``: arcsinh medians; ``"marker"``: each marker scaled to 0–1 over the rows.
    cmap
        Matplotlib colour map.
    show_counts
        Append the number of events to each row label.
    figsize
        Figure size in inches (default from the table size).

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap.
    """
    import matplotlib.pyplot as plt

    if groupby not in adata.obs:
        raise ItmeStateError(
            f'obs["{groupby}"] does not exist: run itme.tl.annotate or tl.flowsom first.'
        )
    if scale not in SCALES:
        raise ItmeParameterError("scale", SCALES, scale)
    marker_list = (
        markers_of_class(adata, ("type", "state"))
        if markers is None
        else check_markers(adata, markers)
    )
    groups = pd.Categorical(adata.obs[groupby])
    n = group_counts(groups.codes, len(groups.categories))
    columns = adata.var_names.get_indexer(marker_list)
    lazy = lazy_matrix(adata, None)
    if lazy is not None:  # a cohort store: exact medians, gathered or selected on workers
        med = lazy_group_medians(lazy, groups.codes, len(groups.categories), columns)
    else:
        med = group_medians(
            matrix(adata, None), groups.codes, len(groups.categories), columns=columns
        )
    rows = np.flatnonzero(n > 0)
    values = med[rows]
    label = "median (arcsinh)"
    if scale == "marker":
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        values = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
        label = "median, scaled per marker"
    names = [str(groups.categories[i]) + (f" ({n[i]:,})" if show_counts else "") for i in rows]
    if figsize is None:
        figsize = (max(4.0, 0.32 * len(marker_list) + 2.5), max(3.0, 0.28 * len(rows) + 1.5))
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    im = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(len(marker_list)), marker_list, rotation=90)
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlabel("marker")
    ax.set_ylabel(groupby)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    return fig


def embedding(
    adata: AnnData,
    *,
    basis: str = "itme_umap",
    color: str = "subset",
    point_size: float | None = None,
    figsize: tuple[float, float] = (7.0, 5.5),
) -> Figure:
    """Scatter plot of an embedding (``obsm["X_<basis>"]``), coloured by a label or a marker.

    Only the embedded events (``obs["<basis>_subsample"]``, else the rows without NaN) are
    drawn.

    Parameters
    ----------
    adata
        Events with ``obsm["X_<basis>"]`` from ``itme.tl.embed``.
    basis
        Embedding name: ``"itme_umap"``, ``"itme_tsne"`` (:func:`itme.tl.embed`), or scanpy's
        ``"umap"`` (``sc.tl.umap``).
    color
        An ``obs`` column (categorical: one colour per label, with a legend) or a marker in
        ``var_names`` (continuous colour from ``X``).
    point_size
        Marker size (default from the number of points).
    figsize
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The scatter plot.
    """
    import matplotlib.pyplot as plt

    key = f"X_{basis}"
    if key not in adata.obsm:
        raise ItmeStateError(
            f'obsm["{key}"] does not exist: run itme.tl.embed(method='
            f'"{basis.removeprefix("itme_")}") first.'
        )
    coords = np.asarray(adata.obsm[key])
    flag = f"{basis}_subsample"
    shown = adata.obs[flag].to_numpy(bool) if flag in adata.obs else ~np.isnan(coords).any(axis=1)
    xy = coords[shown]
    size = (
        point_size if point_size is not None else float(np.clip(20000 / max(len(xy), 1), 0.5, 20))
    )
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    if color in adata.obs:
        column = adata.obs[color]
        cats = column.cat.categories if hasattr(column, "cat") else None
        labels = pd.Categorical(column.to_numpy()[shown], categories=cats)
        # the colours of uns["<color>_colors"] (scanpy's layout), as in every itme figure
        colors = category_colors(adata, color, [str(c) for c in labels.categories])
        for i, cat in enumerate(labels.categories):
            sel = labels.codes == i
            if sel.any():
                ax.scatter(
                    xy[sel, 0],
                    xy[sel, 1],
                    s=size,
                    color=colors[str(cat)],
                    label=str(cat),
                    linewidths=0,
                    rasterized=True,  # tens of thousands of points: an image in the SVG
                )
        ax.legend(
            markerscale=max(1.0, 6 / np.sqrt(size)),
            fontsize="small",
            frameon=False,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
        )
    elif color in adata.var_names:
        j = adata.var_names.get_loc(color)
        X = adata.X
        values = np.asarray(
            X[shown][:, j].toarray() if hasattr(X, "toarray") else X[shown][:, j]
        ).ravel()
        sc = ax.scatter(
            xy[:, 0], xy[:, 1], s=size, c=values, cmap="viridis", linewidths=0, rasterized=True
        )
        fig.colorbar(sc, ax=ax, label=f"{color} (arcsinh)")
    else:
        raise ItmeParameterError("color", "an obs column or a marker in var_names", color)
    name = basis.removeprefix("itme_").upper()
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(color)
    return fig
