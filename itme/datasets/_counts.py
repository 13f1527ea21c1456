"""Negative-binomial RNA-seq count simulator with planted gene-set (pathway) shifts.

Pure numpy/pandas. Used by the RNA tests and benchmarks, and by the demo-cohort simulator
(``itme.datasets``), which calls :func:`simulate_counts` with its own patients and groups.

The model (one gene ``g``, one sample ``j`` in group ``k``)::

    y_gj ~ NegativeBinomial(mean = s_j * mu_g * 2 ** lfc_gk, dispersion = alpha_g)

- ``mu_g`` (base mean): log-normal, ``exp(N(log(base_mean_median), base_mean_sdlog))``;
  a share ``fraction_unexpressed`` of the genes gets a mean below 1 count, so low-count
  pre-filtering has something to remove.
- ``alpha_g``: the DESeq2 trend ``dispersion_asymptote + dispersion_extra / mu_g`` times a
  log-normal scatter (sdlog ``dispersion_sdlog``), as real cohorts show.
- ``s_j`` (size factor): log-normal with sdlog ``size_factor_sdlog``, geometric mean 1.
- ``lfc_gk``: 0 except for the planted shifts. ``shifts = {group: {gene_set: log2 fold change}}``
  shifts a random share ``fraction_shifted`` of the set's genes in the samples of ``group``,
  each by the set's value times a factor drawn uniformly in [0.5, 1.5]. A gene picked by
  several planted sets of the same group gets the mean of their shifts. Groups absent from
  ``shifts`` are the baseline.

The negative binomial is drawn as a gamma-Poisson mixture from one ``numpy`` Generator, so the
same ``rng`` gives the same counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from itme._random import RngLike, as_generator
from itme.errors import ItmeParameterError

__all__ = ["SimulatedCounts", "simulate_counts"]


@dataclass(frozen=True)
class SimulatedCounts:
    """Result of :func:`simulate_counts`.

    Attributes
    ----------
    counts
        Samples × genes int64 counts; index ``sample_id``, columns gene ids (``SIMG0000001``...).
    genes
        One row per gene (index gene id): ``gene_name`` (HGNC symbol for gene-set members,
        ``SIMGENE<n>`` for filler genes), ``base_mean``, ``dispersion`` and one column
        ``lfc_<group>`` per group: the true log2 fold change of that group vs. baseline.
    samples
        One row per sample (index ``sample_id``): ``group`` and ``size_factor``.
    planted
        One row per planted shift: ``group``, ``gene_set``, ``log2_fold_change``,
        ``n_genes`` (set members simulated), ``n_shifted`` (members actually shifted).
    """

    counts: pd.DataFrame
    genes: pd.DataFrame
    samples: pd.DataFrame
    planted: pd.DataFrame


def simulate_counts(
    groups: Sequence[str] | pd.Series,
    *,
    gene_sets: Mapping[str, Sequence[str]],
    shifts: Mapping[str, Mapping[str, float]],
    n_genes: int = 20_000,
    fraction_shifted: float = 0.7,
    base_mean_median: float = 150.0,
    base_mean_sdlog: float = 1.8,
    fraction_unexpressed: float = 0.1,
    dispersion_asymptote: float = 0.15,
    dispersion_extra: float = 1.5,
    dispersion_sdlog: float = 0.5,
    size_factor_sdlog: float = 0.25,
    rng: RngLike = None,
) -> SimulatedCounts:
    """Simulate raw RNA-seq counts (samples × genes) with planted gene-set shifts.

    Parameters
    ----------
    groups
        Group label of each sample (e.g. iTME cluster ``"1"``, ``"2"``, ``"3"``). A
        :class:`pandas.Series` gives the sample ids through its index; otherwise samples
        are named ``S01``, ``S02``, ...
    gene_sets
        Gene set name → member symbols (e.g. the Hallmark collection). Every member
        symbol becomes a simulated gene; filler genes make up the rest of ``n_genes``.
    shifts
        ``{group: {gene_set: log2 fold change}}``: planted shifts of ``group`` relative
        to the baseline (the groups not listed). Every named set must be in ``gene_sets``.
    n_genes
        Total number of genes (at least the number of distinct set members).
    fraction_shifted
        Share of a planted set's members that are shifted, in (0, 1].
    base_mean_median, base_mean_sdlog
        Median and log-scale spread of the expressed genes' mean counts.
    fraction_unexpressed
        Share of genes with a mean below 1 count (removed by low-count pre-filtering).
    dispersion_asymptote, dispersion_extra, dispersion_sdlog
        Dispersion trend ``asymptote + extra / mean`` and its log-normal gene-wise scatter.
    size_factor_sdlog
        Log-scale spread of the per-sample library size factors.
    rng
        Seed or :class:`numpy.random.Generator`; the same value gives the same counts.

    Returns
    -------
    SimulatedCounts
        ``counts`` (samples × genes, int64), ``genes`` (truth per gene), ``samples``
        (group, size factor) and ``planted`` (one row per planted shift).
    """
    gen = as_generator(rng)
    if isinstance(groups, pd.Series):
        sample_ids = [str(s) for s in groups.index]
        labels = np.asarray(groups.astype(str).to_numpy())
    else:
        labels = np.asarray([str(g) for g in groups])
        width = max(2, len(str(len(labels))))
        sample_ids = [f"S{i + 1:0{width}d}" for i in range(len(labels))]
    if len(labels) < 2:
        raise ItmeParameterError("groups", "at least 2 samples", len(labels))
    if not 0 < fraction_shifted <= 1:
        raise ItmeParameterError("fraction_shifted", "a share in (0, 1]", fraction_shifted)
    if not 0 <= fraction_unexpressed < 1:
        raise ItmeParameterError("fraction_unexpressed", "a share in [0, 1)", fraction_unexpressed)
    group_levels = list(dict.fromkeys(labels))
    for group, sets in shifts.items():
        if str(group) not in group_levels:
            raise ItmeParameterError("shifts", f"groups among {group_levels}", group)
        missing = [s for s in sets if s not in gene_sets]
        if missing:
            raise ItmeParameterError("shifts", "gene sets present in gene_sets", missing)

    set_genes = sorted({str(g) for members in gene_sets.values() for g in members})
    if n_genes < len(set_genes):
        raise ItmeParameterError(
            "n_genes", f"at least the {len(set_genes)} distinct gene-set members", n_genes
        )
    n_filler = n_genes - len(set_genes)
    names = set_genes + [f"SIMGENE{i + 1:05d}" for i in range(n_filler)]
    gene_ids = [f"SIMG{i + 1:07d}" for i in range(n_genes)]
    position = {name: i for i, name in enumerate(names)}

    # base means: expressed genes log-normal, a share unexpressed (< 1 count)
    base_mean = np.exp(gen.normal(np.log(base_mean_median), base_mean_sdlog, n_genes))
    unexpressed = gen.random(n_genes) < fraction_unexpressed
    base_mean[unexpressed] = gen.uniform(0.01, 1.0, unexpressed.sum())
    base_mean = np.clip(base_mean, 0.01, 1e6)
    dispersion = (dispersion_asymptote + dispersion_extra / base_mean) * np.exp(
        gen.normal(0.0, dispersion_sdlog, n_genes)
    )
    dispersion = np.clip(dispersion, 1e-4, 20.0)

    lfc = pd.DataFrame(0.0, index=gene_ids, columns=[f"lfc_{g}" for g in group_levels])
    planted_rows = []
    for group, sets in shifts.items():
        total = np.zeros(n_genes)
        hits = np.zeros(n_genes)
        for set_name, value in sets.items():
            members = np.array(sorted({position[str(g)] for g in gene_sets[set_name]}))
            n_pick = max(1, int(round(fraction_shifted * len(members))))
            picked = gen.choice(members, size=n_pick, replace=False)
            total[picked] += float(value) * gen.uniform(0.5, 1.5, n_pick)
            hits[picked] += 1
            planted_rows.append(
                {
                    "group": str(group),
                    "gene_set": set_name,
                    "log2_fold_change": float(value),
                    "n_genes": len(members),
                    "n_shifted": n_pick,
                }
            )
        with np.errstate(invalid="ignore"):
            lfc[f"lfc_{group}"] = np.where(hits > 0, total / np.maximum(hits, 1), 0.0)

    size_factor = np.exp(gen.normal(0.0, size_factor_sdlog, len(labels)))
    size_factor /= np.exp(np.mean(np.log(size_factor)))
    effect = lfc.to_numpy()[:, [group_levels.index(g) for g in labels]].T  # samples × genes
    mean = size_factor[:, None] * base_mean[None, :] * np.exp2(effect)
    shape = 1.0 / dispersion
    lam = gen.gamma(shape[None, :], mean / shape[None, :])
    counts = gen.poisson(lam).astype(np.int64)

    genes = pd.DataFrame(
        {"gene_name": names, "base_mean": base_mean, "dispersion": dispersion}, index=gene_ids
    )
    genes.index.name = "gene_id"
    genes = pd.concat([genes, lfc], axis=1)
    samples = pd.DataFrame({"group": labels, "size_factor": size_factor}, index=sample_ids)
    samples.index.name = "sample_id"
    planted = pd.DataFrame(
        planted_rows, columns=["group", "gene_set", "log2_fold_change", "n_genes", "n_shifted"]
    )
    count_frame = pd.DataFrame(counts, index=samples.index, columns=genes.index)
    return SimulatedCounts(counts=count_frame, genes=genes, samples=samples, planted=planted)
