"""Batch normalisation with CytoNorm (the cytonormpy adapter)."""

from __future__ import annotations

__all__: list[str] = []
