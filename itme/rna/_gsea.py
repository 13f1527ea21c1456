"""Gene set enrichment with gseapy (the only module that imports gseapy).

Gene sets are read by :func:`itme.io.read_gene_sets`: ``"hallmark"`` (the MSigDB Hallmark
collection v7.0 shipped as package data, CC BY 4.0), a GMT path or a dict.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from itme._random import RngLike, draw_seed
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError
from itme.io import GeneSets, read_gene_sets
from itme.rna._counts import is_ensembl, no_symbol

__all__ = ["gsea"]

logger = logging.getLogger(__name__)


def ranked_symbols(
    results: pd.DataFrame, rank_by: str, *, by_index: bool = False
) -> tuple[pd.Series, dict[str, float]]:
    """Ranking statistic indexed by unique gene identifier, plus the accounting of drops.

    With ``by_index=False`` identifiers are symbols from ``results["gene_name"]`` (or the
    index without that column); a gene is *unmapped* when it has no symbol, or when its
    "symbol" is an Ensembl id (what :func:`~itme.rna.read_counts` stores when the file had
    no ``gene_name``). With ``by_index=True`` the index (e.g. Ensembl ids) is used as is.
    Genes with a missing statistic are dropped. When several genes share an identifier,
    the one with the largest absolute statistic is kept.
    """
    if rank_by not in results.columns:
        raise ItmeParameterError(
            "rank_by",
            f"a column of the results ({', '.join(map(str, results.columns))})",
            rank_by,
            fix="Run itme.rna.differential_expression(..., lfc_shrink=True) first"
            if rank_by == "log2FoldChange_shrunk"
            else None,
        )
    values = pd.to_numeric(results[rank_by], errors="coerce")
    by_symbol = "gene_name" in results.columns and not by_index
    raw = results["gene_name"] if by_symbol else pd.Series(results.index, index=results.index)
    unmapped = no_symbol(raw, ensembl=by_symbol)
    symbols = raw.astype("string").str.strip()
    missing = ~np.isfinite(values.to_numpy(dtype=float))
    keep = ~unmapped & ~missing
    frame = pd.DataFrame({"symbol": symbols[keep].to_numpy(), "value": values[keep].to_numpy()})
    frame["abs"] = frame["value"].abs()
    frame = frame.sort_values("abs", ascending=False, kind="mergesort")
    n_dup = int(frame["symbol"].duplicated().sum())
    frame = frame.drop_duplicates("symbol", keep="first")
    ranking = frame.set_index("symbol")["value"].sort_values(ascending=False, kind="mergesort")
    n = len(results)
    accounting = {
        "n_genes_in": n,
        "n_unmapped": int(unmapped.sum()),
        "unmapped_share": float(unmapped.sum() / n) if n else 0.0,
        "n_missing_rank": int((missing & ~unmapped).sum()),
        "n_duplicate_symbols": n_dup,
        "n_genes_ranked": int(ranking.size),
    }
    return ranking, accounting


def check_set_sizes(min_size: int, max_size: int) -> None:
    """Validate the allowed gene-set sizes (``1 <= min_size <= max_size``, integers)."""
    if not (isinstance(min_size, int) and isinstance(max_size, int) and 1 <= min_size <= max_size):
        raise ItmeParameterError(
            "min_size, max_size", "1 <= min_size <= max_size", (min_size, max_size)
        )


def _threads(threads: int | None) -> int:
    if threads is None:
        return max(1, min(4, os.cpu_count() or 1))
    if not isinstance(threads, int) or threads < 1:
        raise ItmeParameterError("threads", "a positive integer or None", threads)
    return threads


def gsea(
    results: pd.DataFrame,
    *,
    gene_sets: GeneSets = "hallmark",
    rank_by: str = "stat",
    permutations: int = 1000,
    min_size: int = 15,
    max_size: int = 500,
    weight: float = 1.0,
    threads: int | None = None,
    rng: RngLike = None,
) -> pd.DataFrame:
    """Preranked GSEA (gseapy ``prerank``) of differential expression results.

    Genes are ranked by ``rank_by`` (default the Wald statistic ``stat``, which carries both
    sign and precision). Ensembl ids are mapped to symbols through ``results["gene_name"]``
    (:func:`~itme.rna.read_counts` stores it); genes without a symbol are left out and their
    share is reported (``attrs["unmapped_share"]`` and an
    :class:`~itme.errors.ItmeExclusionWarning`). Symbols shared by several genes keep the
    gene with the largest absolute statistic. When most members of the gene sets are
    Ensembl ids, genes are matched on the results' index instead (no symbols needed). Gene
    sets are compared on the ranked genes only; sets with fewer than ``min_size`` or more
    than ``max_size`` ranked members are skipped, as in GSEA.

    Parameters
    ----------
    results
        Output of :func:`~itme.rna.differential_expression` (or any table with a
        ``rank_by`` column and a ``gene_name`` column or symbols as index).
    gene_sets
        ``"hallmark"`` (MSigDB Hallmark v7.0, shipped), a path to a GMT file, or a dict of
        set name → genes.
    rank_by
        Column used to rank the genes (descending): ``"stat"`` (default, the Wald
        statistic), ``"log2FoldChange"``, or ``"log2FoldChange_shrunk"`` (shrunken fold
        changes, ``differential_expression(..., lfc_shrink=True)``: effect sizes with the
        noise of low-count genes shrunk away), or any numeric column.
    permutations
        Gene-set permutations for the nominal p-value and FDR (GSEA default 1000).
    min_size
        Smallest allowed number of ranked genes in a set.
    max_size
        Largest allowed number of ranked genes in a set.
    weight
        GSEA weighting exponent of the running sum (1 = classic weighted GSEA).
    threads
        gseapy worker threads (default: up to 4 CPUs). Results do not depend on it.
    rng
        Seed or Generator; the integer passed to gseapy is stored in ``attrs["seed"]``.

    Returns
    -------
    pandas.DataFrame
        One row per tested set, sorted by NES (descending): ``Term``, ``ES``, ``NES``,
        ``pvalue`` (nominal), ``FDR`` (q-value), ``FWER``, ``set_size`` (members in the
        collection), ``matched_size`` (members among the ranked genes), ``leading_edge``
        (``;``-separated symbols) and ``n_leading_edge``. ``attrs`` holds ``seed``,
        ``permutations``, ``gene_sets``, ``rank_by``, ``identifiers`` (``gene_name`` or
        ``index``), ``n_genes_in``, ``n_unmapped``,
        ``unmapped_share``, ``n_missing_rank``, ``n_duplicate_symbols``,
        ``n_genes_ranked``, ``n_tied_ranks`` (genes sharing a ranking value), ``n_sets``,
        ``n_sets_skipped``, ``min_size``, ``max_size``,
        ``weight``, ``gseapy_version`` and ``elapsed_seconds``.
    """
    t0 = time.perf_counter()
    if not isinstance(results, pd.DataFrame):
        raise ItmeParameterError("results", "a DataFrame of DE results", type(results).__name__)
    if not isinstance(permutations, int) or permutations < 1:
        raise ItmeParameterError("permutations", "a positive integer", permutations)
    check_set_sizes(min_size, max_size)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise ItmeParameterError("weight", "a number >= 0 (1: classic weighted GSEA)", weight)
    n_threads = _threads(threads)
    sets, label = read_gene_sets(gene_sets)
    members = [g for genes in sets.values() for g in genes]
    by_index = bool(members) and is_ensembl(members).mean() > 0.5
    ranking, acct = ranked_symbols(results, rank_by, by_index=by_index)
    if acct["n_unmapped"] or acct["n_missing_rank"] or acct["n_duplicate_symbols"]:
        warnings.warn(
            f"gsea: of {acct['n_genes_in']} genes, {acct['n_unmapped']} "
            f"({100 * acct['unmapped_share']:.1f}%) have no gene symbol, "
            f"{acct['n_missing_rank']} have no {rank_by!r} value and "
            f"{acct['n_duplicate_symbols']} repeat a symbol (largest |{rank_by}| kept); "
            f"{acct['n_genes_ranked']} genes are ranked",
            ItmeExclusionWarning,
            stacklevel=2,
        )
    ranked = set(ranking.index)
    overlap = {name: [g for g in genes if g in ranked] for name, genes in sets.items()}
    sizes = {name: len(genes) for name, genes in overlap.items()}
    if ranking.size < 2 or max(sizes.values()) == 0:
        example = ", ".join(list(ranking.index[:3])) or "none"
        set_example = ", ".join(next(iter(sets.values()))[:3])
        raise ItmeInputError(
            "no gene of any gene set is among the ranked genes",
            where=f"gsea gene sets {label}",
            expected="gene sets named with the same identifiers as the ranked genes",
            found=(
                f"{acct['n_genes_ranked']} ranked genes (e.g. {example}); "
                f"set members e.g. {set_example}"
            ),
            fix=(
                "Rank by HGNC symbols: give the counts a gene_name column (read_counts) or pass "
                "gene sets that use the same ids as the results"
            ),
        )
    testable = [n for n, k in sizes.items() if min_size <= k <= max_size]
    if not testable:
        raise ItmeInputError(
            "no gene set has an allowed number of ranked genes",
            where=f"gsea gene sets {label}",
            expected=f"between min_size={min_size} and max_size={max_size} ranked members",
            found=f"at most {max(sizes.values())} ranked members in a set",
            fix="Lower min_size, or rank more genes (check the gene symbols)",
        )
    seed = draw_seed(rng)
    logger.info(
        "gsea: %d genes ranked by %s, %d of %d sets testable, %d permutations, seed %d",
        ranking.size,
        rank_by,
        len(testable),
        len(sets),
        permutations,
        seed,
    )
    import gseapy

    n_tied = int(ranking.duplicated().sum())
    if n_tied:
        logger.info(
            "gsea: %d of %d ranked genes (%.2f%%) repeat another gene's %s; gseapy orders "
            "ties arbitrarily (n_tied_ranks in the attrs)",
            n_tied,
            ranking.size,
            100 * n_tied / ranking.size,
            rank_by,
        )
    with _gseapy_log():
        pre = gseapy.prerank(
            rnk=ranking,
            gene_sets={n: sets[n] for n in testable},
            outdir=None,
            no_plot=True,
            min_size=min_size,
            max_size=max_size,
            permutation_num=permutations,
            weight=weight,
            threads=n_threads,
            seed=seed,
            verbose=False,
        )
    raw = pre.res2d
    lead = raw["Lead_genes"].fillna("").astype(str)
    out = pd.DataFrame(
        {
            "Term": raw["Term"].astype(str).to_numpy(),
            "ES": raw["ES"].astype(float).to_numpy(),
            "NES": raw["NES"].astype(float).to_numpy(),
            "pvalue": raw["NOM p-val"].astype(float).to_numpy(),
            "FDR": raw["FDR q-val"].astype(float).to_numpy(),
            "FWER": raw["FWER p-val"].astype(float).to_numpy(),
        }
    )
    out["set_size"] = [len(sets[t]) for t in out["Term"]]
    out["matched_size"] = [sizes[t] for t in out["Term"]]
    out["leading_edge"] = lead.to_numpy()
    out["n_leading_edge"] = [len([g for g in s.split(";") if g]) for s in lead]
    out = out.sort_values("NES", ascending=False, kind="mergesort").reset_index(drop=True)
    elapsed = time.perf_counter() - t0
    out.attrs = {
        "seed": int(seed),
        "permutations": int(permutations),
        "gene_sets": label,
        "rank_by": rank_by,
        "identifiers": "index" if by_index else "gene_name",
        **acct,
        "n_tied_ranks": n_tied,
        "n_sets": len(testable),
        "n_sets_skipped": len(sets) - len(testable),
        "min_size": int(min_size),
        "max_size": int(max_size),
        "weight": float(weight),
        "gseapy_version": str(getattr(gseapy, "__version__", "unknown")),
        "elapsed_seconds": round(elapsed, 3),
    }
    logger.info("gsea: %d sets at FDR < 0.05 (%.1f s)", int((out["FDR"] < 0.05).sum()), elapsed)
    return out


@contextlib.contextmanager
def _gseapy_log() -> Iterator[None]:
    """Route gseapy's console log (its own stderr handler) to itme's logger at DEBUG.

    gseapy attaches a ``StreamHandler`` to a fresh logger on every call, printing warnings
    such as tied ranking values straight to the terminal; itme reports what matters itself
    (``n_tied_ranks``), so the text is kept for ``-vv`` only.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                logger.debug("gseapy: %s", line.strip())


def ssgsea_scores(
    expression: pd.DataFrame,
    gene_sets: dict[str, list[str]],
    *,
    min_size: int,
    max_size: int,
    threads: int | None = None,
) -> pd.DataFrame:
    """Gseapy single-sample GSEA: samples × sets of normalised scores (``NES``).

    ``expression`` is genes (symbols, unique) × samples. ssGSEA ranks genes within each
    sample and uses no permutations, so the result is deterministic.
    """
    import gseapy

    with _gseapy_log():
        res = gseapy.ssgsea(
            data=expression,
            gene_sets=gene_sets,
            outdir=None,
            sample_norm_method="rank",
            min_size=min_size,
            max_size=max_size,
            permutation_num=0,
            threads=_threads(threads),
            no_plot=True,
            verbose=False,
        )
    table = res.res2d
    wide = table.pivot(index="Name", columns="Term", values="NES").astype(float)
    wide.index = pd.Index(wide.index.astype(str), name=None)
    wide.columns = pd.Index(wide.columns.astype(str), name=None)
    return wide
