"""Reading RNA-seq count matrices."""

from __future__ import annotations

__all__: list[str] = []
