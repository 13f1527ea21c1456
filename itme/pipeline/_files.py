"""Atomic output files: a crash never leaves a half-written table, figure or h5ad.

Everything is written to a temporary file in the destination folder and moved into place
with :func:`os.replace`, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, record: Any) -> Path:
    return write_text(path, json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")


def write_table(path: Path, table: pd.DataFrame, *, index: bool = True) -> Path:
    """CSV with a fixed float format, so identical values give identical bytes."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index, float_format="%.10g", lineterminator="\n")
    return path


def write_figure(folder: Path, name: str, fig: Any) -> list[Path]:
    """Save a matplotlib figure as ``name.png`` and ``name.svg``; close it."""
    import matplotlib
    import matplotlib.pyplot as plt

    out = []
    for ext, kwargs in (("png", {"dpi": 110}), ("svg", {"metadata": {"Date": None}})):
        target = folder / f"{name}.{ext}"
        # a fixed hash salt and no date make SVGs byte-identical across reruns
        with atomic_path(target) as tmp, matplotlib.rc_context({"svg.hashsalt": "itme"}):
            fig.savefig(tmp, format=ext, bbox_inches="tight", **kwargs)
        out.append(target)
    plt.close(fig)
    return out


def write_h5ad(path: Path, adata: Any) -> Path:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
