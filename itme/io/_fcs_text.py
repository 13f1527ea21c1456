r"""The HEADER and TEXT segments of an FCS data set, parsed and checked against the file.

itme parses these two segments itself (about a hundred lines, FCS 3.1 §3.1–3.2) instead of
steering a third-party reader through them:

- every offset and size is checked against the file length before anything is read, so a
  corrupted file cannot make the reader seek or allocate past its end;
- the TEXT is split on its delimiter with ``bytes.split`` (no regular expression, so any
  delimiter byte works, including ``(``, ``|``, ``\\`` or ``*``), doubled delimiters are the
  escape of FCS 3.1 §3.2.9, and empty values written by some instruments are recognised;
- duplicated keywords, a TEXT segment whose end offset is one byte off (every Bodenmiller
  2012 CyTOF file), padding after the last delimiter and a missing final delimiter are
  recognised and recorded in :class:`Notes` instead of silently changing what is read.

Keyword names are returned upper-case without the leading ``$`` (``PAR``, ``P1N``); the
keyword lookup of FCS is case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from itme.errors import ItmeInputError

HEADER_BYTES = 58
VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")
HEADER_FIELDS = (
    "text_start",
    "text_end",
    "data_start",
    "data_end",
    "analysis_start",
    "analysis_end",
)
#: keywords whose value decides where and how the events are read: a duplicate with another
#: value is an error, because either value could be the right one
LAYOUT_KEYWORDS = frozenset(
    {"PAR", "TOT", "DATATYPE", "BYTEORD", "MODE", "BEGINDATA", "ENDDATA", "NEXTDATA"}
)
CHANNEL_KEYWORD = re.compile(r"^P(\d+)([A-Z]+)$")
#: standard (``$``) keywords of FCS 3.1 that itme names with their ``$``
STANDARD = frozenset({
    "ABRT", "BEGINANALYSIS", "BEGINDATA", "BEGINSTEXT", "BTIM", "BYTEORD", "CELLS", "COM",
    "CSMODE", "CSVBITS", "CYT", "CYTSN", "DATATYPE", "DATE", "ENDANALYSIS", "ENDDATA",
    "ENDSTEXT", "ETIM", "EXP", "FIL", "GATE", "INST", "LAST_MODIFIED", "LAST_MODIFIER", "LOST",
    "MODE", "NEXTDATA", "OP", "ORIGINALITY", "PAR", "PLATEID", "PLATENAME", "PROJ", "SMNO",
    "SPILLOVER", "SRC", "SYS", "TIMESTEP", "TOT", "TR", "VOL", "WELLID",
})  # fmt: skip
_PARAMETER_FIELDS = frozenset({
    "B", "E", "F", "G", "L", "N", "O", "P", "R", "S", "T", "V", "D", "CALIBRATION", "DATATYPE",
    "DET", "TAG", "TYPE", "FEATURE", "ANALYTE",
})  # fmt: skip
_LAYOUT_CHANNEL_FIELDS = frozenset({"B", "R", "N", "DATATYPE"})
_UNSIGNED = re.compile(r"^\+?\d+$")
_PADDING = b" \t\r\n\x00"


@dataclass
class Notes:
    """What had to be corrected or was noticed while reading one data set.

    ``items`` are all notes (stored in ``uns["fcs"]["notes"]``); ``warned`` are the ones that
    mean the file is inconsistent and are raised as :class:`~itme.errors.ItmeInputWarning`.
    """

    items: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)

    def info(self, message: str) -> None:
        """Record a benign deviation (an off-by-one offset every file of an instrument has)."""
        self.items.append(message)

    def warn(self, message: str) -> None:
        """Record an inconsistency the reader worked around; it is warned about."""
        self.items.append(message)
        self.warned.append(message)


def fail(
    path: Path, message: str, *, expected: Any = None, found: Any = None, fix: str | None = None
) -> ItmeInputError:
    """The :class:`ItmeInputError` for a problem in the FCS file ``path``.

    Parameters
    ----------
    path
        The file.
    message
        What is wrong, naming the keyword or byte offset.
    expected, found, fix
        As for :class:`~itme.errors.ItmeInputError`.

    Returns
    -------
    The error (the caller raises it).
    """
    return ItmeInputError(
        message, where=f"FCS file {path}", expected=expected, found=found, fix=fix
    )


def unsigned(value: str | None) -> int | None:
    """``value`` as a non-negative integer, or ``None`` when it is absent or not one.

    Parameters
    ----------
    value
        A keyword value (surrounding blanks are ignored, as several instruments pad them).

    Returns
    -------
    The integer or ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    return int(text) if _UNSIGNED.match(text) else None


@dataclass
class Header:
    """The 58-byte HEADER of one data set."""

    version: str  # "2.0", "3.0", "3.1" or "3.2"
    offsets: dict[str, int | None]  # relative to the data set; None where blank or unreadable


