"""Read and write single FCS files as AnnData.

The file format work is in :mod:`._fcs_text` (HEADER, TEXT), :mod:`._fcs_format` (layout;
it explains why itme parses FCS itself), :mod:`._fcs_events` (DATA) and :mod:`._flowio` (writing).
"""

from __future__ import annotations

import logging
import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.errors import ItmeInputWarning, ItmeParameterError
from itme.io._fcs_format import parse_fcs
from itme.io._flowio import write_events
from itme.io._tables import MARKER_CLASSES

__all__ = ["read_fcs", "write_fcs"]

logger = logging.getLogger(__name__)


def _unique(names: list[str]) -> tuple[list[str], list[str]]:
    seen: dict[str, int] = {}
    out, dups = [], []
    for name in names:
        if name in seen:
            seen[name] += 1
            dups.append(name)
            out.append(f"{name}-{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out, sorted(set(dups))


def read_fcs(path: str | PathLike[str], *, data_set: int = 0) -> AnnData:
    """Read one FCS file into an AnnData of events × channels.

    Reads FCS 2.0, 3.0 and 3.1; integer (any whole-byte width, masked by ``$PnR``), float
    and double data; both byte orders; files without ``$PnS``; duplicated ``$PnN``; files
    whose ``$ENDDATA`` is one byte past the DATA segment (the Bodenmiller CyTOF files);
    blank HEADER offsets of large files; and files with several data sets. What had to be
    corrected is logged and listed in ``uns["fcs"]["notes"]``; a file that is inconsistent
    but can still be read without guessing (HEADER and TEXT disagree, a duplicated keyword
    with two values, masked or non-finite values, ...) is read with an
    :class:`~itme.errors.ItmeInputWarning` listing what was worked around
    (docs/input-formats.md has the full table). Every size and offset is checked against
    the file before anything is allocated or read.

    Parameters
    ----------
    path
        The FCS file.
    data_set
        Which data set to read from a file that holds several (``$NEXTDATA`` chain).

    Returns
    -------
    AnnData with

    - ``X``: float32 values as stored in the file (integers converted exactly).
    - ``var_names``: ``$PnN`` (``P<n>`` where it is missing), made unique with ``-1``, ``-2``
      suffixes when duplicated.
    - ``var["channel"]`` (``$PnN``), ``var["antigen"]`` (``$PnS``, empty when absent),
      ``var["marker_class"]`` (categorical, ``none`` until a panel says otherwise).
    - ``uns["fcs"]``: ``path``, ``version``, ``data_set``, ``n_data_sets``, ``keywords``
      (every non-channel TEXT keyword, e.g. ``$CYT``, ``$DATE``, ``$TOT``), ``channels``
      (DataFrame of ``$PnN, $PnS, $PnB, $PnE, $PnR, $PnG, $PnV``) and ``notes``.

    Raises
    ------
    ItmeInputError
        The file is missing, truncated, corrupted or uses an unsupported data type; the
        message names the file, the keyword or byte offset, what was expected and found.
        No other exception escapes for any content of the file (tests/fuzz checks it).
    ItmeParameterError
        ``data_set`` is not in the file.
    """
    fcs = parse_fcs(path, data_set=data_set)
    channel_names = list(fcs.channels["PnN"])
    names, dups = _unique([n or f"P{i + 1}" for i, n in enumerate(channel_names)])
    if dups:
        message = f"duplicated $PnN made unique: {', '.join(dups)}"
        fcs.notes.append(message)
        warnings.warn(
            f"{fcs.path}: duplicated channel names ($PnN) {', '.join(dups)} were made unique "
            "with -1, -2 suffixes in var_names; var['channel'] keeps the original names",
            ItmeInputWarning,
            stacklevel=2,
        )
    if fcs.warned:
        warnings.warn(
            f"{fcs.path} is inconsistent; read it anyway: " + "; ".join(fcs.warned),
            ItmeInputWarning,
            stacklevel=2,
        )
    for note in fcs.notes:
        logger.info("%s: %s", fcs.path.name, note)
    var = pd.DataFrame(
        {
            "channel": np.asarray(channel_names, dtype=str),
            "antigen": fcs.channels["PnS"].to_numpy(dtype=str),
            "marker_class": pd.Categorical(["none"] * len(names), categories=list(MARKER_CLASSES)),
        },
        index=pd.Index(names, name=None),
    )
    obs = pd.DataFrame(index=pd.Index(np.arange(fcs.n_events).astype(str)))
    channels = fcs.channels.rename(columns=lambda c: "$" + c).reset_index(drop=True)
    uns = {
        "fcs": {
            "path": str(fcs.path),
            "version": fcs.version,
            "data_set": data_set,
            "n_data_sets": fcs.n_data_sets,
            "keywords": fcs.keywords,
            "channels": channels,
            "notes": list(fcs.notes),
        }
    }
    return AnnData(X=fcs.data, obs=obs, var=var, uns=uns)


def _column_values(adata: AnnData, name: str) -> tuple[np.ndarray, list[str] | None]:
    """An obs column as float32 event values, and the levels when they are codes + 1."""
    col = adata.obs[name]
    if isinstance(col.dtype, pd.CategoricalDtype):
        numeric = pd.to_numeric(pd.Series(col.cat.categories), errors="coerce")
        if numeric.notna().all():
            return numeric.to_numpy(dtype=np.float32)[col.cat.codes.to_numpy()], None
        levels = [str(c) for c in col.cat.categories]
        return (col.cat.codes.to_numpy() + 1).astype(np.float32), levels
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float32), None
    raise ItmeParameterError(
        "obs_columns", "numeric, boolean or categorical obs columns", f"{name} ({col.dtype})"
    )


