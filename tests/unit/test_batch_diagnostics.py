"""tl.batch_diagnostics, tl.cluster_batch_association and their figures on tiny inline data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import pl, tl
from itme.core.batch.diagnostics import batch_r2, label_share
from itme.errors import ItmeInputError, ItmeStatisticsWarning

MARKERS = ["CD3", "CD4", "CD19"]


def _cells(
    seed: int, shift: float, n_samples: int = 12, n: int = 300, drop_b_in: str | None = None
):
    """Samples in batches R1–R3; batch R2 shifted by ``shift`` on every marker."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for s in range(n_samples):
        batch = f"R{1 + s % 3}"
        x = rng.normal([3.0, 2.0, 0.5], 0.4, size=(n, 3)) + rng.normal(0, 0.05, 3)
        if batch == "R2":
            x += shift
        labels = np.where(rng.random(n) < 0.3, "B", "T")
        if drop_b_in == batch:
            labels[:] = "T"
        blocks.append(x)
        obs.append(pd.DataFrame({"sample_id": f"S{s:02d}", "batch": batch, "subset": labels}))
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    var = pd.DataFrame({"marker_class": "type"}, index=MARKERS)
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var)


def test_batch_r2_matches_anova_share():
    M = np.array([[1.0], [2.0], [5.0], [6.0]])
    r2, overall = batch_r2(M, np.array([0, 0, 1, 1]))
    # between SS = 4 * 2^2 = 16, total SS = 2.25 + 0.25 ... = 17
    assert r2[0] == pytest.approx(16 / 17)
    assert overall == pytest.approx(16 / 17)


def test_label_share_ratio_flags_a_missing_label():
    share, ratio = label_share(np.array([[10, 10, 0], [90, 90, 100]]))
    np.testing.assert_allclose(share.sum(axis=0), 1)
    assert ratio[0] == 0
    assert ratio[1] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_batch_effect_no_warning(seed, recwarn):
    adata = _cells(seed, shift=0.0)
    res = tl.batch_diagnostics(adata, n_perm=199, rng=seed)
    assert res["r2"] < 0.4
    assert res["pvalue"] > 0.01
    assert res["flags"] == []
    assert not [w for w in recwarn if issubclass(w.category, ItmeStatisticsWarning)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shifted_batch_is_seen_and_warned(seed):
    adata = _cells(seed, shift=0.4)
    with pytest.warns(ItmeStatisticsWarning, match="batch explains"):
        res = tl.batch_diagnostics(adata, n_perm=199, rng=seed)
    assert res["r2"] > 0.8
    assert res["pvalue"] < 0.01
    pcs = res["pca"].groupby("batch")["PC1"].mean()
    assert abs(pcs["R2"] - pcs["R1"]) > 2 * abs(pcs["R1"] - pcs["R3"])
    assert adata.uns["batch_diagnostics"]["seed"] == seed
    assert pl.batch_mds(adata).axes


def test_label_missing_from_one_batch_is_warned():
    adata = _cells(0, shift=0.0, drop_b_in="R3")
    with pytest.warns(ItmeStatisticsWarning, match="subset 'B'.*batch R3"):
        res = tl.batch_diagnostics(adata, n_perm=99, rng=0)
    ratio = res["label_share"].set_index("label")["ratio"]
    assert ratio["B"] == 0
    assert ratio["T"] > 0.9
    assert pl.batch_labels(adata).axes


def test_cluster_batch_association():
    obs = pd.DataFrame(
        {"itme_cluster": ["1"] * 10 + ["2"] * 10, "batch": ["R1"] * 9 + ["R2"] * 11},
        index=[f"S{i}" for i in range(20)],
    )
    patients = ad.AnnData(np.zeros((20, 1)), obs=obs)
    with pytest.warns(ItmeStatisticsWarning, match="associated with batch"):
        res = tl.cluster_batch_association(patients)
    assert res["pvalue"] < 0.01
    assert res["cramers_v"] > 0.7
    mixed = patients.copy()
    mixed.obs["batch"] = ["R1", "R2"] * 10
    res = tl.cluster_batch_association(mixed)
    assert res["pvalue"] > 0.5
    with pytest.raises(ItmeInputError, match="obs\\['run'\\]"):
        tl.cluster_batch_association(patients, batch_key="run")


def test_diagnostics_survive_h5ad(tmp_path):
    adata = _cells(1, shift=0.0)
    tl.batch_diagnostics(adata, n_perm=19, rng=1)
    tl.cluster_batch_association(
        ad.AnnData(
            np.zeros((4, 1)),
            obs=pd.DataFrame(
                {"itme_cluster": ["1", "1", "2", "2"], "batch": ["a", "b", "a", "b"]},
                index=list("wxyz"),
            ),
        )
    )
    adata.write_h5ad(tmp_path / "c.h5ad")
    back = ad.read_h5ad(tmp_path / "c.h5ad")
    res = back.uns["batch_diagnostics"]
    assert res["r2"] == pytest.approx(adata.uns["batch_diagnostics"]["r2"])
    pd.testing.assert_frame_equal(
        res["pca"].reset_index(drop=True),
        adata.uns["batch_diagnostics"]["pca"].reset_index(drop=True),
        check_dtype=False,
    )


@pytest.mark.parametrize(
    "codes",
    [
        np.repeat(np.array([3, 1, 0, 4], dtype=np.int8), [5, 1, 7, 2]),  # in runs: ranges
        np.array([2, 2, 0, 0, 2, -1, 1], dtype=np.int8),  # code 2 in two runs, a missing one
        np.random.default_rng(0).integers(0, 5, 400).astype(np.int16),  # not in runs
        np.zeros(0, dtype=np.int8),
    ],
    ids=["runs", "split", "shuffled", "empty"],
)
def test_rows_by_code_are_the_rows_of_each_code(codes):
    from itme.tl._batch_diagnostics import _rows_by_code

    found = list(_rows_by_code(codes, 6))  # code 5 (and 2 or 4 in some) holds no event
    assert len(found) == 6
    for i, rows in enumerate(found):
        np.testing.assert_array_equal(rows, np.flatnonzero(codes == i))
