"""One file of the report folder, written whole or not at all; the leaf every report writer imports
(files.py, html.py, services), so no two report modules import each other for it."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_text
from ..destinations import REPORT_FOLDER


def atomic_write_text(path: Path, text: str) -> Path:
    """One file of the report folder (framework/atomic.py: whole or not at all)."""
    return write_text(path, text, REPORT_FOLDER)
