"""Tumour RNA-seq: count matrices, differential expression (pydeseq2), GSEA (gseapy)."""

from ._counts import *  # noqa: F403  (explicit imports once all modules exist)
