"""Kaplan-Meier, log-rank and Cox models (the lifelines adapter)."""

from __future__ import annotations

__all__: list[str] = []
