"""Statistics across patient groups: comparisons, clinical table, survival, correlations, cytokines."""

from ._groups import *  # noqa: F403  (explicit imports once all modules exist)
