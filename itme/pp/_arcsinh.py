"""arcsinh transformation of marker channels."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from anndata import AnnData

from itme._dask import is_lazy, map_rows
from itme.core.transform import arcsinh_block, arcsinh_into
from itme.errors import ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.pp._clean_inputs import dense_raw

__all__ = ["arcsinh"]

logger = logging.getLogger(__name__)

#: names of channels that are never transformed by default when no marker classes are set
_TECHNICAL = {
    "time",
    "eventlength",
    "celllength",
    "center",
    "offset",
    "width",
    "residual",
    "beaddist",
}


def arcsinh(
    adata: AnnData,
    *,
    cofactor: float | Mapping[str, float] = 5.0,
    channels: Sequence[str] | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Transform marker channels to ``arcsinh(raw / cofactor)`` into a new ``X``.

    The raw ion counts stay in ``layers["raw"]`` untouched: ``X`` becomes a new float32
    array (a lazy dask array, computed block by block when used, when ``layers["raw"]`` is
    one: see :func:`itme.io.open_store`), filled block by block (no float64 copy of the matrix is made), holding the
    transformed values on the transformed channels and a copy of the raw values on the
    others. Applying the transformation twice is an error.

    Parameters
    ----------
    adata
        Events x channels with raw values in ``layers["raw"]`` (as made by
        :func:`itme.io.read_cohort`) or, when that layer is absent, in ``X`` (it is then
        stored as ``layers["raw"]`` first).
    cofactor
        One cofactor for every transformed channel (5 for CyTOF), or a mapping channel ->
        cofactor; channels not in the mapping get 5. Keys are var names.
    channels
        var names to transform. Default: every channel whose ``var["marker_class"]`` is
        ``type`` or ``state``; when no channel has those classes (e.g. a file read with
        :func:`itme.io.read_fcs`), every channel except the technical ones (Time,
        Event_length/Cell_length, the Gaussian parameters, beadDist), with a warning.
    copy
        Return a transformed copy instead of modifying ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes:

    - ``X``: new float32 array, ``arcsinh(raw / cofactor)`` on the transformed channels.
    - ``layers["raw"]``: the raw values (set to the old ``X`` if it was absent).
    - ``uns["arcsinh"]``: ``cofactor`` (float array, one per transformed channel) and
      ``channels`` (list of the transformed var names).

    Raises
    ------
    ItmeStateError
        ``uns["arcsinh"]`` exists: the data were transformed already.
    ItmeParameterError
        Unknown channels or non-positive cofactors.
    """
    start = time.perf_counter()
    if "arcsinh" in adata.uns:
        raise ItmeStateError(
            "pp.arcsinh was applied already (uns['arcsinh'] exists: cofactor "
            f"{np.unique(np.asarray(adata.uns['arcsinh'].get('cofactor', []))).tolist()}); "
            "transforming twice would compress the data a second time. Start again from "
            "layers['raw'] if you need another cofactor."
        )
    names = list(map(str, adata.var_names))
    chosen = _choose_channels(adata, channels)
    cofactors = _cofactors(cofactor, chosen)
    if copy:
        adata = adata.copy()
    raw = _raw_values(adata)
    index = {n: i for i, n in enumerate(names)}
    columns = np.array([index[c] for c in chosen], dtype=np.intp)

    if is_lazy(raw):  # one kernel call per block of events, lazily (nothing is computed here)
        adata.X = map_rows(
            arcsinh_block, raw, columns, cofactors, dtype=np.float32, columns_out=raw.shape[1]
        )
    else:
        out = np.empty(raw.shape, dtype=np.float32)
        arcsinh_into(raw, out, columns, cofactors)
        adata.X = out
    adata.uns["arcsinh"] = {
        "cofactor": np.asarray(cofactors, dtype=np.float64),
        "channels": list(chosen),
    }
    logger.info(
        "arcsinh on %d of %d channels (cofactor %s) for %d events in %.2f s",
        len(chosen),
        len(names),
        ", ".join(f"{c:g}" for c in np.unique(cofactors)) or "-",
        adata.n_obs,
        time.perf_counter() - start,
    )
    return adata if copy else None


def _raw_values(adata: AnnData) -> np.ndarray:
    """The raw matrix: layers["raw"], or X (then stored as layers["raw"], same object)."""
    lazy = adata.layers["raw"] if "raw" in adata.layers else adata.X
    raw = lazy if is_lazy(lazy) else dense_raw(adata)
    if "raw" not in adata.layers:
        adata.layers["raw"] = raw
    return adata.layers["raw"]


def _choose_channels(adata: AnnData, channels: Sequence[str] | None) -> list[str]:
    names = list(map(str, adata.var_names))
    if channels is not None:
        if isinstance(channels, str):
            channels = [channels]
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise ItmeParameterError("channels", "var names of adata", unknown)
        return list(dict.fromkeys(channels))
    if "marker_class" in adata.var:
        classes = adata.var["marker_class"].astype(str)
        chosen = [n for n, c in zip(names, classes, strict=True) if c in ("type", "state")]
        if chosen:
            return chosen
    chosen = [n for n in names if not _is_technical(adata, n)]
    warnings.warn(
        "no channel has marker_class 'type' or 'state'; transforming every channel except "
        f"the technical ones ({len(chosen)} of {len(names)}). Give a panel, or channels=, "
        "to choose.",
        ItmeInputWarning,
        stacklevel=3,
    )
    return chosen


def _is_technical(adata: AnnData, name: str) -> bool:
    candidates = [name]
    if "channel" in adata.var:
        candidates.append(str(adata.var.loc[name, "channel"]))
    return any("".join(ch for ch in c.lower() if ch.isalnum()) in _TECHNICAL for c in candidates)


def _cofactors(cofactor: float | Mapping[str, float], chosen: list[str]) -> np.ndarray:
    if isinstance(cofactor, Mapping):
        unknown = [c for c in cofactor if c not in chosen]
        if unknown:
            raise ItmeParameterError(
                "cofactor", "a mapping whose keys are transformed channels", unknown
            )
        given = [cofactor.get(c, 5.0) for c in chosen]
    else:
        given = [cofactor] * len(chosen)
    try:
        values = np.array([float(v) for v in given], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ItmeParameterError("cofactor", "positive finite numbers", cofactor) from exc
    if values.size and (not np.all(np.isfinite(values)) or values.min() <= 0):
        raise ItmeParameterError("cofactor", "positive finite numbers", cofactor)
    return values
