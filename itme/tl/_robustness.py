"""Robustness of patient clusters: leave-out re-clustering and bootstrap stability."""

from __future__ import annotations

__all__: list[str] = []
