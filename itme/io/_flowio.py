"""FCS files at the array level: the flowio adapter (nothing else in itme imports flowio).

flowio (a maintained FCS reader) parses the HEADER and TEXT segments — delimiters, escaped
delimiters, encodings, versions 2.0–3.1 — and writes FCS 3.1 files. This module wraps it
and does itself what flowio gets wrong or slowly:

- **DATA segments are read with numpy** straight into the caller's float32 matrix, through
  one reusable buffer. flowio builds a Python ``array`` per file, masks integer data byte by
  byte in Python, and returns nothing for integer widths other than 8/16/32 bits (e.g. the
  24-bit Cytek xP5 files).
- **Offsets are checked here**: an ``$ENDDATA`` one byte past the DATA segment (every
  Bodenmiller CyTOF file) is accepted and noted; blank HEADER offsets (FCS 3.x files over
  99,999,999 bytes) no longer crash flowio's ``int()``; HEADER/TEXT disagreements use TEXT
  and are noted; a DATA segment cut off by the end of the file is an error naming the file.
- **Several data sets** (``$NEXTDATA``) are followed instead of refused.
- Every failure becomes an :class:`~itme.errors.ItmeInputError` that names the file.
"""

from __future__ import annotations

import re
import warnings
from array import array
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from itme.errors import ItmeInputError, ItmeParameterError

HEADER_BYTES = 58
_BLOCK_ROWS = 8192
_VERSIONS = {"FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2"}
_CHANNEL_KEYWORD = re.compile(r"^P(\d+)([A-Z]+)$")
CHANNEL_FIELDS = {
    "N": "PnN",
    "S": "PnS",
    "B": "PnB",
    "E": "PnE",
    "R": "PnR",
    "G": "PnG",
    "V": "PnV",
}
_STANDARD = {
    "ABRT", "BEGINANALYSIS", "BEGINDATA", "BEGINSTEXT", "BTIM", "BYTEORD", "CELLS", "COM",
    "CSMODE", "CSVBITS", "CYT", "CYTSN", "DATATYPE", "DATE", "ENDANALYSIS", "ENDDATA",
    "ENDSTEXT", "ETIM", "EXP", "FIL", "GATE", "INST", "LAST_MODIFIED", "LAST_MODIFIER", "LOST",
    "MODE", "NEXTDATA", "OP", "ORIGINALITY", "PAR", "PLATEID", "PLATENAME", "PROJ", "SMNO",
    "SPILLOVER", "SRC", "SYS", "TIMESTEP", "TOT", "TR", "VOL", "WELLID",
}  # fmt: skip


@dataclass
class DataLayout:
    """Where and how the events of one data set are stored."""

    start: int  # absolute byte offset of the first event
    datatype: str  # I, F or D
    big_endian: bool
    widths: np.ndarray  # bytes per value, one per channel
    ranges: np.ndarray  # $PnR as integers (0 when absent or not a number)
    error: ItmeInputError | None = None  # why the events cannot be read (TEXT still can)

    @property
    def row_bytes(self) -> int:
        """Bytes per event."""
        return int(self.widths.sum())


@dataclass
class FcsFile:
    """One parsed FCS data set: TEXT keywords, channel table, layout, and optionally events."""

    path: Path
    version: str
    keywords: dict[str, str]
    channels: pd.DataFrame  # one row per parameter: PnN, PnS, PnB, PnE, PnR, PnG, PnV
    n_events: int
    layout: DataLayout
    data: np.ndarray | None = None  # events × channels, float32
    notes: list[str] = field(default_factory=list)  # what had to be corrected while reading
    n_data_sets: int = 1


def _fail(
    path: Path, message: str, *, expected: Any = None, found: Any = None, fix: str | None = None
) -> ItmeInputError:
    return ItmeInputError(
        message, where=f"FCS file {path}", expected=expected, found=found, fix=fix
    )


