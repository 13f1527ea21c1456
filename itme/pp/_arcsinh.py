"""arcsinh transformation of marker channels."""

from __future__ import annotations

__all__: list[str] = []
