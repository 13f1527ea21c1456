"""The Dask cluster of a run: started before the first stage when the run is on the store.

Every compute setting is checked (and the scheduler reached) before any stage runs, so a bad
address, too little memory per worker for one block, or a missing dask-jobqueue fails the
run at once with an error naming the setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from itme.errors import ItmeParameterError
from itme.pipeline._config import Compute

__all__ = ["compute_context", "with_scheduler"]

#: channels assumed for the memory check when the panel has not been read yet
_MAX_CHANNELS = 64


@contextlib.contextmanager
def compute_context(compute: Compute, *, n_channels: int = _MAX_CHANNELS) -> Iterator[Any]:
    """Start the cluster of ``compute`` for the duration of a run (nothing in memory).

    Parameters
    ----------
    compute
        The ``compute:`` section, its backend resolved (``memory``: no Dask).
    n_channels
        Channels of the matrix, for the memory-per-worker check.

    Yields
    ------
    distributed.Client or None
        The client, the default for every dask computation inside the block.
    """
    if compute.backend != "store":
        yield None
        return
    from itme._dask import start_compute

    with start_compute(compute.settings(), n_channels=n_channels) as client:
        yield client


def with_scheduler(compute: Compute, scheduler: str | None) -> Compute:
    """``compute`` with its scheduler replaced and the store as backend (``itme run --scheduler``).

    Parameters
    ----------
    compute
        The config's section.
    scheduler
        ``local``, ``slurm``, ``pbs`` or an address; ``None`` keeps ``compute``.

    Returns
    -------
    The section to run with.

    Raises
    ------
    ItmeParameterError
        ``scheduler`` is none of those.
    """
    if scheduler is None:
        return compute
    try:
        return Compute(**{**compute.model_dump(), "scheduler": scheduler, "backend": "store"})
    except ValidationError as exc:
        raise ItmeParameterError(
            "--scheduler",
            "local, slurm, pbs or a scheduler address such as tcp://host:8786",
            scheduler,
        ) from exc
