"""Reading and writing cytometry data: FCS files, sample sheets, panels, cohorts."""

from ._clinical import *  # noqa: F403  (explicit imports once all modules exist)
from ._cohort import *  # noqa: F403  (explicit imports once all modules exist)
from ._fcs import *  # noqa: F403  (explicit imports once all modules exist)
from ._inspect import *  # noqa: F403  (explicit imports once all modules exist)
from ._luminex import *  # noqa: F403  (explicit imports once all modules exist)
from ._tables import *  # noqa: F403  (explicit imports once all modules exist)
