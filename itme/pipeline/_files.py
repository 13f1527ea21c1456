"""Pipeline outputs written atomically: a crash never leaves a half-written table, figure or h5ad.

The atomic write itself (temporary file beside the target, then :func:`os.replace`) is
:func:`itme._files.atomic_path`, shared with the report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from itme._files import atomic_path, sha256, write_text

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "atomic_path",
    "remove_leftovers",
    "sha256",
    "write_figure",
    "write_h5ad",
    "write_json",
    "write_table",
    "write_text",
]


def write_json(path: Path, record: Any) -> Path:
    """Write ``record`` as indented JSON (values JSON cannot hold are written as text)."""
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


def write_h5ad(path: Path, adata: AnnData) -> Path:
    """Write ``adata`` as h5ad."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path


def remove_leftovers(out: Path) -> int:
    """Remove the temporary files an interrupted run left in ``out`` (``.<name>.<random>.tmp``).

    :func:`atomic_path` removes its temporary file on an exception, but a killed process
    cannot; the next run (holding the folder's lock, so no other run is writing) removes them.

    Parameters
    ----------
    out
        The run folder.

    Returns
    -------
    The number of files removed.
    """
    removed = 0
    for folder, _, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed
