"""Timing service (CMSSW's FastTimerService): real and CPU time per module, path, source and event.

How it measures
---------------
* Real time is ``time.perf_counter_ns`` and CPU time ``time.thread_time_ns`` (CPU of the calling
  thread: each stream runs on its own thread, so it is the CPU spent on that event).
* Every stream owns a ``_StreamClock``: plain lists indexed by ``ModuleDescription.index`` that only
  that stream's thread touches, so the hot path takes no lock. They are merged at the end of the job.
* Module times are *exclusive*. When a module makes another one run on demand (``event.get`` of a
  product not produced yet), the outer module's clock pauses while the inner one runs; the time
  between two signals always goes to the module on top of the stack. Module times therefore add up.
* The event runs from ``pre_source`` to ``post_event`` (as in FastTimerService, reading the event is
  part of it), less the source's bulk I/O (file open, chunk read and conversion: ``source_bulk``),
  which belongs to no single event: it is reported on its own line, amortised per event. What the source and the modules do not account for is the framework overhead, so
  ``source + sum(modules) + overhead == event`` holds exactly, in integer nanoseconds.
* One row per event (index, stream, event real/CPU, each module's real/CPU) is kept for the
  distributions, percentiles and plots: every event up to ``bounded.ROWS_KEPT`` (10,000) per stream
  (or ``options.executor.maxTimingRows`` if lower). Past that the stream folds its rows, block by
  block, into the fixed log histograms of ``TimingData`` (timing_data.py), so memory stays flat on
  long jobs; totals, means, minima, maxima and the over-budget count stay exact over all events,
  percentiles then come from the histograms (within one ~2.3 % bin).

``hltbench timing`` (in tools/bench/timing.py) measures the service's own cost (see docs/timing.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..schema import input_tags, limited
from ..service import Service
from . import bounded
from .timing_data import FIXED as _FIXED, TimingData, TimingHistograms

if TYPE_CHECKING:
    from ..context import JobContext
    from ..signals import ActivityRegistry, ModuleDescription
    from ..summary import JobSummary

log = logging.getLogger("hltrun")

_wall = time.perf_counter_ns
_cpu = time.thread_time_ns
_ROW_BLOCK = 4096  # events per numpy block: appending never copies what is already stored


@dataclass
class TimingParameters:
    """``services: {Timing: {...}}``."""

    # labels of the anomaly-detection module(s) the farm projection singles out;
    # empty: every producer whose type contains "Scorer"
    highlight: list[str] = field(default_factory=list)
    histogram_bins: int = limited(50, 1, 10_000)  # bins of each timing histogram in the reports
    per_event_json: bool = True  # per-event times in hltrun.json (about 20 bytes per event and module)
    resources_json: str = "resources.json"  # FastTimerService-compatible file in --report-dir
    calibrate: bool = True  # measure the service's own cost per module call at begin_job
    # a module's CPU clock starts at the previous CPU reading plus the real time since, when that gap
    # (other services' hooks, the framework between two modules) is shorter than this: it saves one
    # CPU-clock system call per module call (~0.4 us here). The module's CPU time is then understated
    # only if its thread was off the CPU during that gap, and by less than the gap; 0: always read
    infer_cpu_gap_us: float = 20.0

    def __post_init__(self) -> None:
        if not self.infer_cpu_gap_us >= 0:
            raise ValueError(f"infer_cpu_gap_us must be >= 0 (0: read the CPU clock at every module "
                             f"start), got {self.infer_cpu_gap_us}")


class _Rows:
    """One stream's per-event rows (int64 ns): every row up to ``limit``; past it, the rows are folded
    into ``TimingHistograms`` one block at a time, so memory stays flat however long the job runs."""

    __slots__ = ("n", "limit", "budget_ns", "blocks", "current", "fill", "hist", "over_budget")

    def __init__(self, n_modules: int, limit: int, budget_ns: int) -> None:
        self.n = n_modules
        self.limit = max(int(limit), 0)
        self.budget_ns = budget_ns
        self.blocks: list[np.ndarray] = []  # full blocks, kept while no histogram exists
        self.current = np.empty((_ROW_BLOCK, _FIXED + 2 * n_modules), dtype=np.int64)
        self.fill = 0
        self.hist: TimingHistograms | None = None  # every folded row
        self.over_budget = 0  # folded rows with event real time > budget (exact)

    def append(self, row: list[int]) -> None:
        """The hot path: one numpy row assignment; a full block is kept or folded."""
        self.current[self.fill] = row
        self.fill += 1
        if self.fill == _ROW_BLOCK:
            self.fill = 0
            if self.hist is not None:  # past the limit: fold the block and reuse its buffer
                self._fold(self.current)
            else:
                self.blocks.append(self.current)
                self.current = np.empty_like(self.current)
                if len(self.blocks) * _ROW_BLOCK > self.limit:
                    self._fold(np.concatenate(self.blocks))
                    self.blocks = []

    def _fold(self, rows: np.ndarray) -> None:
        h = TimingHistograms.from_rows(rows, self.n)
        self.hist = h if self.hist is None else self.hist.merge(h)
        self.over_budget += int(np.count_nonzero(rows[:, 2] > self.budget_ns))

    def pending(self) -> np.ndarray:
        """Rows not folded yet (a copy)."""
        return np.concatenate([*self.blocks, self.current[: self.fill]])

    def result(self) -> tuple[np.ndarray | None, TimingHistograms | None, int]:
        """(rows, None, over budget) while at most ``limit`` events were seen, else (None, histograms
        of every event, exact over-budget count); the stream itself is left unchanged."""
        rows = self.pending()
        if self.hist is None and len(rows) <= self.limit:
            return rows, None, int(np.count_nonzero(rows[:, 2] > self.budget_ns))
        h = TimingHistograms.from_rows(rows, self.n)
        return None, h if self.hist is None else self.hist.merge(h), \
            self.over_budget + int(np.count_nonzero(rows[:, 2] > self.budget_ns))


class _StreamClock:
    """Everything one stream measures; touched only by that stream's thread."""

    __slots__ = ("n", "mod_w", "mod_c", "stack", "mark_w", "mark_c", "ev_w0", "ev_c0", "calls",
                 "path_w", "path_runs", "path_mod_w", "cur_pm", "no_path", "path_w0", "rows", "first_w",
                 "last_w", "in_event", "nested", "bulk", "trans")

    def __init__(self, n_modules: int, n_paths: int, row_limit: int, budget_ns: int) -> None:
        self.n = n_modules
        self.mod_w = [0] * n_modules  # this event, exclusive, per module (index 0: the source)
        self.mod_c = [0] * n_modules
        self.stack: list[int] = []  # modules running, innermost last (on-demand nesting)
        self.mark_w = self.mark_c = 0  # time of the last signal: what follows goes to stack[-1]
        self.ev_w0 = self.ev_c0 = 0
        self.in_event = False
        self.calls = [0] * n_modules  # job totals
        self.path_w = [0] * n_paths  # real time only, as cmsRun's TimeReport: a CPU clock read costs ~0.6 us
        self.path_runs = [0] * n_paths
        self.path_mod_w = [[0] * n_modules for _ in range(n_paths)]  # module real time per path
        self.no_path = [0] * n_modules  # modules running outside a path land here
        self.cur_pm = self.no_path
        self.path_w0 = 0
        self.rows = _Rows(n_modules, row_limit, budget_ns)
        self.first_w: int | None = None
        self.last_w = 0
        self.nested: set[tuple[int, int]] = set()  # (outer, inner) on-demand calls seen
        self.bulk = [0, 0, 0]  # the source's bulk I/O: real ns, CPU ns, pulls that did some
        self.trans = [0, 0, 0, 0]  # run/lumi transitions in a pull: wait ns, hooks real ns, CPU ns, count

    def skip(self, w: int, c: int) -> None:
        """Move the event's start and the last mark past ``w`` ns of real and ``c`` ns of CPU time the pull
        spent on what is not the event's (bulk I/O, a run/lumi transition): out of the event and the source,
        exactly, in integer ns."""
        self.ev_w0 += w
        self.ev_c0 += c
        self.mark_w += w
        self.mark_c += c


