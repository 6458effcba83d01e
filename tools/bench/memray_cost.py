"""What the memray capture costs, and how its per-module figures compare with the RSS deltas.

Runs the default path (``configs/path.yaml``, every shipped service on) as separate ``hltrun``
processes over the same events, alternating a run without and a run with
``services.Memory.memray``, ``--repeat`` times each, and reads each run's ``hltrun.json``:

* overhead: event-loop time and whole-job wall time with / without the capture (median over the
  repeats, and the ratio);
* agreement (last run with the capture): per module, memray's bytes still held at the end and its
  peak, against the RSS growth the Memory service measured around the same module (begin_job plus
  every call); for the job, memray's live bytes summed over owners against RSS at the end minus RSS
  at the start.

    hltbench memray -n 5000 --repeat 3
    hltbench memray -n 5000 --repeat 3 --json out.json

The figures and the command are recorded in docs/memory.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hltrun.tools.bench import runner

MB = 1024.0 * 1024.0


def _run(events: int, folder: Path, memray: bool) -> dict:
    cmd = [sys.executable, "-m", "hltrun.framework.cli", str(runner.path_config()), "-n", str(events), "-q",
           "--report-dir", str(folder), f"modules.out.file={folder / 'out.root'}"]
    if memray:
        cmd.append("services.Memory.memray=capture.bin")
    res = subprocess.run(cmd, cwd=runner.checkout(), capture_output=True, text=True)
    if res.returncode != 0:
        raise runner.BenchError(f"hltbench memray: hltrun failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return json.loads((folder / "hltrun.json").read_text())


def agreement(doc: dict) -> dict:
    """memray per module against the RSS deltas of the same run."""
    mem = doc["services"]["Memory"]
    alloc = mem["allocations"] or {}
    rows = []
    for m in mem["modules"]:
        a = alloc.get(m["label"])
        rss = m["begin_job_rss_mb"] + m["total_rss_growth_mb"]
        rows.append({"label": m["label"], "rss_growth_mb": round(rss, 2),
                     "memray_live_mb": round(a["live"] / MB, 2) if a else 0.0,
                     "memray_peak_mb": round(a["peak"] / MB, 2) if a else 0.0,
                     "memray_allocated_mb": round(a["allocated"] / MB, 1) if a else 0.0})
    live = sum(a["live"] for a in alloc.values()) / MB
    return {"modules": rows, "job_rss_growth_mb": round(mem["rss_end_mb"] - mem["rss_start_mb"], 2),
            "job_memray_live_mb": round(live, 2)}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench memray`` options."""
    ap.add_argument("-n", "--events", type=runner.positive_int, default=5000, help="events per run (default 5000)")
    runner.add_repeat(ap, 3, "runs with and without the capture, alternating")
    runner.add_json(ap)


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    runner.check_repeat(args.repeat, "hltbench memray")
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="hltbench_memray.") as tmp:
        for r in range(args.repeat):
            for memray in (False, True):
                folder = Path(tmp) / f"{'memray' if memray else 'plain'}{r}"
                doc = _run(args.events, folder, memray)
                runs[memray].append(doc)
                print(f"run {r + 1}/{args.repeat} {'with' if memray else 'without'} memray: "
                      f"loop {doc['job']['loop_s']:.2f} s, wall {doc['job']['wall_s']:.2f} s", file=sys.stderr)
    med = {k: {f: statistics.median(d["job"][f] for d in v) for f in ("loop_s", "wall_s")} for k, v in runs.items()}
    out = {
        "events": runs[False][-1]["job"]["events_processed"], "repeat": args.repeat,
        "loop_s": {"without": med[False]["loop_s"], "with": med[True]["loop_s"],
                   "ratio": med[True]["loop_s"] / med[False]["loop_s"]},
        "wall_s": {"without": med[False]["wall_s"], "with": med[True]["wall_s"],
                   "ratio": med[True]["wall_s"] / med[False]["wall_s"]},
        # each run with the capture against the run without it just before: drift on a shared machine cancels
        "loop_pair_ratios": [round(w["job"]["loop_s"] / o["job"]["loop_s"], 3) for o, w in zip(runs[False], runs[True])],
        "agreement": agreement(runs[True][-1]),
        "leak_without_memray": runs[False][-1]["services"]["Memory"]["leak"],
    }
    print(json.dumps(out, indent=1))
    if args.json:
        runner.write_json(args.json, out, "memray")
    return 0

