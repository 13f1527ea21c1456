"""Category colours, stored the scanpy way: ``uns["<key>_colors"]``, one per category, in order.

Internal (not public API). :func:`itme.tl.annotate` stores the colours of the subsets
(``uns["subset_colors"]``) and :func:`itme.tl.patient_clusters` those of the iTME clusters
(``uns["itme_cluster_colors"]``); every :mod:`itme.pl` figure reads them through
:func:`category_colors`, and scanpy's plots use the same entries, so one category has one
colour in every figure of a run.

The palette is scanpy's own choice (:mod:`scanpy.plotting.palettes`): its 20-colour default
up to 20 categories, beyond that the 102 maximally distinct colours of
``godsnot_102`` without the ones too light to read on white (yellow, pale cyan, ...), which
leaves more than 80 distinct colours. ``"unassigned"`` is always grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["UNASSIGNED_COLOR", "category_colors", "palette", "store_colors"]

#: colour of the "unassigned" label (events no phenotype fits)
UNASSIGNED_COLOR = "#b0b0b0"
#: colours lighter than this relative luminance are hard to see on white and are skipped
_MAX_LUMINANCE = 0.75


def _luminance(color: str) -> float:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def palette(n: int) -> list[str]:
    """``n`` distinct colours (hex), scanpy's default palette for that many categories.

    Parameters
    ----------
    n
        Number of categories.

    Returns
    -------
    The colours; they repeat only beyond the palette's length (more than 80 categories).
    """
    from scanpy.plotting import palettes

    if n <= len(palettes.default_20):
        base = list(palettes.default_20)
    else:
        base = [c for c in palettes.default_102 if _luminance(c) <= _MAX_LUMINANCE]
    return [str(base[i % len(base)]).lower() for i in range(n)]


def _default(categories: Sequence[str], unassigned: str | None) -> list[str]:
    named = [c for c in categories if c != unassigned]
    colours = iter(palette(len(named)))
    return [UNASSIGNED_COLOR if c == unassigned else next(colours) for c in categories]


def _stored(adata: Any, key: str, n: int) -> list[str] | None:
    value = adata.uns.get(f"{key}_colors") if hasattr(adata, "uns") else None
    if value is None:
        return None
    colours = [str(c) for c in np.asarray(value).ravel()]
    return colours if len(colours) == n else None


def store_colors(adata: Any, key: str, *, unassigned: str | None = None) -> None:
    """Write ``uns["<key>_colors"]`` for the categories of ``obs[key]`` (scanpy's layout).

    Colours already stored for exactly these categories are kept (a user's choice wins).

    Parameters
    ----------
    adata
        AnnData with a categorical ``obs[key]``.
    key
        The ``obs`` column.
    unassigned
        A category drawn grey (e.g. ``"unassigned"``), not taking a palette colour.
    """
    categories = [str(c) for c in adata.obs[key].cat.categories]
    if _stored(adata, key, len(categories)) is None:
        adata.uns[f"{key}_colors"] = np.array(_default(categories, unassigned), dtype=object)


def category_colors(
    adata: Any, key: str, categories: Sequence[Any] | None = None
) -> dict[str, str]:
    """The colour of each category of ``obs[key]``: the stored ones, else the default palette.

    Parameters
    ----------
    adata
        AnnData (or anything with ``obs`` and ``uns``).
    key
        The ``obs`` column (its colours are ``uns["<key>_colors"]``).
    categories
        The categories, in order (default: those of ``obs[key]``).

    Returns
    -------
    ``{category: colour}``; categories not in ``obs[key]`` get further palette colours.
    """
    obs = getattr(adata, "obs", None)
    own: list[str] = []
    if obs is not None and key in obs.columns and hasattr(obs[key], "cat"):
        own = [str(c) for c in obs[key].cat.categories]
    wanted = own if categories is None else [str(c) for c in categories]
    colours = _stored(adata, key, len(own)) if own else None
    if colours is None:
        colours = _default(own, "unassigned")
    mapping = dict(zip(own, colours, strict=True))
    extra = [c for c in wanted if c not in mapping]
    if extra:
        more = palette(len(own) + len(extra))[len(own) :]
        mapping.update(zip(extra, more, strict=True))
    return {c: mapping[c] for c in wanted}
