"""Seeded mutations of real FCS files for the reader fuzz suite (tests only, not shipped).

A :class:`Source` is a real FCS file taken apart (HEADER, TEXT keywords as written, DATA bytes)
together with what ``itme.io.read_fcs`` reads from it. :func:`make_case` turns a source and a
case number into one mutated file, deterministically: the same seed and case number give the
same bytes. Each mutation says what a correct reader may do with the result (``expect``):

``same``
    the mutation keeps the meaning of the file (another delimiter, padding, a rewritten
    non-layout keyword, blank HEADER offsets, ...): the file must be read, with the same values.
``warned``
    sizes, offsets or layout keywords were edited, the file was truncated or HEADER/TEXT bytes
    flipped: the reader may refuse it (an ``ItmeError``) or read it, but values that differ from
    the original's must come with an ``ItmeInputWarning``: nothing is lost or altered silently.
``free``
    DATA bytes were changed, or a keyword was changed to another valid value that reinterprets
    the same bytes (``$BYTEORD`` reversed, ``$DATATYPE`` F↔I of the same width, ``$PnN``
    swapped): no reader can tell, so values may differ without a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: a non-layout keyword edit writes one of these (delimiters and regex metacharacters included)
ODD_TEXT = [
    "x", "ä ö ü ß", "日本語", "(", ")", "[a-z]+", "a|b", "\\", "*", "?", "^$", "{1,2}", "50%",
    "  spaced  ", "tab\tinside", "line\nbreak", "=", "#!", "~", "a/b", "a//b", "9" * 300,
]  # fmt: skip
#: delimiters for rebuilt TEXT segments: regular-expression metacharacters and other bytes
DELIMITERS = [
    "/", "|", "\\", "*", "(", ")", "[", "]", "{", "}", ".", "+", "?", "^", "$", "!", "#", "%",
    "&", "~", ":", ";", ",", "'", '"', "<", ">", "=", "@", "`", "\x0c", "\t", " ", "\x1e", "_",
]  # fmt: skip
#: values written into size and offset keywords
BAD_NUMBERS = [
    "-1", "-5", "0", "1", "2", "100000000", "1000000000", "1000000000000", "9" * 30, "abc", "",
    " ", "1e5", "inf", "-inf", "nan", "0x10", "--5", "3.5", "+3", "١٢", "1,000",
]  # fmt: skip
BYTEORDS = [
    "1,2,3,4", "4,3,2,1", "3,4,1,2", "2,1,4,3", "1,2", "2,1", "1", "", "1,2,3,4,5,6,7,8",
    "8,7,6,5,4,3,2,1", " 4, 3, 2, 1 ", "1;2;3;4", "a,b", "4,3,2", "0,1,2,3",
]  # fmt: skip
LAYOUT = ("PAR", "TOT", "BEGINDATA", "ENDDATA", "NEXTDATA", "DATATYPE", "BYTEORD", "MODE")
OTHER_SEGMENTS = ("BEGINANALYSIS", "ENDANALYSIS", "BEGINSTEXT", "ENDSTEXT")


def norm(key: str) -> str:
    """Keyword name as FCS compares them: upper case, no ``$``, no blanks."""
    return key.strip().upper().removeprefix("$")


def split_text(segment: bytes) -> list[tuple[str, str]] | None:
    """(key, value) pairs of a TEXT segment as written (Latin-1), or None if ambiguous."""
    if len(segment) < 2:
        return None
    delim = segment[:1]
    last = segment.rfind(delim, 1)
    if last <= 0:
        return None
    body = segment[1:last]
    pieces = body.split(delim + delim)
    tokens = pieces[0].split(delim)
    for piece in pieces[1:]:
        parts = piece.split(delim)
        tokens[-1] += delim + parts[0]
        tokens.extend(parts[1:])
    if len(tokens) % 2:
        return None
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in zip(tokens[::2], tokens[1::2], strict=True)
    ]


@dataclass
class Source:
    """A real FCS file taken apart, and what the reader makes of it."""

    name: str
    blob: bytes
    version: bytes
    text: tuple[int, int]  # HEADER's TEXT offsets (absolute, first data set)
    pairs: list[tuple[str, str]] | None  # TEXT keywords as written; None when unparsable
    data: bytes | None  # the DATA bytes the reader uses (first data set)
    data_start: int
    integer: bool
    reference: np.ndarray | None  # X read from the original (None: the original is refused)
    warned: frozenset[str] = frozenset()  # what reading the original warns about


def warned_notes(messages: list[str], path: Path | str) -> set[str]:
    """The inconsistencies named by read_fcs's ItmeInputWarnings, one string per note."""
    notes = set()
    for message in messages:
        message = message.replace(str(path), "<file>")
        head, sep, tail = message.partition(" is inconsistent; read it anyway: ")
        notes.update(tail.split("; ") if sep else [message])
    return notes


