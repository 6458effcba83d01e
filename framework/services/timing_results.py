"""Turn the Timing service's raw nanosecond rows into the numbers every report shows.

One function, ``build_result``, produces the JSON-ready dictionary stored as ``services.Timing``
in hltrun.json (schema: docs/report-schema.md); the text, FastTimerService JSON and HTML reports are
all rendered from it, so they can never disagree.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Sequence

import boost_histogram as bh
import numpy as np

from ..binning import log_edges
from . import bounded

if TYPE_CHECKING:
    from ..summary import JobSummary

SCHEMA = "hltrun-timing/1"
_MS = 1e-6  # ns -> ms
_FIXED = 4


def _stats(a: np.ndarray) -> dict[str, float]:
    if len(a) == 0:
        return dict(mean=0.0, median=0.0, p90=0.0, p99=0.0, max=0.0, min=0.0, std=0.0)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return dict(mean=float(a.mean()), median=float(p50), p90=float(p90), p99=float(p99),
                max=float(a.max()), min=float(a.min()), std=float(a.std()))


def _histogram(values: np.ndarray, bins: int, at_least: float = 0.0) -> dict[str, Any]:
    """Exact values binned on ``log_edges`` (boost-histogram; the top edge lies above every value)."""
    edges = log_edges(values, bins, at_least)
    h = bh.Histogram(bh.axis.Variable(edges), storage=bh.storage.Int64())
    h.fill(values)
    flow = h.view(flow=True)
    return {"edges_ms": edges.tolist(), "counts": flow[1:-1].tolist(), "underflow": int(flow[0]),
            "overflow": int(flow[-1])}


class _Desc:
    __slots__ = ("label", "type", "kind", "index")

    def __init__(self, label: str, type_: str, kind: str, index: int) -> None:
        self.label, self.type, self.kind, self.index = label, type_, kind, index


def _closure(labels: Sequence[str], deps: dict[str, list[str]]) -> list[str]:
    """The labels and every module they consume from, transitively (what the path needs standalone)."""
    seen: list[str] = []
    todo = list(labels)
    while todo:
        label = todo.pop()
        if label in seen:
            continue
        seen.append(label)
        todo.extend(deps.get(label, []))
    return seen


class _Values:
    """Exact per-event values (ms)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def total(self) -> float:
        return float(self.values.sum())

    def pct(self, q: float) -> float:
        return float(np.percentile(self.values, q)) if len(self.values) else 0.0

    def max(self) -> float:
        return float(self.values.max()) if len(self.values) else 0.0

    def min(self) -> float:
        return float(self.values.min()) if len(self.values) else 0.0

    def above(self, x: float) -> int:
        return int((self.values > x).sum())

    def stats(self) -> dict[str, float]:
        return _stats(self.values)

    def histogram(self, bins: int, at_least: float = 0.0) -> dict[str, Any]:
        return _histogram(self.values, bins, at_least)


