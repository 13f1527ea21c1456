"""Preprocessing of events: arcsinh transformation, cleaning, downsampling, batch normalisation."""

from itme.pp import (
    _arcsinh,
    _batch,
    _beads,
    _channels,
    _clean,
    _compensate,
    _cytonorm,
    _downsample,
    _drift,
    _sample_qc,
)
from itme.pp._arcsinh import *  # noqa: F403
from itme.pp._batch import *  # noqa: F403
from itme.pp._beads import *  # noqa: F403
from itme.pp._channels import *  # noqa: F403
from itme.pp._clean import *  # noqa: F403
from itme.pp._compensate import *  # noqa: F403
from itme.pp._cytonorm import *  # noqa: F403
from itme.pp._downsample import *  # noqa: F403
from itme.pp._drift import *  # noqa: F403
from itme.pp._sample_qc import *  # noqa: F403

__all__ = [
    *_arcsinh.__all__,
    *_batch.__all__,
    *_beads.__all__,
    *_channels.__all__,
    *_clean.__all__,
    *_compensate.__all__,
    *_cytonorm.__all__,
    *_downsample.__all__,
    *_drift.__all__,
    *_sample_qc.__all__,
]
