"""Shared input checks of the cell-level tools: which matrix, which markers."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from itme.errors import ItmeInputError, ItmeParameterError


def matrix(adata: AnnData, layer: str | None) -> np.ndarray:
    """``X`` or ``layers[layer]`` as a dense array (no copy when already dense)."""
    if layer is not None and layer not in adata.layers:
        raise ItmeParameterError("layer", f"None or one of {list(adata.layers)}", layer)
    X = adata.X if layer is None else adata.layers[layer]
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X)


def _of_class(adata: AnnData, classes: Sequence[str]) -> list[str]:
    """var_names whose ``var["marker_class"]`` is in ``classes`` (the column must exist)."""
    return [
        str(v)
        for v, c in zip(adata.var_names, adata.var["marker_class"].astype(str), strict=True)
        if c in classes
    ]


def markers_of_class(adata: AnnData, classes: Sequence[str]) -> list[str]:
    """var_names whose ``var["marker_class"]`` is in ``classes`` (all when none or no column)."""
    chosen = _of_class(adata, classes) if "marker_class" in adata.var else []
    return chosen or [str(v) for v in adata.var_names]


def check_markers(adata: AnnData, markers: Sequence[str], name: str = "markers") -> list[str]:
    """Validate user-given markers against var_names, suggesting the nearest spelling."""
    names = [str(v) for v in adata.var_names]
    markers = [str(m) for m in markers]
    missing = [m for m in markers if m not in names]
    if missing:
        hints = {m: difflib.get_close_matches(m, names, n=1) for m in missing}
        fix = "; ".join(f"{m} -> {h[0]}?" for m, h in hints.items() if h) or "Check var_names."
        raise ItmeParameterError(name, "names in adata.var_names", missing, fix=fix)
    if not markers or len(set(markers)) != len(markers):
        raise ItmeParameterError(name, "a non-empty list of distinct markers", markers)
    return markers


def type_markers(adata: AnnData) -> list[str]:
    """The ``type`` markers of ``var["marker_class"]``; an error when there are none."""
    if "marker_class" not in adata.var:
        raise ItmeInputError(
            where='adata.var["marker_class"]',
            expected="a column marking the type markers to cluster on",
            found="no such column",
            fix="Read the data with itme.io.read_cohort (panel.csv), or pass markers=[...].",
        )
    chosen = _of_class(adata, ("type",))
    if not chosen:
        raise ItmeInputError(
            where='adata.var["marker_class"]',
            expected='at least one "type" marker',
            found="none",
            fix="Mark the clustering markers as type in panel.csv, or pass markers=[...].",
        )
    return chosen
