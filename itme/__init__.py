"""itme: mass-cytometry immune-microenvironment (iTME) analysis for multiple myeloma.

Namespaces follow scanpy: :mod:`itme.io` (read FCS cohorts, write FCS), :mod:`itme.pp`
(transform and clean events), :mod:`itme.tl` (FlowSOM, annotation, abundance, patient
clusters), :mod:`itme.stats` (group comparisons, clinical table, survival),
:mod:`itme.rna` (pydeseq2 and GSEA), :mod:`itme.pl` (figures), :mod:`itme.datasets`
(synthetic demo cohort). Where results land is documented in ``docs/data-model.md``.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from itme import datasets, errors, io, pl, pp, rna, stats, tl
from itme._progress import settings

try:
    __version__ = version("itme")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "datasets", "errors", "io", "pl", "pp", "rna", "settings", "stats", "tl"]
