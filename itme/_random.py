"""Seeded randomness: every stochastic function takes ``rng`` and calls :func:`as_generator`.

Global state (``np.random.seed``) is never touched. Libraries that want an integer seed get
one drawn from the generator with :func:`draw_seed`; the caller records that integer.
"""

from __future__ import annotations

import numpy as np

RngLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(rng: RngLike) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``rng`` (int, Generator, SeedSequence or None)."""
    return np.random.default_rng(rng)


def draw_seed(rng: RngLike) -> int:
    """Draw a reproducible 31-bit integer seed for libraries that only accept ints.

    An ``int`` is returned unchanged, so ``rng=42`` means seed 42 wherever it is recorded.
    """
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return int(rng)
    return int(as_generator(rng).integers(0, 2**31 - 1))
