"""UMAP embedding of a subsample of cells."""

from __future__ import annotations

__all__: list[str] = []
