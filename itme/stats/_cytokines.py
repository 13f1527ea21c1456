"""Cytokine comparisons across patient groups (iTME clusters, disease status)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme._adata import (
    PATIENT,
    fmt_ids,
    join_table,
    observation_frame,
    one_row_per_patient,
    warn_unmatched,
)
from itme.errors import ItmeParameterError, ItmeStatisticsWarning
from itme.stats._groups import compare_groups

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["compare_cytokines"]

logger = logging.getLogger(__name__)


def log_cytokines(values: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """``log10`` of each analyte, with a pseudocount where values are <= 0.

    The pseudocount is half the smallest positive value of that analyte, returned per analyte
    so that it can be reported.
    """
    out = values.copy()
    pseudo = {}
    for c in values.columns:
        v = values[c]
        if (v <= 0).any():
            positive = v[v > 0]
            pseudo[c] = float(positive.min() / 2) if len(positive) else 1.0
            out[c] = np.log10(v + pseudo[c])
        else:
            out[c] = np.log10(v)
    return out, pseudo


def compare_cytokines(
    cytokines: AnnData,
    *,
    groupby: str,
    patients: AnnData | None = None,
    analytes: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    test: str = "kruskal",
    fdr: str = "bh",
    min_group_size: int = 2,
) -> pd.DataFrame:
    """Compare log10 cytokine concentrations between groups, BH-adjusted over the analytes.

    The paper found no cytokine differing between iTME clusters (nor between clusters 2+3 and
    1): this is that test. Values are ``log10(pg/mL)`` (a pseudocount of half the smallest
    positive value is added to analytes with zeros, with an ItmeStatisticsWarning); rank tests
    give the same p-values on either scale. Out-of-range cells keep the value
    :func:`itme.io.read_cytokines` substituted; the table says how many there were.

    Parameters
    ----------
    cytokines
        Patients × analytes AnnData from :func:`itme.io.read_cytokines`.
    groupby
        Group column: a column of ``cytokines.obs`` (e.g. ``"disease_status"`` once the
        clinical table is joined with :func:`itme.io.add_clinical`), else of ``patients.obs``
        (e.g. ``"itme_cluster"``).
    patients
        Patients AnnData carrying ``groupby`` in ``obs``, joined by ``patient_id`` (one value
        per patient); cytokine patients without a sample are left out and, with the patients
        without cytokines, reported in one ItmeExclusionWarning.
    analytes
        Analytes to test (default all).
    groups
        Groups in this order (others excluded and reported), e.g. ``["1", "2"]``.
    test
        ``"kruskal"`` or ``"mannwhitney"``.
    fdr
        ``"bh"`` (default), ``"by"``, ``"holm"``, ``"bonferroni"`` or ``"none"``.
    min_group_size
        Smaller groups are excluded and reported.

    Returns
    -------
    The :func:`itme.stats.compare_groups` table (one row per analyte; ``median_<g>``,
    ``q1_<g>``, ``q3_<g>`` back-transformed to pg/mL) with ``scale`` (``"log10"``),
    ``pseudocount`` and, when available, ``n_below_range``, ``n_above_range``,
    ``n_extrapolated``, ``n_missing`` from :func:`itme.io.read_cytokines`.
    """
    names = list(cytokines.var_names.astype(str)) if analytes is None else list(analytes)
    unknown = [a for a in names if a not in set(cytokines.var_names.astype(str))]
    if unknown:
        raise ItmeParameterError("analytes", "var_names of cytokines", unknown)
    x = cytokines[:, names].X
    values = pd.DataFrame(
        np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float),
        index=cytokines.obs_names,
        columns=names,
    )
    logged, pseudo = log_cytokines(values)
    if pseudo:
        warnings.warn(
            f"compare_cytokines: zeros or negative values; pseudocount added before log10 for "
            f"{fmt_ids(list(pseudo))}",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    frame = logged.copy()
    ids = (
        cytokines.obs[PATIENT].astype(str)
        if PATIENT in cytokines.obs
        else cytokines.obs_names.to_series().astype(str)
    )
    frame[PATIENT] = ids.to_numpy()
    if groupby in cytokines.obs.columns:
        frame[groupby] = cytokines.obs[groupby]
    elif patients is not None and groupby in patients.obs.columns:
        per_patient = one_row_per_patient(
            observation_frame(patients)[[PATIENT, groupby]].astype({PATIENT: str}),
            [groupby],
            what="compare_cytokines, patients.obs",
            fix="Give each patient one group (one sample per patient).",
        )
        joined, record = join_table(frame, per_patient, where="patients.obs")
        warn_unmatched(
            record,
            frame,
            what="compare_cytokines",
            table_name="patients.obs",
            consequence="left out",
        )
        frame[groupby] = joined[groupby]
        frame = frame.drop(index=record["samples_without_row"])
    else:
        raise ItmeParameterError(
            "groupby",
            "a column of cytokines.obs or of patients.obs",
            groupby,
            fix="Join clinical columns first: itme.io.add_clinical(cytokines, clinical); "
            "pass patients= for itme_cluster.",
        )
    out = compare_groups(
        frame,
        groupby=groupby,
        features=names,
        groups=groups,
        test=test,
        fdr=fdr,
        min_group_size=min_group_size,
    )
    for col in out.columns:
        if col.startswith(("median_", "q1_", "q3_")):
            out[col] = 10 ** out[col] - out["feature"].map(pseudo).fillna(0.0)
    out["scale"] = "log10"
    out["pseudocount"] = out["feature"].map(pseudo).fillna(0.0)
    for status in ("below_range", "above_range", "extrapolated", "missing"):
        if f"n_{status}" in cytokines.var.columns:
            out[f"n_{status}"] = cytokines.var.loc[out["feature"], f"n_{status}"].to_numpy()
    logger.info(
        "compare_cytokines: %d analytes by %s, %d at padj < 0.05",
        len(out),
        groupby,
        int((out["padj"] < 0.05).sum()),
    )
    return out
