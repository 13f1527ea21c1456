"""QC figures for cleaning gates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._dask import is_lazy, take_rows
from itme.core.clean.steps import KEPT, QC_LABELS, STEP_NAMES, STEPS
from itme.errors import ItmeParameterError, ItmeStateError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["qc_accounting", "qc_gates"]

#: step colours, given to the steps in the order they run (tab10: blue, brown, orange, red,
#: purple, then the rest)
_STEP_PALETTE = (
    "#1f77b4",
    "#8c564b",
    "#ff7f0e",
    "#d62728",
    "#9467bd",
    "#2ca02c",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
#: colour of each label of obs["itme_qc"]
QC_COLORS = {KEPT: "#9e9e9e", **dict(zip(STEP_NAMES, _STEP_PALETTE, strict=False))}


def _panels() -> list[tuple[str, str | None, list[str]]]:
    """``(x role, y role or None, steps shown)`` of each gate panel, from the step table."""
    panels: dict[tuple[str, str | None], list[str]] = {}
    for step in STEPS:
        for xy in step.panels:
            panels.setdefault(xy, []).append(step.name)
    return [(x, y, steps) for (x, y), steps in panels.items()]


def qc_gates(adata: AnnData, *, sample: str | None = None, max_points: int = 40_000) -> Figure:
    """Scatter plots and histograms of one sample with the cleaning gates drawn.

    One panel per pair of channel roles named in the step table
    (:data:`itme.core.clean.steps.STEPS`, field ``panels``), titled by the steps whose gates
    it shows: Ce140 vs DNA (bead), DNA vs Event_length (debris / doublet), Width vs
    Residual (doublet), cisplatin vs DNA (dead), the CD45 histogram of the events reaching
    the CD45 gate (cd45_negative); then the sample's accounting. A panel whose y channel is
    missing becomes a histogram of x; one whose x channel is missing is left out. Axes are
    the gating scale ``arcsinh(raw / cofactor)``; each event is coloured by
    ``obs["itme_qc"]``; dashed lines are the thresholds (``low`` / ``high`` of the
    thresholds table, on that scale).

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
    labels = adata.obs["itme_qc"].iloc[rows].astype(str).to_numpy()  # this sample's only
    if is_lazy(raw):  # a cohort store: gather this sample's events once
        raw, rows = take_rows(raw, rows), np.arange(rows.size)
    cofactor = float(params["cofactor"])
    roles = {r: list(v) for r, v in params["channels"].items()}
    thr = qc["thresholds"]
    thr = thr[thr["sample_id"].astype(str) == sample]
    names = list(map(str, adata.var_names))

    def shown(role: str) -> list[str]:
        # the first channel of an all-of role (Ce140 of the beads; partners are in the table)
        chans = roles.get(role, [])
        return chans[:1] if any(s.all_of == role for s in STEPS) else chans

    def values(role: str | None) -> np.ndarray | None:
        chans = shown(role) if role else []
        if not chans:
            return None
        total = np.zeros(rows.size, dtype=np.float64)
        for c in chans:
            total += raw[rows, names.index(c)]
        return np.arcsinh(total / cofactor)

    def gates(steps: list[str], role: str) -> list[tuple[str, str, float]]:
        """(step, side, threshold) of the gates of ``steps`` on the channel(s) drawn."""
        sel = thr[
            thr["step"].isin(steps)
            & (thr["role"] == role)
            & (thr["channel"].astype(str) == "+".join(shown(role)))
        ]
        out = []
        for row in sel.itertuples(index=False):
            for side in ("low", "high"):
                v = float(getattr(row, side))
                if np.isfinite(v):
                    out.append((str(row.step), side, v))
        return out

    stride = max(1, -(-rows.size // max_points))
    show = np.arange(0, rows.size, stride)
    panels = []
    for xr, yr, steps in _panels():
        x = values(xr)
        if x is None:
            continue
        y = values(yr)
        panels.append((xr, yr if y is not None else None, x, y, steps))
    n_panels = len(panels) + 1
    ncols = min(3, n_panels)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, object] = {}  # one legend for the scatter panels (same labels in each)
    for ax, (xr, yr, x, y, steps) in zip(axes, panels, strict=False):
        title = " / ".join(steps)
        if yr is None:
            _histogram(ax, x, labels, steps)
        else:
            for lab in QC_LABELS:
                sel = show[labels[show] == lab]
                if sel.size:
                    label = f"{lab} ({int((labels == lab).sum())})"
                    handles[label] = ax.scatter(
                        x[sel],
                        y[sel],
                        s=2,
                        alpha=0.5 if lab == KEPT else 0.8,
                        color=QC_COLORS[lab],
                        label=label,
                        rasterized=True,
                        linewidths=0,
                    )
            ax.set_ylabel(_axis_label(shown(yr), cofactor))
        ax.set_title(title, fontsize=9)
        outside = []
        for axis, role in (("x", xr), ("y", yr)):
            if role is None:
                continue
            lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
            for step, side, v in gates(steps, role):
                if not lo <= v <= hi:  # a gate beyond every event: say so, do not stretch the axis
                    outside.append(f"{role} {side} gate at {v:.2f}: no event beyond")
                    continue
                draw = ax.axvline if axis == "x" else ax.axhline
                draw(v, color=QC_COLORS[step], linestyle="--", linewidth=1)
        if outside:
            ax.text(0.01, 0.01, "\n".join(outside), transform=ax.transAxes, fontsize=6, va="bottom")
        ax.set_xlabel(_axis_label(shown(xr), cofactor))
    _accounting_panel(axes[len(panels)], acc[acc["sample_id"].astype(str) == sample].iloc[0])
    if handles:
        # below the accounting, not in each panel: a legend placed at the "best" spot of
        # each scatter searches tens of thousands of points on every draw (half the time)
        axes[len(panels)].legend(
            list(handles.values()),
            list(handles),
            title="events (scatter panels)",
            title_fontsize=7,
            fontsize=7,
            markerscale=4,
            loc="lower left",
            frameon=False,
        )
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
    for col in ["events_out", *STEP_NAMES]:
        pct = 100.0 * acc[col].to_numpy(dtype=float) / total
        label = KEPT if col == "events_out" else col
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
    if "low_raw" not in qc["thresholds"]:
        raise ItmeStateError(
            "uns['qc']['thresholds'] has no low_raw / high_raw columns: it was written by an "
            "itme whose low / high were raw counts. Rerun itme.pp.clean."
        )
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
    col = adata.obs[key]
    if isinstance(col.dtype, pd.CategoricalDtype):  # by code: no string per event
        hits = [k for k, c in enumerate(col.cat.categories) if str(c) == sample]
        return np.flatnonzero(np.isin(col.cat.codes.to_numpy(), hits))
    return np.flatnonzero(col.astype(str).to_numpy() == sample)


def _axis_label(chans: list[str], cofactor: float) -> str:
    shown = "+".join(chans) if len(chans) <= 2 else f"{chans[0]} (+{len(chans) - 1})"
    return f"arcsinh({shown} / {cofactor:g})"


def _histogram(ax, x: np.ndarray, labels: np.ndarray, steps: list[str]) -> None:
    """Histogram of all events, of those reaching the first of ``steps``, and of its removals."""
    before = STEP_NAMES[: STEP_NAMES.index(steps[0])]
    reach = ~np.isin(labels, before)
    bins = np.linspace(np.nanmin(x), np.nanmax(x), 80) if x.size else 10
    # one filled outline per histogram, not 80 bars: the same picture, drawn faster
    kw = {"bins": bins, "histtype": "stepfilled"}
    ax.hist(x, color="#dddddd", label=f"all ({x.size})", **kw)
    ax.hist(x[reach], color=QC_COLORS[KEPT], label=f"reaching gate ({int(reach.sum())})", **kw)
    for step in steps:
        out = labels == step
        ax.hist(x[out], color=QC_COLORS[step], label=f"{step} ({int(out.sum())})", **kw)
    ax.set_ylabel("events")
    ax.legend(fontsize=6, frameon=False)


def _accounting_panel(ax, row: pd.Series) -> None:
    ax.axis("off")
    lines = [f"events in: {int(row['events_in'])}"]
    for step in STEP_NAMES:
        lines.append(f"  {step}: {int(row[step])}")
    lines.append(f"events out: {int(row['events_out'])} ({float(row['pct_kept']):.1f} %)")
    ax.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
