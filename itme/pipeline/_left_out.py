"""What the patient-level stages leave out, and how they say so (issue 14).

``unassigned`` events and subsets found in no sample are neither clustered on nor tested
(:func:`subsets_found`); everything left out of the group tests is one table,
``subsets_not_tested`` (:func:`not_tested`); a stage's statistical caveats are one warning
(:func:`caveats`); a default RNA-seq contrast DESeq2 cannot fit is named
(:func:`small_groups`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from itme.core.annotate.naming import UNASSIGNED
from itme.errors import ItmeStatisticsWarning

__all__ = ["caveats", "not_tested", "small_groups", "subsets_found"]


def subsets_found(adata: ad.AnnData) -> tuple[list[str], list[str]]:
    """Subsets with events in some sample, and those with none in any (never found).

    ``"unassigned"`` is in neither list: it is in every denominator but is not a subset.
    """
    counts = np.asarray(adata.layers["counts"]).sum(axis=0)
    names = [str(v) for v in adata.var_names]
    found = [n for n, c in zip(names, counts, strict=True) if c > 0 and n != UNASSIGNED]
    absent = [n for n, c in zip(names, counts, strict=True) if c == 0 and n != UNASSIGNED]
    return found, absent


def not_tested(
    adata: ad.AnnData, absent: list[str], results: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """The ``subsets_not_tested`` table: every feature left out of the group tests, and why."""
    rows = []
    names = [str(v) for v in adata.var_names]
    counts = dict(zip(names, np.asarray(adata.layers["counts"]).sum(axis=0), strict=True))
    total = int(np.asarray(adata.layers["counts"]).sum())
    if UNASSIGNED in counts:
        n = int(counts[UNASSIGNED])
        rows.append(
            (
                UNASSIGNED,
                "subset_tests",
                "not a subset: events no phenotype fits (in every denominator)",
                n,
                100.0 * n / total if total else float("nan"),
            )
        )
    rows += [(n, "subset_tests", "no events in any sample", 0, 0.0) for n in absent]
    for name, table in results.items():
        for feature, note in table.loc[table["note"] != "", ["feature", "note"]].itertuples(
            index=False
        ):
            n = int(counts.get(feature, 0)) if name == "subset_tests" else -1
            pct = 100.0 * n / total if n >= 0 and total else float("nan")
            rows.append((feature, name, str(note), n, pct))
    return pd.DataFrame(rows, columns=["feature", "table", "reason", "events", "pct_events"])


@contextlib.contextmanager
def caveats(summary: dict[str, Any], stage: str) -> Iterator[None]:
    """The statistical caveats of a stage as one warning, and listed in its summary.

    Each library call warns about its own caveat (a group of fewer than 5 patients, few
    events per Cox term, ...), often the same one again for every test: the stage collects
    them (:class:`~itme.errors.ItmeStatisticsWarning` only; other warnings pass through
    unchanged) and warns once, listing each distinct caveat; the report shows the list.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ItmeStatisticsWarning)
        yield
    found: list[str] = []
    for w in caught:
        if issubclass(w.category, ItmeStatisticsWarning):
            text = str(w.message).strip()
            if text not in found:
                found.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if found:
        summary["statistical caveats"] = found
        warnings.warn(
            f"{stage}: {len(found)} statistical caveat(s), listed in the report: "
            + "; ".join(found),
            ItmeStatisticsWarning,
            stacklevel=3,
        )


def small_groups(counts: ad.AnnData, contrast: Any) -> list[str]:
    """The groups of a contrast with fewer than 2 RNA-seq samples, described."""
    values = counts.obs[contrast.groupby].astype(str)
    out = []
    for what, levels in (("test", contrast.test), ("reference", contrast.reference)):
        n = int(values.isin(levels).sum())
        if n < 2:
            out.append(f"{what} group {' + '.join(levels)} has {n} RNA-seq sample(s)")
    return out
