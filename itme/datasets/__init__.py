"""Datasets: the synthetic demo cohort."""

from ._simulate import *  # noqa: F403  (explicit imports once all modules exist)
