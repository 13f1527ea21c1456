"""Sample table, contrast and low-count pre-filter of a differential expression run.

Validation and preparation for :func:`itme.rna.differential_expression`, kept apart from the
pydeseq2 adapter (:mod:`itme.rna._deseq`). Factor levels are ordered as R orders them (the
reference level of the contrast first, other text columns sorted), so the design matrix has
R's columns and the contrast is one coefficient (which ``lfc_shrink`` needs).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from itme.core.rna import count_filters
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.rna._counts import check_counts, check_nonzero_samples

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger("itme.rna._deseq")


@dataclass
class PreparedDesign:
    """Everything pydeseq2 needs, validated: counts, sample table and contrast labels."""

    counts: np.ndarray  # samples × kept genes, int64
    frame: pd.DataFrame  # samples × design variables (factor merged to two labels)
    sample_ids: list[str]
    gene_ids: list[str]  # kept genes
    design: str
    variables: list[str]  # variables of the design formula
    factor: str
    test_levels: list[str]
    ref_levels: list[str]
    test_label: str
    ref_label: str
    n_test: int
    n_ref: int
    excluded: list[str]
    n_genes_in: int
    n_genes_removed: int
    n_required: float


def _as_levels(value: Any, name: str) -> list[str]:
    if isinstance(value, str | int | np.integer):
        return [str(value)]
    if isinstance(value, Sequence) and value and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    raise ItmeParameterError(name, "a level or a non-empty list of levels", value)


def _design_variables(design: str) -> list[str]:
    from formulaic import Formula

    try:
        return sorted(Formula(design).required_variables)
    except Exception as exc:  # formulaic raises several parser error types
        raise ItmeParameterError(
            "design", "a formula such as '~ batch + condition'", design
        ) from exc


def _sample_table(adata: AnnData, metadata: pd.DataFrame | None) -> pd.DataFrame:
    obs = adata.obs.copy()
    if metadata is None:
        return obs
    meta = metadata.copy()
    if "patient_id" not in meta.columns:
        meta = meta.rename_axis("patient_id").reset_index()
    if "patient_id" not in obs.columns:
        raise ItmeInputError(
            where="counts obs",
            expected="a patient_id column to join metadata on",
            found=f"columns {', '.join(map(str, obs.columns))}",
        )
    meta["patient_id"] = meta["patient_id"].astype(str)
    if meta["patient_id"].duplicated().any():
        dup = meta.loc[meta["patient_id"].duplicated(), "patient_id"].unique().tolist()
        raise ItmeInputError(
            where="metadata, column patient_id",
            expected="one row per patient",
            found=f"repeated patient id(s) {', '.join(dup)}",
        )
    meta = meta.set_index("patient_id")
    pid = obs["patient_id"].astype(str)
    for col in meta.columns:
        obs[col] = meta[col].reindex(pid.to_numpy()).to_numpy()
    return obs


def _prefilter(
    counts: np.ndarray,
    method: str,
    min_count: int,
    min_samples: int | None,
    group_sizes: list[int],
) -> tuple[np.ndarray, int | float]:
    if method == "none":
        return counts.sum(axis=0) > 0, 0
    if method == "deseq2":
        n = min(group_sizes) if min_samples is None else min_samples
        return count_filters.min_count_filter(counts, min_count=min_count, min_samples=n), n
    keep = count_filters.filter_by_expr(counts, group_sizes=group_sizes, min_count=min_count)
    return keep, count_filters.required_samples(group_sizes)


def prepare_design(
    adata: AnnData,
    *,
    contrast: Any,
    design: str | None,
    metadata: pd.DataFrame | None,
    prefilter: str,
    min_count: int,
    min_samples: int | None,
) -> PreparedDesign:
    """Validate counts, design and contrast; merge levels; apply the low-count pre-filter."""
    if not isinstance(contrast, Sequence) or isinstance(contrast, str) or len(contrast) != 3:
        raise ItmeParameterError(
            "contrast", "(factor, test level(s), reference level(s))", contrast
        )
    factor = str(contrast[0])
    test_levels = _as_levels(contrast[1], "contrast[1] (test)")
    ref_levels = _as_levels(contrast[2], "contrast[2] (reference)")
    overlap = sorted(set(test_levels) & set(ref_levels))
    if overlap:
        raise ItmeParameterError("contrast", "disjoint test and reference levels", overlap)
    design = design if design is not None else f"~ {factor}"
    variables = _design_variables(design)

    gene_ids = [str(g) for g in adata.var_names]
    sample_ids = [str(s) for s in adata.obs_names]
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    check_counts(x, gene_ids, sample_ids, where="counts", genes_first_axis=False)
    check_nonzero_samples(x, sample_ids, where="counts", samples_first_axis=True)

    obs = _sample_table(adata, metadata)
    missing = [v for v in variables if v not in obs.columns]
    if missing:
        raise ItmeParameterError(
            "design", f"variables among the sample columns {list(map(str, obs.columns))}", missing
        )
    if factor not in obs.columns:
        raise ItmeParameterError(
            "contrast[0] (factor)", f"a column among {list(map(str, obs.columns))}", factor
        )
    if factor not in variables:
        raise ItmeParameterError("design", f"a formula that contains {factor!r}", design)

    # samples with missing design values are excluded, and reported
    frame = obs[variables].copy()
    na = frame.isna().any(axis=1).to_numpy()
    excluded = [s for s, m in zip(sample_ids, na, strict=True) if m]
    if excluded:
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"differential_expression: {len(excluded)} sample(s) with a missing value in "
                f"the design variables {variables} were excluded",
                excluded,
            ),
            stacklevel=3,
        )
    keep_s = ~na
    frame = frame.loc[keep_s]
    x = x[keep_s]
    sample_ids = [s for s, k in zip(sample_ids, keep_s, strict=True) if k]

    levels = frame[factor].astype(str)
    present = sorted(levels.unique())
    absent = [lv for lv in test_levels + ref_levels if lv not in present]
    if absent:
        raise ItmeParameterError(
            f"contrast levels of {factor!r}", f"levels among {present}", absent
        )
    test_label = "+".join(test_levels)
    ref_label = "+".join(ref_levels)
    others = set(present) - set(test_levels) - set(ref_levels)
    if {test_label, ref_label} & others:
        raise ItmeParameterError(
            "contrast", "merged group labels that are not existing levels", test_label
        )
    merged = levels.where(~levels.isin(test_levels), test_label)
    merged = merged.where(~levels.isin(ref_levels), ref_label)
    # R's level order: the reference first (treatment coding against it), then the test group
    order = [ref_label, test_label, *sorted(set(merged) - {ref_label, test_label})]
    frame[factor] = pd.Categorical(merged.to_numpy(), categories=order)
    for col in variables:
        if col == factor:
            continue
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            frame[col] = pd.Categorical(frame[col].astype(str).to_numpy())
        else:
            frame[col] = frame[col].astype(float)
    frame.index = pd.Index(sample_ids)
    n_test = int((frame[factor] == test_label).sum())
    n_ref = int((frame[factor] == ref_label).sum())
    for label, n, lv in ((test_label, n_test, test_levels), (ref_label, n_ref, ref_levels)):
        if n < 2:
            members = frame.index[frame[factor] == label].tolist()
            raise ItmeInputError(
                f"group {label!r} of {factor!r} (levels {', '.join(lv)})",
                where="differential_expression contrast",
                expected="at least 2 samples in each compared group",
                found=f"{n} sample(s){': ' + ', '.join(members) if members else ''}",
                fix="Merge levels (pass a list of levels) or compare other groups",
            )

    # low-count pre-filtering
    n_in = x.shape[1]
    keep_g, n_required = _prefilter(x, prefilter, min_count, min_samples, [n_test, n_ref])
    n_removed = int(n_in - keep_g.sum())
    logger.info(
        "differential_expression: pre-filter %r removed %d of %d genes (%d kept)",
        prefilter,
        n_removed,
        n_in,
        int(keep_g.sum()),
    )
    if keep_g.sum() < 2:
        raise ItmeInputError(
            where="differential_expression pre-filter",
            expected="at least 2 genes passing the low-count filter",
            found=f"{int(keep_g.sum())} of {n_in}",
            fix="Check the counts, or lower min_count / min_samples",
        )
    x = x[:, keep_g]
    kept_ids = [g for g, k in zip(gene_ids, keep_g, strict=True) if k]
    check_nonzero_samples(
        x, sample_ids, where="counts after the low-count pre-filter", samples_first_axis=True
    )

    return PreparedDesign(
        counts=x.astype(np.int64),
        frame=frame,
        sample_ids=sample_ids,
        gene_ids=kept_ids,
        design=design,
        variables=variables,
        factor=factor,
        test_levels=test_levels,
        ref_levels=ref_levels,
        test_label=test_label,
        ref_label=ref_label,
        n_test=n_test,
        n_ref=n_ref,
        excluded=excluded,
        n_genes_in=int(n_in),
        n_genes_removed=n_removed,
        n_required=n_required,
    )
