"""The reproduction report: ``build_report(OUT)`` writes OUT/report.html (self-contained) and
OUT/report.md from the experiment folders under OUT. See :mod:`rnnlab.report.build`."""
from .build import Entry, build_report, collect, verdict_counts

__all__ = ["Entry", "build_report", "collect", "verdict_counts"]