def load_source(path: Path, name: str) -> Source:
    """Take one real file apart; its reference values are read with itme.io.read_fcs."""
    import itme
    from itme.errors import ItmeError, ItmeWarning
    from itme.io._fcs_format import parse_fcs

    blob = path.read_bytes()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reference = itme.io.read_fcs(path).X.copy()
            layout = parse_fcs(path, only_text=True)
        messages = [str(w.message) for w in caught if issubclass(w.category, ItmeWarning)]
    except ItmeError:
        return Source(name, blob, blob[:6], (0, 0), None, None, 0, False, None)
    ts, te = int(blob[10:18]), int(blob[18:26])
    need = layout.n_events * layout.layout.row_bytes
    start = layout.layout.start
    return Source(
        name,
        blob,
        blob[:6],
        (ts, te),
        split_text(blob[ts : te + 1]),
        blob[start : start + need],
        start,
        layout.layout.datatype == "I",
        reference,
        frozenset(warned_notes(messages, path)),
    )


def _field(value: int | str) -> bytes:
    text = str(value).encode("latin-1")
    return text.rjust(8)[:8] if len(text) <= 8 else text[:8]


def _escape(text: str, delim: str) -> str:
    return text.replace(delim, delim * 2)


def text_bytes(pairs: list[tuple[str, str]], delim: str) -> bytes:
    """A TEXT segment: the delimiter, then key, value, each followed by the delimiter."""
    body = "".join(f"{_escape(k, delim)}{delim}{_escape(v, delim)}{delim}" for k, v in pairs)
    return (delim + body).encode("latin-1", errors="replace")


def roundtrips(pairs: list[tuple[str, str]], delim: str) -> bool:
    """Whether ``pairs`` written with ``delim`` split back into themselves (FCS escaping is
    ambiguous when a key or value starts or ends with the delimiter)."""
    try:
        raw = text_bytes(pairs, delim)
    except UnicodeEncodeError:
        return False
    back = split_text(raw)
    want = [(k.encode("latin-1", "replace").decode("latin-1"), v) for k, v in pairs]
    want = [(k, v.encode("latin-1", "replace").decode("latin-1")) for k, v in want]
    return back == want


