"""Whole chunks of the cohort store written as files, pre-encoded, past zarr's array API.

The conversion tasks of :mod:`itme.io._store` write every chunk of ``layers/raw`` and
``obs/_index`` whole, exactly once. Through zarr's array API, the events' names cost the
most: zarr's ``vlen-utf8`` codec (numcodecs) turns the numpy strings into one Python string
per event, holding the GIL, on zarr's single I/O thread. Here the chunks are encoded by
numpy (the names straight from the sample id and the event indices, without a string per
event) and written to the chunk files by the task's own thread, as **the same bytes** zarr
writes (tests/unit/test_store_chunk_files.py compares the stores file by file):

- ``layers/raw``: the ``bytes`` codec (little endian), no compressor: the float32 rows as
  they are; a partial last chunk is padded with the fill value to the chunk's shape;
- ``obs/_index``: the ``vlen-utf8`` codec (numcodecs' ``VLenUTF8`` layout: the item count,
  then each item's byte length and its UTF-8 bytes, all counts little-endian uint32; the
  padding of a partial last chunk is the fill value ``""``, a length 0), then ``zstd`` by
  numcodecs' ``Zstd`` with the array's configuration (what zarr's ``ZstdCodec`` calls);
- the chunk keys of the ``default`` encoding (``c/<i>/<j>``), each file written under a
  temporary name and renamed into place, as zarr's ``LocalStore`` does.

:func:`chunk_files` checks the arrays' ``zarr.json`` (data type, chunk grid, key encoding,
codecs, fill value), the zarr version (3.1, whose output was compared) and, once per
process, the names' encoding against numcodecs'; anything else returns ``None`` and the
store is written through zarr's API (:mod:`itme.io._store`).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: zarr versions (major, minor) whose chunk files these writes were compared with
TESTED_ZARR = ((3, 1),)

#: a piece of the events' names: (sample id, index of its first event, number of events);
#: event ``sample_id``'s ``j``-th event is named ``f"{sample_id}_{j}"``
Piece = tuple[str, int, int]

_LOW = 6  # decimal digits of the kept table: the low 6 digits of every index
_table = np.empty((0, _LOW), dtype=np.uint8)  # ASCII digits of 0 … 999,999 (6 MB), once
_lock = threading.Lock()
_checked: bool | None = None  # the names' encoding equals numcodecs' (checked once)


def _fill_digits(dest: np.ndarray, a: int, b: int, d: int) -> None:
    """Fill ``dest`` (one row per index ``a:b``) with the ``d`` ASCII digits of each index.

    Every index of ``a:b`` has ``d`` digits. The low 6 come from a table kept per process
    (built by the first call); the others, the same for a million consecutive indices, are
    written once per million.
    """
    global _table
    if _table.shape[0] < 10**_LOW:
        with _lock:
            if _table.shape[0] < 10**_LOW:
                powers = 10 ** np.arange(_LOW - 1, -1, -1, dtype=np.int32)
                index = np.arange(10**_LOW, dtype=np.int32)
                _table = (index[:, None] // powers % 10 + 48).astype(np.uint8)
    table = _table
    if d <= _LOW:
        dest[:] = table[a:b, _LOW - d :]
        return
    pos = a
    while pos < b:
        high, low = divmod(pos, 10**_LOW)
        stop = min(b, (high + 1) * 10**_LOW)
        rows = dest[pos - a : stop - a]
        rows[:, : d - _LOW] = np.frombuffer(str(high).encode(), dtype=np.uint8)
        rows[:, d - _LOW :] = table[low : low + stop - pos]
        pos = stop


def _runs(a: int, b: int) -> list[tuple[int, int, int]]:
    """Indices ``a:b`` as runs ``(start, stop, digits)`` of equally many decimal digits."""
    runs = []
    while a < b:
        d = len(str(a))
        stop = min(b, 10**d)
        runs.append((a, stop, d))
        a = stop
    return runs


def encode_names(pieces: Sequence[Piece], items: int) -> np.ndarray:
    """The ``vlen-utf8`` encoding of the names of ``pieces``, padded with ``""`` to ``items``.

    Each run of indices with equally many digits is a block of equally long records (length,
    the sample id and ``_``, the digits), filled column by column: no string per event.
    """
    parts = []
    size = 4
    for sample_id, first, n in pieces:
        prefix = np.frombuffer(f"{sample_id}_".encode(), dtype=np.uint8)
        for a, b, d in _runs(first, first + n):
            parts.append((prefix, a, b, d))
            size += (b - a) * (4 + prefix.size + d)
    padding = items - sum(n for _, _, n in pieces)
    if padding < 0:
        raise ValueError(f"{items} items but {items - padding} names")
    out = np.empty(size + 4 * padding, dtype=np.uint8)
    out[:4] = np.frombuffer(struct.pack("<I", items), dtype=np.uint8)
    pos = 4
    for prefix, a, b, d in parts:
        width = 4 + prefix.size + d
        block = out[pos : pos + (b - a) * width].reshape(b - a, width)
        block[:, :4] = np.frombuffer(struct.pack("<I", prefix.size + d), dtype=np.uint8)
        block[:, 4 : 4 + prefix.size] = prefix
        _fill_digits(block[:, 4 + prefix.size :], a, b, d)
        pos += (b - a) * width
    out[pos:] = 0  # the padding: names "" (length 0)
    return out


def _encoding_matches() -> bool:
    """Whether :func:`encode_names` gives numcodecs' ``VLenUTF8`` bytes (once per process)."""
    global _checked
    if _checked is None:
        from numcodecs.vlen import VLenUTF8

        pieces = [("é漢 x", 8, 5), ("S1", 98, 4)]
        names = [f"{sid}_{j}" for sid, first, n in pieces for j in range(first, first + n)]
        names += ["", ""]  # the padding of a partial chunk
        expected = bytes(VLenUTF8().encode(np.array(names, dtype=np.dtypes.StringDType())))
        _checked = encode_names(pieces, 11).tobytes() == expected
    return _checked


