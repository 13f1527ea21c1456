"""Tumour RNA-seq: count matrices, differential expression (pydeseq2), GSEA (gseapy)."""

from ._counts import *  # noqa: F403  (explicit imports once all modules exist)
from ._deseq import *  # noqa: F403  (explicit imports once all modules exist)
from ._gsea import *  # noqa: F403  (explicit imports once all modules exist)
from ._scores import *  # noqa: F403  (explicit imports once all modules exist)
