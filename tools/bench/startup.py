"""Start-up of a whole ``hltrun`` process for one event, timed from outside the process.

The clock starts in this (parent) process right before the child is spawned and stops when the
child has exited, so interpreter start, imports, configuration, begin_job (file check, model load),
the event, end_job and the reports are all inside, and nothing depends on the child's own clocks
(``psutil``'s ``create_time`` is rounded to the boot clock's ticks and can overstate start-up by up
to ~0.5 s). For scale, the same run also times an empty interpreter and one that only imports the
libraries the default path needs. Runs are interleaved; the median and the fastest are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from hltrun.tools.bench import runner


def time_process(argv: list[str]) -> float:
    """Seconds from just before spawning ``argv`` to just after it exited (it must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=runner.checkout(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise runner.BenchError(f"hltbench startup: {' '.join(argv)} failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return elapsed


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench startup`` options."""
    runner.add_repeat(ap, 5, "runs of each command, interleaved")
    runner.add_json(ap)
    ap.add_argument("--config", default="configs/path.yaml", help="configuration to run (default: the default path)")
    ap.add_argument("hltrun_args", nargs="*", help="extra hltrun arguments/overrides (after --)")


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    py = sys.executable
    runs = {
        "python -c pass (interpreter floor)": [py, "-c", "pass"],
        "python -c 'import numpy, awkward, uproot, onnxruntime' (import floor)":
            [py, "-c", "import numpy, awkward, uproot, onnxruntime"],
        f"hltrun {args.config} -n 1 -q": [py, "-m", "hltrun.framework.cli", args.config, "-n", "1", "-q", *args.hltrun_args],
    }
    runner.check_repeat(args.repeat, "hltbench startup")
    times = runner.interleave({name: (lambda cmd=cmd: time_process(cmd)) for name, cmd in runs.items()}, args.repeat)
    print(f"median / fastest of {args.repeat}, python {sys.version.split()[0]}\n")
    print("| process | median s | fastest s |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f} |")
    if args.json:
        runner.write_json(args.json, {"repeat": args.repeat, "seconds": times}, "startup")
    return 0

