"""The fast path of pp.correct_batch: chunked passes, subsample fit, ComBat as a linear map."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import pp
from itme.core.batch.align import affine_fit, fit_sizes, match_moments
from itme.core.batch.passes import (
    aligned_weights,
    apply_affine,
    combine_moments,
    nearest_aligned,
    part_moments,
    pick_fit_rows,
)
from itme.core.cluster.codebook import nearest_code
from itme.errors import ItmeParameterError
from itme.pp._combat import combat

MARKERS = ["CD3", "CD4", "CD8", "CD19", "CD56"]
TYPES = np.array(
    [
        [3.0, 3.0, 0.3, 0.2, 0.3],  # CD4 T
        [3.0, 0.3, 3.0, 0.2, 0.5],  # CD8 T
        [0.2, 0.3, 0.2, 3.0, 0.2],  # B
        [0.3, 0.2, 0.8, 0.2, 3.0],  # NK
    ]
)


def _cohort(seed: int, n: int = 12_000) -> ad.AnnData:
    """Three batches of four cell types; each batch with its own gain and offset per marker."""
    rng = np.random.default_rng(seed)
    blocks, batch = [], []
    for b, share in enumerate([[0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1], [0.2, 0.2, 0.3, 0.3]]):
        kind = rng.choice(4, size=n, p=share)
        x = rng.normal(TYPES[kind], 0.35)
        gain = rng.uniform(0.8, 1.25, len(MARKERS))
        blocks.append(x * gain + rng.uniform(-0.3, 0.3, len(MARKERS)))
        batch += [f"R{b + 1}"] * n
    obs = pd.DataFrame({"batch": pd.Categorical(batch)})
    obs.index = obs.index.astype(str)
    var = pd.DataFrame({"marker_class": "type"}, index=MARKERS)
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var)
    adata.uns["arcsinh"] = {"cofactor": np.full(len(MARKERS), 5.0), "channels": MARKERS}
    return adata


@pytest.mark.parametrize("seed", [0, 1])
def test_subsample_fit_agrees_with_full_fit(seed):
    # the stated tolerance (docs/batch.md): ComBat fitted on a subsample of each node agrees
    # with the fit on all its events within mean |diff| 0.003 and 99.9th percentile 0.05
    # (here fit_cells is a quarter of the default: more subsampled than at the default)
    full = pp.correct_batch(_cohort(seed), grid=(3, 3), fit_cells=None, rng=seed, copy=True)
    sub = pp.correct_batch(_cohort(seed), grid=(3, 3), fit_cells=1_500, rng=seed, copy=True)
    before = _cohort(seed).X
    info_full, info_sub = full.uns["batch_correction"], sub.uns["batch_correction"]
    # the same SOM nodes (fit_cells does not touch the SOM), most of them subsampled
    pd.testing.assert_frame_equal(info_full["nodes"], info_sub["nodes"])
    assert (info_sub["nodes"]["n_events"] > 1_500).sum() >= 6
    diff = np.abs(sub.X - full.X)
    assert np.abs(full.X - before).mean() > 0.1  # there was something to correct
    assert diff.mean() < 0.003
    assert np.quantile(diff, 0.999) < 0.05
    shift = info_full["shift"].set_index("batch") - info_sub["shift"].set_index("batch")
    assert np.abs(shift.to_numpy()).max() < 0.005


def test_scanpy_combat_is_a_line_per_batch_and_marker():
    # the premise of applying a subsample's fit to all events: without covariates, ComBat maps
    # every batch's marker linearly (location and scale); a scanpy that breaks this fails here
    rng = np.random.default_rng(3)
    batch = np.repeat([0, 1, 2], [400, 700, 300])
    X = rng.gamma(2.0, 1.0, size=(batch.size, 6)) * (1 + 0.3 * batch[:, None]) + batch[:, None]
    out = combat(X, batch)
    for b in range(3):
        slope, intercept, residual = affine_fit(X[batch == b], out[batch == b])
        assert residual < 1e-4
        assert np.all(slope > 0)
    # batch 2 had the largest spread and mean: it is scaled down and shifted down
    assert np.all(affine_fit(X[batch == 2], out[batch == 2])[0] < 1)
    assert np.all(out[batch == 2].mean(axis=0) < X[batch == 2].mean(axis=0))


def test_match_moments_gives_the_target_moments():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(500, 3))
    x[:, 2] = 1.0  # constant column: gets the target mean
    out = match_moments(x, np.array([0.5, -1.0, 4.0]), np.array([0.2, 2.0, 1.0]))
    np.testing.assert_allclose(out.mean(axis=0), [0.5, -1.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(out[:, :2].std(axis=0), [0.2, 2.0], rtol=1e-12)
    assert np.ptp(out[:, 2]) == 0


def test_fit_sizes_proportional_with_floor():
    np.testing.assert_array_equal(fit_sizes(np.array([3000, 3000]), 6000, 100), [3000, 3000])
    np.testing.assert_array_equal(
        fit_sizes(np.array([50_000, 30_000, 20]), None, 100), [50_000, 30_000, 20]
    )
    sizes = fit_sizes(np.array([60_000, 30_000, 500, 40]), 6_000, 600)
    # 6,000 / 90,540 = 6.6 % of each batch (rounded up), at least 600 events (or all it has)
    np.testing.assert_array_equal(sizes, [3_977, 1_989, 500, 40])


def test_pick_fit_rows_exact_sizes_uniform_and_seeded():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 5, size=200_000)
    counts = np.bincount(group)
    sizes = np.array([1_000, 40, counts[2], 0, 7])
    rows, g = pick_fit_rows(group, sizes, np.random.default_rng(9))
    np.testing.assert_array_equal(np.bincount(g, minlength=5), sizes)
    np.testing.assert_array_equal(group[rows], g)
    assert np.all(np.diff(rows) > 0)
    # uniform within its group: group 0's picks spread over the whole row range
    assert abs(np.median(rows[g == 0]) / group.size - 0.5) < 0.05
    again, _ = pick_fit_rows(group, sizes, np.random.default_rng(9))
    np.testing.assert_array_equal(rows, again)


def test_part_moments_match_numpy():
    rng = np.random.default_rng(2)
    X = rng.normal(1.0, 1.0, size=(20_000, 6)).astype(np.float32)
    cols = np.array([0, 2, 3, 5])
    batch = np.repeat([0, 1, 2, 0], 5_000)  # batch 0 in two runs of rows
    slope = rng.uniform(0.7, 1.4, size=(3, 4))
    intercept = rng.uniform(-0.5, 0.5, size=(3, 4))
    codes = rng.normal(1.0, 1.0, size=(9, 4))
    weights, offsets = aligned_weights(slope, intercept, codes)
    center = X[:3_000, cols].astype(np.float64).mean(axis=0)
    parts = [slice(0, 7_000), slice(7_000, 15_000), slice(15_000, 20_000)]
    found = [part_moments(X[p][:, cols], batch[p], weights, offsets, 3, center) for p in parts]
    nodes = np.concatenate([n for n, _ in found])
    mom = combine_moments([m for _, m in found], 3, center)
    aligned = X[:, cols] * slope[batch] + intercept[batch]
    expected = nearest_code(aligned, codes)
    assert (nodes == expected).mean() > 0.999
    x = X[:, cols].astype(np.float64)
    for node in range(9):
        here = nodes == node
        for b in range(3):
            rows = here & (batch == b)
            assert mom.counts[node, b] == rows.sum()
            if rows.sum() > 1:
                np.testing.assert_allclose(mom.mean[node, b], x[rows].mean(axis=0), atol=1e-9)
                np.testing.assert_allclose(mom.var[node, b], x[rows].var(axis=0), atol=1e-9)
        if here.any():
            np.testing.assert_array_equal(mom.lo[node], x[here].min(axis=0))
            np.testing.assert_array_equal(mom.hi[node], x[here].max(axis=0))


def test_nearest_aligned_is_the_same_for_a_row_in_any_block():
    # a BLAS product's rounding depends on the block's shape (it did here for float64 at
    # 1-3 rows); the node of an event must not, or a store's blocks would move events
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 1.0, size=(5_000, 7)).astype(np.float32)
    batch = rng.integers(0, 2, size=5_000)
    weights, offsets = aligned_weights(
        rng.uniform(0.7, 1.4, (2, 7)), rng.uniform(-0.5, 0.5, (2, 7)), rng.normal(size=(64, 7))
    )
    whole = nearest_aligned(x, batch, weights, offsets)
    for start, stop in [(0, 1), (3, 6), (17, 18), (100, 1_123), (4_999, 5_000)]:
        part = nearest_aligned(x[start:stop], batch[start:stop], weights, offsets)
        np.testing.assert_array_equal(part, whole[start:stop])
    # ties and near-ties resolved by the same float32 sums: the distances' argmin
    d2 = (x.astype(np.float64)[:, :, None] * weights[batch].astype(np.float64)).sum(axis=1)
    d2 += offsets[batch]
    assert (whole == d2.argmin(axis=1)).mean() > 0.999


def test_apply_affine_matches_numpy():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10_000, 5)).astype(np.float32)
    before = X.copy()
    cols = np.array([1, 2, 4])
    nodes = rng.integers(0, 4, size=10_000).astype(np.int32)
    batch = rng.integers(0, 2, size=10_000)
    slope = rng.uniform(0.5, 1.5, size=(8, 3))
    intercept = rng.uniform(-1, 1, size=(8, 3))
    lo, hi = np.full((4, 3), -1.0), np.full((4, 3), 1.5)
    change = apply_affine(X, cols, nodes, batch, slope, intercept, lo, hi)
    g = nodes * 2 + batch
    expected = np.clip(before[:, cols] * slope[g] + intercept[g], -1.0, 1.5)
    np.testing.assert_allclose(X[:, cols], expected, atol=1e-5)
    np.testing.assert_array_equal(X[:, [0, 3]], before[:, [0, 3]])
    for b in range(2):
        np.testing.assert_allclose(
            change[b], (expected - before[:, cols])[batch == b].sum(axis=0), rtol=1e-4
        )


def test_fit_cells_too_small_is_an_error():
    with pytest.raises(ItmeParameterError, match="fit_cells"):
        pp.correct_batch(_cohort(0, n=200), grid=(2, 2), fit_cells=10, rng=0)
