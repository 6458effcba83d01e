"""Framework overhead benchmark: hltrun with trivial producers vs a bare loop over the same chunks.

Writes a synthetic ROOT file (N events, a few small jets each), then in one process times:

* ``uproot``    - uproot.iterate over the file only (the I/O floor);
* ``bare loop`` - the RootJetSource's chunk conversion and per-event views, plus one plain function
  call per event: exactly what hltrun does, minus the framework;
* ``hltrun``    - the same source and K trivial producers on one path (K = 1 and K = 10), without and
  with the Timing service when it is available.

The per-event and per-module-call overhead follow from the differences. Results go to stdout and,
with ``--write-doc``, into docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from hltrun.framework.config import validate
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.module import Producer
from hltrun.framework.process import Process
from hltrun.framework.registry import register_module
from hltrun.modules.rootio import write_nanoaod

from hltrun.tools.bench import runner


@register_module("BenchTrivialProducer")
class TrivialProducer(Producer):
    """Puts a constant: the smallest possible module."""

    concurrency = "global"

    def produce(self, event) -> None:  # noqa: ANN001
        event.put(1)


def write_sample(path: Path, n_events: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(1, 4, n_events)
    n_cons = rng.integers(5, 40, int(n_jets.sum()))
    per_event_cands = np.add.reduceat(n_cons, np.concatenate([[0], np.cumsum(n_jets)[:-1]]))

    def jagged(counts, values):
        return ak.unflatten(values.astype(np.float32), counts)

    nj = int(n_jets.sum())
    nc = int(n_cons.sum())
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            "run": np.ones(n_events, np.uint32), "luminosityBlock": np.ones(n_events, np.uint32),
            "event": np.arange(1, n_events + 1, dtype=np.uint64),
            "FatJet": ak.zip({"pt": jagged(n_jets, rng.uniform(200, 900, nj)), "eta": jagged(n_jets, rng.uniform(-2, 2, nj)),
                              "phi": jagged(n_jets, rng.uniform(-3, 3, nj)), "mass": jagged(n_jets, rng.uniform(10, 100, nj)),
                              "nConstituents": ak.unflatten(n_cons.astype(np.int32), n_jets)}),
            "FatJetPFCand": ak.zip({"pt": jagged(per_event_cands, rng.exponential(10, nc)),
                                    "eta": jagged(per_event_cands, rng.normal(0, 1, nc)),
                                    "phi": jagged(per_event_cands, rng.normal(0, 1, nc))}),
        })


def config(path: Path, n_modules: int, timing: bool) -> dict:
    mods = {f"m{i}": {"type": "BenchTrivialProducer"} for i in range(n_modules)}
    cfg = {"process": "BENCH", "options": {"wantSummary": False},
           "source": {"type": "RootJetSource", "files": [str(path)], "chunk_size": 10000},
           "modules": mods, "paths": {"p": list(mods)}}
    if timing:
        cfg["services"] = {"Timing": {}}
    return cfg


def time_hltrun(path: Path, n_modules: int, timing: bool) -> float:
    process = Process(validate(config(path, n_modules, timing), "bench"))
    t0 = time.perf_counter()
    EventProcessor(process).run()
    return time.perf_counter() - t0


def time_bare(path: Path) -> float:
    process = Process(validate(config(path, 0, False), "bench"))
    source = process.source
    seen = 0

    def work(product) -> int:
        return 1

    t0 = time.perf_counter()  # begin_job too: the file check may read the file (kept for the loop)
    source.begin_job(None)
    for _event_id, products in source.events(0, None):
        seen += work(products[""])
    return time.perf_counter() - t0


def time_uproot(path: Path) -> float:
    t0 = time.perf_counter()
    for _ in uproot.iterate(f"{path}:Events", step_size=10000, library="ak"):
        pass
    return time.perf_counter() - t0


def time_to_first_event(path: Path, repeat: int = 3) -> float:
    """Median of ``hltrun`` start (a fresh interpreter) to the first event, as reported by the job."""
    cfg = Path(tempfile.mkdtemp()) / "ttfe.yaml"
    import yaml

    data = config(path, 1, False)
    data["options"]["wantSummary"] = True
    cfg.write_text(yaml.safe_dump(data))
    code = ("import sys; from hltrun.framework.cli import main; import hltrun.tools.bench.framework; "
            "sys.exit(main(sys.argv[1:]))")
    values = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code, str(cfg), "-n", "10", "-q"], capture_output=True,
                             text=True, check=True, cwd=runner.checkout()).stdout
        line = next(l for l in out.splitlines() if "start to first event" in l)
        values.append(float(line.split("start to first event ")[1].split(" s")[0]))
    return statistics.median(values)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench framework`` options."""
    ap.add_argument("--events", type=runner.positive_int, default=100_000, help="events in the synthetic file (default 100000)")
    runner.add_repeat(ap, 3, "repetitions, interleaved; the median is reported")
    ap.add_argument("--write-doc", action="store_true", help="append the results to docs/performance.md")


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    runner.check_repeat(args.repeat, "hltbench framework")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.root"
        write_sample(path, args.events)
        runs = [("uproot.iterate only", lambda: time_uproot(path)), ("bare loop (source + call)", lambda: time_bare(path)),
                ("hltrun, 1 trivial module", lambda: time_hltrun(path, 1, False)),
                ("hltrun, 10 trivial modules", lambda: time_hltrun(path, 10, False)),
                ("hltrun, 10 modules + Timing", lambda: time_hltrun(path, 10, True))]
        rows = runner.interleave(dict(runs), args.repeat)
        ttfe = time_to_first_event(path)
    n = args.events
    med = {k: statistics.median(v) for k, v in rows.items()}
    bare = med["bare loop (source + call)"]
    lines = [f"events: {n}, repeat: {args.repeat} (median), python {sys.version.split()[0]}", "",
             "| run | s | events/s | µs/event | ratio to bare loop |", "|---|---|---|---|---|"]
    for name, t in med.items():
        lines.append(f"| {name} | {t:.3f} | {n / t:,.0f} | {1e6 * t / n:.2f} | {t / bare:.2f} |")
    per_event = (med["hltrun, 1 trivial module"] - bare) / n * 1e6
    per_module = (med["hltrun, 10 trivial modules"] - med["hltrun, 1 trivial module"]) / (9 * n) * 1e6
    lines += ["", f"framework overhead per event (1 module, minus bare loop): {per_event:.2f} µs",
              f"framework overhead per extra module call: {per_module:.2f} µs"]
    per_call_timing = (med["hltrun, 10 modules + Timing"] - med["hltrun, 10 trivial modules"]) / (10 * n) * 1e6
    lines.append(f"Timing service cost per module call (10-module path, incl. its per-event share): {per_call_timing:.2f} µs")
    lines.append(f"time from hltrun start to first event (median of 3, fresh interpreter): {ttfe:.2f} s")
    text = "\n".join(lines)
    print(text)
    if args.write_doc:
        append_to_doc(runner.checkout() / "docs" / "performance.md", text, n, args.repeat)
    return 0


def append_to_doc(doc: Path, text: str, events: int, repeat: int) -> None:
    """The results as a dated section at the end of ``doc``: the whole page rewritten atomically (an append
    cut by Ctrl-C or a full disk would leave half a section in the docs)."""
    from hltrun.framework.atomic import write_text

    stamp = time.strftime("%Y-%m-%d")
    old = doc.read_text() if doc.exists() else ""
    write_text(doc, f"{old}\n## Framework overhead ({stamp})\n\nCommand: `taskset -c 0 hltbench framework "
                    f"--events {events} --repeat {repeat}`\n\n{text}\n", "hltbench framework --write-doc")

