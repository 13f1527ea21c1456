"""Tumour RNA-seq: count matrices, differential expression (pydeseq2), GSEA (gseapy)."""

from . import _counts, _deseq, _gsea, _scores
from ._counts import *  # noqa: F403
from ._deseq import *  # noqa: F403
from ._gsea import *  # noqa: F403
from ._scores import *  # noqa: F403

__all__ = [*_counts.__all__, *_deseq.__all__, *_gsea.__all__, *_scores.__all__]
