"""Preprocessing of events: arcsinh transformation, cleaning, downsampling, batch normalisation."""

from . import _arcsinh, _clean, _cytonorm, _downsample
from ._arcsinh import *  # noqa: F403
from ._clean import *  # noqa: F403
from ._cytonorm import *  # noqa: F403
from ._downsample import *  # noqa: F403

__all__ = [*_arcsinh.__all__, *_clean.__all__, *_cytonorm.__all__, *_downsample.__all__]
