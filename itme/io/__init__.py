"""Reading inputs and writing FCS files.

FCS files, sample sheets, panels, cohorts, clinical and cytokine tables, phenotype tables and
gene-set collections.
"""

from itme.io import (
    _channels,
    _clinical,
    _cohort,
    _delimited,
    _fcs,
    _gene_sets,
    _inspect,
    _luminex,
    _phenotypes,
    _spillover,
    _store,
    _tables,
    _units,
)
from itme.io._channels import *  # noqa: F403
from itme.io._clinical import *  # noqa: F403
from itme.io._cohort import *  # noqa: F403
from itme.io._delimited import *  # noqa: F403
from itme.io._fcs import *  # noqa: F403
from itme.io._gene_sets import *  # noqa: F403
from itme.io._inspect import *  # noqa: F403
from itme.io._luminex import *  # noqa: F403
from itme.io._phenotypes import *  # noqa: F403
from itme.io._spillover import *  # noqa: F403
from itme.io._store import *  # noqa: F403
from itme.io._tables import *  # noqa: F403
from itme.io._units import *  # noqa: F403

__all__ = [
    *_channels.__all__,
    *_clinical.__all__,
    *_cohort.__all__,
    *_delimited.__all__,
    *_fcs.__all__,
    *_gene_sets.__all__,
    *_inspect.__all__,
    *_luminex.__all__,
    *_phenotypes.__all__,
    *_spillover.__all__,
    *_store.__all__,
    *_tables.__all__,
    *_units.__all__,
]
