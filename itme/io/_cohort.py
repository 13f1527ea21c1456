"""Read a cohort of FCS files into one AnnData."""

from __future__ import annotations

__all__: list[str] = []
