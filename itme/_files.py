"""File helpers shared by the readers, the pipeline and the report.

Checksums, atomic writes, safe file names and the check that a path lies inside the output
folder.

An atomic write goes to a temporary file in the destination folder and is moved into place
with :func:`os.replace` (atomic on POSIX file systems), so a crash never leaves a half-written
file. The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not
the owner-only mode of the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    The 64-character hexadecimal digest.
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path
        The file to write; its folder is created when missing.

    Returns
    -------
    A context manager yielding the temporary path to write. On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    r"""Write UTF-8 text atomically (``\n`` line ends), flushed to disk before the move.

    Parameters
    ----------
    path
        The file to write.
    text
        Its content.

    Returns
    -------
    ``path``.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return path


# --- safe names -------------------------------------------------------------------------------

#: characters Windows refuses in file names (``:`` is also the macOS Finder's separator), path
#: separators, and control characters
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
#: names Windows reserves for devices, whatever the extension
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10)}
_MAX_NAME = 120


def name_problem(name: str) -> str | None:
    r"""Why ``name`` cannot be used as (part of) a file name on every system, or ``None``.

    Refused: empty names, ``.`` and ``..``, path separators (``/``, ``\\``), control
    characters, the characters Windows refuses (``< > : " | ? *``), a trailing dot or space,
    Windows device names (``CON``, ``NUL``, ``COM1``, ...) and names over 120 characters.

    Parameters
    ----------
    name
        An id that becomes part of a file name (a sample id, a variant of an output).

    Returns
    -------
    A short reason (e.g. ``"contains '/'"``), or ``None`` when the name is safe.
    """
    if name in ("", ".", ".."):
        return f"is {name!r}" if name else "is empty"
    bad = sorted(set(_UNSAFE_CHARS.findall(name)))
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"contains {shown} (path separators, control characters or characters Windows refuses)"
        )
    if ".." in name.split("."):
        return "contains '..'"
    if name[-1] in ". ":
        return "ends with a dot or a space (Windows drops them)"
    if name.split(".")[0].strip().lower() in _RESERVED:
        return f"is a name Windows reserves for a device ({name.split('.')[0]})"
    if len(name) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} characters"
    return None


def safe_name(name: str) -> str:
    """``name`` as a file name safe on Linux, macOS and Windows, unique for each ``name``.

    A safe name (:func:`name_problem` is ``None``) and without whitespace is returned
    unchanged; otherwise unsafe characters and whitespace become ``_`` and 8 hex digits of the
    SHA-256 of the original are appended, so two ids never map to one file.

    Parameters
    ----------
    name
        Any text.

    Returns
    -------
    The file-name-safe text.

    Examples
    --------
    >>> safe_name("MM01_BM")
    'MM01_BM'
    >>> safe_name("a/../../escaped").startswith("a_.._.._escaped-")
    True
    """
    if name_problem(name) is None and not re.search(r"\s", name):
        return name
    cleaned = re.sub(r"\s", "_", _UNSAFE_CHARS.sub("_", name)).rstrip(". ")[: _MAX_NAME - 9]
    if cleaned.split(".")[0].lower() in _RESERVED or cleaned in ("", ".", ".."):
        cleaned = f"_{cleaned}"
    return f"{cleaned}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it lies inside the folder ``root`` (symlinks resolved).

    Every file a run writes goes through this check, so a name from an input table can never
    make a run write outside its output folder.

    Parameters
    ----------
    root
        The output folder.
    path
        A path to be written.

    Returns
    -------
    ``path`` unchanged.

    Raises
    ------
    ItmeInputError
        ``path`` resolves to a place outside ``root``.
    """
    from itme.errors import ItmeInputError

    if not path.resolve().is_relative_to(root.resolve()):
        raise ItmeInputError(
            "refused to write outside the output folder",
            where=str(path),
            expected=f"a path inside {root}",
            found=str(path.resolve()),
            fix="A name from an input table (sample_id, a contrast or endpoint name) carries "
            "'..' or a path separator: rename it",
        )
    return path
