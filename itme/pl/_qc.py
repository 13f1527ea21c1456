"""QC figures for cleaning gates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.errors import ItmeParameterError, ItmeStateError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["qc_accounting", "qc_gates"]

#: colour of each label of obs["itme_qc"]
QC_COLORS = {
    "kept": "#9e9e9e",
    "bead": "#1f77b4",
    "debris": "#8c564b",
    "doublet": "#ff7f0e",
    "dead": "#d62728",
    "cd45_negative": "#9467bd",
}
_STEPS = ("bead", "debris", "doublet", "dead", "cd45_negative")


def qc_gates(adata: AnnData, *, sample: str | None = None, max_points: int = 40_000) -> Figure:
    """Scatter plots and a CD45 histogram of one sample with the cleaning gates drawn.

    Panels (those whose channels were found): Ce140 vs DNA (beads), DNA vs Event_length
    (debris and doublets), DNA vs cisplatin (dead cells), Residual vs Width (Gaussian
    parameters), the CD45 histogram of the events reaching the CD45 gate, and the
    sample's accounting. Axes are ``arcsinh(raw / cofactor)`` as used for gating; each
    event is coloured by ``obs["itme_qc"]``; dashed lines are the thresholds.

    Parameters
    ----------
    adata
        Cleaned by :func:`itme.pp.clean`. Reads ``layers["raw"]`` (or ``X`` when there is no
        transformation), ``obs["itme_qc"]``, the sample column and ``uns["qc"]``
        (``thresholds``, ``accounting``, ``params``).
    sample
        The sample to show. Default: the first sample of the accounting table.
    max_points
        At most this many events are drawn per panel (a regular stride through the
        sample); histograms use all events.

    Returns
    -------
    The matplotlib Figure.
    """
    from matplotlib.figure import Figure

    qc, raw, params = _qc_inputs(adata)
    acc = qc["accounting"]
    samples = acc["sample_id"].astype(str).tolist()
    if sample is None:
        sample = samples[0]
    if str(sample) not in samples:
        raise ItmeParameterError("sample", "a sample_id of uns['qc']['accounting']", sample)
    sample = str(sample)
    rows = _rows(adata, params, sample)
    labels = adata.obs["itme_qc"].astype(str).to_numpy()[rows]
    cofactor = float(params["cofactor"])
    roles = {r: list(v) for r, v in params["channels"].items()}
    thr = qc["thresholds"]
    thr = thr[thr["sample_id"].astype(str) == sample]
    names = list(map(str, adata.var_names))

    def values(role: str) -> np.ndarray | None:
        chans = roles.get(role)
        if not chans:
            return None
        if role == "bead":  # the primary bead channel (Ce140); partners are in the table
            chans = chans[:1]
        cols = [names.index(c) for c in chans]
        total = np.zeros(rows.size, dtype=np.float64)
        for c in cols:
            total += raw[rows, c]
        return np.arcsinh(total / cofactor)

    def limit(step: str, role: str, side: str) -> list[float]:
        sel = thr[(thr["step"] == step) & (thr["role"] == role)]
        if role == "bead":
            sel = sel.iloc[:1]
        vals = pd.to_numeric(sel[side], errors="coerce").dropna().to_numpy()
        return [float(np.arcsinh(v / cofactor)) for v in vals]

    stride = max(1, -(-rows.size // max_points))
    show = np.arange(0, rows.size, stride)
    dna = values("dna")
    panels = []
    if values("bead") is not None and dna is not None:
        panels.append(("bead", "dna", "beads", [("x", "bead", "bead", "high")]))
    if dna is not None and values("event_length") is not None:
        panels.append(
            (
                "dna",
                "event_length",
                "debris and doublets",
                [
                    ("x", "debris", "dna", "low"),
                    ("x", "doublet", "dna", "high"),
                    ("y", "doublet", "event_length", "high"),
                ],
            )
        )
    elif dna is not None:
        panels.append(
            ("dna", None, "DNA", [("x", "debris", "dna", "low"), ("x", "doublet", "dna", "high")])
        )
    if dna is not None and values("cisplatin") is not None:
        panels.append(("cisplatin", "dna", "dead cells", [("x", "dead", "cisplatin", "high")]))
    if values("residual") is not None and values("width") is not None:
        panels.append(
            (
                "width",
                "residual",
                "Gaussian parameters",
                [("x", "doublet", "width", "high"), ("y", "doublet", "residual", "high")],
            )
        )
    if values("cd45") is not None:
        panels.append(("cd45", None, "CD45", [("x", "cd45_negative", "cd45", "low")]))
    n_panels = len(panels) + 1
    ncols = min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    order = ["kept", *_STEPS]
    for ax, (xr, yr, title, lines) in zip(axes, panels, strict=False):
        x = values(xr)
        xlabel = _axis_label(roles, xr, cofactor)
        if yr is None:
            _histogram(ax, x, labels, title)
        else:
            y = values(yr)
            for lab in order:
                sel = show[labels[show] == lab]
                if sel.size:
                    ax.scatter(
                        x[sel],
                        y[sel],
                        s=2,
                        alpha=0.5 if lab == "kept" else 0.8,
                        color=QC_COLORS[lab],
                        label=f"{lab} ({int((labels == lab).sum())})",
                        rasterized=True,
                        linewidths=0,
                    )
            ax.set_ylabel(_axis_label(roles, yr, cofactor))
            ax.legend(fontsize=6, markerscale=3, loc="best", frameon=False)
            ax.set_title(title, fontsize=9)
        outside = []
        for axis, step, role, side in lines:
            lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
            for v in limit(step, role, side):
                if not lo <= v <= hi:  # a gate beyond every event: say so, do not stretch the axis
                    outside.append(f"{role} {side} gate at {v:.2f}: no event beyond")
                    continue
                draw = ax.axvline if axis == "x" else ax.axhline
                draw(v, color=QC_COLORS[step], linestyle="--", linewidth=1)
        if outside:
            ax.text(0.01, 0.01, "\n".join(outside), transform=ax.transAxes, fontsize=6, va="bottom")
        ax.set_xlabel(xlabel)
    _accounting_panel(axes[len(panels)], acc[acc["sample_id"].astype(str) == sample].iloc[0])
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(f"QC gates: {sample}", fontsize=11)
    return fig


def qc_accounting(adata: AnnData) -> Figure:
    """Stacked bars: per sample, the % of events kept and removed by each cleaning step.

    Parameters
    ----------
    adata
        Cleaned by :func:`itme.pp.clean`; reads ``uns["qc"]["accounting"]``.

    Returns
    -------
    The matplotlib Figure.
    """
    from matplotlib.figure import Figure

    if "qc" not in adata.uns or "accounting" not in adata.uns["qc"]:
        raise ItmeStateError("uns['qc']['accounting'] is missing: run itme.pp.clean first")
    acc = adata.uns["qc"]["accounting"]
    n = len(acc)
    fig = Figure(figsize=(7, 1.0 + 0.28 * n), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(n)
    y = np.arange(n)
    total = acc["events_in"].to_numpy(dtype=float)
    total[total == 0] = np.nan
    for col in ["events_out", *_STEPS]:
        pct = 100.0 * acc[col].to_numpy(dtype=float) / total
        label = "kept" if col == "events_out" else col
        ax.barh(y, pct, left=left, color=QC_COLORS[label], label=label, height=0.8)
        left = left + np.nan_to_num(pct)
    ax.set_yticks(y, acc["sample_id"].astype(str).tolist(), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of events")
    ax.set_xlim(0, 100)
    ax.legend(fontsize=7, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    return fig


def _qc_inputs(adata: AnnData):
    if "itme_qc" not in adata.obs or "qc" not in adata.uns:
        raise ItmeStateError("obs['itme_qc'] / uns['qc'] are missing: run itme.pp.clean first")
    qc = adata.uns["qc"]
    if "raw" in adata.layers:
        raw = adata.layers["raw"]
    elif "arcsinh" not in adata.uns:
        raw = adata.X
    else:
        raise ItmeStateError("layers['raw'] is missing; the QC figure draws raw counts")
    return qc, raw, qc["params"]


def _rows(adata: AnnData, params, sample: str) -> np.ndarray:
    key = str(params["sample_key"])
    if key not in adata.obs:
        return np.arange(adata.n_obs)
    return np.flatnonzero(adata.obs[key].astype(str).to_numpy() == sample)


def _axis_label(roles, role: str, cofactor: float) -> str:
    chans = roles.get(role, [])[:1] if role == "bead" else roles.get(role, [])
    shown = "+".join(chans) if len(chans) <= 2 else f"{chans[0]} (+{len(chans) - 1})"
    return f"arcsinh({shown} / {cofactor:g})"


def _histogram(ax, x: np.ndarray, labels: np.ndarray, title: str) -> None:
    reach = ~np.isin(labels, ["bead", "debris", "doublet", "dead"])
    bins = np.linspace(np.nanmin(x), np.nanmax(x), 80) if x.size else 10
    ax.hist(x, bins=bins, color="#dddddd", label=f"all ({x.size})")
    ax.hist(
        x[reach], bins=bins, color=QC_COLORS["kept"], label=f"reaching gate ({int(reach.sum())})"
    )
    neg = labels == "cd45_negative"
    ax.hist(
        x[neg],
        bins=bins,
        color=QC_COLORS["cd45_negative"],
        label=f"cd45_negative ({int(neg.sum())})",
    )
    ax.set_ylabel("events")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, frameon=False)


def _accounting_panel(ax, row: pd.Series) -> None:
    ax.axis("off")
    lines = [f"events in: {int(row['events_in'])}"]
    for step in _STEPS:
        lines.append(f"  {step}: {int(row[step])}")
    lines.append(f"events out: {int(row['events_out'])} ({float(row['pct_kept']):.1f} %)")
    ax.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
