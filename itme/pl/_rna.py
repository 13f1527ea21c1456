"""RNA-seq figures: NES bar chart and volcano plot."""

from __future__ import annotations

__all__: list[str] = []