def write_fcs(
    adata: AnnData,
    path: str | PathLike[str],
    *,
    layer: str | None = None,
    obs_columns: list[str] | None = None,
    keywords: dict[str, str] | None = None,
) -> Path:
    """Write events to an FCS 3.1 file (float32, little-endian) with flowio.

    Parameters
    ----------
    adata
        Events × channels. ``$PnN`` comes from ``var["channel"]`` when present (otherwise
        ``var_names``), ``$PnS`` from ``var["antigen"]``.
    path
        Output file; its folder must exist.
    layer
        Write this layer instead of ``X`` (e.g. ``"raw"`` for untransformed ion counts).
    obs_columns
        Per-event ``obs`` columns appended as extra channels, e.g. ``["metacluster"]``.
        Categoricals whose categories are numbers are written as those numbers; other
        categoricals as codes + 1, with the levels stored in keyword ``ITME_<COLUMN>_LEVELS``.
    keywords
        Extra TEXT keywords (``$CYT``, ``$DATE``, free-form keys...).

    Returns
    -------
    The path written.

    Raises
    ------
    ItmeParameterError
        The folder of ``path`` does not exist; an unknown ``layer`` or obs column; an obs
        column that is neither numeric, boolean nor categorical.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ItmeParameterError("path", "a file in an existing folder", str(path))
    if layer is not None and layer not in adata.layers:
        raise ItmeParameterError(
            "layer", f"None or a layer of adata ({', '.join(adata.layers)})", layer
        )
    matrix = adata.layers[layer] if layer is not None else adata.X
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    names = list(adata.var["channel"]) if "channel" in adata.var else list(adata.var_names)
    labels = list(adata.var["antigen"]) if "antigen" in adata.var else [""] * adata.n_vars
    extra_kw: dict[str, str] = {}
    columns = [np.asarray(matrix, dtype=np.float32)]
    for name in obs_columns or []:
        if name not in adata.obs:
            raise ItmeParameterError(
                "obs_columns", f"columns of adata.obs ({', '.join(adata.obs.columns)})", name
            )
        values, levels = _column_values(adata, name)
        columns.append(values[:, None])
        names.append(name)
        labels.append(name)
        if levels is not None:
            extra_kw[f"ITME_{name.upper()}_LEVELS"] = ",".join(levels)
    data = np.ascontiguousarray(np.hstack(columns) if len(columns) > 1 else columns[0], dtype="<f4")
    meta = {"$FIL": path.name, "CREATOR": "itme"}
    meta.update(extra_kw)
    meta.update(keywords or {})
    write_events(path, data, names, labels, meta)
    return path
