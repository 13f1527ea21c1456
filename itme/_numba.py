"""Numba's on-disk cache for the compiled code of umap-learn and flowsom.

umap-learn and flowsom compile their numba functions in every new Python process (most are
declared without ``cache=True``): ~5 CPU-seconds for umap-learn's neighbour graph and layout
and more for flowsom's SOM, on every run of the pipeline and in every test process, although
the machine code is the same each time. :func:`cache_compiled` switches numba's own cache on
for the functions of the modules given, before their first call, so the second and later
processes load the code from disk (``__pycache__`` beside the package, or
``$NUMBA_CACHE_DIR``; numba invalidates an entry when the source file changes). The compiled
code, and so every result, is identical; only the compilation is skipped.
"""

from __future__ import annotations

import logging
from types import ModuleType

logger = logging.getLogger(__name__)

_done: set[str] = set()


def cache_compiled(*modules: ModuleType) -> int:
    """Switch numba's on-disk cache on for every jitted function of ``modules``.

    Functions that already cache, and modules seen before, are left alone.

    Parameters
    ----------
    *modules
        Imported modules (e.g. ``umap.umap_``, ``flowsom.models._som``).

    Returns
    -------
    int
        The number of functions whose cache was switched on.
    """
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba's internals moved: compile as before
        return 0
    n = 0
    for module in modules:
        if module.__name__ in _done:
            continue
        _done.add(module.__name__)
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                try:
                    value.enable_caching()
                except RuntimeError:  # no writable cache location: compile as before
                    logger.debug("numba cache unavailable for %s", module.__name__)
                    return n
                n += 1
    logger.debug("numba cache switched on for %d functions", n)
    return n
