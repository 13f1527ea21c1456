"""Spillover matrix from single-stained beads (CATALYST ``computeSpillmat``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from itme.core.compensate import estimate_spillover as _estimate
from itme.core.compensate import spill_targets
from itme.core.transform import arcsinh_values
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError
from itme.io import metal_columns, parse_channel, read_fcs, write_spillover

__all__ = ["estimate_spillover"]

logger = logging.getLogger(__name__)


def _read_files(paths: Sequence[str | PathLike[str]]) -> AnnData:
    """Single-stain FCS files as one AnnData (``obs["sample_id"]`` = file stem)."""
    parts = []
    for p in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ItmeInputWarning)
            a = read_fcs(p)
        a.obs["sample_id"] = Path(p).stem
        a.obs_names = [f"{Path(p).stem}_{i}" for i in range(a.n_obs)]
        parts.append(a)
    channels = [list(a.var["channel"]) for a in parts]
    for p, chans in zip(paths[1:], channels[1:], strict=True):
        if chans != channels[0]:
            raise ItmeInputError(
                where=str(p),
                expected=f"the channels of {paths[0]}",
                found=f"{len(chans)} channels, differing from {len(channels[0])}",
                fix="Acquire every single-stain file with one panel",
            )
    out = ad.concat(parts, merge="first")
    out.var = parts[0].var.copy()
    out.obs["sample_id"] = pd.Categorical(out.obs["sample_id"])
    return out


def _metal_of(value: object, metals: Mapping[str, int], where: str) -> str:
    """A stained channel given as a metal (``Nd144``, ``Nd144Di``) or a bare mass (``144``)."""
    text = str(value).strip()
    if text.replace(".0", "").isdigit():
        hits = [m for m in metals if parse_channel(m).mass == text.replace(".0", "")]
        if len(hits) == 1:
            return hits[0]
    else:
        parsed = parse_channel(text)
        if parsed.element and parsed.metal in metals:
            return parsed.metal
    raise ItmeInputError(
        where=where,
        expected="a metal (or mass) of a channel of the data",
        found=repr(text),
        fix=f"Use one of {', '.join(list(metals)[:10])}{' ...' if len(metals) > 10 else ''}",
    )


def estimate_spillover(
    adata: AnnData | str | PathLike[str] | Sequence[str | PathLike[str]],
    *,
    population_key: str | None = None,
    stained: Mapping[str, str] | None = None,
    sample_key: str = "sample_id",
    channels: Sequence[str] | None = None,
    interactions: Literal["default", "all"] = "default",
    method: Literal["default", "classic"] = "default",
    trim: float = 0.5,
    threshold: float = 1e-5,
    min_intensity: float = 3.0,
    min_separation: float = 1.0,
    min_events: int = 50,
    path: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """Estimate the spillover matrix from single-stained beads (CATALYST's ``computeSpillmat``).

    Each bead population carries one metal. Its events are found by, in order of precedence:
    ``population_key`` (an obs column naming each event's stained metal, e.g. from a
    debarcoding); ``stained`` (sample → metal for one file per stain: the file's events
    brightest in that metal); or, by default, each event's brightest channel among
    ``channels``, when at least ``min_intensity`` on the arcsinh (cofactor 5) scale and
    ``min_separation`` above the second brightest (a spillover of a few percent lies ~3
    above). For the population stained in ``i`` the spillover into ``j`` is the median ratio
    of the background-corrected counts ``(y_j - bg_j) / (y_i - bg_i)`` (``method="default"``;
    ``bg`` the median of the populations unrelated to ``i``), or the ratio of the
    background-corrected medians (``"classic"``); only into the channels one mass below or
    above, 16 above (oxides) and the same element's other isotopes (``interactions=
    "default"``), or into every channel (``"all"``). Estimates below ``threshold`` or
    negative are 0.

    Parameters
    ----------
    adata
        Raw counts of single-stained beads: an AnnData (``layers["raw"]`` or ``X``), one FCS
        path, or several (one per stain, read with :func:`itme.io.read_fcs`; ``sample_id`` =
        the file name without extension).
    population_key
        obs column with each event's stained metal (``Nd144``, ``Nd144Di``) or mass
        (``144``); empty / ``0`` = unassigned.
    stained
        sample id (file stem) → stained metal, for one file per stain.
    sample_key
        obs column of the sample, with ``stained``.
    channels
        The stained channels (metals) to look for when neither of the above is given;
        default every channel named by a metal.
    interactions
        ``"default"`` (±1 mass, +16 oxide, same-element isotopes) or ``"all"``.
    method
        ``"default"`` (median of ratios) or ``"classic"`` (ratio of medians).
    trim
        Fraction trimmed from each end when averaging (0.5 = median).
    threshold
        Spillover estimates below this are set to 0.
    min_intensity
        Arcsinh-scale (cofactor 5) brightness an event needs in its brightest channel to be
        assigned automatically.
    min_separation
        Arcsinh-scale gap between an event's brightest and second brightest channel needed
        to be assigned automatically.
    min_events
        Populations with fewer events are not used (their rows stay identity, warned).
    path
        When given, the matrix is also written there as CSV (:func:`itme.io.write_spillover`).

    Returns
    -------
    DataFrame in CATALYST's layout: index = emitting channels, columns = receiving channels
    (the ``$PnN`` names of every channel named by a metal, in data order), diagonal 1; a
    channel without a population has an identity row. ``attrs``: ``populations``
    (DataFrame: channel, metal, n_events, estimated), ``method``, ``interactions``,
    ``trim``, ``threshold``.

    Raises
    ------
    ItmeInputError
        No channel named by a metal; an unknown stained metal; no population with
        ``min_events`` events.
    ItmeParameterError
        Bad ``method``, ``interactions``, ``trim`` or ``min_events``.
    """
    if method not in ("default", "classic"):
        raise ItmeParameterError("method", "'default' or 'classic'", method)
    if interactions not in ("default", "all"):
        raise ItmeParameterError("interactions", "'default' or 'all'", interactions)
    if not 0 <= float(trim) <= 0.5:
        raise ItmeParameterError("trim", "a fraction in [0, 0.5]", trim)
    if int(min_events) < 1:
        raise ItmeParameterError("min_events", "an integer >= 1", min_events)
    if isinstance(adata, str | PathLike):
        adata = _read_files([adata])
    elif not isinstance(adata, AnnData):
        adata = _read_files(list(adata))
    names = list(map(str, adata.var_names))
    chans = adata.var["channel"].astype(str).tolist() if "channel" in adata.var else names
    metals = metal_columns(names, channels=chans)
    if not metals:
        raise ItmeInputError(
            where="var",
            expected="channels named by metal (Nd144Di, 144Nd_CD3, ...)",
            found=f"{', '.join(names[:8])}",
        )
    order = list(metals.values())  # data columns of the metal channels, in data order
    pos = {m: k for k, m in enumerate(metals)}  # metal -> row of the matrix
    raw = adata.layers["raw"] if "raw" in adata.layers else adata.X
    values = np.asarray(raw[:, order], dtype=np.float64)
    population = np.full(adata.n_obs, -1, dtype=np.int64)

    if population_key is not None:
        if population_key not in adata.obs:
            raise ItmeParameterError("population_key", "an obs column", population_key)
        labels = adata.obs[population_key].astype(str).to_numpy()
        for label in pd.unique(labels):
            if label.strip() in ("", "0", "nan", "None"):
                continue
            metal = _metal_of(label, metals, f"obs[{population_key!r}] value")
            population[labels == label] = pos[metal]
    elif stained is not None:
        if sample_key not in adata.obs:
            raise ItmeParameterError("sample_key", "an obs column", sample_key)
        samples = adata.obs[sample_key].astype(str).to_numpy()
        brightest = values.argmax(axis=1)
        for sample, label in stained.items():
            metal = _metal_of(label, metals, f"stained[{sample!r}]")
            rows = (samples == str(sample)) & (brightest == pos[metal])
            population[rows] = pos[metal]
    else:
        cand = (
            [pos[_metal_of(c, metals, "channels")] for c in channels]
            if channels is not None
            else list(range(len(metals)))
        )
        scaled = arcsinh_values(values[:, cand], 5.0)
        top2 = np.sort(scaled, axis=1)[:, -2:] if len(cand) > 1 else np.c_[scaled * 0, scaled]
        ok = (top2[:, 1] >= min_intensity) & (top2[:, 1] - top2[:, 0] >= min_separation)
        population[ok] = np.asarray(cand)[scaled[ok].argmax(axis=1)]

    counts = np.bincount(population[population >= 0], minlength=len(metals))
    small = (counts > 0) & (counts < int(min_events))
    population[np.isin(population, np.flatnonzero(small))] = -1
    found = np.flatnonzero(counts >= int(min_events))
    if found.size == 0:
        raise ItmeInputError(
            where="single-stained beads",
            expected=f"populations of >= {int(min_events)} events stained in one metal",
            found=f"{int((population >= 0).sum())} assigned events",
            fix="Give population_key= or stained=, or lower min_events",
        )
    if small.any():
        warnings.warn(
            f"populations with fewer than {int(min_events)} events not used: "
            + ", ".join(f"{m} ({counts[pos[m]]})" for m in metals if small[pos[m]]),
            ItmeInputWarning,
            stacklevel=2,
        )
    masses = [int(parse_channel(m).mass) for m in metals]
    elements = [parse_channel(m).element for m in metals]
    targets = spill_targets(masses, elements, interactions=interactions)
    spill, n_events = _estimate(
        values,
        population,
        found,
        targets,
        method=method,
        trim=float(trim),
        threshold=float(threshold),
    )
    labels_out = [chans[c] for c in order]
    out = pd.DataFrame(spill, index=labels_out, columns=labels_out)
    out.attrs = {
        "populations": pd.DataFrame(
            {
                "channel": labels_out,
                "metal": list(metals),
                "n_events": counts.astype(np.int64),
                "estimated": np.isin(np.arange(len(metals)), found),
            }
        ),
        "method": method,
        "interactions": interactions,
        "trim": float(trim),
        "threshold": float(threshold),
    }
    logger.info(
        "estimate_spillover: %d stained populations (%s), %d events; %d non-zero spill values",
        found.size,
        ", ".join(list(metals)[k] for k in found),
        int(n_events.sum()),
        int((spill > 0).sum() - len(metals)),
    )
    if path is not None:
        write_spillover(out, path=path)
    return out
