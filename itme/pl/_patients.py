"""Patient-level figures: heatmap with dendrogram, box plots, compartments, Kaplan–Meier.

Every function returns a matplotlib Figure and never writes files. Keys read:
``obs[key]`` and ``uns[key]`` of :func:`itme.tl.patient_clusters` (``linkage``, ``features``,
``transform``, ``k``), ``X``, ``obsm["derived"]`` and ``obs`` of the patients AnnData (group and
status columns, clinical ones joined by :func:`itme.io.add_clinical`), the DataFrames returned by
:mod:`itme.stats`, and the Kaplan–Meier fit :func:`itme.stats.kaplan_meier` stored in
``uns["kaplan_meier_<endpoint>"]`` (nothing is fitted here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from itme._adata import feature_table, group_labels, is_anndata, obs_columns
from itme._colors import category_colors, palette
from itme.core.patients.composition import transform as apply_transform
from itme.core.stats.survival import check_times, n_at_risk_from_curve
from itme.errors import ItmeParameterError, ItmeStateError

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure

__all__ = ["compartment_bars", "kaplan_meier", "patient_heatmap", "subset_boxplots"]

#: The paper's Fig. 4 compartments (Visram et al. 2021, legend of Fig. 4).
PAPER_COMPARTMENTS: dict[str, dict[str, list[str]]] = {
    "CD4+ T cells": {
        "Tn": ["T1", "T2"],
        "Tcm": ["T6", "T8"],
        "Tem": ["T4", "T7", "T9"],
        "Teff": ["T10"],
    },
    "CD8+ T cells": {
        "Tn": ["T11", "T12"],
        "Tcm": ["T13", "T14", "T15"],
        "Tem": ["T17", "T18"],
        "Teff": ["T16", "T19", "T20"],
    },
}


def _palette(n: int, name: str = "tab10") -> list:
    import matplotlib as mpl

    cmap = mpl.colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


#: steps (months) of the Kaplan–Meier time axis, the first giving at most 7 ticks is used
_MONTH_STEPS = (1, 2, 3, 6, 12, 24, 36, 60, 120, 240)


def month_ticks(tmax: float, max_ticks: int = 7) -> np.ndarray:
    """Ticks at round months from 0 to the follow-up: multiples of 1, 3, 6, 12, 24, ... months.

    Parameters
    ----------
    tmax
        Longest follow-up (months).
    max_ticks
        At most this many ticks.

    Returns
    -------
    The ticks (months), starting at 0, the last at or below ``tmax``.
    """
    tmax = max(float(tmax), 0.0)
    step = next((s for s in _MONTH_STEPS if tmax / s < max_ticks), _MONTH_STEPS[-1])
    return np.arange(0.0, tmax + 1e-9, step) if tmax > 0 else np.array([0.0])


def _link_colors(z: np.ndarray, labels: np.ndarray, colors: Mapping[str, Any]) -> Any:
    """``link_color_func`` of scipy's dendrogram: a link inside one cluster in its colour."""
    members: list[set[str]] = [{str(lab)} for lab in labels]
    for a, b, *_ in z:
        members.append(members[int(a)] | members[int(b)])

    def color(node: int) -> str:
        inside = members[node]
        if len(inside) == 1:
            return str(colors[next(iter(inside))])
        return "#808080"

    return color


def _clustering(adata: AnnData, key: str) -> dict:
    if key not in adata.obs.columns or key not in adata.uns or "linkage" not in adata.uns[key]:
        raise ItmeStateError(
            f"obs[{key!r}] / uns[{key!r}]['linkage'] not found: run "
            f"itme.tl.patient_clusters(adata, key_added={key!r}) first"
        )
    return adata.uns[key]


