"""Per-stream schedule: workers run each module at most once per event; paths stop at a failed filter.

Every stream owns a ``StreamSchedule`` with its own workers (and counters), so streams never
contend on bookkeeping; shared module instances are protected as their ``concurrency`` requires.
"""

from __future__ import annotations

import contextlib

import threading
from typing import Any, Callable

from .config import PathEntry
from .errors import HltError, ModuleError
from .event import Event
from .module import Analyzer, Filter, Module, OutputModule, Producer
from .signals import ActivityRegistry, ModuleDescription
from .summary import ModuleCounters, PathCounters


_BOOL_TYPES = (bool,)
try:  # numpy comparisons return numpy.bool_, a fine filter decision too
    import numpy as _np

    _BOOL_TYPES = (bool, _np.bool_)
except ImportError:  # pragma: no cover
    pass


_NO_LOCK = contextlib.nullcontext()  # a module of its own stream needs no lock


def _call_for(module: Module) -> Callable[[Event], Any]:
    """The per-event method of a module, resolved once (not per event)."""
    if isinstance(module, Filter):
        return module.filter
    if isinstance(module, Producer):
        return module.produce
    if isinstance(module, Analyzer):
        return module.analyze
    if isinstance(module, OutputModule):
        return module.write
    raise TypeError(f"{module!r} is not an event-processing module")


def blame(exc: BaseException, label: str, kind: str) -> None:
    """Remember which module raised ``exc`` and what kind of error it was (innermost module wins),
    for the per-module error summary and the stop message."""
    if getattr(exc, "hltrun_module", None) is None:
        try:
            exc.hltrun_module = label  # type: ignore[attr-defined]
            exc.hltrun_kind = kind  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass


class Worker:
    """Runs one module for one stream, caches its result for the event, counts visits."""

    __slots__ = ("module", "desc", "counters", "_call", "_lock", "_is_filter", "_event_index",
                 "_result", "_error", "_signals", "_selected")

    def __init__(self, module: Module, desc: ModuleDescription, signals: ActivityRegistry,
                 lock: threading.Lock | None) -> None:
        self.module = module
        self.desc = desc
        self.counters = ModuleCounters()
        self._call = _call_for(module)
        self._lock = lock
        self._is_filter = isinstance(module, Filter)
        self._selected = module.selected_paths() if isinstance(module, OutputModule) else []
        self._event_index = -1
        self._result = True
        self._error: BaseException | None = None
        self._signals = signals

    def skip_failed(self, event: Event) -> None:
        """The event failed in another module and is skipped (``TryToContinue``): an output module that did
        not see it counts it as processed, not written, so its lumi section still reads as read in full
        (hltdiff compares no event of a lumi section the job did not read in full)."""
        if isinstance(self.module, OutputModule) and self._event_index != event.index:
            self._event_index = event.index
            with self._lock or _NO_LOCK:
                self.module.skip(event)  # type: ignore[attr-defined]

    def run(self, event: Event) -> bool:
        """Run the module unless it already ran for this event; return its decision."""
        if self._event_index == event.index:  # already run for this event (another path): a visit only
            self.counters.visited += 1
            if self._error is not None:
                raise self._error
            return self._result
        self._event_index = event.index
        self._error = None
        self.counters.executed += 1
        if self._selected and not any(event.trigger_results.get(p, False) for p in self._selected):
            # output module, event not selected: nothing written, and, as in CMSSW, the module passes
            self.counters.visited += 1
            self.counters.passed += 1
            self._result = True
            with self._lock or _NO_LOCK:
                self.module.skip(event)  # type: ignore[attr-defined]
            return True
        signals = self._signals
        lock = self._lock
        if lock is not None:  # taken before pre_module: waiting for a serialised module's turn is not
            lock.acquire()  # its time (CMSSW's serial queue runs before preModuleEvent), it is the event's
        try:
            previous = event.current_module
            event.current_module = self.desc.label
            fire = signals.pre_module.fire
            if fire is not None:
                fire(event, self.desc)
            try:
                result = self._call(event)
            except (HltError, KeyboardInterrupt) as exc:
                self.counters.visited += 1
                self.counters.error += 1
                self._error = exc
                blame(exc, self.desc.label, type(exc).__name__)
                raise
            except Exception as exc:
                self.counters.visited += 1
                self.counters.error += 1
                self._error = ModuleError(
                    f"module '{self.desc.label}' ({self.desc.type}) failed on {event.id}: "
                    f"{type(exc).__name__}: {exc}"
                )
                blame(self._error, self.desc.label, type(exc).__name__)
                raise self._error from exc
            finally:
                event.current_module = previous
                fire = signals.post_module.fire
                if fire is not None:
                    fire(event, self.desc)
        finally:
            if lock is not None:
                lock.release()
        if self._is_filter:
            if type(result) not in _BOOL_TYPES:
                self.counters.visited += 1
                self.counters.error += 1
                self._error = ModuleError(
                    f"filter '{self.desc.label}' ({self.desc.type}) returned {type(result).__name__}, not bool"
                )
                raise self._error
            result = bool(result)
        else:
            result = True
        self.counters.visited += 1
        if result:
            self.counters.passed += 1
        else:
            self.counters.failed += 1
        self._result = result
        return result


