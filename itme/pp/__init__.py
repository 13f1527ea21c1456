"""Preprocessing of events: arcsinh transformation, cleaning, downsampling, batch normalisation."""

from ._arcsinh import *  # noqa: F403  (explicit imports once all modules exist)
from ._clean import *  # noqa: F403  (explicit imports once all modules exist)
from ._cytonorm import *  # noqa: F403  (explicit imports once all modules exist)
from ._downsample import *  # noqa: F403  (explicit imports once all modules exist)
