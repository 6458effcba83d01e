"""Build a runnable Process (source, module instances per stream, services) from a ProcessConfig."""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import SOURCE_LABEL, PathEntry, ProcessConfig
from .context import (MODULE_SERVICES, Channels, JobContext, LoopState, ModuleContext, SourceContext,
                      StreamActivity)
from .destinations import REPORT_FOLDER, check_folder_destination, reading
from .errors import HltError, ModuleError, one_line
from .event import DECLARES
from .interrupt import reraise_interrupt
from .resources import user_path
from .module import Module, OutputModule, Source
from .schedule import PathRunner, StreamSchedule, Worker
from .service import Service
from .signals import ActivityRegistry, ModuleDescription

log = logging.getLogger("hltrun")


class Process:
    """The built job: one source, modules (shared or one per stream), services, schedules."""

    def __init__(self, config: ProcessConfig, report_dir: Path | None = None, units: bool = False,
                 worker: str | None = None, units_in_turn: bool = False) -> None:
        """``units``: events come in work units (a distributed run, ``worker`` its address; ``units_in_turn``:
        one at a time in this process, ``JobContext.units_in_turn``)."""
        self.config = config
        self.signals = ActivityRegistry()
        self.source: Source = config.source.cls(SOURCE_LABEL, config.source.params)
        self.descriptions = [ModuleDescription(SOURCE_LABEL, config.source.type, "source", 0)]
        for i, (label, cfg) in enumerate(config.modules.items(), start=1):
            self.descriptions.append(ModuleDescription(label, cfg.type, cfg.cls.kind, i))
        if report_dir is None and config.options.reportDir:
            report_dir = user_path(config.options.reportDir)
        self.job = JobContext(config, self.signals, self.descriptions, report_dir, units, worker, units_in_turn)
        self.loop = LoopState(config.options.streams_in_flight)  # the event loop's; modules never see it
        self.channels = Channels(config.to_dict())
        self.product_types = product_types(config)
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

    @property
    def facts(self) -> dict[str, Any]:
        """What the modules recorded for the report (accelerator choices)."""
        return self.channels.facts()

    def source_context(self) -> SourceContext:
        o = self.config.options
        return SourceContext(SOURCE_LABEL, o.skipEvents, o.maxEvents, self.job.units, self.channels,
                             StreamActivity(self.loop), source_consumed(self.config))

    def module_context(self, label: str) -> ModuleContext:
        """The narrow view one module gets at begin_job (shared by its per-stream instances)."""
        cfg, o = self.config.modules[label], self.config.options
        services = {name: MODULE_SERVICES[name](self.loop, self.config) for name in cfg.cls.services}
        on_paths = tuple(p for table in (self.config.paths, self.config.endpaths) for p, entries in table.items()
                         if any(e.label == label for e in entries))
        return ModuleContext(label, self.config.process, o.streams_in_flight, tuple(o.accelerators),
                             tuple(self.config.paths), on_paths, self.job.report_dir, self.job.units,
                             cfg.cls.declared_consumes(cfg.params), dict(cfg.inputs), dict(cfg.cls.produces or {}),
                             services, self.channels, self._prescaled_paths(), dict(cfg.consumed))

    def _prescaled_paths(self) -> tuple[str, ...]:
        """Paths with an HLTPrescaler on them (not inverted): where a 'prescaled' state can occur."""
        mods = self.config.modules
        return tuple(p for p, entries in self.config.paths.items()
                     if any(e.mode == "normal" and getattr(mods[e.label].cls, "prescaler", False)
                            for e in entries if e.label in mods))

    def all_modules(self) -> list[tuple[ModuleDescription, Module]]:
        by_label = {d.label: d for d in self.descriptions}
        return [(by_label[label], m) for label, ms in self.instances.items() for m in ms]

    def _input_files(self) -> list[str]:
        """The files the source reads (``Source.inputs``, known after its begin_job); none for a source
        that does not list them."""
        try:
            return self.source.input_names()
        except NotImplementedError:
            return []

    def begin_job(self) -> None:
        signals = self.signals
        if self.job.report_dir is not None:  # before any work: a bad folder must not cost a whole run
            check_report_folder(self.job.report_dir, self.services, [m for _, m in self.all_modules()])
        signals.pre_begin_job(self.job)
        signals.pre_module_begin_job(self.descriptions[0])
        self.source.begin_job(self.source_context())
        signals.post_module_begin_job(self.descriptions[0])
        check_outputs(self._input_files(), self.all_modules())  # a bad output path: said before any model loads
        contexts: dict[str, ModuleContext] = {}  # one per label: its per-stream instances share it
        for desc, module in self.all_modules():
            signals.pre_module_begin_job(desc)
            try:
                with said_in_begin_job(desc):
                    if desc.label not in contexts:
                        contexts[desc.label] = self.module_context(desc.label)
                    module.begin_job(contexts[desc.label])
            finally:
                signals.post_module_begin_job(desc)
        signals.pre_module_begin_job(self.descriptions[0])
        try:
            self.source.consumers_known()
        finally:
            signals.post_module_begin_job(self.descriptions[0])
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


def source_consumed(config: ProcessConfig) -> frozenset[str]:
    """The source's product instances ("" its main one) the modules consume: what the source checks every
    input can give, at begin_job locally and when the Dask client plans the units."""
    return frozenset(c.tag.instance for cfg in config.modules.values()
                     for c in cfg.cls.declared_consumes(cfg.params) if c.tag.label == SOURCE_LABEL)


def check_report_folder(report_dir: Path, services: Iterable[Service], modules: Iterable[Any] = ()) -> None:
    """The report folder and every file its services, and the report set from its ``modules`` (instances or
    classes: ``Module.report_folder_files``), write there, claimed for this job (a bad folder, or an output or
    an input named as one of its files, is said before any work)."""
    names = [n for service in services for n in service.report_files()]
    names += [n for module in modules for n in getattr(module, "report_folder_files", ())]
    check_folder_destination(report_dir, REPORT_FOLDER, whole_set=True, names=tuple(dict.fromkeys(names)))


def check_outputs(inputs: Iterable[str], modules: Iterable[tuple[ModuleDescription, Module]]) -> None:
    """Each output module's file, checked before any module's begin_job: none may be one of ``inputs`` (the
    files the job reads) nor another writer's file of the job (framework/destinations.py). The local run
    and the Dask client (which builds no Process) both come here."""
    reading(inputs)  # first: an output is compared with them
    for desc, module in modules:
        if isinstance(module, OutputModule):
            with said_in_begin_job(desc):
                module.check_destination()


@contextmanager
def said_in_begin_job(desc: ModuleDescription) -> Iterator[None]:
    """A module's unexpected exception at begin_job as one line naming it; hltrun's own errors as they are."""
    try:
        yield
    except HltError:
        raise
    except Exception as exc:
        reraise_interrupt(exc)
        raise ModuleError(f"module '{desc.label}' ({desc.type}) failed in begin_job: "
                          f"{type(exc).__name__}: {one_line(exc)}") from exc


def product_types(config: ProcessConfig) -> dict[str, type]:
    """``label`` / ``label:instance`` -> the type its producer declared (what ``Event.put`` checks), and
    ``label:*`` for each producer that declares (it may put nothing else); producers that declare
    nothing are absent (their puts are not checked)."""
    out: dict[str, type] = {}
    for label, cfg in [(SOURCE_LABEL, config.source), *config.modules.items()]:
        if cfg.cls.produces is not None:
            out[label + DECLARES] = object
        for instance, cls in (cfg.cls.produces or {}).items():
            out[f"{label}:{instance}" if instance else label] = cls
    return out