class PathRunner:
    """One path (or endpath) on one stream: its workers in order and its counters."""

    __slots__ = ("name", "entries", "workers", "counters", "is_endpath", "_modes", "_prescalers")

    def __init__(self, name: str, entries: list[PathEntry], workers: list[Worker], is_endpath: bool) -> None:
        self.name = name
        self.entries = entries
        self.workers = workers
        self.is_endpath = is_endpath
        self.counters = PathCounters.for_labels([e.label for e in entries])
        self._modes = [e.mode for e in entries]
        # an HLTPrescaler that stops this path makes it 'prescaled' rather than 'rejected' (hltdiff -p)
        self._prescalers = [e.mode == "normal" and bool(getattr(w.module, "prescaler", False))
                            for e, w in zip(entries, workers)]

    def run(self, event: Event, signals: ActivityRegistry) -> bool:
        fire = signals.pre_path.fire
        if fire is not None:
            fire(event, self.name)
        counters = self.counters
        counters.executed += 1
        accepted = True
        try:
            for worker, mode, stats, prescaler in zip(self.workers, self._modes, counters.modules, self._prescalers):
                stats.visited += 1
                try:
                    result = worker.run(event)
                except BaseException:
                    stats.error += 1
                    counters.error += 1
                    accepted = False
                    raise
                if mode == "invert":
                    result = not result
                elif mode == "ignore":
                    result = True
                if result:
                    stats.passed += 1
                elif not self.is_endpath:
                    stats.failed += 1
                    accepted = False
                    if prescaler:
                        event.prescaled_paths = event.prescaled_paths | {self.name}
                    break
                else:
                    stats.failed += 1  # endpath modules all run; a non-selected output counts here
            if accepted:
                counters.passed += 1
            else:
                counters.failed += 1
        finally:
            fire = signals.post_path.fire
            if fire is not None:
                fire(event, self.name, accepted)
        return accepted


class StreamSchedule:
    """Everything one stream needs to process an event: workers, paths, endpaths."""

    def __init__(self, stream: int, workers: dict[str, Worker], paths: list[PathRunner],
                 endpaths: list[PathRunner], signals: ActivityRegistry) -> None:
        self.stream = stream
        self.workers = workers
        self.paths = paths
        self.endpaths = endpaths
        self.signals = signals
        self._producers = {label: w for label, w in workers.items() if isinstance(w.module, Producer)}

    def on_demand(self, event: Event, label: str) -> bool:
        """Unscheduled execution: run the producer of a missing product now, if there is one."""
        worker = self._producers.get(label)
        if worker is None:
            return False
        worker.run(event)
        return True

    def process(self, event: Event) -> str:
        """Run all paths then all endpaths; return ``accept`` or ``reject`` (exceptions propagate)."""
        results = event.trigger_results
        any_accepted = False
        for path in self.paths:
            accepted = path.run(event, self.signals)
            results[path.name] = accepted
            any_accepted = any_accepted or accepted
        for endpath in self.endpaths:
            endpath.run(event, self.signals)
        return "accept" if any_accepted or not self.paths else "reject"

    def skip_failed(self, event: Event) -> None:
        """``event`` failed and is skipped (``TryToContinue``): the output modules still count it as read."""
        for worker in self.workers.values():
            worker.skip_failed(event)
