"""CyTOF cleaning: beads, debris, doublets, dead cells, CD45+ gate."""

from __future__ import annotations

__all__: list[str] = []
