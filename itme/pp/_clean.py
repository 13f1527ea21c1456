"""CyTOF cleaning: beads, debris, doublets, dead cells, CD45+ gate.

The steps, their roles and defaults are defined once, in :data:`itme.core.clean.steps.STEPS`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from numbers import Real
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._dask import is_lazy, per_sample
from itme._progress import track
from itme.core.clean.steps import (
    GATING_COFACTOR,
    KEPT,
    QC_LABELS,
    STEP_NAMES,
    STEPS,
    canonical_step,
    gate_sample,
    gates_for_roles,
    step_by_name,
)
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
    ItmeStateError,
)
from itme.pp._clean_inputs import (
    dense_raw,
    drop_manual_roles,
    loader,
    n_rows,
    roles_of,
    sample_rows,
    user_thresholds,
)
from itme.pp._subset import subset_events

__all__ = ["apply_qc", "clean"]

logger = logging.getLogger(__name__)

_THRESHOLD_COLUMNS = [
    "sample_id",
    "step",
    "role",
    "channel",
    "low",
    "high",
    "low_raw",
    "high_raw",
    "method",
    "n_outside",
    "note",
]


def clean(
    adata: AnnData,
    *,
    steps: Sequence[str] | None = None,
    channels: Mapping[str, str | Sequence[str]] | None = None,
    thresholds: Mapping[str, tuple[float | None, float | None]] | pd.DataFrame | None = None,
    method: Literal["auto", "mad"] = "auto",
    k: float | Mapping[str, float] | None = None,
    cofactor: float = GATING_COFACTOR,
    sample_key: str = "sample_id",
    max_fit_events: int = 100_000,
    copy: bool = False,
) -> AnnData | None:
    """Label every event kept or removed by the CyTOF cleaning chain, with per-sample gates.

    Steps run in this order (the table :data:`itme.core.clean.steps.STEPS`), each on the
    events that passed the earlier ones, and the first failing step names the event:

    1. ``bead``: EQ normalisation beads, bright in Ce140 **and** in every bead partner
       channel present (Eu151, Eu153, Ho165, Lu175, which may carry antibodies). A
       ``beadDist`` channel is used only with a user threshold.
    2. ``debris``: total DNA (Ir191 + Ir193) low.
    3. ``doublet``: total DNA high, or Event_length high, or a Helios Gaussian parameter
       (Residual, Width, Offset, Center) high.
    4. ``dead``: cisplatin (Pt194/195/196/198 summed) high.
    5. ``cd45_negative``: CD45 low.

    Gating is done on the gating scale ``arcsinh(raw / cofactor)`` of the raw counts in
    ``layers["raw"]`` (whatever :func:`itme.pp.arcsinh` did to ``X``); thresholds are given
    and stored on that scale. Thresholds are found per sample (see
    :mod:`itme.core.clean.gating`): at the density valley when the events to remove form a
    separate population, else at ``median ± k`` robust SDs (1.4826 MAD); or they are given.
    Nothing is removed here: :func:`apply_qc` returns the kept events.

    Parameters
    ----------
    adata
        Events x channels from :func:`itme.io.read_cohort` (raw counts in
        ``layers["raw"]``, or in ``X`` before any transformation).
    steps
        Steps to run, a subset of ``bead, debris, doublet, dead, cd45_negative`` (run in that
        order; ``cd45`` is accepted for ``cd45_negative``). Default: every step whose
        channels are found; the others are skipped with the reason recorded. A step asked
        for explicitly whose channels are missing is an error.
    channels
        Override the detected channel roles: role -> var name(s) (``$PnN`` or antigen
        accepted too). Roles: ``bead`` (Ce140 first, then partners), ``bead_distance``,
        ``dna``, ``event_length``, ``center``, ``offset``, ``width``, ``residual``,
        ``cisplatin``, ``cd45``. An empty list switches a role off.
    thresholds
        User thresholds on the gating scale ``arcsinh(raw / cofactor)`` (as drawn by
        :func:`itme.pl.qc_gates` and stored in ``uns["qc"]["thresholds"]``), replacing the
        automatic ones. Either a mapping role or gate channel -> ``(low, high)`` (``None``
        where not set; e.g. ``{"dna": (3.7, 6.7), "cd45": (2.1, None)}`` sets the debris
        and DNA-doublet gates and the CD45 gate for every sample), or a DataFrame shaped
        like ``uns["qc"]["thresholds"]`` (``step, channel, low, high`` and optionally
        ``sample_id``; rows without a sample apply to all), e.g. an edited earlier result.
        Its ``low_raw`` / ``high_raw`` columns, if present, are not read; they must agree
        with ``low`` / ``high`` (an edit of the raw columns alone is an error). Values
        beyond ±15 (``5 * sinh(15)`` = 8.2 million counts) are an error: they are raw
        counts given by mistake.
    method
        ``"auto"`` (valley between populations, else median ± k·SD) or ``"mad"`` (always
        median ± k·SD).
    k
        Robust SDs from the median for the tail rule: one number, or step -> number.
        Default: each step's ``k`` in :data:`~itme.core.clean.steps.STEPS` (4 for bead,
        debris, dead and cd45_negative, 3.5 for doublet).
    cofactor
        Cofactor of the gating scale (:data:`~itme.core.clean.steps.GATING_COFACTOR`, 5).
    sample_key
        obs column naming the sample; gates are fitted per sample. When the column is
        absent and the default is used, all events form one sample ``"all"``.
    max_fit_events
        Fit each threshold on at most this many events per sample (a regular stride
        through the acquisition); every event is still labelled.
    copy
        Return a labelled copy instead of modifying ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes:

    - ``obs["itme_qc"]``: categorical ``kept, bead, debris, doublet, dead, cd45_negative``.
    - ``uns["qc"]["thresholds"]``: DataFrame, one row per sample and gate: ``sample_id,
      step, role, channel`` (``+``-joined when channels are summed), ``low, high`` (kept
      range on the gating scale, NaN = open), ``low_raw, high_raw`` (the same in raw
      units, ``cofactor * sinh(value)``), ``method`` (``valley``, ``mad``, ``user``,
      ``bead-population``, ``median+delta`` or ``none: <reason>``), ``n_outside`` and
      ``note`` (when a valley was found with most events beyond it, which is never cut
      automatically: where it was, on the gating scale with its raw counts in brackets,
      and how many events lie beyond; warned).
    - ``uns["qc"]["accounting"]``: DataFrame, one row per sample: ``sample_id,
      events_in``, events removed by each step, ``events_out, pct_kept``.
    - ``uns["qc"]["params"]``: ``steps`` run, ``skipped`` (DataFrame ``step, reason``),
      ``channels`` (role -> var names), ``method``, ``k``, ``min_delta``, ``cofactor``,
      ``sample_key``, ``max_fit_events``, ``user_thresholds``.

    Raises
    ------
    ItmeParameterError
        Unknown step, role, channel, method or threshold key; a threshold off the gating
        scale.
    ItmeInputError
        A step asked for explicitly has no channels; no raw values.
    """
    start = time.perf_counter()
    if method not in ("auto", "mad"):
        raise ItmeParameterError("method", "'auto' or 'mad'", method)
    if not (isinstance(cofactor, Real) and np.isfinite(cofactor) and cofactor > 0):
        raise ItmeParameterError("cofactor", "a positive number", cofactor)
    if not (isinstance(max_fit_events, Real) and 100 <= max_fit_events < np.inf):
        raise ItmeParameterError("max_fit_events", "an integer >= 100", max_fit_events)
    explicit = steps is not None
    wanted = _check_steps(steps)
    k_step = _per_step("k", k, {s.name: s.k for s in STEPS})
    min_delta = {s.name: s.min_delta for s in STEPS}
    if copy:
        adata = adata.copy()
    raw = _raw_matrix(adata)
    roles = roles_of(adata, channels)
    roles = drop_manual_roles(roles, thresholds)
    gates = gates_for_roles(roles, wanted)
    run, skipped = [], []
    for step in wanted:
        if gates[step]:
            run.append(step)
            continue
        reason = _missing_reason(step)
        if explicit:
            raise ItmeInputError(
                where=f"clean(steps=...) step {step!r}",
                expected="channels for the role(s) "
                + ", ".join(step_by_name(step).automatic_roles),
                found="none in var (names, channel, antigen)",
                fix="Name them with channels={role: [...]} or leave the step out",
            )
        skipped.append({"step": step, "reason": reason})
        logger.info("clean: step %s skipped: %s", step, reason)
    gates = {s: gates[s] for s in run}
    user = user_thresholds(thresholds, gates, cofactor)

    samples = sample_rows(adata, sample_key)
    codes = np.zeros(adata.n_obs, dtype=np.int8)
    records: list[dict] = []
    accounting: list[dict] = []
    options = {
        "cofactor": cofactor,
        "k": k_step,
        "min_delta": min_delta,
        "method": method,
        "max_fit_events": int(max_fit_events),
    }
    users = [user.get(sample_id, user.get(None, {})) for sample_id, _ in samples]
    lazy = None
    if is_lazy(raw):  # one task per sample on the dask cluster, same kernel
        used, narrow = _gating_columns(gates)
        lazy = per_sample(
            _gate_block,
            raw[:, used],  # each task reads (and its sample's block holds) these columns only
            [rows for _, rows in samples],
            narrow,
            per_call=[{"user": u} for u in users],
            **options,
        )
    for i, (sample_id, rows) in enumerate(track(samples, description="cleaning samples")):
        n = n_rows(rows)
        if lazy is not None:
            result = lazy[i]
        else:
            result = gate_sample(loader(raw, rows), n, gates, user=users[i], **options)
        codes[rows] = result.codes
        records.extend({"sample_id": sample_id, **r} for r in result.records)
        counts = np.bincount(result.codes, minlength=len(QC_LABELS))
        row = {"sample_id": sample_id, "events_in": n}
        row.update({step: int(counts[i + 1]) for i, step in enumerate(STEP_NAMES)})
        row["events_out"] = int(counts[0])
        row["pct_kept"] = 100.0 * counts[0] / n if n else float("nan")
        accounting.append(row)
        if n and counts[0] < 0.5 * n:
            worst = STEP_NAMES[int(np.argmax(counts[1:]))]
            warnings.warn(
                f"sample {sample_id}: only {counts[0]} of {n} events kept "
                f"({row['pct_kept']:.1f} %); step {worst} removed {counts[1:].max()}. "
                "Check the gates with itme.pl.qc_gates.",
                ItmeInputWarning,
                stacklevel=2,
            )

    adata.obs["itme_qc"] = pd.Categorical.from_codes(codes, categories=list(QC_LABELS))
    acc = pd.DataFrame(accounting)
    acc["sample_id"] = acc["sample_id"].astype(str)
    thr = pd.DataFrame(records, columns=_THRESHOLD_COLUMNS)
    thr["sample_id"] = thr["sample_id"].astype(str)
    noted = thr[thr["note"] != ""]
    if len(noted):
        warnings.warn(
            f"{len(noted)} gate(s) found two populations with most events on the side to "
            "remove and were not cut there automatically: "
            + "; ".join(f"{r.sample_id} {r.channel}: {r.note}" for r in noted.head(5).itertuples())
            + ("; ..." if len(noted) > 5 else "")
            + ". If those events should go, pass thresholds={role: (low, high)} "
            "(see uns['qc']['thresholds'], column note, and itme.pl.qc_gates).",
            ItmeInputWarning,
            stacklevel=2,
        )
    adata.uns["qc"] = {
        "thresholds": thr,
        "accounting": acc,
        "params": {
            "steps": list(run),
            "skipped": pd.DataFrame(skipped, columns=["step", "reason"]),
            "channels": {r: [name for _, name in cs] for r, cs in roles.items()},
            "method": method,
            "k": {s: float(v) for s, v in k_step.items()},
            "min_delta": {s: float(v) for s, v in min_delta.items()},
            "cofactor": float(cofactor),
            "sample_key": sample_key,
            "max_fit_events": int(max_fit_events),
            "user_thresholds": thresholds is not None,
        },
    }
    total = acc[list(STEP_NAMES)].sum()
    logger.info(
        "clean: %d of %d events kept (%.2f %%) in %d samples [%s] in %.2f s",
        int(acc["events_out"].sum()),
        adata.n_obs,
        100.0 * acc["events_out"].sum() / max(adata.n_obs, 1),
        len(acc),
        ", ".join(f"{s} {int(total[s])}" for s in STEP_NAMES),
        time.perf_counter() - start,
    )
    return adata if copy else None


def apply_qc(adata: AnnData) -> AnnData:
    """Return a new AnnData holding only the events :func:`clean` kept.

    ``uns`` (with the accounting of what was removed) is carried over; when ``X`` and
    ``layers["raw"]`` are one array they stay one array in the result.

    Parameters
    ----------
    adata
        Labelled by :func:`clean` (``obs["itme_qc"]``).

    Returns
    -------
    A new AnnData of the ``kept`` events, with ``uns["qc"]["applied"] = True``. An
    :class:`~itme.errors.ItmeExclusionWarning` says how many events were removed, by step.

    Raises
    ------
    ItmeStateError
        ``obs["itme_qc"]`` is missing (run :func:`clean` first).
    """
    if "itme_qc" not in adata.obs:
        raise ItmeStateError("obs['itme_qc'] is missing: run itme.pp.clean before apply_qc")
    labels = adata.obs["itme_qc"]  # compared as a categorical: no string per event
    kept = (labels == KEPT).to_numpy()
    keep = np.flatnonzero(kept)
    removed = adata.n_obs - keep.size
    if removed:
        by_step = labels.array[~kept].value_counts()  # no index: pandas would cache it
        warnings.warn(
            f"apply_qc removed {removed} of {adata.n_obs} events "
            f"({100.0 * removed / adata.n_obs:.2f} %): "
            + ", ".join(f"{s} {int(by_step.get(s, 0))}" for s in STEP_NAMES)
            + ". Per-sample counts are in uns['qc']['accounting'].",
            ItmeExclusionWarning,
            stacklevel=2,
        )
    out = subset_events(adata, keep)
    out.uns.setdefault("qc", {})
    out.uns["qc"]["applied"] = True
    logger.info("apply_qc: kept %d of %d events", keep.size, adata.n_obs)
    return out


# --------------------------------------------------------------------------- helpers


def _check_steps(steps: Sequence[str] | None) -> list[str]:
    """Step names (aliases resolved) in the order they run."""
    if steps is None:
        return list(STEP_NAMES)
    if isinstance(steps, str):
        steps = [steps]
    unknown = [s for s in steps if canonical_step(s) is None]
    if unknown:
        raise ItmeParameterError("steps", f"a subset of {', '.join(STEP_NAMES)}", unknown)
    wanted = {canonical_step(s) for s in steps}
    return [s for s in STEP_NAMES if s in wanted]


def _per_step(name: str, value: float | Mapping[str, float] | None, default: dict) -> dict:
    out = dict(default)
    if value is None:
        return out
    if isinstance(value, Mapping):
        unknown = [s for s in value if canonical_step(s) is None]
        if unknown:
            raise ItmeParameterError(
                name, f"a mapping with keys among {', '.join(STEP_NAMES)}", unknown
            )
        out.update({canonical_step(s): float(v) for s, v in value.items()})
    else:
        out = {s: float(value) for s in STEP_NAMES}
    if any(not np.isfinite(v) or v <= 0 for v in out.values()):
        raise ItmeParameterError(name, "positive numbers", value)
    return out


def _gating_columns(gates: dict) -> tuple[np.ndarray, dict]:
    """The columns the gates read, and the gates on those columns alone (in that order)."""
    used = sorted({c for specs in gates.values() for gate in specs for c in gate.columns})
    at = {c: i for i, c in enumerate(used)}
    narrow = {
        step: [replace(gate, columns=tuple(at[c] for c in gate.columns)) for gate in specs]
        for step, specs in gates.items()
    }
    return np.asarray(used, dtype=np.intp), narrow


def _gate_block(block: np.ndarray, gates: dict, **options: object) -> object:
    """Gate one sample's events (a numpy block): the per-sample task of the lazy path."""
    n = block.shape[0]
    return gate_sample(loader(np.asarray(block), slice(0, n)), n, gates, **options)


def _raw_matrix(adata: AnnData) -> np.ndarray:
    if "raw" not in adata.layers and "arcsinh" in adata.uns:
        raise ItmeStateError(
            "X was transformed (uns['arcsinh']) and layers['raw'] is missing: clean gates on "
            "raw ion counts. Keep layers['raw'] (itme.pp.arcsinh does)."
        )
    lazy = adata.layers["raw"] if "raw" in adata.layers else adata.X
    return lazy if is_lazy(lazy) else dense_raw(adata)


def _missing_reason(step: str) -> str:
    return f"no channel found for {' / '.join(step_by_name(step).automatic_roles)}"
