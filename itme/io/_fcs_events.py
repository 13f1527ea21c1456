"""The DATA segment of an FCS data set, read with numpy into float32 events.

Reads straight into the caller's matrix (a cohort's preallocated array): the DATA segment
itself when it already is that matrix's bytes (float32 in the machine's byte order, every
channel in its order: the usual CyTOF file), otherwise through one reusable byte buffer, for
integers of any whole-byte width (the 24-bit Cytek xP5 files included), floats and doubles
in either byte order. What the values themselves reveal (integers above
``$PnR`` that are masked, integers rounded to float32, NaN or infinity) is counted in the
file's notes.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from itme.io._fcs_text import fail

if TYPE_CHECKING:
    from itme.io._fcs_format import FcsFile

_BLOCK_ROWS = 8192
_EXACT_FLOAT32 = 2**24  # integers above this are rounded when stored as float32


def _next_power_of_two(x: int) -> int:
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


def read_events(
    fcs: FcsFile,
    out: np.ndarray,
    columns: np.ndarray,
    buffer: np.ndarray | None = None,
    *,
    digest: Any = None,
) -> np.ndarray:
    """Read the events of ``fcs`` into ``out``.

    Integers are masked to the next power of two of ``$PnR`` (FCS 3.1 §3.3.2). Values that
    were masked, rounded to float32 or are not finite are counted in ``fcs.notes`` (and
    ``fcs.warned``).

    Parameters
    ----------
    fcs
        A file parsed by :func:`parse_fcs` (``only_text=True`` is enough).
    out
        Float32 array, events × ``len(columns)``; filled in place.
    columns
        ``columns[j]`` is the file's column that lands in ``out[:, j]``.
    buffer
        uint8 array reused across files to hold the raw DATA bytes (``None``: allocate when
        needed; a file whose DATA segment is ``out``'s bytes is read into ``out`` itself).
    digest
        A ``hashlib`` object: the whole file is read (one read, not the DATA segment only)
        and every byte of it is fed to ``digest``, so the checksum costs no second read.

    Returns
    -------
    The buffer (grown when it was too small), to pass to the next call.

    Raises
    ------
    ItmeInputError
        The DATA segment cannot be read (``fcs.layout.error``), or the file changed since it
        was parsed.
    """
    lay, n = fcs.layout, fcs.n_events
    if lay.error is not None:
        raise lay.error
    nbytes = n * lay.row_bytes
    if _is_image(fcs, out, columns):
        _read_image(fcs, out, digest)
        return buffer
    try:
        with open(fcs.path, "rb") as fh:
            first, size = (
                (0, os.fstat(fh.fileno()).st_size) if digest is not None else (lay.start, nbytes)
            )
            if buffer is None or buffer.size < size:
                buffer = np.empty(size, dtype=np.uint8)
            fh.seek(first)
            got = fh.readinto(memoryview(buffer[:size]))
    except OSError as exc:
        raise fail(fcs.path, f"the DATA segment cannot be read ({exc.strerror or exc})") from exc
    if digest is not None:
        digest.update(memoryview(buffer[:got]))  # hashlib releases the GIL on large buffers
        got = max(0, min(got - lay.start, nbytes))
    raw = buffer[lay.start - first : lay.start - first + nbytes]
    if got != nbytes:
        raise fail(
            fcs.path,
            f"the file ends inside the DATA segment ({got} of {nbytes} bytes); it changed "
            "after its TEXT was read",
        )
    if lay.datatype in {"F", "D"}:
        _read_floats(fcs, raw, out, columns)
    else:
        _read_integers(fcs, raw, out, columns)
    return buffer


def _is_image(fcs: FcsFile, out: np.ndarray, columns: np.ndarray) -> bool:
    """Whether ``out`` can hold the DATA segment's bytes as they are.

    Float32 in this machine's byte order, every column of the file in its order, ``out``
    C-contiguous: the usual CyTOF file read whole.
    """
    lay = fcs.layout
    return (
        lay.datatype == "F"
        and lay.big_endian == (sys.byteorder == "big")
        and out.dtype == np.float32
        and out.flags.c_contiguous
        and out.shape == (fcs.n_events, len(lay.widths))
        and np.array_equal(columns, np.arange(len(lay.widths)))
    )


def _read_image(fcs: FcsFile, out: np.ndarray, digest: Any) -> None:
    """Read the DATA segment straight into ``out`` (no buffer, no conversion; see :func:`_is_image`).

    With ``digest``, the bytes before and after the DATA segment are read too and every
    byte of the file goes to ``digest``, in order (one read of the file, as in the general
    path). The values are then checked for NaN and infinity in cache-sized blocks.
    """
    lay, nbytes = fcs.layout, out.nbytes
    data = memoryview(out.reshape(-1).view(np.uint8))
    try:
        with open(fcs.path, "rb") as fh:
            if digest is not None:
                digest.update(fh.read(lay.start))
            fh.seek(lay.start)
            got = fh.readinto(data)
            if digest is not None:
                digest.update(data[:got])  # hashlib releases the GIL on large buffers
                while tail := fh.read(1 << 20):
                    digest.update(tail)
    except OSError as exc:
        raise fail(fcs.path, f"the DATA segment cannot be read ({exc.strerror or exc})") from exc
    if got != nbytes:
        raise fail(
            fcs.path,
            f"the file ends inside the DATA segment ({got} of {nbytes} bytes); it changed "
            "after its TEXT was read",
        )
    _check_finite(fcs, out, np.arange(out.shape[1]))


def _check_finite(fcs: FcsFile, out: np.ndarray, columns: np.ndarray) -> None:
    """Note the NaN and infinite values of ``out``, per channel.

    A dot product per cache-sized block first: NaN or infinity make it non-finite (so does
    |x| > 1.8e19, which the exact count then clears).
    """
    for r in range(0, out.shape[0], _BLOCK_ROWS):
        flat = out[r : r + _BLOCK_ROWS].reshape(-1)
        if not np.isfinite(flat.dot(flat)):
            _note_non_finite(fcs, out, columns)
            return


def _note_non_finite(fcs: FcsFile, out: np.ndarray, columns: np.ndarray) -> None:
    bad = np.count_nonzero(~np.isfinite(out), axis=0)
    if bad.any():
        names = [fcs.channels["PnN"].iloc[c] or f"P{c + 1}" for c in columns]
        shown = ", ".join(f"{names[j]} ({bad[j]})" for j in np.flatnonzero(bad)[:10])
        _note(
            fcs,
            f"{int(bad.sum())} value(s) are NaN or infinite (or beyond float32) in "
            f"channel(s) {shown}; kept as read",
        )


def _note(fcs: FcsFile, message: str) -> None:
    fcs.notes.append(message)
    fcs.warned.append(message)


def _read_floats(fcs: FcsFile, raw: np.ndarray, out: np.ndarray, columns: np.ndarray) -> None:
    lay, n = fcs.layout, fcs.n_events
    dtype = np.dtype("f4" if lay.datatype == "F" else "f8").newbyteorder(
        ">" if lay.big_endian else "<"
    )
    values = raw.view(dtype).reshape(n, len(lay.widths))
    finite = True
    # row blocks that fit in cache: gather the columns and cast (byte order) in one pass, then,
    # while the block is in cache, its dot product with itself: NaN or infinity make it
    # non-finite (so does |x| > 1.8e19, which the exact count below then clears). A dot
    # product costs half of a sum here (measured in scripts/bench_io.py)
    for r in range(0, n, _BLOCK_ROWS):
        block = out[r : r + _BLOCK_ROWS]
        with np.errstate(over="ignore"):  # doubles beyond float32 become inf, counted below
            block[...] = values[r : r + _BLOCK_ROWS, columns]
        if finite:
            flat = block.reshape(-1)
            finite = bool(np.isfinite(flat.dot(flat)))
    if not finite:
        _note_non_finite(fcs, out, columns)


def _read_integers(fcs: FcsFile, raw: np.ndarray, out: np.ndarray, columns: np.ndarray) -> None:
    lay, n = fcs.layout, fcs.n_events
    table = raw.reshape(n, lay.row_bytes)
    starts = np.concatenate([[0], np.cumsum(lay.widths)[:-1]])
    masked, rounded = [], []
    for j, c in enumerate(columns):
        s, w = int(starts[c]), int(lay.widths[c])
        if w in (1, 2, 4, 8):
            value = (
                table[:, s : s + w]
                .copy()
                .view(np.dtype(f"u{w}").newbyteorder(">" if lay.big_endian else "<"))[:, 0]
            )
            value = value.astype(np.uint64)
        else:  # odd widths (e.g. 24-bit): assemble the bytes
            chunk = table[:, s : s + w]
            if lay.big_endian:
                chunk = chunk[:, ::-1]
            value = np.zeros(n, dtype=np.uint64)
            for b in range(w):
                value |= chunk[:, b].astype(np.uint64) << np.uint64(8 * b)
        pnr = int(lay.ranges[c])
        name = fcs.channels["PnN"].iloc[c] or f"P{c + 1}"
        if 0 < pnr < 2 ** (8 * w):
            mask = np.uint64(_next_power_of_two(pnr) - 1)
            over = int(np.count_nonzero(value > mask))
            if over:
                masked.append(f"{name} ({over})")
                value &= mask
        if w >= 4 and n and int(value.max()) > _EXACT_FLOAT32:
            rounded.append(name)
        out[:, j] = value
    if masked:
        _note(
            fcs,
            f"integer values above $PnR were masked to its bit width (FCS 3.1 §3.3.2) in "
            f"channel(s) {', '.join(masked[:10])}",
        )
    if rounded:
        _note(
            fcs,
            f"integers above 2^24 were rounded to float32 precision in channel(s) "
            f"{', '.join(rounded[:10])}",
        )