def build(
    pairs: list[tuple[str, str]],
    data: bytes,
    *,
    delim: str = "/",
    version: bytes = b"FCS3.1",
    text_start: int = 58,
    pad: bytes = b"",
    gap: bytes = b"",
    tail: bytes = b"",
    header_data: str | tuple = "auto",
    fix_offsets: bool = True,
    override: dict[str, str | None] | None = None,
) -> bytes:
    """An FCS file from keywords and DATA bytes.

    ``$BEGINDATA``/``$ENDDATA`` are set to where the DATA lands (``fix_offsets``), then
    ``override`` sets (or, with ``None``, removes) keywords; the HEADER always holds the
    true offsets unless ``header_data`` says otherwise.
    """
    names = [norm(k) for k, _ in pairs]
    base = list(pairs) + [(f"${k}", "0") for k in ("BEGINDATA", "ENDDATA") if k not in names]
    begin = text_start
    for _ in range(8):  # the offsets' digits change the TEXT length: iterate to a fixed point
        end = begin + len(data) - 1
        current = []
        for k, v in base if fix_offsets else pairs:
            if fix_offsets and norm(k) == "BEGINDATA":
                v = str(begin)
            elif fix_offsets and norm(k) == "ENDDATA":
                v = str(end)
            if override and norm(k) in override:
                if override[norm(k)] is None:
                    continue
                v = str(override[norm(k)])
            current.append((k, v))
        seen = {norm(k) for k, _ in current}
        current += [
            (f"${k}", v) for k, v in (override or {}).items() if v is not None and k not in seen
        ]
        text = text_bytes(current, delim) + pad
        new_begin = text_start + len(text) + len(gap)
        if new_begin == begin:
            break
        begin = new_begin
    data_start, data_end = begin, begin + len(data) - 1
    header = version + b"    " + _field(text_start) + _field(text_start + len(text) - 1)
    if header_data == "auto":
        header += _field(data_start) + _field(data_end)
    elif header_data == "blank":
        header += b" " * 16
    elif header_data == "zero":
        header += _field(0) + _field(0)
    else:
        header += _field(header_data[0]) + _field(header_data[1])
    header += _field(0) + _field(0)
    return header + b" " * (text_start - 58) + text + gap + data + tail


@dataclass
class Case:
    """One mutated file and what a correct reader may do with it."""

    index: int
    source: str
    kind: str
    detail: str
    blob: bytes
    expect: str  # "same", "warned" or "free"
    reference: np.ndarray | None
    warned: frozenset[str] = frozenset()  # the original's warnings (not news for the case)


def _index(pairs: list[tuple[str, str]], name: str) -> int | None:
    for i, (k, _) in enumerate(pairs):
        if norm(k) == name:
            return i
    return None


