"""The pydeseq2 ``Inference`` itme plugs in: vectorised across genes, R's optimisers and rules.

Part of the pydeseq2 adapter (with :mod:`itme.rna._deseq`, the only modules importing
pydeseq2). pydeseq2 fits one gene at a time (a joblib task and a ``scipy.optimize.minimize``
call per gene); the object built by :func:`vectorised_inference` computes the same
quantities for all genes at once, and where R's DESeq2 and pydeseq2 differ it follows R:

- ``alpha_mle`` – R's dispersion line search and rules (:mod:`itme.core.rna.dispersion`):
  gene-wise estimates by ``estimateDispersionsGeneEst``'s rules, MAP estimates started from
  the gene-wise estimate as ``estimateDispersionsMAP`` does (the gene-wise values of the
  same genes are kept from the preceding gene-wise call);
- ``irls`` and ``wald_test`` – pydeseq2's IRLS and Wald formulas (:mod:`itme.core.rna.nb_glm`)
  with R's ridge ``1e-6 / log(2)^2`` (R penalises the log2-scale coefficients) and, in the
  Wald test, the weights from means floored at ``minmu`` as R's ``fitBeta`` computes them;
- ``lfc_shrink_nbinom_glm`` – pydeseq2's apeGLM-style MAP, fitted by Newton steps for all
  genes at once (:func:`itme.core.rna.nb_glm.shrink_lfc`).

Genes whose IRLS diverges or reaches R's 100 iterations are refitted as R does
(:func:`itme.core.rna.nb_glm.optim_beta`, counted in ``n_irls_fallback``); the trend fit stays
pydeseq2's (itme replaces it in the pipeline).
"""

from __future__ import annotations

import functools
import hashlib
import warnings

import numpy as np

from itme.core.rna import dispersion, nb_glm

__all__ = ["R_RIDGE", "pydeseq2_modules", "vectorised_inference"]

#: R's ridge on the natural-log coefficients: ``lambda = 1e-6`` on the log2 scale
R_RIDGE = 1e-6 / np.log(2) ** 2


def pydeseq2_modules():
    """Import pydeseq2 without letting its import-time ``simplefilter`` leak globally."""
    with warnings.catch_warnings():
        import pydeseq2
        from pydeseq2 import utils
        from pydeseq2.dds import DeseqDataSet
        from pydeseq2.default_inference import DefaultInference
        from pydeseq2.ds import DeseqStats
    return pydeseq2, utils, DeseqDataSet, DeseqStats, DefaultInference


def _key(counts: np.ndarray) -> tuple:
    """Fingerprint of a count matrix (to pair a MAP call with its gene-wise call)."""
    sums = np.ascontiguousarray(np.asarray(counts).sum(axis=0), dtype=float)
    return counts.shape, hashlib.sha1(sums.tobytes()).hexdigest()


@functools.cache
def _inference_class() -> type:
    *_, default_inference = pydeseq2_modules()

    class VectorisedInference(default_inference):
        """``DefaultInference`` with its per-gene loops vectorised and R's dispersion rules."""

        def __init__(self, min_mu: float = 0.5, threads: int = 1) -> None:
            super().__init__(n_cpus=1)
            self.min_mu = min_mu
            self.threads = threads
            self.n_irls_fallback = 0
            self.n_alpha_not_converged = 0
            self._genewise: tuple[tuple, np.ndarray] | None = None

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
            maxiter=100,
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
                    ridge=R_RIDGE,
                )
            converged = np.ones(beta.shape[0], dtype=bool)
            design = np.asarray(design_matrix, dtype=float)
            sf = np.asarray(size_factors, dtype=float)
            fb = np.flatnonzero(fallback)
            if fb.size:
                for i in fb:
                    beta[i], converged[i] = nb_glm.optim_beta(
                        counts[:, i], sf, design, float(disp[i]), beta[i]
                    )
                mu[:, fb] = sf[:, None] * np.exp(design @ beta[fb].T)
                w = 1.0 / (1.0 / np.maximum(mu[:, fb], min_mu) + np.asarray(disp)[fb])
                outer = (design[:, :, None] * design[:, None, :]).reshape(design.shape[0], -1)
                p = design.shape[1]
                gram = (w.T @ outer).reshape(fb.size, p, p) + np.eye(p) * R_RIDGE
                inv = np.linalg.pinv(gram).reshape(fb.size, p * p)
                hat[:, fb] = w * (outer @ inv.T)
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
            design = np.asarray(design_matrix, dtype=float)
            if not prior_reg:
                disp, _, converged = dispersion.genewise_dispersions(
                    counts, design, mu, alpha_hat, min_disp=min_disp, max_disp=max_disp,
                    min_mu=self.min_mu, threads=self.threads,
                )  # fmt: skip
                self._genewise = (_key(counts), disp)
            else:
                genewise = alpha_hat
                if self._genewise is not None and self._genewise[0] == _key(counts):
                    genewise = self._genewise[1]
                disp, converged = dispersion.map_dispersions(
                    counts, design, mu, genewise, alpha_hat, float(prior_disp_var),
                    min_disp=min_disp, max_disp=max_disp, min_mu=self.min_mu,
                    threads=self.threads,
                )  # fmt: skip
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
            p = np.asarray(design_matrix).shape[1]
            return nb_glm.wald_test(
                np.asarray(design_matrix, dtype=float),
                np.asarray(disp, dtype=float),
                np.asarray(lfc, dtype=float),
                np.maximum(np.asarray(mu, dtype=float), self.min_mu),
                np.eye(p) * R_RIDGE,
                np.asarray(contrast, dtype=float),
                float(lfc_null),
            )

        def lfc_shrink_nbinom_glm(
            self,
            design_matrix,
            counts,
            size,
            offset,
            prior_no_shrink_scale,
            prior_scale,
            optimizer,
            shrink_index,
        ):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                return nb_glm.shrink_lfc(
                    np.asarray(design_matrix, dtype=float),
                    np.asarray(counts, dtype=float),
                    np.asarray(size, dtype=float),
                    np.asarray(offset, dtype=float),
                    prior_no_shrink_scale=float(prior_no_shrink_scale),
                    prior_scale=float(prior_scale),
                    shrink_index=int(shrink_index),
                )

    return VectorisedInference


def vectorised_inference(min_mu: float = 0.5, threads: int = 1):
    """A new vectorised pydeseq2 ``Inference`` (class built on first use).

    ``threads``: of the dispersion fits (:func:`itme.core.rna.dispersion.fit_disp`).
    """
    return _inference_class()(min_mu=min_mu, threads=threads)
