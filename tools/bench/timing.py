"""The Timing service's own cost: the same trivial job with and without it.

``hltbench timing [--events N] [--modules M]`` runs a path of M empty producers over N events,
alternately without and with Timing (best of ``--repeat``), and prints the cost per event and per
module call. Results and the command are in docs/timing.md. (A benchmark, so it lives in tools/, not
in the framework it measures.)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hltrun.framework.services import timing as _timing  # noqa: F401 - registers the Timing service
from hltrun.tools.bench import runner


def measure_overhead(events: int = 20000, modules: int = 5, repeat: int = 3) -> dict[str, float]:
    """Run a path of ``modules`` empty producers over ``events`` events, with and without Timing."""
    from hltrun.framework.config import validate
    from hltrun.framework.event import EventID
    from hltrun.framework.eventloop import EventProcessor
    from hltrun.framework.module import Producer, Source
    from hltrun.framework.process import Process
    from hltrun.framework.registry import register_module

    @register_module("_BenchSource")
    class _BenchSource(Source):
        def events(self, skip: int, limit: int | None):
            for i in range(skip, skip + (limit if limit is not None else 0)):
                yield EventID(1, 1, i + 1), {}

    @register_module("_BenchNoop")
    class _BenchNoop(Producer):
        def produce(self, event: Any) -> None:
            pass

    labels = [f"m{i}" for i in range(modules)]

    def run(with_timing: bool) -> float:
        data: dict[str, Any] = {
            "process": "BENCH", "options": {"maxEvents": events, "wantSummary": False},
            "source": {"type": "_BenchSource"},
            "modules": {label: {"type": "_BenchNoop"} for label in labels},
            "paths": {"p": labels},
            "services": {"Timing": {}} if with_timing else {},
        }
        process = Process(validate(data, "<bench>"))
        t0 = time.perf_counter_ns()
        EventProcessor(process).run()
        return (time.perf_counter_ns() - t0) / events

    runs = runner.interleave({"bare": lambda: run(False), "timed": lambda: run(True)}, repeat)
    base, timed = runs["bare"], runs["timed"]  # best of each: the least disturbed run
    b, t = min(base), min(timed)
    return {"events": events, "modules": modules, "bare_ns_per_event": b, "timing_ns_per_event": t,
            "ratio": t / b, "cost_ns_per_event": t - b}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench timing`` options."""
    ap.add_argument("--events", type=runner.positive_int, default=20000, help="events per run (default 20000)")
    ap.add_argument("--modules", type=runner.positive_int, default=5, help="empty producers on the path (default 5)")
    runner.add_repeat(ap, 3, "runs with and without Timing, interleaved; the fastest of each counts")
    runner.add_json(ap)


def run(args: argparse.Namespace) -> int:
    """Print the cost per event (no modules) and per module call."""
    runner.check_repeat(args.repeat, "hltbench timing")
    if args.events < 1 or args.modules < 1:
        raise runner.BenchError("hltbench timing: --events and --modules must be at least 1")
    zero = measure_overhead(args.events, 0, args.repeat)
    full = measure_overhead(args.events, args.modules, args.repeat)
    for r in (zero, full):
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    per_call = (full["cost_ns_per_event"] - zero["cost_ns_per_event"]) / args.modules
    print(f"Timing cost: {zero['cost_ns_per_event']:.0f} ns per event without modules, "
          f"{per_call:.0f} ns per module call; ratio {full['ratio']:.2f} on a path of {args.modules} empty modules")
    if args.json:
        runner.write_json(args.json, {"no_modules": zero, "modules": full, "ns_per_module_call": per_call}, "timing")
    return 0
