"""Comparisons of features between groups of patients."""

from __future__ import annotations

__all__: list[str] = []
