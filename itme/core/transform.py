"""arcsinh transformation of ion counts, chunked into a preallocated float32 output.

Mass-cytometry ion counts are transformed with ``arcsinh(x / cofactor)`` (cofactor 5 for
CyTOF, Bendall et al., *Science* 2011). On a cohort matrix of millions of events the
naive ``np.arcsinh(raw / 5)`` makes two float temporaries of the whole matrix; here the
output is allocated once and filled in row blocks, so the extra memory is one block.
"""

from __future__ import annotations

import numpy as np

from itme.errors import ItmeParameterError

__all__ = ["arcsinh_block", "arcsinh_into", "arcsinh_values"]

#: rows per block; 65,536 rows x 64 channels of float32 is 16 MiB of temporaries
BLOCK_ROWS = 65_536


def arcsinh_values(values: np.ndarray, cofactor: float) -> np.ndarray:
    """Return ``arcsinh(values / cofactor)`` as float32.

    Parameters
    ----------
    values
        Raw values (any shape); never modified.
    cofactor
        The positive cofactor.

    Returns
    -------
    A new float32 array of the same shape (the only temporary is the output itself).
    """
    out = np.divide(values, np.float32(cofactor), dtype=np.float32)
    np.arcsinh(out, out=out)
    return out


def arcsinh_into(
    raw: np.ndarray,
    out: np.ndarray,
    columns: np.ndarray,
    cofactors: np.ndarray,
    *,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """Write ``raw`` into ``out``, with ``arcsinh(raw / cofactor)`` on ``columns``.

    Parameters
    ----------
    raw
        2-D array (events x channels) of raw values; never modified.
    out
        Preallocated float32 array of the same shape (C-contiguous); filled in place.
        Columns not listed in ``columns`` receive a copy of ``raw``.
    columns
        Integer indices of the columns to transform.
    cofactors
        One positive cofactor per entry of ``columns``.
    block_rows
        Rows processed per block (bounds the temporary memory).

    Returns
    -------
    ``out``, filled.
    """
    if raw.shape != out.shape:
        raise ItmeParameterError("out", f"an array of shape {raw.shape}", out.shape)
    if out.dtype != np.float32:
        raise ItmeParameterError("out", "a float32 array", str(out.dtype))
    columns = np.asarray(columns, dtype=np.intp)
    inv = (1.0 / np.asarray(cofactors, dtype=np.float64)).astype(np.float32)
    n_rows = raw.shape[0]
    all_columns = columns.size == raw.shape[1] and np.array_equal(columns, np.arange(raw.shape[1]))
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        if all_columns:
            block = out[start:stop]
            np.multiply(raw[start:stop], inv, out=block, casting="unsafe")
            np.arcsinh(block, out=block)
            continue
        out[start:stop] = raw[start:stop]
        if columns.size:
            block = out[start:stop, columns] * inv
            np.arcsinh(block, out=block)
            out[start:stop, columns] = block
    return out


def arcsinh_block(block: np.ndarray, columns: np.ndarray, cofactors: np.ndarray) -> np.ndarray:
    """Return a new float32 copy of ``block`` with ``arcsinh(raw / cofactor)`` on ``columns``.

    The kernel of the lazy (dask) path: applied to every block of events, it gives the same
    bytes as :func:`arcsinh_into` on the whole matrix (the operations are per element).

    Parameters
    ----------
    block
        2-D array (events x channels) of raw values; never modified.
    columns
        Integer indices of the columns to transform.
    cofactors
        One positive cofactor per entry of ``columns``.

    Returns
    -------
    The transformed float32 block.
    """
    block = np.asarray(block)
    return arcsinh_into(block, np.empty(block.shape, dtype=np.float32), columns, cofactors)
