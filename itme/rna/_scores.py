"""Per-sample pathway scores (single-sample enrichment).

They serve to correlate tumour pathways with immune subsets across patients.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from itme.core.rna.count_filters import min_count_filter
from itme.core.rna.gene_set_scores import combined_z_scores, log_normalise, median_of_ratios
from itme.errors import ItmeInputError, ItmeParameterError
from itme.io import GeneSets, read_gene_sets
from itme.rna._counts import check_counts, no_symbol
from itme.rna._gsea import check_set_sizes, ssgsea_scores

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["pathway_scores"]

logger = logging.getLogger(__name__)


def pathway_scores(
    adata: AnnData,
    *,
    gene_sets: GeneSets = "hallmark",
    method: Literal["zscore", "ssgsea"] = "zscore",
    min_count: int = 10,
    min_samples: int | None = None,
    min_size: int = 15,
    max_size: int = 500,
    key_added: str = "pathway_scores",
    copy: bool = False,
) -> AnnData | None:
    """Score every gene set in every sample (single-sample enrichment).

    Counts are normalised with DESeq2 median-of-ratios size factors and log2-transformed
    (``log2(count / size factor + 1)``); genes with fewer than ``min_count`` reads in fewer
    than ``min_samples`` samples are left out. Genes are matched to the sets by
    ``var["gene_name"]``; Ensembl ids without a symbol are left out, and of several genes
    with the same symbol the most highly expressed is used.

    - ``method="zscore"`` (default): combined z-score of Lee et al. (PLoS Comput Biol 2008):
      every gene is z-scored across samples and a set's score is ``sum(z) / sqrt(n)``.
      Scores are relative to the cohort (0 = cohort average), deterministic, and
      comparable between sets.
    - ``method="ssgsea"``: gseapy's single-sample GSEA (Barbie et al. 2009) on the same
      log expression, ranked within each sample; the normalised score (``NES``) is stored.

    Parameters
    ----------
    adata
        Samples × genes raw counts (:func:`~itme.rna.read_counts`).
    gene_sets
        ``"hallmark"`` (shipped MSigDB Hallmark v7.0), a GMT path, or a dict of set → genes.
    method
        ``"zscore"`` or ``"ssgsea"``.
    min_count
        Reads a sample needs for a gene to count as expressed there.
    min_samples
        Samples in which a gene must be expressed (default: ``min(3, n_samples)``).
    min_size
        Smallest allowed number of scored genes in a set; smaller sets are skipped (listed
        in ``uns``).
    max_size
        Largest allowed number of scored genes in a set.
    key_added
        Key under which scores and parameters are stored.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        ``obsm[key_added]``: DataFrame samples × gene sets (float scores);
        ``uns[key_added]``: ``method``, ``gene_sets`` (label), ``min_count``,
        ``min_samples``, ``n_genes_scored``, ``n_unmapped`` (genes without a symbol),
        ``sets`` (DataFrame: ``Term``, ``set_size``, ``matched_size``, ``scored``).
        A copy when ``copy=True``, else ``None``.
    """
    t0 = time.perf_counter()
    if method not in ("zscore", "ssgsea"):
        raise ItmeParameterError("method", ["zscore", "ssgsea"], method)
    check_set_sizes(min_size, max_size)
    if adata.n_obs < 2:
        raise ItmeInputError(
            where="pathway_scores", expected="at least 2 samples", found=f"{adata.n_obs}"
        )
    adata = adata.copy() if copy else adata
    sets, label = read_gene_sets(gene_sets)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    gene_ids = [str(g) for g in adata.var_names]
    check_counts(
        x, gene_ids, list(map(str, adata.obs_names)), where="counts", genes_first_axis=False
    )

    n_req = min(3, adata.n_obs) if min_samples is None else int(min_samples)
    expressed = min_count_filter(x, min_count=min_count, min_samples=n_req)
    symbols = (
        adata.var["gene_name"].astype(str).to_numpy()
        if "gene_name" in adata.var.columns
        else np.asarray(gene_ids)
    )
    unmapped = no_symbol(symbols)
    expr = log_normalise(x, median_of_ratios(x))
    use = expressed & ~unmapped
    frame = pd.DataFrame({"symbol": symbols[use], "mean": expr[:, use].mean(axis=0)})
    frame["col"] = np.flatnonzero(use)
    frame = frame.sort_values("mean", ascending=False, kind="mergesort").drop_duplicates("symbol")
    col_of = dict(zip(frame["symbol"], frame["col"], strict=True))

    table = []
    members = {}
    for name, genes in sets.items():
        idx = np.array([col_of[g] for g in genes if g in col_of], dtype=int)
        ok = min_size <= idx.size <= max_size
        table.append(
            {"Term": name, "set_size": len(genes), "matched_size": int(idx.size), "scored": ok}
        )
        if ok:
            members[name] = idx
    set_table = pd.DataFrame(table)
    if not members:
        raise ItmeInputError(
            "no gene set has an allowed number of scored genes",
            where=f"pathway_scores gene sets {label}",
            expected=f"between min_size={min_size} and max_size={max_size} genes per set",
            found=f"at most {int(set_table['matched_size'].max())} (of {len(col_of)} scored genes)",
            fix="Check that var['gene_name'] holds gene symbols, or lower min_size",
        )
    if method == "zscore":
        scores = combined_z_scores(expr, list(members.values()))
        result = pd.DataFrame(scores, index=adata.obs_names, columns=list(members))
    else:
        cols = frame["col"].to_numpy()
        data = pd.DataFrame(
            expr[:, cols].T,
            index=frame["symbol"].to_numpy(),
            columns=list(map(str, adata.obs_names)),
        )
        result = ssgsea_scores(
            data, {n: sets[n] for n in members}, min_size=min_size, max_size=max_size
        )
        result = result.reindex(index=list(map(str, adata.obs_names)), columns=list(members))
        result.index = adata.obs_names
    adata.obsm[key_added] = result.astype(float)
    adata.uns[key_added] = {
        "method": method,
        "gene_sets": label,
        "min_count": int(min_count),
        "min_samples": int(n_req),
        "n_genes_scored": len(col_of),
        "n_unmapped": int(unmapped.sum()),
        "sets": set_table,
    }
    logger.info(
        "pathway_scores: %s scores of %d sets in %d samples from %d genes (%.2f s)",
        method,
        len(members),
        adata.n_obs,
        len(col_of),
        time.perf_counter() - t0,
    )
    return adata if copy else None
