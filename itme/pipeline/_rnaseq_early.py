"""The RNA-seq contrasts that need no CyTOF result, computed by a second process from the start.

A contrast between clinical groups (the demo's TRMM vs NDMM + RMM) whose covariates are
clinical columns needs only the counts and clinical.csv, not the iTME clusters. When a run
starts and its rnaseq stage has not finished in the output folder before (a first run),
:func:`start` hands these contrasts to a second Python process
(:mod:`itme.pipeline._second_process`, as for the UMAP) that fits them with
:func:`contrast_tables`, the function the rnaseq stage calls, with the same seeds; the
cell-level stages keep about one core busy meanwhile. The rnaseq stage then takes each result
(:func:`take`) instead of computing it, and re-issues the warnings the second process caught.

Nothing is started on one core (``os.cpu_count() < 2`` or ``threads: 1``), when the rnaseq
stage is outside ``--from``/``--until`` or has finished before (its fingerprint may still
match: the stage then computes what it needs itself). A contrast the second process could
not compute (an error, a killed process) is computed by the stage, so its errors are raised
as usual.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itme import io, rna
from itme.pipeline._config import Config, Contrast, rnaseq_contrasts
from itme.pipeline._runner import STATE_DIR, stage_seeds
from itme.pipeline._second_process import SecondProcess, one_core

logger = logging.getLogger(__name__)

#: the running second process of each output folder (one run per folder: the run's lock)
_PENDING: dict[Path, SecondProcess] = {}


def contrast_tables(
    counts: Any,
    contrast: Contrast,
    config: Config,
    seed: np.random.SeedSequence,
    *,
    threads: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rna.differential_expression`` and ``rna.gsea`` of one contrast, as the stage runs them.

    Parameters
    ----------
    counts
        Samples × genes counts (:func:`itme.rna.read_counts`) with the contrast's columns.
    contrast
        The contrast.
    config
        The run's config (its ``rnaseq`` section).
    seed
        The contrast's GSEA seed.
    threads
        Threads of the DESeq2 dispersion fits (the results do not depend on it).

    Returns
    -------
    The DE results and the GSEA table.
    """
    r = config.rnaseq
    de = rna.differential_expression(
        counts,
        contrast=(contrast.groupby, contrast.test, contrast.reference),
        design="~ " + " + ".join([*r.covariates, contrast.groupby]),
        prefilter=r.prefilter,
        min_count=r.min_count,
        lfc_shrink=r.lfc_shrink,
        n_cpus=threads,
    )
    gs = rna.gsea(
        de, gene_sets=r.gene_sets, rank_by=r.gsea_rank_by, permutations=r.permutations, rng=seed
    )
    return de, gs


def contrast_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """One independent GSEA seed per contrast from the stage's seed (docs/architecture.md)."""
    return np.random.SeedSequence(seed).spawn(n)


def design_key(counts: Any, contrast: Contrast, config: Config) -> str:
    """What a contrast's tables depend on besides the counts file and the config.

    The samples and genes of ``counts`` and each sample's values of the contrast's column and
    the covariates, with whether each column is numeric (a numeric covariate is a slope in
    the design, a text one a factor). The stage takes the second process's tables only when
    its own key is the same, e.g. not when its clinical table (joined into ``patients.obs``)
    gives other values than ``clinical.csv`` read directly.

    Returns
    -------
    The SHA-256 of those, in hex.
    """
    columns = [*config.rnaseq.covariates, contrast.groupby]
    design = counts.obs.reindex(columns=columns)
    h = hashlib.sha256()
    for names in (counts.obs_names, counts.var_names, columns):
        h.update("\x1f".join(map(str, names)).encode() + b"\x1e")
    h.update(bytes(pd.api.types.is_numeric_dtype(design[c]) for c in columns))
    h.update(design.astype(str).to_csv().encode())
    return h.hexdigest()


def independent(config: Config) -> list[tuple[Contrast, np.random.SeedSequence]]:
    """The contrasts (and their seeds) that need neither the iTME clusters nor the CyTOF data."""
    if config.inputs.counts is None or "itme_cluster" in config.rnaseq.covariates:
        return []
    contrasts = rnaseq_contrasts(config)
    seed = stage_seeds(config.seed, ["rnaseq"])["rnaseq"]
    pairs = zip(contrasts, contrast_seeds(seed, len(contrasts)), strict=True)
    return [(c, s) for c, s in pairs if c.groupby != "itme_cluster"]


def _compute(config: Config, todo: list[tuple[Contrast, np.random.SeedSequence]]) -> dict:
    """Each contrast's tables and caught warnings (contrasts that raised are left out)."""
    i = config.inputs
    clinical = io.read_clinical(i.clinical) if i.clinical is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stage reads the counts and reports their warnings
        counts = rna.read_counts(i.counts, clinical=clinical)
    results = {}
    for contrast, seed in todo:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                de, gs = contrast_tables(counts, contrast, config, seed)
        except Exception:  # noqa: BLE001 - the stage computes it again and raises it
            continue
        shown = [(w.category, str(w.message)) for w in caught]
        results[contrast.name] = (de, gs, shown, design_key(counts, contrast, config))
    return results


def start(config: Config, *, first: int, last: int, names: list[str]) -> None:
    """Start the independent contrasts in a second process when the rnaseq stage will run.

    Parameters
    ----------
    config
        The run's (resolved) config.
    first, last
        Indices in ``names`` of the first and last stage the run may run.
    names
        The stage names, in run order.
    """
    out = config.output
    todo = independent(config)
    if (
        not todo
        or "rnaseq" not in names
        or not first <= names.index("rnaseq") <= last
        or (out / STATE_DIR / "rnaseq.json").is_file()
        or one_core(config.threads)
    ):
        return
    _PENDING[out] = SecondProcess(f"{__name__}:_compute", config, todo, name="rnaseq")
    logger.info("rnaseq: contrast(s) %s started in a second process", [c.name for c, _ in todo])


def stop(config: Config) -> None:
    """Stop the second process of this run's output folder (if any) and remove its files."""
    early = _PENDING.pop(config.output, None)
    if early is not None:
        early.stop()


def take(out: Path, name: str, key: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The second process's tables of contrast ``name`` (its warnings re-issued), or None.

    Parameters
    ----------
    out
        The run's output folder.
    name
        The contrast's name.
    key
        :func:`design_key` of the stage's counts: the tables are taken only when the second
        process fitted the same samples, genes and design values.

    Returns
    -------
    DE results and GSEA table, or ``None`` when the stage must compute them.
    """
    early = _PENDING.get(out)
    if early is None:
        return None
    found = (early.wait() or {}).pop(name, None)
    if found is None:
        return None
    de, gs, shown, fitted = found
    if fitted != key:
        logger.info(
            "rnaseq: contrast %s: the second process read other samples or design values "
            "than the stage (clinical.csv vs the patients table); the stage fits it again",
            name,
        )
        return None
    for category, message in shown:
        warnings.warn(message, category, stacklevel=2)
    return de, gs
