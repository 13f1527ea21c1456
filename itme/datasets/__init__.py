"""Datasets: the synthetic demo cohort, and simulated spillover and bead-drift data."""

from itme.datasets import _simulate, _spill
from itme.datasets._simulate import *  # noqa: F403
from itme.datasets._spill import *  # noqa: F403

__all__ = [*_simulate.__all__, *_spill.__all__]
