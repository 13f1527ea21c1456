"""core.synthetic_cells: the labelled cell generator used by tests, benchmarks and the demo."""

from __future__ import annotations

import numpy as np
import pytest

from itme.datasets._cells import marker_levels, simulate_cells
from itme.errors import ItmeParameterError
from itme.io import read_phenotypes

TABLE = read_phenotypes("lymphoid_visram2021")
CHANNELS = ["CD45", "CD3", "CD4", "CD8", "CD19", "CD45RA", "CCR7", "CD57", "DNA1"]


def test_shapes_labels_and_proportions():
    rng = np.random.default_rng(0)
    X, labels = simulate_cells(TABLE, CHANNELS, 20_000, {"T1": 3, "T11": 1, "B": 1}, rng=rng)
    assert X.shape == (20_000, len(CHANNELS)) and X.dtype == np.float32
    assert (X >= 0).all()
    frac = {name: np.mean(labels == name) for name in ("T1", "T11", "B")}
    assert frac == pytest.approx({"T1": 0.6, "T11": 0.2, "B": 0.2}, abs=0.02)


def test_cells_follow_the_rules_on_the_arcsinh_scale():
    X, labels = simulate_cells(
        TABLE, CHANNELS, 5000, {"T1": 1, "T11": 1, "B": 1}, rng=np.random.default_rng(1)
    )
    v = np.arcsinh(X / 5)
    col = {c: i for i, c in enumerate(CHANNELS)}
    med = {name: np.median(v[labels == name], axis=0) for name in ("T1", "T11", "B")}
    for name in med:
        assert med[name][col["CD45"]] > 2.0  # background: every event is a leukocyte
        assert med[name][col["DNA1"]] < 1.0  # channels no rule mentions stay low
        for marker, state in TABLE.rules(name).items():
            if marker in col:
                assert (med[name][col[marker]] > 2.0) == (state == "hi"), (name, marker)


def test_same_rng_same_cells_and_levels_do_not_depend_on_rng():
    a = simulate_cells(TABLE, CHANNELS, 500, None, rng=np.random.default_rng(7))
    b = simulate_cells(TABLE, CHANNELS, 500, None, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # two patients simulated with different generators share the phenotype of a subset
    p1, l1 = simulate_cells(TABLE, CHANNELS, 4000, {"T1": 1}, rng=np.random.default_rng(1))
    p2, l2 = simulate_cells(TABLE, CHANNELS, 4000, {"T1": 1}, rng=np.random.default_rng(2))
    np.testing.assert_allclose(
        np.median(np.arcsinh(p1 / 5), 0), np.median(np.arcsinh(p2 / 5), 0), atol=0.05
    )
    lo, hi = marker_levels("CD3")
    assert 0 < lo < 1 < 2 < hi


def test_unknown_subset_is_an_error():
    with pytest.raises(ItmeParameterError, match="T99"):
        simulate_cells(TABLE, CHANNELS, 10, {"T99": 1.0}, rng=np.random.default_rng(0))
