"""Ward clustering of patients into iTME clusters."""

from __future__ import annotations

__all__: list[str] = []
