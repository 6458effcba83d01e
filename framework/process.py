"""Build a runnable Process (source, module instances per stream, services) from a ProcessConfig."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SOURCE_LABEL, PathEntry, ProcessConfig
from .destinations import REPORT_FOLDER, check_folder_destination
from .errors import HltError, ModuleError, one_line
from .module import Module, Source
from .schedule import PathRunner, StreamSchedule, Worker
from .service import Service
from .signals import ActivityRegistry, ModuleDescription

log = logging.getLogger("hltrun")


@dataclass
class JobContext:
    """What modules and services may know about the job (never the other modules)."""

    config: ProcessConfig
    signals: ActivityRegistry
    descriptions: list[ModuleDescription]
    report_dir: Path | None = None
    failed: bool = False  # set before end_job when the job stops on an error: outputs must not commit
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. chosen accelerator, for the report
    in_flight: list[int] = field(default_factory=list)  # per stream: index of the event it processes
    draining: bool = False  # the loop takes no new event (source exhausted or job stopping)
    units: bool = False  # events come in work units (distributed run): outputs write one part per unit
    worker: str | None = None  # the distributed worker running this Process (its address), for reports
    # objects the per-stream instances of one module share, keyed by label (CMSSW's GlobalCache),
    # e.g. a scorer's cross-event batcher
    shared: dict[str, Any] = field(default_factory=dict)
    # what consumers declared at begin_job they will read, by producer label (CMSSW's consumes): a
    # source may prepare exactly that per chunk instead of everything
    consumes: dict[str, set[Any]] = field(default_factory=dict)

    @property
    def options(self):
        return self.config.options


class Process:
    """The built job: one source, modules (shared or one per stream), services, schedules."""

    def __init__(self, config: ProcessConfig, report_dir: Path | None = None) -> None:
        self.config = config
        self.signals = ActivityRegistry()
        self.source: Source = config.source.cls(SOURCE_LABEL, config.source.params)
        self.descriptions = [ModuleDescription(SOURCE_LABEL, config.source.type, "source", 0)]
        for i, (label, cfg) in enumerate(config.modules.items(), start=1):
            self.descriptions.append(ModuleDescription(label, cfg.type, cfg.cls.kind, i))
        if report_dir is None and config.options.reportDir:
            report_dir = Path(config.options.reportDir)
        self.job = JobContext(config, self.signals, self.descriptions, report_dir)
        self.services: list[Service] = [cfg.cls(name, cfg.params) for name, cfg in config.services.items()]
        for service in self.services:
            service.connect(self.signals, self.job)
        cores = os.cpu_count() or 1
        if config.options.streams_in_flight > 2 * cores:
            log.warning("options.numberOfStreams: %d streams on %d core(s): events in flight far above the cores "
                        "only add memory and contention (CMSSW runs one stream per thread)",
                        config.options.streams_in_flight, cores)
        self._locks: dict[str, threading.Lock] = {}
        self.instances: dict[str, list[Module]] = {}  # label -> distinct instances (1, or one per stream)
        self.schedules = [self._build_stream(s) for s in range(config.options.streams_in_flight)]

    def _instance(self, label: str) -> tuple[Module, threading.Lock | None]:
        """A fresh instance per stream for ``stream`` modules, else the one shared instance."""
        cfg = self.config.modules[label]
        existing = self.instances.setdefault(label, [])
        if cfg.cls.concurrency == "stream" or not existing:
            existing.append(cfg.cls(label, cfg.params))
        lock = self._locks.setdefault(label, threading.Lock()) if cfg.cls.concurrency == "one" else None
        return existing[-1], lock

    def _build_stream(self, stream: int) -> StreamSchedule:
        by_label = {d.label: d for d in self.descriptions}
        workers: dict[str, Worker] = {}
        for label in self.config.modules:
            module, lock = self._instance(label)
            workers[label] = Worker(module, by_label[label], self.signals, lock)

        def runners(table: dict[str, list[PathEntry]], is_endpath: bool) -> list[PathRunner]:
            return [PathRunner(name, entries, [workers[e.label] for e in entries], is_endpath)
                    for name, entries in table.items()]

        return StreamSchedule(stream, workers, runners(self.config.paths, False),
                              runners(self.config.endpaths, True), self.signals)

    def all_modules(self) -> list[tuple[ModuleDescription, Module]]:
        by_label = {d.label: d for d in self.descriptions}
        return [(by_label[label], m) for label, ms in self.instances.items() for m in ms]

    def begin_job(self) -> None:
        signals = self.signals
        if self.job.report_dir is not None:  # before any work: a bad folder must not cost a whole run
            check_folder_destination(self.job.report_dir, REPORT_FOLDER)
        signals.pre_begin_job(self.job)
        signals.pre_module_begin_job(self.descriptions[0])
        self.source.begin_job(self.job)
        signals.post_module_begin_job(self.descriptions[0])
        for desc, module in self.all_modules():
            signals.pre_module_begin_job(desc)
            try:
                module.begin_job(self.job)
            except HltError:
                raise
            except Exception as exc:
                raise ModuleError(f"module '{desc.label}' ({desc.type}) failed in begin_job: "
                                  f"{type(exc).__name__}: {one_line(exc)}") from exc
            finally:
                signals.post_module_begin_job(desc)
        signals.post_begin_job(self.job)

    def end_job(self) -> list[str]:
        """Call every end_job even if one fails; return the failures as one-line messages."""
        problems: list[str] = []
        self.signals.pre_end_job()
        for desc, module in [*self.all_modules(), (self.descriptions[0], self.source)]:
            self.signals.pre_module_end_job(desc)
            try:
                module.end_job()
            except Exception as exc:
                msg = str(exc) if isinstance(exc, HltError) else f"{type(exc).__name__}: {exc}"
                problems.append(f"module '{desc.label}' ({desc.type}) failed in end_job: {msg}")
                log.debug("end_job failure", exc_info=True)
            finally:
                self.signals.post_module_end_job(desc)
        return problems
