"""HTML report of a pipeline run (one self-contained page)."""

from itme.report._html import write_report

__all__ = ["write_report"]
