"""Tools: FlowSOM clustering, subset annotation, embeddings, abundance, patient clusters."""

from ._abundance import *  # noqa: F403  (explicit imports once all modules exist)
from ._annotate import *  # noqa: F403  (explicit imports once all modules exist)
from ._embed import *  # noqa: F403  (explicit imports once all modules exist)
from ._flowsom import *  # noqa: F403  (explicit imports once all modules exist)
from ._patients import *  # noqa: F403  (explicit imports once all modules exist)
from ._robustness import *  # noqa: F403  (explicit imports once all modules exist)
