"""Files written with ``--report-dir``: hltrun's JSON summary, services' files, report.html; as one set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..atomic import together
from ..score_histogram import score_histograms
from ..service import Service
from ..summary import JobSummary
from .html import write_html
from .root_histograms import write_score_root, write_timing_root
from .validate import SCHEMA_FILE, ReportSchemaError, schema_problem
from .writing import atomic_write_text

__all__ = ["atomic_write_text", "write_all"]  # atomic_write_text: the name plugins were told (service.py)


def write_all(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
    """Every report file, as one set: all are written to temporaries and renamed at the end, so a
    failure (a full disk) or a signal leaves the folder's previous files, never part of a new set.

    hltrun.json is checked against its schema as it is written: a report that fails is still written,
    then ``ReportSchemaError`` says where it fails (framework/report/validate.py)."""
    with together():
        written, problem = _write_all(report_dir, summary, services)
    if problem is not None:
        raise ReportSchemaError(f"{written[0]} does not follow {SCHEMA_FILE} at {problem}; it was written anyway "
                                f"(a bug in hltrun or a service plugin's json_report: please report it)")
    return written


def _write_all(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> tuple[list[Path], str | None]:
    """The files, hltrun.json first, and the place where hltrun.json fails its schema (None: it follows it)."""
    doc: dict[str, Any] = {"schema": "hltrun-report/1", "job": summary.to_dict(), "services": {}}
    histograms = score_histograms(summary.module_summaries)
    if histograms:  # each trigger filter's cut value, binned, with the cut (framework/score_histogram.py)
        doc["score_histograms"] = histograms
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
    text = json.dumps(doc, indent=1, default=str)
    problem = schema_problem(json.loads(text))  # the document as readers will see it (default=str included)
    written.insert(0, atomic_write_text(report_dir / "hltrun.json", text))
    written += write_timing_root(report_dir, doc["services"].get("Timing"), summary.stopped_by_signal, summary.failure)
    written += write_score_root(report_dir, histograms, summary.stopped_by_signal, summary.failure)
    page = write_html(report_dir, summary, services, doc["services"])
    if page is not None:
        written.append(page)
    return written, problem
