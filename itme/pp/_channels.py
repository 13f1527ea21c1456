"""The analysis layout: ``X`` holds the markers only, the other channels sit beside it.

scanpy takes ``X`` as the representation of every event (``sc.pp.neighbors`` uses ``X``
directly below 50 variables and its PCA above), so an ``X`` that still holds Time, DNA,
Event_length or the Gaussian parameters makes scanpy cluster by acquisition time.
:func:`split_channels` moves those channels out of ``X`` into ``obsm`` (their values kept,
event by event), and :func:`join_channels` puts them back for the functions that need them
(:func:`itme.pp.clean` needs DNA, cisplatin, beads; :func:`itme.pp.correct_drift` Time).
Both change the variable axis, so both return a new AnnData.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.errors import ItmeParameterError, ItmeStateError

__all__ = ["join_channels", "split_channels"]

logger = logging.getLogger(__name__)

#: marker classes kept in ``X`` by default: the markers itme clusters on and compares
MARKER_CLASSES = ("type", "state")


def _columns(matrix: object, cols: np.ndarray) -> np.ndarray:
    """Columns ``cols`` of a dense, sparse or dask matrix as a dense float32 array."""
    part = matrix[:, cols]  # type: ignore[index]
    if hasattr(part, "compute"):
        part = part.compute()
    if hasattr(part, "toarray"):
        part = part.toarray()
    return np.asarray(part, dtype=np.float32)


def split_channels(
    adata: AnnData,
    *,
    keep: Sequence[str] | None = None,
    key_added: str = "other_channels",
) -> AnnData:
    """Return a new AnnData whose ``X`` holds the markers only (scanpy's layout).

    The channels that are not markers (by default those whose ``var["marker_class"]`` is
    neither ``type`` nor ``state``: Time, Event_length, DNA, cisplatin, beads, Gaussian
    parameters, unpanelled channels) leave the variable axis; their values are kept in
    ``obsm`` as DataFrames, so nothing is lost and :func:`join_channels` restores the
    original layout. ``layers`` are split the same way (``layers["raw"]`` keeps the
    markers' ion counts).

    Parameters
    ----------
    adata
        Events × channels, usually after :func:`itme.pp.arcsinh`.
    keep
        var names to keep in ``X``, in this order. Default: the ``type`` and ``state``
        markers of ``var["marker_class"]``; without that column, the channels transformed by
        :func:`itme.pp.arcsinh` (``uns["arcsinh"]["channels"]``).
    key_added
        Name of the ``obsm`` entries and of the ``uns`` record.

    Returns
    -------
    AnnData
        A new AnnData with the kept channels as variables (``obs``, ``obsm``, ``obsp`` and
        ``uns`` carried over), and:

        - ``obsm[key_added]``: DataFrame events × moved channels, their ``X`` values
          (arcsinh-transformed where :func:`itme.pp.arcsinh` transformed them, raw
          otherwise, e.g. Time).
        - ``obsm[f"{key_added}_<layer>"]``: the same for every layer (``..._raw``: ion
          counts).
        - ``uns[key_added]``: ``var`` (DataFrame, the ``var`` rows of the moved channels),
          ``var_order`` (every channel in the original order), ``layers`` (the layers
          split).

    Raises
    ------
    ItmeParameterError
        ``keep`` names unknown channels, or nothing would be kept.
    ItmeStateError
        ``obsm[key_added]`` exists already (the channels were split before).
    """
    if key_added in adata.obsm or key_added in adata.uns:
        raise ItmeStateError(
            f"obsm[{key_added!r}] exists: the channels were split already "
            "(itme.pp.join_channels restores them)."
        )
    names = [str(v) for v in adata.var_names]
    if keep is None:
        kept = _default_markers(adata)
    else:
        kept = [str(k) for k in ([keep] if isinstance(keep, str) else keep)]
        unknown = [k for k in kept if k not in names]
        if unknown:
            raise ItmeParameterError("keep", "var names of adata", unknown)
    if not kept or len(set(kept)) != len(kept):
        raise ItmeParameterError("keep", "a non-empty list of distinct var names", kept)
    moved = [n for n in names if n not in set(kept)]
    keep_idx = adata.var_names.get_indexer(kept)
    move_idx = adata.var_names.get_indexer(moved)
    obsm = dict(adata.obsm.items())
    layers = {}
    for layer in adata.layers.keys():
        values = adata.layers[layer]
        layers[layer] = values[:, keep_idx]
        if layer == "raw" and values is adata.X:
            layers[layer] = None  # one object: X and raw stay the same array
        obsm[f"{key_added}_{layer}"] = pd.DataFrame(
            _columns(values, move_idx), index=adata.obs_names, columns=moved
        )
    X = adata.X[:, keep_idx] if adata.X is not None else None
    if "raw" in layers and layers["raw"] is None:
        layers["raw"] = X
    obsm[key_added] = pd.DataFrame(
        _columns(adata.X, move_idx) if adata.X is not None else np.empty((adata.n_obs, 0)),
        index=adata.obs_names,
        columns=moved,
    )
    uns = dict(adata.uns)
    uns[key_added] = {
        "var": adata.var.iloc[move_idx].copy(),
        "var_order": np.array(names, dtype=object),
        "layers": np.array(list(adata.layers.keys()), dtype=object),
    }
    out = AnnData(
        X=X,
        obs=adata.obs.copy(),
        var=adata.var.iloc[keep_idx].copy(),
        uns=uns,
        obsm=obsm,
        obsp=dict(adata.obsp.items()),
        layers=layers,
    )
    logger.info(
        "split_channels: %d markers kept in X, %d channels moved to obsm[%r]",
        len(kept),
        len(moved),
        key_added,
    )
    return out


def join_channels(adata: AnnData, *, key: str = "other_channels") -> AnnData:
    """Return a new AnnData with the channels moved by :func:`split_channels` back in ``X``.

    The inverse of :func:`split_channels`: the variables come back in their original order
    with their ``var`` rows, ``X`` and every split layer get their columns back.

    Parameters
    ----------
    adata
        The result of :func:`split_channels` (e.g. a run's ``cells.h5ad``).
    key
        The ``key_added`` given to :func:`split_channels`.

    Returns
    -------
    AnnData
        A new AnnData with every channel as a variable; ``obsm[key]``,
        ``obsm[f"{key}_<layer>"]`` and ``uns[key]`` are removed.

    Raises
    ------
    ItmeStateError
        ``uns[key]`` or ``obsm[key]`` is missing (the channels were not split).
    """
    if key not in adata.uns or key not in adata.obsm:
        raise ItmeStateError(
            f"uns[{key!r}] / obsm[{key!r}] missing: these channels were not split by "
            "itme.pp.split_channels, so there is nothing to join."
        )
    info = adata.uns[key]
    order = [str(v) for v in np.asarray(info["var_order"])]
    moved = adata.obsm[key]
    split_layers = [str(v) for v in np.asarray(info.get("layers", []))]

    def joined(markers: object, others: pd.DataFrame) -> np.ndarray:
        full = pd.concat(
            [
                pd.DataFrame(_columns(markers, np.arange(adata.n_vars)), columns=adata.var_names),
                pd.DataFrame(others.to_numpy(np.float32), columns=others.columns),
            ],
            axis=1,
        )
        return full[order].to_numpy(np.float32)

    X = joined(adata.X, moved)
    layers = {
        layer: joined(adata.layers[layer], adata.obsm[f"{key}_{layer}"])
        for layer in split_layers
        if layer in adata.layers
    }
    var = pd.concat([adata.var, info["var"]])
    var = var.loc[order]
    for col in var.columns:  # categorical columns come back categorical (concat may drop it)
        parts = [adata.var[col].dtype, info["var"][col].dtype] if col in info["var"] else []
        cats = [c for d in parts if isinstance(d, pd.CategoricalDtype) for c in d.categories]
        if cats:
            var[col] = var[col].astype(pd.CategoricalDtype(list(dict.fromkeys(cats))))
    drop = {key, *(f"{key}_{layer}" for layer in split_layers)}
    uns = {k: v for k, v in adata.uns.items() if k != key}
    return AnnData(
        X=X,
        obs=adata.obs.copy(),
        var=var,
        uns=uns,
        obsm={k: v for k, v in adata.obsm.items() if k not in drop},
        obsp=dict(adata.obsp.items()),
        layers=layers,
    )


def _default_markers(adata: AnnData) -> list[str]:
    names = [str(v) for v in adata.var_names]
    if "marker_class" in adata.var:
        classes = adata.var["marker_class"].astype(str).to_numpy()
        chosen = [n for n, c in zip(names, classes, strict=True) if c in MARKER_CLASSES]
        if chosen:
            return chosen
    if "arcsinh" in adata.uns:
        transformed = {str(c) for c in adata.uns["arcsinh"]["channels"]}
        return [n for n in names if n in transformed]
    raise ItmeParameterError(
        "keep",
        "channel names (no var['marker_class'] type/state and no uns['arcsinh'] to choose "
        "the markers from)",
        None,
    )
