"""Datasets: the synthetic demo cohort."""

from . import _simulate
from ._simulate import *  # noqa: F403

__all__ = [*_simulate.__all__]
