"""FlowSOM clustering (the flowsom adapter)."""

from __future__ import annotations

__all__: list[str] = []
