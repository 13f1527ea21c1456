"""Correlations between continuous variables and marker-expression comparisons."""

from __future__ import annotations

__all__: list[str] = []
