"""FCS data sets at the array level: keywords, channel table, DATA layout and the events.

**What itme parses itself, and why** (issue 11). itme reads FCS files with its own HEADER
and TEXT parser (:mod:`._fcs_text`, about a hundred lines) and reads the DATA segment with
numpy; flowio, a maintained FCS library, is used only to *write* files (:mod:`._flowio`).
Until 0.1 flowio parsed HEADER and TEXT through a fake file object that patched blank HEADER
offsets and lied about the file size; that tied itme to flowio's internals (pinned ``<1.4``)
and left every size check to flowio, which reads the ANALYSIS segment, allocates ``$PAR`` and
``$TOT`` sized arrays and splits the TEXT with a regular expression built from its delimiter
before anything is checked against the file. Owning the parse lets itme guarantee that:

- every size and offset (``$PAR``, ``$TOT``, ``$PnB``, ``$PnR``, ``$BEGINDATA``/``$ENDDATA``,
  HEADER offsets, ``$NEXTDATA``, ``$BYTEORD``) is checked against the file length before
  anything is allocated or read, so a corrupted file can neither exhaust memory nor hang;
- every failure is an :class:`~itme.errors.ItmeInputError` naming the file, the keyword or
  byte offset, what was expected and what was found;
- a file that is inconsistent but still readable without guessing is read, and what was
  worked around is listed in ``notes`` (``warned`` marks the ones raised as
  :class:`~itme.errors.ItmeInputWarning` by the readers);
- DATA is read by numpy straight into the caller's float32 matrix through one reusable
  buffer, for integers of any whole-byte width (the 24-bit Cytek xP5 files included)
  (:mod:`._fcs_events`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from itme.errors import ItmeError, ItmeInputError, ItmeParameterError
from itme.io._fcs_events import read_events
from itme.io._fcs_text import (
    CHANNEL_KEYWORD,
    HEADER_BYTES,
    STANDARD,
    Header,
    Notes,
    Text,
    fail,
    parse_text,
    read_header,
    unsigned,
)

CHANNEL_FIELDS = {
    "N": "PnN",
    "S": "PnS",
    "B": "PnB",
    "E": "PnE",
    "R": "PnR",
    "G": "PnG",
    "V": "PnV",
}
_REEXPORT = "The file is corrupted; export it again from the acquisition software"


@dataclass
class DataLayout:
    """Where and how the events of one data set are stored."""

    start: int  # absolute byte offset of the first event
    datatype: str  # I, F or D
    big_endian: bool
    widths: np.ndarray  # bytes per value, one per channel
    ranges: np.ndarray  # $PnR as integers (0: not a positive number, no masking)
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
    notes: list[str] = field(default_factory=list)  # everything corrected or noticed
    n_data_sets: int = 1
    warned: list[str] = field(default_factory=list)  # the notes that are inconsistencies


def keyword_name(key: str) -> str:
    """How a TEXT keyword is named in ``uns``: ``$`` for standard keywords, ``/`` → ``_``."""
    standard = key in STANDARD or CHANNEL_KEYWORD.match(key) is not None
    return ("$" if standard else "") + key.replace("/", "_")


def _data_set(
    fh: BinaryIO, path: Path, size: int, wanted: int
) -> tuple[int, Header, Text, Notes, int]:
    """Follow the ``$NEXTDATA`` chain to data set ``wanted``.

    Returns its offset, HEADER, TEXT and notes, and how many data sets the file holds.
    """
    base, count, chosen, broken = 0, 0, None, None
    while True:
        notes = Notes()
        try:
            header = read_header(fh, path, base, size, notes)
            text = parse_text(fh, path, base, header, size, notes)
        except ItmeInputError as exc:
            if count <= wanted:
                raise
            broken = (
                f"the $NEXTDATA chain points to byte {base}, where no data set can be read ({exc})"
            )
            break
        if count == wanted:
            chosen = (base, header, text, notes)
        count += 1
        raw = text.keywords.get("NEXTDATA", "0")
        nxt = unsigned(raw)
        if nxt is None:
            broken = f"$NEXTDATA of data set {count - 1} is not a number (found {raw!r})"
            break
        if nxt == 0:
            break
        if base + nxt + HEADER_BYTES > size:
            broken = (
                f"$NEXTDATA of data set {count - 1} points to byte {base + nxt}, past the end "
                f"of the file ({size} bytes)"
            )
            break
        base += nxt
    if chosen is None:
        if broken is not None:
            raise fail(path, f"data set {wanted} cannot be reached: {broken}", fix=_REEXPORT)
        raise ItmeParameterError("data_set", f"0..{count - 1} for {path}", wanted)
    if broken is not None:
        chosen[3].warn(f"{broken}; the file holds {count} readable data set(s)")
    return (*chosen, count)


def _channel_table(
    path: Path, kw: dict[str, str], n_par: int, notes: Notes
) -> tuple[pd.DataFrame, bool]:
    """The channel keywords as a table, and whether TEXT describes parameters beyond $PAR."""
    columns: dict[str, list[str]] = {f: [""] * n_par for f in CHANNEL_FIELDS.values()}
    beyond, has_name = set(), [False] * n_par
    for key, value in kw.items():
        m = CHANNEL_KEYWORD.match(key)
        if not m:
            continue
        n = int(m.group(1))
        if not 1 <= n <= n_par:
            if m.group(2) in ("N", "B"):  # $PnG/$PnV of unused detectors are common (Guava)
                beyond.add(n)
        elif m.group(2) in CHANNEL_FIELDS:
            columns[CHANNEL_FIELDS[m.group(2)]][n - 1] = value.strip()
            has_name[n - 1] |= m.group(2) == "N"
        elif (
            m.group(2) == "DATATYPE"
            and value.strip().upper() != kw.get("DATATYPE", "").strip().upper()
        ):
            raise fail(
                path,
                f"${key} gives parameter {n} its own data type (FCS 3.2), which itme cannot read",
                expected=f"the $DATATYPE of the file ({kw.get('DATATYPE', '').strip()})",
                found=value.strip(),
            )
    if beyond:
        shown = ", ".join(str(n) for n in sorted(beyond)[:5])
        notes.warn(
            f"TEXT names parameter(s) {shown} ($PnN or $PnB) outside 1..$PAR ({n_par}); "
            "ignored them"
        )
    unnamed = [str(i + 1) for i, named in enumerate(has_name) if not named]
    if unnamed:
        notes.warn(f"no $PnN for parameter(s) {', '.join(unnamed[:10])}; their var_names are P<n>")
    table = pd.DataFrame(columns, index=pd.RangeIndex(1, n_par + 1, name="parameter"))
    return table, bool(beyond)


def _count(path: Path, kw: dict[str, str], key: str, minimum: int, maximum: int) -> int:
    raw = kw.get(key)
    if raw is None:
        raise fail(path, f"the required keyword ${key} is missing", fix=_REEXPORT)
    value = unsigned(raw)
    if value is None or not minimum <= value <= maximum:
        raise fail(
            path,
            f"${key} is impossible",
            expected=f"a whole number from {minimum} to {maximum:,}",
            found=repr(raw),
            fix=_REEXPORT,
        )
    return value


def _byte_order(path: Path, kw: dict[str, str], widths: np.ndarray) -> bool:
    """True for big-endian; ascending ``$BYTEORD`` (1,2,3,4) is little-endian."""
    raw = kw.get("BYTEORD")
    if raw is None:
        if np.all(widths == 1):
            return False
        raise fail(path, "the required keyword $BYTEORD is missing", fix=_REEXPORT)
    order = [unsigned(x) for x in raw.replace(" ", "").split(",")]
    if order == list(range(1, len(order) + 1)):
        return False
    if len(order) > 1 and order == list(range(len(order), 0, -1)):
        return True
    raise fail(
        path,
        "unsupported $BYTEORD",
        expected="1,2,3,4 (little-endian) or 4,3,2,1 (big-endian)",
        found=repr(raw),
        fix="Mixed byte orders (e.g. 3,4,1,2 of old PDP-11 files) are not supported; "
        "re-export the file as FCS 3.1",
    )


def _widths(path: Path, datatype: str, channels: pd.DataFrame, notes: Notes) -> np.ndarray:
    bits = [unsigned(b) for b in channels["PnB"]]
    if datatype != "I":
        size = 4 if datatype == "F" else 8
        odd = [str(i + 1) for i, b in enumerate(bits) if b != 8 * size]
        if odd:
            notes.warn(
                f"$PnB of parameter(s) {', '.join(odd[:10])} is not {8 * size} for "
                f"$DATATYPE {datatype}; read {8 * size}-bit values"
            )
        return np.full(len(bits), size, dtype=np.int64)
    bad = [
        f"$P{i + 1}B {raw!r}"
        for i, (b, raw) in enumerate(zip(bits, channels["PnB"], strict=True))
        if b is None or b % 8 or not 8 <= b <= 64
    ]
    if bad:
        raise fail(
            path,
            "integer widths ($PnB) must be whole bytes from 8 to 64 bits for $DATATYPE I",
            found="; ".join(bad[:10]),
            fix=_REEXPORT,
        )
    return np.asarray(bits, dtype=np.int64) // 8


def _ranges(channels: pd.DataFrame, datatype: str, notes: Notes) -> np.ndarray:
    out = np.zeros(len(channels), dtype=np.int64)
    bad = []
    for i, raw in enumerate(channels["PnR"]):
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            out[i] = min(math.ceil(value), 2**62)
        else:
            bad.append(f"$P{i + 1}R {raw!r}")
    if bad and datatype == "I":
        notes.warn(
            f"{', '.join(bad[:10])}: not a positive number; those integer values were not "
            "masked to $PnR"
        )
    return out


def _layout(
    path: Path,
    base: int,
    header: Header,
    text: Text,
    channels: pd.DataFrame,
    n_events: int,
    size: int,
    notes: Notes,
    beyond_par: bool,
) -> DataLayout:
    """Describe the DATA segment and check it against $TOT, $PAR, TEXT and the file."""
    kw = text.keywords
    mode = kw.get("MODE", "L").strip().upper()
    if mode != "L":
        raise fail(path, "unsupported $MODE", expected="L (list mode)", found=repr(mode))
    datatype = kw.get("DATATYPE", "").strip().upper()
    if datatype not in {"I", "F", "D"}:
        raise fail(
            path,
            "unsupported $DATATYPE",
            found=datatype or "(absent)",
            fix="Only integer (I), float (F) and double (D) data are supported; re-export as float",
        )
    widths = _widths(path, datatype, channels, notes)
    layout = DataLayout(
        0, datatype, _byte_order(path, kw, widths), widths, _ranges(channels, datatype, notes)
    )
    row, need = layout.row_bytes, n_events * layout.row_bytes
    if need == 0:  # no events: nothing to read, but a DATA segment with events contradicts $TOT
        for begin, end in (
            (unsigned(kw.get("BEGINDATA")), unsigned(kw.get("ENDDATA"))),
            (header.offsets["data_start"], header.offsets["data_end"]),
        ):
            if begin and end and end - begin + 1 >= max(row, 2) and base + end < size + 1:
                raise fail(
                    path,
                    f"$TOT is {n_events} but the DATA segment (bytes {base + begin}-{base + end}) "
                    f"holds {end - begin + 1} bytes, room for {(end - begin + 1) // max(row, 1)} "
                    "events",
                    fix=_REEXPORT,
                )
        layout.start = base
        _other_segments(base, header, kw, size, notes)
        return layout

    def check(begin: int | None, end: int | None) -> tuple[str, str]:
        """("ok" | "truncated" | "bad" | "absent", why)."""
        if begin is None or end is None:
            return "absent", "no offsets"
        where = f"bytes {base + begin}-{base + end}"
        if begin < HEADER_BYTES or end < begin:
            return "bad", f"{where} are impossible for a DATA segment"
        if base + begin <= text.end and base + end >= text.start:
            return "bad", f"DATA {where} overlaps the TEXT segment (bytes {text.start}-{text.end})"
        have = end - begin + 1
        if have < need:
            return "bad", (
                f"DATA {where} holds {have} bytes, fewer than $TOT {n_events} × {row} bytes "
                f"per event = {need}"
            )
        if have > need + 1 and (have - need >= row or beyond_par):
            return "bad", (
                f"DATA {where} holds {have} bytes, more than $TOT {n_events} × {row} bytes per "
                f"event = {need}: $TOT, $PAR or $PnB is wrong"
            )
        if base + begin + need > size:
            return "truncated", f"DATA up to byte {base + begin + need - 1}"
        return "ok", ""

    h_pair = (header.offsets["data_start"], header.offsets["data_end"])
    if h_pair == (0, 0):
        h_pair = (None, None)  # large files (FCS 3.x): the TEXT keywords hold the offsets
    t_raw = (kw.get("BEGINDATA"), kw.get("ENDDATA"))
    t_pair = (unsigned(t_raw[0]), unsigned(t_raw[1]))
    if any(r is not None and r.strip() and v is None for r, v in zip(t_raw, t_pair, strict=True)):
        notes.warn(f"$BEGINDATA/$ENDDATA are not numbers (found {t_raw[0]!r}, {t_raw[1]!r})")
    sources = [("TEXT", t_pair), ("HEADER", h_pair)]
    if header.version == "2.0":
        sources.reverse()
    (name1, pair1), (name2, pair2) = sources
    (s1, why1), (s2, why2) = check(*pair1), check(*pair2)
    if s1 == "ok" or (s1 == "truncated" and s2 != "ok"):
        begin, end, status, why = *pair1, s1, why1
        if s2 != "absent" and pair2 != pair1:
            notes.warn(
                f"HEADER and TEXT disagree on the DATA offsets ({name2} {pair2[0]}-{pair2[1]}, "
                f"{name1} {pair1[0]}-{pair1[1]}); used {name1}"
            )
        elif s2 == "absent" and header.version != "2.0":
            notes.info(
                "HEADER DATA offsets are blank or 0 (allowed above 99,999,999 bytes); used TEXT"
            )
    elif s2 in ("ok", "truncated"):
        begin, end, status, why = *pair2, s2, why2
        notes.warn(
            f"the {name1} DATA offsets are unusable ({why1}); used the {name2} offsets "
            f"{pair2[0]}-{pair2[1]}"
        )
    else:
        missing = s1 == "absent" and s2 == "absent"
        raise fail(
            path,
            "the DATA offsets are missing from both HEADER and TEXT ($BEGINDATA)"
            if missing
            else f"the DATA segment cannot be located: {why1 if s1 != 'absent' else why2}",
            fix=_REEXPORT,
        )
    have = end - begin + 1
    if have == need + 1:
        notes.info("$ENDDATA is one byte past the DATA segment; read the segment without it")
    elif have > need + 1:
        notes.warn(
            f"the DATA segment is {have - need} bytes longer than $TOT × $PAR values "
            "(less than one event); ignored them"
        )
    layout.start = base + begin
    if status == "truncated":
        layout.error = fail(
            path,
            "the DATA segment cannot be read",
            expected=why,
            found=f"a file of {size} bytes",
            fix="The file is truncated or corrupted (only its HEADER and TEXT can be read, "
            "e.g. with `itme inspect`); export it again",
        )
    _other_segments(base, header, kw, size, notes)
    return layout


def _other_segments(base: int, header: Header, kw: dict[str, str], size: int, notes: Notes) -> None:
    """ANALYSIS and supplemental TEXT are not read; their offsets are still checked."""
    h_begin, h_end = header.offsets["analysis_start"], header.offsets["analysis_end"]
    pairs = {"HEADER ANALYSIS offsets": (h_begin, h_end)}
    for keys in (("BEGINANALYSIS", "ENDANALYSIS"), ("BEGINSTEXT", "ENDSTEXT")):
        raw = [kw.get(k) for k in keys]
        values = [unsigned(r) for r in raw]
        if any(r is not None and r.strip() and v is None for r, v in zip(raw, values, strict=True)):
            notes.warn(f"${keys[0]}/${keys[1]} are not numbers (found {raw[0]!r}, {raw[1]!r})")
            continue
        pairs[f"${keys[0]}/${keys[1]}"] = (values[0], values[1])
    for name, (begin, end) in pairs.items():
        if begin and end and (end < begin or base + end >= size):
            notes.warn(
                f"{name} (bytes {base + begin}-{base + end}) lie outside the file ({size} "
                "bytes): it may be truncated (itme does not read that segment)"
            )


def parse_fcs(path: str | PathLike[str], *, data_set: int = 0, only_text: bool = False) -> FcsFile:
    """Parse one FCS data set: keywords, channels and data layout, and the events.

    Parameters
    ----------
    path
        The FCS file.
    data_set
        Which data set of the ``$NEXTDATA`` chain to read (0 = the first).
    only_text
        Read HEADER and TEXT only: ``data`` is ``None`` and a DATA segment cut off by the end
        of the file is recorded in ``layout.error`` instead of raised.

    Returns
    -------
    The :class:`FcsFile`.

    Raises
    ------
    ItmeInputError
        The file is missing, not FCS, truncated or corrupted, or uses an unsupported mode or
        data type (the message names the file and the keyword or byte offset).
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
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            base, header, text, notes, n_sets = _data_set(fh, path, size, data_set)
        fcs = _describe(path, base, header, text, notes, size, data_set, n_sets)
        if not only_text:
            if fcs.layout.error is not None:
                raise fcs.layout.error
            fcs.data = np.empty((fcs.n_events, fcs.channels.shape[0]), dtype=np.float32)
            read_events(fcs, fcs.data, np.arange(fcs.channels.shape[0]))
    except ItmeError:
        raise
    except OSError as exc:
        raise fail(path, f"the file cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeError, EOFError) as exc:
        raise fail(
            path,
            f"the file could not be parsed ({type(exc).__name__}: {exc})",
            fix="This is a bug in itme's FCS reader: please report it with the file",
        ) from exc
    return fcs


def _describe(
    path: Path,
    base: int,
    header: Header,
    text: Text,
    notes: Notes,
    size: int,
    data_set: int,
    n_sets: int,
) -> FcsFile:
    kw = text.keywords
    # each parameter needs its own $PnB/$PnN keywords, so $PAR is bounded by the TEXT
    n_par = _count(path, kw, "PAR", 1, max(len(kw), 1))
    n_events = _count(path, kw, "TOT", 0, 2**62)  # checked against the DATA segment
    if n_sets > 1:
        notes.info(f"the file holds {n_sets} data sets; read data set {data_set} (data_set=...)")
    channels, beyond_par = _channel_table(path, kw, n_par, notes)
    layout = _layout(path, base, header, text, channels, n_events, size, notes, beyond_par)
    keywords = {}
    for key, value in kw.items():
        m = CHANNEL_KEYWORD.match(key)
        if not (m and m.group(2) in CHANNEL_FIELDS):
            keywords[keyword_name(key)] = value
    return FcsFile(
        path, header.version, keywords, channels, n_events, layout, None, notes.items, n_sets,
        notes.warned,
    )  # fmt: skip
