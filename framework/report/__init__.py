"""End-of-job reports: the text printed at the end (TrigReport, then each service's sections) and,
with ``--report-dir``, the files written there."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..service import Service
from ..summary import JobSummary
from .trigreport import job_accounting, trig_report


def text_report(summary: JobSummary, services: Sequence[Service]) -> str:
    parts = [trig_report(summary)]
    parts += [s.text_report(summary) for s in services]
    parts.append(job_accounting(summary))
    return "\n".join(p for p in parts if p)


def write_report_files(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
    """Write the JSON (and HTML, when services provide it) reports; return the paths written."""
    from .files import write_all

    return write_all(report_dir, summary, services)
