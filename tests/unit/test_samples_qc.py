"""Sample-level QC: failed samples excluded (or flagged) with their reason, never silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from itme import pp
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError, ItmeStateError


def cells(events_in, events_out):
    """Events of samples S0.. with the accounting pp.clean writes (kept events only)."""
    ids = [f"S{i}" for i in range(len(events_in))]
    n = np.asarray(events_out)
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(np.repeat(ids, n), categories=ids),
            "patient_id": pd.Categorical(np.repeat([f"P{i}" for i in range(len(ids))], n)),
            "itme_qc": pd.Categorical(["kept"] * int(n.sum())),
        }
    )
    obs.index = obs.index.astype(str)
    adata = AnnData(X=np.zeros((int(n.sum()), 2), np.float32), obs=obs)
    adata.uns["qc"] = {
        "accounting": pd.DataFrame(
            {"sample_id": ids, "events_in": events_in, "events_out": events_out}
        )
    }
    return adata


def test_failed_samples_are_excluded_with_reason():
    adata = cells([3000, 1050, 900, 3000], [2400, 300, 600, 1400])
    with pytest.warns(ItmeExclusionWarning, match=r"2 of 4 sample\(s\) failed .* excluded"):
        pp.sample_qc(adata)
    table = adata.uns["sample_qc"].set_index("sample_id")
    assert list(table["status"]) == ["pass", "excluded", "pass", "excluded"]
    # S1: 300 cells and 28.6 % (both rules); S3: 46.7 % kept only
    assert table.at["S1", "reason"] == (
        "300 events kept < min_cells 500; 28.6 % kept < min_fraction_kept 50 %"
    )
    assert table.at["S3", "reason"] == "46.7 % kept < min_fraction_kept 50 %"
    assert table.at["S2", "fraction_kept"] == pytest.approx(600 / 900, abs=1e-4)
    out = pp.exclude_samples(adata)
    assert list(out.obs["sample_id"].cat.categories) == ["S0", "S2"]
    assert list(out.obs["patient_id"].cat.categories) == ["P0", "P2"]
    assert out.n_obs == 2400 + 600


def test_flag_keeps_failed_samples():
    adata = cells([3000, 1000], [2400, 200])
    with pytest.warns(ItmeExclusionWarning, match="kept and flagged: S1"):
        pp.sample_qc(adata, on_fail="flag")
    assert list(adata.uns["sample_qc"]["status"]) == ["pass", "flagged"]
    assert pp.exclude_samples(adata).n_obs == adata.n_obs


def test_thresholds_are_inclusive_and_configurable():
    adata = cells([1000, 1000], [500, 499])
    with pytest.warns(ItmeExclusionWarning, match="S1"):
        pp.sample_qc(adata)  # 500 events and exactly 50 % pass; 499 fails both
    assert list(adata.uns["sample_qc"]["status"]) == ["pass", "excluded"]
    pp.sample_qc(adata, min_cells=100, min_fraction_kept=0.4)
    assert set(adata.uns["sample_qc"]["status"]) == {"pass"}


def test_bad_uses_are_errors():
    with pytest.raises(ItmeInputError, match="every sample failed sample-level QC: S0: 10 events"):
        pp.sample_qc(cells([100], [10]))
    with pytest.raises(ItmeParameterError, match="min_fraction_kept"):
        pp.sample_qc(cells([100], [90]), min_fraction_kept=50)
    with pytest.raises(ItmeParameterError, match="on_fail"):
        pp.sample_qc(cells([100], [90]), on_fail="drop")
    bare = cells([100], [90])
    del bare.uns["qc"]
    with pytest.raises(ItmeStateError, match="run itme.pp.clean first"):
        pp.sample_qc(bare)
    with pytest.raises(ItmeStateError, match="run itme.pp.sample_qc first"):
        pp.exclude_samples(bare)
