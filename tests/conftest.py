"""Shared fixtures: locations of real data, skipped with a reason when absent.

``../shared/data`` (or ``$ITME_SHARED_DATA``) holds the real public files of DESIGN.md §6.
A user's clone without it still passes (those tests skip); ``.ci/run`` sets
``ITME_REQUIRE_SHARED_DATA=1`` so CI fails instead of skipping silently.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ITME_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _missing(what: str) -> None:
    if os.environ.get("ITME_REQUIRE_SHARED_DATA") == "1":
        pytest.fail(f"{what} is required under ITME_REQUIRE_SHARED_DATA=1 but is missing")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (the real public test files)."""
    if not SHARED_DATA.is_dir():
        _missing(f"shared test data ({SHARED_DATA})")
    return SHARED_DATA


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


@pytest.fixture(scope="session")
def fcsparser_cytometers() -> Path:
    """fcsparser's tests/data/FlowCytometers (fcsparser is installed --no-deps for its files)."""
    pkg = _package_dir("fcsparser")
    if pkg is None:
        _missing("fcsparser (pip install --no-deps fcsparser==0.2.8)")
    return pkg / "tests" / "data" / "FlowCytometers"


@pytest.fixture(scope="session")
def cytonormpy_resources() -> Path:
    """cytonormpy's _resources folder (real CyTOF Gates_*.fcs files)."""
    pkg = _package_dir("cytonormpy")
    if pkg is None:
        _missing("cytonormpy (pip install 'itme[test]')")
    return pkg / "_resources"
