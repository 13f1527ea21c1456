"""Patient-level figures: heatmap with dendrogram, box plots, compartments, Kaplan-Meier."""

from __future__ import annotations

__all__: list[str] = []
