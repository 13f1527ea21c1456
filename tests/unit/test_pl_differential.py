"""pl.ds_heatmap, pl.pbmds, pl.expression_density on a paired cohort with planted effects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers.differential_sim import CONTRAST, PLANTED_DS, STATE, paired_cohort
from matplotlib.figure import Figure

import itme
from itme.errors import ItmeInputError, ItmeStateError


@pytest.fixture(scope="module")
def cohort():
    cells = paired_cohort(4, n_patients=5, cells=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small sample × subset cells left out
        itme.stats.differential_state(
            cells, formula="~ condition", contrast=CONTRAST, markers=STATE, min_cells=5
        )
    return cells


def test_ds_heatmap_rows_are_the_top_calls_in_order(cohort):
    table = cohort.uns["differential_state"]["table"]
    fig = itme.pl.ds_heatmap(cohort, top=6)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    expected = table.sort_values(["padj", "pvalue"]).head(6)
    assert rows == [
        f"{s} · {m}" for s, m in zip(expected["subset"], expected["marker"], strict=True)
    ]
    # the planted shifts lead (a tiny-logFC call of a near-zero marker may slip in)
    assert tuple(rows[0].split(" · ")) in PLANTED_DS
    assert set(PLANTED_DS) <= {tuple(r.split(" · ")) for r in rows}
    # columns: reference samples (A) first, then B; values are the record's medians, z-scored
    samples = [t.get_text() for t in ax.get_xticklabels()]
    assert samples == [f"p{i}A" for i in range(5)] + [f"p{i}B" for i in range(5)]
    shown = np.asarray(ax.images[0].get_array())
    med = cohort.uns["differential_state"]["medians"].set_index(["subset", "sample_id"])
    first = med.loc[expected["subset"].iloc[0]].loc[samples, expected["marker"].iloc[0]]
    z = (first - first.mean()) / first.std(ddof=0)
    np.testing.assert_allclose(shown[0], z.to_numpy(), rtol=1e-6)
    # the planted direction shows: B samples above A samples in an up-shifted row
    up = rows.index("T14 · CD69")
    assert shown[up, 5:].mean() > shown[up, :5].mean() + 1.0
    notes = [t.get_text() for t in ax.texts]
    lfc = expected["logFC"].iloc[0]
    assert notes[0].strip().startswith(f"logFC {lfc:+.2f}")
    raw = itme.pl.ds_heatmap(cohort, top=2, scale=False)
    np.testing.assert_allclose(np.asarray(raw.axes[0].images[0].get_array())[0], first)


def test_ds_heatmap_needs_the_record(cohort):
    with pytest.raises(ItmeStateError, match="differential_state"):
        itme.pl.ds_heatmap(cohort, key="missing")


def test_pbmds_separates_the_planted_conditions(cohort):
    # a stimulation: two state markers shifted in every event under B, donors differing
    stim = paired_cohort(
        5, n_patients=5, cells=1500, donor_sd=0.15, ds={(None, "CD69"): 0.8, (None, "CD25"): 0.6}
    )
    fig = itme.pl.pbmds(stim, color="condition", markers=STATE)
    ax = fig.axes[0]
    by_level = {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}
    assert set(by_level) == {"A", "B"}
    # dim 1 splits the conditions completely
    a, b = by_level["A"], by_level["B"]
    assert min(a[:, 0].max(), b[:, 0].max()) < max(a[:, 0].min(), b[:, 0].min())
    assert {t.get_text() for t in ax.texts} == {f"p{i}{c}" for i in range(5) for c in "AB"}
    # the cohort whose shifts are confined to small subsets: the conditions mix on dim 1
    null = itme.pl.pbmds(cohort, color="condition", markers=STATE)
    offs = {c.get_label(): np.asarray(c.get_offsets()) for c in null.axes[0].collections}
    a, b = offs["A"][:, 0], offs["B"][:, 0]
    assert not (a.max() < b.min() or b.max() < a.min())


def test_pbmds_bad_inputs(cohort):
    with pytest.raises(ItmeInputError, match="no_such_column"):
        itme.pl.pbmds(cohort, color="no_such_column")
    few = cohort[cohort.obs["sample_id"].isin(["p0A", "p0B"]).to_numpy()].copy()
    with pytest.raises(ItmeInputError, match="at least 3 samples"):
        itme.pl.pbmds(few)


def test_expression_density_shows_the_planted_shift(cohort):
    fig = itme.pl.expression_density(
        cohort, markers=["CD69", "CD3"], condition="condition", groups=["T14", "T13"]
    )
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["T14", "T13"]

    def mean(ax, level):
        line = next(ln for ln in ax.get_lines() if ln.get_label().startswith(level))
        x, y = line.get_xdata(), line.get_ydata()
        assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)
        return float(np.sum(x * y) / np.sum(y))

    # CD69 in T14: B is up by the planted 0.6; in T13 (nothing planted) the curves agree
    assert mean(axes[0, 0], "B") - mean(axes[0, 0], "A") == pytest.approx(0.6, abs=0.15)
    assert abs(mean(axes[0, 1], "B") - mean(axes[0, 1], "A")) < 0.15
    assert abs(mean(axes[1, 0], "B") - mean(axes[1, 0], "A")) < 0.15
    assert axes[0, 0].get_lines()[0].get_label() == "A (n=5)"
    with pytest.raises(ItmeInputError, match="nonexistent"):
        itme.pl.expression_density(
            cohort, markers=["CD69"], condition="condition", groups=["nonexistent"]
        )
