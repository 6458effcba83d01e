"""Does resident memory stay flat on a long job? RSS of the default path from 10k to N events.

Runs ``configs/path.yaml`` with every service on (Timing, Memory with per-module deltas, ROOT output)
over the shipped QCD sample read again and again (``allowDuplicateFiles``, ``noDuplicateCheck``:
the events repeat on purpose) and samples the process RSS (``catalogue.rss_mb``, MiB) every ``--every``
events from a post_event hook. The target (issue 10): RSS growth from 10k events to the end below 2 %.

    hltbench memory -n 1000000            # ~5-10 min on one core
    hltbench memory -n 100000 --json out.json

The figure and the command are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from hltrun.tools.bench import runner
from hltrun.tools.catalogue import rss_mb, sample_path

SAMPLE = sample_path("qcd_dijet")


def measure(n_events: int, every: int, start: int, streams: int, out_dir: Path, progress: bool,
            overrides: list[str] | None = None, log=None) -> dict:  # noqa: ANN001 - a text file
    """Run the default path over ``n_events`` events, RSS sampled every ``every`` events."""
    import uproot

    from hltrun.framework.config import load
    from hltrun.framework.eventloop import EventProcessor
    from hltrun.framework.process import Process

    per_file = int(uproot.open(SAMPLE)["Events"].num_entries)
    copies = n_events // per_file + 1
    files = "[" + ", ".join([str(SAMPLE)] * copies) + "]"
    cfg = load(runner.checkout() / "configs" / "path.yaml", [
        f"source.files={files}", "source.allowDuplicateFiles=true", "source.duplicateCheckMode=noDuplicateCheck",
        f"options.maxEvents={n_events}", f"options.numberOfThreads={streams}",
        f"modules.out.file={out_dir / 'bench_memory.root'}",
        "services={Timing: {}, Memory: {per_module: true}}", *(overrides or [])])
    process = Process(cfg)
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def post_event(event, status) -> None:  # noqa: ANN001 - signal signature
        i = event.index + 1
        if i % every == 0:
            samples.append((i, rss_mb()))
            if log is not None:  # as it goes: a long run stopped early still has its figures
                log.write(f"{i} {samples[-1][1]:.3f}\n")
                log.flush()
            if progress and i % (every * 10) == 0:
                rate = i / (time.perf_counter() - t0)
                sys.stderr.write(f"\rbench_memory: {i}/{n_events} events, RSS {samples[-1][1]:.1f} MB, "
                                 f"{rate:.0f} events/s")

    process.signals.post_event.connect(post_event)
    summary = EventProcessor(process).run()
    if progress:
        sys.stderr.write("\n")
    at_start = next(r for i, r in samples if i >= start)
    at_end = samples[-1][1]
    return {
        "events": summary.events_processed, "streams": streams, "overrides": list(overrides or []),
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "rss_mb_at": {str(start): at_start, str(samples[-1][0]): at_end},
        "growth_mb": at_end - at_start, "growth_percent": 100.0 * (at_end - at_start) / at_start,
        "max_rss_mb_in_loop": max(r for _, r in samples),
        "kernel_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loop_s": time.perf_counter() - t0,
        "samples": samples,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench memory`` options."""
    p.add_argument("-n", "--events", type=int, default=1_000_000, help="events to process (default 1M)")
    p.add_argument("--every", type=int, default=5_000, help="sample RSS every N events")
    p.add_argument("--start", type=int, default=10_000, help="growth is measured from this event on")
    p.add_argument("--streams", type=int, default=1, help="concurrent events (options.numberOfStreams; default 1)")
    runner.add_json(p)
    p.add_argument("--samples", type=Path, help="append 'events RSS_MB' lines here while running")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="extra configuration overrides, e.g. options.accelerators=[cpu]")


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    if args.events < args.start + args.every:
        raise runner.BenchError(f"hltbench memory: --events must be at least --start + --every "
                                f"({args.start + args.every})")
    import logging

    logging.getLogger("hltrun").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_memory.") as tmp:
        log = args.samples.open("a") if args.samples else None
        res = measure(args.events, args.every, args.start, args.streams, Path(tmp), not args.quiet, args.overrides, log)
    print(f"events {res['events']}, streams {res['streams']}: RSS {res['rss_mb_at'][str(args.start)]:.1f} MB "
          f"at {args.start} events -> {list(res['rss_mb_at'].values())[-1]:.1f} MB at the end: "
          f"growth {res['growth_mb']:+.1f} MB ({res['growth_percent']:+.2f} %; target < 2 %), "
          f"max in loop {res['max_rss_mb_in_loop']:.1f} MB, loop {res['loop_s']:.0f} s")
    if args.json:
        runner.write_json(args.json, res, "memory")
    return 0 if res["growth_percent"] < 2.0 else 1

