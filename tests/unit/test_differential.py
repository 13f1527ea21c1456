"""stats.differential_abundance (NB GLM, binomial GLMM) and stats.differential_state (LMM/OLS).

Simulated paired cohorts: each patient has its own composition (a strong patient effect) and
two samples, conditions A and B. Planted DA: subset s0 up by ``fc`` and s1 down by ``2 - fc``
from equal proportions, so the total is unchanged and the other subsets are exact nulls.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.h5ad import roundtrip

import itme
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError

CONTRAST = ("condition", "B", "A")


def paired_counts(seed, fc=1.0, n_patients=8, n_subsets=8, cells=2000, patient_sd=0.5):
    rng = np.random.default_rng(seed)
    base = np.log(rng.dirichlet(np.full(n_subsets, 5.0)))
    base[1] = base[0]
    pat = rng.normal(0, patient_sd, (n_patients, n_subsets))
    pat[:, 1] = pat[:, 0]
    rows, counts = [], []
    for p in range(n_patients):
        for c in ("A", "B"):
            eta = base + pat[p] + rng.normal(0, 0.15, n_subsets)
            if c == "B":
                eta[0] += np.log(fc)
                eta[1] += np.log(2 - fc)
            pr = np.exp(eta) / np.exp(eta).sum()
            counts.append(rng.multinomial(cells, pr))
            rows.append((f"p{p}{c}", f"p{p}", c))
    obs = pd.DataFrame(rows, columns=["sample_id", "patient_id", "condition"])
    adata = ad.AnnData(np.zeros((len(obs), n_subsets)), obs=obs.set_index("sample_id"))
    adata.var_names = [f"s{j}" for j in range(n_subsets)]
    adata.layers["counts"] = np.array(counts)
    return adata


def _calls(adata, formula):
    res = itme.stats.differential_abundance(adata, formula=formula, contrast=CONTRAST)
    return set(res.loc[res["padj"] < 0.05, "subset"]), res.set_index("subset")


def test_da_nb_paired_finds_planted_and_beats_unpaired():
    found = {"paired": 0, "unpaired": 0}
    false = 0
    for seed in range(6):
        adata = paired_counts(seed, fc=1.5)
        for design, formula in (
            ("paired", "~ condition + patient_id"),
            ("unpaired", "~ condition"),
        ):
            sig, res = _calls(adata, formula)
            found[design] += len(sig & {"s0", "s1"})
            if design == "paired":
                false += len(sig - {"s0", "s1"})
                assert res.loc["s0", "logFC"] > 0.25 and res.loc["s1", "logFC"] < -0.4
    assert found["paired"] >= 11  # of 12 planted calls over 6 seeds
    assert found["paired"] > found["unpaired"] + 4
    assert false <= 2  # of 36 null subsets over 6 seeds
    assert adata.uns["differential_abundance"]["method"] == "nb"


@pytest.mark.parametrize("formula", ["~ condition", "~ condition + patient_id"])
def test_da_nb_null_controls_false_discoveries(formula):
    any_fp = sum(bool(_calls(paired_counts(seed, fc=1.0), formula)[0]) for seed in range(10))
    assert any_fp <= 1  # under the null FDR = FWER; BH at 5 %: at most 1 of 10 seeds


def test_da_glmm_sign_of_planted_effect():
    adata = paired_counts(3, fc=1.8, n_patients=4, cells=150)
    res = itme.stats.differential_abundance(
        adata, formula="~ condition", contrast=CONTRAST, method="glmm", random="patient_id"
    ).set_index("subset")
    assert res.loc["s0", "logFC"] > 0.3 and res.loc["s0", "padj"] < 0.05
    assert res.loc["s1", "logFC"] < -0.5


def test_da_bad_inputs():
    adata = paired_counts(0)
    with pytest.raises(ItmeInputError, match="no column age"):
        itme.stats.differential_abundance(adata, formula="~ condition + age", contrast=CONTRAST)
    with pytest.raises(ItmeParameterError, match="two different levels"):
        itme.stats.differential_abundance(
            adata, formula="~ condition", contrast=("condition", "C", "A")
        )
    with pytest.raises(ItmeParameterError, match="coefficient of the model"):
        itme.stats.differential_abundance(adata, formula="~ condition", contrast="age")
    with pytest.raises(ItmeParameterError, match="method"):
        itme.stats.differential_abundance(
            adata, formula="~ condition", contrast=CONTRAST, method="edgeR"
        )
    with pytest.raises(ItmeParameterError, match="R-style formula"):
        itme.stats.differential_abundance(adata, formula="condition", contrast=CONTRAST)


def ds_cells(seed, shift=0.8, n_patients=6, cells=60):
    """Events of 2 subsets; marker pX up by ``shift`` in subset T under B, pY never changes."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for p in range(n_patients):
        donor = rng.normal(0, 0.6)
        for c in ("A", "B"):
            for subset in ("T", "B"):
                mu_x = 2.0 + donor + (shift if (c == "B" and subset == "T") else 0.0)
                x = rng.normal(mu_x + rng.normal(0, 0.1), 0.5, cells)
                y = rng.normal(1.0 + donor + rng.normal(0, 0.1), 0.5, cells)
                blocks.append(np.c_[x, y])
                obs += [(f"p{p}{c}", f"p{p}", c, subset)] * cells
    obs = pd.DataFrame(obs, columns=["sample_id", "patient_id", "condition", "subset"])
    obs.index = [str(i) for i in range(len(obs))]
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs)
    adata.var_names = ["pX", "pY"]
    adata.var["marker_class"] = "state"
    return adata


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ds_finds_planted_shift_only(seed):
    """The LMM's p-value is a t with between-within df: the pX shift only (was z: too small)."""
    adata = ds_cells(seed)
    lmm = itme.stats.differential_state(adata, formula="~ condition", contrast=CONTRAST)
    lmm = lmm.set_index(["subset", "marker"])
    assert lmm.loc[("T", "pX"), "padj"] < 0.01  # 6 donors: t with 5 between-within df
    assert lmm.loc[("T", "pX"), "logFC"] == pytest.approx(0.8, abs=0.2)
    assert (lmm.drop(("T", "pX"))["padj"] > 0.05).all()
    assert lmm.loc[("T", "pX"), "pvalue"] == lmm["pvalue"].min()
    # the paired t-test (donor as a fixed effect, exact with 5 df) calls nothing else
    lm = itme.stats.differential_state(
        adata, formula="~ condition + patient_id", contrast=CONTRAST, method="lm",
        random=None, key_added=None,
    ).set_index(["subset", "marker"])  # fmt: skip
    assert lm.loc[("T", "pX"), "padj"] < 0.05
    assert (lm.drop(("T", "pX"))["padj"] > 0.05).all()
    med = adata.uns["differential_state"]["medians"]
    assert set(med.columns) >= {"sample_id", "subset", "n_cells", "pX", "pY"}


