"""Statistics across patient groups: comparisons, clinical table, survival, correlations, cytokines."""

from itme.stats import _clinical, _correlation, _cytokines, _differential, _groups, _survival
from itme.stats._clinical import *  # noqa: F403
from itme.stats._correlation import *  # noqa: F403
from itme.stats._cytokines import *  # noqa: F403
from itme.stats._differential import *  # noqa: F403
from itme.stats._groups import *  # noqa: F403
from itme.stats._survival import *  # noqa: F403

__all__ = [
    *_clinical.__all__,
    *_correlation.__all__,
    *_cytokines.__all__,
    *_differential.__all__,
    *_groups.__all__,
    *_survival.__all__,
]
