"""Hand-built FCS files for reader tests, byte by byte from the FCS 3.1 standard.

Independent of flowio and of itme's writer, so the reader is tested against files whose
layout the test controls: versions 2.0/3.0/3.1, integer/float/double data, both byte
orders, odd integer widths, missing $PnS, duplicated names, an off-by-one $ENDDATA, blank
HEADER offsets and several data sets in one file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _text(
    keywords: dict[str, str], delim: str = "/", more: list[tuple[str, str]] | None = None
) -> bytes:
    parts = [delim]
    for k, v in [*keywords.items(), *(more or [])]:
        parts.append(f"{k.replace(delim, delim * 2)}{delim}{v.replace(delim, delim * 2)}{delim}")
    return "".join(parts).encode("utf-8")


def fcs_bytes(
    data: np.ndarray,
    names: list[str],
    *,
    labels: list[str] | None = None,
    version: str = "3.1",
    datatype: str = "F",
    big_endian: bool = False,
    bits: list[int] | None = None,
    ranges: list[int] | None = None,
    off_by_one: bool = False,
    blank_header_offsets: bool = False,
    extra: dict[str, str] | None = None,
    nextdata: int = 0,
    delimiter: str = "/",
    more: list[tuple[str, str]] | None = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    """One FCS data set as bytes (HEADER, TEXT, DATA).

    ``extra`` adds or overrides keywords, ``more`` appends (possibly repeated) key/value
    pairs at the end of TEXT, ``drop`` leaves keywords out, ``delimiter`` is the TEXT
    delimiter (doubled inside keys and values, FCS 3.1 §3.2.9).
    """
    n, p = data.shape
    order = "4,3,2,1" if big_endian else "1,2,3,4"
    bits = bits or [{"F": 32, "D": 64, "I": 16}[datatype]] * p
    ranges = ranges or [2**b if datatype == "I" else 262144 for b in bits]
    if datatype == "I":
        rows = []
        for j, b in enumerate(bits):
            w = b // 8
            col = data[:, j].astype(np.uint64)
            cols = [
                ((col >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8) for k in range(w)
            ]
            if big_endian:
                cols = cols[::-1]
            rows.extend(cols)
        payload = np.stack(rows, axis=1).tobytes()
    else:
        dtype = ">" if big_endian else "<"
        dtype += "f4" if datatype == "F" else "f8"
        payload = np.ascontiguousarray(data, dtype=dtype).tobytes()
    kw = {
        "$BYTEORD": order,
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$NEXTDATA": str(nextdata),
        "$PAR": str(p),
        "$TOT": str(n),
        "$CYT": "TEST-CYTOF",
        "$DATE": "01-JAN-2020",
    }
    for j in range(p):
        kw[f"$P{j + 1}N"] = names[j]
        kw[f"$P{j + 1}B"] = str(bits[j])
        kw[f"$P{j + 1}E"] = "0,0"
        kw[f"$P{j + 1}R"] = str(ranges[j])
        if labels is not None and labels[j]:
            kw[f"$P{j + 1}S"] = labels[j]
    kw.update(extra or {})
    for key in drop:
        kw.pop(key, None)
    text_start = 58
    if version == "2.0":
        text = _text(kw, delimiter, more)
    else:
        # offsets in TEXT: iterate until their printed width is stable
        begin = 0
        for _ in range(5):
            probe = {
                "$BEGINANALYSIS": "0",
                "$ENDANALYSIS": "0",
                "$BEGINSTEXT": "0",
                "$ENDSTEXT": "0",
                **kw,
                "$BEGINDATA": str(begin),
                "$ENDDATA": str(begin + len(payload) - 1 + off_by_one),
            }
            text = _text(probe, delimiter, more)
            new_begin = text_start + len(text)
            if new_begin == begin:
                break
            begin = new_begin
    data_start = text_start + len(text)
    data_end = data_start + len(payload) - 1 + (off_by_one if version != "2.0" else 0)

    def field(v: int) -> bytes:
        return f"{v:>8d}".encode()

    header = f"FCS{version}    ".encode()
    header += field(text_start) + field(text_start + len(text) - 1)
    if blank_header_offsets:
        header += b" " * 16
    else:
        header += field(data_start) + field(data_end)
    header += field(0) + field(0)
    return header + text + payload


def write(path: Path, data: np.ndarray, names: list[str], **kwargs) -> Path:
    path.write_bytes(fcs_bytes(np.asarray(data), names, **kwargs))
    return path


def write_multi(path: Path, sets: list[tuple[np.ndarray, list[str]]]) -> Path:
    """Several data sets chained by $NEXTDATA (offset of the next set from this one's start)."""
    out = b""
    for k, (d, n) in enumerate(sets):
        nxt, blob = 0, fcs_bytes(d, n)
        if k < len(sets) - 1:
            while len(blob) != nxt:  # NEXTDATA's digits change the length; iterate to a fixed point
                nxt = len(blob)
                blob = fcs_bytes(d, n, nextdata=nxt)
        out += blob
    path.write_bytes(out)
    return path
