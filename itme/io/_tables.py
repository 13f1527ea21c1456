"""Sample sheets and panels: robust CSV reading and validation."""

from __future__ import annotations

__all__: list[str] = []
