"""Tools: FlowSOM clustering, subset annotation, embeddings, abundance, patient clusters."""

from itme.tl import (
    _abundance,
    _annotate,
    _batch_diagnostics,
    _embed,
    _flowsom,
    _patients,
    _robustness,
    _spillover,
)
from itme.tl._abundance import *  # noqa: F403
from itme.tl._annotate import *  # noqa: F403
from itme.tl._batch_diagnostics import *  # noqa: F403
from itme.tl._embed import *  # noqa: F403
from itme.tl._flowsom import *  # noqa: F403
from itme.tl._patients import *  # noqa: F403
from itme.tl._robustness import *  # noqa: F403
from itme.tl._spillover import *  # noqa: F403

__all__ = [
    *_abundance.__all__,
    *_annotate.__all__,
    *_batch_diagnostics.__all__,
    *_embed.__all__,
    *_flowsom.__all__,
    *_patients.__all__,
    *_robustness.__all__,
    *_spillover.__all__,
]
