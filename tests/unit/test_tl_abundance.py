"""tl.abundance: samples x subsets counts, % of CD45+ events, derived features."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeExclusionWarning, ItmeStateError, ItmeStatisticsWarning
from itme.io import read_phenotypes

TABLE = read_phenotypes("lymphoid_visram2021")

# events per sample and subset (hand-made so every derived value can be computed by hand)
COUNTS = {
    "s1": {"T1": 30, "T6": 10, "T10": 10, "CD4 T other": 10, "T11": 20, "T16": 20, "TCRgd-1": 5,
           "NK-5": 15, "B": 30, "Monocytes": 40, "unassigned": 10},
    "s2": {"T2": 10, "T4": 20, "T11": 5, "T13": 5, "T18": 10, "B": 50, "Monocytes": 100},
}  # fmt: skip


def make_cells(counts=COUNTS):
    subset, sample = [], []
    for s, per in counts.items():
        for name, n in per.items():
            subset += [name] * n
            sample += [s] * n
    n = len(subset)
    adata = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.var_names = ["CD45"]
    adata.obs["sample_id"] = pd.Categorical(sample)
    adata.obs["patient_id"] = pd.Categorical(["p" + s[1:] for s in sample])
    adata.obs["timepoint"] = pd.Categorical(["baseline"] * n)
    adata.obs["subset"] = pd.Categorical(subset, categories=[*TABLE.subset_names, "unassigned"])
    adata.obs["metacluster"] = pd.Categorical(["1"] * n)
    adata.uns["subset"] = {"phenotypes": TABLE.text}
    return adata


def test_counts_percentages_and_sample_sheet():
    out = itme.tl.abundance(make_cells())
    assert list(out.obs_names) == ["s1", "s2"]
    assert list(out.var_names) == [*TABLE.subset_names, "unassigned"]
    counts = pd.DataFrame(out.layers["counts"], index=out.obs_names, columns=out.var_names)
    assert counts.loc["s1", "T1"] == 30 and counts.loc["s2", "Monocytes"] == 100
    assert counts.loc["s2", "T1"] == 0  # absent subsets are 0 columns, not missing
    np.testing.assert_allclose(out.X.sum(axis=1), 100.0)
    pct = pd.DataFrame(out.X, index=out.obs_names, columns=out.var_names)
    assert pct.loc["s1", "B"] == pytest.approx(
        30 / 200 * 100
    )  # unassigned/myeloid stay in the denominator
    assert list(out.obs["n_events"]) == [200, 200]
    assert list(out.obs["patient_id"]) == ["p1", "p2"]
    assert list(out.obs["timepoint"]) == ["baseline", "baseline"]
    assert "subset" not in out.obs and "metacluster" not in out.obs
    assert out.var.loc["T1", "lineage"] == "T_CD4" and out.var.loc["unassigned", "lineage"] == ""


def test_derived_features_by_hand():
    out = itme.tl.abundance(make_cells())
    d = out.obsm["derived"]
    # s1: CD4 = 30+10+10+10 = 60, CD8 = 40, gd = 5, of 200 events
    assert d.loc["s1", "T_cells"] == pytest.approx(105 / 200 * 100)
    assert d.loc["s1", "CD4_T"] == pytest.approx(30.0)
    assert d.loc["s1", "CD8_T"] == pytest.approx(20.0)
    assert d.loc["s1", "CD4_CD8_ratio"] == pytest.approx(60 / 40)
    assert d.loc["s1", "CD4_naive"] == pytest.approx(30 / 60 * 100)  # % of CD4 T cells (Fig. 4A)
    assert d.loc["s1", "CD4_central_memory"] == pytest.approx(10 / 60 * 100)
    assert d.loc["s1", "CD4_effector"] == pytest.approx(10 / 60 * 100)
    assert d.loc["s1", "CD8_effector"] == pytest.approx(50.0)
    assert d.loc["s1", "NK"] == pytest.approx(7.5)
    # s2: CD4 = 30 (T2 10 naive, T4 20 Tem), CD8 = 20 (T11 naive, T13 Tcm, T18 Tem)
    assert d.loc["s2", "CD4_CD8_ratio"] == pytest.approx(1.5)
    assert d.loc["s2", "CD8_naive"] == pytest.approx(25.0)
    assert d.loc["s2", "CD8_effector_memory"] == pytest.approx(50.0)
    defs = out.uns["abundance"]["derived"].set_index("feature")
    assert defs.loc["CD4_naive", "unit"] == "% of T_CD4"
    assert defs.loc["CD4_CD8_ratio", "kind"] == "ratio"


def test_empty_denominator_is_nan_with_warning():
    counts = {"s1": {"T1": 5, "B": 5}, "s2": {"T11": 4, "B": 6}}
    with pytest.warns(ItmeStatisticsWarning, match="CD4_CD8_ratio"):
        out = itme.tl.abundance(make_cells(counts))
    assert np.isnan(out.obsm["derived"].loc["s1", "CD4_CD8_ratio"])
    assert np.isnan(out.obsm["derived"].loc["s2", "CD4_naive"])


def test_qc_excluded_events_and_empty_samples():
    adata = make_cells()
    qc = np.array(["kept"] * adata.n_obs, dtype=object)
    qc[:20] = "doublet"
    adata.obs["itme_qc"] = pd.Categorical(qc)
    adata.obs["sample_id"] = adata.obs["sample_id"].cat.add_categories(["s3"])
    with pytest.warns(ItmeExclusionWarning) as record:
        out = itme.tl.abundance(adata)
    messages = " ".join(str(w.message) for w in record)
    assert "20 events" in messages and "s3" in messages
    assert out.obs.loc["s1", "n_events"] == 180
    assert list(out.uns["abundance"]["excluded_samples"]) == ["s3"]
    assert out.uns["abundance"]["excluded_events"] == 20


def test_metacluster_abundance_has_no_derived_features():
    out = itme.tl.abundance(make_cells(), groupby="metacluster")
    assert list(out.var_names) == ["1"]
    assert out.obsm["derived"].shape == (2, 0)


def test_h5ad_roundtrip(tmp_path):
    out = itme.tl.abundance(make_cells())
    out.write_h5ad(tmp_path / "patients.h5ad")
    back = ad.read_h5ad(tmp_path / "patients.h5ad")
    pd.testing.assert_frame_equal(back.obsm["derived"], out.obsm["derived"])
    np.testing.assert_array_equal(back.layers["counts"], out.layers["counts"])
    assert list(back.uns["abundance"]["derived"]["feature"]) == list(
        out.uns["abundance"]["derived"]["feature"]
    )


def test_missing_labels_is_a_state_error():
    adata = make_cells()
    del adata.obs["subset"]
    with pytest.raises(ItmeStateError, match="tl.annotate"):
        itme.tl.abundance(adata)
