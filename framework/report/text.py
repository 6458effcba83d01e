"""The text printed at the end of a job: TrigReport, then each service's sections, then the accounting.

Its own module so that report.html (which embeds it) imports it without going through the package."""

from __future__ import annotations

from typing import Sequence

from ..service import Service
from ..summary import JobSummary
from .trigreport import job_accounting, trig_report


def text_report(summary: JobSummary, services: Sequence[Service]) -> str:
    parts = [trig_report(summary)]
    parts += [s.text_report(summary) for s in services]
    parts.append(job_accounting(summary))
    return "\n".join(p for p in parts if p)