def _set(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    out = list(pairs)
    i = _index(out, name)
    if i is None:
        out.append((f"${name}", value))
    else:
        out[i] = (out[i][0], value)
    return out


def _clean(src: Source) -> list[tuple[str, str]]:
    """The source's keywords for a rebuilt single data set (other segments dropped)."""
    pairs = [(k, v) for k, v in src.pairs if norm(k) not in OTHER_SEGMENTS]
    return _set(pairs, "NEXTDATA", "0")


def _channel_keys(pairs: list[tuple[str, str]], field: str) -> list[int]:
    return [
        i
        for i, (k, _) in enumerate(pairs)
        if norm(k).startswith("P")
        and norm(k).endswith(field)
        and norm(k)[1 : -len(field)].isdigit()
    ]


def _byteord_little(value: str) -> bool | None:
    parts = value.replace(" ", "").split(",")
    if not all(p.isdigit() for p in parts):
        return None
    order = [int(p) for p in parts]
    if order == list(range(1, len(order) + 1)):
        return True
    if len(order) > 1 and order == list(range(len(order), 0, -1)):
        return False
    return None


# --- mutations: each returns (blob, kind, detail, expect) or None when it does not apply ---------


def m_truncate(src: Source, rng: np.random.Generator):
    size = len(src.blob)
    where = rng.choice(["anywhere", "header", "text", "data", "data_end", "last"])
    if where == "header":
        cut = int(rng.integers(0, 58))
    elif where == "text" and src.text[1] > src.text[0]:
        cut = int(rng.integers(src.text[0], src.text[1] + 1))
    elif where == "data" and src.data:
        cut = src.data_start + int(rng.integers(0, len(src.data)))
    elif where == "data_end" and src.data:
        cut = src.data_start + len(src.data) - int(rng.integers(0, 3))
    elif where == "last":
        cut = size - int(rng.integers(1, 9))
    else:
        cut = int(rng.integers(0, size))
    return src.blob[: max(cut, 0)], "truncate", f"{where}: {cut} of {size} bytes", "warned"


def _flip(blob: bytes, lo: int, hi: int, rng: np.random.Generator, k: int) -> tuple[bytes, str]:
    buf = bytearray(blob)
    spots = rng.integers(lo, max(hi, lo + 1), size=k)
    for s in spots:
        s = int(min(s, len(buf) - 1))
        buf[s] = (
            int(rng.integers(0, 256))
            if rng.random() < 0.5
            else buf[s] ^ (1 << int(rng.integers(0, 8)))
        )
    return bytes(buf), ",".join(str(int(s)) for s in spots[:5])


def m_flip_header(src: Source, rng: np.random.Generator):
    blob, spots = _flip(src.blob, 0, 58, rng, int(rng.integers(1, 4)))
    return blob, "flip_header", f"bytes {spots}", "warned"


def m_flip_text(src: Source, rng: np.random.Generator):
    if src.text[1] <= src.text[0]:
        return None
    blob, spots = _flip(src.blob, src.text[0], src.text[1] + 1, rng, int(rng.integers(1, 6)))
    return blob, "flip_text", f"bytes {spots}", "warned"


def m_flip_data(src: Source, rng: np.random.Generator):
    if not src.data:
        return None
    lo = src.data_start
    blob, spots = _flip(src.blob, lo, lo + len(src.data), rng, int(rng.integers(1, 20)))
    return blob, "flip_data", f"bytes {spots}", "free"


def m_insert_delete(src: Source, rng: np.random.Generator):
    pos = int(rng.integers(0, len(src.blob)))
    # inside DATA the bytes after ``pos`` shift; only a CRC could tell, and real files write
    # none ("00000000"), so that is a DATA change a reader cannot detect
    in_data = src.data is not None and src.data_start <= pos < src.data_start + len(src.data)
    expect = "free" if in_data else "warned"
    if rng.random() < 0.5:
        blob = src.blob[:pos] + bytes([int(rng.integers(0, 256))]) + src.blob[pos:]
        return blob, "insert_byte", f"at {pos}", expect
    return src.blob[:pos] + src.blob[pos + 1 :], "delete_byte", f"at {pos}", expect


def m_trailing(src: Source, rng: np.random.Generator):
    tail = rng.integers(0, 256, size=int(rng.integers(1, 5000))).astype(np.uint8).tobytes()
    expect = "same" if src.reference is not None else "warned"
    return src.blob + tail, "trailing_bytes", f"{len(tail)} bytes", expect


def m_delimiter(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    for delim in rng.permutation(DELIMITERS):
        if roundtrips(pairs, str(delim)):
            return build(pairs, src.data, delim=str(delim)), "delimiter", repr(str(delim)), "same"
    return None


def m_padding(src: Source, rng: np.random.Generator):
    pad = bytes(rng.choice([b" ", b"\x00", b"\n"])) * int(rng.integers(1, 300))
    gap = rng.integers(0, 256, size=int(rng.integers(0, 300))).astype(np.uint8).tobytes()
    blob = build(
        _clean(src), src.data, pad=pad, gap=gap, text_start=int(rng.choice([58, 256, 512]))
    )
    return blob, "padding", f"{len(pad)} pad, {len(gap)} gap", "same"


def m_header_offsets_blank(src: Source, rng: np.random.Generator):
    how = str(rng.choice(["blank", "zero"]))
    return build(_clean(src), src.data, header_data=how), "header_data_offsets", how, "same"


def m_meta_edit(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    choices = [
        i for i, (k, _) in enumerate(pairs)
        if norm(k) not in LAYOUT and not (norm(k)[:1] == "P" and norm(k)[-1:] in "NBR" and norm(k)[1:-1].isdigit())
    ]  # fmt: skip
    if not choices:
        return None
    i = int(rng.choice(choices))
    value = str(rng.choice(ODD_TEXT))
    pairs[i] = (pairs[i][0], value)
    if not roundtrips(pairs, "/"):
        return None
    return build(pairs, src.data), "meta_keyword", f"{pairs[i][0]}={value[:20]!r}", "same"


def m_add_keywords(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    n = int(rng.integers(1, 20))
    for j in range(n):
        value = str(rng.choice(ODD_TEXT)) * int(rng.integers(1, 4))
        pairs.insert(int(rng.integers(0, len(pairs) + 1)), (f"ITME_FUZZ_{j}", value))
    if rng.random() < 0.2:
        pairs.append(("ITME_BIG", "x" * 200_000))
    if not roundtrips(pairs, "/"):
        return None
    return build(pairs, src.data), "add_keywords", f"{n}", "same"


def m_shuffle(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    order = rng.permutation(len(pairs))
    return build([pairs[i] for i in order], src.data), "shuffle_keywords", "", "same"


def m_spelling(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    how = str(rng.choice(["lower", "spaces", "zeros", "plus"]))
    out = []
    for k, v in pairs:
        if how == "lower":
            out.append((k.lower(), v))
        elif norm(k) in ("PAR", "TOT") or (
            norm(k)[:1] == "P" and norm(k)[-1:] == "B" and norm(k)[1:-1].isdigit()
        ):
            v = v.strip()
            out.append((k, {"spaces": f" {v} ", "zeros": f"000{v}", "plus": f"+{v}"}[how]))
        else:
            out.append((k, v))
    return build(out, src.data), "spelling", how, "same"


def m_duplicate_same(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    i = int(rng.integers(0, len(pairs)))
    if norm(pairs[i][0]) in ("BEGINDATA", "ENDDATA"):
        return None  # rebuilt with new values: not the same any more
    pairs.insert(int(rng.integers(0, len(pairs) + 1)), pairs[i])
    return build(pairs, src.data), "duplicate_same", pairs[i][0], "same"


def m_second_data_set(src: Source, rng: np.random.Generator):
    first = build(_clean(src), src.data)
    pairs = _set(_clean(src), "NEXTDATA", "0")
    for _ in range(4):
        nxt = len(first)
        first = build(_set(_clean(src), "NEXTDATA", str(nxt)), src.data)
        if len(first) == nxt:
            break
    second = build(pairs, src.data)
    return first + second, "second_data_set", "", "same"


def m_version(src: Source, rng: np.random.Generator):
    version = rng.choice(
        [b"FCS3.0", b"FCS3.1", b"FCS3.2", b"FCS2.0", b"FCS1.0", b"FCS4.0", b"fcs3.1"]
    )
    expect = "same" if version in (b"FCS3.0", b"FCS3.1", b"FCS3.2", b"FCS2.0") else "warned"
    return build(_clean(src), src.data, version=bytes(version)), "version", version.decode(), expect


def m_empty_value(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    names = [i for i, (k, _) in enumerate(pairs) if norm(k) in ("CYT", "DATE", "FIL", "SRC")]
    names += _channel_keys(pairs, "S")
    if not names:
        return None
    i = int(rng.choice(names))
    key = pairs.pop(i)[0]
    par = _index(pairs, "PAR")
    pairs.insert(par, (key, ""))  # followed by $PAR, a keyword starting with "$"
    if not pairs[par + 1][0].startswith("$"):
        return None
    return build(pairs, src.data), "empty_value", key, "same"


def m_crc(src: Source, rng: np.random.Generator):
    crc = b"00000000" if rng.random() < 0.5 else f"{int(rng.integers(0, 10**8)):08d}".encode()
    return build(_clean(src), src.data, tail=crc), "crc_tail", crc.decode(), "same"


def m_edit_number(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    keys = ["PAR", "TOT", "BEGINDATA", "ENDDATA", "NEXTDATA", *OTHER_SEGMENTS]
    keys += [norm(pairs[i][0]) for i in _channel_keys(pairs, "B") + _channel_keys(pairs, "R")]
    key = str(rng.choice(keys))
    i = _index(pairs, key)
    old = pairs[i][1].strip() if i is not None else "0"
    options = list(BAD_NUMBERS)
    if old.isdigit():
        options += [str(int(old) + 1), str(int(old) - 1), str(int(old) * 2), str(int(old) // 2)]
    value = str(rng.choice(options))
    combo = rng.random() < 0.1
    override: dict[str, str | None] = {key: value}
    if combo:  # the combinations that used to hang or exhaust memory
        override.update(PAR=str(rng.choice(["0", "100000000"])), TOT="1000000000000")
    blob = build(pairs, src.data, override=override)
    if key in ("BEGINANALYSIS", "BEGINSTEXT", "ENDANALYSIS", "ENDSTEXT") and not combo:
        expect = "same"  # itme does not read these segments
    elif re.fullmatch(r"P\d+[BR]", key) and not src.integer and not combo:
        expect = "same"  # $PnR and $PnB do not change float data (4 or 8 bytes per value)
    elif key == "NEXTDATA" and not combo:
        expect = "same"  # data set 0 is read either way
    else:
        expect = "warned"
    return blob, "edit_number", f"${key}={value[:20]!r}{' +PAR/TOT' if combo else ''}", expect


def m_remove(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    key = str(
        rng.choice(
            [
                "PAR",
                "TOT",
                "DATATYPE",
                "BYTEORD",
                "MODE",
                "BEGINDATA",
                "ENDDATA",
                "P1N",
                "P1B",
                "P1R",
                "P2S",
            ]
        )
    )
    if _index(pairs, key) is None:
        return None
    expect = "same" if key in ("MODE", "P2S") or (key == "P1R" and not src.integer) else "warned"
    return build(pairs, src.data, override={key: None}), "remove_keyword", key, expect


def m_byteord(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    i = _index(pairs, "BYTEORD")
    if i is None:
        return None
    value = str(rng.choice(BYTEORDS))
    old, new = _byteord_little(pairs[i][1]), _byteord_little(value)
    pairs[i] = (pairs[i][0], value)
    expect = "same" if old is not None and old == new else "free" if new is not None else "warned"
    return build(pairs, src.data), "byteord", repr(value), expect


def m_datatype(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    i = _index(pairs, "DATATYPE")
    if i is None:
        return None
    old = pairs[i][1].strip().upper()
    value = str(rng.choice(["F", "I", "D", "A", "f", "i", "", "X", "FF"]))
    pairs[i] = (pairs[i][0], value)
    if value.upper() == old:
        expect = "same"
    elif {old, value} == {"F", "I"} and all(
        pairs[j][1].strip() == "32" for j in _channel_keys(pairs, "B")
    ):
        expect = "free"  # 32-bit floats read as 32-bit integers: no reader can tell
    else:
        expect = "warned"
    return build(pairs, src.data), "datatype", repr(value), expect


def m_mode(src: Source, rng: np.random.Generator):
    value = str(rng.choice(["L", "l", "C", "U", "", "X"]))
    expect = "same" if value.upper() == "L" else "warned"
    return build(_set(_clean(src), "MODE", value), src.data), "mode", repr(value), expect


def m_duplicate_conflict(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    i = int(rng.integers(0, len(pairs)))
    k, v = pairs[i]
    other = str(rng.choice(BAD_NUMBERS if v.strip().isdigit() else ODD_TEXT))
    pairs.insert(int(rng.integers(0, len(pairs) + 1)), (k, other))
    if not roundtrips(pairs, "/"):
        return None
    return build(pairs, src.data), "duplicate_conflict", f"{k}={other[:20]!r}", "warned"


def m_overlap(src: Source, rng: np.random.Generator):
    """$BEGINDATA (TEXT and HEADER) moved into the TEXT segment, with a consistent $ENDDATA."""
    pairs = _clean(src)
    probe = build(pairs, src.data)
    text_end = int(probe[18:26])
    begin = text_end - int(rng.integers(0, 60))
    end = begin + len(src.data) - 1
    pairs = _set(_set(pairs, "BEGINDATA", str(begin)), "ENDDATA", str(end))
    blob = build(pairs, src.data, fix_offsets=False, header_data=(begin, end))
    return blob, "data_overlaps_text", f"{begin}-{end}", "warned"


def m_header_field(src: Source, rng: np.random.Generator):
    buf = bytearray(src.blob)
    slot = int(rng.integers(0, 6))
    old = buf[10 + 8 * slot : 18 + 8 * slot].strip()
    options = [b"--5", b"-1", b"99999999", b"abcdefgh", b"", b"0", b"58", str(len(buf)).encode()]
    if old.isdigit():
        options += [str(int(old) + 1).encode(), str(max(int(old) - 1, 0)).encode()]
    value = options[int(rng.integers(0, len(options)))]
    buf[10 + 8 * slot : 18 + 8 * slot] = value.rjust(8)[:8]
    # ANALYSIS offsets are not read
    expect = "same" if slot >= 4 and src.reference is not None else "warned"
    return bytes(buf), "header_field", f"field {slot}={value!r}", expect


def m_nextdata(src: Source, rng: np.random.Generator):
    if src.pairs is None:
        return None
    size = len(src.blob)
    value = str(
        rng.choice(["1", "58", str(size), str(size * 10), "-1", "x", "", str(src.data_start)])
    )
    return build(_set(_clean(src), "NEXTDATA", value), src.data), "nextdata", value, "same"


def m_pnn(src: Source, rng: np.random.Generator):
    pairs = _clean(src)
    names = _channel_keys(pairs, "N")
    if len(names) < 2:
        return None
    how = str(rng.choice(["remove", "duplicate", "swap", "odd"]))
    a, b = (int(x) for x in rng.choice(names, size=2, replace=False))
    if how == "remove":
        pairs.pop(a)
    elif how == "duplicate":
        pairs[a] = (pairs[a][0], pairs[b][1])
    elif how == "swap":
        pairs[a], pairs[b] = (pairs[a][0], pairs[b][1]), (pairs[b][0], pairs[a][1])
    else:
        pairs[a] = (pairs[a][0], str(rng.choice(ODD_TEXT)))
    if not roundtrips(pairs, "/"):
        return None
    return build(pairs, src.data), "pnn", how, "same"  # names change, values do not


def m_splice(src: Source, rng: np.random.Generator, other: Source):
    if other.pairs is None or other is src:
        return None
    return build(_clean(other), src.data), "splice", other.name, "warned"


MUTATIONS = [
    (m_truncate, 10), (m_flip_header, 5), (m_flip_text, 8), (m_flip_data, 5),
    (m_insert_delete, 4), (m_trailing, 2), (m_delimiter, 8), (m_padding, 3),
    (m_header_offsets_blank, 2), (m_meta_edit, 3), (m_add_keywords, 2), (m_shuffle, 2),
    (m_spelling, 3), (m_duplicate_same, 2), (m_second_data_set, 2), (m_version, 2),
    (m_empty_value, 2), (m_crc, 1), (m_edit_number, 16), (m_remove, 4), (m_byteord, 4),
    (m_datatype, 3), (m_mode, 1), (m_duplicate_conflict, 3), (m_overlap, 3),
    (m_header_field, 4), (m_nextdata, 2), (m_pnn, 2), (m_splice, 2),
]  # fmt: skip
_RAW = {
    m_truncate,
    m_flip_header,
    m_flip_text,
    m_flip_data,
    m_insert_delete,
    m_trailing,
    m_header_field,
}


def make_case(sources: list[Source], seed: int, index: int) -> Case:
    """Case ``index`` of the campaign ``seed``: a source, a mutation, the mutated bytes."""
    rng = np.random.default_rng([seed, index])
    src = sources[index % len(sources)]
    funcs = [f for f, _ in MUTATIONS]
    weights = np.array([w for _, w in MUTATIONS], dtype=float)
    for _ in range(20):
        func = funcs[int(rng.choice(len(funcs), p=weights / weights.sum()))]
        if src.reference is None and func not in _RAW:
            continue  # an unreadable original is only cut and flipped
        if func is m_splice:
            made = func(src, rng, sources[int(rng.integers(0, len(sources)))])
        else:
            made = func(src, rng)
        if made is not None:
            blob, kind, detail, expect = made
            return Case(index, src.name, kind, detail, blob, expect, src.reference, src.warned)
    blob, kind, detail, expect = m_truncate(src, rng)
    return Case(index, src.name, kind, detail, blob, expect, src.reference, src.warned)
