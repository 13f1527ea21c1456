"""The clinical characteristics table (the paper's Table 1)."""

from __future__ import annotations

__all__: list[str] = []
