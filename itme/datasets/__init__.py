"""Datasets: the synthetic demo cohort."""

from itme.datasets import _simulate
from itme.datasets._simulate import *  # noqa: F403

__all__ = [*_simulate.__all__]
