"""Synthetic demo cohort in the itme input contract."""

from __future__ import annotations

__all__: list[str] = []
