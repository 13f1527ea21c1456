"""The Dask cluster of a run: started from ``compute:`` before the first stage, closed after.

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
def compute_context(compute: Compute | None, *, n_channels: int = _MAX_CHANNELS) -> Iterator[Any]:
    """Start the cluster of ``compute`` for the duration of a run (nothing when ``None``).

    Parameters
    ----------
    compute
        The ``compute:`` section, or ``None`` (in memory, no Dask).
    n_channels
        Channels of the matrix, for the memory-per-worker check.

    Yields
    ------
    distributed.Client or None
        The client, the default for every dask computation inside the block.
    """
    if compute is None:
        yield None
        return
    from itme._dask import start_compute

    with start_compute(compute.settings(), n_channels=n_channels) as client:
        yield client


def with_scheduler(compute: Compute | None, scheduler: str | None) -> Compute | None:
    """``compute`` with its scheduler replaced (``itme run --scheduler``).

    Parameters
    ----------
    compute
        The config's section (``None``: defaults).
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
    base = compute if compute is not None else Compute()
    try:
        return Compute(**{**base.model_dump(), "scheduler": scheduler})
    except ValidationError as exc:
        raise ItmeParameterError(
            "--scheduler",
            "local, slurm, pbs or a scheduler address such as tcp://host:8786",
            scheduler,
        ) from exc
