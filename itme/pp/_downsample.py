"""Equal events per sample."""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._random import RngLike, draw_seed
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.pp._subset import sample_codes, subset_events

__all__ = ["downsample"]

logger = logging.getLogger(__name__)


def downsample(
    adata: AnnData,
    *,
    n: int | None = None,
    min_events: int | None = None,
    on_small: Literal["exclude", "error"] = "exclude",
    sample_key: str = "sample_id",
    rng: RngLike = None,
) -> AnnData:
    """Return a new AnnData with the same number of events from every sample.

    Only events labelled ``kept`` by :func:`itme.pp.clean` are counted and drawn when
    ``obs["itme_qc"]`` exists. Samples with fewer than ``min_events`` such events are
    excluded with an :class:`~itme.errors.ItmeExclusionWarning` (or are an error), and
    listed in ``uns["downsample"]``. Each remaining sample gives ``n`` events drawn without
    replacement (kept in their original order); a sample with fewer than ``n`` events
    (possible only when ``min_events < n``) gives all of them.

    The paper (Visram et al. 2021) required at least 40,395 CD45+ events per file:
    ``downsample(adata, min_events=40_395)`` excludes smaller samples and draws as many
    events as the smallest remaining sample has.

    Parameters
    ----------
    adata
        Events x channels, with the sample in ``obs[sample_key]``.
    n
        Events per sample. Default: the event count of the smallest sample that is not
        excluded.
    min_events
        Samples with fewer events are excluded (or an error). Default: ``n`` when ``n`` is
        given (so every sample ends with exactly ``n``), else 1 (only empty samples are
        excluded).
    on_small
        ``"exclude"`` samples below ``min_events`` with a warning, or ``"error"``.
    sample_key
        obs column naming the sample.
    rng
        Seed or generator for the draw (see :func:`itme._random.as_generator`).

    Returns
    -------
    A new AnnData of the drawn events (``uns`` carried over) with ``uns["downsample"]``:
    ``n``, ``min_events``, ``seed`` (the integer used), ``excluded`` (list of sample ids)
    and ``accounting`` (DataFrame ``sample_id, events_available, events_out, status`` with
    status ``downsampled``, ``all_events`` or ``excluded``).

    Raises
    ------
    ItmeInputError
        ``on_small="error"`` and a sample is below ``min_events``; every sample excluded; an
        event without a sample.
    ItmeParameterError
        Bad ``n``, ``min_events``, ``on_small`` or ``sample_key``.
    """
    if on_small not in ("exclude", "error"):
        raise ItmeParameterError("on_small", "'exclude' or 'error'", on_small)
    for name, value in (("n", n), ("min_events", min_events)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 1):
            raise ItmeParameterError(name, "a positive integer or None", value)
    if sample_key not in adata.obs:
        raise ItmeParameterError("sample_key", "an obs column", sample_key)
    if min_events is None:
        min_events = n if n is not None else 1

    codes, ids = sample_codes(adata, sample_key)
    usable = np.ones(adata.n_obs, dtype=bool)
    if "itme_qc" in adata.obs:
        usable = (adata.obs["itme_qc"] == "kept").to_numpy()  # by code: no string per event
        if not usable.all():
            logger.info(
                "downsample: drawing from the %d events labelled kept (of %d)",
                int(usable.sum()),
                adata.n_obs,
            )
    available = np.bincount(codes[usable], minlength=len(ids))
    small = [s for s, a in zip(ids, available, strict=True) if a < min_events]
    if small and on_small == "error":
        detail = ", ".join(f"{s} ({available[ids.index(s)]})" for s in small)
        raise ItmeInputError(
            where=f"obs['{sample_key}']",
            expected=f"at least {min_events} usable events per sample",
            found=detail,
            fix="Lower min_events, or pass on_small='exclude' to drop those samples",
        )
    remaining = [i for i, s in enumerate(ids) if s not in small]
    if not remaining:
        raise ItmeInputError(
            where=f"obs['{sample_key}']",
            expected=f"at least one sample with {min_events} or more usable events",
            found=f"largest sample has {int(available.max(initial=0))}",
        )
    if small:
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"downsample excluded {len(small)} of {len(ids)} samples with fewer than "
                f"{min_events} usable events "
                f"({int(sum(available[ids.index(s)] for s in small))} events)",
                [f"{s} ({available[ids.index(s)]})" for s in small],
            ),
            stacklevel=2,
        )
    n_draw = int(n) if n is not None else int(min(available[i] for i in remaining))

    seed = draw_seed(rng)
    gen = np.random.default_rng(seed)
    chosen = []
    records = []
    for i, sid in enumerate(ids):
        rows = np.flatnonzero((codes == i) & usable)
        if sid in small:
            records.append((sid, rows.size, 0, "excluded"))
            continue
        if rows.size > n_draw:
            rows = np.sort(gen.choice(rows, size=n_draw, replace=False))
            status = "downsampled"
        else:
            status = "all_events"
        chosen.append(rows)
        records.append((sid, int(available[i]), int(rows.size), status))
    index = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.intp)
    out = subset_events(adata, index)
    accounting = pd.DataFrame(
        records, columns=["sample_id", "events_available", "events_out", "status"]
    )
    out.uns["downsample"] = {
        "n": n_draw,
        "min_events": int(min_events),
        "seed": int(seed),
        "excluded": list(small),
        "accounting": accounting,
    }
    logger.info(
        "downsample: %d events per sample from %d samples (%d excluded), seed %d",
        n_draw,
        len(remaining),
        len(small),
        seed,
    )
    return out
