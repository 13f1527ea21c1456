"""The last parse of an input file, kept for the process: a file read twice is parsed once.

A run reads the RNA-seq counts file in its config check and again in the rnaseq stage; the
parse (~0.6 CPU-s for 60,000 genes) is done once. The entry is keyed by what the caller
names, the file's content (its SHA-256, which the reader records anyway) and its options
among it, so a changed file is parsed again however quickly it was rewritten (a modification
time can stay the same within the file system's clock resolution). Warnings the parse gave are kept with it and shown again on every read, so each
caller (and the run's ``tables/warnings.csv``) sees the same warnings as without the cache.
Only the last parse per reader is kept (one counts matrix in memory, not one per file).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["clear", "parsed_once"]

T = TypeVar("T")

#: reader name → (key, result, warnings the parse gave)
_LAST: dict[str, tuple[tuple[Hashable, ...], Any, list[warnings.WarningMessage]]] = {}


def parsed_once(reader: str, key: tuple[Hashable, ...], parse: Callable[[], T]) -> T:
    """``parse()``, or its result kept from the previous call with the same ``key``.

    Parameters
    ----------
    reader
        Name of the reader (one kept entry per reader).
    key
        What the result depends on: the file's path and content digest, the reader's
        options.
    parse
        Parses the file; its result must not be modified by callers (arrays are made
        read-only by the caller that caches them).

    Returns
    -------
    What ``parse`` returned. Errors are not kept: a file that failed is parsed again.
    """
    hit = _LAST.get(reader)
    if hit is None or hit[0] != key:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # kept as given, shown below under the filters
            result = parse()
        hit = (key, result, list(caught))
        _LAST[reader] = hit
    for w in hit[2]:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return hit[1]


def clear() -> None:
    """Forget every kept parse (tests; a caller that needs the memory back)."""
    _LAST.clear()
