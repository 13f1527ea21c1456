"""Differential abundance and state on paired data: planted effects found, nulls controlled,
paired designs more powerful than unpaired ones. Five seeds of the paired cohort of
tests/helpers/differential_sim.py (8 donors × A/B; the full numbers, more seeds and a
cohort with nothing planted: scripts/bench_differential.py).
"""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.differential_sim import evaluate

DA_PAIRED = "DA nb paired (~ condition + patient_id)"
DA_UNPAIRED = "DA nb unpaired (~ condition)"
DS_PAIRED = "DS lmm paired (random patient_id)"
DS_UNPAIRED = "DS lm unpaired (~ condition)"
MARKERS = ["CD69", "CD25", "TIM-3"]  # two planted shifts (T14 CD69, T1 CD25), one marker none


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    rows = []
    for seed in range(5):
        rows += evaluate(
            seed,
            cells=1500,
            designs=[DA_PAIRED, DA_UNPAIRED, DS_PAIRED, DS_UNPAIRED],
            markers=MARKERS,
        )
    return pd.DataFrame(rows).set_index(["design", "seed"])


def test_paired_designs_find_the_planted_effects_and_beat_unpaired(scores):
    power = scores["power"].groupby(level="design").mean()
    assert power[DA_PAIRED] >= 0.75  # 4 planted subsets, ×0.5 / ×2.5
    assert power[DS_PAIRED] >= 0.9  # 2 planted shifts of 0.5-0.6 arcsinh
    # the donor effects hide the same effects from the unpaired designs
    assert power[DA_UNPAIRED] <= power[DA_PAIRED] - 0.4
    assert power[DS_UNPAIRED] <= power[DS_PAIRED] - 0.4


def test_nulls_are_controlled(scores):
    """About 25 null subsets and 85 null subset × marker tests per seed."""
    false = scores["fp"].groupby(level="design").sum()
    assert false[DA_PAIRED] <= 2 and false[DS_PAIRED] <= 2
    fdr = scores["fdp"].groupby(level="design").mean()
    assert fdr[DA_PAIRED] <= 0.1 and fdr[DS_PAIRED] <= 0.1
