"""Reading and writing cytometry data: FCS files, sample sheets, panels, cohorts."""

from . import _clinical, _cohort, _fcs, _inspect, _luminex, _tables
from ._clinical import *  # noqa: F403
from ._cohort import *  # noqa: F403
from ._fcs import *  # noqa: F403
from ._inspect import *  # noqa: F403
from ._luminex import *  # noqa: F403
from ._tables import *  # noqa: F403

__all__ = [
    *_clinical.__all__,
    *_cohort.__all__,
    *_fcs.__all__,
    *_inspect.__all__,
    *_luminex.__all__,
    *_tables.__all__,
]