class _HeaderProxy:
    """Read-only file proxy handed to flowio for the TEXT segment.

    It replaces blank HEADER offsets with zeros (flowio calls ``int()`` on them) and reports
    the file as large enough for its DATA segment (flowio refuses even the TEXT of a file
    whose DATA is cut off; the DATA is checked by :func:`_layout` instead).
    """

    def __init__(self, fh: BinaryIO, base: int, header: bytes) -> None:
        self._fh, self._base, self._header = fh, base, header
        self.name = fh.name
        self._at_end = False

    def seek(self, pos: int, whence: int = 0) -> int:
        self._at_end = whence == 2
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return 2**62 if self._at_end else self._fh.tell()

    def close(self) -> None:
        self._fh.close()

    def read(self, n: int = -1) -> bytes:
        start = self._fh.tell()
        data = self._fh.read(n)
        lo, hi = self._base, self._base + HEADER_BYTES
        if start < hi and start + len(data) > lo:
            buf = bytearray(data)
            for i in range(max(start, lo), min(start + len(data), hi)):
                buf[i - start] = self._header[i - lo]
            data = bytes(buf)
        return data


def _read_header(path: Path, offset: int) -> tuple[bytes, dict[str, int | None], int]:
    """Validate the 58-byte HEADER at ``offset``; return it (blank offsets zeroed), its
    offsets (``None`` where blank) and the file size."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(offset)
        header = fh.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        raise _fail(
            path,
            f"the file holds {size - offset} bytes from offset {offset}, fewer than the "
            f"{HEADER_BYTES}-byte FCS HEADER; it is truncated or not an FCS file",
            fix="Export the file again from the acquisition software",
        )
    if header[:6].decode("ascii", "replace") not in _VERSIONS:
        raise _fail(
            path,
            "not an FCS file: the HEADER must start with FCS2.0, FCS3.0, FCS3.1 or FCS3.2",
            found=repr(header[:6]),
            fix="Check that the path points to an FCS file",
        )
    patched = bytearray(header)
    offsets: dict[str, int | None] = {}
    names = ["text_start", "text_end", "data_start", "data_end", "analysis_start", "analysis_end"]
    for name, start in zip(names, range(10, 58, 8), strict=True):
        raw = header[start : start + 8]
        if raw.strip().lstrip(b"-").isdigit():
            offsets[name] = int(raw)
        else:
            if name.startswith("text"):
                raise _fail(path, "HEADER offsets of the TEXT segment are not numbers", found=raw)
            offsets[name] = None
            patched[start : start + 8] = b"       0"
    return bytes(patched), offsets, size


def _text(path: Path, offset: int, header: bytes) -> dict[str, str]:
    """TEXT keywords parsed by flowio (lower-case keys without ``$``)."""
    import flowio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flowio warns on data it is not asked to read
        try:
            flow = flowio.FlowData(
                _HeaderProxy(open(path, "rb"), offset, header),  # flowio closes it
                only_text=True,
                ignore_offset_discrepancy=True,  # checked by _layout
                nextdata_offset=offset,
            )
        except (ValueError, KeyError, UnicodeDecodeError, OSError, IndexError) as exc:
            raise _fail(
                path,
                f"the TEXT segment could not be parsed ({type(exc).__name__}: {exc})",
                fix="The file is corrupted or not an FCS file",
            ) from exc
    return flow.text


def _channel_table(text: dict[str, str], n_par: int) -> pd.DataFrame:
    columns: dict[str, list[str]] = {f: [""] * n_par for f in CHANNEL_FIELDS.values()}
    for key, value in text.items():
        m = _CHANNEL_KEYWORD.match(key.upper())
        if m and m.group(2) in CHANNEL_FIELDS and 1 <= int(m.group(1)) <= n_par:
            columns[CHANNEL_FIELDS[m.group(2)]][int(m.group(1)) - 1] = value.strip()
    return pd.DataFrame(columns, index=pd.RangeIndex(1, n_par + 1, name="parameter"))


def _keyword_name(key: str) -> str:
    key = key.upper()
    standard = key in _STANDARD or _CHANNEL_KEYWORD.match(key) is not None
    return ("$" if standard else "") + key.replace("/", "_")


def _int(text: dict[str, str], key: str) -> int:
    try:
        return int(text.get(key, "0").strip() or 0)
    except ValueError:
        return 0


def _layout(
    path: Path,
    offset: int,
    version: str,
    text: dict[str, str],
    channels: pd.DataFrame,
    n_events: int,
    header_offsets: dict[str, int | None],
    size: int,
    notes: list[str],
) -> DataLayout:
    """Locate and describe the DATA segment, checking it against $TOT, $PAR and the file."""
    mode = text.get("mode", "L").strip().upper()
    if mode != "L":
        raise _fail(path, "unsupported $MODE", expected="L (list mode)", found=mode)
    datatype = text.get("datatype", "").strip().upper()
    if datatype not in {"I", "F", "D"}:
        raise _fail(
            path,
            "unsupported $DATATYPE",
            found=datatype or "(absent)",
            fix="Only integer (I), float (F) and double (D) data are supported; re-export as float",
        )
    order = text.get("byteord", "1,2,3,4").replace(" ", "")
    big_endian = order.startswith("4,3") or order == "2,1"
    if datatype == "I":
        try:
            bits = channels["PnB"].astype(int).to_numpy()
        except ValueError as exc:
            raise _fail(
                path, "$PnB must be integers for $DATATYPE I", found=list(channels["PnB"])
            ) from exc
        if np.any(bits % 8) or np.any(bits <= 0) or np.any(bits > 64):
            raise _fail(path, "integer widths ($PnB) must be whole bytes", found=list(bits))
        widths = bits // 8
    else:
        widths = np.full(len(channels), 4 if datatype == "F" else 8)
    ranges = pd.to_numeric(channels["PnR"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
    layout = DataLayout(0, datatype, big_endian, widths, ranges)

    h_begin, h_end = header_offsets["data_start"], header_offsets["data_end"]
    t_begin, t_end = _int(text, "begindata"), _int(text, "enddata")
    if version == "2.0" or t_begin == 0:
        begin, end = h_begin or 0, h_end or 0
    else:
        begin, end = t_begin, t_end
        if h_begin is None or h_end is None:
            notes.append(
                "HEADER DATA offsets are blank (allowed above 99,999,999 bytes); used the TEXT values"
            )
        elif (h_begin, h_end) != (t_begin, t_end) and not (h_begin == 0 and t_end > 99_999_999):
            notes.append(
                f"HEADER ({h_begin}-{h_end}) and TEXT ({t_begin}-{t_end}) disagree on the DATA "
                "offsets; used the TEXT values"
            )
    if begin <= 0:
        raise _fail(path, "the DATA offset is missing from both HEADER and TEXT ($BEGINDATA)")
    need = n_events * layout.row_bytes
    have = end - begin + 1
    if have == need + 1:
        notes.append("$ENDDATA is one byte past the DATA segment; read the segment without it")
    elif have > need + 1:
        notes.append(
            f"the DATA segment is {have - need} bytes longer than $TOT × $PAR values; ignored them"
        )
    elif have < need:
        raise _fail(
            path,
            "the DATA segment is shorter than $TOT events",
            expected=f"{need} bytes ($TOT {n_events} × {layout.row_bytes} bytes per event)",
            found=f"{have} bytes ($BEGINDATA {begin} to $ENDDATA {end})",
        )
    layout.start = offset + begin
    if layout.start + need > size:
        layout.error = _fail(
            path,
            "the DATA segment cannot be read",
            expected=f"DATA up to byte {layout.start + need - 1} ($ENDDATA)",
            found=f"a file of {size} bytes",
            fix="The file is truncated or corrupted (only its HEADER and TEXT can be read, "
            "e.g. with `itme inspect`); export it again",
        )
    return layout


_DataSet = tuple[int, bytes, dict[str, int | None], int, dict[str, str]]


def _data_sets(path: Path) -> list[_DataSet]:
    """Offset, HEADER, HEADER offsets, file size and TEXT of every data set ($NEXTDATA chain)."""
    header, header_offsets, size = _read_header(path, 0)
    sets = [(0, header, header_offsets, size, _text(path, 0, header))]
    while (nxt := _int(sets[-1][4], "nextdata")) > 0:
        offset = sets[-1][0] + nxt
        header, header_offsets, size = _read_header(path, offset)
        sets.append((offset, header, header_offsets, size, _text(path, offset, header)))
    return sets


def parse_fcs(path: str | PathLike[str], *, data_set: int = 0, only_text: bool = False) -> FcsFile:
    """Parse one FCS data set: keywords, channels and data layout, and the events.

    Parameters
    ----------
    path
        The FCS file.
    data_set
        Which data set of the ``$NEXTDATA`` chain to read (0 = the first).
    only_text
        Read HEADER and TEXT only: ``data`` is ``None`` and a DATA segment that cannot be
        read is recorded in ``layout.error`` instead of raised.

    Returns
    -------
    The :class:`FcsFile`.

    Raises
    ------
    ItmeInputError
        The file is missing, not FCS, truncated or corrupted, or uses an unsupported mode or
        data type (the message names the file).
    ItmeParameterError
        ``data_set`` is not in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ItmeInputError(
            "FCS file not found",
            where=str(path),
            fix="Check the path (relative paths are resolved from the sample sheet's folder)",
        )
    sets = _data_sets(path)
    n_sets = len(sets)
    if not 0 <= data_set < n_sets:
        raise ItmeParameterError("data_set", f"0..{n_sets - 1} for {path}", data_set)
    offset, header, header_offsets, size, text = sets[data_set]
    try:
        n_events, n_par = int(text["tot"]), int(text["par"])
    except (KeyError, ValueError) as exc:
        raise _fail(path, "the required keywords $TOT and $PAR are missing or not numbers") from exc
    channels = _channel_table(text, n_par)
    notes: list[str] = []
    if n_sets > 1:
        notes.append(f"the file holds {n_sets} data sets; read data set {data_set} (data_set=...)")
    version = header[3:6].decode()
    layout = _layout(path, offset, version, text, channels, n_events, header_offsets, size, notes)
    keywords = {}
    for key, value in text.items():
        m = _CHANNEL_KEYWORD.match(key.upper())
        if not (m and m.group(2) in CHANNEL_FIELDS):
            keywords[_keyword_name(key)] = str(value)
    fcs = FcsFile(path, version, keywords, channels, n_events, layout, None, notes, n_sets)
    if not only_text:
        fcs.data = np.empty((n_events, n_par), dtype=np.float32)
        read_events(fcs, fcs.data, np.arange(n_par))
    return fcs


