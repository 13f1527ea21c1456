"""Batch figures: per-sample marker medians by batch, label shares by batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from itme.errors import ItmeStateError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["batch_labels", "batch_mds"]


def _result(adata: AnnData, key: str) -> dict:
    if key not in adata.uns:
        raise ItmeStateError(
            f"uns[{key!r}] not found: run itme.tl.batch_diagnostics(adata, key_added={key!r}) first"
        )
    return adata.uns[key]


def batch_mds(adata: AnnData, *, key: str = "batch_diagnostics") -> Figure:
    """Samples on the first two principal components of their marker medians, coloured by batch.

    CATALYST's ``pbMDS`` idea: samples that group by batch rather than mixing show a batch
    effect. The title gives the share of the medians' variance explained by batch.

    Parameters
    ----------
    adata
        Cells with ``uns[key]`` from :func:`itme.tl.batch_diagnostics`.
    key
        ``uns`` key of the diagnostics.

    Returns
    -------
    matplotlib.figure.Figure
        One scatter panel.
    """
    from matplotlib.figure import Figure

    res = _result(adata, key)
    pcs = res["pca"]
    explained = np.asarray(res["pca_explained"], dtype=float)
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (batch, rows) in enumerate(pcs.groupby("batch", sort=True)):
        ax.scatter(rows["PC1"], rows["PC2"], s=28, color=f"C{i % 10}", label=str(batch))
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})" if explained.size else "PC1")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})" if explained.size > 1 else "PC2")
    ax.set_title(
        f"per-sample marker medians: batch explains {res['r2']:.0%} (p = {res['pvalue']:.3g})",
        fontsize=9,
    )
    ax.legend(title="batch", fontsize=8, frameon=False)
    return fig


def batch_labels(adata: AnnData, *, key: str = "batch_diagnostics", top: int = 40) -> Figure:
    """Each label's share of every batch's events (a subset missing from one batch stands out).

    Parameters
    ----------
    adata
        Cells with ``uns[key]`` from :func:`itme.tl.batch_diagnostics` run with ``groupby``.
    key
        ``uns`` key of the diagnostics.
    top
        Labels shown (the largest by median share).

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal grouped bars, one group per label, one bar per batch.
    """
    from matplotlib.figure import Figure

    res = _result(adata, key)
    if "label_share" not in res:
        raise ItmeStateError(
            f"uns[{key!r}] has no label shares: run batch_diagnostics with groupby"
        )
    share = res["label_share"].set_index("label").drop(columns="ratio")
    share = share.loc[share.median(axis=1).sort_values(ascending=False).index[:top]]
    n, k = share.shape
    fig = Figure(figsize=(6.5, 0.25 * n * max(1, k / 3) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / max(k, 1)
    y = np.arange(n)
    for j, batch in enumerate(share.columns):
        ax.barh(y + j * height, share[batch] * 100, height=height, color=f"C{j % 10}", label=batch)
    ax.set_yticks(y + 0.4 - height / 2, share.index, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the batch's events")
    ax.legend(title="batch", fontsize=8, frameon=False)
    return fig
