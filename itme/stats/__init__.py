"""Statistics across patient groups: comparisons, clinical table, survival, correlations, cytokines."""

from ._clinical import *  # noqa: F403  (explicit imports once all modules exist)
from ._correlation import *  # noqa: F403  (explicit imports once all modules exist)
from ._cytokines import *  # noqa: F403  (explicit imports once all modules exist)
from ._groups import *  # noqa: F403  (explicit imports once all modules exist)
from ._survival import *  # noqa: F403  (explicit imports once all modules exist)
