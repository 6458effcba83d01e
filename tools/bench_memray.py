"""What the memray capture costs, and how its per-module figures compare with the RSS deltas.

Runs the default path (``configs/path.yaml``, every shipped service on) as separate ``hltrun``
processes over the same events, alternating a run without and a run with
``services.Memory.memray``, ``--repeats`` times each, and reads each run's ``hltrun.json``:

* overhead: event-loop time and whole-job wall time with / without the capture (median over the
  repeats, and the ratio);
* agreement (last run with the capture): per module, memray's bytes still held at the end and its
  peak, against the RSS growth the Memory service measured around the same module (begin_job plus
  every call); for the job, memray's live bytes summed over owners against RSS at the end minus RSS
  at the start.

    python -m hltrun.tools.bench_memray -n 5000 --repeats 3
    python -m hltrun.tools.bench_memray -n 5000 --repeats 3 --json out.json

The figures and the command are recorded in docs/memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024.0 * 1024.0


def _run(events: int, folder: Path, memray: bool) -> dict:
    cmd = [sys.executable, "-m", "hltrun.framework.cli", str(ROOT / "configs" / "path.yaml"), "-n", str(events), "-q",
           "--report-dir", str(folder), f"modules.out.file={folder / 'out.root'}"]
    if memray:
        cmd.append("services.Memory.memray=capture.bin")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench_memray: hltrun failed ({res.returncode}): {res.stderr.strip()[-500:]}")
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--events", type=int, default=5000, help="events per run (default 5000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs with and without the capture (default 3)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench_memray.") as tmp:
        for r in range(args.repeats):
            for memray in (False, True):
                folder = Path(tmp) / f"{'memray' if memray else 'plain'}{r}"
                doc = _run(args.events, folder, memray)
                runs[memray].append(doc)
                print(f"run {r + 1}/{args.repeats} {'with' if memray else 'without'} memray: "
                      f"loop {doc['job']['loop_s']:.2f} s, wall {doc['job']['wall_s']:.2f} s", file=sys.stderr)
    med = {k: {f: statistics.median(d["job"][f] for d in v) for f in ("loop_s", "wall_s")} for k, v in runs.items()}
    out = {
        "events": runs[False][-1]["job"]["events_processed"], "repeats": args.repeats,
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
        from hltrun.framework.atomic import write_text

        write_text(args.json, json.dumps(out, indent=1), "bench_memray --json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