def read_header(fh: BinaryIO, path: Path, base: int, size: int, notes: Notes) -> Header:
    """Read and check the HEADER of the data set starting at byte ``base``.

    Parameters
    ----------
    fh
        The open file.
    path
        The file, for messages.
    base
        Offset of the data set in the file (0, or the ``$NEXTDATA`` chain).
    size
        File length in bytes.
    notes
        Where deviations are recorded.

    Returns
    -------
    The version and the six segment offsets.

    Raises
    ------
    ItmeInputError
        Fewer than 58 bytes, no ``FCS`` version, or TEXT offsets that are not numbers.
    """
    fh.seek(base)
    raw = fh.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise fail(
            path,
            f"the file holds {size - base} bytes from offset {base}, fewer than the "
            f"{HEADER_BYTES}-byte FCS HEADER; it is truncated or not an FCS file",
            fix="Export the file again from the acquisition software",
        )
    if raw[:6].decode("ascii", "replace") not in VERSIONS:
        raise fail(
            path,
            f"not an FCS file: the HEADER at byte {base} must start with "
            "FCS2.0, FCS3.0, FCS3.1 or FCS3.2",
            found=repr(raw[:6]),
            fix="Check that the path points to an FCS file",
        )
    if raw[6:10] != b"    ":
        notes.warn(f"HEADER bytes 6-9 should be blanks, found {raw[6:10]!r}")
    offsets: dict[str, int | None] = {}
    for name, start in zip(HEADER_FIELDS, range(10, HEADER_BYTES, 8), strict=True):
        field_bytes = raw[start : start + 8]
        text = field_bytes.strip(_PADDING)
        if not text:
            offsets[name] = None
        elif text.isdigit():
            offsets[name] = int(text)
        elif name.startswith("text"):
            raise fail(
                path,
                f"HEADER bytes {start}-{start + 7} ({name.replace('_', ' ')} offset of the "
                "TEXT segment) are not a number",
                expected="a non-negative whole number",
                found=repr(field_bytes),
                fix="The file is corrupted; export it again",
            )
        else:
            offsets[name] = None
            notes.warn(
                f"HEADER {name.replace('_', ' ')} offset is not a number ({field_bytes!r}); "
                "ignored it"
            )
    return Header(raw[3:6].decode("ascii"), offsets)


@dataclass
class Text:
    """The keywords of a TEXT segment and where the segment really ends."""

    keywords: dict[str, str]  # upper-case names without "$" → value (first occurrence)
    start: int  # absolute offset of the first byte (the delimiter)
    end: int  # absolute offset of the last byte that belongs to the TEXT
    delimiter: bytes


def _split(body: bytes, delim: bytes) -> list[bytes]:
    """Tokens of a TEXT body (without the first and last delimiter); ``dd`` is an escaped ``d``."""
    pieces = body.split(delim + delim)
    tokens = pieces[0].split(delim)
    for piece in pieces[1:]:
        parts = piece.split(delim)
        tokens[-1] += delim + parts[0]
        tokens.extend(parts[1:])
    return tokens


def _body(segment: bytes, delim: bytes, notes: Notes) -> tuple[bytes, int]:
    """The TEXT between its first and last delimiter, and how many bytes at the end are not TEXT."""
    if len(segment) > 1 and segment.endswith(delim):
        return segment[1:-1], 0
    padding = bytes(b for b in _PADDING if bytes([b]) != delim)
    stripped = segment.rstrip(padding)
    if len(stripped) > 1 and stripped.endswith(delim):
        # blanks after the last delimiter (MACSQuant, CyFlow files)
        return stripped[1:-1], len(segment) - len(stripped)
    inclusive = segment[:-1].rstrip(padding)
    if (
        len(inclusive) > 1
        and inclusive.endswith(delim)
        and len(_split(inclusive[1:-1], delim)) % 2 == 0
    ):
        # the end offset is exclusive: its byte is the first of DATA (every Bodenmiller 2012
        # CyTOF file); a missing final delimiter would leave an odd number of tokens instead
        notes.info("the TEXT end offset is one byte past the TEXT segment; read it without")
        return inclusive[1:-1], len(segment) - len(inclusive)
    notes.warn("the TEXT segment does not end with its delimiter; read its last value to the end")
    return stripped[1:], 0


def _decode(raw: bytes, delim: bytes) -> str:
    if delim[0] < 0x80:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")  # FCS 2.0/3.0 TEXT is ASCII; Latin-1 never fails


