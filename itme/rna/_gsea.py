"""Gene set enrichment with gseapy (the gseapy adapter)."""

from __future__ import annotations

__all__: list[str] = []
