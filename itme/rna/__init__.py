"""Tumour RNA-seq: count matrices, differential expression (pydeseq2), GSEA (gseapy)."""

from itme.rna import _counts, _deseq, _gsea, _scores
from itme.rna._counts import *  # noqa: F403
from itme.rna._deseq import *  # noqa: F403
from itme.rna._gsea import *  # noqa: F403
from itme.rna._scores import *  # noqa: F403

__all__ = [*_counts.__all__, *_deseq.__all__, *_gsea.__all__, *_scores.__all__]
