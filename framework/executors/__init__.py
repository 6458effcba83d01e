"""Executors: where a job's events run, chosen by ``options.executor.type``.

* ``local``: this process, ``options.numberOfStreams`` events in flight (framework/eventloop.py);
* ``dask``: (file, entry range) work units on Dask.distributed workers (``dask_executor.py``).

Both return an ``Outcome`` holding a ``JobResult``; ``report_services`` turns its merged service data
into service instances that render every report, so local and distributed runs share one renderer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import JobResult

if TYPE_CHECKING:
    from ..config import ProcessConfig
    from ..service import Service

log = logging.getLogger("hltrun")


@dataclass
class Outcome:
    """A finished (or stopped) job: its result, the exit code (0 ok) and the error that stopped it."""

    result: JobResult
    code: int = 0
    cause: BaseException | None = None


def execute(cfg: "ProcessConfig", report_dir: Path | None, started_at: float, progress: bool) -> Outcome:
    """Run the job with the configured executor."""
    if cfg.options.executor.type == "dask":
        from .dask_executor import run_dask

        return run_dask(cfg, started_at, progress)
    return run_local(cfg, report_dir, started_at, progress)


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


def report_services(cfg: "ProcessConfig", result: JobResult) -> list["Service"]:
    """Fresh service instances holding the merged data: what ``hltrun.framework.report`` renders from."""
    services = []
    for name, pc in cfg.services.items():
        data = result.services.get(name)
        if data is None:  # no unit finished (stopped early): nothing measured to render
            continue
        service = pc.cls(name, pc.params)
        service.load(data)
        services.append(service)
    return services