def _next_power_of_two(x: int) -> int:
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


def read_events(
    fcs: FcsFile, out: np.ndarray, columns: np.ndarray, buffer: np.ndarray | None = None
) -> np.ndarray:
    """Read the events of ``fcs`` into ``out``.

    Integers are masked to the next power of two of ``$PnR`` (FCS 3.1 §3.3.2).

    Parameters
    ----------
    fcs
        A file parsed by :func:`parse_fcs` (``only_text=True`` is enough).
    out
        Float32 array, events × ``len(columns)``; filled in place.
    columns
        ``columns[j]`` is the file's column that lands in ``out[:, j]``.
    buffer
        uint8 array reused across files to hold the raw DATA bytes (``None``: allocate).

    Returns
    -------
    The buffer (grown when it was too small), to pass to the next call.

    Raises
    ------
    ItmeInputError
        The DATA segment cannot be read (``fcs.layout.error``).
    """
    lay, n = fcs.layout, fcs.n_events
    if lay.error is not None:
        raise lay.error
    nbytes = n * lay.row_bytes
    if buffer is None or buffer.size < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
    raw = buffer[:nbytes]
    with open(fcs.path, "rb") as fh:
        fh.seek(lay.start)
        got = fh.readinto(memoryview(raw))
    if got != nbytes:  # pragma: no cover - the file shrank after it was checked
        raise _fail(fcs.path, f"the file ends inside the DATA segment ({got} of {nbytes} bytes)")
    if lay.datatype in {"F", "D"}:
        dtype = np.dtype("f4" if lay.datatype == "F" else "f8").newbyteorder(
            ">" if lay.big_endian else "<"
        )
        values = raw.view(dtype).reshape(n, len(lay.widths))
        # row blocks that fit in cache: gather the columns and cast (byte order) in one pass
        for r in range(0, n, _BLOCK_ROWS):
            out[r : r + _BLOCK_ROWS] = values[r : r + _BLOCK_ROWS, columns]
        return buffer
    table = raw.reshape(n, lay.row_bytes)
    starts = np.concatenate([[0], np.cumsum(lay.widths)[:-1]])
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
        if 0 < pnr < 2 ** (8 * w):
            value &= np.uint64(_next_power_of_two(pnr) - 1)
        out[:, j] = value
    return buffer


def write_events(
    path: Path, data: np.ndarray, names: list[str], labels: list[str], keywords: dict[str, str]
) -> None:
    """Write float32 events as FCS 3.1 (little-endian) with flowio.create_fcs.

    Parameters
    ----------
    path
        The file to write.
    data
        Events × channels.
    names, labels
        ``$PnN`` and ``$PnS`` of each channel (an empty label writes no ``$PnS``).
    keywords
        Further TEXT keywords.
    """
    import flowio

    events = array("f")
    events.frombytes(np.ascontiguousarray(data, dtype="<f4").tobytes())
    with open(path, "wb") as fh:
        flowio.create_fcs(
            fh, events, names, opt_channel_names=[s or None for s in labels], metadata_dict=keywords
        )
