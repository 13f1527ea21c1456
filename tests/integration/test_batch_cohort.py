"""Run effects on a simulated cohort with known truth: corrected, and biology kept.

A small cohort of the demo's kind (subsets of the built-in phenotype table, two planted
patient groups), acquired in three runs with ±50 % per-run channel gains and 50 % signal
loss over one run (``itme.datasets._cells.apply_run_effects``). Without correction a subset
is named differently in some run (batch split, scripts/bench_batch.py); after
``pp.correct_batch`` every subset is named alike in every run. In the confounded design the
planted group sits mostly in one run, and its planted subset shift must survive.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from itme import pp, tl
from itme.datasets._cells import apply_run_effects, draw_run_gains, simulate_cells
from itme.datasets._simulate import BASE_COMPOSITION, FILLER
from itme.io import read_phenotypes

TABLE = "lymphoid_visram2021"
#: the demo's cluster-1 composition, every subset of the table
BASE = {**BASE_COMPOSITION, FILLER: 100 - sum(BASE_COMPOSITION.values())}
#: the planted group has 4x more T13 and 4x fewer B cells
PLANTED = {"T13": 4.0, "B": 0.25}


def _cohort(seed: int, *, confounded: bool, n_patients: int = 12, cells: int = 3000):
    gen = np.random.default_rng(seed)
    table = read_phenotypes(TABLE)
    markers = list(table.markers)
    group = np.arange(n_patients) % 2  # 1 = planted
    runs = (
        np.where(group == 1, 2, np.arange(n_patients) % 2)
        if confounded
        else np.arange(n_patients) % 3
    )
    gains = draw_run_gains(3, len(markers), 0.5, rng=gen)
    X, obs = [], []
    for r in range(3):
        members = np.flatnonzero(runs == r)
        for pos, i in enumerate(members):
            props = {k: v * (PLANTED.get(k, 1.0) if group[i] else 1.0) for k, v in BASE.items()}
            props = {k: v * np.exp(0.2 * gen.standard_normal()) for k, v in props.items()}
            x, labels = simulate_cells(table, markers, cells, props, rng=gen)
            t = (pos + np.sort(gen.uniform(0, 1, cells))) / len(members)
            X.append(apply_run_effects(x, gains=gains[r], drift=0.5 if r == 2 else 0.0, time=t))
            obs.append(
                pd.DataFrame(
                    {
                        "sample_id": f"S{i:02d}",
                        "batch": f"R{r + 1}",
                        "truth": labels,
                        "group": group[i],
                    }
                )
            )
    obs = pd.concat(obs, ignore_index=True)
    obs.index = obs.index.astype(str)
    for col in ("sample_id", "batch", "truth"):
        obs[col] = pd.Categorical(obs[col])
    raw = np.vstack(X)
    var = pd.DataFrame({"marker_class": "type"}, index=markers)
    adata = ad.AnnData(raw, obs=obs, var=var, layers={"raw": raw})
    pp.arcsinh(adata)
    return adata


def _split(adata) -> float:
    """Worst subset's largest total-variation distance between runs of its label shares.

    Subsets with fewer than 100 events in some run (or absent from one) are left out (their shares are noise).
    """
    tab = pd.crosstab([adata.obs["truth"], adata.obs["batch"]], adata.obs["subset"])
    worst = 0.0
    for subset in BASE:
        if subset not in tab.index.get_level_values(0):
            continue
        p = tab.loc[subset]
        if len(p) < 3 or p.sum(axis=1).min() < 100:
            continue
        p = p.div(p.sum(axis=1), axis=0).to_numpy()
        worst = max(
            worst,
            max(0.5 * np.abs(p[a] - p[b]).sum() for a in range(3) for b in range(a + 1, 3)),
        )
    return worst


def _label(adata, seed: int) -> None:
    tl.flowsom(adata, grid=(8, 8), n_metaclusters=25, rng=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # markers of the table not simulated
        tl.annotate(adata, phenotypes=TABLE)


def _planted_ratio(adata, subset: str, key: str = "subset") -> float:
    """Mean % of ``subset`` in planted over unplanted samples, from the labels in ``key``."""
    pct = pd.crosstab(adata.obs["sample_id"], adata.obs[key], normalize="index")[subset]
    group = adata.obs.groupby("sample_id", observed=True)["group"].first()
    return float(pct[group == 1].mean() / pct[group == 0].mean())


@pytest.mark.parametrize("seed", [6])
def test_strong_run_effects_corrected(seed):
    adata = _cohort(seed, confounded=False)
    corrected = pp.correct_batch(adata, rng=seed, copy=True)
    _label(adata, seed)
    _label(corrected, seed)
    assert _split(adata) > 0.08  # flowsom threads: 0.11-0.24 seen at this seed
    assert _split(corrected) < 0.05


@pytest.mark.parametrize("seed", [1])
def test_confounded_biology_survives(seed):
    adata = _cohort(seed, confounded=True)
    corrected = pp.correct_batch(adata, rng=seed, copy=True)
    _label(corrected, seed)
    assert _split(corrected) < 0.05
    for subset in PLANTED:
        truth = _planted_ratio(corrected, subset, key="truth")
        assert _planted_ratio(corrected, subset) == pytest.approx(truth, rel=0.15)
    assert _planted_ratio(corrected, "T13") > 2.5
    assert _planted_ratio(corrected, "B") < 0.4
