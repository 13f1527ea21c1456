"""Numba's on-disk cache for the compiled code of umap-learn, pynndescent and flowsom.

umap-learn, pynndescent and flowsom compile their numba functions in every new Python
process (most are declared without ``cache=True``): ~10 CPU-seconds for pynndescent's
distance functions, which are compiled when the module is imported (they declare their
signatures), a few for umap-learn's layout and for flowsom's SOM, on every run of the
pipeline and in every test process, although the machine code is the same each time. This
module switches numba's own cache on for them, so the second and later processes load the
code from disk (``__pycache__`` beside the package, or ``$NUMBA_CACHE_DIR``; numba
invalidates an entry when the source file changes). The compiled code, and so every result,
is identical; only the compilation is skipped.

- :func:`cache_compiled` switches the cache on for the functions of imported modules, before
  their first call, and gives each a stable identity (below).
- :func:`caching_imports` makes ``cache=True`` the default of numba's ``jit``/``njit`` while
  a library is imported, for the functions it compiles at import.

A stable identity: numba finds a cached entry by the argument types, and a function passed
as an argument, or as a default (flowsom's ``SOM(..., distf=eucl)``), is typed by the
function object itself, known across processes by a random id drawn in each process. The
entry saved by one process then never matches in the next one, and the function is
compiled again every time (and one more entry is written to the cache). Each jitted
function of the modules given to :func:`cache_compiled` gets an id made of its module and
name instead, the same in every process.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from types import ModuleType

logger = logging.getLogger(__name__)

_done: set[str] = set()


def cache_compiled(*modules: ModuleType) -> int:
    """Switch numba's on-disk cache on for every jitted function of ``modules``.

    Functions that already cache keep their setting; every jitted function gets a stable
    identity (see the module docstring) unless it has one already. Modules seen before are
    left alone.

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
        for name, value in vars(module).items():
            if not isinstance(value, Dispatcher):
                continue
            _stable_id(value, f"itme:{module.__name__}.{name}")
            if isinstance(value._cache, NullCache):
                try:
                    value.enable_caching()
                except RuntimeError:  # no writable cache location: compile as before
                    logger.debug("numba cache unavailable for %s", module.__name__)
                    return n
                n += 1
    logger.debug("numba cache switched on for %d functions", n)
    return n


def _stable_id(dispatcher: object, uid: str) -> None:
    """Give a numba dispatcher the id ``uid`` unless it has one (numba draws one lazily)."""
    if getattr(dispatcher, "_MemoMixin__uuid", "") is None:
        with contextlib.suppress(AttributeError, AssertionError):  # numba's internals moved
            dispatcher._set_uuid(uid)  # type: ignore[attr-defined]


@contextlib.contextmanager
def caching_imports() -> Iterator[None]:
    """Within the block, numba's ``jit`` and ``njit`` cache their code on disk by default.

    For libraries that compile at import (functions declared with their signatures, e.g.
    pynndescent's distances): import them inside the block. A module imported before (in
    this process) is not imported again, and is compiled as it was. Functions numba cannot
    cache are compiled as before; its warning saying so is not shown.

    Yields
    ------
    None
    """
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency of umap-learn and flowsom
        yield
        return
    njit, jit = numba.njit, numba.jit

    def cached(decorator):
        def wrapper(*args, **kwargs):
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)

        return wrapper

    numba.njit, numba.jit = cached(njit), cached(jit)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Cannot cache compiled function")
            yield
    finally:
        numba.njit, numba.jit = njit, jit
