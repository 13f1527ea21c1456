"""pp.correct_drift: signal loss over a file's acquisition time, found and removed."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import pp
from itme.datasets._cells import apply_run_effects
from itme.errors import ItmeInputError, ItmeStateError

MARKERS = ["CD3", "CD4", "CD8", "CD19", "CD56"]


def _files(seed: int, drifts: dict[str, float], n: int = 6000) -> ad.AnnData:
    """One file per entry; each loses ``drift`` of its signal from its first to its last event."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for sample, drift in drifts.items():
        pos = rng.random((n, len(MARKERS))) < 0.4
        v = np.where(pos, rng.normal(3.2, 0.4, pos.shape), rng.normal(0.3, 0.3, pos.shape))
        raw = 5 * np.sinh(np.maximum(v, 0))
        t = np.sort(rng.uniform(0, 1, n))
        blocks.append(apply_run_effects(raw, drift=drift, time=t))
        obs.append(pd.DataFrame({"sample_id": sample, "time": t * 1e5}))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    raw = np.vstack(blocks).astype(np.float32)
    adata = ad.AnnData(
        np.arcsinh(raw / 5).astype(np.float32),
        obs=obs,
        var=pd.DataFrame({"marker_class": "type"}, index=MARKERS),
        layers={"raw": raw},
    )
    adata.uns["arcsinh"] = {"cofactor": np.full(len(MARKERS), 5.0), "channels": MARKERS}
    return adata


def _trend(adata: ad.AnnData, sample: str) -> float:
    """Positive-event median of the last tenth of a file minus that of its first tenth."""
    rows = (adata.obs["sample_id"] == sample).to_numpy()
    x = adata.X[rows][:, 0]
    t = adata.obs["time"].to_numpy()[rows]
    first, last = t < np.quantile(t, 0.1), t > np.quantile(t, 0.9)
    return float(np.median(x[last & (x > 1.8)]) - np.median(x[first & (x > 1.8)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drift_found_and_removed(seed):
    adata = _files(seed, {"flat": 0.0, "mild": 0.3, "strong": 0.5})
    assert _trend(adata, "strong") < -0.5
    pp.correct_drift(adata, time_key="time")
    table = adata.uns["drift"]["samples"].set_index("sample_id")
    assert table.loc["flat", "drift"] < 0.05
    assert not table.loc["flat", "corrected"]
    assert table.loc["mild", "drift"] == pytest.approx(0.3, abs=0.07)
    assert table.loc["strong", "drift"] == pytest.approx(0.5, abs=0.07)
    assert table["corrected"].sum() == 2
    for sample in ("flat", "mild", "strong"):
        assert abs(_trend(adata, sample)) < 0.08
    # the file's mean level stays: its middle is where it was
    assert table.loc["strong", "n_markers_used"] == len(MARKERS)


def test_flat_files_are_left_alone():
    adata = _files(4, {"a": 0.0, "b": 0.0})
    x0 = adata.X.copy()
    pp.correct_drift(adata, time_key="time")
    np.testing.assert_array_equal(adata.X, x0)


def test_drift_errors():
    adata = _files(0, {"a": 0.2})
    with pytest.raises(ItmeInputError, match="time_key='Time'"):
        pp.correct_drift(adata)
    pp.correct_drift(adata, time_key="time")
    with pytest.raises(ItmeStateError, match="drift-corrected already"):
        pp.correct_drift(adata, time_key="time")
