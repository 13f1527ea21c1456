"""The flowio adapter: FCS 3.1 files are *written* with ``flowio.create_fcs``.

Nothing else in itme imports flowio. Reading does not use it: itme parses HEADER and TEXT
itself and reads DATA with numpy (:mod:`._fcs_format` says why), so the only part of flowio
itme relies on is ``create_fcs``, whose signature is the same in flowio 1.3 and 1.4.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np


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
