"""QC figures for cleaning gates."""

from __future__ import annotations

__all__: list[str] = []
