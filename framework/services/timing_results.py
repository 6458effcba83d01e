"""Turn the Timing service's raw nanosecond rows into the numbers every report shows.

One function, ``build_result``, produces the JSON-ready dictionary stored as ``services.Timing``
in hltrun.json (schema: docs/report-schema.md); the text, FastTimerService JSON and HTML reports are
all rendered from it, so they can never disagree.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..signals import ModuleDescription
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


def log_edges(values: np.ndarray, bins: int, at_least: float = 0.0) -> np.ndarray:
    """Logarithmic bin edges (ms) covering ``values`` and ``at_least`` (e.g. the budget)."""
    positive = values[values > 0]
    lo = max(float(positive.min()) * 0.9, 1e-4) if len(positive) else 1e-4
    hi = max(float(values.max()) if len(values) else 0.0, at_least, lo * 10) * 1.1
    return np.geomspace(lo, hi, bins + 1)


def _histogram(values: np.ndarray, bins: int, at_least: float = 0.0) -> dict[str, Any]:
    edges = log_edges(values, bins, at_least)
    counts, _ = np.histogram(values, bins=edges)
    return {"edges_ms": edges.tolist(), "counts": counts.tolist(),
            "underflow": int((values < edges[0]).sum()), "overflow": int((values > edges[-1]).sum())}


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


def build_result(*, summary: "JobSummary", descs: Sequence["ModuleDescription"], rows: np.ndarray,
                 calls: list[int], paths: list[dict[str, Any]], path_labels: dict[str, list[str]],
                 deps: dict[str, list[str]], loop_ns: int, highlight: list[str], params: Any,
                 self_cost: dict[str, float] | None, totals: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``rows`` may be a sample of the events (past ``bounded.ROWS_KEPT``); ``totals`` then carries
    the exact count, column sums and maxima and over-budget count of all events, which every total,
    mean and maximum is taken from. Percentiles and histograms come from the rows."""
    n = len(descs)
    if totals is None:
        totals = {"count": len(rows), "sums": rows.sum(axis=0),
                  "maxs": rows.max(axis=0) if len(rows) else np.zeros(rows.shape[1], np.int64),
                  "over_budget": None}
    events = int(totals["count"])
    per = max(events, 1)
    sums, maxs = np.asarray(totals["sums"], np.int64), np.asarray(totals["maxs"], np.int64)
    budget = float(summary.budget_ms)
    rate = float(summary.input_rate_hz)
    bins = params.histogram_bins

    ev_w = rows[:, 2] * _MS
    ev_c = rows[:, 3] * _MS
    mod_w_ns = rows[:, _FIXED:_FIXED + n]
    mod_c_ns = rows[:, _FIXED + n:_FIXED + 2 * n]
    mod_w = mod_w_ns * _MS
    over_w = (rows[:, 2] - mod_w_ns.sum(axis=1)) * _MS
    over_c = (rows[:, 3] - mod_c_ns.sum(axis=1)) * _MS
    tot_w = sums[_FIXED:_FIXED + n] * _MS  # per module, whole job (exact, also when rows are a sample)
    tot_c = sums[_FIXED + n:_FIXED + 2 * n] * _MS
    ev_sum_w, ev_sum_c = float(sums[2] * _MS), float(sums[3] * _MS)
    over_sum_w, over_sum_c = ev_sum_w - float(tot_w.sum()), ev_sum_c - float(tot_c.sum())
    ev_mean = ev_sum_w / per if events else 0.0
    loop_ms = loop_ns * _MS

    visits: dict[str, int] = {}
    for table in (summary.paths, summary.endpaths):
        for name, counters in table.items():
            for label, mc in zip(path_labels.get(name, []), counters.modules):
                visits[label] = visits.get(label, 0) + mc.visited
    hl = set(highlight)

    def module_entry(i: int) -> dict[str, Any]:
        d = descs[i]
        col = mod_w[:, i]
        real_pe = float(tot_w[i]) / per
        v = visits.get(d.label, calls[i]) if i else events
        return {
            "label": d.label, "type": d.type, "kind": d.kind, "index": d.index,
            "calls": calls[i] if i else events, "visits": v,
            "real_ms": float(tot_w[i]), "cpu_ms": float(tot_c[i]),
            "real_per_event_ms": real_pe, "cpu_per_event_ms": float(tot_c[i]) / per,
            "real_per_call_ms": float(tot_w[i]) / max(calls[i] if i else events, 1),
            "real_per_visit_ms": float(tot_w[i]) / max(v, 1),
            "real_p99_ms": float(np.percentile(col, 99)) if events else 0.0,
            "real_max_ms": float(maxs[_FIXED + i] * _MS) if events else 0.0,
            "share_of_event": real_pe / ev_mean if ev_mean else 0.0,
            "share_of_budget": real_pe / budget,
            "cores": rate * real_pe * 1e-3,
            "highlight": d.label in hl,
        }

    source = module_entry(0)
    modules = [module_entry(i) for i in range(1, n)]
    by_label = {m["label"]: m for m in modules}
    over_mean = over_sum_w / per if events else 0.0
    overhead = {"real_ms": over_sum_w, "cpu_ms": over_sum_c,
                "real_per_event_ms": over_mean, "cpu_per_event_ms": over_sum_c / per,
                "share_of_event": over_mean / ev_mean if ev_mean else 0.0,
                "share_of_budget": over_mean / budget, "min_real_ms": float(over_w.min()) if len(rows) else 0.0}

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
    ev_stats = _stats(ev_w)
    cpu_stats = _stats(ev_c)
    if events:  # exact over all events, whatever the rows are
        ev_stats.update(mean=ev_mean, max=float(maxs[2] * _MS))
        cpu_stats.update(mean=ev_sum_c / per, max=float(maxs[3] * _MS))
    over_budget = int((ev_w > budget).sum()) if totals.get("over_budget") is None else int(totals["over_budget"])
    throughput = events / (loop_ms * 1e-3) if loop_ms > 0 else 0.0
    cpu_total = ev_sum_c
    streams = summary.streams

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "units": {"time": "ms", "rate": "Hz"},
        "events": events,
        "streams": streams,
        "clocks": {
            "real": "time.perf_counter_ns", "cpu": "time.thread_time_ns",
            "real_resolution_ns": time.get_clock_info("perf_counter").resolution * 1e9,
            "cpu_resolution_ns": time.get_clock_info("thread_time").resolution * 1e9,
        },
        "self_cost": self_cost,
        "loop": {
            "real_ms": loop_ms, "throughput_hz": throughput,
            "cpu_per_event_ms": cpu_total / per,  # CMSSW "event loop CPU/event"
            "real_per_event_ms": loop_ms / per,  # CMSSW "event loop Real/event"
            "sum_streams_real_per_event_ms": ev_sum_w / per,
            "efficiency_cpu_real_per_thread": cpu_total / (loop_ms * streams) if loop_ms > 0 else 0.0,
            "idle_real_ms": max(loop_ms * streams - ev_sum_w, 0.0),
        },
        "event": {"real": ev_stats, "cpu": cpu_stats},
        # rows behind percentiles, histograms and per-event data: all events, or a uniform sample
        "rows": {"kept": int(len(rows)), "sampled": bool(len(rows) < events)},
        "source": source,
        "overhead": overhead,
        "modules": modules,
        "paths": path_entries,
        "budget": {
            "budget_ms": budget,
            "real": ev_stats,
            "over_budget_events": over_budget,
            "over_budget_fraction": over_budget / per,
            "mean_share_of_budget": ev_stats["mean"] / budget,
            "fits": ev_stats["mean"] <= budget,
            "throughput_hz": throughput,
        },
        "farm": {
            "input_rate_hz": rate,
            "real_per_event_ms": ev_mean,
            "cpu_per_event_ms": cpu_total / per,
            "cores_real": rate * ev_mean * 1e-3,
            "cores_cpu": rate * cpu_total / per * 1e-3,
            "highlight": {
                "labels": list(highlight),
                "real_per_event_ms": hl_real, "cpu_per_event_ms": hl_cpu,
                "cores": rate * hl_real * 1e-3,
                "share_of_event": hl_real / ev_mean if ev_mean else 0.0,
                "share_of_budget": hl_real / budget,
            },
        },
        "histograms": {
            "event_real": _histogram(ev_w, bins, budget),
            "event_cpu": _histogram(ev_c, bins, budget),
            "overhead_real": _histogram(over_w, bins),
            "modules_real": {descs[i].label: _histogram(mod_w[:, i], bins) for i in range(n)},
        },
        "per_event": None,
    }
    if params.per_event_json:
        result["per_event"] = {
            "index": rows[:, 0].tolist(), "stream": rows[:, 1].tolist(),
            "real_ms": ev_w.tolist(), "cpu_ms": ev_c.tolist(), "overhead_real_ms": over_w.tolist(),
            "modules_real_ms": {descs[i].label: mod_w[:, i].tolist() for i in range(n)},
        }
    if self_cost:
        cost = self_cost["per_event_with_modules_ns"] * _MS
        result["self_cost"] = {**self_cost, "share_of_event": cost / ev_mean if ev_mean else 0.0}
    arrays = {"index": rows[:, 0], "stream": rows[:, 1], "real_ms": ev_w, "cpu_ms": ev_c,
              "overhead_real_ms": over_w, "modules_real_ms": mod_w}
    return result, arrays
