"""Batch diagnostics: whether samples, subsets or iTME clusters follow the acquisition batch.

CATALYST's ``pbMDS`` idea (per-sample marker medians on a 2-D map, coloured by batch) with
numbers beside it: the share of the variance of the per-sample medians explained by batch
(with a permutation p-value), each label's share of every batch's events (a subset present
in every batch but one is the batch split the data themselves can show), and the
association of the patients' iTME clusters with batch.
"""

from __future__ import annotations

import collections
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import chi2_contingency

from itme._adata import given_or_class
from itme._dask import take_row_groups
from itme._random import RngLike, as_generator, draw_seed
from itme.core.batch.diagnostics import batch_r2, label_share, pca, permutation_pvalue
from itme.errors import ItmeInputError, ItmeParameterError, ItmeStatisticsWarning

__all__ = ["batch_diagnostics", "cluster_batch_association"]

logger = logging.getLogger(__name__)

#: a batch explaining more than this share of the per-sample medians' variance is flagged
R2_WARN = 0.3
#: a label whose share in one batch is below this fraction of its median share is flagged
SHARE_WARN = 0.25
#: labels below this median share of events are not judged (too few events)
MIN_SHARE = 0.005


def _rows_by_code(codes: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The rows of each code ``0 .. n-1``, in order (one array a code).

    The codes of a cohort's samples come in runs (its files, concatenated): a code held by
    one run is a range, found in one pass over ``codes``; a scan of ``codes`` for every
    code instead took 3.6 s for 200 samples of 10^8 events. Codes spread over several
    runs are scanned for.
    """
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    if not codes.size or starts.size > 4 * n:  # no events, or not in runs: scan
        yield from (np.flatnonzero(codes == i) for i in range(n))
        return
    starts = np.concatenate([[0], starts]).astype(np.intp)
    stops = np.append(starts[1:], codes.size)
    held = collections.defaultdict(list)
    for code, a, b in zip(codes[starts].tolist(), starts.tolist(), stops.tolist(), strict=True):
        held[code].append((a, b))
    for i in range(n):
        runs = held.get(i, [])
        yield np.arange(*runs[0]) if len(runs) == 1 else np.flatnonzero(codes == i)


def _column(obs: pd.DataFrame, key: str, what: str) -> pd.Categorical:
    if key not in obs:
        raise ItmeInputError(
            where=f"obs[{key!r}]",
            expected=what,
            found=f"obs columns {list(obs.columns)}",
            fix=f"pass the right {key!r} column name",
        )
    values = obs[key]
    if isinstance(values.dtype, pd.CategoricalDtype):
        # pd.Categorical(values.astype(str)) from the codes: no string per event
        codes = values.cat.codes.to_numpy()
        names = values.cat.categories.astype(str)
        if not (codes < 0).any() and names.is_unique:
            used = np.flatnonzero(np.bincount(codes, minlength=len(names)))
            order = sorted(used, key=lambda k: names[k])
            recode = np.zeros(len(names), dtype=codes.dtype)
            recode[order] = np.arange(len(order))
            return pd.Categorical.from_codes(recode[codes], categories=names[order])
    return pd.Categorical(values.astype(str))


def batch_diagnostics(
    adata: AnnData,
    *,
    batch_key: str = "batch",
    sample_key: str = "sample_id",
    groupby: str | None = "subset",
    markers: Sequence[str] | None = None,
    max_events: int = 5000,
    n_perm: int = 999,
    rng: RngLike = None,
    key_added: str = "batch_diagnostics",
) -> dict:
    """Measure how strongly samples and labels follow the batch, and warn when they do.

    Per sample, the median of every marker over (at most ``max_events`` random) events; their
    PCA (standardised markers) is the map :func:`itme.pl.batch_mds` draws. The share of the
    variance of the medians explained by batch (``r2``, pooled over standardised markers,
    and per marker) is tested by permuting batches over samples. With ``groupby``, each
    label's share of every batch's events, and the ratio of its lowest share to its median
    share. An :class:`~itme.errors.ItmeStatisticsWarning` is issued when ``r2 > 0.3`` with
    ``p < 0.05``, or a label holding at least 0.5 % of events has under a quarter of its
    median share in some batch (a subset named differently in one batch, or biology
    confounded with batch: look at the figure).

    Parameters
    ----------
    adata
        Events × channels (arcsinh scale), ``obs`` with ``batch_key`` and ``sample_key``.
    batch_key
        ``obs`` column of each event's batch.
    sample_key
        ``obs`` column of each event's sample.
    groupby
        ``obs`` column of labels for the label shares (``None`` or absent: skipped).
    markers
        Markers of the medians; default ``type`` and ``state`` markers.
    max_events
        Events per sample used for the medians (a seeded random subsample).
    n_perm
        Permutations of the ``r2`` test.
    rng
        Seed or generator (subsample, permutations); the seed used is stored.
    key_added
        ``uns`` key of the result.

    Returns
    -------
    dict
        Also stored in ``uns[key_added]``: ``batch_key``, ``sample_key``, ``groupby`` (when
        used), ``seed``, ``sample_medians`` (DataFrame, samples × markers, plus ``batch``),
        ``pca`` (DataFrame: sample, batch, PC1, PC2), ``pca_explained`` (array),
        ``marker_r2`` (DataFrame: marker, r2), ``r2``, ``pvalue``, ``label_share``
        (DataFrame: label, one column per batch (share of its events), ``ratio``),
        ``flags`` (list of str: what was warned about).
    """
    if int(max_events) < 10:
        raise ItmeParameterError("max_events", "an integer >= 10", max_events)
    batches = _column(adata.obs, batch_key, "the acquisition batch of each event")
    samples = _column(adata.obs, sample_key, "the sample of each event")
    markers = given_or_class(adata, markers, ("type", "state"))
    seed = draw_seed(rng)
    gen = as_generator(seed)
    cols = [adata.var_names.get_loc(m) for m in markers]
    rows_of = []
    for rows in _rows_by_code(samples.codes, len(samples.categories)):
        if rows.size > max_events:
            rows = np.sort(gen.choice(rows, int(max_events), replace=False))
        rows_of.append(rows)
    # the samples' events gathered a batch of samples at a time (one pass over a lazy matrix)
    med = [
        np.median(np.asarray(values, dtype=np.float64), axis=0)
        for values in take_row_groups(adata.X, rows_of, np.asarray(cols, dtype=np.intp))
    ]
    batch_of = [str(batches[rows[0]]) if rows.size else "" for rows in rows_of]
    medians = pd.DataFrame(med, index=list(samples.categories), columns=list(markers))
    b = pd.Categorical(batch_of)
    r2_marker, r2 = batch_r2(medians.to_numpy(), b.codes)
    n_b = len(b.categories)
    pvalue = (
        permutation_pvalue(medians.to_numpy(), b.codes, n_perm=int(n_perm), rng=gen)
        if n_b >= 2 and int(n_perm) > 0
        else float("nan")
    )
    scores, explained = pca(medians.to_numpy())
    pcs = pd.DataFrame(
        {"sample": medians.index, "batch": batch_of, "PC1": scores[:, 0]}, index=None
    )
    pcs["PC2"] = scores[:, 1] if scores.shape[1] > 1 else 0.0
    flags = []
    if n_b >= 2 and r2 > R2_WARN and pvalue < 0.05:
        flags.append(
            f"batch explains {r2:.0%} of the variance of per-sample marker medians "
            f"(permutation p = {pvalue:.3g}); top markers: "
            + ", ".join(pd.Series(r2_marker, index=markers).nlargest(3).index)
        )
    out = {
        "batch_key": batch_key,
        "sample_key": sample_key,
        "seed": int(seed),
        "sample_medians": medians.assign(batch=batch_of),
        "pca": pcs,
        "pca_explained": np.asarray(explained, dtype=float),
        "marker_r2": pd.DataFrame({"marker": list(markers), "r2": r2_marker}),
        "r2": float(r2),
        "pvalue": float(pvalue),
    }
    if groupby is not None and groupby in adata.obs:
        labels = _column(adata.obs, groupby, "labels")
        pairs = labels.codes.astype(np.int64) * len(batches.categories) + batches.codes
        counts = pd.DataFrame(  # pd.crosstab of the labels and batches as text, by code
            np.bincount(pairs, minlength=len(labels.categories) * len(batches.categories)).reshape(
                len(labels.categories), len(batches.categories)
            ),
            index=pd.Index(labels.categories, name=groupby),
            columns=pd.Index(batches.categories, name="col_0"),
        )
        share, ratio = label_share(counts.to_numpy())
        shares = pd.DataFrame(share, index=counts.index, columns=counts.columns)
        shares["ratio"] = ratio
        out["groupby"] = groupby
        out["label_share"] = shares.reset_index(names="label")
        med_share = np.median(share, axis=1)
        bad = counts.index[(med_share >= MIN_SHARE) & (ratio < SHARE_WARN)]
        for label in bad:
            low = shares.loc[label, counts.columns].astype(float).idxmin()
            flags.append(
                f"{groupby} {label!r}: {shares.loc[label, low]:.2%} of batch {low}'s events "
                f"against a median of {np.median(share[counts.index.get_loc(label)]):.2%} "
                "over batches (named differently in that batch, or biology confounded with it)"
            )
    out["flags"] = flags
    for flag in flags:
        warnings.warn(f"batch effect: {flag}", ItmeStatisticsWarning, stacklevel=2)
    logger.info(
        "batch diagnostics: %d samples, %d batches, r2 = %.2f (p = %.3g), %d flag(s)",
        len(medians),
        n_b,
        r2,
        pvalue,
        len(flags),
    )
    adata.uns[key_added] = out
    return out


def cluster_batch_association(
    adata: AnnData,
    *,
    cluster_key: str = "itme_cluster",
    batch_key: str = "batch",
    key_added: str = "batch_association",
) -> dict:
    """Association of the patients' clusters with the acquisition batch (chi-squared, Cramér's V).

    Clusters that follow batches may be batches read as biology (or biology that was
    acquired batch by batch: the design, not the data, decides). Warns
    (:class:`~itme.errors.ItmeStatisticsWarning`) when ``p < 0.05``.

    Parameters
    ----------
    adata
        Patients AnnData (samples × subsets) with ``obs[cluster_key]`` and ``obs[batch_key]``.
    cluster_key
        ``obs`` column of the clusters.
    batch_key
        ``obs`` column of the batches.
    key_added
        ``uns`` key of the result.

    Returns
    -------
    dict
        Also in ``uns[key_added]``: ``table`` (DataFrame clusters × batches, samples),
        ``chi2``, ``dof``, ``pvalue``, ``cramers_v``, ``cluster_key``, ``batch_key``.
    """
    clusters = _column(adata.obs, cluster_key, "the cluster of each sample")
    batches = _column(adata.obs, batch_key, "the batch of each sample")
    table = pd.crosstab(np.asarray(clusters), np.asarray(batches))
    table.index.name, table.columns.name = cluster_key, batch_key
    if min(table.shape) < 2:
        chi2, p, dof, v = 0.0, 1.0, 0, 0.0
    else:
        chi2, p, dof, _ = chi2_contingency(table.to_numpy())
        v = float(np.sqrt(chi2 / (table.to_numpy().sum() * (min(table.shape) - 1))))
    out = {
        "table": table,
        "chi2": float(chi2),
        "dof": int(dof),
        "pvalue": float(p),
        "cramers_v": float(v),
        "cluster_key": cluster_key,
        "batch_key": batch_key,
    }
    if p < 0.05:
        warnings.warn(
            f"batch effect: {cluster_key} is associated with {batch_key} (chi-squared "
            f"p = {p:.3g}, Cramér's V = {v:.2f}); check that the clusters are not batches",
            ItmeStatisticsWarning,
            stacklevel=2,
        )
    adata.uns[key_added] = out
    return out
