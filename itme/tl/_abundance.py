"""Per-sample subset frequencies (% of CD45+ events)."""

from __future__ import annotations

__all__: list[str] = []
