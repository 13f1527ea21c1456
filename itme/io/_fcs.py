"""Read and write single FCS files (the flowio adapter)."""

from __future__ import annotations

__all__: list[str] = []
