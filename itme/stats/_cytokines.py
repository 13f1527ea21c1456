"""Cytokine comparisons across patient groups."""

from __future__ import annotations

__all__: list[str] = []
