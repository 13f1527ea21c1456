"""read_fcs on 2,500 mutated real FCS files: it reads them or raises an ItmeError, never
anything else, never hangs, never exhausts memory, and never alters values silently.

The cases come from every FCS file of ../shared/data and of fcsparser's test set
(tests/fuzz/fcs_mutator.py says what each mutation is and what a reader may do with it); they
run in two forked workers, each case limited to 20 s and each worker to 4 GB of address
space. ``scripts/fuzz_readers.py`` runs a bigger campaign with the same machinery.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import itme
from fuzz import harness
from fuzz.fcs_mutator import MUTATIONS, make_case

pytestmark = pytest.mark.shared_data

SEED = 20_110  # issue 11
N_CASES = 2_500


@pytest.fixture(scope="module")
def sources(shared_data, fcsparser_cytometers):
    return harness.real_sources(shared_data, fcsparser_cytometers)


@pytest.mark.slow
def test_mutated_real_files_read_or_raise_an_itme_error(sources):
    assert len(sources) >= 45  # 30 files of ../shared/data, 17 of fcsparser
    campaign = harness.run_campaign(sources, seed=SEED, n_cases=N_CASES, workers=2, timeout=20)
    print("\n" + campaign.table() + "\n\n" + campaign.by_kind())
    problems = campaign.problems()
    assert not problems, "\n".join(harness.describe(r) for r in problems[:30])
    s = campaign.stats
    assert (s["other"], s["hang"], s["memory"], s["crash"], s["silent"]) == (0, 0, 0, 0, 0)
    # every outcome and every mutation occurs, so the suite cannot pass by reading nothing
    assert s["read"] > 800 and s["read_note"] > 300 and s["itme_error"] > 500
    assert s["changed_warned"] > 30  # altered files are read only with a warning
    assert len({r["kind"] for r in campaign.results}) == len(MUTATIONS) + 1  # + insert/delete
    # meaning-preserving mutations (another delimiter, padding, ...) read identically
    same = [r for r in campaign.results if r["expect"] == "same" and r["same"] is not None]
    assert len(same) > 500 and all(r["same"] for r in same)
    assert campaign.seconds < 90


def test_cases_are_reproducible(sources):
    for index in (0, 7, 123, 2_499):
        a, b = make_case(sources, SEED, index), make_case(sources, SEED, index)
        assert (a.blob, a.kind, a.detail) == (b.blob, b.kind, b.detail)
    assert make_case(sources, SEED, 5).blob != make_case(sources, SEED + 1, 5).blob


def test_harness_counts_other_exceptions_hangs_and_memory(sources, monkeypatch):
    """The harness itself can fail: a reader that raises KeyError, sleeps or allocates 8 GB
    is reported as such (the workers are forked after the patch)."""

    def broken(path, **_):
        raise KeyError("par")

    monkeypatch.setattr(itme.io, "read_fcs", broken)
    campaign = harness.run_campaign(sources, seed=SEED, n_cases=4, workers=2, timeout=20)
    assert campaign.stats["other"] == 4 and "KeyError" in campaign.results[0]["message"]

    def sleepy(path, **_):
        time.sleep(30)

    monkeypatch.setattr(itme.io, "read_fcs", sleepy)
    start = time.perf_counter()
    campaign = harness.run_campaign(sources, seed=SEED, n_cases=3, workers=2, timeout=1)
    assert campaign.stats["hang"] == 3 and time.perf_counter() - start < 20

    def greedy(path, **_):
        return np.ones(2 * 1024**3, dtype=np.float32)  # 8 GB

    monkeypatch.setattr(itme.io, "read_fcs", greedy)
    campaign = harness.run_campaign(
        sources, seed=SEED, n_cases=2, workers=1, timeout=20, mem_limit=2 << 30
    )
    assert campaign.stats["memory"] == 2


def test_harness_reports_silent_changes(sources, monkeypatch):
    """A reader that adds 1 to every value without a warning is caught as silent."""
    real = itme.io.read_fcs

    def shifted(path, **kwargs):
        adata = real(path, **kwargs)
        adata.X = adata.X + 1
        return adata

    monkeypatch.setattr(itme.io, "read_fcs", shifted)
    campaign = harness.run_campaign(sources, seed=SEED, n_cases=60, workers=2, timeout=20)
    assert campaign.stats["silent"] > 5 and campaign.stats["same_violated"] > 5