def _zarr_version() -> tuple[int, int]:
    import zarr

    major, minor = zarr.__version__.split(".")[:2]
    return int(major), int(minor)


def _regular(meta: dict[str, Any], dtype: str, ndim: int) -> tuple[int, ...] | None:
    """The chunk shape of a plain zarr 3 array of ``dtype`` (no sharding, default keys)."""
    grid = meta.get("chunk_grid", {})
    keys = meta.get("chunk_key_encoding", {})
    shape = tuple(grid.get("configuration", {}).get("chunk_shape", ()))
    ok = (
        meta.get("zarr_format") == 3
        and meta.get("node_type") == "array"
        and meta.get("data_type") == dtype
        and len(meta.get("shape", ())) == ndim == len(shape)
        and grid.get("name") == "regular"
        and keys.get("name") == "default"
        and keys.get("configuration", {}).get("separator", "/") == "/"
        and not meta.get("storage_transformers")
    )
    return shape if ok else None


class ChunkFiles:
    """Writes whole chunks of ``layers/raw`` and ``obs/_index`` as their files."""

    def __init__(self, raw: Path, names: Path, raw_meta: dict, names_meta: dict) -> None:
        from numcodecs.zstd import Zstd

        self.raw, self.names = raw, names
        self.rows = int(raw_meta["shape"][0])
        self.step = int(raw_meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.width = int(raw_meta["shape"][1])
        self.fill = np.float32(raw_meta["fill_value"])
        self.zstd = Zstd.from_config(names_meta["codecs"][1]["configuration"])

    def write(self, first: int, values: np.ndarray, pieces: Sequence[Piece]) -> None:
        """Rows ``first:`` (a chunk's first row; to a chunk's end or the store's), whole chunks.

        ``values`` are the rows' float32 values, ``pieces`` their names, in order.
        """
        values = np.ascontiguousarray(values, dtype="<f4")
        for r in range(0, len(values), self.step):
            k = (first + r) // self.step
            rows = values[r : r + self.step]
            items = min(self.step, self.rows - k * self.step)  # a store's last chunk is short
            if len(rows) != items:
                raise ValueError(f"chunk {k}: {len(rows)} rows, not {items}")
            if items < self.step:
                padded = np.full((self.step, self.width), self.fill, dtype="<f4")
                padded[:items] = rows
                rows = padded
            _put(self.raw / "c" / str(k) / "0", rows)
            names = encode_names(_cut(pieces, r, r + items), self.step)
            _put(self.names / "c" / str(k), self.zstd.encode(names))


def _cut(pieces: Sequence[Piece], a: int, b: int) -> list[Piece]:
    """The names of rows ``a:b`` of the rows named by ``pieces``."""
    out, pos = [], 0
    for sample_id, first, n in pieces:
        lo, hi = max(a, pos), min(b, pos + n)
        if lo < hi:
            out.append((sample_id, first + lo - pos, hi - lo))
        pos += n
    return out


def _put(path: Path, data: Any) -> None:
    """Write ``data`` (a buffer) as the file ``path``: a temporary name, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    try:
        with open(partial, "wb") as fh:
            fh.write(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def chunk_files(path: str, raw: str, names: str) -> ChunkFiles | None:
    """The writer of the store ``path``'s arrays ``raw`` and ``names``, or ``None``.

    ``None`` (write through zarr) unless the store is a local folder, zarr's version is
    one of :data:`TESTED_ZARR`, the names' encoding matches numcodecs', and the arrays
    are what :func:`itme.io._store._write_skeleton` creates: ``raw`` float32, 2-D, chunked
    by rows only, codecs ``[bytes (little endian)]``, a numeric fill value; ``names``
    strings, chunked like ``raw``'s rows, codecs ``[vlen-utf8, zstd]``, fill value ``""``.
    """
    if "://" in path or _zarr_version() not in TESTED_ZARR:
        return None
    try:
        metas = [json.loads((Path(path) / key / "zarr.json").read_text()) for key in (raw, names)]
    except (OSError, ValueError):
        return None
    raw_meta, names_meta = metas
    raw_chunks = _regular(raw_meta, "float32", 2)
    names_chunks = _regular(names_meta, "string", 1)
    codecs = names_meta.get("codecs", [])
    ok = (
        raw_chunks is not None
        and names_chunks is not None
        and raw_chunks[1] == raw_meta["shape"][1]
        and names_chunks[0] == raw_chunks[0]
        and names_meta["shape"][0] == raw_meta["shape"][0]
        and raw_meta.get("codecs") == [{"name": "bytes", "configuration": {"endian": "little"}}]
        and type(raw_meta.get("fill_value")) in (int, float)
        and names_meta.get("fill_value") == ""
        and len(codecs) == 2
        and codecs[0] == {"name": "vlen-utf8", "configuration": {}}
        and codecs[1].get("name") == "zstd"
        and set(codecs[1].get("configuration", {})) == {"level", "checksum"}
    )
    if not ok or not _encoding_matches():
        return None
    return ChunkFiles(Path(path) / raw, Path(path) / names, raw_meta, names_meta)