class _Binned:
    """One column of ``TimingHistograms`` (ns): exact count, sum, std, min, max; binned percentiles."""

    def __init__(self, h: Any, column: int) -> None:
        from .timing_data import EDGES_NS

        self.counts = h.counts[column]
        self.edges = EDGES_NS * _MS
        self.n, self.sum = h.count, h.total[column] * _MS
        self.sumsq = h.sumsq[column] * _MS * _MS
        self.lo, self.hi = h.mins[column] * _MS, h.maxs[column] * _MS

    def __len__(self) -> int:
        return self.n

    def total(self) -> float:
        return float(self.sum)

    def pct(self, q: float) -> float:
        if not self.n:
            return 0.0
        cum = np.cumsum(self.counts)
        target = q / 100 * self.n
        b = int(np.searchsorted(cum, target))
        b = min(b, len(self.counts) - 1)
        below = cum[b - 1] if b else 0
        frac = (target - below) / max(self.counts[b], 1)
        value = self.edges[b] * (self.edges[b + 1] / self.edges[b]) ** frac  # log-linear inside the bin
        return float(min(max(value, self.lo), self.hi))

    def max(self) -> float:
        return float(self.hi) if self.n else 0.0

    def min(self) -> float:
        return float(self.lo) if self.n else 0.0

    def above(self, x: float) -> int:
        return int(self.counts[self.edges[:-1] >= x].sum())  # bins starting at/above x (within one bin width)

    def stats(self) -> dict[str, float]:
        if not self.n:
            return _stats(np.empty(0))
        mean = self.sum / self.n
        std = float(np.sqrt(max(self.sumsq / self.n - mean * mean, 0.0)))
        return dict(mean=float(mean), median=self.pct(50), p90=self.pct(90), p99=self.pct(99), max=self.max(),
                    min=self.min(), std=std)

    def histogram(self, bins: int, at_least: float = 0.0) -> dict[str, Any]:
        """Regroup the fine bins into about ``bins`` bins over the filled range."""
        filled = np.flatnonzero(self.counts)
        if not len(filled):
            return {"edges_ms": [float(self.edges[0]), float(self.edges[1])], "counts": [0], "underflow": 0, "overflow": 0}
        top = max(int(filled[-1]) + 1, int(np.searchsorted(self.edges, at_least)) if at_least else 0)
        first = int(filled[0])
        top = min(max(top, first + 1), len(self.counts))
        step = max(1, -(-(top - first) // bins))
        cuts = list(range(first, top, step)) + [top]
        counts = [int(self.counts[a:b].sum()) for a, b in zip(cuts[:-1], cuts[1:])]
        return {"edges_ms": [float(self.edges[c]) for c in cuts], "counts": counts, "underflow": 0,
                "overflow": int(self.counts[top:].sum())}


def build_result(*, summary: "JobSummary", data: Any, params: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The Timing result from ``TimingData`` (per-event rows, or histograms for very large jobs)."""
    descs = [_Desc(*d) for d in data.descs]
    n = len(descs)
    events = data.events
    per = max(events, 1)
    budget = float(summary.budget_ms)
    rate = float(summary.input_rate_hz)
    bins = params.histogram_bins
    calls = [int(c) for c in data.calls]
    paths = [dict(name=name, endpath=name in data.endpath_names, runs=int(data.path_runs[j]),
                  real_ns=int(data.path_w[j]), module_real_ns=[int(v) for v in data.path_mod_w[j]])
             for j, name in enumerate(data.path_names)]
    path_labels = data.path_labels
    deps = {k: list(v) for k, v in data.deps.items()}
    for outer, inner in data.nested:  # undeclared on-demand gets
        deps.setdefault(descs[outer].label, []).append(descs[inner].label)
    loop_ns = (data.last_ns - data.first_ns) if data.first_ns is not None and data.last_ns and events else 0
    highlight = list(data.highlight)
    self_cost = data.self_cost
    if self_cost and events:
        # the calibration's per-event figure with one call of every module; this job's events called fewer where
        # a filter stopped a path or an output wrote only the accepted events (the shipped path: 3.1 calls per
        # event, not 4: 22.2 us per event was printed for 21.1 until 2026-12-07)
        per_event_calls = sum(calls[1:]) / events
        self_cost = {**self_cost, "module_calls_per_event": per_event_calls,
                     "per_event_with_modules_ns": self_cost["per_event_ns"]
                     + self_cost["per_module_call_ns"] * per_event_calls}
    rows = data.sorted_rows()
    if rows is not None:
        ev_w, ev_c = _Values(rows[:, 2] * _MS), _Values(rows[:, 3] * _MS)
        mod_w_ns = rows[:, _FIXED:_FIXED + n]
        mod_c_ns = rows[:, _FIXED + n:_FIXED + 2 * n]
        over_w = _Values((rows[:, 2] - mod_w_ns.sum(axis=1)) * _MS)
        over_c = _Values((rows[:, 3] - mod_c_ns.sum(axis=1)) * _MS)
        mod_w = [_Values(mod_w_ns[:, i] * _MS) for i in range(n)]
        mod_c = [_Values(mod_c_ns[:, i] * _MS) for i in range(n)]
    else:
        h = data.hist
        ev_w, ev_c, over_w, over_c = (_Binned(h, c) for c in range(4))
        mod_w = [_Binned(h, 4 + i) for i in range(n)]
        mod_c = [_Binned(h, 4 + n + i) for i in range(n)]
    tot_w = [m.total() for m in mod_w]  # per module, whole job
    tot_c = [m.total() for m in mod_c]
    ev_mean = ev_w.total() / events if events else 0.0
    loop_ms = loop_ns * _MS
    # the source's bulk I/O, out of the per-event times, paid here spread over the events as an HLT
    # source that prefetches would pay it
    in_loop_bulk = data.bulk_real_ns * _MS
    # the file check's read kept for the loop covers whole files: a short job (-n 200 of a 2500-entry file
    # in one basket) charges its events only the share of it the loop went through, as an HLT source that
    # reads what it uses would pay (all of it was 1.8 ms per event against 0.3 ms of processing)
    kept = _kept_read(summary.source or {})
    begin_bulk_paid = data.bulk_begin_real_ns * _MS
    begin_bulk, begin_bulk_cpu = begin_bulk_paid * kept["used_share"], data.bulk_begin_cpu_ns * _MS * kept["used_share"]
    bulk_real, bulk_cpu = in_loop_bulk + begin_bulk, data.bulk_cpu_ns * _MS + begin_bulk_cpu
    bulk_pe = bulk_real / per

    visits: dict[str, int] = {}
    for table in (summary.paths, summary.endpaths):
        for name, counters in table.items():
            for label, mc in zip(path_labels.get(name, []), counters.modules):
                visits[label] = visits.get(label, 0) + mc.visited
    hl = set(highlight)

    def module_entry(i: int) -> dict[str, Any]:
        d = descs[i]
        col = mod_w[i]
        real_pe = float(tot_w[i]) / per
        v = visits.get(d.label, calls[i]) if i else events
        ran = summary.modules.get(d.label) if i else None  # the TrigReport's Executed: CMSSW's timesRun
        return {
            "label": d.label, "type": d.type, "kind": d.kind, "index": d.index,
            "calls": calls[i] if i else events, "visits": v,
            "runs": ran.executed if ran is not None else (calls[i] if i else events),
            "real_ms": float(tot_w[i]), "cpu_ms": float(tot_c[i]),
            "real_per_event_ms": real_pe, "cpu_per_event_ms": float(tot_c[i]) / per,
            "real_per_call_ms": float(tot_w[i]) / max(calls[i] if i else events, 1),
            "real_per_visit_ms": float(tot_w[i]) / max(v, 1),
            "real_p99_ms": col.pct(99) if events else 0.0,
            "real_max_ms": col.max() if events else 0.0,
            "share_of_event": real_pe / ev_mean if ev_mean else 0.0,
            "share_of_budget": real_pe / budget,
            "cores": rate * real_pe * 1e-3,
            "highlight": d.label in hl,
        }

    source = module_entry(0)
    modules = [module_entry(i) for i in range(1, n)]
    by_label = {m["label"]: m for m in modules}
    over_mean = over_w.total() / events if events else 0.0
    overhead = {"real_ms": over_w.total(), "cpu_ms": over_c.total(),
                "real_per_event_ms": over_mean, "cpu_per_event_ms": over_c.total() / per,
                "share_of_event": over_mean / ev_mean if ev_mean else 0.0,
                "share_of_budget": over_mean / budget, "min_real_ms": over_w.min() if events else 0.0}

    path_entries = []
    for p in paths:
        labels = path_labels.get(p["name"], [])
        counters = (summary.endpaths if p["endpath"] else summary.paths).get(p["name"])
        vis = [mc.visited for mc in counters.modules] if counters else [0] * len(labels)
        index = {d.label: d.index for d in descs}
        mods = [{"label": label, "visits": v, "real_ms": p["module_real_ns"][index[label]] * _MS,
                 "real_per_event_ms": p["module_real_ns"][index[label]] * _MS / per,
                 "real_per_visit_ms": p["module_real_ns"][index[label]] * _MS / max(v, 1)}
                for label, v in zip(labels, vis)]
        standalone = sum(by_label[label]["real_per_event_ms"] for label in _closure(labels, deps) if label in by_label)
        real_pe = p["real_ns"] * _MS / per
        path_entries.append({
            "name": p["name"], "endpath": p["endpath"], "runs": p["runs"],
            "real_ms": p["real_ns"] * _MS,
            "real_per_event_ms": real_pe, "real_per_exec_ms": p["real_ns"] * _MS / max(p["runs"], 1),
            "standalone_real_per_event_ms": standalone,
            "cores": rate * real_pe * 1e-3, "standalone_cores": rate * standalone * 1e-3,
            "modules": mods,
        })

    hl_real = sum(by_label[label]["real_per_event_ms"] for label in highlight if label in by_label)
    hl_cpu = sum(by_label[label]["cpu_per_event_ms"] for label in highlight if label in by_label)
    ev_stats = ev_w.stats()
    # exact: counted from the rows before they were folded into histograms (a bin edge is no cut)
    over_budget = ev_w.above(budget) if rows is not None or data.over_budget is None else int(data.over_budget)
    throughput = events / (loop_ms * 1e-3) if loop_ms > 0 else 0.0
    trans_cpu = data.transition_cpu_ns * _MS
    # the event loop's CPU: its bulk I/O and its run/lumi transitions included (no event's, all the loop's)
    cpu_loop = ev_c.total() + data.bulk_cpu_ns * _MS + trans_cpu
    # CPU the source spent off the pulling threads (decompression pool, read-ahead thread)
    background_cpu = (sum(int((summary.source or {}).get(k, 0)) for k in ("decompression_cpu_ns", "read_ahead_cpu_ns"))
                      - kept["unused_background_cpu_ns"]) * 1e-6
    other_cpu = _unattributed_cpu(data, summary, cpu_loop)
    # the farm pays every CPU second: the reads begin_job did for the loop, the background threads' and
    # the unattributed (modules' thread pools, the framework between events); not the run/lumi
    # transitions, once per lumi section (of ~23 s) however many events it holds: a short job would
    # charge each event a large share (as it charges no event's real time)
    cpu_total = cpu_loop - trans_cpu + begin_bulk_cpu + background_cpu + (other_cpu or 0.0)
    streams = summary.streams
    side_by_side = _concurrent_streams(summary)  # on Dask: the streams of every worker thread, not one's
    loaded = _throughput_projection(summary, throughput, rate)

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "units": {"time": "ms", "rate": "Hz"},
        "events": events,
        "streams": streams,
        "streams_side_by_side": side_by_side,  # on Dask: every worker thread's streams (``streams`` is one's)
        "clocks": {
            "real": "time.perf_counter_ns", "cpu": "time.thread_time_ns",
            "real_resolution_ns": time.get_clock_info("perf_counter").resolution * 1e9,
            "cpu_resolution_ns": time.get_clock_info("thread_time").resolution * 1e9,
        },
        "self_cost": self_cost,
        "loop": {
            "real_ms": loop_ms, "throughput_hz": throughput,
            "cpu_per_event_ms": cpu_loop / per,  # CMSSW "event loop CPU/event"
            "real_per_event_ms": loop_ms / per,  # CMSSW "event loop Real/event"
            "sum_streams_real_per_event_ms": ev_w.total() / per,
            "efficiency_cpu_real_per_thread": cpu_loop / (loop_ms * side_by_side) if loop_ms > 0 else 0.0,
            "source_bulk_real_ms": in_loop_bulk,
            # >= 0: every pull and event lies inside the loop, on one of the streams that ran side by side
            # (on Dask all workers' threads); the clamp only guards against clock rounding. The run/lumi
            # transitions (not in any event) are part of it: ``transitions`` shows them
            "idle_real_ms": max(loop_ms * side_by_side - ev_w.total() - in_loop_bulk, 0.0),
            # the process's CPU during the loop on no event's, bulk I/O's or transition's clock, and not the
            # source's background threads': modules' thread pools (BLAS, intra-op threads), which no
            # module's CPU time holds, and the framework between events (None: not measured, on Dask)
            "unattributed_cpu_ms": other_cpu,
            "unattributed_cpu_per_event_ms": None if other_cpu is None else other_cpu / per,
        },
        "source_bulk": {
            "what": "file open, chunk read and conversion (not in the per-event times)",
            "real_ms": bulk_real, "cpu_ms": bulk_cpu, "pulls": int(data.bulk_pulls),
            # read by the file check at begin_job and kept for the loop (not in loop.real_ms): the share of
            # it charged to the events (that of the kept entries the loop went through), and all it cost
            "at_begin_job_real_ms": begin_bulk,
            "at_begin_job_paid_real_ms": begin_bulk_paid,
            "at_begin_job_entries": {"kept": kept["entries"], "used": kept["used"]},
            "real_per_event_ms": bulk_pe, "cpu_per_event_ms": bulk_cpu / per,
            # CPU the source spent off the pulling threads (decompression pool, read-ahead thread)
            "background_cpu_ms": background_cpu,
            "share_of_budget": bulk_pe / budget, "cores": rate * bulk_pe * 1e-3,
        },
        "transitions": {
            "what": "run and lumi transitions done before an event's processing, after it was read (not in "
                    "the per-event times): the pulling stream's wait for the events in flight, the "
                    "begin/end run and lumi hooks",
            "count": int(data.transitions),
            "wait_real_ms": data.transition_wait_ns * _MS,
            "hooks_real_ms": data.transition_real_ns * _MS,
            "cpu_ms": trans_cpu,
            "real_per_event_ms": (data.transition_wait_ns + data.transition_real_ns) * _MS / per,
        },
        "event": {"real": ev_stats, "cpu": ev_c.stats()},
        # what percentiles, histograms and per-event data come from: every event's row, or the fixed
        # log histograms (past bounded.ROWS_KEPT rows in a stream or max_timing_rows in a merged job)
        "rows": {"kept": int(len(rows)) if rows is not None else 0, "histogram": rows is None,
                 "per_stream": min(bounded.ROWS_KEPT, data.max_rows)},  # a stream's bound (report.html says it)
        "source": source,
        "overhead": overhead,
        "modules": modules,
        "paths": path_entries,
        "budget": {
            "budget_ms": budget,
            "real": ev_stats,
            "over_budget_events": over_budget,
            "over_budget_fraction": over_budget / per,
            # None with no event: begin_job's read over "1 event" is no event's cost (as fits, below)
            "source_bulk_per_event_ms": bulk_pe if events else None,
            "mean_share_of_budget": (ev_stats["mean"] + bulk_pe) / budget if events else None,  # with the bulk I/O
            # None: no event was timed, so there is no mean to hold against the budget (not "fits")
            "fits": ev_stats["mean"] + bulk_pe <= budget if events else None,
            "throughput_hz": throughput,
        },
        "farm": {
            "input_rate_hz": rate,
            "throughput": loaded,
            # with the source's bulk I/O, amortised; None with no event: no time per event to project (54,835
            # cores at 100 kHz from begin_job's 548 ms read over "1 event" was a made-up figure)
            "real_per_event_ms": ev_mean + bulk_pe if events else None,
            "cpu_per_event_ms": cpu_total / per if events else None,
            "cores_real": rate * (ev_mean + bulk_pe) * 1e-3 if events else None,
            "cores_cpu": rate * cpu_total / per * 1e-3 if events else None,
            "highlight": {
                "labels": list(highlight),
                "real_per_event_ms": hl_real, "cpu_per_event_ms": hl_cpu,
                "cores": rate * hl_real * 1e-3,
                "share_of_event": hl_real / ev_mean if ev_mean else 0.0,
                "share_of_budget": hl_real / budget,
            },
        },
        "histograms": {
            "event_real": ev_w.histogram(bins, budget),
            "event_cpu": ev_c.histogram(bins, budget),
            "overhead_real": over_w.histogram(bins),
            "modules_real": {descs[i].label: mod_w[i].histogram(bins) for i in range(n)},
        },
        "per_event": None,
        "per_event_kept": rows is not None,  # False: the job was too large, histograms only
    }
    if params.per_event_json and rows is not None:
        result["per_event"] = {
            "index": rows[:, 0].tolist(), "stream": rows[:, 1].tolist(),
            "real_ms": ev_w.values.tolist(), "cpu_ms": ev_c.values.tolist(),
            "overhead_real_ms": over_w.values.tolist(),
            "modules_real_ms": {descs[i].label: mod_w[i].values.tolist() for i in range(n)},
        }
    batching = _batching(summary, by_label)
    if batching:
        result["batching"] = batching
    split = device_split(summary, by_label)
    if split:
        result["device_split"] = split
    if self_cost:
        cost = self_cost["per_event_with_modules_ns"] * _MS
        result["self_cost"] = {**self_cost, "share_of_event": cost / ev_mean if ev_mean else 0.0}
    if rows is None:
        empty = np.empty(0)
        arrays = {"index": empty, "stream": empty, "real_ms": empty, "cpu_ms": empty, "overhead_real_ms": empty,
                  "modules_real_ms": np.empty((0, n))}
    else:
        arrays = {"index": rows[:, 0], "stream": rows[:, 1], "real_ms": ev_w.values, "cpu_ms": ev_c.values,
                  "overhead_real_ms": over_w.values, "modules_real_ms": np.column_stack([m.values for m in mod_w])
                  if n else np.empty((len(rows), 0))}
    return result, arrays


def _batching(summary: "JobSummary", by_label: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Modules that batch across events (a scorer's ``batching``, whose summary holds counters that add
    up over streams, units and workers): their wait per event split into queue and inference time,
    beside the module's own real time per event (which includes the wait)."""
    out = {}
    for label, info in summary.module_summaries.items():
        b = info.get("batching") if isinstance(info, dict) else None
        if not isinstance(b, dict) or label not in by_label:
            continue
        events, batches = max(b["events"], 1), max(b["batches"], 1)
        calls = {int(k): int(v) for k, v in b["jets_per_call"].items()}
        out[label] = {
            "settings": b["settings"], "batches": b["batches"], "events": b["events"], "jets": b["jets"],
            "failed_batches": b["failed_batches"], "sent": dict(b["sent"]),
            "events_per_batch": b["events"] / batches, "jets_per_batch": b["jets"] / batches,
            "largest_batch_jets": max(calls, default=0), "backend_ms_per_batch": b["backend_ns"] * _MS / batches,
            "queue_ms": _wait(b["queue_ns"], b["queue_hist_ns"], events),
            "inference_ms": _wait(b["inference_ns"], b["inference_hist_ns"], events),
            "module_real_per_event_ms": by_label[label]["real_per_event_ms"],
        }
    return out


# an inference backend's counters of its device calls (modules/inference: jax, tensorrt), integers that
# add up over streams; every device backend (jax, torch, tensorrt) keeps these names
_PHASES = {"h2d": ("h2d_us",), "compute": ("compute_us",), "d2h": ("d2h_us",)}
_DEVICE_CALLS = ("chunks",)  # one H2D copy, one launch, the D2H copies: one device call


def _counter(info: dict[str, Any], names: Sequence[str]) -> int | None:
    """The first of ``names`` the module's summary carries (an integer counter), else None."""
    return next((int(info[n]) for n in names if isinstance(info.get(n), int)), None)


def device_split(summary: "JobSummary", by_label: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Modules whose inference backend timed its device calls (H2D copy, compute, D2H copy): the three
    per device call (a chunk of at most max_batch jets: what one copy and one launch cost) and per event
    the module ran on (what the event pays), the copies' share of the device time, bytes per call and the
    padding jets' share of the rows sent. Computed once here; TimeReport, JSON and HTML render it."""
    out = {}
    for label, info in summary.module_summaries.items():
        if not isinstance(info, dict) or label not in by_label:
            continue
        us = {phase: _counter(info, names) for phase, names in _PHASES.items()}
        if all(v is None for v in us.values()):
            continue
        us = {phase: v or 0 for phase, v in us.items()}
        calls, events = _counter(info, _DEVICE_CALLS) or 0, by_label[label]["calls"]
        device_us = sum(us.values())
        padded, jets = _counter(info, ("padded_jets",)), int(info.get("jets", 0))
        out[label] = {
            "device_calls": calls, "events": events,
            "total_ms": {phase: v * 1e-3 for phase, v in us.items()},
            "per_call_ms": {phase: v * 1e-3 / max(calls, 1) for phase, v in us.items()},
            "per_event_ms": {phase: v * 1e-3 / max(events, 1) for phase, v in us.items()},
            "calls_per_event": calls / max(events, 1), "device_per_event_ms": device_us * 1e-3 / max(events, 1),
            "copies_share": (us["h2d"] + us["d2h"]) / device_us if device_us else 0.0,
            "h2d_bytes_per_call": int(info.get("h2d_bytes", 0)) / max(calls, 1),
            "d2h_bytes_per_call": int(info.get("d2h_bytes", 0)) / max(calls, 1),
            # None: the backend keeps no padding count (TensorRT runs each batch at its own size)
            "padded_jets_share": padded / (padded + jets) if padded is not None and padded + jets else None,
            # begin_job's compilation / capture and first runs of every batch bucket: never an event's
            "warm_up_s": _warm_up_s(info),
        }
    return out


def _warm_up_s(info: dict[str, Any]) -> float | None:
    """The backend's warm-up (``describe()['warm_up_s']``) where it keeps one, else None."""
    value = (info.get("backend") or {}).get("warm_up_s") if isinstance(info.get("backend"), dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _wait(total_ns: int, hist_ns: dict[str, int], events: int) -> dict[str, float]:
    """Mean (exact) and p50 / p99 / max (from log bins keyed by their centre, within ~2 %) in ms."""
    values = np.array(sorted(int(k) for k in hist_ns), np.float64)
    counts = np.array([hist_ns[str(int(v))] for v in values], np.float64)
    if not len(values):
        return {"per_event": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    cum = np.cumsum(counts) / counts.sum()

    def q(x: float) -> float:
        return float(values[min(int(np.searchsorted(cum, x)), len(values) - 1)] * _MS)

    return {"per_event": total_ns * _MS / events, "p50": q(0.5), "p99": q(0.99), "max": float(values[-1] * _MS)}


def _kept_read(source: dict[str, Any]) -> dict[str, Any]:
    """The file check's whole-file read kept for the loop: its entries, those the loop went through, the
    share of its cost charged to the events (1 for a source that keeps nothing) and the decompression
    threads' CPU of the share not charged."""
    entries, used = int(source.get("kept_entries", 0)), int(source.get("kept_entries_used", 0))
    share = min(1.0, used / entries) if entries else 1.0
    unused_cpu = int(source.get("kept_decompression_cpu_ns", 0)) * (1.0 - share)
    return {"entries": entries, "used": used, "used_share": share, "unused_background_cpu_ns": unused_cpu}


def _unattributed_cpu(data: Any, summary: "JobSummary", cpu_loop_ms: float) -> float | None:
    """The process's CPU over the loop that the stream threads' clocks (events, bulk I/O, transitions)
    and the source's background threads did not count, in ms: thread pools a module runs (BLAS, an
    engine's intra-op threads), whose CPU no module's time holds, and the framework between events
    (tens of µs per event). The source's background CPU counts its begin_job head and tail reads too;
    all of it is taken off, so this errs low, never high. None if not measured."""
    if data.process_cpu_ns is None:
        return None
    source = summary.source or {}
    background_loop_ns = sum(int(source.get(k, 0)) for k in ("decompression_cpu_ns", "read_ahead_cpu_ns")) \
        - int(source.get("kept_decompression_cpu_ns", 0))  # the file check's whole-file read: begin_job's
    return max(data.process_cpu_ns * _MS - cpu_loop_ms - max(background_loop_ns, 0) * _MS, 0.0)


def _dask_threads(summary: "JobSummary") -> int:
    """Threads of all Dask workers together (0 for a job run in this process)."""
    executor = summary.executor or {}
    return sum((executor.get("threads") or {}).values()) if executor.get("type") == "dask" else 0


def _busy_dask_threads(summary: "JobSummary") -> int:
    """Threads of the Dask workers that ran work units (the throughput's cores). A worker that got no unit
    (fewer units than workers) made none of the events/s: counting its threads halved the events/s per
    core and doubled the farm's cores (1 unit on ``--dask 2``). It still counts as idle streams."""
    threads = (summary.executor or {}).get("threads") or {}
    return sum(n for name, n in threads.items() if name in summary.workers) or _dask_threads(summary)


def _concurrent_streams(summary: "JobSummary") -> int:
    """Streams that ran side by side over the loop, for the efficiency per thread and the idle time:
    this process's, or on Dask every worker thread's Process's (``summary.streams`` is one Process's)."""
    return (_dask_threads(summary) or 1) * summary.streams


def _throughput_projection(summary: "JobSummary", throughput_hz: float, rate_hz: float) -> dict[str, Any]:
    """Cores at the input rate from the measured throughput, as CMS sizes its HLT farm (the
    ThroughputService way: events/s of a fully loaded machine, divided by its cores).

    The cores this job used: its streams on this machine (capped by the machine's cores), or, on Dask,
    the workers' threads. ``fully_loaded`` is False when fewer streams than cores ran: then the figure
    is a per-stream rate, not a loaded machine's, and the report says so."""
    machine = os.cpu_count() or 1
    if _dask_threads(summary):
        cores, loaded = float(_busy_dask_threads(summary)), True
    else:
        cores, loaded = float(min(summary.streams, machine)), summary.streams >= machine
    per_core = throughput_hz / cores if cores else 0.0
    return {"events_per_s": throughput_hz, "cores_used": cores, "machine_cores": machine,
            "events_per_s_per_core": per_core, "fully_loaded": loaded,
            "cores": rate_hz / per_core if per_core > 0 else None}
