"""Figures. Every function returns a matplotlib Figure and never writes files."""

from itme.pl import _batch, _clusters, _differential, _patients, _qc, _rna
from itme.pl._batch import *  # noqa: F403
from itme.pl._clusters import *  # noqa: F403
from itme.pl._differential import *  # noqa: F403
from itme.pl._patients import *  # noqa: F403
from itme.pl._qc import *  # noqa: F403
from itme.pl._rna import *  # noqa: F403

__all__ = [
    *_batch.__all__,
    *_clusters.__all__,
    *_differential.__all__,
    *_patients.__all__,
    *_qc.__all__,
    *_rna.__all__,
]
