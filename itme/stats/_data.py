"""Statistics-only plumbing: the clinical table as a DataFrame input, multiple-testing adjustment.

The accessors shared with :mod:`itme.tl` and :mod:`itme.pl` (features, ``obs`` columns, group
labels, the per-patient join) live in :mod:`itme._adata`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from itme._adata import PATIENT, fmt_ids
from itme.core.stats.groups import holm
from itme.errors import ItmeInputError, ItmeParameterError


def clinical_frame(clinical: pd.DataFrame, *, where: str = "clinical") -> pd.DataFrame:
    """The clinical table indexed by ``patient_id`` (as str); the column is moved to the index."""
    if not isinstance(clinical, pd.DataFrame):
        raise ItmeParameterError(
            "clinical", "a pandas DataFrame (itme.io.read_clinical)", type(clinical).__name__
        )
    df = clinical.copy()
    if PATIENT in df.columns:
        df = df.set_index(PATIENT)
    elif df.index.name != PATIENT:
        raise ItmeInputError(
            where=where,
            expected="a patient_id column (or an index named patient_id)",
            found=f"columns {fmt_ids(df.columns)}",
            fix="Read the table with itme.io.read_clinical.",
        )
    df.index = df.index.astype(str)
    df.index.name = PATIENT
    dup = df.index[df.index.duplicated()].unique()
    if len(dup):
        raise ItmeInputError(
            where=f"{where}, column patient_id",
            expected="unique patient ids",
            found=f"duplicated {fmt_ids(dup)}",
            fix="Keep one row per patient.",
        )
    return df


def padjust(pvalues: np.ndarray, method: str) -> np.ndarray:
    """Multiple-testing adjustment via statsmodels, NaN p-values left out of the family."""
    methods = {"bh": "fdr_bh", "by": "fdr_by", "bonferroni": "bonferroni", "holm": "holm"}
    if method not in (*methods, "none"):
        raise ItmeParameterError("fdr", "one of bh, by, bonferroni, holm, none", method)
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method == "none":
        out[ok] = p[ok]
    elif method == "holm":
        out[ok] = holm(p[ok])
    elif ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method=methods[method])[1]
    return out
