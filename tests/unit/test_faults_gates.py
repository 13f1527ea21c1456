"""A reversed gate (low above high) is an error, not a run that keeps ~1 % of the events."""

from __future__ import annotations

import pytest
from helpers.qc_sim import planted_cohort

import itme
from itme.errors import ItmeInputError, ItmeParameterError
from itme.pipeline import load_config


def test_pp_clean_refuses_a_reversed_gate():
    adata, _ = planted_cohort(1, n_per_sample=2000, n_samples=1)
    with pytest.raises(
        ItmeParameterError, match=r"low <= high for .*got \(5, 1\)\. Swap them: \(1, 5\)"
    ):
        itme.pp.clean(adata, steps=["cd45"], thresholds={"cd45": (5, 1)})


def test_an_open_side_is_not_reversed(tmp_path):
    adata, _ = planted_cohort(1, n_per_sample=2000, n_samples=1)
    itme.pp.clean(adata, steps=["cd45"], thresholds={"cd45": (1.0, None)})
    config = load_config(
        {
            "inputs": {"samples": "s.csv", "panel": "p.csv"},
            "clean": {"thresholds": {"cd45": [None, 1]}},
        },
        base_dir=tmp_path,
    )
    assert config.clean.thresholds == {"cd45": [None, 1]}


def test_the_config_refuses_a_reversed_gate(tmp_path):
    with pytest.raises(ItmeInputError, match="gate 'dna': low 7 is above high 2; write \\[2, 7\\]"):
        load_config(
            {
                "inputs": {"samples": "s.csv", "panel": "p.csv"},
                "clean": {"thresholds": {"dna": [7, 2]}},
            },
            base_dir=tmp_path,
        )
