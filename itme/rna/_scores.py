"""Per-sample pathway scores (single-sample enrichment)."""

from __future__ import annotations

__all__: list[str] = []
