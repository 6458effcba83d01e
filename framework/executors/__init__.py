"""Executors: where a job's events run, chosen by ``options.executor.type``.

* ``local``: this process, ``options.numberOfStreams`` events in flight (framework/eventloop.py);
* ``dask``: (file, entry range) work units on Dask.distributed workers (``dask_executor.py``).

Both return an ``Outcome`` holding a ``JobResult``; ``report_services`` turns its merged service data
into service instances that render every report, so local and distributed runs share one renderer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import JobResult
from .local import Outcome, run_local

__all__ = ["Outcome", "execute", "report_services", "run_local"]

if TYPE_CHECKING:
    from ..config import ProcessConfig
    from ..service import Service

log = logging.getLogger("hltrun")


def execute(cfg: "ProcessConfig", report_dir: Path | None, started_at: float, progress: bool) -> Outcome:
    """Run the job with the configured executor."""
    if cfg.options.executor.type == "dask":
        from .dask_executor import run_dask

        return run_dask(cfg, started_at, progress, report_dir)
    return run_local(cfg, report_dir, started_at, progress)


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
