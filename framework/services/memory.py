"""Memory service (CMSSW's SimpleMemoryCheck, plus an optional memray capture).

What it measures, from the signals (modules never call it):

* RSS and virtual size after every event (``/proc/self/statm``: one ``pread``, ~2 µs; psutil ~20 µs), their peaks,
  and the events that increased RSS most ("key events", as SimpleMemoryCheck prints). Memory stays
  bounded on any job length: peaks, the last value and the key events (a small heap) are exact; the
  RSS series for the plot keeps every event up to ``bounded.ROWS_KEPT`` (10,000), then every 2nd,
  4th, ... event (``rss_series_stride``); a Dask run's merged series is as bounded (``MemoryData``);
* the leak check: the RSS slope per 1000 events after the warm-up, per worker process (``memory_leak``);
* per module, the RSS change across ``begin_job`` (what loading a model costs) and across each
  event call (mean and max growth), when ``per_module`` is on;
* optionally, a memray capture of every allocation of the job into ``<report_dir>/<memray>``
  (``memray flamegraph`` / ``memray stats`` read it), the tool the IML 2022 study used.

RSS is a process-wide figure: with several streams the per-module deltas include what the other
streams allocated meanwhile, so read them with ``streams: 1``.
"""

from __future__ import annotations

import heapq
import html
import itertools
import logging
import os
import resource
import socket
import time
import weakref
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..destinations import check_file_destination
from ..extras import install_hint
from ..schema import limited
from ..service import Service
from .bounded import ROWS_KEPT, Thinned, thin_series
from .memray_attribution import OUTSIDE
from .memory_leak import check_workers, describe
from .memory_cmssw import MemoryCheck, MemoryCheckState, merge_states, module_report_lines, report_lines, to_dict

if TYPE_CHECKING:
    from ..context import JobContext
    from ..signals import ActivityRegistry, ModuleDescription
    from ..summary import JobSummary

log = logging.getLogger("hltrun")
MB = 1024.0 * 1024.0
# events measured by this process's Memory services, in the order they ended: the leak check's axis. RSS is
# a figure of the process, so it is one count per process, shared by the Processes of a Dask worker's threads
_MEASURED = itertools.count()


# the device allocator's figures a GPU backend describes (JAX's naming; the PyTorch backend's too), in the
# order and words the MemoryReport prints them
DEVICE_MEMORY_KEYS = (("peak_bytes_in_use", "peak allocated"), ("peak_bytes_reserved", "peak reserved"),
                      ("bytes_in_use", "in use"), ("bytes_limit", "limit"))


def device_memory(summary: "JobSummary") -> dict[str, dict[str, int]]:
    """Per module whose inference backend reads its device allocator (``backend.device_memory``, on a
    GPU): the allocator's figures in bytes. They are per process on one device, so the streams' backends
    read the same allocator: the summary keeps the largest value any stream (or Dask worker) read
    (framework/results.py, GAUGES), never their sum."""
    out = {}
    for label, info in summary.module_summaries.items():
        backend = info.get("backend") if isinstance(info, dict) else None
        memory = backend.get("device_memory") if isinstance(backend, dict) else None
        if isinstance(memory, dict) and memory:
            out[label] = {k: int(v) for k, v in memory.items() if isinstance(v, int) and not isinstance(v, bool)}
    return out


def device_memory_lines(device: dict[str, dict[str, int]]) -> list[str]:
    """``MemoryReport  device memory <label>: peak allocated X MiB, ...``; figures the allocator lacks left out."""
    lines = []
    for label, m in device.items():
        figures = ", ".join(f"{title} {m[k] / MB:.1f} MiB" for k, title in DEVICE_MEMORY_KEYS if k in m)
        if figures:
            lines.append(f"MemoryReport  device memory {label}: {figures}")
    return lines


