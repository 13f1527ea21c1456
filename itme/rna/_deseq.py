"""Differential expression with pydeseq2, giving R DESeq2's default answer.

pydeseq2 runs the DESeq2 pipeline; this adapter runs it step by step and, where pydeseq2 and
R's ``DESeq()`` + ``results()`` differ, applies R's rule (issue 13; checked against golden
files from R in ``tests/golden``): R's dispersion optimiser and start rules and a vectorised
``Inference`` (:mod:`itme.rna._deseq_inference`), R's parametric trend, prior variance (with
R's simulation for 1–3 residual degrees of freedom), Cook's-distance rule and independent
filtering (:mod:`itme.rna._deseq_rules`, :mod:`itme.core.rna.dispersion`). No genes are
pre-filtered by default (R's default pipeline does not; independent filtering does that job).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from itme._random import RngLike, draw_seed
from itme.core.rna import dispersion, dispersion_prior
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStatisticsWarning
from itme.rna._deseq_inference import pydeseq2_modules, vectorised_inference
from itme.rna._deseq_rules import cooks_outliers, independent_filtering
from itme.rna._design import PreparedDesign, prepare_design

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_expression"]

logger = logging.getLogger(__name__)

RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
SHRUNK_COLUMNS = ["log2FoldChange_shrunk", "lfcSE_shrunk"]
#: R's ``set.seed(2)`` in ``estimateDispersionsPriorVar``: the default seed of that simulation
PRIOR_SEED = 2


def _trend(dds: Any, fit_type: str, fit_info: dict) -> None:
    """R's dispersion trend (parametric, or the trimmed mean) into pydeseq2's slots."""
    nz = dds.var["non_zero"].to_numpy()
    means = dds.var.loc[nz, "_normed_means"].to_numpy(dtype=float)
    genewise = dds.var.loc[nz, "genewise_dispersions"].to_numpy(dtype=float)
    if fit_type == "parametric":
        try:
            a0, a1 = dispersion.parametric_trend(means, genewise, min_disp=dds.min_disp)
        except dispersion.TrendFitError as err:
            warnings.warn(
                f"differential_expression: R's parametric dispersion trend failed ({err}); "
                "using the mean of the gene-wise dispersions (R would use a local fit)",
                ItmeStatisticsWarning,
                stacklevel=3,
            )
            fit_type = "mean"
        else:
            dds.uns["trend_coeffs"] = pd.Series([a0, a1], index=["a0", "a1"])
            dds.uns["disp_function_type"] = "parametric"
            fit_info.update(asymptDisp=a0, extraPois=a1)
    if fit_type == "mean":
        dds._fit_mean_dispersion_trend()
        fit_info.update(mean_dispersion=float(dds.uns["mean_disp"]))
    fit_info["fit_type"] = fit_type
    fitted = np.full(dds.n_vars, np.nan)
    fitted[nz] = dds.disp_function(means)
    dds.var["fitted_dispersions"] = fitted


def _prior(dds: Any, rng: RngLike, fit_info: dict) -> None:
    """R's dispersion prior variance and ``varLogDispEsts`` into pydeseq2's slots."""
    nz = dds.var["non_zero"].to_numpy()
    n, p = dds.obsm["design_matrix"].shape
    seed = draw_seed(PRIOR_SEED if rng is None else rng)
    prior_var, var_log = dispersion_prior.dispersion_prior_variance(
        dds.var.loc[nz, "genewise_dispersions"].to_numpy(dtype=float),
        dds.var.loc[nz, "fitted_dispersions"].to_numpy(dtype=float),
        n_samples=n,
        n_coefficients=p,
        min_disp=dds.min_disp,
        rng=seed,
    )
    simulated = 1 <= n - p <= 3
    if simulated:
        logger.info(
            "differential_expression: %d residual degrees of freedom: dispersion prior "
            "variance %.4f by R's simulation (seed %d)",
            n - p,
            prior_var,
            seed,
        )
    dds.uns["_squared_logres"] = var_log
    dds.uns["prior_disp_var"] = np.float64(prior_var)
    fit_info.update(
        var_log_disp_ests=var_log,
        prior_var=prior_var,
        prior_var_method="simulation" if simulated else "trigamma",
        prior_var_seed=seed if simulated else None,
    )


def _fit(
    prep: PreparedDesign,
    *,
    fit_type: str,
    refit_cooks: bool,
    cooks_filter: bool,
    alpha: float,
    lfc_shrink: bool,
    inference: str,
    n_cpus: int,
    rng: RngLike,
) -> tuple[pd.DataFrame, dict, Any]:
    """pydeseq2's steps with R's rules in between; results table and run information."""
    pydeseq2, _, deseq_dataset, deseq_stats, default_inference = pydeseq2_modules()
    infer = (
        vectorised_inference(threads=n_cpus)
        if inference == "vectorised"
        else default_inference(n_cpus=n_cpus)
    )
    counts_df = pd.DataFrame(prep.counts, index=prep.frame.index, columns=prep.gene_ids)
    dds = deseq_dataset(
        counts=counts_df,
        metadata=prep.frame,
        design=prep.design,
        fit_type=fit_type,
        refit_cooks=refit_cooks,
        inference=infer,
        quiet=True,
    )
    dm = dds.obsm["design_matrix"]
    rank = np.linalg.matrix_rank(dm.to_numpy(dtype=float))
    if rank < dm.shape[1]:
        raise ItmeInputError(
            "the design matrix is not full rank (confounded variables)",
            where=f"design {prep.design!r}",
            expected=f"{dm.shape[1]} linearly independent columns",
            found=f"rank {rank}; columns {', '.join(map(str, dm.columns))}",
            fix="Drop a covariate that is determined by the others",
        )
    if dm.shape[0] <= dm.shape[1]:
        raise ItmeInputError(
            where=f"design {prep.design!r}",
            expected="more samples than model coefficients",
            found=f"{dm.shape[0]} samples, {dm.shape[1]} coefficients",
        )
    info: dict = {}
    dds.fit_size_factors()
    dds.fit_genewise_dispersions()
    _trend(dds, fit_type, info)
    _prior(dds, rng, info)
    dds.fit_MAP_dispersions()
    dds.fit_LFC()
    dds.calculate_cooks()
    if refit_cooks:
        dds.refit()
    replaced = bool(refit_cooks and dds.var.get("refitted", pd.Series(False)).any())
    two_level = len(prep.variables) == 1 and prep.frame[prep.factor].nunique() == 2
    outlier = cooks_outliers(
        np.asarray(dds.layers["cooks"]),
        np.asarray(dds.X),
        dm.to_numpy(dtype=float),
        replaced=replaced,
        single_two_level_factor=two_level,
        min_replicates=dds.min_replicates,
    )
    dds.var["_pvalue_cooks_outlier"] = outlier
    stats = deseq_stats(
        dds,
        contrast=[prep.factor, prep.test_label, prep.ref_label],
        alpha=alpha,
        cooks_filter=cooks_filter,
        independent_filter=False,
        inference=infer,
        quiet=True,
    )
    stats.summary()
    res = stats.results_df[RESULT_COLUMNS].copy()
    if lfc_shrink:
        coeff = f"{prep.factor}[T.{prep.test_label}]"
        stats.lfc_shrink(coeff=coeff)
        res["log2FoldChange_shrunk"] = stats.LFC[coeff].to_numpy() / np.log(2)
        res["lfcSE_shrunk"] = stats.SE.to_numpy() / np.log(2)
        info["shrink_coefficient"] = coeff
    info.update(
        n_cooks_outliers=int(outlier.sum()) if cooks_filter else 0,
        n_refitted=int(dds.var["refitted"].sum()) if replaced else 0,
        n_irls_fallback=int(getattr(infer, "n_irls_fallback", 0)),
        size_factors={
            s: float(v) for s, v in zip(prep.sample_ids, dds.obs["size_factors"], strict=True)
        },
        pydeseq2_version=str(getattr(pydeseq2, "__version__", "unknown")),
    )
    return res, info, dds


def _reissue(caught: list[warnings.WarningMessage]) -> None:
    """pydeseq2's (and numpy's) warnings concern the fit: re-issue as ItmeStatisticsWarning."""
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if text in seen or issubclass(w.category, DeprecationWarning | FutureWarning):
            continue
        if issubclass(w.category, ItmeStatisticsWarning):
            warnings.warn(text, ItmeStatisticsWarning, stacklevel=3)
            continue
        seen.add(text)
        kind = "" if issubclass(w.category, UserWarning) else f" ({w.category.__name__})"
        warnings.warn(f"pydeseq2{kind}: {text}", ItmeStatisticsWarning, stacklevel=3)


def differential_expression(
    adata: AnnData,
    *,
    contrast: tuple[str, str | Sequence[str], str | Sequence[str]],
    design: str | None = None,
    metadata: pd.DataFrame | None = None,
    prefilter: Literal["none", "deseq2", "edger"] = "none",
    min_count: int = 10,
    min_samples: int | None = None,
    alpha: float = 0.1,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    refit_cooks: bool = True,
    fit_type: Literal["parametric", "mean"] = "parametric",
    lfc_shrink: bool = False,
    inference: Literal["vectorised", "pydeseq2"] = "vectorised",
    n_cpus: int = 1,
    rng: RngLike = None,
) -> pd.DataFrame:
    """Wald test of a contrast with pydeseq2, as R's ``DESeq()`` + ``results()`` computes it.

    ``contrast = (factor, test, reference)`` as in DESeq2's ``results(contrast=...)``;
    ``test`` and ``reference`` may each be a list of levels, which are merged into one group
    before fitting (the paper's iTME clusters 2+3 vs 1: ``("itme_cluster", ["2", "3"],
    "1")``). Levels outside both groups stay in the model as their own levels, as DESeq2
    does. Samples with a missing value in a design variable are excluded (reported).

    By default no gene is pre-filtered (only all-zero genes, which R leaves out of every
    fit, are left out of the table) and ``padj`` comes from R's independent filtering, as
    in R's default pipeline. ``prefilter="deseq2"`` (at least ``min_count`` reads in at least
    ``min_samples`` samples, default the smallest compared group) and ``"edger"``
    (``filterByExpr``) remove genes before fitting, as some R users do; both change the
    size factors, dispersion trend and filtering threshold, and lose genes expressed in
    only part of a merged group (``docs/rnaseq.md`` has the measured cost).

    Parameters
    ----------
    adata
        Samples × genes raw counts (:func:`~itme.rna.read_counts`); design variables in
        ``obs`` or in ``metadata``.
    contrast
        ``(factor, test level(s), reference level(s))``; log2 fold changes are test vs
        reference.
    design
        Formula over ``obs`` columns, e.g. ``"~ cell + dex"``; default ``"~ <factor>"``.
        Covariates go here (``"~ disease_status + itme_cluster"``).
    metadata
        Optional per-patient table (``patient_id`` column or index) joined on
        ``obs["patient_id"]``; its columns override ``obs`` columns of the same name.
    prefilter
        ``"none"`` (default, as R), ``"deseq2"`` or ``"edger"`` (see above).
    min_count
        Reads per sample for the ``deseq2`` rule; count converted to CPM for ``edger``.
    min_samples
        Samples that must reach ``min_count`` (``deseq2`` rule); default smallest group.
    alpha
        FDR target of the independent filtering (DESeq2's default 0.1).
    cooks_filter
        Set p-values of Cook's-distance outliers to NaN (R's rule).
    independent_filter
        R's independent filtering for ``padj`` (otherwise plain BH).
    refit_cooks
        Replace outlier counts and refit, for design cells of 7 or more samples.
    fit_type
        Dispersion trend: ``"parametric"`` (R's default) or ``"mean"``.
    lfc_shrink
        Also compute shrunken log2 fold changes (pydeseq2's ``lfc_shrink``, apeGLM-style
        Cauchy prior) into ``log2FoldChange_shrunk`` and ``lfcSE_shrunk``.
    inference
        ``"vectorised"`` (default: all genes at once, R's dispersion optimiser) or
        ``"pydeseq2"`` (pydeseq2's per-gene L-BFGS-B loops; R's other rules still apply).
    n_cpus
        Worker processes for ``inference="pydeseq2"``; threads of the dispersion fits for
        ``"vectorised"`` (each fits a part of the genes; the results do not depend on it).
    rng
        Seed of R's dispersion prior simulation, used only with 1–3 residual degrees of
        freedom; ``None`` uses 2 (R's ``set.seed(2)``), so results are reproducible.

    Returns
    -------
    pandas.DataFrame
        One row per gene with a non-zero count (index ``gene_id``): ``gene_name``,
        ``baseMean``, ``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``, ``padj`` (R column
        names), plus ``log2FoldChange_shrunk`` and ``lfcSE_shrunk`` with ``lfc_shrink``.
        ``attrs`` holds ``contrast`` (factor, test label, reference label),
        ``test_levels``, ``reference_levels``, ``design``, ``n_samples``, ``n_test``,
        ``n_reference``, ``excluded_samples``, ``prefilter``, ``min_count``,
        ``min_samples``, ``n_genes_in``, ``n_genes_removed``, ``n_genes_tested``,
        ``alpha``, ``inference``, ``fit_type``, ``dispersion_trend`` (dict:
        ``asymptDisp``/``extraPois`` or ``mean_dispersion``), ``var_log_disp_ests``,
        ``prior_var``, ``prior_var_method`` (``trigamma`` or ``simulation``),
        ``prior_var_seed``, ``filter_threshold`` (baseMean), ``filter_theta``,
        ``n_filtered``, ``n_cooks_outliers``, ``n_refitted``, ``lfc_shrink``,
        ``shrink_coefficient`` (the design column shrunk, or ``None``),
        ``n_irls_fallback``, ``size_factors`` (dict), ``pydeseq2_version`` and
        ``elapsed_seconds``.
    """
    t0 = time.perf_counter()
    if prefilter not in ("none", "deseq2", "edger"):
        raise ItmeParameterError("prefilter", ["none", "deseq2", "edger"], prefilter)
    if inference not in ("vectorised", "pydeseq2"):
        raise ItmeParameterError("inference", ["vectorised", "pydeseq2"], inference)
    if fit_type not in ("parametric", "mean"):
        raise ItmeParameterError("fit_type", ["parametric", "mean"], fit_type)
    if not 0 < alpha < 1:
        raise ItmeParameterError("alpha", "a number in (0, 1)", alpha)
    prep = prepare_design(
        adata,
        contrast=contrast,
        design=design,
        metadata=metadata,
        prefilter=prefilter,
        min_count=min_count,
        min_samples=min_samples,
    )
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res, info, _ = _fit(
                prep,
                fit_type=fit_type,
                refit_cooks=refit_cooks,
                cooks_filter=cooks_filter,
                alpha=alpha,
                lfc_shrink=lfc_shrink,
                inference=inference,
                n_cpus=n_cpus,
                rng=rng,
            )
    except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
        if isinstance(exc, ItmeInputError):
            raise
        raise ItmeInputError(
            f"pydeseq2 could not fit the model: {exc}",
            where=f"differential_expression design {prep.design!r}, contrast {prep.factor}",
        ) from exc
    finally:
        _reissue(caught)

    filt = None
    if independent_filter:
        # R filters on every gene of the fit: all-zero genes count (baseMean 0, no p-value)
        n_zero = prep.n_genes_removed if prefilter == "none" else 0
        filt = independent_filtering(
            np.concatenate([res["baseMean"].to_numpy(dtype=float), np.zeros(n_zero)]),
            np.concatenate([res["pvalue"].to_numpy(dtype=float), np.full(n_zero, np.nan)]),
            alpha=alpha,
        )
        res["padj"] = filt.padj[: len(res)]
    res.insert(
        0,
        "gene_name",
        adata.var["gene_name"].reindex(res.index).astype(str).to_numpy()
        if "gene_name" in adata.var.columns
        else res.index.to_numpy(),
    )
    res.index.name = "gene_id"
    elapsed = time.perf_counter() - t0
    trend = {k: info[k] for k in ("asymptDisp", "extraPois", "mean_dispersion") if k in info}
    res.attrs = {
        "contrast": [prep.factor, prep.test_label, prep.ref_label],
        "test_levels": prep.test_levels,
        "reference_levels": prep.ref_levels,
        "design": prep.design,
        "n_samples": len(prep.sample_ids),
        "n_test": prep.n_test,
        "n_reference": prep.n_ref,
        "excluded_samples": prep.excluded,
        "prefilter": prefilter,
        "min_count": int(min_count),
        "min_samples": float(prep.n_required),
        "n_genes_in": prep.n_genes_in,
        "n_genes_removed": prep.n_genes_removed,
        "n_genes_tested": int(res.shape[0]),
        "alpha": float(alpha),
        "inference": inference,
        "fit_type": info["fit_type"],
        "dispersion_trend": trend,
        "var_log_disp_ests": float(info["var_log_disp_ests"]),
        "prior_var": float(info["prior_var"]),
        "prior_var_method": info["prior_var_method"],
        "prior_var_seed": info["prior_var_seed"],
        "filter_threshold": float(filt.threshold) if filt is not None else None,
        "filter_theta": float(filt.theta[filt.index]) if filt is not None else None,
        "n_filtered": int(filt.n_filtered) if filt is not None else 0,
        "n_cooks_outliers": info["n_cooks_outliers"],
        "n_refitted": info["n_refitted"],
        "lfc_shrink": bool(lfc_shrink),
        "shrink_coefficient": info.get("shrink_coefficient"),
        "n_irls_fallback": info["n_irls_fallback"],
        "size_factors": info["size_factors"],
        "pydeseq2_version": info["pydeseq2_version"],
        "elapsed_seconds": round(elapsed, 3),
    }
    logger.info(
        "differential_expression: %s %s vs %s, %d genes tested, %d at padj < %g, %.1f s",
        prep.factor,
        prep.test_label,
        prep.ref_label,
        res.shape[0],
        int((res["padj"] < alpha).sum()),
        alpha,
        elapsed,
    )
    return res
