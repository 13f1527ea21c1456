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
    """Lines sit at low / high of the thresholds table: both are on the axes' gating scale."""
    fig = itme.pl.qc_gates(cleaned, sample="S2")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    # one panel per (x, y) pair of the step table, titled by the steps it shows
    assert titles[:5] == ["bead", "debris / doublet", "doublet", "dead", "cd45_negative"]
    thr = cleaned.uns["qc"]["thresholds"]
    thr = thr[thr["sample_id"] == "S2"]

    def gate(step, role, side):
        sel = thr[(thr["step"] == step) & (thr["role"] == role)]
        return float(sel[side].iloc[0])  # the first bead gate is Ce140's

    def lines(title):
        ax = fig.axes[titles.index(title)]
        vertical = [
            ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_xdata()[0] == ln.get_xdata()[1]
        ]
        horizontal = [
            ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_ydata()[0] == ln.get_ydata()[1]
        ]
        return sorted(vertical), sorted(horizontal)

    assert lines("cd45_negative") == ([gate("cd45_negative", "cd45", "low")], [])
    assert lines("dead") == ([gate("dead", "cisplatin", "high")], [])
    dna = sorted([gate("debris", "dna", "low"), gate("doublet", "dna", "high")])
    assert lines("debris / doublet") == (dna, [gate("doublet", "event_length", "high")])
    assert lines("doublet") == (
        [gate("doublet", "width", "high")],
        [gate("doublet", "residual", "high")],
    )
    # beads: the Ce140 gate only (the partners' gates are in the table)
    assert lines("bead") == ([gate("bead", "bead", "high")], [])
    np.testing.assert_allclose(
        thr["low_raw"].dropna(), 5.0 * np.sinh(thr["low"].dropna()), rtol=1e-12
    )


def test_qc_gates_refuses_a_table_with_raw_low_high(cleaned):
    old = cleaned.copy()
    old.uns["qc"]["thresholds"] = old.uns["qc"]["thresholds"].drop(columns=["low_raw", "high_raw"])
    with pytest.raises(ItmeStateError, match="Rerun itme.pp.clean"):
        itme.pl.qc_gates(old)


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