def parse_text(
    fh: BinaryIO, path: Path, base: int, header: Header, size: int, notes: Notes
) -> Text:
    """Read and parse the primary TEXT segment of a data set.

    Parameters
    ----------
    fh, path, base, size, notes
        As for :func:`read_header`.
    header
        The data set's HEADER.

    Returns
    -------
    The keywords (first value of a duplicated keyword) and the segment's extent.

    Raises
    ------
    ItmeInputError
        TEXT offsets outside the file or inside the HEADER, a duplicated keyword whose values
        disagree where the layout depends on it.
    """
    start, end = header.offsets["text_start"], header.offsets["text_end"]
    if start is None or end is None:
        raise fail(
            path,
            f"the HEADER at byte {base} gives no TEXT offsets (bytes 10-25 are blank)",
            fix="The file is corrupted; export it again",
        )
    if start < HEADER_BYTES or end <= start:
        raise fail(
            path,
            "the HEADER's TEXT offsets are impossible",
            expected=f"{HEADER_BYTES} <= TEXT start < TEXT end",
            found=f"TEXT start {start}, TEXT end {end}",
            fix="The file is corrupted; export it again",
        )
    if base + end >= size:
        raise fail(
            path,
            "the TEXT segment runs past the end of the file",
            expected=f"TEXT up to byte {base + end} (HEADER)",
            found=f"a file of {size} bytes",
            fix="The file is truncated; copy or export it again",
        )
    fh.seek(base + start)
    segment = fh.read(end - start + 1)
    delim = segment[:1]
    body, past = _body(segment, delim, notes)
    tokens = _split(body, delim)
    if len(tokens) % 2:
        notes.warn(
            f"the TEXT segment ends with keyword {_decode(tokens[-1], delim).strip()!r} "
            "without a value; read it as empty"
        )
        tokens.append(b"")
    keywords: dict[str, str] = {}
    conflicts: list[str] = []
    repeated: list[str] = []
    empty: list[str] = []
    nameless = 0
    char = _decode(delim, delim)
    pairs = [
        (_decode(k, delim), _decode(v, delim))
        for k, v in zip(tokens[::2], tokens[1::2], strict=True)
    ]
    for raw_key, value in _empty_values(pairs, char, empty):
        key = raw_key.strip().upper().removeprefix("$")
        if not key:
            nameless += 1
            continue
        if key not in keywords:
            keywords[key] = value
        elif keywords[key].strip() == value.strip():
            repeated.append(key)
        else:
            conflicts.append(key)
    if empty:
        notes.warn(
            f"keyword(s) {', '.join('$' + k.upper().lstrip('$') for k in empty[:10])} have an "
            "empty value, which FCS does not allow; read as empty"
        )
    if nameless:
        notes.warn(f"{nameless} value(s) in TEXT have an empty keyword name; ignored them")
    if repeated:
        notes.info(f"keyword(s) repeated with the same value: {', '.join(sorted(set(repeated)))}")
    if conflicts:
        layout = sorted(k for k in set(conflicts) if _is_layout(k))
        if layout:
            raise fail(
                path,
                f"keyword(s) {', '.join('$' + k for k in layout)} appear twice in TEXT with "
                "different values",
                expected="each keyword once",
                found="; ".join(f"${k}" for k in layout),
                fix="The file is corrupted (it cannot be known which value is right); export "
                "it again",
            )
        notes.warn(
            f"keyword(s) {', '.join('$' + k for k in sorted(set(conflicts)))} appear twice "
            "with different values; used the first"
        )
    return Text(keywords, base + start, base + end - past, delim)


def is_standard(key: str) -> bool:
    """Whether ``key`` (upper case, without ``$``) is a standard FCS keyword."""
    m = CHANNEL_KEYWORD.match(key)
    return key in STANDARD or (m is not None and m.group(2) in _PARAMETER_FIELDS)


def _is_layout(key: str) -> bool:
    m = CHANNEL_KEYWORD.match(key)
    return key in LAYOUT_KEYWORDS or (m is not None and m.group(2) in _LAYOUT_CHANNEL_FIELDS)


def _empty_values(
    pairs: list[tuple[str, str]], delim: str, empty: list[str]
) -> list[tuple[str, str]]:
    """Undo the pairing shift of an empty value (``$P3S//$P4N/x/``: ``$P3S`` is empty).

    FCS forbids empty values, so ``//`` is always an escaped delimiter; some instruments write
    them anyway, which glues ``$P3S/$P4N`` into one keyword. A keyword made of standard
    keywords joined by the delimiter (``$P3S/$P4N``) is split back into the empty keyword(s)
    and the real one; a name that merely contains an escaped delimiter (``FJ_$P1R`` with
    ``_`` as delimiter) is left alone.
    """
    out = []
    for key, value in pairs:
        parts = key.split(delim)
        if (
            len(parts) > 1
            and all(p.strip() for p in parts)
            and all(p.strip()[:1] == "$" and is_standard(p.strip()[1:].upper()) for p in parts)
        ):
            empty.extend(p.strip() for p in parts[:-1])
            out.extend((p, "") for p in parts[:-1])
            out.append((parts[-1], value))
        else:
            out.append((key, value))
    return out
