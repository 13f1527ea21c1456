"""RNA-seq figures: NES bar chart (the paper's Fig. 5) and volcano plot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme.errors import ItmeParameterError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["gsea_nes", "volcano"]

UP_COLOR = "#c0392b"
DOWN_COLOR = "#2166ac"
GREY = "#b0b0b0"


def _need(table: pd.DataFrame, columns: list[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ItmeParameterError(what, "a DataFrame", type(table).__name__)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ItmeParameterError(what, f"a table with columns {columns}", f"missing {missing}")


def _pretty(term: str) -> str:
    return term.removeprefix("HALLMARK_").replace("_", " ")


def gsea_nes(
    gsea: pd.DataFrame,
    *,
    fdr: float = 0.05,
    top: int | None = None,
    up_label: str = "up",
    down_label: str = "down",
    title: str | None = None,
    permutations: int | None = None,
) -> Figure:
    """Horizontal bar chart of the NES of gene sets at ``FDR < fdr``, coloured by direction.

    Mirrors Fig. 5 of Visram et al. 2021: one bar per significant Hallmark set (the
    ``HALLMARK_`` prefix is dropped), positive NES (higher in the test group) in red,
    negative in blue, sorted by NES. The FDR q-value is printed beside each bar.

    Parameters
    ----------
    gsea
        Output of :func:`itme.rna.gsea` (reads ``Term``, ``NES``, ``FDR``).
    fdr
        Sets with ``FDR < fdr`` are drawn.
    top
        Draw at most this many sets per direction (largest ``|NES|``); ``None`` draws all.
    up_label
        Legend text of positive NES (e.g. ``"up in clusters 2+3"``).
    down_label
        Legend text of negative NES.
    title
        Axes title; default names the FDR threshold.
    permutations
        Permutations of the GSEA (default ``gsea.attrs["permutations"]``, set by
        :func:`itme.rna.gsea`): a q-value of 0 is printed as ``q<1/permutations``.

    Returns
    -------
    The matplotlib Figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    _need(gsea, ["Term", "NES", "FDR"], "gsea")
    if not 0 < fdr <= 1:
        raise ItmeParameterError("fdr", "a number in (0, 1]", fdr)
    sig = gsea[pd.to_numeric(gsea["FDR"], errors="coerce") < fdr].copy()
    if top is not None:
        up = sig[sig["NES"] > 0].nlargest(top, "NES")
        down = sig[sig["NES"] < 0].nsmallest(top, "NES")
        sig = pd.concat([up, down])
    sig = sig.sort_values("NES")
    height = max(2.5, 0.32 * len(sig) + 1.2)
    fig = Figure(figsize=(7.0, height), layout="constrained")
    ax = fig.add_subplot()
    if sig.empty:
        ax.text(
            0.5,
            0.5,
            f"no gene set at FDR < {fdr:g}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        pos = np.arange(len(sig))
        nes = sig["NES"].to_numpy(dtype=float)
        colors = np.where(nes > 0, UP_COLOR, DOWN_COLOR)
        ax.barh(pos, nes, color=colors, height=0.7)
        ax.set_yticks(pos, [_pretty(str(t)) for t in sig["Term"]], fontsize=8)
        ax.axvline(0, color="black", linewidth=0.8)
        span = float(np.abs(nes).max())
        n_perm = permutations if permutations is not None else gsea.attrs.get("permutations")
        for y, v, q in zip(pos, nes, sig["FDR"].to_numpy(dtype=float), strict=True):
            # a permutation q of 0 means "below 1 / permutations", not zero
            text = f"q={q:.2g}" if q > 0 or not n_perm else f"q<{1 / float(n_perm):.2g}"
            ax.text(
                v + (0.03 * span if v > 0 else -0.03 * span),
                y,
                text,
                va="center",
                ha="left" if v > 0 else "right",
                fontsize=7,
            )
        ax.set_xlim(-1.35 * span if (nes < 0).any() else 0, 1.35 * span if (nes > 0).any() else 0)
        ax.set_xlabel("normalised enrichment score (NES)")
        ax.legend(
            handles=[
                Patch(color=UP_COLOR, label=up_label),
                Patch(color=DOWN_COLOR, label=down_label),
            ],
            loc="lower right",
            fontsize=8,
            frameon=False,
        )
    ax.set_title(title if title is not None else f"gene sets at FDR < {fdr:g}")
    return fig


def volcano(
    results: pd.DataFrame,
    *,
    alpha: float = 0.1,
    lfc: float = 1.0,
    label: int = 10,
    shrunk: bool = False,
    title: str | None = None,
) -> Figure:
    """Volcano plot: log2 fold change against ``-log10(pvalue)``.

    Genes with ``padj < alpha`` and ``|log2FoldChange| >= lfc`` are coloured (red up, blue
    down); the ``label`` genes with the smallest ``padj`` are named by ``gene_name``.
    p-values of 0 are drawn at the smallest positive p-value. With ``shrunk=True`` the x axis
    (and the ``lfc`` threshold) use the shrunken fold changes ``log2FoldChange_shrunk``
    (``differential_expression(..., lfc_shrink=True)``), which pull the noisy fold changes of
    low-count genes towards 0; the p-values are the Wald test's either way.

    Parameters
    ----------
    results
        Output of :func:`itme.rna.differential_expression` (reads ``log2FoldChange``,
        ``pvalue``, ``padj`` and, for labels, ``gene_name``).
    alpha
        Adjusted p-value threshold for colouring.
    lfc
        Absolute log2 fold change threshold for colouring (dashed lines).
    label
        Number of genes to name (0 for none).
    shrunk
        Plot ``log2FoldChange_shrunk`` instead of ``log2FoldChange``.
    title
        Axes title; default the contrast in ``results.attrs`` when present.

    Returns
    -------
    The matplotlib Figure.
    """
    from matplotlib.figure import Figure

    column = "log2FoldChange_shrunk" if shrunk else "log2FoldChange"
    if shrunk and isinstance(results, pd.DataFrame) and column not in results.columns:
        raise ItmeParameterError(
            "results",
            f"a table with a {column!r} column when shrunk=True",
            f"columns {list(map(str, results.columns))}",
            fix="Run itme.rna.differential_expression(..., lfc_shrink=True)",
        )
    _need(results, [column, "pvalue", "padj"], "results")
    if not 0 < alpha < 1:
        raise ItmeParameterError("alpha", "a number in (0, 1)", alpha)
    if lfc < 0:
        raise ItmeParameterError("lfc", "a non-negative number", lfc)
    df = results[np.isfinite(results[column]) & np.isfinite(results["pvalue"])]
    p = df["pvalue"].to_numpy(dtype=float)
    positive = p[p > 0]
    floor = positive.min() if positive.size else 1e-300
    y = -np.log10(np.maximum(p, floor))
    x = df[column].to_numpy(dtype=float)
    padj = df["padj"].to_numpy(dtype=float)
    sig = np.nan_to_num(padj, nan=1.0) < alpha
    up = sig & (x >= lfc)
    down = sig & (x <= -lfc)
    rest = ~(up | down)
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x[rest], y[rest], s=4, color=GREY, alpha=0.6, linewidths=0, rasterized=True)
    for name, sel, color in (("up", up, UP_COLOR), ("down", down, DOWN_COLOR)):
        ax.scatter(
            x[sel],
            y[sel],
            s=6,
            color=color,
            linewidths=0,
            label=f"{name} ({int(sel.sum())})",
            rasterized=True,
        )
    if lfc > 0:
        for v in (-lfc, lfc):
            ax.axvline(v, color="black", linestyle="--", linewidth=0.6)
    if label > 0 and len(df):
        names = (
            df["gene_name"].astype(str).to_numpy()
            if "gene_name" in df.columns
            else df.index.astype(str).to_numpy()
        )
        order = np.argsort(np.nan_to_num(padj, nan=np.inf), kind="mergesort")[:label]
        for i in order:
            if np.isfinite(padj[i]):
                ax.annotate(
                    names[i], (x[i], y[i]), fontsize=7, xytext=(3, 2), textcoords="offset points"
                )
    ax.set_xlabel("shrunken log2 fold change" if shrunk else "log2 fold change")
    ax.set_ylabel("-log10 p-value")
    if title is None:
        contrast = results.attrs.get("contrast") if isinstance(results.attrs, dict) else None
        title = (
            f"{contrast[0]}: {contrast[1]} vs {contrast[2]}"
            if isinstance(contrast, list | tuple) and len(contrast) == 3
            else "differential expression"
        )
    ax.set_title(title)
    ax.legend(
        loc="upper left", fontsize=8, frameon=False, title=f"padj < {alpha:g}", title_fontsize=8
    )
    return fig