@dataclass
class MemoryParameters:
    """``services: {Memory: {...}}``."""

    per_module: bool = True  # RSS delta around every module call (two statm reads per call)
    key_events: int = limited(5, 0, 1_000)  # how many of the largest RSS increases to list
    memray: str | None = None  # file name (in --report-dir, else the working directory) for a memray capture
    memray_native: bool = False  # also record native (C/C++) stacks: slower, but shows ORT/TF internals
    ignoreTotal: int = 1  # SimpleMemoryCheck's: events finished before the key-event statistics start
    moduleMemorySummary: bool = False  # SimpleMemoryCheck's: ModuleMemoryReport> per-module VSIZE lines
    leak_warmup: int = 100  # events before the RSS slope of the leak check is fitted
    leak_threshold_kb: float = 1024.0  # RSS growth per 1000 events above which the job is flagged

    def __post_init__(self) -> None:
        if self.ignoreTotal < 0:
            raise ValueError(f"ignoreTotal must be >= 0, got {self.ignoreTotal}")
        if self.leak_warmup < 0 or self.leak_threshold_kb <= 0:
            raise ValueError("leak_warmup must be >= 0 and leak_threshold_kb > 0, got "
                             f"{self.leak_warmup} and {self.leak_threshold_kb}")


@dataclass
class MemoryData:
    """The Memory service's measurements as mergeable data (per work unit, per worker, per job).

    Per-event RSS samples come thinned from the service (at most ``bounded.ROWS_KEPT`` per unit), per
    worker process (RSS is a process's figure: the leak check fits each worker's own). Merged, they are
    thinned together to at most ``max_rows`` (``bounded.ROWS_KEPT``, 24 bytes each), one per bucket of
    ``stride`` events of the job (``bounded.thin_series``): a Dask job's series is as bounded as a local
    job's, evenly along the job. Peaks merge per worker as maxima, event counts add up exactly.
    """

    descs: list[tuple[str, str, int]]  # (label, type, index)
    begin_delta: list[int]  # per module: RSS growth across its begin_job (max over workers)
    calls: list[int]
    call_sum: list[int]
    call_max: list[int]
    workers: dict[str, dict[str, float]]  # name -> rss_start, rss_after_begin, rss_end, peak_rss, peak_vsize, kernel_max, end_epoch
    # worker -> (events, 3) int64: the job's event index, RSS bytes, the event's number in its process
    # (``_MEASURED``: the order the worker measured its events in, across its units)
    series: dict[str, np.ndarray]
    key_events: list[tuple[int, list[int], int]]  # (RSS growth, [run, lumi, event], RSS), largest first
    key_count: int = 5
    max_rows: int = ROWS_KEPT
    per_module: bool = True
    memray_file: str | None = None
    events: int = 0  # events measured (exact)
    stride: int = 1  # the series holds at least every stride-th event
    allocations: dict[str, dict[str, int]] | None = None  # memray per-module attribution (local runs)
    cmssw: dict[str, MemoryCheckState] | None = None  # worker -> SimpleMemoryCheck statistics
    module_summary: bool = False  # moduleMemorySummary was asked
    # worker -> the module call that raised its kernel high-water mark last (per_module): label, event
    # ([run, lumi, event]; None: the module's begin_job), high-water mark and RSS before the call (bytes)
    hwm_by: dict[str, dict[str, Any]] | None = None

    def merge(self, other: "MemoryData") -> "MemoryData":
        workers = {k: dict(v) for k, v in self.workers.items()}
        for name, w in other.workers.items():
            mine = workers.get(name)
            if mine is None:
                workers[name] = dict(w)
                continue
            later = w if w["end_epoch"] >= mine["end_epoch"] else mine
            workers[name] = {**mine, "rss_end": later["rss_end"], "end_epoch": later["end_epoch"],
                             **{k: max(mine[k], w[k]) for k in ("peak_rss", "peak_vsize", "kernel_max")}}
        series = dict(self.series)
        for name, rows in other.series.items():
            series[name] = np.concatenate([series[name], rows]) if name in series else rows
        max_rows = min(self.max_rows, other.max_rows)
        series, stride = thin_series(series, max(self.stride, other.stride), max_rows)
        keys = sorted(self.key_events + other.key_events, key=lambda k: -k[0])[: self.key_count]
        return MemoryData(self.descs, [max(a, b) for a, b in zip(self.begin_delta, other.begin_delta)],
                          [a + b for a, b in zip(self.calls, other.calls)],
                          [a + b for a, b in zip(self.call_sum, other.call_sum)],
                          [max(a, b) for a, b in zip(self.call_max, other.call_max)],
                          workers, series, keys, self.key_count, max_rows, self.per_module,
                          self.memray_file or other.memray_file, self.events + other.events, stride,
                          _merge_allocations(self.allocations, other.allocations),
                          merge_states(self.cmssw, other.cmssw), self.module_summary or other.module_summary,
                          _merge_hwm(self.hwm_by, other.hwm_by))


