"""Summaries of FCS files, folders and sample sheets (itme inspect)."""

from __future__ import annotations

__all__: list[str] = []
