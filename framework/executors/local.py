"""The local executor: one process, N streams. Apart from ``__init__`` so that the Dask executor can
fall back to it (and share ``Outcome``) without importing the package that dispatches to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import JobResult

if TYPE_CHECKING:
    from ..config import ProcessConfig


@dataclass
class Outcome:
    """A finished (or stopped) job: its result, the exit code (0 ok) and the error that stopped it."""

    result: JobResult
    code: int = 0
    cause: BaseException | None = None


def run_local(cfg: "ProcessConfig", report_dir: Path | None, started_at: float, progress: bool) -> Outcome:
    """One process, N streams: the whole input is one unit; the streams' measurements merge into one result."""
    from ..eventloop import EventProcessor, JobFailed
    from ..interrupt import exit_code_of
    from ..process import Process

    process = Process(cfg, report_dir)
    if progress:
        from ..progress import attach_progress

        attach_progress(process)
    code, cause = 0, None
    try:
        summary = EventProcessor(process).run(started_at=started_at)
    except JobFailed as failed:
        summary, cause = failed.summary, failed.cause
        code = exit_code_of(cause) if isinstance(cause, KeyboardInterrupt) else getattr(cause, "exit_code", 1)
    summary.executor = {"type": "local", "streams": cfg.options.streams_in_flight}
    return Outcome(JobResult(summary, {s.name: s.snapshot() for s in process.services}), code, cause)
