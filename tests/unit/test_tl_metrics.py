"""F1 with Hungarian matching (Weber & Robinson 2016) and cluster merging."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers.metrics import f1_hungarian

from itme.core.cluster.merge import median_cluster_size, merge_small_clusters
from itme.errors import ItmeParameterError


def _brute_force_mean_f1(truth, clusters):
    """Independent reference: best one-to-one matching by trying every assignment."""
    pops, clus = sorted(set(truth)), sorted(set(clusters))
    truth, clusters = np.asarray(truth), np.asarray(clusters)

    def f1(p, c):
        tp = np.sum((truth == p) & (clusters == c))
        return 0.0 if tp == 0 else 2 * tp / (np.sum(truth == p) + np.sum(clusters == c))

    best = 0.0
    slots = clus + [None] * len(pops)
    for perm in itertools.permutations(slots, len(pops)):
        used = [c for c in perm if c is not None]
        if len(used) != len(set(used)):
            continue
        total = sum(f1(p, c) for p, c in zip(pops, perm, strict=True) if c is not None)
        best = max(best, total / len(pops))
    return best


def test_perfect_clustering_scores_one_whatever_the_names():
    truth = np.repeat(["a", "b", "c"], [5, 3, 2])
    clusters = np.repeat(["7", "1", "4"], [5, 3, 2])
    mean, table = f1_hungarian(truth, clusters)
    assert mean == 1.0
    assert dict(zip(table["population"], table["cluster"], strict=True)) == {
        "a": "7",
        "b": "1",
        "c": "4",
    }


def test_hand_computed_example():
    # a: 4 events, 3 in cluster x and 1 in y; b: 4 events, all in y (y = 1 a + 4 b)
    truth = ["a"] * 4 + ["b"] * 4
    clusters = ["x"] * 3 + ["y"] * 5
    mean, table = f1_hungarian(truth, clusters)
    f_a = 2 * 3 / (4 + 3)  # precision 1, recall 3/4
    f_b = 2 * 4 / (4 + 5)  # precision 4/5, recall 1
    assert table.set_index("population")["F1"].to_dict() == pytest.approx({"a": f_a, "b": f_b})
    assert mean == pytest.approx((f_a + f_b) / 2)


def test_unmatched_population_scores_zero_and_unlabeled_is_ignored():
    truth = ["a"] * 3 + ["b"] * 3 + ["Unlabeled"] * 10
    clusters = ["1"] * 6 + ["2"] * 10
    mean, table = f1_hungarian(truth, clusters)
    assert set(table["population"]) == {"a", "b"}
    assert sorted(table["F1"]) == pytest.approx([0.0, 2 * 3 / (3 + 6)])
    assert mean == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = rng.choice(list("abcd"), size=200)
    clusters = np.where(rng.random(200) < 0.7, truth, rng.choice(list("pqrs"), size=200))
    clusters = np.char.add("c", clusters.astype(str))
    assert f1_hungarian(truth, clusters)[0] == pytest.approx(_brute_force_mean_f1(truth, clusters))


def test_length_mismatch():
    with pytest.raises(ItmeParameterError, match="one per event"):
        f1_hungarian(["a", "b"], ["1"])


def test_median_cluster_size():
    counts = np.array([[90, 10, 0], [50, 40, 10], [80, 15, 5]])
    # % per sample: [90,10,0], [50,40,10], [80,15,5] -> medians 80, 15, 5
    assert median_cluster_size(counts) == pytest.approx([80, 15, 5])


def test_merge_until_floor_into_nearest_centroid():
    counts = np.array([[900, 80, 15, 5], [850, 100, 40, 10], [880, 90, 25, 5]])
    centroids = np.array([[0.0, 0.0], [5.0, 5.0], [5.5, 5.0], [0.2, 0.0]])
    mapping, merges = merge_small_clusters(counts, centroids, floor=2.0, names=list("ABCD"))
    # D (median 0.5 %) goes to A (nearest), then C (2.5 %) stays: floor reached
    assert list(merges["cluster"]) == ["D"]
    assert list(merges["into"]) == ["A"]
    assert merges.loc[0, "median_pct"] == pytest.approx(0.5)
    assert mapping.tolist() == [0, 1, 2, 0]
    mapping, merges = merge_small_clusters(counts, centroids, floor=3.0, names=list("ABCD"))
    assert list(zip(merges["cluster"], merges["into"], strict=True)) == [("D", "A"), ("C", "B")]
    assert mapping.tolist() == [0, 1, 1, 0]
    merged = np.stack(
        [counts[:, mapping == g].sum(axis=1) for g in range(mapping.max() + 1)], axis=1
    )
    assert median_cluster_size(merged).min() >= 3.0


def test_no_merge_at_zero_floor():
    counts = np.array([[5, 1, 0]])
    mapping, merges = merge_small_clusters(counts, np.eye(3), floor=0.0)
    assert mapping.tolist() == [0, 1, 2]
    assert merges.empty


def test_merge_rejects_bad_floor():
    with pytest.raises(ItmeParameterError, match="floor"):
        merge_small_clusters(np.ones((1, 2)), np.eye(2), floor=-1)
