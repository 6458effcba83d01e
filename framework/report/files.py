"""Files written with ``--report-dir``: hltrun's JSON summary, services' files, report.html; atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..interrupt import forget_temporary, register_temporary
from ..service import Service
from ..summary import JobSummary


def atomic_write_text(path: Path, text: str) -> Path:
    """Write to a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    register_temporary(Path(tmp))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        forget_temporary(Path(tmp))
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_all(report_dir: Path, summary: JobSummary, services: Sequence[Service]) -> list[Path]:
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
    from .root_histograms import write_timing_root

    written += write_timing_root(report_dir, doc["services"].get("Timing"))
    from .html import write_html

    page = write_html(report_dir, summary, services)
    if page is not None:
        written.append(page)
    return written
