"""Reading Luminex cytokine exports (OOR <, OOR >, * values, blanks)."""

from __future__ import annotations

__all__: list[str] = []
