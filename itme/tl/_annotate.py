"""Subset names for clusters from a hierarchical marker table."""

from __future__ import annotations

__all__: list[str] = []
