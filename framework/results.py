"""What a job measured, as plain data that merges associatively (``a.merge(b).merge(c) ==
a.merge(b.merge(c))``): one stream, N streams and N Dask work units all produce the same kind of
result, and one renderer (``framework/report``) turns the merged result into every report.

Merge rules for ``JobSummary`` are by field policy, so a new counter slots in as a plain field:
numbers are summed, dicts merge key by key with the same rule, lists concatenate, counters with an
``add`` method add up; only the fields named below are taken from the first result or as a max/min.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from .provenance import merge_variants
from .summary import JobSummary

# facts: the job's (cuts, engines, auto's table), the same in each unit of a worker: summed, a threshold grew
_FIRST = {"process", "streams", "budget_ms", "input_rate_hz", "path_entries", "module_types", "executor", "failure",
          "facts"}
_MAX = {"wall_s", "loop_s", "begin_job_s"}
_MIN = {"time_to_first_event_s"}
_VARIANTS = {"fact_variants"}  # units' facts: grouped by what decides (provenance.merge_variants)
_UNION = {"bad_files"}  # every unit of a worker reports the same skipped files: list each once
_COUNTERS = {"module_summaries"}  # modules' summary(): integer counters add, settings stay (merge_counters)
# Dicts of levels and peaks, not counts: a backend's ``device_memory`` (bytes in use, peaks, limit) is the
# device allocator's figure for the whole process, which every stream's backend on that device reads
# again; summing (or differencing, per Dask unit) them would count one allocator several times, so they
# merge by the largest value of each key (over streams, units and workers).
GAUGES = frozenset({"device_memory"})
# A module's description of what it runs (a scorer's ``backend``: the engine's describe(), with its threads,
# TensorRT's profile, a CUDA stream's id): the same in every stream, unit and worker, so its numbers are no
# counters (two Dask workers' ``threads: 1`` added up to 2): kept as given, only the GAUGES inside merge by max.
SETTINGS = frozenset({"backend"})
# Times inside a SETTINGS dict that differ by stream: a backend's ``warm_up_s`` (begin_job's compile or capture of
# every bucket). JAX compiles once per process, so its first stream's took 5.9 s and the next ones' 0.1 s (they
# load what the first compiled): the latest stream's figure hid the compile. Merged by the largest, as GAUGES.
PEAKS = frozenset({"warm_up_s"})
# Counts per lumi section, keyed "run:lumi" (an output's ``lumis_written``): merged in lumi order, not in the order
# Dask units finished (or a worker's cumulative dict first saw them), so that the same events give the same
# hltrun.json, as a local run's (its events come in input order) and the -j report's (sorted) do.
LUMI_KEYED = frozenset({"lumis_written"})


class Mergeable(Protocol):
    def merge(self, other: Any) -> Any: ...


def merge_values(a: Any, b: Any) -> Any:
    """Sum numbers, merge dicts key by key, concatenate lists, ``add`` counters; else keep ``a``."""
    if a is None:
        return copy.deepcopy(b)
    if b is None:
        return a
    if isinstance(a, bool) or isinstance(b, bool):
        return a or b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = merge_values(out.get(key), value)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if hasattr(a, "add"):
        out = copy.deepcopy(a)
        out.add(b)
        return out
    if hasattr(a, "merge"):
        return a.merge(b)
    return a


def merge_gauges(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Two readings of one ``GAUGES`` dict: the largest value of each key (see ``GAUGES``)."""
    out = dict(a or {})
    for key, value in (b or {}).items():
        mine = out.get(key)
        out[key] = value if mine is None else max(mine, value)
    return out


def merge_counters(a: Any, b: Any) -> Any:
    """A module's ``summary()`` of two units: integers add (counters), dicts merge key by key, any
    other value (a threshold, a list of bin edges, a backend's name) is a setting and stays as the
    first unit gave it — as the per-stream instances are combined in one process (eventloop);
    ``GAUGES`` dicts keep their largest values; ``SETTINGS`` dicts are settings, numbers included."""
    if a is None:
        return _lumis_in_order(copy.deepcopy(b), deep=True)
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            mine = out.get(key)
            if key in GAUGES:
                out[key] = merge_gauges(mine, value)
            elif key in SETTINGS:  # the first unit's, as a local job's streams keep one (add_stream_summary)
                out[key] = _latest_with_gauges(value, mine)
            else:
                out[key] = merge_counters(mine, value)
        return _lumis_in_order(out)
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        return a + b
    return a


def _lumis_in_order(summary: Any, deep: bool = False) -> Any:
    """``summary`` with its ``LUMI_KEYED`` dicts in lumi order (a worker's cumulative dict, differenced per unit,
    lists its lumis in the order that worker first saw them, the first unit's result included); ``deep``: in
    the dicts inside it too (a first unit's summaries, copied whole)."""
    if not isinstance(summary, dict):
        return summary
    for key in LUMI_KEYED & summary.keys():
        summary[key] = _in_lumi_order(summary[key])
    if deep:
        for key, value in summary.items():
            if key not in LUMI_KEYED and isinstance(value, dict):
                _lumis_in_order(value, deep)
    return summary


