"""Tools: FlowSOM clustering, subset annotation, embeddings, abundance, patient clusters."""

from . import _abundance, _annotate, _embed, _flowsom, _patients, _robustness
from ._abundance import *  # noqa: F403
from ._annotate import *  # noqa: F403
from ._embed import *  # noqa: F403
from ._flowsom import *  # noqa: F403
from ._patients import *  # noqa: F403
from ._robustness import *  # noqa: F403

__all__ = [
    *_abundance.__all__,
    *_annotate.__all__,
    *_embed.__all__,
    *_flowsom.__all__,
    *_patients.__all__,
    *_robustness.__all__,
]
