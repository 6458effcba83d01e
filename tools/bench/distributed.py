"""Measure distributed execution: 1 vs 2 Dask workers, per-unit overhead, merge time and memory.

    python -m hltrun.tools.physics.make_large_sample --events 24000
    hltbench dask --sample data/large/replicated_24000.root          # docs/distributed.md

Throughput is events / event-loop time (first event read to last event done, across all workers), so
cluster start-up and model loading (reported separately) do not count. Runs alternate 1 and 2 workers
``--repeat`` times; on a shared machine compare the best of each.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path


from hltrun.tools.bench import runner
from hltrun.tools.catalogue import data_dir



def _config(sample: Path, out: Path, *overrides: str):
    from hltrun.framework.config import load

    return load(runner.path_config(), [f"source.files=[{sample}]", "options.accelerators=[cpu]",
                                                 f"modules.out.file={out}", "options.wantSummary=false",
                                                 *overrides])


def _run(cfg) -> dict:
    from hltrun.framework.executors import execute

    t0 = time.perf_counter()
    outcome = execute(cfg, None, t0, progress=False)
    s = outcome.result.summary
    if outcome.code:
        raise SystemExit(f"hltbench dask: run failed: {s.failure}")
    rate = s.events_processed / s.loop_s if s.loop_s else 0.0
    t = outcome.result.services["Timing"]
    event_s = float(t.rows[:, 2].sum() if t.rows is not None else t.hist.total[0]) * 1e-9  # sum of event times
    cpu_s = float(t.rows[:, 3].sum() if t.rows is not None else t.hist.total[1]) * 1e-9  # their CPU time
    workers = {k: dict(v, rate=v["events"] / v["busy_s"] if v["busy_s"] else 0.0) for k, v in s.workers.items()}
    return {"events": s.events_processed, "loop_s": s.loop_s, "event_s": event_s, "core_share": cpu_s / event_s, "wall_s": time.perf_counter() - t0, "rate": rate,
            "begin_job_s": s.begin_job_s, "units": s.executor.get("units", 1), "workers": workers}


def scaling(sample: Path, tmp: Path, events_per_task: int, repeats: int) -> dict:
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(repeats):
        for n in (1, 2):
            cfg = _config(sample, tmp / f"w{n}.root", "options.executor.type=dask", f"options.executor.workers={n}",
                          f"options.executor.eventsPerTask={events_per_task}")
            res = _run(cfg)
            runs[n].append(res)
            busy = sum(w["rate"] for w in res["workers"].values())
            res["distribution_efficiency"] = res["rate"] / busy if busy else 0.0
            per_worker = ", ".join(f"{w['rate']:.0f}" for w in res["workers"].values())
            print(f"  repeat {r}: {n} worker(s): {res['rate']:.1f} events/s over {res['loop_s']:.1f} s "
                  f"({res['units']} units; wall {res['wall_s']:.1f} s); per worker "
                  f"{per_worker} events/s busy; job rate = {100 * res['distribution_efficiency']:.0f} % of their sum; "
                  f"CPU/real inside events {100 * res['core_share']:.0f} %", flush=True)
    best = {n: max(x["rate"] for x in v) for n, v in runs.items()}
    pairs = [b["rate"] / a["rate"] for a, b in zip(runs[1], runs[2])]
    return {"runs": runs, "best_rate": best, "speedup_best": best[2] / best[1], "speedup_pairs": pairs,
            "speedup_median": statistics.median(x["rate"] for x in runs[2]) /
            statistics.median(x["rate"] for x in runs[1]),
            "efficiency_per_worker": best[2] / (2 * best[1])}


def unit_overhead(sample: Path, tmp: Path, events: int, sizes: list[int]) -> dict:
    """One worker, one stream: the loop time not spent inside events, per unit, measured within each run
    (loop window minus the sum of the events' own times), so machine noise between runs cancels."""
    rows = []
    for size in sizes:
        cfg = _config(sample, tmp / "u.root", "options.executor.type=dask", "options.executor.workers=1",
                      f"options.executor.eventsPerTask={size}", f"options.maxEvents={events}")
        res = _run(cfg)
        outside = res["loop_s"] - res["event_s"]
        rows.append({"events_per_task": size, "units": res["units"], "loop_s": res["loop_s"],
                     "event_s": res["event_s"], "outside_events_s": outside,
                     "per_unit_ms": outside / res["units"] * 1e3})
        print(f"  {size} events/unit: {res['units']} units, loop {res['loop_s']:.2f} s, in events "
              f"{res['event_s']:.2f} s, outside {outside:.2f} s = {rows[-1]['per_unit_ms']:.1f} ms per unit", flush=True)
    return {"rows": rows}


def merge_cost(sample: Path, tmp: Path, unit_events: int, counts: list[int]) -> dict:
    """Merge N unit results shaped like real ones (from a local run of ``unit_events`` events)."""
    from hltrun.framework.executors import run_local
    from hltrun.framework.results import JobResult, Merger

    cfg = _config(sample, tmp / "m.root", f"options.maxEvents={unit_events}")
    template = run_local(cfg, None, time.perf_counter(), progress=False).result
    timing = template.services["Timing"]
    row_bytes = timing.rows.shape[1] * 8

    def unit(i: int) -> JobResult:
        r = copy.deepcopy(template)
        t = r.services["Timing"]
        t.rows = t.rows.copy()
        t.rows[:, 0] += i * unit_events
        memory = r.services["Memory"]
        memory.series = {name: rows + [i * unit_events, 0, 0] for name, rows in memory.series.items()}
        return r

    out = {"unit_events": unit_events, "row_bytes": row_bytes, "max_rows": timing.max_rows, "results": []}
    for n in counts:
        merger = Merger()
        spent = 0.0
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        peak_over = 0
        for i in range(n):
            r = unit(i)  # made one at a time: only the merger holds results
            before = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            merger.add(r)
            spent += time.perf_counter() - t0
            del r
            peak_over = max(peak_over, tracemalloc.get_traced_memory()[1] - base)
            tracemalloc.reset_peak()
            _ = before
        t0 = time.perf_counter()
        merged = merger.result()
        spent += time.perf_counter() - t0
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        t = merged.services["Timing"]
        rec = {"units": n, "events": n * unit_events, "merge_s": spent, "per_unit_ms": spent / n * 1e3,
               "mode": "rows" if t.rows is not None else "histograms", "peak_mb": peak_over / 1e6,
               "held_mb": held / 1e6, "all_rows_mb": n * unit_events * row_bytes / 1e6,
               "events_processed": merged.summary.events_processed}
        out["results"].append(rec)
        print(f"  {n} units x {unit_events} events: merge {spent:.2f} s ({rec['per_unit_ms']:.1f} ms/unit), "
              f"timing kept as {rec['mode']}, peak {rec['peak_mb']:.0f} MB (all rows would be "
              f"{rec['all_rows_mb']:.0f} MB)", flush=True)
        assert rec["events_processed"] == n * template.summary.events_processed
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench dask`` options."""
    ap.add_argument("--sample", type=Path, default=data_dir() / "large/replicated_24000.root",
                    help="input file (make it with python -m hltrun.tools.physics.make_large_sample)")
    ap.add_argument("--events-per-task", type=runner.positive_int, default=2000, help="unit size for the scaling runs")
    runner.add_repeat(ap, 2, "alternating 1/2-worker runs")
    ap.add_argument("--overhead-events", type=runner.positive_int, default=6000, help="events of the per-unit overhead runs")
    ap.add_argument("--skip", nargs="*", default=[], choices=["scaling", "overhead", "merge"], help="parts to skip")
    runner.add_json(ap)


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    if not args.sample.exists():
        raise runner.BenchError(f"hltbench dask: {args.sample} not found: "
                                "python -m hltrun.tools.physics.make_large_sample --events 24000")
    runner.check_repeat(args.repeat, "hltbench dask")
    import logging

    logging.getLogger("hltrun").setLevel(logging.WARNING)
    report: dict = {"sample": str(args.sample)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "scaling" not in args.skip:
            print("scaling, 1 vs 2 workers:")
            report["scaling"] = scaling(args.sample, tmp, args.events_per_task, args.repeat)
            s = report["scaling"]
            print(f"  speedup 2 vs 1 worker: best {s['speedup_best']:.2f}x, median {s['speedup_median']:.2f}x, "
                  f"per adjacent pair {', '.join(f'{p:.2f}x' for p in s['speedup_pairs'])} "
                  f"(efficiency per worker {100 * s['efficiency_per_worker']:.0f} %)")
        if "overhead" not in args.skip:
            print("per-unit overhead (1 worker):")
            report["overhead"] = unit_overhead(args.sample, tmp, args.overhead_events,
                                               [args.overhead_events, 2000, 1000, 200])
        if "merge" not in args.skip:
            print("merge:")
            report["merge"] = merge_cost(args.sample, tmp, 1000, [100, 1000, 3000])
    if args.json:
        runner.write_json(args.json, report, "dask")
    return 0

