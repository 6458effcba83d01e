"""Files written with ``--report-dir``: hltrun's JSON summary, services' files, report.html; as one set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..atomic import together
from ..service import Service
from ..summary import JobSummary
from .html import write_html
from .root_histograms import write_timing_root
from .writing import atomic_write_text

__all__ = ["atomic_write_text", "write_all"]  # atomic_write_text: the name plugins were told (service.py)


def write_all(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
    """Every report file, as one set: all are written to temporaries and renamed at the end, so a
    failure (a full disk) or a signal leaves the folder's previous files, never part of a new set."""
    with together():
        return _write_all(report_dir, summary, services)


def _write_all(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
    doc: dict[str, Any] = {"schema": "hltrun-report/1", "job": summary.to_dict(), "services": {}}
    written: list[Path] = []
    # per-module allocations one service measured (Memory's memray capture) for another's file (resources.json)
    allocations = next((a for s in services if (a := getattr(s, "module_allocations", lambda: None)())), None)
    for service in services:
        if hasattr(service, "use_allocations"):
            service.use_allocations(allocations)
    for service in services:
        part = service.json_report(summary)
        if part is not None:
            doc["services"][service.name] = part
        written += service.write_files(report_dir, summary)
    written.insert(0, atomic_write_text(report_dir / "hltrun.json", json.dumps(doc, indent=1, default=str)))
    written += write_timing_root(report_dir, doc["services"].get("Timing"))
    page = write_html(report_dir, summary, services)
    if page is not None:
        written.append(page)
    return written
