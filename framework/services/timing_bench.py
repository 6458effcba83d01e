"""The Timing service's own cost: the same trivial job with and without it.

``python -m hltrun.framework.services.timing_bench [--events N] [--modules M]`` runs a path of M empty
producers over N events, alternately without and with Timing (best of ``--repeat``), and prints the
cost per event and per module call. Results and the command are in docs/timing.md.
"""

from __future__ import annotations

import time
from typing import Any

from . import timing as _timing  # noqa: F401 - registers the Timing service


def measure_overhead(events: int = 20000, modules: int = 5, repeat: int = 3) -> dict[str, float]:
    """Run a path of ``modules`` empty producers over ``events`` events, with and without Timing."""
    from ..config import validate
    from ..event import EventID
    from ..eventloop import EventProcessor
    from ..module import Producer, Source
    from ..process import Process
    from ..registry import register_module

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

    base, timed = [], []
    for _ in range(repeat):  # interleaved, best of: the least disturbed run of each
        base.append(run(False))
        timed.append(run(True))
    b, t = min(base), min(timed)
    return {"events": events, "modules": modules, "bare_ns_per_event": b, "timing_ns_per_event": t,
            "ratio": t / b, "cost_ns_per_event": t - b}


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="Measure the Timing service's own cost.")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--modules", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    zero = measure_overhead(a.events, 0, a.repeat)
    full = measure_overhead(a.events, a.modules, a.repeat)
    for r in (zero, full):
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    per_call = (full["cost_ns_per_event"] - zero["cost_ns_per_event"]) / a.modules
    print(f"Timing cost: {zero['cost_ns_per_event']:.0f} ns per event without modules, "
          f"{per_call:.0f} ns per module call; ratio {full['ratio']:.2f} on a path of {a.modules} empty modules")
