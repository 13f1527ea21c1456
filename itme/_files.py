"""File helpers shared by the readers, the pipeline and the report: checksums, atomic writes.

An atomic write goes to a temporary file in the destination folder and is moved into place
with :func:`os.replace` (atomic on POSIX file systems), so a crash never leaves a half-written
file. The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not
the owner-only mode of the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
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
