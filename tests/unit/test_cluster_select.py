"""Exact per-group medians by histogram passes (itme.core.cluster.select) = group_medians."""

from __future__ import annotations

import numpy as np
import pytest

from itme.core.cluster.codebook import group_medians
from itme.core.cluster.select import (
    NARROW,
    WIDE,
    GroupSelection,
    digit_widths,
    group_counts,
    histogram_block,
    regroup_histogram,
    select_medians,
)


def _same(found: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, NaN where expected; the same bits except the sign of a zero."""
    np.testing.assert_array_equal(found, expected)
    bits = ~np.isnan(expected) & (expected != 0)
    np.testing.assert_array_equal(found.view(np.int64)[bits], expected.view(np.int64)[bits])


def _values(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    X = rng.normal(size=(n, 6)).astype(dtype)
    X[:, 0] = np.round(X[:, 0])  # ties
    X[rng.random((n, 6)) < 0.25] = 0.0
    X[rng.random((n, 6)) < 0.05] = -0.0
    X[:, 1] = -np.abs(X[:, 1])  # negative and zero only
    X[rng.random(n) < 0.01, 2] = np.nan
    X[:, 3] = np.where(rng.random(n) < 0.5, X[:, 3] * 1e30, X[:, 3] * 1e-40)
    X[rng.random(n) < 0.05, 4] = np.inf
    X[rng.random(n) < 0.05, 4] = -np.inf
    return X


@pytest.mark.parametrize("collect", [-1, 10**9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("block_rows", [None, 1, 7])
@pytest.mark.parametrize("narrow", [False, True])
def test_select_medians_equal_group_medians(dtype, block_rows, narrow, collect):
    # histogram passes only, or the keys collected in the second pass
    rng = np.random.default_rng()  # any seed
    for _ in range(4):
        n = int(rng.integers(0, 120))
        n_groups = int(rng.integers(1, 7))
        X = _values(rng, n, np.float32)
        if np.dtype(dtype).kind == "i":  # integers: selected as float64, as np.median does
            X = np.nan_to_num(np.clip(X * 1000, -30000, 30000)).astype(dtype)
        else:
            X = X.astype(dtype)
        labels = rng.integers(-1, n_groups + 1, size=n)  # -1 and n_groups: left out
        n_bits = 32 if np.dtype(dtype) == np.float32 else 64
        widths = NARROW[n_bits] if narrow else None
        found = select_medians(
            X, labels, n_groups, block_rows=block_rows, widths=widths, collect_bytes=collect
        )
        with np.errstate(invalid="ignore"):  # np.median of -inf and +inf: NaN, warned
            expected = group_medians(X, labels, n_groups)
        _same(found, expected)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 1000, 1001])
def test_select_medians_odd_and_even_counts_of_one_group(n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1])  # the two middle values often equal
    X[:, 2] = rng.choice(np.array([-1.0, 0.1, 7.25], dtype=np.float32), size=n)
    labels = np.zeros(n, dtype=np.int8)
    _same(
        select_medians(X, labels, 1, columns=np.array([2, 0, 1])),
        group_medians(X[:, [2, 0, 1]], labels, 1),
    )


def test_even_median_is_the_float64_mean_of_the_two_middle_values():
    # 16777217 is not a float32; (a + b) / 2 in float64 of the two float32 middle values
    X = np.array([[16777216.0], [16777218.0], [-3.0], [1e38]], dtype=np.float32)
    found = select_medians(X, np.zeros(4, dtype=int), 1)
    assert found[0, 0] == (16777216.0 + 16777218.0) / 2 == np.median(X.astype(np.float64))
    ends = np.array([[-np.inf], [np.inf]], dtype=np.float32)  # as np.median: NaN
    assert np.isnan(select_medians(ends, np.zeros(2, dtype=int), 1)).all()


def test_a_column_with_nan_and_empty_groups_give_nan():
    X = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, 6.0]], dtype=np.float32)
    found = select_medians(X, np.array([0, 0, 2]), 3)
    np.testing.assert_array_equal(found, [[1.5, np.nan], [np.nan, np.nan], [3.0, 6.0]])


def test_digit_widths_keep_the_block_histogram_small():
    assert digit_widths(32, 40 * 36) == WIDE[32]  # 40 x 36 x 2,048 x 4 B = 11.8 MB
    assert digit_widths(32, 100 * 47) == NARROW[32]  # 38.5 MB wide: 256 bins instead
    assert sum(WIDE[64]) == sum(NARROW[64]) == 64 and sum(WIDE[32]) == sum(NARROW[32]) == 32


def test_selection_passes_and_their_histograms():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 2)).astype(np.float32)
    labels = rng.integers(0, 3, size=500)
    sel = GroupSelection(group_counts(labels, 3), 2, X.dtype, widths=NARROW[32])
    with pytest.raises(RuntimeError, match="4 selection passes left"):
        sel.medians()
    rows = []
    while not sel.done:
        step = sel.step()
        rows.append(step.n_rows)
        sel.update(histogram_block(X, labels, np.arange(2), step))
    # first pass: one histogram per (group, column); then at most one per target
    assert rows[0] == 6 and all(6 <= r <= 12 for r in rows[1:]) and len(rows) == 4
    _same(sel.medians(), group_medians(X, labels, 3))


@pytest.mark.parametrize("part", [None, 1, 4])
def test_group_counts_leave_out_labels_outside_the_groups(part, monkeypatch):
    from itme.core.cluster import select

    if part is not None:
        monkeypatch.setattr(select, "PART_EVENTS", part)
    labels = np.array([-1, 0, 2, 2, 3, 7, 2], dtype=np.int8)
    np.testing.assert_array_equal(group_counts(labels, 3), [1, 0, 3])


@pytest.mark.parametrize("part", [None, 1, 4, 7, 1000])
def test_counts_with_a_mask_and_of_pairs_in_parts_equal_bincount(part, monkeypatch):
    from itme.core.cluster import select

    if part is not None:
        monkeypatch.setattr(select, "PART_EVENTS", part)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=997).astype(np.int16)
    b = rng.integers(0, 3, size=997).astype(np.int8)
    mask = rng.random(997) < 0.7
    np.testing.assert_array_equal(
        select.group_counts(a, 5, mask=mask), np.bincount(a[mask], minlength=5)
    )
    expected = np.zeros((5, 3), dtype=np.int64)
    np.add.at(expected, (a[mask], b[mask]), 1)
    np.testing.assert_array_equal(select.cross_counts(a, 5, b, 3, mask=mask), expected)
    np.testing.assert_array_equal(
        select.cross_counts(a, 5, b, 3).sum(axis=1), np.bincount(a, minlength=5)
    )


@pytest.mark.parametrize("narrow", [False, True])
def test_a_collecting_pass_ends_the_selection_when_the_keys_fit(narrow, monkeypatch):
    from itme.core.cluster import select

    rng = np.random.default_rng(6)
    X = _values(rng, 5000, np.float32)
    labels = rng.integers(-1, 4, size=5000)
    widths = NARROW[32] if narrow else WIDE[32]
    calls = {"histogram_block": 0, "candidates_block": 0}
    for name in calls:
        kernel = getattr(select, name)
        monkeypatch.setattr(
            select, name, lambda *a, k=kernel, n=name: calls.__setitem__(n, calls[n] + 1) or k(*a)
        )
    sel = GroupSelection(group_counts(labels, 4), 6, X.dtype, widths=widths)
    assert not sel.collects(10**9)  # nothing known before the first pass
    sel.update(select.histogram_block(X, labels, np.arange(6), sel.step()))
    own = sel.inside[sel._own()].sum()  # the values sharing a target's prefix
    assert 0 < own < 6 * 5000 and sel.collects(own * 4) and not sel.collects(own * 4 - 1)
    # the keys fit after the first pass: collected in the second; one byte less: after the
    # second pass (8-bit digits: 3 passes instead of 4), or not at all (11/11/10: the last
    # pass is a histogram)
    for budget, passes, collected in ((own * 4, 2, 1), (own * 4 - 1, 3, int(narrow))):
        calls.update(histogram_block=0, candidates_block=0)
        found = select.select_medians(X, labels, 4, widths=widths, collect_bytes=budget)
        assert calls["candidates_block"] == collected
        assert calls["histogram_block"] + calls["candidates_block"] == passes
        _same(found, group_medians(X, labels, 4))
    # no collecting pass when one histogram pass is left: it would not save a pass
    sel = GroupSelection(group_counts(labels, 4), 6, X.dtype, widths=(16, 16))
    sel.update(select.histogram_block(X, labels, np.arange(6), sel.step()))
    assert not sel.collects(10**9)


def test_collected_keys_that_disagree_with_the_histogram_are_an_error():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    labels = rng.integers(0, 2, size=300)
    from itme.core.cluster.select import candidates_block

    sel = GroupSelection(group_counts(labels, 2), 2, X.dtype)
    sel.update(histogram_block(X, labels, np.arange(2), sel.step()))
    step = sel.step(collect=True)
    with pytest.raises(RuntimeError, match="fewer keys"):  # a block missing
        sel.take([candidates_block(X[:100], labels[:100], np.arange(2), step)])
    with pytest.raises(RuntimeError, match="more keys"):  # a block twice
        sel.take([candidates_block(X, labels, np.arange(2), step)] * 2)


@pytest.mark.parametrize("part", [None, 7, 1000])
def test_first_pass_of_merged_groups_is_the_sum_of_theirs(part, monkeypatch):
    from itme.core.cluster import select

    if part is not None:  # the events in parts (bounded copies): the same results
        monkeypatch.setattr(select, "PART_EVENTS", part)
    rng = np.random.default_rng(9)
    X = _values(rng, 2000, np.float32)
    labels = rng.integers(-1, 5, size=2000)
    cols = np.arange(6)
    step = GroupSelection(group_counts(labels, 5), 6, X.dtype).step()
    hist = histogram_block(X, labels, cols, step).reshape(5, 6, -1)
    merged = np.array([1, -1, 0, 1, 3])[np.where(labels >= 0, labels, 0)]
    merged[labels < 0] = -1  # left out in both
    positions = np.array([4, 0, 2])
    found = regroup_histogram(hist, labels, merged, 4, positions)
    fresh = GroupSelection(group_counts(merged, 4), 3, X.dtype).step()
    expected = histogram_block(X, merged, positions, fresh)
    np.testing.assert_array_equal(found, expected)
    assert found[2 * 3 : 3 * 3].sum() == 0 < found[3 * 3 :].sum()  # group 2 holds none
    # a group split, or an event left out before and counted now: not derivable
    split = labels.copy()
    split[(labels == 2) & (rng.random(2000) < 0.5)] = 3
    assert regroup_histogram(hist, labels, split, 5, positions) is None
    assert regroup_histogram(hist, labels, np.maximum(merged, 0), 4, positions) is None
