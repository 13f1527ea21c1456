"""Figures of the differential analyses (CATALYST's plotDiffHeatmap, pbMDS, plotExprs).

:func:`ds_heatmap` draws the top differential-state calls of
:func:`itme.stats.differential_state` (``uns["differential_state"]``) as a sample ×
(subset, marker) heatmap of the per-sample medians, with each call's logFC and adjusted p;
:func:`pbmds` places samples by their pseudobulk (per-sample median) profiles;
:func:`expression_density` draws per-marker densities by condition, one panel per subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._adata import check_markers, fmt_ids, markers_of_class, matrix
from itme.core.stats.embedding import binned_density, classical_mds
from itme.core.stats.pseudobulk import group_medians
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStateError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ds_heatmap", "expression_density", "pbmds"]


def _sample_groups(adata: AnnData, sample_key: str, column: str | None) -> pd.Series:
    """One value of ``obs[column]`` per sample (index: sample id as str), in display order."""
    if sample_key not in adata.obs:
        raise ItmeInputError(
            where=f"obs column {sample_key!r}",
            expected="the sample of every event",
            found=f"obs columns {fmt_ids(adata.obs.columns)}",
        )
    samples = adata.obs[sample_key].astype(str)
    if column is None:
        ids = sorted(samples.unique())
        return pd.Series("", index=pd.Index(ids, name=sample_key))
    if column not in adata.obs:
        raise ItmeInputError(
            where=f"obs column {column!r}",
            expected="a sample-level column to colour samples by",
            found=f"obs columns {fmt_ids(adata.obs.columns)}",
            fix="Join it first (itme.io.add_clinical), or pass another column.",
        )
    frame = pd.DataFrame({"s": samples.to_numpy(), "g": adata.obs[column].astype(str).to_numpy()})
    per = frame.groupby("s", sort=True)["g"].first()
    per.index.name = sample_key
    return per


def _ordered_levels(values: pd.Series, first: Sequence[str] = ()) -> list[str]:
    present = list(dict.fromkeys(sorted(values.unique())))
    lead = [v for v in first if v in present]
    return lead + [v for v in present if v not in lead]


def ds_heatmap(
    adata: AnnData,
    *,
    key: str = "differential_state",
    top: int = 20,
    group: str | None = None,
    scale: bool = True,
    cmap: str = "RdBu_r",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of the top differential-state calls (CATALYST ``plotDiffHeatmap``).

    Rows are the ``top`` subset × marker tests of ``uns[key]["table"]`` with the smallest
    adjusted p (ties by p), in that order, top row first; columns are samples, grouped by
    ``group`` (reference level first); cells are the per-sample medians of the record
    (``uns[key]["medians"]``; blank where the sample × subset had too few events). Each row's
    logFC and adjusted p are written on its right; a strip above the columns colours the
    groups.

    Parameters
    ----------
    adata
        Cells with ``uns[key]`` from :func:`itme.stats.differential_state`, and
        ``obs[group]``.
    key
        ``uns`` key of the differential-state record.
    top
        Number of calls drawn (fewer when fewer were tested).
    group
        Sample-level ``obs`` column for the column groups; default the contrast's column
        (``uns[key]["contrast"][0]`` for a ``(column, level, reference)`` contrast).
    scale
        Centre and scale each row to z-scores across samples (CATALYST scales rows too);
        ``False``: arcsinh medians.
    cmap
        Matplotlib colour map.
    figsize
        Figure size in inches (default from the table size).

    Returns
    -------
    matplotlib.figure.Figure
        Axes 0: the heatmap (y tick labels ``"<subset> · <marker>"``, the image array the
        drawn values); axes 1: the group strip; then the colour bar.

    Raises
    ------
    ItmeStateError
        ``uns[key]`` missing or without tested rows.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    if key not in adata.uns:
        raise ItmeStateError(
            f"uns[{key!r}] not found: run itme.stats.differential_state(..., key_added={key!r}) first"
        )
    if not isinstance(top, int | np.integer) or top < 1:
        raise ItmeParameterError("top", "an integer >= 1", top)
    rec = adata.uns[key]
    table, long = rec["table"], rec["medians"]
    groupby, sample_key = str(rec["groupby"]), str(rec["sample_key"])
    contrast = [str(c) for c in np.atleast_1d(rec["contrast"])]
    if group is None and len(contrast) == 3:
        group = contrast[0]
    tested = table[table["padj"].notna()]
    if tested.empty:
        raise ItmeStateError(f"uns[{key!r}]['table'] has no tested subset × marker")
    calls = tested.sort_values(["padj", "pvalue"], kind="stable").head(int(top))
    per = _sample_groups(adata, sample_key, group)
    order = _ordered_levels(per, contrast[:0:-1] if len(contrast) == 3 else ())
    samples = sorted(per.index, key=lambda s: (order.index(per[s]), s))
    frame = long.assign(**{sample_key: long[sample_key].astype(str)})
    frame = frame.set_index([groupby, sample_key])
    values = np.full((len(calls), len(samples)), np.nan)
    for i, (subset, marker) in enumerate(zip(calls[groupby], calls["marker"], strict=True)):
        row = frame.loc[str(subset)][marker] if str(subset) in frame.index.levels[0] else None
        if row is not None:
            values[i] = row.reindex(samples).to_numpy(dtype=float)
    label = "median (arcsinh)"
    if scale:
        mu = np.nanmean(values, axis=1, keepdims=True)
        sd = np.nanstd(values, axis=1, keepdims=True)
        values = (values - mu) / np.where(sd > 0, sd, 1.0)
        label = "median, z-score per row"
    names = [f"{s} · {m}" for s, m in zip(calls[groupby], calls["marker"], strict=True)]
    notes = [
        f"logFC {lfc:+.2f}   padj {p:.2g}"
        for lfc, p in zip(calls["logFC"], calls["padj"], strict=True)
    ]
    if figsize is None:
        figsize = (max(6.0, 0.28 * len(samples) + 6.0), max(3.0, 0.3 * len(calls) + 2.0))
    fig = Figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1, max(len(calls), 1) * 1.6), width_ratios=(30, 1))
    ax = fig.add_subplot(grid[1, 0])
    strip = fig.add_subplot(grid[0, 0], sharex=ax)
    lim = np.nanmax(np.abs(values)) if scale and np.isfinite(values).any() else None
    im = ax.imshow(
        np.ma.masked_invalid(values), aspect="auto", cmap=cmap, interpolation="nearest",
        vmin=-lim if lim else None, vmax=lim,
    )  # fmt: skip
    ax.set_yticks(range(len(calls)), names, fontsize=8)
    ax.set_xticks(range(len(samples)), samples, rotation=90, fontsize=7)
    ax.set_xlabel(sample_key)
    for i, note in enumerate(notes):
        ax.text(len(samples) - 0.4, i, "  " + note, va="center", ha="left", fontsize=7)
    codes = np.array([[order.index(per[s]) for s in samples]])
    strip.imshow(
        codes, aspect="auto", cmap=ListedColormap([f"C{k % 10}" for k in range(len(order))]),
        vmin=-0.5, vmax=len(order) - 0.5, interpolation="nearest",
    )  # fmt: skip
    strip.set_yticks([0], [group or ""], fontsize=8)
    strip.tick_params(axis="x", labelbottom=False, bottom=False)
    for k, level in enumerate(order):
        cols = np.flatnonzero(codes[0] == k)
        if group is not None and cols.size:
            strip.text(cols.mean(), 0, level, ha="center", va="center", fontsize=8, color="white")
    fig.colorbar(im, cax=fig.add_subplot(grid[1, 1]), label=label)
    title = " vs ".join(contrast[1:]) if len(contrast) == 3 else contrast[0]
    strip.set_title(f"top {len(calls)} differential-state calls ({title})", fontsize=9)
    return fig


def _sample_profiles(
    adata: AnnData, sample_key: str, markers: list[str], layer: str | None, samples: pd.Index
) -> np.ndarray:
    codes = samples.get_indexer(adata.obs[sample_key].astype(str))
    X = matrix(adata, layer)[:, adata.var_names.get_indexer(markers)]
    med, _ = group_medians(X, codes, np.zeros(adata.n_obs, dtype=np.int64), len(samples), 1)
    return med[:, 0, :]


def pbmds(
    adata: AnnData,
    *,
    color: str | None = None,
    sample_key: str = "sample_id",
    markers: Sequence[str] | None = None,
    layer: str | None = None,
    label: bool = True,
    figsize: tuple[float, float] = (6.0, 5.0),
) -> Figure:
    """Pseudobulk MDS of samples (CATALYST ``pbMDS``): one point per sample.

    Each sample's profile is the median of every marker over its events (``X``: arcsinh);
    samples are placed by classical MDS of the Euclidean distances between profiles (the
    principal-component map of the centred medians). Samples that differ by condition
    separate; those that differ by donor or batch show it.

    Parameters
    ----------
    adata
        Events × markers with ``obs[sample_key]``.
    color
        Sample-level ``obs`` column colouring the points (``None``: one colour).
    sample_key
        ``obs`` column identifying samples.
    markers
        Profile markers (default: ``type`` and ``state`` markers, else all).
    layer
        Layer of transformed values (default ``X``).
    label
        Write each sample's id next to its point.
    figsize
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One scatter panel: one collection per level of ``color`` (legend = level) whose
        offsets are the MDS coordinates, axis labels with the share of the distances each
        dimension carries, and the sample ids as texts.

    Raises
    ------
    ItmeInputError
        Fewer than 3 samples, or ``color`` / ``sample_key`` missing from ``obs``.
    """
    from matplotlib.figure import Figure

    per = _sample_groups(adata, sample_key, color)
    if len(per) < 3:
        raise ItmeInputError(
            where=f"pbmds: obs column {sample_key!r}",
            expected="at least 3 samples",
            found=f"{len(per)} sample(s)",
        )
    if markers is None:
        has_class = "marker_class" in adata.var
        markers = markers_of_class(adata, ("type", "state")) if has_class else []
        markers = markers or [str(v) for v in adata.var_names]
    else:
        markers = check_markers(adata, markers)
    profiles = _sample_profiles(adata, sample_key, list(markers), layer, per.index)
    keep = np.isfinite(profiles).all(axis=0)
    coords, explained = classical_mds(profiles[:, keep])
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for k, level in enumerate(_ordered_levels(per)):
        rows = np.flatnonzero((per == level).to_numpy())
        ax.scatter(
            coords[rows, 0], coords[rows, 1], s=36, color=f"C{k % 10}",
            label=level if color is not None else None,
        )  # fmt: skip
    if label:
        for (x, y), name in zip(coords, per.index, strict=True):
            ax.annotate(name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(f"MDS dim 1 ({explained[0]:.0%})")
    ax.set_ylabel(f"MDS dim 2 ({explained[1]:.0%})")
    ax.set_title(f"pseudobulk MDS: per-sample medians of {int(keep.sum())} markers", fontsize=9)
    if color is not None:
        ax.legend(title=color, fontsize=8, frameon=False)
    return fig


def expression_density(
    adata: AnnData,
    *,
    markers: Sequence[str],
    condition: str,
    groupby: str = "subset",
    groups: Sequence[str] | None = None,
    sample_key: str = "sample_id",
    layer: str | None = None,
    bandwidth: float = 0.15,
    bins: int = 256,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Density of each marker by condition, one panel per marker × subset (CATALYST ``plotExprs``).

    In every panel each condition's curve is the mean of its samples' densities (each sample
    weighs the same, as in the pseudobulk tests), Gaussian kernel of ``bandwidth`` on the
    transformed scale; the number of samples of each condition is in the legend.

    Parameters
    ----------
    adata
        Events × markers (``X``: arcsinh) with ``obs[groupby]``, ``obs[condition]`` and
        ``obs[sample_key]``.
    markers
        Markers, one row of panels each.
    condition
        Sample-level ``obs`` column, one curve per level.
    groupby
        ``obs`` column of the subsets, one column of panels each.
    groups
        Subsets shown, in order (default: every label of ``obs[groupby]`` with events).
    sample_key
        ``obs`` column identifying samples.
    layer
        Layer of transformed values (default ``X``).
    bandwidth
        Kernel standard deviation (arcsinh units).
    bins
        Grid points of each curve.
    figsize
        Figure size in inches (default from the number of panels).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(markers)`` × ``len(groups)`` axes, row-major; in each, one line per condition
        level (``label`` = the level, x = grid, y = density).

    Raises
    ------
    ItmeInputError
        ``obs[groupby]`` or ``obs[condition]`` missing, or an unknown group.
    """
    from matplotlib.figure import Figure

    markers = check_markers(adata, markers)
    per = _sample_groups(adata, sample_key, condition)
    if groupby not in adata.obs:
        raise ItmeInputError(
            where=f"obs column {groupby!r}",
            expected="cell groups (subsets)",
            found=f"obs columns {fmt_ids(adata.obs.columns)}",
            fix="Run itme.tl.annotate first, or pass groupby='metacluster'.",
        )
    if not bandwidth > 0:
        raise ItmeParameterError("bandwidth", "> 0", bandwidth)
    labels = adata.obs[groupby].astype(str).to_numpy()
    present = pd.unique(labels)
    if groups is None:
        cats = adata.obs[groupby]
        names = (
            [str(c) for c in cats.cat.categories]
            if isinstance(cats.dtype, pd.CategoricalDtype)
            else sorted(present)
        )
        groups = [g for g in names if g in set(present)]
    else:
        unknown = [g for g in groups if g not in set(present)]
        if unknown:
            raise ItmeInputError(
                where=f"expression_density: groups (obs[{groupby!r}])",
                expected=f"labels with events ({fmt_ids(sorted(present))})",
                found=fmt_ids(unknown),
            )
        groups = [str(g) for g in groups]
    samples = adata.obs[sample_key].astype(str).to_numpy()
    X = matrix(adata, layer)[:, adata.var_names.get_indexer(markers)]
    levels = _ordered_levels(per)
    n_rows, n_cols = len(markers), len(groups)
    if figsize is None:
        figsize = (2.4 * n_cols + 1.0, 1.9 * n_rows + 0.8)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex="row")
    for i, marker in enumerate(markers):
        x = X[:, i].astype(float)
        lo, hi = np.nanmin(x), np.nanmax(x)
        edges = np.linspace(lo - 3 * bandwidth, hi + 3 * bandwidth, int(bins) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        for j, group in enumerate(groups):
            ax = axes[i, j]
            in_group = labels == group
            for k, level in enumerate(levels):
                curves = [
                    binned_density(x[in_group & (samples == s)], edges, bandwidth)
                    for s in per.index[(per == level).to_numpy()]
                    if (in_group & (samples == s)).any()
                ]
                if curves:
                    ax.plot(
                        centres, np.mean(curves, axis=0), color=f"C{k % 10}", lw=1.2,
                        label=f"{level} (n={len(curves)})",
                    )  # fmt: skip
            if i == 0:
                ax.set_title(group, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{marker}\ndensity", fontsize=8)
            ax.tick_params(labelsize=7)
            if ax.lines:
                ax.legend(fontsize=6, frameon=False)
    fig.supxlabel("expression (arcsinh)", fontsize=9)
    return fig