def test_ds_too_few_cells_and_bad_formula():
    adata = ds_cells(0, cells=5)
    with pytest.raises(ItmeInputError, match="min_cells=10"):
        itme.stats.differential_state(adata, formula="~ condition", contrast=CONTRAST)
    adata = ds_cells(0)
    cell = (adata.obs["sample_id"] == "p0A") & (adata.obs["subset"] == "T")
    few = adata[~cell.to_numpy() | (np.cumsum(cell.to_numpy()) <= 3)].copy()
    with pytest.warns(ItmeExclusionWarning, match=r"fewer than 10 events.*p0A/T \(3\)"):
        res = itme.stats.differential_state(few, formula="~ condition", contrast=CONTRAST)
    res = res.set_index(["subset", "marker"])
    assert res.loc[("T", "pX"), "n_samples"] == 11 and res.loc[("B", "pX"), "n_samples"] == 12
    assert few.uns["differential_state"]["n_excluded"] == 1
    with pytest.raises(ItmeInputError, match="no column batch"):
        itme.stats.differential_state(adata, formula="~ condition + batch", contrast=CONTRAST)
    with pytest.raises(ItmeParameterError, match="random"):
        itme.stats.differential_state(adata, formula="~ condition", contrast=CONTRAST, random=None)
    adata.obs["bad"] = np.arange(adata.n_obs) % 2
    with pytest.raises(ItmeInputError, match="one value per sample_id"):
        itme.stats.differential_state(adata, formula="~ condition + bad", contrast=CONTRAST)


def test_differential_records_survive_h5ad(tmp_path):
    """uns["differential_abundance"] and uns["differential_state"] (exclusions included)."""
    adata = paired_counts(1, fc=1.5)
    itme.stats.differential_abundance(adata, formula="~ condition + patient_id", contrast=CONTRAST)
    back = roundtrip(adata, tmp_path / "da.h5ad")
    table = back.uns["differential_abundance"]["table"]
    assert table["subset"].iloc[0] in {"s0", "s1"} and table["padj"].iloc[0] < 0.05
    cells = ds_cells(0)
    cell = (cells.obs["sample_id"] == "p0A") & (cells.obs["subset"] == "T")
    cells = cells[~cell.to_numpy() | (np.cumsum(cell.to_numpy()) <= 3)].copy()
    with pytest.warns(ItmeExclusionWarning, match="p0A/T"):
        itme.stats.differential_state(cells, formula="~ condition", contrast=CONTRAST)
    back = roundtrip(cells, tmp_path / "ds.h5ad")
    rec = back.uns["differential_state"]
    assert list(rec["excluded"]) == ["p0A/T (3)"] and rec["min_cells"] == 10
    med = rec["medians"].set_index(["sample_id", "subset"])
    assert np.isnan(med.loc[("p0A", "T"), "pX"]) and med.loc[("p0A", "T"), "n_cells"] == 3


def test_ds_lmm_on_balanced_pairs_is_the_paired_t_test():
    """Balanced pairs: REML's Wald statistic is the paired t, and with between-within df
    (n - rank([X, donors]) = 5) the p-value is the paired t-test's."""
    adata = ds_cells(3)
    kw = {"contrast": CONTRAST, "key_added": None}
    lmm = itme.stats.differential_state(adata, formula="~ condition", **kw)
    lm = itme.stats.differential_state(
        adata, formula="~ condition + patient_id", method="lm", random=None, **kw
    )
    lmm, lm = lmm.set_index(["subset", "marker"]), lm.set_index(["subset", "marker"])
    # the shifted cell (donor variance large against the residual): same statistic, same p
    row = ("T", "pX")
    assert lmm.loc[row, "statistic"] == pytest.approx(lm.loc[row, "statistic"], rel=1e-3)
    assert lmm.loc[row, "pvalue"] == pytest.approx(lm.loc[row, "pvalue"], rel=1e-2)
