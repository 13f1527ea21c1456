"""Reading and validating clinical.csv (one row per patient)."""

from __future__ import annotations

__all__: list[str] = []
