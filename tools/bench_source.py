"""The ROOT source's cost per event next to uproot's own read of the same branches, in one process.

For each input set (the default path's two shipped samples; a synthetic 100k-event file whose
constituents are stored unsorted, 1-3 jets per event):

* ``uproot``: ``TTree.iterate`` over the branches the source reads, same step size (the I/O floor;
  the shipped samples are LZMA-compressed, as NanoAOD is: decompression dominates it, so the same
  entries rewritten with LZ4 are timed too);
* ``source + batcher``: RootJetSource (file check at begin_job, chunk read, conversion) and the
  default JetBatcher (2 leading jets, 100 constituents, jet-relative) per event, as the path runs them.
  The file check at begin_job may read whole files (one basket per branch: it is kept for the loop),
  so the comparison with uproot is check + loop.

Runs are interleaved and the median of ``--repeat`` is printed. The ratio source/uproot is the
conversion's overhead on top of the read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "data" / "qcd_dijet.root", ROOT / "data" / "rsg_ww_3p5TeV.root"]


class _Job:
    """What the source and the batcher read of the JobContext."""

    def __init__(self) -> None:
        self.consumes: dict = {}


def time_source(files: list[Path], chunk: int) -> tuple[float, float, float, int]:
    """(begin_job s, event loop s, of which bulk I/O s, events) for the source + the default batcher."""
    from framework.event import Event
    from framework.schema import build
    from modules.jet_batcher import JetBatcher, JetBatcherParameters
    from modules.root_source import RootJetSource, RootJetSourceParameters

    src = RootJetSource("source", build(RootJetSourceParameters,
                                        {"files": [str(f) for f in files], "chunk_size": chunk}, "source"))
    batcher = JetBatcher("batcher", build(JetBatcherParameters, {}, "batcher"))
    job = _Job()
    t0 = time.perf_counter()
    src.begin_job(job)
    batcher.begin_job(job)
    t1 = time.perf_counter()
    src.bulk_pending = None  # what the check read for the loop is in the begin_job column
    n, bulk = 0, 0
    for event_id, products in src.events(0, None):
        if getattr(src, "bulk_pending", None) is not None:  # file open, chunk read and conversion, as the event loop takes it
            bulk += src.bulk_pending[0]
            src.bulk_pending = None
        event = Event(event_id, n, 0)
        event.put_as("source", products[""])
        event.current_module = "batcher"
        batcher.produce(event)
        n += 1
    return t1 - t0, time.perf_counter() - t1, bulk * 1e-9, n


def time_uproot(files: list[Path], chunk: int) -> float:
    import uproot

    from framework.schema import build
    from modules.root_source import RootJetSource, RootJetSourceParameters

    names = RootJetSource("s", build(RootJetSourceParameters, {"files": ["x"]}, "s"))._branch_names()
    t0 = time.perf_counter()
    for f in files:
        for _ in uproot.iterate(f"{f}:Events", names, step_size=chunk, library="ak"):
            pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="repetitions, interleaved; the median is printed")
    ap.add_argument("--events", type=int, default=100_000, help="events in the synthetic file (default 100000)")
    args = ap.parse_args(argv)
    from tools.bench_framework import write_sample

    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / "unsorted.root"
        write_sample(synthetic, args.events)
        from modules.rootio import concatenate_trees

        lz4 = []
        for f in SHIPPED:  # the same entries, LZ4 instead of the samples' LZMA: shows what decompression costs
            lz4.append(Path(tmp) / f"{f.stem}_lz4.root")
            concatenate_trees([f], lz4[-1], "Events", compression="lz4")
        sets = {"shipped (default path, chunk 2000)": (SHIPPED, 2000),
                "shipped recompressed LZ4 (chunk 2000)": (lz4, 2000),
                f"synthetic unsorted {args.events} events (chunk 10000)": ([synthetic], 10_000)}
        got: dict[str, dict[str, list[float]]] = {k: {"uproot": [], "begin": [], "loop": [], "bulk": []} for k in sets}
        events = {}
        for _ in range(args.repeat):
            for name, (files, chunk) in sets.items():
                got[name]["uproot"].append(time_uproot(files, chunk))
                begin, loop, bulk, n = time_source(files, chunk)
                got[name]["begin"].append(begin)
                got[name]["loop"].append(loop)
                got[name]["bulk"].append(bulk)
                events[name] = n
    print(f"median of {args.repeat}, python {sys.version.split()[0]}\n")
    print("| input | events | uproot.iterate µs/event | begin_job (file check) ms | event loop µs/event | of which "
          "bulk I/O (open, read, convert) | source + batcher in all (check + loop) µs/event | in all / uproot |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t in got.items():
        n = events[name]
        up, loop, bulk, begin = (statistics.median(t[k]) for k in ("uproot", "loop", "bulk", "begin"))
        total = begin + loop
        print(f"| {name} | {n} | {1e6 * up / n:.1f} | {1e3 * begin:.0f} | {1e6 * loop / n:.1f} | {1e6 * bulk / n:.1f} "
              f"| {1e6 * total / n:.1f} | {total / up:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
