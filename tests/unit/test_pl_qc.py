"""pl.qc_gates / pl.qc_accounting: figures drawn from uns['qc'] with the gates where they were set."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.qc_sim import planted_cohort
from matplotlib.figure import Figure

import itme
from itme.errors import ItmeParameterError, ItmeStateError


@pytest.fixture(scope="module")
def cleaned():
    adata, _ = planted_cohort(11, n_per_sample=4000, n_samples=2)
    itme.pp.arcsinh(adata)
    itme.pp.clean(adata)
    return adata


def test_qc_gates_draws_each_gate_at_its_threshold(cleaned):
    fig = itme.pl.qc_gates(cleaned, sample="S2")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[:5] == [
        "beads",
        "debris and doublets",
        "dead cells",
        "Gaussian parameters",
        "CD45",
    ]
    thr = cleaned.uns["qc"]["thresholds"]
    thr = thr[thr["sample_id"] == "S2"]
    cd45_low = float(thr.loc[thr["role"] == "cd45", "low"].iloc[0])
    cd45_ax = fig.axes[titles.index("CD45")]
    xs = [line.get_xdata()[0] for line in cd45_ax.get_lines()]
    assert xs == pytest.approx([np.arcsinh(cd45_low / 5.0)])
    dead_ax = fig.axes[titles.index("dead cells")]
    cis_high = float(thr.loc[thr["role"] == "cisplatin", "high"].iloc[0])
    assert [ln.get_xdata()[0] for ln in dead_ax.get_lines()] == pytest.approx(
        [np.arcsinh(cis_high / 5.0)]
    )


def test_qc_accounting_bars_add_up_to_100(cleaned):
    fig = itme.pl.qc_accounting(cleaned)
    ax = fig.axes[0]
    widths = np.zeros(2)
    for patch in ax.patches:
        widths[int(round(patch.get_y() + patch.get_height() / 2))] += patch.get_width()
    np.testing.assert_allclose(widths, 100.0)


def test_errors(cleaned):
    with pytest.raises(ItmeParameterError, match="sample"):
        itme.pl.qc_gates(cleaned, sample="S9")
    raw, _ = planted_cohort(1, n_per_sample=200, n_samples=1)
    with pytest.raises(ItmeStateError, match="run itme.pp.clean"):
        itme.pl.qc_gates(raw)
    with pytest.raises(ItmeStateError, match="run itme.pp.clean"):
        itme.pl.qc_accounting(raw)
