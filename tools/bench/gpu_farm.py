"""The farm projection for a GPU node, from the ``hltrun.json`` of the same path run on the CPU and on
the GPU (``tools/gpu_check.sh`` makes them)::

    hltbench gpu-farm --cpu OUT/path-ort-1 --gpu OUT/path-torch-1 OUT/path-torch-2 OUT/path-torch-4 --out OUT/farm

Per run: the inference module's backend and device, streams, events and the event loop's events/s (the
figure of the job's own FarmReport line "cores needed (measured throughput)", read from its hltrun.json).
Per GPU run, against the CPU run's events/s per core (its events/s over its streams: one core per
stream, as CMSSW sizes a farm): the GPU run's speed-up over one CPU core, and how many CPU cores one GPU
replaces — the cores that would give the GPU run's events/s, less the host cores the GPU run itself
keeps busy (one per stream). At ``--rate`` (the HLT input rate) it also gives the CPU cores, or the GPU
nodes, the path needs. Both runs must have read the same events, on the same host (checked: events
processed; the host is the user's word), and each ``--gpu`` run's inference must have run on a GPU
(checked: the device its hltrun.json records; a CPU run there would "replace" a negative number of cores). Writes ``farm.json`` and ``farm.csv``; asserts no time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from hltrun.framework.atomic import together, write_text
from hltrun.framework.resources import NotRegularFile, local_output_path, read_regular_text
from .runner import BenchError, csv_text, positive_float

FIELDS = ("run", "backend", "device", "streams", "events", "loop_s", "events_per_s", "events_per_s_per_core",
          "x_one_cpu_core", "cpu_cores_replaced", "nodes_at_rate", "cores_at_rate")


def read_run(folder: Path) -> dict[str, Any]:
    """The facts of one run folder's hltrun.json: backend, device, streams, events, loop time."""
    path = folder / "hltrun.json" if folder.is_dir() else folder
    try:
        report = json.loads(read_regular_text(path))
        job = report["job"]
    except NotRegularFile as exc:
        raise BenchError(f"hltbench gpu-farm: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"hltbench gpu-farm: {path}: not an hltrun.json ({type(exc).__name__}: {exc})") from None
    backends = [s["backend"] for s in job.get("module_summaries", {}).values()
                if isinstance(s, dict) and isinstance(s.get("backend"), dict)]
    if not backends:
        raise BenchError(f"hltbench gpu-farm: {path}: no inference module in the job")
    events, loop_s = int(job["events_processed"]), float(job["loop_s"])
    if events <= 0 or loop_s <= 0:
        raise BenchError(f"hltbench gpu-farm: {path}: no events processed")
    return {"run": folder.name, "backend": backends[0].get("backend", "?"),
            "device": str(backends[0].get("device", "unrecorded")),
            "streams": int(job["streams"]), "events": events, "loop_s": loop_s,
            "events_per_s": measured_throughput(report) or events / loop_s}


def measured_throughput(report: dict[str, Any]) -> float | None:
    """The events/s of the FarmReport's "measured throughput" line (the Timing service's loop, which
    starts at the first event's read), so that the farm projection here and the job's own FarmReport
    give one figure for one run; None for a report without it (Timing off): then the job's loop_s."""
    farm = ((report.get("services") or {}).get("Timing") or {}).get("farm") or {}
    rate = (farm.get("throughput") or {}).get("events_per_s")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def on_gpu(run: dict[str, Any]) -> bool:
    """Whether the run's inference module recorded a GPU as its device (``gpu-nvidia``; ``cpu`` is not)."""
    return run["device"].startswith("gpu")


def check_gpu_runs(folders: Sequence[Path], gpus: Sequence[dict[str, Any]]) -> None:
    """A --gpu run whose inference ran on the CPU would be projected as a GPU (and replace a negative
    number of cores): refused, naming the run as given and the device its hltrun.json recorded."""
    for folder, g in zip(folders, gpus):
        if not on_gpu(g):
            raise BenchError(f"hltbench gpu-farm: --gpu {folder}: its inference ran on {g['device']} "
                             f"({g['backend']}), not a GPU; give the report of a GPU run")


def project(cpu: dict[str, Any], gpus: Sequence[dict[str, Any]], rate_hz: float) -> list[dict[str, Any]]:
    """Rows for the CPU run and each GPU run (see the module docstring for the definitions)."""
    per_core = cpu["events_per_s"] / cpu["streams"]
    rows = [{**cpu, "events_per_s_per_core": per_core, "x_one_cpu_core": cpu["events_per_s"] / per_core,
             "cores_at_rate": rate_hz / per_core}]
    for g in gpus:
        if g["events"] != cpu["events"]:
            raise BenchError(f"hltbench gpu-farm: {g['run']} processed {g['events']} events, {cpu['run']} "
                             f"{cpu['events']}: run the same events")
        equivalent = g["events_per_s"] / per_core
        rows.append({**g, "x_one_cpu_core": equivalent, "cpu_cores_replaced": equivalent - g["streams"],
                     "nodes_at_rate": rate_hz / g["events_per_s"]})
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cpu", type=Path, required=True, help="report folder (or hltrun.json) of the CPU run")
    ap.add_argument("--gpu", type=Path, nargs="+", required=True, help="report folders of the GPU runs (their inference module's recorded device must be a GPU)")
    ap.add_argument("--rate", type=positive_float, default=100_000.0, help="HLT input rate in Hz (default 100 kHz)")
    ap.add_argument("--out", type=local_output_path, required=True, help="folder for farm.json and farm.csv")


def run(args: argparse.Namespace) -> int:
    gpus = [read_run(g) for g in args.gpu]
    check_gpu_runs(args.gpu, gpus)
    rows = project(read_run(args.cpu), gpus, args.rate)
    with together():  # both whole or neither (framework/atomic.py): never a half file under its final name
        write_text(args.out / "farm.json", json.dumps({"rate_hz": args.rate, "rows": rows}, indent=1),
                   "hltbench gpu-farm --out")
        write_text(args.out / "farm.csv", csv_text(rows, FIELDS), "hltbench gpu-farm --out")
    print(f"{'run':16s} {'backend':12s} {'device':11s} {'streams':>7s} {'events/s':>10s} {'x 1 core':>9s} "
          f"{'cores replaced':>14s}")
    for r in rows:
        replaced = f"{r['cpu_cores_replaced']:14.1f}" if "cpu_cores_replaced" in r else f"{'-':>14s}"
        print(f"{r['run']:16s} {r['backend']:12s} {r['device']:11s} {r['streams']:7d} {r['events_per_s']:10.1f} "
              f"{r['x_one_cpu_core']:9.2f} {replaced}")
    print(f"at {args.rate:,.0f} Hz: {rows[0]['cores_at_rate']:,.0f} CPU cores on {rows[0]['backend']}; "
          + "; ".join(f"{r['nodes_at_rate']:,.1f} GPU nodes as {r['run']}" for r in rows[1:]))
    print(f"wrote {args.out / 'farm.json'} and {args.out / 'farm.csv'}", file=sys.stderr)
    return 0