class _Probe:
    """A stand-in event for the self-calibration (only ``stream`` and ``index`` are read)."""

    __slots__ = ("stream", "index")

    def __init__(self, stream: int, index: int) -> None:
        self.stream = stream
        self.index = index


class Timing(Service):
    """Real and CPU time per module, path, source and event, with budget and farm projections."""

    Parameters = TimingParameters

    def __init__(self, name: str, params: TimingParameters) -> None:
        super().__init__(name, params)
        self._streams: list[_StreamClock] = []
        self._descs: list["ModuleDescription"] = []
        self._path_names: list[str] = []
        self._endpath_names: set[str] = set()
        self._path_index: dict[str, int] = {}
        self._job: "JobContext | None" = None
        self._self_cost: dict[str, float] | None = None
        self._cache: tuple[int, dict[str, Any], dict[str, np.ndarray]] | None = None
        self._data: "TimingData | None" = None  # loaded (merged) data to render instead of own clocks
        self._epoch_offset = time.time_ns() - _wall()  # perf_counter ns -> epoch ns, to merge across processes
        self._max_rows = 200_000
        self._budget_ns = 0
        self._bulk_begin = [0, 0]  # the source's reads for the loop done at begin_job: real, CPU ns
        self._gap_ns = 0  # see TimingParameters.infer_cpu_gap_us
        # the process's CPU clock at the first pull and at the last end-of-input pull: CPU on threads
        # that are no stream's (modules' thread pools, a Dask worker's own) shows in no module's time; per
        # unit on a Dask worker with one thread, else None on Dask (a worker process with several threads
        # runs several units at once, so its CPU is not one unit's)
        self._process_cpu: list[int | None] = [None, None]

    # ---------------------------------------------------------------- signals (hot path)

    def connect(self, signals: "ActivityRegistry", job: "JobContext") -> None:
        self._job = job
        self._descs = list(job.descriptions)
        cfg = job.config
        self._path_names = [*cfg.paths, *cfg.endpaths]
        self._endpath_names = set(cfg.endpaths)
        self._path_index = {name: i for i, name in enumerate(self._path_names)}
        labels = {d.label for d in self._descs}
        for i, label in enumerate(self.params.highlight):
            if label not in labels:
                raise ConfigError(f"services.{self.name}.highlight[{i}]: '{label}' is not a module label")
        self._max_rows = cfg.options.executor.maxTimingRows
        self._budget_ns = int(cfg.options.budgetMs * 1e6)
        self._gap_ns = int(self.params.infer_cpu_gap_us * 1000)
        self.reset()
        self._pre_module, self._post_module = self._module_hooks()
        # innermost: the other services' hooks (Memory's RSS reads) stay outside the measured windows
        for signal, slot in ((signals.pre_source, self._pre_source), (signals.post_source, self._post_source),
                             (signals.source_bulk, self._source_bulk), (signals.transition, self._transition),
                             (signals.post_event, self._post_event),
                             (signals.pre_path, self._pre_path), (signals.post_path, self._post_path),
                             (signals.pre_module, self._pre_module), (signals.post_module, self._post_module)):
            signal.connect(slot, innermost=True)
        if self.params.calibrate:
            signals.post_begin_job.connect(self._calibrate)

    def _pre_source(self, stream: int) -> None:
        st = self._streams[stream]
        st.mod_w = [0] * st.n
        st.mod_c = [0] * st.n
        st.ev_w0 = st.mark_w = _wall()
        st.ev_c0 = st.mark_c = _cpu()
        if st.first_w is None:
            st.first_w = st.ev_w0
            if self._process_cpu[0] is None and not (self._job is not None and self._job.units
                                                        and not self._job.units_in_turn):
                self._process_cpu[0] = time.process_time_ns()  # under the source lock: once per job

    def _post_source(self, stream: int, event_id: Any) -> None:
        w, c = _wall(), _cpu()
        st = self._streams[stream]
        st.mod_w[0] += w - st.mark_w
        st.mod_c[0] += c - st.mark_c
        st.mark_w, st.mark_c = w, c
        st.in_event = event_id is not None  # the last, empty read belongs to no event
        if not st.in_event:  # ... but it is in the loop: closing the input is bulk I/O (source_bulk),
            st.last_w = w  # so the loop ends after it, or events + bulk + idle != streams x loop
            if self._process_cpu[0] is not None:  # each stream's last pull: the latest one is the loop's end
                self._process_cpu[1] = time.process_time_ns()

    def _source_bulk(self, stream: int, w: int, c: int) -> None:
        """Bulk I/O inside this pull: moving the event's start and the source's mark past it takes it
        out of the event and the source (exactly, in integer ns) and into the bulk line."""
        if stream < 0:  # read during begin_job for the loop: no pull, no event to take it out of
            self._bulk_begin[0] += w
            self._bulk_begin[1] += c
            return
        st = self._streams[stream]
        st.skip(w, c)
        bulk = st.bulk
        bulk[0] += w
        bulk[1] += c
        bulk[2] += 1

    def _transition(self, stream: int, wait_ns: int, real_ns: int, cpu_ns: int) -> None:
        """A run/lumi transition done by this pull, after the event was read: moving the event's start
        past it takes it out of the event (its framework overhead), as CMSSW's event begins after its
        lumi; the wait for the other streams' events and the begin/end hooks get their own line."""
        st = self._streams[stream]
        st.skip(wait_ns + real_ns, cpu_ns)
        trans = st.trans
        trans[0] += wait_ns
        trans[1] += real_ns
        trans[2] += cpu_ns
        trans[3] += 1

    def _pre_path(self, event: Any, name: str) -> None:
        st = self._streams[event.stream]
        st.cur_pm = st.path_mod_w[self._path_index[name]]
        st.path_w0 = _wall()

    def _post_path(self, event: Any, name: str, accepted: bool) -> None:
        w = _wall()
        st = self._streams[event.stream]
        p = self._path_index[name]
        st.path_w[p] += w - st.path_w0
        st.path_runs[p] += 1
        st.cur_pm = st.no_path

    def _module_hooks(self) -> tuple[Any, Any]:
        """``pre_module`` / ``post_module`` as closures over the stream clocks: they run twice per
        module call, so every name they use is a local (no attribute or global look-up)."""
        streams, gap_ns = self._streams, self._gap_ns

        def pre_module(event: Any, desc: "ModuleDescription", wall=_wall, cpu=_cpu) -> None:
            w = wall()
            st = streams[event.stream]
            stack = st.stack
            if stack:  # on-demand call inside another module: pause the outer one (CPU read exactly)
                c = cpu()
                top = stack[-1]
                dw = w - st.mark_w
                st.mod_w[top] += dw
                dc = c - st.mark_c
                if dc > 0:  # the outer module's start may have been inferred: never below 0
                    st.mod_c[top] += dc
                st.cur_pm[top] += dw
                st.nested.add((top, desc.index))
                st.mark_c = c
            else:
                # the CPU spent since the last reading (the framework between modules, other
                # services' hooks) is not this module's: starting from the previous module's end
                # charged it to the module (5 us real showed as 10 us CPU). A short gap is taken as
                # all CPU instead of reading the clock (a system call); a longer one, which may hide
                # a wait, is read
                gap = w - st.mark_w
                st.mark_c = st.mark_c + gap if gap < gap_ns else cpu()
            stack.append(desc.index)
            st.mark_w = w

        def post_module(event: Any, desc: "ModuleDescription", wall=_wall, cpu=_cpu) -> None:
            w = wall()
            c = cpu()
            st = streams[event.stream]
            i = st.stack.pop()
            dw = w - st.mark_w
            st.mod_w[i] += dw
            dc = c - st.mark_c
            if dc > 0:  # an inferred start can pass a module's own (tiny) CPU time: never below 0
                st.mod_c[i] += dc
            st.cur_pm[i] += dw
            st.calls[i] += 1
            st.mark_w = w
            st.mark_c = c

        return pre_module, post_module

    def _post_event(self, event: Any, status: str) -> None:
        w, c = _wall(), _cpu()
        st = self._streams[event.stream]
        if not st.in_event:  # pragma: no cover - defensive: no pre_source seen for this event
            return
        st.in_event = False
        st.stack.clear()
        st.rows.append([event.index, event.stream, w - st.ev_w0, c - st.ev_c0, *st.mod_w, *st.mod_c])
        st.last_w = w

    # ---------------------------------------------------------------- self-calibration

    def _calibrate(self, job: Any = None, calls: int = 2000, events: int = 300) -> None:
        """Time the service's own callbacks on a scratch stream (not part of the results)."""
        scratch = len(self._streams) - 1
        desc = self._descs[-1]
        probe = _Probe(scratch, -1)
        pre, post = self._pre_module, self._post_module
        t0 = _wall()
        for _ in range(calls):
            pre(probe, desc)
            post(probe, desc)
        per_call = (_wall() - t0) / calls
        name = self._path_names[0] if self._path_names else None
        t0 = _wall()
        for i in range(events):
            probe.index = i
            self._pre_source(scratch)
            self._post_source(scratch, True)
            if name is not None:
                self._pre_path(probe, name)
                self._post_path(probe, name, True)
            self._post_event(probe, "accept")
        per_event = (_wall() - t0) / events
        self._self_cost = {"per_module_call_ns": per_call, "per_event_ns": per_event,
                           "per_event_with_modules_ns": per_event + per_call * max(len(self._descs) - 1, 0)}
        self._streams[scratch] = self._clock()
        self._process_cpu = [None, None]  # the probe's pulls were no job's

    # ---------------------------------------------------------------- results as data

    def reset(self) -> None:
        """Fresh clocks: one per stream, plus a scratch one for the self-calibration."""
        streams = self._job.config.options.streams_in_flight if self._job is not None else 1
        self._streams[:] = [self._clock() for _ in range(streams + 1)]  # in place: the hooks hold the list
        self._process_cpu = [None, None]
        self._cache = None

    def _clock(self) -> _StreamClock:
        """Rows per stream: ``bounded.ROWS_KEPT`` at most (read now, so tests can lower it)."""
        return _StreamClock(len(self._descs), len(self._path_names), min(bounded.ROWS_KEPT, self._max_rows),
                            self._budget_ns)

    def snapshot(self) -> TimingData:
        """The streams' measurements merged into one ``TimingData``: rows while every stream kept them
        (and at most ``_job_rows`` in all, also once merged with other units), else histograms of every event."""
        streams = self._streams[:-1]
        n, p = len(self._descs), len(self._path_names)
        firsts = [st.first_w for st in streams if st.first_w is not None]
        lasts = [st.last_w for st in streams if st.last_w]
        cfg = self._job.config if self._job is not None else None
        path_labels = {name: [e.label for e in entries]
                       for name, entries in ([*cfg.paths.items(), *cfg.endpaths.items()] if cfg else [])}
        deps = {label: sorted({t.label for t in input_tags(m.params)} - {"source"})
                for label, m in (cfg.modules.items() if cfg else [])}
        return TimingData(
            descs=[(d.label, d.type, d.kind, d.index) for d in self._descs],
            path_names=list(self._path_names),
            endpath_names=[name for name in self._path_names if name in self._endpath_names],
            path_labels=path_labels, deps=deps, highlight=self.highlight_labels(),
            calls=np.array([sum(st.calls[i] for st in streams) for i in range(n)], np.int64),
            path_w=np.array([sum(st.path_w[j] for st in streams) for j in range(p)], np.int64),
            path_runs=np.array([sum(st.path_runs[j] for st in streams) for j in range(p)], np.int64),
            path_mod_w=np.array([[sum(st.path_mod_w[j][i] for st in streams) for i in range(n)] for j in range(p)],
                                np.int64).reshape(p, n),
            nested=set().union(*(st.nested for st in streams)),
            first_ns=min(firsts) + self._epoch_offset if firsts else None,
            last_ns=max(lasts) + self._epoch_offset if lasts else None,
            self_cost=self._self_cost, max_rows=self._job_rows(),
            bulk_real_ns=sum(st.bulk[0] for st in streams), bulk_cpu_ns=sum(st.bulk[1] for st in streams),
            bulk_pulls=sum(st.bulk[2] for st in streams), bulk_begin_real_ns=self._bulk_begin[0],
            bulk_begin_cpu_ns=self._bulk_begin[1], transition_wait_ns=sum(st.trans[0] for st in streams),
            transition_real_ns=sum(st.trans[1] for st in streams),
            transition_cpu_ns=sum(st.trans[2] for st in streams),
            transitions=sum(st.trans[3] for st in streams), process_cpu_ns=self._loop_process_cpu(),
            **self._events()).bounded()

    def _job_rows(self) -> int:
        """The rows a job keeps in all: ``bounded.ROWS_KEPT`` per stream of the Process, ``maxTimingRows`` at
        most. What a Dask job's units merge up to (``TimingData.max_rows``): merged up to ``maxTimingRows``
        alone, units of 1000 events kept every row, and a 60,000-event job's hltrun.json held 10 MB of them
        against 153 kB for the same job run locally, whose one stream folds past 10,000."""
        streams = self._job.config.options.streams_in_flight if self._job is not None else 1
        return min(self._max_rows, bounded.ROWS_KEPT * streams)

    def _loop_process_cpu(self) -> int | None:
        start, end = self._process_cpu
        return end - start if start is not None and end is not None else None

    def load(self, data: TimingData | None) -> None:
        self._data = data
        self._cache = None

    # ---------------------------------------------------------------- results

    def _events(self) -> dict[str, Any]:
        """The per-event part of ``TimingData``: rows ordered by event index, or histograms once any
        stream went past its row limit; over_budget exact either way (the scratch stream left out)."""
        parts = [st.rows.result() for st in self._streams[:-1]]
        over = sum(o for _, _, o in parts)
        if all(h is None for _, h, _ in parts):
            rows = np.concatenate([r for r, _, _ in parts]) if parts else \
                np.empty((0, _FIXED + 2 * len(self._descs)), np.int64)
            return {"rows": rows[np.argsort(rows[:, 0], kind="stable")], "hist": None, "over_budget": over}
        hists = [h if h is not None else TimingHistograms.from_rows(r, len(self._descs)) for r, h, _ in parts]
        hist = hists[0]
        for h in hists[1:]:
            hist = hist.merge(h)
        return {"rows": None, "hist": hist, "over_budget": over}

    def merged_rows(self) -> np.ndarray | None:
        """The kept per-event rows ordered by event index; None once a stream went over to histograms."""
        return self._events()["rows"]

    def highlight_labels(self) -> list[str]:
        if self._data is not None:
            return list(self._data.highlight)
        if self.params.highlight:
            return list(self.params.highlight)
        return [d.label for d in self._descs if d.kind == "producer" and "Scorer" in d.type]

    def result(self, summary: "JobSummary") -> dict[str, Any]:
        """Everything the reports show, as JSON-ready data (milliseconds); computed once."""
        return self._compute(summary)[1]

    def per_event(self, summary: "JobSummary") -> dict[str, np.ndarray]:
        """Per-event arrays in ms, ordered by event index (for plots)."""
        return self._compute(summary)[2]

    def _compute(self, summary: "JobSummary") -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
        if self._cache is not None and self._cache[0] == id(summary):
            return self._cache
        from .timing_results import build_result

        data = self._data if self._data is not None else self.snapshot()
        result, arrays = build_result(summary=summary, data=data, params=self.params)
        self._cache = (id(summary), result, arrays)
        return self._cache

    # ---------------------------------------------------------------- reports

    def text_report(self, summary: "JobSummary") -> str:
        from ..report.timereport import batching_report, budget_report, farm_report, loop_report, time_report

        res = self.result(summary)
        parts = (time_report(res), loop_report(res), batching_report(res), budget_report(res), farm_report(res))
        return "\n".join(p for p in parts if p)

    def json_report(self, summary: "JobSummary") -> dict[str, Any] | None:
        return self.result(summary)

    def report_files(self) -> tuple[str, ...]:
        # timing.root too: the report set writes it from this service's histograms (report/root_histograms.py),
        # so an input of the job named so is refused before the first event when, and only when, Timing runs
        return (self.params.resources_json, "timing.root")

    def write_files(self, report_dir: Path, summary: "JobSummary") -> list[Path]:
        import json

        from ..report.writing import atomic_write_text
        from ..report.timereport import fast_timer_json

        from ..provenance import stop_marks

        doc = fast_timer_json(self.result(summary), summary.process, getattr(self, "_allocations", None))
        # top-level fields: a partial job's times, read alone (a signal, or the error that ended the job)
        doc.update(stop_marks(summary.stopped_by_signal, summary.failure))
        return [atomic_write_text(report_dir / self.params.resources_json, json.dumps(doc, indent=2))]

    def use_allocations(self, allocations: dict[str, dict[str, int]] | None) -> None:
        """Per-module bytes allocated / freed measured by another service (Memory's memray capture), for
        resources.json's mem_alloc / mem_free; set by the report writer (framework/report/files.py)."""
        self._allocations = allocations

    def html_sections(self, summary: "JobSummary") -> list[tuple[str, str]]:
        """Plots and tables for report.html (see framework/report/html.py)."""
        from ..report.html import timing_sections

        return timing_sections(self.result(summary), self.per_event(summary))
