"""Array-level cleaning numerics: thresholds, Otsu, channel roles, the planted-event generator."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from itme.core.clean.channels import channel_metals, detect_roles
from itme.core.clean.gating import (
    auto_threshold,
    mad_threshold,
    robust_location_scale,
)
from itme.core.otsu import otsu_binned
from itme.datasets._qc import QC_CLASSES, plant_qc_events, simulate_good_cells


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mad_scale_is_a_consistent_sd(seed):
    # 1.4826 = 1 / Phi^-1(3/4): for normal data MAD * 1.4826 estimates the SD
    assert 1 / stats.norm.ppf(0.75) == pytest.approx(1.4826, abs=1e-4)
    x = np.random.default_rng(seed).normal(2.0, 0.4, 200_000).astype(np.float32)
    med, sd = robust_location_scale(x)
    assert med == pytest.approx(2.0, abs=0.01)
    assert sd == pytest.approx(0.4, rel=0.02)
    thr = mad_threshold(x, side="high", k=3.0)
    # the share of a normal population beyond median + 3 SD is 1 - Phi(3) = 0.135 %
    assert np.mean(x > thr.value) == pytest.approx(stats.norm.sf(3.0), abs=0.0004)
    assert thr.method == "mad"


def test_min_delta_guards_a_zero_mad():
    x = np.zeros(1000, dtype=np.float32)
    x[:3] = 0.4
    thr = mad_threshold(x, side="high", k=4.0, min_delta=1.0)
    assert thr.value == pytest.approx(1.0)


def test_otsu_is_the_2_means_optimum():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(1, 0.3, 3000), rng.normal(4, 0.5, 1000)])
    counts, edges = np.histogram(x, bins=200)
    centres = 0.5 * (edges[1:] + edges[:-1])
    t = otsu_binned(centres, counts)

    def within_ss(i: int) -> float:
        """Within-class sum of squares of the binned data split before bin i."""
        ss = 0.0
        for sel in (slice(0, i), slice(i, None)):
            w, c = counts[sel], centres[sel]
            if w.sum():
                ss += np.sum(w * (c - np.average(c, weights=w)) ** 2)
        return ss

    # brute force: the splits minimising the within-class sum of squares (several when
    # empty bins lie between the classes); Otsu's cut is the middle of them
    ss = np.array([within_ss(i) for i in range(1, centres.size)])
    best = np.flatnonzero(ss <= ss.min() * (1 + 1e-12)) + 1
    cuts = 0.5 * (centres[best - 1] + centres[best])
    assert t == pytest.approx(0.5 * (cuts.min() + cuts.max()))
    assert within_ss(int(np.searchsorted(centres, t))) == pytest.approx(ss.min())
    assert 1.9 < t < 3.1


def test_otsu_cut_in_a_run_of_empty_bins_is_its_middle():
    # two classes separated by empty bins: every cut between them is optimal; the middle
    # one is returned, and it splits the events as any of them would
    centres = np.arange(10.0)
    counts = np.array([5, 9, 5, 0, 0, 0, 0, 4, 8, 4])
    assert otsu_binned(centres, counts) == pytest.approx(4.5)
    assert np.isnan(otsu_binned(centres[:1], counts[:1]))


def test_a_constant_sample_gets_the_tail_rule():
    # e.g. an empty cisplatin channel: every event at 0 (the smoothing kernel is then wider
    # than the histogram, which once broke the density)
    x = np.zeros(5000, dtype=np.float32)
    high = auto_threshold(x, side="high", k=4.0, min_delta=1.0)
    low = auto_threshold(x, side="low", k=4.0, min_delta=1.0)
    assert (high.method, high.value) == ("mad", 1.0)
    assert (low.method, low.value) == ("mad", -1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auto_threshold_cuts_the_valley_of_a_separate_population(seed):
    rng = np.random.default_rng(seed)
    cells = rng.normal(5.0, 0.5, 20_000)
    negative = rng.normal(0.8, 0.6, 4_000)
    x = np.concatenate([cells, negative])
    thr = auto_threshold(x, side="low", k=4.0, min_delta=1.0)
    assert thr.method == "valley"
    # the density minimum of this mixture lies near 2.6-3.0
    grid = np.linspace(1.5, 4.0, 2001)
    mix = 20_000 * stats.norm.pdf(grid, 5.0, 0.5) + 4_000 * stats.norm.pdf(grid, 0.8, 0.6)
    true_valley = grid[np.argmin(mix)]
    assert abs(thr.value - true_valley) < 0.25
    assert np.mean(cells < thr.value) < 0.005
    assert np.mean(negative < thr.value) > 0.99


def test_auto_threshold_falls_back_to_the_tail_rule_on_one_population():
    x = np.random.default_rng(4).normal(4.0, 0.5, 50_000)
    thr = auto_threshold(x, side="low", k=4.0, min_delta=0.5)
    assert thr.method == "mad"
    assert thr.value == pytest.approx(2.0, abs=0.05)
    tiny = auto_threshold(x[:10], side="low", k=4.0, min_delta=0.5)
    assert tiny.method.startswith("none") and tiny.value == -np.inf


def test_bad_side_is_an_error():
    with pytest.raises(ValueError, match="side"):
        mad_threshold(np.ones(10), side="up", k=1)


@pytest.mark.parametrize(
    ("name", "metals"),
    [
        ("Ir191Di", {"Ir191"}),
        ("191Ir_DNA1", {"Ir191"}),
        ("DNA-2(Ir193)Dd", {"Ir193"}),
        ("198Pt_Dead", {"Pt198"}),
        ("Ce140Di", {"Ce140"}),
        ("CD45(In115)Dd", set()),
        ("CD161", set()),
    ],
)
def test_channel_metals(name, metals):
    assert channel_metals(name) == metals


def test_detect_roles_across_naming_styles():
    names = [
        "Time",
        "Event_length",
        "140Ce_Beads",
        "89Y_CD45",
        "191Ir_DNA1",
        "193Ir_DNA2",
        "195Pt_Cisplatin",
        "151Eu_CD25",
        "153Eu_CD161",
        "165Ho_PD-1",
        "175Lu_CXCR3",
        "CD45RA",
        "Residual",
        "Width",
        "beadDist",
        "Pt198Di",
    ]
    roles = detect_roles(names, names, [""] * len(names))
    assert roles["dna"] == [4, 5]
    assert roles["bead"] == [2, 7, 8, 9, 10]  # Ce140 first, then the partners
    assert roles["cd45"] == [3]
    assert roles["cisplatin"] == [6, 15]
    assert roles["event_length"] == [1]
    assert roles["residual"] == [12] and roles["width"] == [13]
    assert roles["bead_distance"] == [14]


def test_detect_roles_bodenmiller_and_gates_styles():
    bod = ["Cell_length", "CD45(In115)Dd", "BC5(Ho165)Dd", "DNA-1(Ir191)Dd", "DNA-2(Ir193)Dd"]
    roles = detect_roles(bod, bod, ["Cell_length", "CD45", "BC5", "DNA-1", "DNA-2"])
    assert roles == {"event_length": [0], "cd45": [1], "dna": [3, 4]}  # no Ce140: no bead role
    gates_chan = ["In115Di", "Ce140Di", "Eu151Di", "Pt195Di", "Pt196Di"]
    roles = detect_roles(gates_chan, gates_chan, ["CD45", "", "p38", "", "CD3"])
    assert roles["cd45"] == [0]
    assert roles["bead"] == [1, 2]
    assert roles["cisplatin"] == [3]  # Pt196 carries an antibody here: not cisplatin


def test_plant_qc_events_contract():
    rng = np.random.default_rng(0)
    good = simulate_good_cells(5000, 12, cd45=0, rng=rng)
    channels = {"dna": [1, 2], "cisplatin": 3, "bead": [4, 5], "event_length": 6, "cd45": 0}
    fractions = {"bead": 0.02, "debris": 0.05, "doublet": 0.05, "dead": 0.1, "cd45_negative": 0.1}
    values, truth = plant_qc_events(good, channels=channels, fractions=fractions, rng=rng)
    assert values.shape == good.shape and values.dtype == np.float32
    assert set(np.unique(truth)) == set(QC_CLASSES)
    for cls, frac in fractions.items():
        assert np.sum(truth == cls) == round(frac * 5000)
    # markers of good rows are kept; QC channels overwritten
    kept = truth == "kept"
    np.testing.assert_array_equal(values[kept][:, 7:], good[kept][:, 7:])
    # doublets carry about twice the DNA of singlets, beads none, dead cells bright cisplatin
    dna = values[:, 1] + values[:, 2]
    assert 1.6 < np.median(dna[truth == "doublet"]) / np.median(dna[kept]) < 2.4
    assert np.median(dna[truth == "bead"]) < 5
    assert np.median(values[truth == "dead", 3]) > 20 * np.median(values[kept, 3])
    assert np.median(values[truth == "cd45_negative", 0]) < 5
    # same generator state -> same output
    a = plant_qc_events(good, channels=channels, fractions=fractions, rng=np.random.default_rng(9))
    b = plant_qc_events(good, channels=channels, fractions=fractions, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractions": {"dead": 0.1}, "channels": {"dna": [0]}}, "cisplatin"),
        ({"fractions": {"zombie": 0.1}, "channels": {"dna": [0]}}, "fractions.*keys among"),
        ({"fractions": {"debris": 0.6, "doublet": 0.5}, "channels": {"dna": [0]}}, "sum"),
        ({"fractions": {"debris": 0.1}, "channels": {"dna": [99]}}, "column indices in 0..4"),
    ],
)
def test_plant_qc_events_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plant_qc_events(np.ones((100, 5)), rng=np.random.default_rng(0), **kwargs)


def test_a_valley_with_most_events_beyond_is_reported_not_used():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(5.0, 0.5, 3_000), rng.normal(0.8, 0.6, 7_000)])
    thr = auto_threshold(x, side="low", k=4.0, min_delta=1.0)
    assert thr.method == "mad"
    assert 2.0 < thr.unused_valley < 3.6
    assert thr.unused_fraction == pytest.approx(0.7, abs=0.03)
