"""What runs on a Dask worker: build the Process once per configuration, then run work units on it.

The configuration arrives as plain data (``ProcessConfig.to_dict()`` plus the modules that register
its plugin types), is validated again here, and the built Process (models loaded, begin_job done) is
cached in the worker process under a hash of that data, so every later unit reuses it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import FileOpenError, HltError, category_of
from ..interrupt import exit_code_of
from ..provenance import variant
from ..resources import remote_url, why_not_readable
from ..results import GAUGES, SETTINGS, JobResult
from ..units import WorkUnit

_CACHE: dict[tuple[str, int], "_WorkerJob"] = {}
_LOCK = threading.Lock()  # guards the cache; with threads_per_worker > 1 each Dask thread has its own Process


@dataclass
class JobSpec:
    """The resolved configuration as data: what a worker needs to build the same Process."""

    config: dict[str, Any]
    origin: str
    plugin_modules: list[str]
    run_id: str = ""  # this run (the same configuration run twice is two runs)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        text = json.dumps([self.config, self.plugin_modules], sort_keys=True, default=str)  # not run_id: cache across runs
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, cfg: Any) -> "JobSpec":
        plugins = [cfg.source, *cfg.modules.values(), *cfg.services.values()]
        import uuid

        return cls(cfg.to_dict(), cfg.origin, sorted({p.cls.__module__ for p in plugins}), uuid.uuid4().hex[:12])


class UnitFailed(HltError):
    """A work unit stopped on an error; carries its partial result and the error's CMSSW category."""

    def __init__(self, message: str, exit_code: int, result: JobResult | None, category: str | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result
        self.category = category


class _WorkerJob:
    """One built Process on one worker, reused for all units of the job."""

    def __init__(self, spec: JobSpec) -> None:
        from ..config import validate
        from ..eventloop import EventProcessor
        from ..process import Process

        for name in spec.plugin_modules:
            importlib.import_module(name)
        t0 = time.perf_counter()
        cfg = validate(spec.config, spec.origin)
        self.process = Process(cfg, None, units=True, worker=worker_name(), units_in_turn=worker_threads() == 1)
        self.process.begin_job()
        self.begin_job_s = time.perf_counter() - t0  # build + begin_job (model loading) on this worker
        self.loop = EventProcessor(self.process)
        self.name = worker_name()
        self._source_seen: dict[str, int] = {}
        self._unit_files: set[str] = set()  # the files of the units run so far (``_named``)
        self._module_seen: dict[str, dict[str, Any]] = {}
        self._quality_seen: dict[str, dict[str, Any]] = {}
        self._fresh = True
        self.run_id = spec.run_id  # the job (a run of the configuration) whose units it runs

    def run(self, unit: WorkUnit, run_id: str) -> JobResult:
        process = self.process
        if run_id != self.run_id:  # the same configuration run again: its inputs are checked again, as locally
            process.source.next_run()
            self.run_id = run_id
        for service in process.services:
            service.reset()
        started = time.time()
        summary, parts = self.loop.run_unit(unit)
        failed = bool(self.loop.errors)
        summary.source = _named(_delta(process.source.accounting(), self._source_seen), unit, self._unit_files)
        self._unit_files.add(unit.file)
        summary.module_summaries = {label: _delta(values, self._module_seen.setdefault(label, {}))
                                    for label, values in summary.module_summaries.items()}
        summary.events_duplicate = summary.source.get("duplicates", 0)
        # zeros kept, as a local run keeps them: "0 invalid links" is a result the JobReport prints too
        summary.data_quality = {label: _delta(values, self._quality_seen.setdefault(label, {}))
                                for label, values in summary.data_quality.items()}
        summary.fact_variants = [variant(summary.facts, [unit.index], [self.name])]
        busy = summary.wall_s
        summary.workers = {self.name: {"units": 1, "events": summary.events_processed, "busy_s": busy,
                                       "begin_job_s": self.begin_job_s if self._fresh else 0.0}}
        self._fresh = False
        result = JobResult(summary, {s.name: s.snapshot() for s in process.services}, parts,
                           started if summary.events_read else None, time.time() if summary.events_read else None)
        if failed:
            err = self.loop.errors[0] if self.loop.errors else None
            code = exit_code_of(err) if isinstance(err, KeyboardInterrupt) else getattr(err, "exit_code", 4)
            raise UnitFailed(f"{unit}: {summary.failure}", code, result, None if err is None else category_of(err))
        return result


PER_FILE = ("files_read", "lumis_per_file", "bad_entries_per_file")  # the source's counters keyed by input


def _named(source: dict[str, Any], unit: WorkUnit, earlier: set[str]) -> dict[str, Any]:
    """The unit's per-input counters under the input's name as configured: the source counts under the
    absolute path it opened, so a file listed under two spellings (``a.root`` and ``/data/a.root``) merged
    into one input on the client, where a local run reports two. A unit reads its own file only: the files
    of the worker's ``earlier`` units are 0 since the last unit, and left out, as are the lumi sections of
    the file's other units (under another name, an input's lumis that read no event); what begin_job
    counted (a bad file skipped whole) stays."""
    name = unit.name or unit.file
    out = dict(source)
    for key in PER_FILE:
        per_file = source.get(key)
        if isinstance(per_file, dict):
            out[key] = {f: n for f, n in per_file.items() if f != unit.file and f not in earlier}
            if unit.file in per_file:
                mine = per_file[unit.file]
                out[key][name] = {k: v for k, v in mine.items() if v} if isinstance(mine, dict) else mine
    return out


def _delta(now: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    """Integer counters since the previous unit (cumulative ones must not be counted twice); the rest as is."""
    out = {}
    for key, value in now.items():
        if key in GAUGES or key in SETTINGS:  # a device's levels and peaks, a backend's setup: as read
            out[key] = value
        elif isinstance(value, dict):  # e.g. events read per input file
            out[key] = _delta(value, seen.setdefault(key, {}))
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = value - seen.get(key, 0)
            seen[key] = value
        else:
            out[key] = value
    return out


def worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # noqa: BLE001 - not on a Dask worker (tests, local use)
        return f"{socket.gethostname()}:{os.getpid()}"


def worker_threads() -> int | None:
    """The threads of the Dask workers in this process (how many units it may run at once); None off a Dask
    worker. Every worker's: a cluster of in-process workers (``LocalCluster(processes=False)`` given by its
    address) runs one unit on each at once, so one thread per worker is not one unit per process."""
    try:
        from distributed import Worker, get_worker

        here = get_worker()
        workers = [w for w in getattr(Worker, "_instances", ()) if w.status.name in ("running", "paused")] or [here]
        return sum(int(w.state.nthreads) for w in workers)
    except Exception:  # noqa: BLE001 - not on a Dask worker (tests, local use)
        return None


EVENTS_TOPIC = "hltrun-unit-start"


def _announce(job: str, unit: WorkUnit) -> None:
    """Tell the scheduler which worker starts which unit (how the client names a lost worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except Exception:  # noqa: BLE001 - not on a Dask worker
        return
    worker.log_event(EVENTS_TOPIC, {"job": job, "unit": unit.index, "worker": worker.address})


def _unreadable_here(unit: WorkUnit) -> str | None:
    """Why this worker cannot read the unit's file, which the client read when it planned the units: a
    worker on another machine or in a container without that file system, or with it at another path.
    Not the file's fault, so not a bad file that ``skipBadFiles`` would skip: the job stops, naming the
    worker."""
    if remote_url(unit.file) is not None:
        return None
    why = why_not_readable(unit.file)
    if why is None:
        return None
    return (f"input file {unit.file} {why} on worker {worker_name()} (the client read it when it planned the "
            f"units: every worker needs the input files at the same path)")


def run_unit(spec: JobSpec, unit: WorkUnit) -> tuple[str, Any]:
    """The Dask task: ``("ok", JobResult)`` or ``("failed", (message, exit code, partial JobResult, category))``,
    ``category`` the error's CMSSW exception category (the job report's FrameworkError, as a local run
    gives it; None: by the exit code).

    Failures are returned, not raised: bad data is deterministic and must not be retried by Dask;
    the client applies options.TryToContinue. (A worker that dies is retried by the scheduler.)"""
    _announce(spec.run_id, unit)
    missing = _unreadable_here(unit)
    if missing is not None:
        return "failed", (f"{unit}: {missing}", FileOpenError.exit_code, None, FileOpenError.cmssw_type)
    key = (spec.key, threading.get_ident())
    try:
        with _LOCK:
            job = _CACHE.get(key)
            if job is None:
                for old in [k for k in _CACHE if k[0] != spec.key]:  # another job's Process: drop its models
                    del _CACHE[old]
        if job is None:
            job = _WorkerJob(spec)
            with _LOCK:
                _CACHE[key] = job
        return "ok", job.run(unit, spec.run_id)
    except UnitFailed as exc:
        return "failed", (str(exc), exc.exit_code, exc.result, exc.category)
    except HltError as exc:
        return "failed", (f"{unit}: {exc}", exc.exit_code, None, category_of(exc))
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected library error: still one line
        return "failed", (f"{unit}: {type(exc).__name__}: {exc}", 1, None, None)