def patient_heatmap(
    adata: AnnData,
    *,
    key: str = "itme_cluster",
    status_key: str | None = "disease_status",
    order_features: bool = True,
    vmax: float = 3.0,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of the clustered subsets with the Ward dendrogram and a disease-status bar (Fig. 1).

    Columns are samples in dendrogram order (clusters 1..k from left to right, as numbered by
    :func:`itme.tl.patient_clusters`); rows are the clustering features, shown on the scale
    they were clustered on (``uns[key]["transform"]``; z-scores clipped at ±``vmax``).

    Parameters
    ----------
    adata
        Patients AnnData clustered by :func:`itme.tl.patient_clusters`.
    key
        ``key_added`` of the clustering.
    status_key
        ``obs`` column coloured in a bar under the dendrogram (skipped when absent); ``None``
        for none.
    order_features
        Order rows by an average-linkage clustering of the features (otherwise as stored).
    vmax
        Colour limit of z-scores / centred values.
    figsize
        Figure size in inches (default from the table's shape).

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch
    from scipy.cluster import hierarchy

    params = _clustering(adata, key)
    z = np.asarray(params["linkage"], dtype=float)
    features = list(params["features"])
    transform = str(params["transform"])
    k = int(params["k"])
    table = feature_table(adata, features=features, source="X")
    values = apply_transform(table.to_numpy(), transform)
    order = hierarchy.leaves_list(z)
    mat = values[order].T
    if order_features and mat.shape[0] > 2:
        feat_order = hierarchy.leaves_list(hierarchy.linkage(mat, method="average"))
        mat, features = mat[feat_order], [features[i] for i in feat_order]
    n = adata.n_obs
    status = None
    if status_key is not None and status_key in adata.obs.columns:
        status = adata.obs[status_key].astype(object)
    width, height = figsize or (max(6.0, 0.18 * n + 2.5), max(5.0, 0.2 * len(features) + 3.0))
    fig = plt.figure(figsize=(width, height))
    ratios = [2.0, 0.3] + ([0.3] if status is not None else []) + [max(2.0, 0.2 * len(features))]
    gs = fig.add_gridspec(
        len(ratios), 2, height_ratios=ratios, width_ratios=[1, 0.03], hspace=0.05, wspace=0.02
    )
    ax_d = fig.add_subplot(gs[0, 0])
    cats = [str(c) for c in adata.obs[key].cat.categories]
    colors = category_colors(adata, key, cats)
    hierarchy.dendrogram(
        z,
        ax=ax_d,
        link_color_func=_link_colors(z, adata.obs[key].astype(str).to_numpy(), colors),
        no_labels=True,
    )
    ax_d.set_axis_off()
    ax_d.set_xlim(0, 10 * n)
    labels = adata.obs[key].astype(str).to_numpy()[order]
    ax_c = fig.add_subplot(gs[1, 0], sharex=ax_d)
    ax_c.imshow(
        np.array([[to_rgba(colors[lab]) for lab in labels]]),
        aspect="auto",
        extent=(0, 10 * n, 0, 1),
    )
    ax_c.set_yticks([0.5], [key])
    ax_c.tick_params(bottom=False, labelbottom=False)
    for c in cats:
        pos = np.flatnonzero(labels == c)
        ax_c.text(10 * pos.mean() + 5, 0.5, c, ha="center", va="center", fontsize=9, weight="bold")
    row = 2
    handles = []
    if status is not None:
        levels = [
            str(v)
            for v in (
                adata.obs[status_key].cat.categories
                if status_key in adata.obs
                and isinstance(adata.obs[status_key].dtype, pd.CategoricalDtype)
                else sorted(status.dropna().astype(str).unique())
            )
        ]
        # the status's own stored colours; otherwise palette colours after the clusters'
        # ones, so that the status bar never reuses a cluster's colour for another meaning
        scol = (
            {lv: to_rgba(c) for lv, c in category_colors(adata, status_key, levels).items()}
            if f"{status_key}_colors" in adata.uns
            else {
                lv: to_rgba(c)
                for lv, c in zip(levels, palette(len(cats) + len(levels))[len(cats) :], strict=True)
            }
        )
        bar = [
            scol.get(str(s), (0.85, 0.85, 0.85, 1.0)) if pd.notna(s) else (0.85, 0.85, 0.85, 1.0)
            for s in status.to_numpy()[order]
        ]
        ax_s = fig.add_subplot(gs[2, 0], sharex=ax_d)
        ax_s.imshow(np.array([bar]), aspect="auto", extent=(0, 10 * n, 0, 1))
        ax_s.set_yticks([0.5], [status_key])
        ax_s.tick_params(bottom=False, labelbottom=False)
        handles = [Patch(color=scol[lv], label=lv) for lv in levels]
        row = 3
    ax_h = fig.add_subplot(gs[row, 0], sharex=ax_d)
    diverging = transform in ("zscore", "clr")
    im = ax_h.imshow(
        np.clip(mat, -vmax, vmax) if diverging else mat,
        aspect="auto",
        cmap="RdBu_r" if diverging else "viridis",
        vmin=-vmax if diverging else None,
        vmax=vmax if diverging else None,
        extent=(0, 10 * n, len(features), 0),
        interpolation="nearest",
    )
    ax_h.set_yticks(np.arange(len(features)) + 0.5, features, fontsize=7)
    ax_h.set_xticks(
        10 * np.arange(n) + 5, adata.obs_names.astype(str)[order], rotation=90, fontsize=6
    )
    cax = fig.add_subplot(gs[row, 1])
    fig.colorbar(
        im,
        cax=cax,
        label={"zscore": "z-score", "clr": "clr", "arcsine_sqrt": "arcsin √p"}.get(
            transform, "% of CD45+"
        ),
    )
    if handles:
        ax_d.legend(handles=handles, title=status_key, loc="upper right", fontsize=7, frameon=False)
    fig.suptitle(f"iTME clusters ({params.get('method', 'ward')}, k = {k}, {transform})")
    return fig


def subset_boxplots(
    adata: AnnData,
    *,
    results: pd.DataFrame,
    groupby: str = "itme_cluster",
    alpha: float = 0.05,
    source: str = "X",
    ncols: int = 5,
    max_panels: int = 40,
) -> Figure:
    """Box plots of the features that differ between groups, titled with their q-values (Fig. 3).

    Parameters
    ----------
    adata
        Patients AnnData (or DataFrame) that ``results`` was computed on.
    results
        Table of :func:`itme.stats.compare_groups` (columns ``feature``, ``padj``).
    groupby
        Group column (``obs``) used for ``results``.
    alpha
        Features with ``padj < alpha`` are shown, smallest q first.
    source
        ``"X"`` or the ``obsm`` DataFrame the features come from.
    ncols
        Panels per row.
    max_panels
        At most this many panels (the most significant).

    Returns
    -------
    The matplotlib Figure (a single message panel when nothing is significant).
    """
    import matplotlib.pyplot as plt

    missing = (
        ["feature", "padj"]
        if not isinstance(results, pd.DataFrame)
        else [c for c in ("feature", "padj") if c not in results.columns]
    )
    if missing:
        raise ItmeParameterError(
            "results",
            "the DataFrame of itme.stats.compare_groups",
            f"{type(results).__name__} without column(s) {', '.join(missing)}",
        )
    sig = results[results["padj"] < alpha].sort_values("padj").head(max_panels)
    if sig.empty:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, f"no feature with q < {alpha:g}", ha="center", va="center")
        ax.set_axis_off()
        return fig
    table = feature_table(adata, features=list(sig["feature"]), source=source)
    frame = obs_columns(adata, [groupby], param="groupby")
    labels = group_labels(frame, groupby, min_size=1, what="subset_boxplots")
    cats = list(labels.cat.categories)
    colors = list(category_colors(adata, groupby, cats).values())
    nrows = int(np.ceil(len(sig) / ncols))
    fig, axes = plt.subplots(
        nrows,
        min(ncols, len(sig)),
        figsize=(2.3 * min(ncols, len(sig)), 2.4 * nrows),
        squeeze=False,
    )
    for ax, (_, r) in zip(axes.ravel(), sig.iterrows(), strict=False):
        data = [
            table.loc[labels.index[labels == g], r["feature"]].dropna().to_numpy() for g in cats
        ]
        bp = ax.boxplot(
            data,
            tick_labels=cats,
            patch_artist=True,
            widths=0.6,
            showfliers=False,
            medianprops={"color": "black"},  # visible on every group colour
        )
        for patch, color in zip(bp["boxes"], colors, strict=True):
            patch.set_facecolor(color)
        for i, d in enumerate(data):
            offsets = np.linspace(-0.15, 0.15, d.size) if d.size > 1 else np.zeros(d.size)
            ax.plot(i + 1 + offsets, d, "o", color="k", ms=2.5, alpha=0.7)
        ax.set_title(f"{r['feature']}\nq = {r['padj']:.2g}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(sig) :]:
        ax.set_axis_off()
    fig.supylabel("% of CD45+" if source == "X" else source)
    fig.supxlabel(groupby)
    fig.tight_layout()
    return fig


def compartment_bars(
    adata: AnnData,
    *,
    groupby: str = "itme_cluster",
    compartments: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> Figure:
    """Stacked bars of T-cell compartments per group, mean ± standard error (Fig. 4).

    For each panel (e.g. CD4+ T cells) and sample, each compartment's share is the sum of its
    subsets over the sum of all the panel's subsets (%); bars show the mean share per group,
    error bars the standard error of the mean.

    Parameters
    ----------
    adata
        Patients AnnData (``X`` = % of CD45+, subsets as ``var_names``).
    groupby
        Group column of ``obs``.
    compartments
        ``{panel: {compartment: [subsets]}}``; default the paper's Fig. 4 definitions
        (CD4: Tn T1, T2; Tcm T6, T8; Tem T4, T7, T9; Teff T10. CD8: Tn T11, T12; Tcm T13–T15;
        Tem T17, T18; Teff T16, T19, T20).

    Returns
    -------
    The matplotlib Figure (one axes per panel).
    """
    import matplotlib.pyplot as plt

    compartments = PAPER_COMPARTMENTS if compartments is None else compartments
    wanted = [s for panel in compartments.values() for subs in panel.values() for s in subs]
    missing = [s for s in dict.fromkeys(wanted) if s not in set(adata.var_names.astype(str))]
    if missing:
        raise ItmeParameterError(
            "compartments",
            "subsets among var_names",
            missing,
            fix="Pass compartments={panel: {compartment: [subsets]}} for this panel.",
        )
    table = feature_table(adata, features=list(dict.fromkeys(wanted)), source="X")
    frame = obs_columns(adata, [groupby], param="groupby")
    labels = group_labels(frame, groupby, min_size=1, what="compartment_bars")
    cats = list(labels.cat.categories)
    fig, axes = plt.subplots(
        1, len(compartments), figsize=(3.2 * len(compartments) + 1, 4), squeeze=False
    )
    for ax, (panel, comps) in zip(axes.ravel(), compartments.items(), strict=True):
        sums = pd.DataFrame({c: table[list(subs)].sum(axis=1) for c, subs in comps.items()})
        total = sums.sum(axis=1).replace(0, np.nan)
        share = sums.div(total, axis=0) * 100
        bottom = np.zeros(len(cats))
        for color, comp in zip(_palette(len(comps), "Set2"), comps, strict=True):
            by = [share.loc[labels.index[labels == g], comp].dropna() for g in cats]
            mean = np.array([b.mean() for b in by])
            sem = np.array([b.std(ddof=1) / np.sqrt(len(b)) if len(b) > 1 else 0.0 for b in by])
            ax.bar(cats, mean, bottom=bottom, color=color, label=comp, edgecolor="white")
            ax.errorbar(
                np.arange(len(cats)),
                bottom + mean,
                yerr=sem,
                fmt="none",
                ecolor="k",
                capsize=3,
                lw=0.8,
            )
            bottom += np.nan_to_num(mean)
        ax.set_title(panel)
        ax.set_xlabel(groupby)
        ax.set_ylabel("% of compartment total (mean ± SE)")
        ax.set_ylim(0, 105)
    axes.ravel()[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def kaplan_meier(
    adata: AnnData,
    *,
    endpoint: str = "os",
    key: str | None = None,
    times: Sequence[float] | None = None,
    conf_int: bool = True,
    show_logrank: bool = True,
) -> Figure:
    """Kaplan–Meier curves per group with censoring marks and a numbers-at-risk table.

    Draws the fit that :func:`itme.stats.kaplan_meier` stored (nothing is refitted, so the
    figure's curves, numbers at risk and log-rank p are those of the ``survival`` and
    ``logrank`` tables). Without a stored fit, an :class:`~itme.errors.ItmeStateError` says
    which call to make first.

    Parameters
    ----------
    adata
        Patients AnnData on which :func:`itme.stats.kaplan_meier` ran.
    endpoint
        Endpoint of the fit (selects the default ``key``).
    key
        ``uns`` entry of the fit (default ``"kaplan_meier_<endpoint>"``, the ``key_added``
        default of :func:`itme.stats.kaplan_meier`).
    times
        Times (months) of the ticks and of the risk table columns (default: round months,
        multiples of 12 for a follow-up of a few years, see :func:`month_ticks`).
    conf_int
        Shade the pointwise confidence band (of the type and level stored with the fit).
    show_logrank
        Write the stored log-rank p-value in the title (two or more groups).

    Returns
    -------
    The matplotlib Figure (curves above, numbers at risk below).
    """
    import matplotlib.pyplot as plt

    key = f"kaplan_meier_{endpoint}" if key is None else key
    if not is_anndata(adata):
        raise ItmeParameterError(
            "adata",
            "an AnnData on which itme.stats.kaplan_meier stored its fit",
            type(adata).__name__,
        )
    fit = adata.uns.get(key)
    if not isinstance(fit, Mapping) or "curves" not in fit:
        raise ItmeStateError(
            f"uns[{key!r}] (a Kaplan–Meier fit) not found: run "
            f"itme.stats.kaplan_meier(adata, endpoint={endpoint!r}, groupby=...) first"
        )
    curves = fit["curves"]
    names = [str(g) for g in fit["groups"]]
    sizes = dict(zip(fit["table"]["group"].astype(str), fit["table"]["n"], strict=True))
    groupby = fit.get("groupby")
    endpoint = str(fit.get("endpoint", endpoint))
    parts = [(name, curves[curves["group"].astype(str) == name]) for name in names]
    tmax = float(curves["time"].max())
    times = month_ticks(tmax) if times is None else check_times(times)
    fig = plt.figure(figsize=(6.5, 4.8 + 0.25 * len(parts)))
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.5 + 0.3 * len(parts)], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    colors = (
        list(category_colors(adata, str(groupby), names).values())
        if groupby is not None
        else ["black"] * len(parts)
    )
    for (name, curve), color in zip(parts, colors, strict=True):
        t = np.concatenate([[0.0], curve["time"].to_numpy()])
        s = np.concatenate([[1.0], curve["surv"].to_numpy()])
        ax.step(t, s, where="post", color=color, label=f"{name} (n={int(sizes[name])})")
        cens = curve[curve["n_censor"] > 0]
        ax.plot(cens["time"], cens["surv"], "|", color=color, ms=8)
        if conf_int:
            lo = np.concatenate([[1.0], curve["lower"].to_numpy()])
            hi = np.concatenate([[1.0], curve["upper"].to_numpy()])
            ax.fill_between(t, lo, hi, step="post", color=color, alpha=0.15, lw=0)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, max(tmax, times.max()) * 1.02)
    ax.set_ylabel(f"{endpoint.upper()} probability")
    ax.legend(title=groupby, frameon=False, fontsize=8)
    title = f"Kaplan–Meier: {endpoint.upper()}"
    if show_logrank and len(parts) > 1 and "logrank_pvalue" in fit:
        title += f" (log-rank p = {float(fit['logrank_pvalue']):.3g})"
    ax.set_title(title)
    ax.set_xticks(times)
    ax_r = fig.add_subplot(gs[1], sharex=ax)
    for i, ((_name, curve), color) in enumerate(zip(parts, colors, strict=True)):
        y = len(parts) - i - 0.5
        risk = n_at_risk_from_curve(curve["time"].to_numpy(), curve["n_risk"].to_numpy(), times)
        for t, r in zip(times, risk, strict=True):
            ax_r.text(t, y, str(int(r)), ha="center", va="center", fontsize=8, color=color)
    ax_r.set_ylim(0, len(parts))
    ax_r.set_yticks(
        [len(parts) - i - 0.5 for i in range(len(parts))], [p[0] for p in parts], fontsize=8
    )
    ax_r.set_xlabel("months")
    ax_r.tick_params(left=False)
    for side in ("top", "right", "left"):
        ax_r.spines[side].set_visible(False)
    ax_r.set_title("Number at risk", fontsize=9, loc="left")
    return fig