def _in_lumi_order(counts: Any) -> Any:
    """A dict keyed "run:lumi" sorted by (run, lumi) as numbers (1:10 after 1:9); anything else as it is."""
    if not isinstance(counts, dict):
        return counts
    try:
        return dict(sorted(counts.items(), key=lambda item: tuple(int(x) for x in item[0].split(":"))))
    except (AttributeError, ValueError):  # not "run:lumi" keys: no lumi order to give
        return counts


def add_stream_summary(merged: dict[str, Any], own: dict[str, Any]) -> None:
    """One stream instance's ``summary()`` into ``merged`` (the module's, over the process's streams):
    top-level integers add up, any other value is a setting and the latest stream's stays, except
    that ``GAUGES`` dicts inside it keep the largest value any stream read, and a None (a setting a stream
    had not learnt: a filter that takes its cut from the first scores and saw no event) does not replace
    a known one, as ``merge_counters`` keeps the first unit's known setting."""
    for key, value in own.items():
        mine = merged.get(key)
        if mine is not None and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = mine + value
        else:
            merged[key] = _latest_with_gauges(mine, value)


def _latest_with_gauges(old: Any, new: Any) -> Any:
    """``new`` (the latest stream's setting), with each ``GAUGES`` dict in it merged with ``old``'s and each
    ``PEAKS`` figure the larger of the two; ``old`` where ``new`` is None."""
    if new is None:
        return old
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    return {key: _merged_setting(key, old.get(key), value) for key, value in new.items()}


def _merged_setting(key: str, old: Any, new: Any) -> Any:
    """One key of two readings of a ``SETTINGS`` dict: GAUGES by max per key, PEAKS the larger, else ``new``."""
    if key in GAUGES:
        return merge_gauges(old, new)
    if key in PEAKS:
        return _largest(old, new)
    return _latest_with_gauges(old, new)


def _largest(old: Any, new: Any) -> Any:
    """One ``PEAKS`` figure of two streams or units: the larger number (a None or non-number one gives way)."""
    numbers = [v for v in (old, new) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(numbers) if numbers else new


def merge_summaries(a: JobSummary, b: JobSummary) -> JobSummary:
    """A new summary counting both jobs' events (inputs are left unchanged)."""
    out = copy.deepcopy(a)
    for f in dataclasses.fields(JobSummary):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in _FIRST:
            value = x if x not in (None, {}, []) else y
        elif f.name in _MAX:
            value = max(x or 0.0, y or 0.0)
        elif f.name in _VARIANTS:
            value = merge_variants(x or [], y or [])
        elif f.name in _UNION:
            value = list(x or []) + [v for v in (y or []) if v not in (x or [])]
        elif f.name in _MIN:
            value = min(v for v in (x, y) if v is not None) if (x is not None or y is not None) else None
        elif f.name in _COUNTERS:
            value = merge_counters(x, y)
        else:
            value = merge_values(x, y)
        setattr(out, f.name, copy.deepcopy(value))
    return out


@dataclass
class JobResult:
    """One unit's (or a whole job's) result: counters, the services' measurements, output parts."""

    summary: JobSummary
    services: dict[str, Any] = field(default_factory=dict)  # service name -> its mergeable data
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"module", "target", "part", "unit", "events"}
    first_event_epoch: float | None = None  # time.time() of the first event read, last event done
    last_event_epoch: float | None = None

    def merge(self, other: "JobResult") -> "JobResult":
        services = dict(self.services)
        for name, data in other.services.items():
            mine = services.get(name)
            services[name] = data if mine is None else (mine.merge(data) if data is not None else mine)
        firsts = [t for t in (self.first_event_epoch, other.first_event_epoch) if t is not None]
        lasts = [t for t in (self.last_event_epoch, other.last_event_epoch) if t is not None]
        return JobResult(merge_summaries(self.summary, other.summary), services,
                         sorted(self.parts + other.parts, key=lambda p: (p["module"], p["unit"])),
                         min(firsts) if firsts else None, max(lasts) if lasts else None)


class Merger:
    """Merges results as they arrive, in a binary-counter tree: at most log2(n) partial results are
    held, each bounded by the services' own limits, so the client never keeps every unit's rows."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, JobResult]] = []  # (level, result); a level-k result merged 2**k units
        self.count = 0

    def add(self, result: JobResult) -> None:
        level = 0
        while self._stack and self._stack[-1][0] == level:
            _, older = self._stack.pop()
            result = older.merge(result)
            level += 1
        self._stack.append((level, result))
        self.count += 1

    def result(self) -> JobResult:
        if not self._stack:
            raise ValueError("nothing to merge")
        out = self._stack[0][1]
        for _, r in self._stack[1:]:
            out = out.merge(r)
        return out


def merge_all(results: "Iterable[JobResult]") -> JobResult:
    """Merge any number of results (see ``Merger``)."""
    merger = Merger()
    for r in results:
        merger.add(r)
    return merger.result()
