"""Sample-level QC: a sample whose cleaning kept too few events, or too small a fraction, failed.

A failed sample (a clogged acquisition, a sample of dead cells and debris) gives frequencies
from few cells and of a biased population; entered into patient clustering and tests it counts
as much as any other. :func:`sample_qc` marks each sample ``pass``, ``excluded`` or
``flagged`` from the accounting of :func:`itme.pp.clean`; :func:`exclude_samples` returns the
events without the excluded samples.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError, ItmeStateError
from itme.pp._subset import sample_codes, subset_events

__all__ = ["MIN_CELLS", "MIN_FRACTION_KEPT", "exclude_samples", "sample_qc"]

logger = logging.getLogger(__name__)

#: default least number of events a sample must keep after cleaning. With 500 cells a subset
#: at 5 % of the sample is ~25 cells (a binomial SD of ~1 percentage point); fewer cells make
#: the per-patient frequencies too noisy to cluster patients on.
MIN_CELLS = 500
#: default least fraction of a sample's events that cleaning keeps. Typical CyTOF samples keep
#: 60-90 % of their events after bead, debris, doublet and dead-cell gating; below half, the
#: acquisition or the sample most likely failed (clog, mostly dead cells or debris).
MIN_FRACTION_KEPT = 0.5


def sample_qc(
    adata: AnnData,
    *,
    min_cells: int = MIN_CELLS,
    min_fraction_kept: float = MIN_FRACTION_KEPT,
    on_fail: Literal["exclude", "flag"] = "exclude",
    key_added: str = "sample_qc",
    copy: bool = False,
) -> AnnData | None:
    """Mark every sample ``pass``, ``excluded`` or ``flagged`` by the events cleaning kept.

    Parameters
    ----------
    adata
        Events labelled by :func:`itme.pp.clean` (``uns["qc"]["accounting"]``).
    min_cells
        A sample keeping fewer events fails (default :data:`MIN_CELLS`).
    min_fraction_kept
        A sample keeping a smaller fraction of its events fails (default
        :data:`MIN_FRACTION_KEPT`).
    on_fail
        ``"exclude"`` failed samples (use :func:`exclude_samples` next) or keep them
        ``"flag"``-ged.
    key_added
        Where the table goes in ``uns``.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    ``None`` (or the copy), with ``uns[key_added]``: DataFrame, one row per sample:
    ``sample_id``, ``events_in``, ``events_kept``, ``fraction_kept``, ``status`` (``pass``,
    ``excluded`` or ``flagged``) and ``reason`` (empty for ``pass``). An
    :class:`~itme.errors.ItmeExclusionWarning` lists the failed samples and why.

    Raises
    ------
    ItmeStateError
        :func:`itme.pp.clean` has not run.
    ItmeParameterError
        A threshold out of range or an unknown ``on_fail``.
    ItmeInputError
        ``on_fail="exclude"`` and every sample failed.
    """
    if on_fail not in ("exclude", "flag"):
        raise ItmeParameterError("on_fail", "'exclude' or 'flag'", on_fail)
    if min_cells < 0:
        raise ItmeParameterError("min_cells", "a count >= 0", min_cells)
    if not 0.0 <= min_fraction_kept <= 1.0:
        raise ItmeParameterError("min_fraction_kept", "a fraction in [0, 1]", min_fraction_kept)
    acc = adata.uns.get("qc", {}).get("accounting")
    if acc is None:
        raise ItmeStateError("uns['qc']['accounting'] is missing: run itme.pp.clean first")
    adata = adata.copy() if copy else adata
    events_in = acc["events_in"].to_numpy(dtype=np.int64)
    kept = acc["events_out"].to_numpy(dtype=np.int64)
    fraction = np.divide(kept, events_in, out=np.zeros(len(kept)), where=events_in > 0)
    reasons = []
    for n, f in zip(kept, fraction, strict=True):
        why = []
        if n < min_cells:
            why.append(f"{n} events kept < min_cells {min_cells}")
        if f < min_fraction_kept:
            why.append(f"{100 * f:.1f} % kept < min_fraction_kept {100 * min_fraction_kept:g} %")
        reasons.append("; ".join(why))
    failed = np.array([bool(r) for r in reasons])
    status = np.where(failed, "excluded" if on_fail == "exclude" else "flagged", "pass")
    table = pd.DataFrame(
        {
            "sample_id": acc["sample_id"].astype(str).to_numpy(),
            "events_in": events_in,
            "events_kept": kept,
            "fraction_kept": np.round(fraction, 4),
            "status": status,
            "reason": reasons,
        }
    )
    if failed.all() and on_fail == "exclude":
        raise ItmeInputError(
            "every sample failed sample-level QC: "
            + "; ".join(f"{s}: {r}" for s, r in zip(table["sample_id"], reasons, strict=True)),
            where="clean.min_cells / clean.min_fraction_kept",
            fix="Check the cleaning gates (qc_thresholds.csv, the QC figures) or lower the "
            "thresholds",
        )
    if failed.any():
        verb = "excluded from the analysis" if on_fail == "exclude" else "kept and flagged"
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"{int(failed.sum())} of {len(table)} sample(s) failed sample-level QC and are "
                f"{verb}",
                [
                    f"{s} ({r})"
                    for s, r in zip(
                        table["sample_id"][failed], table["reason"][failed], strict=True
                    )
                ],
            ),
            stacklevel=2,
        )
    adata.uns[key_added] = table
    return adata if copy else None


def exclude_samples(
    adata: AnnData, *, key: str = "sample_qc", sample_key: str = "sample_id"
) -> AnnData:
    """A new AnnData without the events of the samples :func:`sample_qc` excluded.

    Parameters
    ----------
    adata
        Events with ``uns[key]`` from :func:`sample_qc`.
    key
        The ``uns`` key of the QC table.
    sample_key
        The ``obs`` column of the sample.

    Returns
    -------
    The new AnnData (``adata`` itself when nothing is excluded); the excluded samples (and
    patients left without a sample) are dropped from the categories of ``obs[sample_key]`` and
    ``obs["patient_id"]``, so no later step sees them as empty samples.

    Raises
    ------
    ItmeStateError
        ``uns[key]`` is missing.
    """
    if key not in adata.uns:
        raise ItmeStateError(f"uns['{key}'] is missing: run itme.pp.sample_qc first")
    table = adata.uns[key]
    excluded = set(table.loc[table["status"] == "excluded", "sample_id"])
    if not excluded:
        return adata
    codes, ids = sample_codes(adata, sample_key)  # by code: no string per event
    rows = np.flatnonzero(~np.isin(codes, [k for k, s in enumerate(ids) if s in excluded]))
    out = subset_events(adata, rows)
    for col in (sample_key, "patient_id"):
        if col in out.obs and isinstance(out.obs[col].dtype, pd.CategoricalDtype):
            out.obs[col] = out.obs[col].cat.remove_unused_categories()
    logger.info(
        "exclude_samples: left out %d sample(s), %d events", len(excluded), adata.n_obs - rows.size
    )
    return out
