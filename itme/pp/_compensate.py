"""Spillover compensation of raw ion counts (CATALYST ``compCytof``), before arcsinh."""

from __future__ import annotations

import logging
import time
import warnings
from os import PathLike
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._chain import lazy_compensation
from itme._dask import is_lazy
from itme.core.compensate import compensate_block
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeParameterError, ItmeStateError
from itme.io import metal_columns, read_spillover
from itme.pp._clean_inputs import dense_raw

__all__ = ["compensate"]

logger = logging.getLogger(__name__)


def _metals_of(adata: AnnData) -> dict[str, int]:
    """Metal → column of the channels of ``adata`` (``var["channel"]``, else the var names)."""
    names = list(map(str, adata.var_names))
    chans = adata.var["channel"].astype(str).tolist() if "channel" in adata.var else None
    return metal_columns(names, channels=chans)


def compensate(
    adata: AnnData,
    *,
    spillover: str | PathLike[str] | pd.DataFrame,
    method: Literal["nnls", "flow"] = "nnls",
    copy: bool = False,
) -> AnnData | None:
    """Correct the raw ion counts for spillover between channels (CATALYST's ``compCytof``).

    The spillover matrix ``S`` (rows = emitting channels, columns = receiving channels,
    diagonal 1; CATALYST's layout, see :func:`itme.io.read_spillover`) says that an event
    with true counts ``x`` (a row) is measured as ``x @ S``. Channels are matched by metal
    (``Nd144Di`` in the data = ``Nd144`` or ``144Nd`` in the matrix), whatever the naming
    convention. Matrix channels absent from the data are dropped (their spillover cannot be
    undone: a warning names those that spill into measured channels); data channels absent
    from the matrix are left unchanged. Run it on raw counts, before :func:`itme.pp.arcsinh`.

    Parameters
    ----------
    adata
        Events × channels with raw counts in ``layers["raw"]`` (or ``X`` when that layer is
        absent), from :func:`itme.io.read_cohort`; channels named by metal in
        ``var["channel"]`` (``$PnN``) or the var names.
    spillover
        A CSV path or a DataFrame in CATALYST's layout (:func:`itme.io.read_spillover`
        checks it), e.g. the result of :func:`itme.tl.estimate_spillover`.
    method
        ``"nnls"``: per event the non-negative least-squares solution of ``x @ S = m``
        (CATALYST's default; never negative); ``"flow"``: ``m @ inv(S)`` (flowCore's
        ``compensate``; can give small negative counts).
    copy
        Return a compensated copy instead of modifying ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes:

    - ``layers["raw"]``: a new float32 array of compensated counts (and ``X``, when ``X``
      held the raw counts). On lazy data (a cohort store) a lazy dask array,
      :func:`itme._chain.lazy_compensation` of ``uns``, which :func:`itme.io.open_store`
      applies again to the stored counts (they are not rewritten).
    - ``uns["compensation"]``: ``method``, ``source`` (the file, or ``"DataFrame"``),
      ``matrix`` (DataFrame: the matrix applied, index and columns the var names of the
      compensated channels), ``channels`` (those var names), ``metals``, ``absent`` (matrix
      metals not in the data), ``absent_spilling`` (those of them with spillover into a
      measured channel), ``not_in_matrix`` (var names of metal channels the matrix does not
      list), ``n_negative`` (negative counts after ``flow``, -1 on lazy data: not computed;
      0 for ``nnls``).

    Raises
    ------
    ItmeStateError
        ``X`` was transformed already (``uns["arcsinh"]``), or the counts were compensated
        already (``uns["compensation"]``).
    ItmeInputError
        A bad matrix (see :func:`itme.io.read_spillover`); no channel of the matrix in the
        data; two channels of one metal.
    ItmeParameterError
        Unknown ``method``.
    """
    start = time.perf_counter()
    if method not in ("nnls", "flow"):
        raise ItmeParameterError("method", "'nnls' or 'flow'", method)
    if "compensation" in adata.uns:
        raise ItmeStateError(
            "uns['compensation'] exists: these counts were compensated already; "
            "compensating twice would subtract the spillover twice"
        )
    if "arcsinh" in adata.uns:
        raise ItmeStateError(
            "pp.compensate works on raw ion counts, and X was transformed already "
            "(uns['arcsinh']): call pp.compensate before pp.arcsinh"
        )
    matrix = read_spillover(spillover)
    metals = matrix.attrs["metals"]
    source = matrix.attrs["path"] or "DataFrame"
    data = _metals_of(adata)
    names = list(map(str, adata.var_names))

    col_metals = [metals[c] for c in matrix.columns]
    row_metals = [metals[r] for r in matrix.index]
    square = np.eye(len(col_metals))
    col_pos = {m: j for j, m in enumerate(col_metals)}
    for i, m in enumerate(row_metals):
        square[col_pos[m]] = matrix.iloc[i].to_numpy()
    matched = [m for m in data if m in col_pos]  # data order
    if not matched:
        raise ItmeInputError(
            where=f"spillover matrix {source}",
            expected="channels whose metals are in the data",
            found=f"matrix metals {', '.join(col_metals[:8])}{' ...' if len(col_metals) > 8 else ''}; "
            f"data metals {', '.join(list(data)[:8]) or 'none'}",
            fix="Check that the matrix belongs to this panel",
        )
    absent = [m for m in col_metals if m not in data]
    idx = [col_pos[m] for m in matched]
    spill = square[np.ix_(idx, idx)]
    absent_spilling = [m for m in absent if square[col_pos[m], idx].sum() > 0 and m in row_metals]
    if absent_spilling:
        warnings.warn(
            f"spillover matrix {source}: {', '.join(absent_spilling)} spill into measured "
            "channels but are not in the data, so their spillover cannot be removed",
            ItmeInputWarning,
            stacklevel=2,
        )
    not_in_matrix = [names[i] for m, i in data.items() if m not in col_pos]
    columns = np.array([data[m] for m in matched], dtype=np.intp)

    if copy:
        adata = adata.copy()
    raw_is_x = "raw" not in adata.layers or adata.layers["raw"] is adata.X
    lazy = adata.layers["raw"] if "raw" in adata.layers else adata.X
    var_names = [names[i] for i in columns]
    adata.uns["compensation"] = {
        "method": method,
        "source": source,
        "matrix": pd.DataFrame(spill, index=var_names, columns=var_names),
        "channels": var_names,
        "metals": matched,
        "absent": absent,
        "absent_spilling": absent_spilling,
        "not_in_matrix": not_in_matrix,
        "n_negative": 0,
    }
    if is_lazy(lazy):  # the kernel of a cohort store's X, from uns (itme._chain)
        new = lazy_compensation(adata, lazy)
        if method == "flow":
            adata.uns["compensation"]["n_negative"] = -1  # not computed for a lazy matrix
    else:
        new = compensate_block(dense_raw(adata), columns, spill, method)
        adata.uns["compensation"]["n_negative"] = int(np.count_nonzero(new[:, columns] < 0))
    adata.layers["raw"] = new
    if raw_is_x:
        adata.X = new
    logger.info(
        "compensate (%s, %s): %d channels matched by metal, %d matrix channels absent from the "
        "data%s, %d metal channels not in the matrix; %d events in %.2f s",
        method,
        source,
        len(matched),
        len(absent),
        f" ({', '.join(absent)})" if absent else "",
        len(not_in_matrix),
        adata.n_obs,
        time.perf_counter() - start,
    )
    return adata if copy else None
