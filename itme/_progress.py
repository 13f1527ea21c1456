"""Progress reporting for long loops: silent in library calls unless switched on.

The CLI switches it on (``settings.progress = True``); library users may do the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class _Settings:
    progress: bool = False


settings = _Settings()


def track(iterable: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``iterable``, showing a rich progress bar when ``settings.progress`` is on."""
    if not settings.progress:
        yield from iterable
        return
    from rich.progress import track as rich_track

    yield from rich_track(iterable, description=description, total=total, transient=True)
