"""Differential expression with pydeseq2 (the pydeseq2 adapter)."""

from __future__ import annotations

__all__: list[str] = []
