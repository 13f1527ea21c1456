"""Bead normalisation of raw ion counts (Finck et al. 2013; CATALYST ``normCytof``)."""

from __future__ import annotations

import logging
import time as _time
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._chain import lazy_beads, lazy_time_column
from itme._dask import is_lazy, per_sample
from itme.core.batch.beads import bead_factors, trim_beads
from itme.core.clean.steps import GATING_COFACTOR, STEPS, gate_sample, gates_for_roles
from itme.core.transform import arcsinh_values
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.io import parse_channel
from itme.pp._clean_inputs import dense_raw, event_times, loader, n_rows, sample_rows
from itme.pp._compensate import _metals_of

__all__ = ["EQ_BEAD_METALS", "normalize_beads"]

logger = logging.getLogger(__name__)

#: the metals of Fluidigm/Standard BioTools EQ four-element beads (Ce140 first: the bead gate's
#: primary channel)
EQ_BEAD_METALS = ("Ce140", "Eu151", "Eu153", "Ho165", "Lu175")
#: fewer beads in a sample than this: the sample cannot be normalised
_MIN_BEADS = 3
#: the bead step of pp.clean (the step whose channels must all be bright), whose gate
#: identifies the beads here too
_BEAD = next(s for s in STEPS if s.all_of)


def normalize_beads(
    adata: AnnData,
    *,
    beads: Sequence[str] = EQ_BEAD_METALS,
    baseline: Literal["sample", "cohort"] | Mapping[str, float] = "sample",
    time_key: str = "Time",
    sample_key: str = "sample_id",
    window: int = 501,
    trim: float = 5.0,
    factor: Literal["geometric", "least_squares"] = "geometric",
    copy: bool = False,
) -> AnnData | None:
    """Remove signal drift with the EQ calibration beads (Finck et al. 2013, CATALYST ``normCytof``).

    Per sample (file): bead events are found by the bead gate of :func:`itme.pp.clean` (the
    ``bead`` step of :data:`itme.core.clean.steps.STEPS`: bright in Ce140 and in every other
    bead channel present); beads within ``trim`` MADs of the median on every bead channel
    are kept for the factors; their raw intensities are smoothed over acquisition time by a
    running median of ``window`` beads; each bead's factor brings its smoothed intensities to
    the baseline (``factor``); factors are interpolated linearly in time between
    beads and multiply every ion-count channel (channels named by a metal; Time,
    Event_length and the Gaussian parameters are left alone). Bead channels are matched by
    metal (``Ce140Di``, ``140Ce``, ...). The beads are labelled (``obs["is_bead"]``) and counted here, not removed:
    :func:`itme.pp.clean` removes them (its ``bead`` step, the same gate) and counts them in
    ``uns["qc"]["accounting"]``. Run it on raw counts, before :func:`itme.pp.arcsinh`.

    Parameters
    ----------
    adata
        Events × channels with raw counts in ``layers["raw"]`` (or ``X`` when that layer is
        absent), from :func:`itme.io.read_cohort`.
    beads
        Metals of the bead channels, the gate's primary channel first (default the EQ beads
        Ce140, Eu151, Eu153, Ho165, Lu175). Those absent from the data are skipped (listed
        in ``uns``); Ce140 must be present.
    baseline
        The intensities the beads are brought to: ``"sample"`` (each file's own mean bead
        intensities: drift within a file is removed, the file keeps its level; CATALYST's
        default), ``"cohort"`` (the mean over the beads of all files: differences between
        files are removed too, as Finck's normalizer does for a set of files), or a mapping
        bead metal → intensity (raw counts, e.g. the beads of a reference acquisition).
    time_key
        obs column or channel (var name or ``$PnN``) with each event's acquisition time.
    sample_key
        obs column of each event's sample (file); factors are found per sample.
    window
        Beads per running-median window (CATALYST's ``k``, 500; made odd).
    trim
        Beads further than this many MADs from the median on any bead channel (arcsinh
        scale: bead doublets, dim beads) are not used for the factors.
    factor
        How the bead channels are combined into one factor per bead: ``"geometric"`` (the
        geometric mean of baseline / smoothed intensity, every bead channel weighted
        equally) or ``"least_squares"`` (Finck's and CATALYST's slope through the origin,
        which weights channels by their squared intensity, so it follows the brightest
        one and its noise).
    copy
        Return a normalised copy instead of modifying ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes:

    - ``layers["raw"]``: a new float32 array, every metal channel multiplied by the event's
      factor (and ``X``, when ``X`` held the raw counts). On lazy data (a cohort store) a
      lazy dask array, :func:`itme._chain.lazy_beads` of ``uns``, which
      :func:`itme.io.open_store` applies again to the stored counts (they are not
      rewritten); the beads are found by one dask task per sample, and the factors'
      spread (``samples``) by a second one reading the time channel.
    - ``obs["is_bead"]``: bool, the event is a bead (removed later by :func:`itme.pp.clean`).
    - ``uns["bead_normalization"]``: ``bead_channels`` (var names), ``bead_metals``,
      ``absent`` (bead metals not in the data), ``channels`` (the var names scaled),
      ``baseline`` (``"sample"``, ``"cohort"`` or ``"given"``), ``baseline_values``
      (DataFrame: sample_id, then one column per bead channel), ``time_key``,
      ``sample_key``, ``window``, ``trim``, ``factor``, ``samples`` (DataFrame: sample_id, n_events,
      n_beads, n_beads_used, factor_min, factor_median, factor_max, note), ``factors``
      (DataFrame: sample_id, time, factor: the factor at each bead used, per normalised
      sample in time order; every event's factor is their linear interpolation at its time).

    Raises
    ------
    ItmeStateError
        ``X`` was transformed already, or the beads were normalised already; on lazy data,
        the counts were compensated already.
    ItmeInputError
        No Ce140 channel; no time (on lazy data the time must be a channel); no sample with
        beads. A sample without beads (fewer than
        3) among samples with beads is left unnormalised with an
        :class:`~itme.errors.ItmeInputWarning` (``note`` in ``samples``).
    ItmeParameterError
        Bad ``baseline``, ``window`` or ``trim``.
    """
    start = _time.perf_counter()
    if "bead_normalization" in adata.uns:
        raise ItmeStateError("uns['bead_normalization'] exists: the beads were normalised already")
    if "arcsinh" in adata.uns:
        raise ItmeStateError(
            "pp.normalize_beads works on raw ion counts, and X was transformed already "
            "(uns['arcsinh']): call it before pp.arcsinh"
        )
    if factor not in ("geometric", "least_squares"):
        raise ItmeParameterError("factor", "'geometric' or 'least_squares'", factor)
    if int(window) < 1:
        raise ItmeParameterError("window", "an integer >= 1", window)
    if not (np.isfinite(trim) and trim > 0):
        raise ItmeParameterError("trim", "a positive number of MADs", trim)
    wanted = [parse_channel(b).metal or str(b) for b in beads]
    if isinstance(baseline, str) and baseline not in ("sample", "cohort"):
        raise ItmeParameterError(
            "baseline", "'sample', 'cohort' or a mapping metal -> value", baseline
        )
    metals = _metals_of(adata)
    names = list(map(str, adata.var_names))
    present = [m for m in wanted if m in metals]
    absent = [m for m in wanted if m not in metals]
    if not wanted or wanted[0] not in metals:
        raise ItmeInputError(
            where="var['channel']",
            expected=f"the primary bead channel {wanted[0] if wanted else 'Ce140'}",
            found=f"metals {', '.join(metals) or 'none'}",
            fix="These files carry no bead channel: bead normalisation needs EQ beads "
            "acquired with the cells",
        )
    given: np.ndarray | None = None
    if isinstance(baseline, Mapping):
        keyed = {parse_channel(k).metal or str(k): float(v) for k, v in baseline.items()}
        missing = [m for m in present if m not in keyed]
        if missing or any(not (np.isfinite(v) and v > 0) for v in keyed.values()):
            raise ItmeParameterError(
                "baseline", f"a positive intensity for each bead metal {present}", baseline
            )
        given = np.array([keyed[m] for m in present])
    if absent:
        warnings.warn(
            f"bead channel(s) {', '.join(absent)} not in the data; normalising on "
            f"{', '.join(present)}",
            ItmeInputWarning,
            stacklevel=2,
        )
    bead_cols = [metals[m] for m in present]
    scaled = np.array(sorted(metals.values()), dtype=np.intp)

    on_store = is_lazy(adata.layers["raw"] if "raw" in adata.layers else adata.X)
    if on_store and "compensation" in adata.uns:
        raise ItmeStateError(
            "uns['compensation'] exists: on lazy data (a cohort store) normalise the beads "
            "before compensating, the order in which the store's counts are recomputed"
        )
    time_col = lazy_time_column(adata, time_key) if on_store else None
    if copy:
        adata = adata.copy()
    raw_is_x = "raw" not in adata.layers or adata.layers["raw"] is adata.X
    lazy = (adata.layers["raw"] if "raw" in adata.layers else adata.X) if on_store else None
    raw = lazy if lazy is not None else dense_raw(adata)
    fix = "Pass time_key= naming the time channel; bead normalisation needs the time"
    times = event_times(adata, time_key, raw, fix=fix) if lazy is None else None
    samples = sample_rows(adata, sample_key)
    gates = gates_for_roles({_BEAD.all_of: [(c, names[c]) for c in bead_cols]}, [_BEAD.name])
    options = {
        "gates": gates,
        "bead_cols": bead_cols,
        "trim": float(trim),
        "time_col": time_col,
        "cofactor": GATING_COFACTOR,
        "k": {_BEAD.name: _BEAD.k},
        "min_delta": {_BEAD.name: _BEAD.min_delta},
    }
    if lazy is not None:  # one task per sample on the dask cluster, same kernel
        found = per_sample(_sample_beads, lazy, [rows for _, rows in samples], **options)
    else:
        found = [_sample_beads(raw[rows], **options) for _, rows in samples]
    is_bead = np.zeros(adata.n_obs, dtype=bool)
    per_sample_values, bead_times = {}, {}
    for (sample_id, rows), (mask, kept, values, t_beads) in zip(samples, found, strict=True):
        is_bead[rows] = mask
        per_sample_values[sample_id] = values
        bead_times[sample_id] = t_beads if times is None else times[rows][kept]

    if given is not None:
        kind = "given"
    elif baseline == "cohort":
        kind = "cohort"
        pooled = [v for v in per_sample_values.values() if len(v)]
        given = np.concatenate(pooled).mean(axis=0) if pooled else None
    else:
        kind = "sample"
    new = None if lazy is not None else np.array(raw, dtype=np.float32)
    rows_out, base_rows, curves = [], [], []
    stats_of: list[tuple[int, slice | np.ndarray, np.ndarray, np.ndarray]] = []
    for sample_id, rows in samples:
        n = n_rows(rows)
        values = per_sample_values[sample_id]
        n_beads = int(is_bead[rows].sum())
        base = given if given is not None else (values.mean(axis=0) if len(values) else None)
        if len(values) < _MIN_BEADS or base is None:
            problem = ItmeInputError(
                where=f"sample {sample_id}",
                expected=f"EQ bead events (at least {_MIN_BEADS}) to normalise on",
                found=f"{len(values)} beads by the bead gate on "
                f"{', '.join(names[c] for c in bead_cols)}",
                fix="Normalise only files acquired with beads, or leave bead normalisation off",
            )
            if not any(len(v) >= _MIN_BEADS for v in per_sample_values.values()):
                raise problem
            warnings.warn(f"{problem}; this sample is left unnormalised", ItmeInputWarning,
                          stacklevel=2)  # fmt: skip
            rows_out.append(_row(sample_id, n, n_beads, len(values), (1.0, 1.0, 1.0),
                                 "too few beads: not normalised"))  # fmt: skip
            base_rows.append({"sample_id": str(sample_id), **dict.fromkeys(present, np.nan)})
            continue
        t_beads = bead_times[sample_id]
        t_events = times[rows] if times is not None else np.empty(0)
        factors, slopes = bead_factors(values, t_beads, base, t_events, window=int(window),
                                       combine=factor)  # fmt: skip
        t_sorted = np.sort(t_beads, kind="stable")
        curves.append(pd.DataFrame({"sample_id": str(sample_id), "time": t_sorted,
                                    "factor": slopes}))  # fmt: skip
        if new is not None:
            block = new[rows]
            block[:, scaled] *= factors.astype(np.float32)[:, None]
            new[rows] = block
        else:  # the factors at the events: a second task per sample, reading the time
            stats_of.append((len(rows_out), rows, t_sorted, slopes))
        note = ""
        if len(values) < int(window):
            note = f"{len(values)} beads, fewer than the window ({int(window)}): one window"
        spread = _spread(factors) if new is not None else (np.nan, np.nan, np.nan)
        rows_out.append(_row(sample_id, n, n_beads, len(values), spread, note))
        base_rows.append(
            {"sample_id": str(sample_id), **dict(zip(present, map(float, base), strict=True))}
        )
    if stats_of:
        spreads = per_sample(
            _factor_spread, lazy, [r for _, r, _, _ in stats_of], time_col=time_col,
            per_call=[{"bead_times": t, "bead_slopes": f} for _, _, t, f in stats_of],
        )  # fmt: skip
        for (i, *_), spread in zip(stats_of, spreads, strict=True):
            rows_out[i].update(
                zip(("factor_min", "factor_median", "factor_max"), spread, strict=True)
            )
    adata.obs["is_bead"] = is_bead
    table = pd.DataFrame(rows_out)
    adata.uns["bead_normalization"] = {
        "bead_channels": [names[c] for c in bead_cols],
        "bead_metals": present,
        "absent": absent,
        "channels": [names[c] for c in scaled],
        "baseline": kind,
        "baseline_values": pd.DataFrame(base_rows),
        "time_key": time_key,
        "sample_key": sample_key,
        "window": int(window),
        "trim": float(trim),
        "factor": factor,
        "samples": table,
        "factors": _factors_table(curves),
    }
    if new is not None:
        adata.layers["raw"] = new
    else:  # the kernel of a cohort store's counts, from uns (itme._chain)
        adata.layers["raw"] = lazy_beads(adata, lazy)
    if raw_is_x:
        adata.X = adata.layers["raw"]
    logger.info(
        "normalize_beads (%s baseline): %d beads in %d samples (factors %.3g-%.3g), "
        "%d channels scaled, in %.2f s",
        kind,
        int(table["n_beads"].sum()),
        len(table),
        float(table["factor_min"].min()),
        float(table["factor_max"].max()),
        scaled.size,
        _time.perf_counter() - start,
    )
    return adata if copy else None


