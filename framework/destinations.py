"""Check where a job will write before it reads its first event.

A destination that cannot be written (a folder where a file should go, a file where a folder should
go, a folder that cannot be created or written) must fail at begin_job, in one line, with the
module exit code (4): not after hours of events, in end_job.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ModuleError


def _probe(folder: Path, what: str) -> None:
    """Create the folder if needed and write a throw-away file into it (works as root too)."""
    if folder.exists() and not folder.is_dir():
        raise ModuleError(f"{what}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hltrun-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ModuleError(f"{what}: cannot write into {folder} ({reason})") from None


def check_file_destination(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` will be written as a file (through a temporary in the same folder)."""
    path = Path(path)
    if path.is_dir():
        raise ModuleError(f"{what}: {path} is a folder, not a file name")
    _probe(path.parent if str(path.parent) else Path("."), what)
    return path


def check_folder_destination(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` is a folder files will be written into."""
    path = Path(path)
    _probe(path, what)
    return path
