"""Figures. Every function returns a matplotlib Figure and never writes files."""

from ._clusters import *  # noqa: F403  (explicit imports once all modules exist)
from ._patients import *  # noqa: F403  (explicit imports once all modules exist)
from ._qc import *  # noqa: F403  (explicit imports once all modules exist)
from ._rna import *  # noqa: F403  (explicit imports once all modules exist)
