"""Cross-event dynamic batching vs one backend call per event, on the shipped path, at 1/2/4/8 streams.

Runs configs/path.yaml (ROOT source, leading-2-jet batcher, Conv-VAE on ONNX Runtime CPU by default, filter;
no output module) on the shipped samples, once per (streams, mode), the modes interleaved and each
configuration repeated; reports the median over the repeats of:

* throughput: events / event-loop real time (first source read to last event end);
* per-event latency p50 / p99: the Timing service's event real time (source read + every module,
  so the batch wait is included);
* CPU ms per event: the mean event CPU time (thread CPU: a batch's call is charged to the stream that
  ran it, so the mean over events is the CPU the path costs per event), the figure least disturbed by
  other load on a shared machine;
* the scorer's real time per event and, batched, its split into queue and inference time, and the
  events and jets per backend call.

Both modes must accept the same number of events (checked here; event by event in
tests/test_dynamic_batching.py).

    hltbench batching [--streams 1 2 4 8] [--repeat 3] [--max-batch 64] [--max-delay-ms 2]
                      [--backend onnxruntime|tensorflow|tensorrt]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from hltrun.tools.bench import runner


def run_once(streams: int, batching: dict[str, Any] | None, max_events: int,
             backend: str = "onnxruntime") -> dict[str, Any]:
    """One job; the figures of one table cell and the accepted events (to check decisions agree)."""
    from hltrun.framework.eventloop import EventProcessor

    process = runner.default_path(
        "batching", {"Timing": {"calibrate": False, "per_event_json": False}},
        f"options.numberOfThreads={streams}", f"options.numberOfStreams={streams}", f"options.maxEvents={max_events}",
        f"modules.vae.backend={backend}", *([f"modules.vae.batching={json.dumps(batching)}"] if batching is not None else []))
    summary = EventProcessor(process).run()
    timing = process.services[0].result(summary)
    vae = next(m for m in timing["modules"] if m["label"] == "vae")
    accepted = summary.paths["HLT_AnomalyDetection"].passed
    out = {"throughput_hz": summary.events_processed / summary.loop_s,
           "p50_ms": timing["event"]["real"]["median"], "p99_ms": timing["event"]["real"]["p99"],
           "cpu_ms": timing["event"]["cpu"]["mean"],
           "scorer_ms": vae["real_per_event_ms"], "accepted": accepted, "events": summary.events_processed}
    b = timing.get("batching", {}).get("vae")
    if b:
        out.update(queue_ms=b["queue_ms"]["per_event"], inference_ms=b["inference_ms"]["per_event"],
                   events_per_batch=b["events_per_batch"], jets_per_batch=b["jets_per_batch"],
                   sent_delay=b["sent"]["delay"] / max(b["batches"], 1))
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def table(results: dict[tuple[int, str], dict[str, Any]], streams: list[int]) -> str:
    head = ("| streams | mode | events/s | vs per-event | p50 ms | p99 ms | CPU ms/event | scorer ms/event | queue ms | "
            "inference ms | events/call | jets/call | sent on delay |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in streams:
        base = results[(s, "per-event")]["throughput_hz"]
        for mode in ("per-event", "batched"):
            r = results[(s, mode)]
            batched = mode == "batched"
            extra = (f"{r['queue_ms']:.3f} | {r['inference_ms']:.3f} | {r['events_per_batch']:.2f} | "
                     f"{r['jets_per_batch']:.2f} | {100 * r['sent_delay']:.0f} % |") if batched else "- | - | 1 | 2 | - |"
            lines.append(f"| {s} | {mode} | {r['throughput_hz']:.0f} | {r['throughput_hz'] / base:.2f} | "
                         f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['cpu_ms']:.3f} | {r['scorer_ms']:.3f} | {extra}")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench batching`` options."""
    ap.add_argument("--streams", type=runner.positive_int, nargs="+", default=[1, 2, 4, 8], help="stream counts to measure")
    runner.add_repeat(ap, 3, "runs per configuration, the modes interleaved (median taken)")
    ap.add_argument("--max-batch", type=runner.positive_int, default=64, help="batching.max_batch (jets per call)")
    ap.add_argument("--max-delay-ms", type=float, default=2.0, help="batching.max_delay_ms")
    ap.add_argument("--max-events", type=int, default=-1, help="events per job (-1: all of the shipped samples)")
    ap.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorflow", "tensorrt"],
                    help="the scorer's backend (tensorrt: on a machine with an NVIDIA GPU)")
    runner.add_json(ap)


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    runner.check_repeat(args.repeat, "hltbench batching")
    if args.max_events == 0 or args.max_events < -1:
        raise runner.BenchError(f"hltbench batching: --max-events must be at least 1, or -1 for all (got {args.max_events})")
    import logging

    logging.getLogger("hltrun").setLevel(logging.WARNING)
    batching = {"max_batch": args.max_batch, "max_delay_ms": args.max_delay_ms}
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    total = len(args.streams) * 2 * args.repeat
    done = 0
    for rep in range(args.repeat):  # interleaved: a disturbance on the shared machine hits both modes
        for s in args.streams:
            for mode, b in (("per-event", None), ("batched", batching)):
                runs.setdefault((s, mode), []).append(run_once(s, b, args.max_events, args.backend))
                done += 1
                print(f"\r[{done}/{total}] streams {s} {mode}   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    results = {k: median_of(v) for k, v in runs.items()}
    for s in args.streams:
        a, b = results[(s, "per-event")], results[(s, "batched")]
        if a["accepted"] != b["accepted"] or a["events"] != b["events"]:
            print(f"decisions differ at {s} streams: {a['accepted']} vs {b['accepted']} accepted", file=sys.stderr)
            return 1
    print(table(results, args.streams))
    if args.json:
        runner.write_json(args.json, {f"{s}:{m}": r for (s, m), r in results.items()}, "batching")
    return 0

