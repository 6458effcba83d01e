"""The event loop: N streams pull events from the source and run their schedule.

With one stream everything runs on the calling thread. With N streams, N threads each take the next
event from the source (one at a time, under a lock, like CMSSW's source serialisation) and process
it; modules that compute outside the GIL (ONNX Runtime, TensorFlow) then overlap.

Run and lumi transitions. Events come out of the source in input order, one at a time under the
source lock, so the loop compares each event's (run, luminosityBlock) with the last one pulled (one
tuple compare per event). At a change the pulling stream, still holding the lock, waits until no
event is in flight on any stream, then fires end lumi (and end run if the run changes) for the old
section and begin run / begin lumi for the new one -- signals (``pre_/post_begin_run`` ...) and the
modules' ``begin_run``/``begin_lumi``/``end_*`` hooks -- and only then processes the new event. This
is CMSSW with one concurrent lumi section: a lumi begins before its first event is processed and
ends after its last, on any number of streams; streams overlap within a lumi, never across a
boundary. The last section open ends when the loop ends (also after an error, as end_job runs).
A section that comes back later in the input (A, B, A) begins and ends again, as in CMSSW.
In a distributed run each work unit is a loop of its own: a lumi split across units begins and
ends in each unit (the reports merge its counts into one lumi).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from .context import IDLE
from .errorlog import ErrorTally, context
from .errors import HltError, ModuleError, category_of
from .interrupt import Interrupted, stop_callback
from .event import Event, EventID
from .process import Process
from .results import add_stream_summary
from .schedule import StreamSchedule
from .summary import JobSummary, ModuleCounters, PathCounters

if TYPE_CHECKING:
    from .units import WorkUnit

log = logging.getLogger("hltrun")
_IDLE = IDLE  # in_flight value of a stream with no event

_COUNTER_OF_STATUS = {"accept": "passed", "reject": "failed"}  # an event's status -> its stream counter


class EventProcessor:
    """Runs a built Process from begin_job to end_job and returns the JobSummary."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.options = process.config.options
        self._source_lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._noted: set[int] = set()  # id() of the signals ``_on_signal`` took (the loop stopped between events)
        self._read = 0
        self._base = 0  # job-wide index of this run's first event (work units start past 0)
        self._first_event_at: float | None = None
        # the first pull's start: the loop's (and the Timing service's) throughput window opens here, its
        # first chunk read included, so the JobReport's events/s is the BudgetReport's
        self._first_pull_at: float | None = None
        self._streams_end: float | None = None  # ... and closes at the last stream's end-of-input pull (not the end hooks)
        self._t0 = 0.0
        self._tally = ErrorTally()
        self._where: dict[int, EventID] = {}  # id(exception) -> event it stopped the job on
        self._stream_counts = [dict(processed=0, passed=0, failed=0, error=0)
                               for _ in process.schedules]
        self._lumi: tuple[int, int] | None = None  # (run, luminosityBlock) open now, None before the first
        self._transitions = [0, 0]  # begin run, begin lumi calls (the job report's ProcessingSummary)
        self._in_flight: list[int] = []  # process.loop.in_flight: each stream's event index, or _IDLE
        self._transition_hooks = _transition_hooks(process)

    def run(self, started_at: float | None = None) -> JobSummary:
        """Process all events. ``started_at`` (perf_counter) lets the report show start-up time.

        Services' job scopes (``Service.job_scope``) are held open around the whole job."""
        with contextlib.ExitStack() as scopes:
            for service in self.process.services:
                scopes.enter_context(service.job_scope(self.process.job))
            return self._run_job(started_at)

    def _run_job(self, started_at: float | None) -> JobSummary:
        process = self.process
        self._t0 = started_at if started_at is not None else time.perf_counter()
        summary = JobSummary(process.config.process, len(process.schedules),
                             budget_ms=self.options.budgetMs, input_rate_hz=self.options.inputRateHz)
        begin = time.perf_counter()
        try:
            process.begin_job()
        except BaseException:
            process.loop.failed = True
            process.end_job()
            raise
        summary.begin_job_s = time.perf_counter() - begin
        bulk = process.source.bulk_pending  # reads begin_job did for the loop (stream -1: no pull)
        if bulk is not None:
            process.source.bulk_pending = None
            if process.signals.source_bulk:
                process.signals.source_bulk(-1, *bulk)
        process.loop.in_flight = self._in_flight = [_IDLE] * len(process.schedules)
        process.loop.draining = False
        limit = None if self.options.maxEvents < 0 else self.options.maxEvents
        events = process.source.events(self.options.skipEvents, limit)
        with stop_callback(self._on_signal):  # a signal while end_job writes the outputs: stopped as in the loop
            self._loop(events)
            process.loop.failed = bool(self._errors)
            process.loop.graceful = self._graceful_only()
            first = self._errors[0] if self._errors else None
            process.loop.stopped_by = first.signame if process.loop.graceful and isinstance(first, Interrupted) else None
            problems = process.end_job()
            summary.wall_s = time.perf_counter() - self._t0
            self._fill(summary)
            process.signals.post_end_job(summary)
        if self._errors:
            err = self._errors[0]
            self._describe_failure(summary, err)
            raise JobFailed(summary, err)
        if problems:
            summary.failure = problems[0]
            raise JobFailed(summary, ModuleError(problems[0]))  # a module's end_job, as its events
        return summary

    def _loop(self, events: Iterator[tuple[EventID, dict[str, Any]]]) -> None:
        """Run the streams over ``events`` until they are exhausted or the job stops."""
        try:
            with stop_callback(self._on_signal):
                self._run_streams(events)
                if self._streams_end is None:  # stopped (an error, a signal): no stream read the input's end
                    self._streams_end = time.perf_counter()
                self._transition(None)  # the last lumi and run end after their last event
        except KeyboardInterrupt as exc:
            self._stop.set()
            self._errors.append(exc)
        except Exception as exc:  # a module's end_lumi/end_run: fails the job as an event would
            self._stop.set()
            self._errors.append(exc)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        self._loop_end = time.perf_counter()

    def _transition(self, new: tuple[int, int] | None) -> None:
        """End the open lumi (and its run if the run changes), begin ``new``'s run and lumi. Called with
        no event in flight on any stream; ``new`` None: end what is open (end of the loop)."""
        old = self._lumi
        self._lumi = new
        signals = self.process.signals
        begin_run, end_run, begin_lumi, end_lumi = self._transition_hooks
        if old is not None:
            run, lumi = old
            signals.pre_end_lumi(run, lumi)
            for type_, module in end_lumi:
                _hook(module, type_, "end_lumi", run, lumi)
            signals.post_end_lumi(run, lumi)
            if new is None or new[0] != run:
                signals.pre_end_run(run)
                for type_, module in end_run:
                    _hook(module, type_, "end_run", run)
                signals.post_end_run(run)
        if new is not None:
            run, lumi = new
            if old is None or old[0] != run:
                self._transitions[0] += 1
                signals.pre_begin_run(run)
                for type_, module in begin_run:
                    _hook(module, type_, "begin_run", run)
                signals.post_begin_run(run)
            self._transitions[1] += 1
            signals.pre_begin_lumi(run, lumi)
            for type_, module in begin_lumi:
                _hook(module, type_, "begin_lumi", run, lumi)
            signals.post_begin_lumi(run, lumi)

    def _wait_idle(self) -> bool:
        """Wait (holding the source lock) until no stream has an event in flight; False if the job
        stopped meanwhile. Only at a transition, so polling costs nothing per event. Meanwhile the
        loop is draining (it takes no new event until the lumi changes), so that a cross-event
        batcher holding events for streams that will bring none sends them now, not after its delay."""
        in_flight, loop = self._in_flight, self.process.loop
        if not any(i != _IDLE for i in in_flight):
            return True
        was_draining, loop.draining = loop.draining, True
        try:
            while any(i != _IDLE for i in in_flight):
                if self._stop.is_set() and self._errors:
                    return False
                time.sleep(0.0002)
            return True
        finally:
            if not self._stop.is_set():
                loop.draining = was_draining

    def _run_streams(self, events: Iterator[tuple[EventID, dict[str, Any]]]) -> None:
        process = self.process
        if len(process.schedules) == 1:
            self._stream_loop(process.schedules[0], events)
            return
        threads = [threading.Thread(target=self._stream_loop, args=(s, events),
                                    name=f"hltrun-stream-{s.stream}", daemon=True)
                   for s in process.schedules]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # short joins keep signals responsive in the main thread
        except KeyboardInterrupt:  # no handler installed (library use): still let events in flight end
            self._stop.set()
            for t in threads:
                t.join()
            raise

    def run_unit(self, unit: "WorkUnit") -> tuple[JobSummary, list[dict[str, Any]]]:
        """Process one work unit on a built Process whose begin_job has run (Dask workers).

        Modules' begin_unit/end_unit run around the unit's events; event indices start at the unit's
        job-wide ``first_index``; counters start from zero, so the summary counts this unit only.
        Returns the summary (an error is in ``summary.failure`` and ``self.errors``) and the output parts."""
        process = self.process
        self._errors.clear()
        self._noted.clear()
        self._stop.clear()
        self._tally, self._where = ErrorTally(), {}  # per-event failures of this unit only
        self._read, self._base, self._first_event_at = 0, unit.first_index, None
        self._first_pull_at = self._streams_end = None
        self._lumi = None  # a unit begins its own runs and lumis (module docstring)
        self._transitions = [0, 0]
        self._stream_counts = [dict(processed=0, passed=0, failed=0, error=0) for _ in process.schedules]
        for schedule in process.schedules:
            for runner in [*schedule.paths, *schedule.endpaths]:
                runner.counters = PathCounters.for_labels([e.label for e in runner.entries])
            for worker in schedule.workers.values():
                worker.counters = ModuleCounters()
        self._t0 = time.perf_counter()
        summary = JobSummary(process.config.process, len(process.schedules),
                             budget_ms=self.options.budgetMs, input_rate_hz=self.options.inputRateHz)
        process.loop.in_flight = self._in_flight = [_IDLE] * len(process.schedules)
        process.loop.draining = False
        modules = process.all_modules()
        for _, module in modules:
            module.begin_unit(unit)
        planned = (unit.duplicates,) if unit.duplicates else ()  # a source without plan_duplicates gets none
        self._loop(process.source.read_range(unit.file, unit.start, unit.stop, *planned))
        parts = []
        for desc, module in modules:
            try:
                part = module.end_unit(unit, bool(self._errors))
            except Exception as exc:
                self._errors.append(ModuleError(f"module '{desc.label}' ({desc.type}) failed ending {unit}: "
                                                f"{type(exc).__name__}: {exc}"))
                continue
            if part:
                parts.append({**part, "module": desc.label, "unit": unit.index})
        self._fill(summary)
        summary.wall_s = self._loop_end - self._t0
        if self._errors:
            self._describe_failure(summary, self._errors[0])
        return summary, parts

    def _describe_failure(self, summary: JobSummary, err: BaseException) -> None:
        """The one-line reason, naming the event it stopped on; the signal if one stopped the job."""
        summary.failure = context(_one_line(err), err, self._where.get(id(err))) \
            if id(err) in self._where else _one_line(err)
        if isinstance(err, Interrupted):
            summary.stopped_by_signal = err.signame

    def _graceful_only(self) -> bool:
        """The job stopped on a graceful signal (SIGUSR2, SIGINT) noted by ``_on_signal`` and on nothing
        else: the events in flight finished whole, so the outputs keep every event done (framework/interrupt.py).
        Not for an interrupt raised inside an event (library use, no handler): it may have cut a module."""
        return bool(self._errors) and all(isinstance(e, Interrupted) and e.graceful and id(e) in self._noted
                                          for e in self._errors)

    def _on_signal(self, exc: Interrupted) -> None:
        """First SIGINT/SIGTERM/SIGHUP/SIGUSR2 during the loop: take no new event, finish those in flight."""
        self._noted.add(id(exc))
        if self._stop.is_set():
            self._errors.append(exc)  # an error stopped the job first: it stays the reason
        else:
            self._errors.insert(0, exc)
        self._stop.set()
        self.process.loop.draining = True  # no new event: waits for other streams' events end now

    @property
    def errors(self) -> list[BaseException]:
        return self._errors

    def _next_event(self, stream: int, events: Iterator[tuple[EventID, dict[str, Any]]]):
        """The next event and its job-wide index, or None when the stream must stop. Per event: the
        signals are fired as the schedule's workers do (``Signal.fire``, no call when nobody listens)."""
        signals = self.process.signals
        source = self.process.source
        with self._source_lock:
            if self._stop.is_set():
                self.process.loop.draining = True
                return None
            if self._first_pull_at is None:
                self._first_pull_at = time.perf_counter()
            fire = signals.pre_source.fire
            if fire is not None:
                fire(stream)
            try:
                item = next(events, None)
            except BaseException as exc:
                self._errors.append(exc)
                self._stop.set()
                item = None
            bulk = source.bulk_pending
            if bulk is not None:  # file open / chunk read inside this pull: not this event's time
                source.bulk_pending = None
                if signals.source_bulk:
                    signals.source_bulk(stream, *bulk)
            fire = signals.post_source.fire
            if fire is not None:
                fire(stream, item[0] if item else None)
            if item is None:
                # each stream's last pull, after its last event: the latest closes the throughput window
                self._streams_end = time.perf_counter()
                self.process.loop.draining = True  # no stream takes a new event any more
                return None
            index = self._base + self._read
            self._read += 1
            event_id = item[0]
            lumi = (event_id.run, event_id.luminosityBlock)
            if lumi != self._lumi:  # the one per-event cost of transitions: a tuple compare
                w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                if len(self.process.schedules) > 1 and not self._wait_idle():
                    return None  # read, not processed: the job stopped on another stream's error
                w1 = time.perf_counter_ns()
                try:
                    self._transition(lumi)
                except Exception as exc:  # a module's begin/end hook: stops the job, as an event's error
                    self._errors.append(exc)
                    self._stop.set()
                    self.process.loop.draining = True
                    return None
                if signals.transition:  # not this event's time: the Timing service takes it out
                    signals.transition(stream, w1 - w0, time.perf_counter_ns() - w1, time.thread_time_ns() - c0)
            # in flight from here, under the lock: a stream pulling the next lumi's first event waits
            # for this one (set after the lock, another stream could see this one idle and end its lumi)
            self._in_flight[stream] = index
            if self._first_event_at is None:
                self._first_event_at = time.perf_counter()
        return index, item

    def _stream_loop(self, schedule: StreamSchedule, events) -> None:
        signals = self.process.signals
        source_label = self.process.source.label
        counts = self._stream_counts[schedule.stream]
        try_to_continue = frozenset(self.options.TryToContinue)  # CMSSW exception categories that skip the event
        in_flight = self.process.loop.in_flight
        product_types = self.process.product_types
        while True:
            got = self._next_event(schedule.stream, events)
            if got is None:
                return
            index, (event_id, products) = got  # in_flight[stream] = index: set by _next_event
            event = Event(event_id, index, schedule.stream, schedule.on_demand, product_types)
            for instance, product in products.items():
                event.put_as(source_label, product, instance)
            fire = signals.pre_event.fire
            if fire is not None:
                fire(event)
            status = "error"
            try:
                status = schedule.process(event)
            except KeyboardInterrupt as exc:
                self._errors.append(exc)
                self._stop.set()
            except Exception as exc:
                skip = category_of(exc) in try_to_continue
                self._tally.record(exc, event_id, _one_line(exc), skipped=skip)
                if skip:
                    schedule.skip_failed(event)
                else:
                    self._where[id(exc)] = event_id
                    self._errors.append(exc)
                    self._stop.set()
            finally:
                fire = signals.post_event.fire
                if fire is not None:
                    fire(event, status)
            in_flight[schedule.stream] = _IDLE
            counts["processed"] += 1
            counts[_COUNTER_OF_STATUS.get(status, "error")] += 1
            if self._stop.is_set():
                self.process.loop.draining = True
                return

    def _fill(self, summary: JobSummary) -> None:
        process = self.process
        for c in self._stream_counts:
            summary.events_processed += c["processed"]
            summary.events_passed += c["passed"]
            summary.events_failed += c["failed"]
            summary.events_error += c["error"]
        summary.events_read = self._read
        summary.begin_run_calls, summary.begin_lumi_calls = self._transitions
        summary.events_not_processed = self._read - summary.events_processed
        summary.source = process.source.accounting()
        summary.facts = process.facts
        summary.events_skipped = summary.source.get("skipped", self.options.skipEvents)
        summary.events_duplicate = summary.source.get("duplicates", 0)
        summary.bad_files = list(getattr(process.source, "bad_files", []) or [])
        summary.errors = {m: dict(k) for m, k in self._tally.counts.items()}
        summary.data_quality[process.source.label] = dict(process.source.data_quality())
        if self._first_event_at is not None:
            summary.time_to_first_event_s = self._first_event_at - self._t0
            # the throughput window, the Timing service's loop: it ends with the last event or the end-of-input
            # pull, not after the last lumi's and run's end hooks (until 2026-12-07 it did: the JobReport's
            # events/s was below the BudgetReport's throughput by up to 0.5 % on the shipped path, 2 streams)
            end = self._streams_end if self._streams_end is not None else self._loop_end
            summary.loop_s = end - (self._first_pull_at or self._first_event_at)
        first = process.schedules[0]
        for table, runners in ((summary.paths, "paths"), (summary.endpaths, "endpaths")):
            for i, runner in enumerate(getattr(first, runners)):
                merged = PathCounters.for_labels([e.label for e in runner.entries])
                for schedule in process.schedules:
                    merged.add(getattr(schedule, runners)[i].counters)
                table[runner.name] = merged
                summary.path_entries[runner.name] = [str(e) for e in runner.entries]
        for label in process.config.modules:
            merged = ModuleCounters()
            for schedule in process.schedules:
                merged.add(schedule.workers[label].counters)
            summary.modules[label] = merged
            summary.module_types[label] = process.config.modules[label].type
        for desc, module in process.all_modules():  # per-stream instances: counters add up
            add_stream_summary(summary.module_summaries.setdefault(desc.label, {}), module.summary())
            quality = summary.data_quality.setdefault(desc.label, {})
            for key, value in module.data_quality().items():
                quality[key] = quality.get(key, 0) + int(value)
        summary.module_summaries = {k: v for k, v in summary.module_summaries.items() if v}
        summary.data_quality = {k: v for k, v in summary.data_quality.items() if v}


def _hook(module: Any, type_: str, name: str, *args: int) -> None:
    """A module's run/lumi hook; its failure is one line naming the module, the hook and the section."""
    try:
        getattr(module, name)(*args)
    except Exception as exc:
        raise ModuleError(f"module '{module.label}' ({type_}) failed in {name}"
                          f"({', '.join(map(str, args))}): {type(exc).__name__}: {exc}") from exc


def _transition_hooks(process: Process) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(type, instance) of the modules overriding begin_run, end_run, begin_lumi, end_lumi (each list
    in configuration order): a transition calls only those."""
    from .module import Module

    modules = [(d.type, m) for d, m in process.all_modules()]
    return tuple([(t, m) for t, m in modules if getattr(type(m), name, None) is not getattr(Module, name)]  # type: ignore[return-value]
                 for name in ("begin_run", "end_run", "begin_lumi", "end_lumi"))


class JobFailed(Exception):
    """The job stopped on an error; carries the partial summary so reports can still be printed."""

    def __init__(self, summary: JobSummary, cause: BaseException) -> None:
        super().__init__(summary.failure)
        self.summary = summary
        self.cause = cause


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, HltError):
        return str(exc)
    if isinstance(exc, Interrupted):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by the user (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"
