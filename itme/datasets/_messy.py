"""A cohort as it arrives: the effects :func:`itme.datasets.simulate_cohort` can add (all off by default).

- **naming**: each acquisition run (batch ``B1``, ``B2``, ``B3``) names its channels in its own
  convention (``Pr141Di``; ``141Pr`` with ``$PnS`` ``141Pr_CD3``; ``CD3_Pr141``), while the
  panel keeps ``Pr141Di``.
- **split_patients**: a patient's tube split over two acquisitions: two files, one sample.
- **relapse_patients**: patients sampled again at relapse (``timepoint`` ``relapse``; the others
  ``diagnosis``); the first of them relapses with the composition of another iTME cluster.
- **failed_samples**: a sample of mostly debris and dead cells (about 30 % of events kept).
- **missing_marker**: the files of the third run lack one channel (a panel changed between
  runs); the panel still lists it.

Every effect draws from its own random stream, so the other patients' files are those of the
cohort without it.
"""

from __future__ import annotations

import pandas as pd

from itme.errors import ItmeParameterError
from itme.io import parse_channel

__all__ = ["MESSY", "NAMINGS", "rename_channels"]

#: the naming conventions of the three runs of a messy cohort
NAMINGS = ("Pr141Di", "141Pr", "CD3_Pr141")
#: ``simulate_cohort(messy=True)`` means these settings
MESSY = {
    "naming": NAMINGS,
    "split_patients": 1,
    "relapse_patients": 3,
    "failed_samples": 1,
    "missing_marker": "LAG-3",
}


def rename_channels(var: pd.DataFrame, naming: str) -> pd.DataFrame:
    """``var`` (``channel`` = ``$PnN``, ``antigen`` = ``$PnS``) with metal channels renamed.

    Parameters
    ----------
    var
        Channels written as ``Pr141Di`` with the antigen in ``antigen``.
    naming
        ``"Pr141Di"`` (unchanged), ``"141Pr"`` (``$PnN`` ``141Pr``, ``$PnS`` ``141Pr_CD3``)
        or ``"CD3_Pr141"`` (both ``CD3_Pr141``).

    Returns
    -------
    A renamed copy (the index follows ``channel``); channels without a metal are unchanged.
    """
    out = var.copy()
    channels, antigens = [], []
    for channel, antigen in zip(var["channel"], var["antigen"], strict=True):
        ch = parse_channel(str(channel))
        if not ch.metal or naming == "Pr141Di":
            channels.append(channel)
            antigens.append(antigen)
        elif naming == "141Pr":
            channels.append(f"{ch.mass}{ch.element}")
            antigens.append(f"{ch.mass}{ch.element}_{antigen}")
        elif naming == "CD3_Pr141":
            channels.append(f"{antigen}_{ch.element}{ch.mass}")
            antigens.append(f"{antigen}_{ch.element}{ch.mass}")
        else:
            raise ItmeParameterError("naming", f"one of {', '.join(NAMINGS)}", naming)
    out["channel"] = channels
    out["antigen"] = antigens
    out.index = pd.Index(channels)
    return out