def _merge_hwm(a: dict[str, dict[str, Any]] | None,
               b: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
    """Per worker, the call that set the higher high-water mark (the kernel's is per process)."""
    if not a or not b:
        return a or b
    out = dict(a)
    for worker, by in b.items():
        if worker not in out or by["hwm"] > out[worker]["hwm"]:
            out[worker] = by
    return out


def _merge_allocations(a: dict[str, dict[str, int]] | None,
                       b: dict[str, dict[str, int]] | None) -> dict[str, dict[str, int]] | None:
    """Counts and bytes add up; peaks are maxima (one capture each)."""
    if not a or not b:
        return a or b
    out = {k: dict(v) for k, v in a.items()}
    for label, stats in b.items():
        mine = out.setdefault(label, {})
        for key, value in stats.items():
            mine[key] = max(mine.get(key, 0), value) if key == "peak" else mine.get(key, 0) + value
    return out


def _kernel_hwm() -> int:
    """The kernel's RSS high-water mark of this process in bytes (``ru_maxrss``, kB on Linux): one
    ``getrusage``, ~0.5-2 µs."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _hwm_setter(hwm_by: dict[str, dict[str, Any]] | None) -> dict[str, Any] | None:
    """The module call that set the highest high-water mark of any worker, in MiB."""
    if not hwm_by:
        return None
    worker, by = max(hwm_by.items(), key=lambda kv: kv[1]["hwm"])
    return {"label": by["label"], "event": by["event"], "worker": worker, "high_water_mark_mb": by["hwm"] / MB,
            "above_rss_before_call_mb": (by["hwm"] - by["rss_before"]) / MB}


def _hwm_lines(by: dict[str, Any] | None) -> list[str]:
    if by is None:
        return []
    head = f"MemoryReport  kernel high-water mark {by['high_water_mark_mb']:.1f} MiB reached"
    event = None if by["event"] is None else "run {}, lumi {}, event {}".format(*by["event"])
    if by["label"] == OUTSIDE:
        before = "a module's begin_job" if event is None else f"a module call of {event}"
        return [f"{head} outside module calls, before {before} (the source's read, the framework or a service), "
                f"{by['above_rss_before_call_mb']:+.1f} MiB above the RSS then"]
    return [f"{head} in module '{by['label']}' ({event or 'begin_job'}), {by['above_rss_before_call_mb']:+.1f} MiB "
            f"above the RSS before that call"]


def _statm_reader() -> Callable[[], tuple[int, int]]:
    """Return a function giving (vsize, rss) in bytes, as cheap as the platform allows.

    It runs after every event and around every module call, so on Linux it is one ``os.pread`` of an
    open ``/proc/self/statm``: 2.4 µs a read, against 19.9 µs for ``psutil.Process().memory_info()``
    (which opens and parses the same file; both best of 5 x 20,000 reads, 2026-12-06). psutil only
    where there is no /proc."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)

        def read() -> tuple[int, int]:
            fields = os.pread(fd, 128, 0).split()
            return int(fields[0]) * page, int(fields[1]) * page

        # closed with the reader: each job's Memory service (and the one its reports render) left its
        # descriptor open, two a job, until a process running many (hltbench, a notebook) ran out of them
        weakref.finalize(read, os.close, fd)
        read()
        return read
    except OSError:  # not Linux: psutil, slower but portable
        import psutil

        proc = psutil.Process()

        def read_psutil() -> tuple[int, int]:
            info = proc.memory_info()
            return info.vms, info.rss

        return read_psutil


class Memory(Service):
    """RSS / virtual size per event, per-module growth, peaks, optional memray capture."""

    Parameters = MemoryParameters

    def __init__(self, name: str, params: MemoryParameters) -> None:
        super().__init__(name, params)
        self._read = _statm_reader()
        self._descs: list["ModuleDescription"] = []
        self._begin_rss: dict[str, int] = {}
        self._begin_delta: list[int] = []
        self._call_sum: list[int] = []
        self._call_max: list[int] = []
        self._calls: list[int] = []
        self._before: dict[int, tuple[int, int]] = {}  # per stream: (vsize, RSS) before the running module
        # bounded on any job length: the RSS series is thinned past ROWS_KEPT events, while peaks,
        # the last value and the key events (largest increases, kept in a small heap) stay exact
        self._series = Thinned(3)  # (event index, rss, the event's number in this process: _MEASURED)
        self._events = 0
        self._peak = [0, 0]  # rss, vsize
        self._last_rss: int | None = None
        self._key: list[tuple[int, int, tuple[int, int, int], int]] = []  # min-heap (growth, n, id, rss)
        self._start: tuple[int, int] = (0, 0)
        self._after_begin: tuple[int, int] = (0, 0)
        self._tracker: Any = None
        self._memray_file: Path | None = None
        self._attributed: dict[str, dict[str, int]] | None = None
        self._data: MemoryData | None = None
        self._max_rows = ROWS_KEPT
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        self._job: "JobContext | None" = None
        self._check = MemoryCheck(params.ignoreTotal)  # SimpleMemoryCheck's statistics: one per process
        self._hwm = 0  # the kernel's RSS high-water mark (bytes) at the last module call's end
        self._hwm_by: dict[str, Any] | None = None  # the module call that raised it last
        # per stream: the event's first module call is still to come (the high-water mark is read before it
        # only: what raised it since the last call's end was the source's read, a service or the framework)
        self._fresh: set[int] = set()

    # --------------------------------------------------------------------------- signals

    def connect(self, signals: "ActivityRegistry", job: "JobContext") -> None:
        self._descs = list(job.descriptions)
        n = len(self._descs)
        self._begin_delta = [0] * n
        self._call_sum, self._call_max, self._calls = [0] * n, [0] * n, [0] * n
        signals.pre_begin_job.connect(self._pre_begin_job)
        signals.pre_module_begin_job.connect(self._pre_module_begin_job)
        signals.post_module_begin_job.connect(self._post_module_begin_job)
        signals.post_begin_job.connect(self._post_begin_job)
        signals.post_event.connect(self._post_event)
        signals.post_end_job.connect(self._post_end_job)
        if self.params.per_module:
            signals.post_source.connect(self._post_source)
        if self.params.per_module or self.params.moduleMemorySummary:
            signals.pre_module.connect(self._pre_module)
            signals.post_module.connect(self._post_module)
        self._max_rows = min(ROWS_KEPT, job.config.options.executor.maxTimingRows)
        self._job = job
        if self.params.memray:
            folder = job.report_dir or Path(".")
            self._memray_file = folder / self.params.memray
        elif self.params.memray_native:  # it only adds native stacks to a capture: said, not taken for one
            log.warning("services.%s.memray_native: true without memray (the capture file it adds native stacks "
                        "to): no capture is made; set services.%s.memray=<file>", self.name, self.name,
                        extra={"once": True})

    def job_scope(self, job: "JobContext") -> AbstractContextManager:
        """The memray Tracker, held open by the event processor around the whole job (entered in a
        helper that returns, memray loses the frames that attribute allocations to modules)."""
        if self._memray_file is None:
            return nullcontext()
        try:
            import memray
        except ImportError:
            log.warning("Memory: memray is not installed; no capture (%s)", install_hint("memray"))
            return nullcontext()
        # memray makes its own file: a regular one only; a link's target is written, the link stays
        target = check_file_destination(self._memray_file, f"services.{self.name}.memray", in_place=False).target
        target.unlink(missing_ok=True)  # memray refuses to overwrite
        self._tracker = memray.Tracker(target, native_traces=self.params.memray_native)
        return self._tracker

    def _pre_begin_job(self, job: "JobContext") -> None:
        if self._memray_file is not None and self._tracker is None:  # no job scope (library use)
            check_file_destination(self._memray_file, f"services.{self.name}.memray", in_place=False)
        self._start = self._read()
        self._hwm = _kernel_hwm()

    def _pre_module_begin_job(self, desc: "ModuleDescription") -> None:
        self._begin_rss[desc.label] = rss = self._read()[1]
        self._note_hwm(OUTSIDE, None, rss)

    def _post_module_begin_job(self, desc: "ModuleDescription") -> None:
        before = self._begin_rss.pop(desc.label, 0)
        self._begin_delta[desc.index] += self._read()[1] - before
        self._note_hwm(desc.label, None, before)

    def _note_hwm(self, label: str, event: Any, rss_before: int) -> None:
        """A module call that raised the kernel's high-water mark: a transient peak (a large intermediate
        freed before the call returned) shows in no RSS reading, but here, with its module. Read before
        each event's first module call too (``OUTSIDE``): the source's chunk read raised it in a pull, and
        the next module call's end took it for its own (the shipped path's 'batcher', +10 MB on one event's
        jets). Not before every call: the framework's few bytes between two calls of one event are charged
        to the next call, which saves a getrusage (~2 µs) per module call."""
        hwm = _kernel_hwm()
        if hwm > self._hwm:
            self._hwm = hwm
            eid = None if event is None else event.id  # the id's list is made only when the mark rose
            self._hwm_by = {"label": label, "hwm": hwm, "rss_before": rss_before,
                            "event": None if eid is None else [eid.run, eid.luminosityBlock, eid.event]}

    def _post_begin_job(self, job: "JobContext") -> None:
        self._after_begin = self._read()

    def _pre_module(self, event: Any, desc: "ModuleDescription") -> None:
        self._before[event.stream] = reading = self._read()
        if event.stream in self._fresh:  # once per event: a getrusage around every call cost ~2 µs more each
            self._fresh.discard(event.stream)
            self._note_hwm(OUTSIDE, event, reading[1])

    def _post_source(self, stream: int, event_id: Any) -> None:
        if event_id is not None:
            self._fresh.add(stream)

    def _post_module(self, event: Any, desc: "ModuleDescription") -> None:
        vsize, rss = self._read()
        before = self._before.get(event.stream, (vsize, rss))
        if self.params.moduleMemorySummary:
            eid = event.id
            self._check.module_call(desc.label, (vsize - before[0]) / MB, (eid.run, eid.luminosityBlock, eid.event))
        if not self.params.per_module:
            return
        self._note_hwm(desc.label, event, before[1])
        delta = rss - before[1]
        i = desc.index
        self._calls[i] += 1
        self._call_sum[i] += delta
        if delta > self._call_max[i]:
            self._call_max[i] = delta

    def _post_event(self, event: Any, status: str) -> None:
        vsize, rss = self._read()
        n = self._events
        self._events = n + 1
        growth = rss - (self._after_begin[1] if self._last_rss is None else self._last_rss)
        self._last_rss = rss
        if rss > self._peak[0]:
            self._peak[0] = rss
        if vsize > self._peak[1]:
            self._peak[1] = vsize
        self._series.append((event.index, rss, next(_MEASURED)))
        eid = event.id
        self._check.post_event(vsize / MB, rss / MB, (eid.run, eid.luminosityBlock, eid.event))
        if growth > 0 and self.params.key_events:
            key = self._key
            if len(key) < self.params.key_events:
                heapq.heappush(key, (growth, -n, (event.id.run, event.id.luminosityBlock, event.id.event), rss))
            elif growth > key[0][0]:
                heapq.heapreplace(key, (growth, -n, (event.id.run, event.id.luminosityBlock, event.id.event), rss))

    def _post_end_job(self, summary: "JobSummary") -> None:
        self._check.end_job(*self._read())
        if self._tracker is not None:
            log.info("Memory: memray capture in %s (memray flamegraph %s)", self._memray_file, self._memray_file)

    def _allocations(self) -> dict[str, dict[str, int]] | None:
        """Per-module allocations read back from this job's memray capture, once it is closed."""
        if self._tracker is None or self._memray_file is None or not self._memray_file.exists():
            return None
        if self._attributed is None:
            from ..registry import module_class
            from .memray_attribution import attribute, module_frames, thread_owners

            owners = [(d.label, module_class(d.type)) for d in self._descs]
            try:
                stats = attribute(self._memray_file, module_frames(owners), thread_owners(owners))
            except Exception as exc:  # noqa: BLE001 - a capture still being written, or unreadable
                log.warning("Memory: cannot attribute the memray capture %s: %s", self._memray_file, exc)
                return None
            self._attributed = {label: s.to_dict() for label, s in stats.items()}
        return self._attributed

    # --------------------------------------------------------------------------- results

    def snapshot(self) -> MemoryData:
        """This unit's (or job's) measurements as ``MemoryData``: the thinned RSS series, exact peaks,
        the key events of the heap."""
        series = self._series.array()
        name = (self._job and self._job.worker) or self._worker
        key = sorted(self._key, key=lambda k: (-k[0], -k[1]))  # largest first, earlier event first
        worker = {"rss_start": self._start[1], "rss_after_begin": self._after_begin[1],
                  "rss_end": self._after_begin[1] if self._last_rss is None else self._last_rss,
                  "peak_rss": max(self._after_begin[1], self._peak[0]),
                  "peak_vsize": max(self._after_begin[0], self._peak[1]), "end_epoch": time.time(),
                  "kernel_max": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        return MemoryData(
            [(d.label, d.type, d.index) for d in self._descs], list(self._begin_delta), list(self._calls),
            list(self._call_sum), list(self._call_max), {name: worker}, {name: series},
            [(g, list(ev), r) for g, _, ev, r in key],
            self.params.key_events, self._max_rows, self.params.per_module,
            str(self._memray_file) if self._memray_file else None, self._events, self._series.stride,
            self._allocations(),
            {name: self._check.snapshot(*self._read())}, self.params.moduleMemorySummary,
            {name: dict(self._hwm_by)} if self._hwm_by else None)

    def reset(self) -> None:
        """Next work unit: per-event series, peaks, key events and per-call sums start again (peaks
        merge per worker as maxima)."""
        n = len(self._descs)
        self._call_sum, self._call_max, self._calls = [0] * n, [0] * n, [0] * n
        self._series = Thinned(3)
        self._events = 0
        self._peak = [0, 0]
        self._last_rss = None
        self._key = []
        self._after_begin = self._read()

    def load(self, data: MemoryData | None) -> None:
        self._data = data

    def results(self) -> dict[str, Any]:
        d = self._data if self._data is not None else self.snapshot()
        workers = sorted(d.workers.items())
        first = workers[0][1] if workers else {k: 0 for k in ("rss_start", "rss_after_begin", "rss_end", "peak_rss",
                                                              "peak_vsize", "kernel_max")}
        modules = []
        for label, type_, index in d.descs:
            calls = d.calls[index]
            modules.append({
                "label": label, "type": type_, "begin_job_rss_mb": d.begin_delta[index] / MB,
                "calls": calls, "mean_rss_growth_per_call_kb": (d.call_sum[index] / calls / 1024) if calls else 0.0,
                "max_rss_growth_per_call_kb": d.call_max[index] / 1024,
                "total_rss_growth_mb": d.call_sum[index] / MB,
            })
        return {
            "rss_start_mb": first["rss_start"] / MB, "rss_after_begin_job_mb": first["rss_after_begin"] / MB,
            "rss_end_mb": first["rss_end"] / MB,
            "peak_rss_mb": max(w["peak_rss"] for _, w in workers) / MB if workers else 0.0,
            "peak_vsize_mb": max(w["peak_vsize"] for _, w in workers) / MB if workers else 0.0,
            "max_rss_kernel_mb": max(w["kernel_max"] for _, w in workers) / MB if workers else 0.0,
            "kernel_high_water_mark_set_by": _hwm_setter(d.hwm_by),
            "key_events": [{"id": ids, "rss_growth_kb": g / 1024, "rss_mb": r / MB} for g, ids, r in d.key_events],
            "events": d.events, "rss_series_stride": d.stride,
            "modules": modules, "per_module": d.per_module, "memray_file": d.memray_file,
            "allocations": d.allocations,
            "cmssw": {name: to_dict(state) for name, state in sorted((d.cmssw or {}).items())},
            "leak": self._leak(d),
            "workers": [{"worker": name, "peak_rss_mb": w["peak_rss"] / MB, "peak_vsize_mb": w["peak_vsize"] / MB,
                         "rss_after_begin_job_mb": w["rss_after_begin"] / MB} for name, w in workers],
        }

    def _leak(self, d: MemoryData) -> dict[str, Any]:
        return check_workers({name: (rows[:, 2], rows[:, 1]) for name, rows in d.series.items()},
                             self.params.leak_warmup, self.params.leak_threshold_kb).to_dict()

    def module_allocations(self) -> dict[str, dict[str, int]] | None:
        """Bytes allocated and freed per module label from the memray capture (resources.json's
        mem_alloc / mem_free). Labels sharing a class are one owner in memray's stacks: the first label
        carries the group's figures, the others 0. Allocations outside modules go to ``other``."""
        from .memray_attribution import OUTSIDE

        d = self._data if self._data is not None else self.snapshot()
        if not d.allocations:
            return None
        out: dict[str, dict[str, int]] = {}
        for owner, a in d.allocations.items():
            labels = ["other"] if owner == OUTSIDE else owner.split("+")
            for i, label in enumerate(labels):
                out[label] = {"allocated": a["allocated"] if i == 0 else 0, "freed": a["freed"] if i == 0 else 0}
        return out

    def _samples(self) -> np.ndarray:
        """Every worker's (event index, RSS) samples, in the job's event order."""
        d = self._data if self._data is not None else self.snapshot()
        rows = np.concatenate([r[:, :2] for r in d.series.values()]) if d.series else np.zeros((0, 2), np.int64)
        return rows[np.argsort(rows[:, 0], kind="stable")]

    def rss_by_worker(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per worker process: its event indices in the job and its RSS after them (MiB), in event order."""
        d = self._data if self._data is not None else self.snapshot()
        out = {}
        for name, rows in sorted(d.series.items()):
            rows = rows[np.argsort(rows[:, 0], kind="stable")]
            out[name] = (rows[:, 0], rows[:, 1].astype(np.float64) / MB)
        return out

    def rss_per_event_mb(self) -> np.ndarray:
        """RSS after each event; past ROWS_KEPT events after every ``rss_series_stride``-th event."""
        return self._samples()[:, 1].astype(np.float64) / MB

    def rss_event_index(self) -> np.ndarray:
        return self._samples()[:, 0]

    def text_report(self, summary: "JobSummary") -> str:
        r = self.results()
        d = self._data if self._data is not None else self.snapshot()
        lines = self._cmssw_lines(d) + [
            "",
            "MemoryReport ---------- Memory  Summary ---[MiB]----",
            f"MemoryReport  peak virtual size {r['peak_vsize_mb']:.1f} MiB, peak RSS {r['peak_rss_mb']:.1f} MiB "
            f"(kernel high-water mark {r['max_rss_kernel_mb']:.1f} MiB)",
            *_hwm_lines(r["kernel_high_water_mark_set_by"]),
            f"MemoryReport  RSS at start {r['rss_start_mb']:.1f}, after begin_job {r['rss_after_begin_job_mb']:.1f}, "
            f"at the end {r['rss_end_mb']:.1f} MiB",
            f"MemoryReport  {describe(r['leak'])}",
        ]
        lines += device_memory_lines(device_memory(summary))
        if len(r["workers"]) > 1:
            for w in r["workers"]:
                lines.append(f"MemoryReport  worker {w['worker']}: peak RSS {w['peak_rss_mb']:.1f} MiB, "
                             f"after begin_job {w['rss_after_begin_job_mb']:.1f} MiB")
        for k in r["key_events"]:
            run, lumi, event = k["id"]
            lines.append(f"MemoryReport  key event increasing RSS: run {run}, lumi {lumi}, event {event}: "
                         f"+{k['rss_growth_kb']:.0f} kB -> {k['rss_mb']:.1f} MiB")
        lines += ["", "MemoryReport ---------- Module Summary ---[RSS growth]----",
                  "MemoryReport  begin_job MiB   calls  mean kB/call   max kB/call  total MiB  Name"]
        for m in r["modules"]:
            lines.append(f"MemoryReport  {m['begin_job_rss_mb']:>13.2f} {m['calls']:>7} {m['mean_rss_growth_per_call_kb']:>13.1f} "
                         f"{m['max_rss_growth_per_call_kb']:>13.1f} {m['total_rss_growth_mb']:>10.2f}  {m['label']}")
        if any(m["total_rss_growth_mb"] < 0 or m["mean_rss_growth_per_call_kb"] < 0 for m in r["modules"]):
            lines.append("MemoryReport  (a negative figure: RSS fell while the module ran, memory freed by anyone, e.g. "
                         "the garbage collector or a released chunk; RSS is process-wide, services.Memory.memray "
                         "gives each module's own allocations)")
        if summary.streams > 1 and self.params.per_module:
            lines.append("MemoryReport  (RSS is process-wide: with several streams per-module deltas include the other streams)")
        if r["memray_file"]:
            lines.append(f"MemoryReport  memray capture: {r['memray_file']}  (memray flamegraph / memray stats)")
        if r["allocations"]:
            lines += ["", "MemoryReport ---------- Module Allocations (memray) ---[MiB]----",
                      "MemoryReport       allocs   allocated       freed        peak    live end  Name"]
            for label, a in sorted(r["allocations"].items(), key=lambda kv: -kv[1]["allocated"]):
                lines.append(f"MemoryReport  {a['count']:>11} {a['allocated'] / MB:>11.2f} {a['freed'] / MB:>11.2f} "
                             f"{a['peak'] / MB:>11.2f} {a['live'] / MB:>11.2f}  {label}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _cmssw_lines(d: MemoryData) -> list[str]:
        """SimpleMemoryCheck's end-of-job messages first (MemoryReport>, then ModuleMemoryReport> when
        moduleMemorySummary is set), one block per worker process, as each cmsRun would print its own."""
        lines: list[str] = []
        states = sorted((d.cmssw or {}).items())
        for name, state in states:
            if len(states) > 1:
                lines.append(f"MemoryReport  worker {name}:")
            lines += report_lines(state)
            if d.module_summary:
                lines += module_report_lines(state)
        return lines

    def json_report(self, summary: "JobSummary") -> dict[str, Any]:
        device = device_memory(summary)
        return {**self.results(), "rss_per_event_mb": self.rss_per_event_mb().round(3).tolist(),
                **({"device_memory": device} if device else {})}

    def html_sections(self, summary: "JobSummary") -> list[tuple[str, str]]:
        from ..report.html import _figure, img, per_call, table

        r = self.results()
        rss = self.rss_per_event_mb()
        parts = [f"<p>Peak RSS <b>{r['peak_rss_mb']:.1f} MiB</b>, peak virtual size {r['peak_vsize_mb']:.1f} MiB; "
                 f"RSS after begin_job {r['rss_after_begin_job_mb']:.1f} MiB, at the end {r['rss_end_mb']:.1f} MiB.</p>"]
        if len(rss):
            fig = _figure(9.0, 3.5)
            ax = fig.subplots()
            by_worker = self.rss_by_worker()
            if len(by_worker) > 1:  # one line per worker process: their RSS levels differ, one line zigzagged
                for name, (index, worker_rss) in by_worker.items():
                    ax.plot(index, worker_rss, ".", ms=1.5, label=f"worker {name}" if len(by_worker) <= 8 else None)
            else:
                ax.plot(self.rss_event_index(), rss, lw=1)
            ax.axhline(r["rss_after_begin_job_mb"], color="grey", ls="--", lw=1, label="after begin_job")
            ax.set_xlabel("event number in the job")
            ax.set_ylabel("RSS [MiB]")
            ax.set_title("resident memory along the job")
            ax.legend(loc="lower right", markerscale=6)
            parts.append(img(fig, "RSS along the job"))
        leak = r["leak"]
        style = ' style="color:#b00"' if leak["flagged"] else ""
        parts.append(f"<p{style}>Leak check: {html.escape(describe(leak))}.</p>")
        parts.append(table(["module", "type", "begin_job MiB", "calls", "mean kB/call", "max kB/call"],
                           [[m["label"], m["type"], m["begin_job_rss_mb"], m["calls"],
                             *per_call(m["calls"], m["mean_rss_growth_per_call_kb"], m["max_rss_growth_per_call_kb"])]
                            for m in r["modules"]], left=2))
        device = device_memory(summary)
        if device:
            parts.append(table(["module", *(title + " MiB" for _, title in DEVICE_MEMORY_KEYS)],
                               [[label, *(m[k] / MB if k in m else None for k, _ in DEVICE_MEMORY_KEYS)]
                                for label, m in device.items()]))
        if r["memray_file"]:
            parts.append(f"<p>memray capture: <code>{html.escape(r['memray_file'])}</code></p>")
        if r["allocations"]:
            rows = sorted(r["allocations"].items(), key=lambda kv: -kv[1]["allocated"])
            parts.append("<p>Allocations per module from the memray capture (the innermost module method on each "
                         "allocation's stack; a free is charged to the owner of what it releases):</p>")
            parts.append(table(["owner", "allocations", "allocated MiB", "freed MiB", "peak MiB", "live at end MiB"],
                               [[label, a["count"], a["allocated"] / MB, a["freed"] / MB, a["peak"] / MB, a["live"] / MB]
                                for label, a in rows], left=1))
        return [("Memory", "\n".join(parts))]
