"""Differential expression with pydeseq2 (the only module that imports pydeseq2).

pydeseq2 runs the DESeq2 pipeline. Its per-gene inner loops (IRLS, dispersion MLE/MAP, Wald
test) run through a pydeseq2 ``Inference`` object; by default we pass one whose methods are
vectorised across genes (:mod:`itme.core.rna.nb_glm`), which is ~15× faster on a 38 × 20,000
matrix and gives the same statistics (see ``docs/rnaseq.md`` and ``scripts/bench_rna.py``).
``inference="pydeseq2"`` runs pydeseq2's own ``DefaultInference``.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from itme.core.rna import nb_glm
from itme.errors import (
    ItmeInputError,
    ItmeParameterError,
    ItmeStatisticsWarning,
)
from itme.rna._design import prepare_design

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_expression"]

logger = logging.getLogger(__name__)

RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def _pydeseq2():
    """Import pydeseq2 without letting its import-time ``simplefilter`` leak globally."""
    with warnings.catch_warnings():
        import pydeseq2
        from pydeseq2 import utils
        from pydeseq2.dds import DeseqDataSet
        from pydeseq2.default_inference import DefaultInference
        from pydeseq2.ds import DeseqStats
    return pydeseq2, utils, DeseqDataSet, DeseqStats, DefaultInference


@functools.cache
def _vectorised_inference_class() -> type:
    """pydeseq2 ``Inference`` whose per-gene loops are vectorised (built on first use)."""
    _, utils, _, _, default_inference = _pydeseq2()

    class VectorisedInference(default_inference):
        """``DefaultInference`` with lin_reg_mu, irls, alpha_mle and wald_test vectorised.

        The formulas are those of ``pydeseq2.utils`` (see :mod:`itme.core.rna.nb_glm`). Genes
        whose IRLS diverges are refitted with ``pydeseq2.utils.irls_solver`` itself, as
        pydeseq2 would; their number is kept in ``n_irls_fallback``. Other methods
        (trend fit, LFC shrinkage) are pydeseq2's.
        """

        def __init__(self) -> None:
            super().__init__(n_cpus=1)
            self.n_irls_fallback = 0
            self.n_alpha_not_converged = 0

        def lin_reg_mu(self, counts, size_factors, design_matrix, min_mu):
            return nb_glm.lin_reg_mu(counts, size_factors, design_matrix, min_mu)

        def irls(
            self,
            counts,
            size_factors,
            design_matrix,
            disp,
            min_mu,
            beta_tol,
            min_beta=-30,
            max_beta=30,
            optimizer="L-BFGS-B",
            maxiter=250,
        ):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                beta, mu, hat, fallback = nb_glm.irls(
                    counts,
                    size_factors,
                    design_matrix,
                    disp,
                    min_mu=min_mu,
                    beta_tol=beta_tol,
                    max_beta=max_beta,
                    maxiter=maxiter,
                )
            converged = np.ones(beta.shape[0], dtype=bool)
            for i in np.flatnonzero(fallback):
                b, m, h, ok = utils.irls_solver(
                    counts=counts[:, i],
                    size_factors=size_factors,
                    design_matrix=design_matrix,
                    disp=disp[i],
                    min_mu=min_mu,
                    beta_tol=beta_tol,
                    min_beta=min_beta,
                    max_beta=max_beta,
                    optimizer=optimizer,
                    maxiter=maxiter,
                )
                beta[i], mu[:, i], hat[:, i], converged[i] = b, m, h, ok
            self.n_irls_fallback += int(fallback.sum())
            return beta, mu, hat, converged

        def alpha_mle(
            self,
            counts,
            design_matrix,
            mu,
            alpha_hat,
            min_disp,
            max_disp,
            prior_disp_var=None,
            cr_reg=True,
            prior_reg=False,
            optimizer="L-BFGS-B",
        ):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                disp, converged = nb_glm.alpha_mle(
                    counts,
                    design_matrix,
                    mu,
                    alpha_hat,
                    min_disp=min_disp,
                    max_disp=max_disp,
                    prior_disp_var=prior_disp_var,
                    cr_reg=cr_reg,
                    prior_reg=prior_reg,
                )
            self.n_alpha_not_converged += int((~converged).sum())
            return disp, converged

        def wald_test(
            self,
            design_matrix,
            disp,
            lfc,
            mu,
            ridge_factor,
            contrast,
            lfc_null,
            alt_hypothesis=None,
        ):
            if alt_hypothesis is not None:
                return super().wald_test(
                    design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis
                )
            return nb_glm.wald_test(
                design_matrix,
                np.asarray(disp, dtype=float),
                np.asarray(lfc, dtype=float),
                np.asarray(mu, dtype=float),
                ridge_factor,
                np.asarray(contrast, dtype=float),
                float(lfc_null),
            )

    return VectorisedInference


def differential_expression(
    adata: AnnData,
    *,
    contrast: tuple[str, str | Sequence[str], str | Sequence[str]],
    design: str | None = None,
    metadata: pd.DataFrame | None = None,
    prefilter: Literal["deseq2", "edger", "none"] = "deseq2",
    min_count: int = 10,
    min_samples: int | None = None,
    alpha: float = 0.1,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    refit_cooks: bool = True,
    fit_type: Literal["parametric", "mean"] = "parametric",
    inference: Literal["vectorised", "pydeseq2"] = "vectorised",
    n_cpus: int = 1,
) -> pd.DataFrame:
    """Wald test of a contrast with pydeseq2 (DESeq2), after low-count pre-filtering.

    ``contrast = (factor, test, reference)`` as in DESeq2's ``results(contrast=...)``;
    ``test`` and ``reference`` may each be a list of levels, which are merged into one group
    before fitting (the paper's iTME clusters 2+3 vs 1: ``("itme_cluster", ["2", "3"],
    "1")``). Levels outside both groups stay in the model as their own levels, as DESeq2
    does. Samples with a missing value in a design variable are excluded (reported).

    Pre-filtering (``docs/rnaseq.md``): ``"deseq2"`` keeps genes with at least
    ``min_count`` reads in at least ``min_samples`` samples (default: the smallest
    compared group), as the DESeq2 vignette recommends; ``"edger"`` applies edgeR's
    ``filterByExpr`` with the compared groups; ``"none"`` only drops all-zero genes. The
    number removed is logged and returned in ``attrs``.

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
        ``"deseq2"``, ``"edger"`` or ``"none"`` (see above).
    min_count
        Reads per sample for the ``deseq2`` rule; count converted to CPM for ``edger``.
    min_samples
        Samples that must reach ``min_count`` (``deseq2`` rule); default smallest group.
    alpha
        FDR target of DESeq2's independent filtering (DESeq2's default 0.1).
    cooks_filter
        Set p-values of Cook's-distance outliers to NaN (DESeq2 default).
    independent_filter
        Use DESeq2's independent filtering for ``padj`` (otherwise plain BH).
    refit_cooks
        Replace outlier counts and refit, for groups of 7 or more samples (DESeq2 default).
    fit_type
        Dispersion trend: ``"parametric"`` (DESeq2 default) or ``"mean"``.
    inference
        ``"vectorised"`` (default, fast) or ``"pydeseq2"`` (pydeseq2's per-gene loops).
    n_cpus
        Worker processes for ``inference="pydeseq2"``; unused otherwise.

    Returns
    -------
    pandas.DataFrame
        One row per tested gene (index ``gene_id``): ``gene_name``, ``baseMean``,
        ``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``, ``padj`` (R column names).
        ``attrs`` holds ``contrast`` (factor, test label, reference label),
        ``test_levels``, ``reference_levels``, ``design``, ``n_samples``, ``n_test``,
        ``n_reference``, ``excluded_samples``, ``prefilter``, ``min_count``,
        ``min_samples``, ``n_genes_in``, ``n_genes_removed``, ``n_genes_tested``,
        ``alpha``, ``inference``, ``n_irls_fallback``, ``size_factors`` (dict),
        ``pydeseq2_version`` and ``elapsed_seconds``.
    """
    t0 = time.perf_counter()
    if prefilter not in ("deseq2", "edger", "none"):
        raise ItmeParameterError("prefilter", ["deseq2", "edger", "none"], prefilter)
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
    design, factor = prep.design, prep.factor
    test_label, ref_label = prep.test_label, prep.ref_label

    pydeseq2, _, deseq_dataset, deseq_stats, default_inference = _pydeseq2()
    infer = (
        _vectorised_inference_class()()
        if inference == "vectorised"
        else default_inference(n_cpus=n_cpus)
    )
    counts_df = pd.DataFrame(prep.counts, index=prep.frame.index, columns=prep.gene_ids)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dds = deseq_dataset(
                counts=counts_df,
                metadata=prep.frame,
                design=design,
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
                    where=f"design {design!r}",
                    expected=f"{dm.shape[1]} linearly independent columns",
                    found=f"rank {rank}; columns {', '.join(map(str, dm.columns))}",
                    fix="Drop a covariate that is determined by the others",
                )
            if dm.shape[0] <= dm.shape[1]:
                raise ItmeInputError(
                    where=f"design {design!r}",
                    expected="more samples than model coefficients",
                    found=f"{dm.shape[0]} samples, {dm.shape[1]} coefficients",
                )
            dds.deseq2()
            stats = deseq_stats(
                dds,
                contrast=[factor, test_label, ref_label],
                alpha=alpha,
                cooks_filter=cooks_filter,
                independent_filter=independent_filter,
                inference=infer,
                quiet=True,
            )
            stats.summary()
    except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
        if isinstance(exc, ItmeInputError):
            raise
        raise ItmeInputError(
            f"pydeseq2 could not fit the model: {exc}",
            where=f"differential_expression design {design!r}, contrast {factor}",
        ) from exc
    finally:
        seen: set[str] = set()
        for w in caught:
            text = str(w.message)
            if text in seen:
                continue
            seen.add(text)
            # pydeseq2's own warnings (and numpy's, raised inside the fit) concern the fit:
            # ItmeStatisticsWarning; deprecations of pydeseq2's dependencies are not the user's
            if issubclass(w.category, DeprecationWarning | FutureWarning):
                continue
            kind = "" if issubclass(w.category, UserWarning) else f" ({w.category.__name__})"
            warnings.warn(f"pydeseq2{kind}: {text}", ItmeStatisticsWarning, stacklevel=2)

    res = stats.results_df[RESULT_COLUMNS].copy()
    res.insert(
        0,
        "gene_name",
        adata.var["gene_name"].reindex(res.index).astype(str).to_numpy()
        if "gene_name" in adata.var.columns
        else res.index.to_numpy(),
    )
    res.index.name = "gene_id"
    elapsed = time.perf_counter() - t0
    res.attrs = {
        "contrast": [factor, test_label, ref_label],
        "test_levels": prep.test_levels,
        "reference_levels": prep.ref_levels,
        "design": design,
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
        "n_irls_fallback": int(getattr(infer, "n_irls_fallback", 0)),
        "size_factors": {
            s: float(v) for s, v in zip(prep.sample_ids, dds.obs["size_factors"], strict=True)
        },
        "pydeseq2_version": str(getattr(pydeseq2, "__version__", "unknown")),
        "elapsed_seconds": round(elapsed, 3),
    }
    n_sig = int((res["padj"] < alpha).sum())
    logger.info(
        "differential_expression: %s %s vs %s, %d genes tested, %d at padj < %g, %.1f s",
        factor,
        test_label,
        ref_label,
        res.shape[0],
        n_sig,
        alpha,
        elapsed,
    )
    return res
