"""HTML report of a pipeline run (one self-contained page)."""

from itme.report._html import write_report
from itme.report._run import SECTION_IDS

__all__ = ["SECTION_IDS", "write_report"]
