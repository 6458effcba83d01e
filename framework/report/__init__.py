"""End-of-job reports: the text printed at the end (TrigReport, then each service's sections) and,
with ``--report-dir``, the files written there.

Imports inside the package point one way: files -> html, root_histograms -> text, writing (leaves)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..service import Service
from ..summary import JobSummary
from .text import text_report
from .trigreport import job_accounting, trig_report

__all__ = ["job_accounting", "text_report", "trig_report", "write_report_files"]


def write_report_files(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
    """Write the JSON (and HTML, when services provide it) reports; return the paths written."""
    from .files import write_all  # lazily: the text report alone needs neither numpy plots nor uproot

    return write_all(report_dir, summary, services)
