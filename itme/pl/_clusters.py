"""Cluster phenotype heatmaps and embeddings."""

from __future__ import annotations

__all__: list[str] = []
