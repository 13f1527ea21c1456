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
      factor (and ``X``, when ``X`` held the raw counts).
    - ``obs["is_bead"]``: bool, the event is a bead (removed later by :func:`itme.pp.clean`).
    - ``uns["bead_normalization"]``: ``bead_channels`` (var names), ``bead_metals``,
      ``absent`` (bead metals not in the data), ``channels`` (the var names scaled),
      ``baseline`` (``"sample"``, ``"cohort"`` or ``"given"``), ``baseline_values``
      (DataFrame: sample_id, then one column per bead channel), ``time_key``,
      ``sample_key``, ``window``, ``trim``, ``factor``, ``samples`` (DataFrame: sample_id, n_events,
      n_beads, n_beads_used, factor_min, factor_median, factor_max, note).

    Raises
    ------
    ItmeStateError
        ``X`` was transformed already, or the beads were normalised already.
    ItmeInputError
        No Ce140 channel; no time; no sample with beads. A sample without beads (fewer than
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

    if copy:
        adata = adata.copy()
    raw_is_x = "raw" not in adata.layers or adata.layers["raw"] is adata.X
    raw = dense_raw(adata)
    times = event_times(
        adata,
        time_key,
        raw,
        fix="Pass time_key= naming the time channel; bead normalisation needs the time",
    )
    samples = sample_rows(adata, sample_key)
    gates = gates_for_roles({_BEAD.all_of: [(c, names[c]) for c in bead_cols]}, [_BEAD.name])
    options = {
        "cofactor": GATING_COFACTOR,
        "k": {_BEAD.name: _BEAD.k},
        "min_delta": {_BEAD.name: _BEAD.min_delta},
    }
    is_bead = np.zeros(adata.n_obs, dtype=bool)
    used: list[tuple[str, slice | np.ndarray, np.ndarray]] = []
    for sample_id, rows in samples:
        n = n_rows(rows)
        result = gate_sample(loader(raw, rows), n, gates, **options)
        found = result.codes != 0
        is_bead[rows] = found
        bead_rows = np.arange(n)[found]
        if bead_rows.size:
            values = np.asarray(raw[rows][bead_rows][:, bead_cols], dtype=np.float64)
            keep = trim_beads(arcsinh_values(values, GATING_COFACTOR), float(trim))
            bead_rows = bead_rows[keep]
        used.append((sample_id, rows, bead_rows))

    per_sample = {
        sid: np.asarray(raw[rows][b][:, bead_cols], dtype=np.float64) for sid, rows, b in used
    }
    if given is not None:
        kind = "given"
    elif baseline == "cohort":
        kind = "cohort"
        pooled = [v for v in per_sample.values() if len(v)]
        given = np.concatenate(pooled).mean(axis=0) if pooled else None
    else:
        kind = "sample"
    new = np.array(raw, dtype=np.float32)
    rows_out, base_rows = [], []
    for sample_id, rows, bead_rows in used:
        n = n_rows(rows)
        values = per_sample[sample_id]
        note = ""
        base = given if given is not None else (values.mean(axis=0) if len(values) else None)
        if len(values) < _MIN_BEADS or base is None:
            problem = ItmeInputError(
                where=f"sample {sample_id}",
                expected=f"EQ bead events (at least {_MIN_BEADS}) to normalise on",
                found=f"{len(values)} beads by the bead gate on "
                f"{', '.join(names[c] for c in bead_cols)}",
                fix="Normalise only files acquired with beads, or leave bead normalisation off",
            )
            if not any(len(v) >= _MIN_BEADS for v in per_sample.values()):
                raise problem
            warnings.warn(f"{problem}; this sample is left unnormalised", ItmeInputWarning,
                          stacklevel=2)  # fmt: skip
            rows_out.append(
                {
                    "sample_id": str(sample_id),
                    "n_events": n,
                    "n_beads": int(is_bead[rows].sum()),
                    "n_beads_used": len(values),
                    "factor_min": 1.0,
                    "factor_median": 1.0,
                    "factor_max": 1.0,
                    "note": "too few beads: not normalised",
                }
            )
            base_rows.append({"sample_id": str(sample_id), **dict.fromkeys(present, np.nan)})
            continue
        t = times[rows]
        factors, _ = bead_factors(values, t[bead_rows], base, t, window=int(window), combine=factor)
        block = new[rows]
        block[:, scaled] *= factors.astype(np.float32)[:, None]
        new[rows] = block
        if len(values) < int(window):
            note = f"{len(values)} beads, fewer than the window ({int(window)}): one window"
        rows_out.append(
            {
                "sample_id": str(sample_id),
                "n_events": n,
                "n_beads": int(is_bead[rows].sum()),
                "n_beads_used": len(values),
                "factor_min": float(factors.min()),
                "factor_median": float(np.median(factors)),
                "factor_max": float(factors.max()),
                "note": note,
            }
        )
        base_rows.append(
            {"sample_id": str(sample_id), **dict(zip(present, map(float, base), strict=True))}
        )
    adata.layers["raw"] = new
    if raw_is_x:
        adata.X = new
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
    }
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