def _sample_beads(
    block: np.ndarray, *, gates: dict, bead_cols: list[int], trim: float, time_col: int | None,
    **options: object,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
    """One sample's beads (a numpy block; the per-sample task of the lazy path).

    Returns the bead gate's mask, the rows of the beads kept by the trim, their values in
    the bead channels and, with ``time_col``, their times.
    """
    n = block.shape[0]
    mask = gate_sample(loader(block, slice(0, n)), n, gates, **options).codes != 0
    rows = np.flatnonzero(mask)
    values = np.asarray(block[rows][:, bead_cols], dtype=np.float64)
    if rows.size:
        keep = trim_beads(arcsinh_values(values, GATING_COFACTOR), trim)
        rows, values = rows[keep], values[keep]
    times = None if time_col is None else np.asarray(block[rows, time_col], dtype=np.float64)
    return mask, rows, values, times


def _factor_spread(
    block: np.ndarray, *, time_col: int, bead_times: np.ndarray, bead_slopes: np.ndarray
) -> tuple[float, float, float]:
    """Min, median and max factor over one sample's events (its time channel in ``block``)."""
    return _spread(np.interp(np.asarray(block[:, time_col], np.float64), bead_times, bead_slopes))


def _spread(factors: np.ndarray) -> tuple[float, float, float]:
    return float(factors.min()), float(np.median(factors)), float(factors.max())


def _row(sample_id: str, n: int, n_beads: int, used: int, spread: tuple, note: str) -> dict:
    """A row of ``uns["bead_normalization"]["samples"]``."""
    low, mid, high = spread
    return {"sample_id": str(sample_id), "n_events": n, "n_beads": n_beads,
            "n_beads_used": used, "factor_min": low, "factor_median": mid,
            "factor_max": high, "note": note}  # fmt: skip


def _factors_table(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """The factor at every bead used, per sample in time order (``uns`` ``factors``)."""
    if not curves:
        return pd.DataFrame({"sample_id": pd.Categorical([]), "time": [], "factor": []})
    table = pd.concat(curves, ignore_index=True)
    table["sample_id"] = pd.Categorical(table["sample_id"],
                                        categories=list(dict.fromkeys(table["sample_id"])))  # fmt: skip
    return table
