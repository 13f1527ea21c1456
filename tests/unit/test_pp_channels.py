"""pp.split_channels / pp.join_channels: scanpy's layout (markers only in X) and back."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeParameterError, ItmeStateError


def make_cells(n: int = 600, seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """Two populations on CD3/CD19 (type) and CD69 (state); Time, DNA1 and Event_length
    carry no population signal, Time spans 10^5 (acquisition order)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    raw = np.column_stack(
        [
            np.sort(rng.uniform(0, 6e5, n)),  # Time, the order of acquisition
            rng.gamma(20, 20, n),  # Event_length
            rng.lognormal(6, 0.3, n),  # DNA1
            np.where(truth == 0, 400, 5) * rng.lognormal(0, 0.3, n),  # CD3
            np.where(truth == 1, 400, 5) * rng.lognormal(0, 0.3, n),  # CD19
            rng.lognormal(2, 0.5, n),  # CD69
        ]
    ).astype(np.float32)
    adata = ad.AnnData(raw)
    adata.var_names = ["Time", "Event_length", "DNA1", "CD3", "CD19", "CD69"]
    adata.var["channel"] = ["Time", "Event_length", "Ir191Di", "Sm154Di", "Nd142Di", "Dy161Di"]
    adata.var["marker_class"] = pd.Categorical(
        ["none", "qc", "qc", "type", "type", "state"], categories=["type", "state", "qc", "none"]
    )
    adata.obs_names = [f"e{i}" for i in range(n)]
    itme.pp.arcsinh(adata)
    return adata, truth


def test_split_keeps_markers_in_x_and_the_rest_event_by_event():
    cells, _ = make_cells()
    split = itme.pp.split_channels(cells)
    assert list(split.var_names) == ["CD3", "CD19", "CD69"]
    np.testing.assert_array_equal(split.X, cells[:, ["CD3", "CD19", "CD69"]].X)
    np.testing.assert_array_equal(
        split.layers["raw"], cells[:, ["CD3", "CD19", "CD69"]].layers["raw"]
    )
    other = split.obsm["other_channels"]
    assert list(other.columns) == ["Time", "Event_length", "DNA1"]
    # the moved channels keep their X values: untransformed here (pp.arcsinh transforms the
    # markers only), CD69 would be on the arcsinh scale
    np.testing.assert_array_equal(other["Time"].to_numpy(), cells[:, "Time"].X.ravel())
    np.testing.assert_array_equal(other["DNA1"].to_numpy(), cells[:, "DNA1"].X.ravel())
    np.testing.assert_array_equal(
        split.obsm["other_channels_raw"]["DNA1"].to_numpy(), cells[:, "DNA1"].layers["raw"].ravel()
    )
    assert list(split.uns["other_channels"]["var"]["marker_class"]) == ["none", "qc", "qc"]
    assert "other_channels" not in cells.uns  # the input is not modified


def test_join_restores_the_original_layout_through_h5ad(tmp_path):
    cells, _ = make_cells()
    split = itme.pp.split_channels(cells)
    split.write_h5ad(tmp_path / "cells.h5ad")
    back = itme.pp.join_channels(ad.read_h5ad(tmp_path / "cells.h5ad"))
    assert list(back.var_names) == list(cells.var_names)
    np.testing.assert_array_equal(back.X, cells.X)
    np.testing.assert_array_equal(back.layers["raw"], cells.layers["raw"])
    pd.testing.assert_frame_equal(back.var, cells.var)
    assert "other_channels" not in back.obsm and "other_channels" not in back.uns
    # the joined cells have their DNA channel again: pp.clean can find it
    assert back.var.loc["DNA1", "channel"] == "Ir191Di"


def test_scanpy_neighbours_follow_the_markers_only_after_the_split():
    import scanpy as sc

    cells, truth = make_cells()

    def mixed_neighbours(adata: ad.AnnData) -> float:
        sc.pp.neighbors(adata, n_neighbors=10, random_state=0)
        g = adata.obsp["distances"].tocoo()
        return float(np.mean(truth[g.row] != truth[g.col]))

    # with Time in X the neighbours are the events acquired at the same moment
    assert mixed_neighbours(cells.copy()) > 0.3
    assert mixed_neighbours(itme.pp.split_channels(cells)) == 0.0


def test_split_errors():
    cells, _ = make_cells(n=20)
    with pytest.raises(ItmeParameterError, match="keep"):
        itme.pp.split_channels(cells, keep=["CD99"])
    split = itme.pp.split_channels(cells, keep=["CD3", "CD19"])
    assert list(split.obsm["other_channels"].columns) == ["Time", "Event_length", "DNA1", "CD69"]
    with pytest.raises(ItmeStateError, match="split already"):
        itme.pp.split_channels(split)
    with pytest.raises(ItmeStateError, match="not split"):
        itme.pp.join_channels(cells)
