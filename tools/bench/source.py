"""The ROOT source's cost per event next to uproot's own read of the same branches, in one process.

For each input set (the default path's two shipped samples; a synthetic 100k-event file whose
constituents are stored unsorted, 1-3 jets per event):

* ``uproot``: ``TTree.iterate`` over the branches the source reads, same step size (the I/O floor;
  the shipped samples are LZMA-compressed, as NanoAOD is: decompression dominates it, so the same
  entries rewritten with LZ4 are timed too), single-threaded and with a pool of ``--threads``
  threads as ``decompression_executor`` (uproot's own parallel decompression);
* ``source + batcher``: RootJetSource (file check at begin_job, chunk read, conversion) and the
  default JetBatcher (2 leading jets, 100 constituents, jet-relative) per event, as the path runs them,
  with ``decompression_threads: 0`` (serial) and ``--threads``, and with ``read_ahead`` 0 / 1 (the shipped
  samples hold one basket per branch, so the file check reads them whole and keeps them: read-ahead
  only converts there. A copy with NanoAOD-like baskets, same LZMA level, ``--basket`` entries each,
  is read chunk by chunk in the loop: that set shows the read-ahead's decompression). This loop has
  no inference to overlap the read-ahead with: ``hltrun configs/path.yaml`` shows what it buys.
  The file check at begin_job may read whole files (one basket per branch: it is kept for the loop),
  so the comparison with uproot is check + loop.

Runs are interleaved and the median of ``--repeat`` is printed. The ratio to uproot's single-threaded
read is the conversion's overhead on top of the read, less what the threads win. On a machine shared
with other work the threads win only the cores that are free: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hltrun.framework.resources import local_output_path
from hltrun.tools.bench import runner

SHIPPED = runner.path_files()


def time_source(files: list[Path], chunk: int, threads: int, ahead: int = 0) -> tuple[float, float, float, int]:
    """(begin_job s, event loop s, of which bulk I/O s, events) for the source + the default batcher."""
    from hltrun.framework.context import ModuleContext, SourceContext
    from hltrun.framework.event import Event
    from hltrun.framework.schema import build
    from hltrun.modules.jet_batcher import JetBatcher, JetBatcherParameters
    from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters

    src = RootJetSource("source", build(RootJetSourceParameters,
                                        {"files": [str(f) for f in files], "chunk_size": chunk,
                                                              "decompression_threads": threads,
                                                              "read_ahead": ahead}, "source"))
    batcher = JetBatcher("batcher", build(JetBatcherParameters, {}, "batcher"))
    src_ctx = SourceContext.standalone()  # the batcher's request reaches the source through its channels
    batcher_ctx = ModuleContext("batcher", consumes=JetBatcher.declared_consumes(batcher.params),
                                channels=src_ctx.channels)
    t0 = time.perf_counter()
    src.begin_job(src_ctx)
    batcher.begin_job(batcher_ctx)
    t1 = time.perf_counter()
    src.bulk_pending = None  # what the check read for the loop is in the begin_job column
    n, bulk = 0, 0
    for event_id, products in src.events(0, None):
        if getattr(src, "bulk_pending", None) is not None:  # file open, chunk read and conversion (or the wait for
            # the read-ahead), as the event loop takes it
            bulk += src.bulk_pending[0]
            src.bulk_pending = None
        event = Event(event_id, n, 0)
        event.put_as("source", products[""])
        event.current_module = "batcher"
        batcher.produce(event)
        n += 1
    return t1 - t0, time.perf_counter() - t1, bulk * 1e-9, n


def time_uproot(files: list[Path], chunk: int, threads: int) -> float:
    """uproot's own read of the source's branches; ``threads`` > 1: with a decompression pool."""
    from concurrent.futures import ThreadPoolExecutor

    import uproot

    from hltrun.framework.schema import build
    from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters

    names = RootJetSource("s", build(RootJetSourceParameters, {"files": ["x"]}, "s"))._branch_names()
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    for f in files:
        for _ in uproot.iterate(f"{f}:Events", names, step_size=chunk, library="ak", decompression_executor=pool):
            pass
    if pool is not None:
        pool.shutdown()
    return time.perf_counter() - t0


def rebasket(files: list[Path], target: Path, per_basket: int) -> Path:
    """The entries of ``files`` in one file with a basket every ``per_basket`` entries in every
    branch (as NanoAOD has), LZMA at the shipped samples' level: the loop reads it chunk by chunk."""
    import uproot

    from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod

    from hltrun.framework.atomic import writing

    with writing(target, "hltbench source --write-rebasketed") as staged, \
            uproot.recreate(staged.open(), compression=uproot.LZMA(9)) as out:  # whole or not at all
        for f in files:
            with uproot.open(f) as h:
                tree = h["Events"]
                layout = branch_groups(tree)
                for arrays in tree.iterate(step_size=per_basket, library="ak"):
                    write_nanoaod(out, "Events", regroup(arrays, layout))
    return target


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench source`` options."""
    runner.add_repeat(ap, 3, "repetitions, interleaved; the median is printed")
    ap.add_argument("--events", type=runner.positive_int, default=100_000, help="events in the synthetic file (default 100000)")
    ap.add_argument("--threads", type=runner.positive_int, default=None,
                    help="decompression threads for the parallel runs (default: the source's auto setting)")
    ap.add_argument("--basket", type=runner.positive_int, default=500, help="entries per basket in the re-basketed LZMA copy (500)")
    ap.add_argument("--write-rebasketed", type=local_output_path, metavar="FILE",
                    help="only write the re-basketed LZMA copy of the shipped samples to FILE (to time the whole "
                         "path on it: hltrun configs/path.yaml 'source.files=[FILE]') and exit")


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    from hltrun.modules.decompression import available_cores, threads_for
    from hltrun.tools.bench.framework import write_sample

    if args.write_rebasketed:
        print(rebasket(SHIPPED, args.write_rebasketed, args.basket))
        return 0
    threads = args.threads or threads_for(None, 11)
    kept = {"serial": (0, 0), f"{threads} threads": (threads, 0)}  # read whole at the check: read-ahead converts only
    full = {**kept, "read-ahead 1": (0, 1), f"{threads} threads + read-ahead 1": (threads, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / "unsorted.root"
        write_sample(synthetic, args.events)
        from hltrun.modules.rootio import concatenate_trees

        lz4 = []
        for f in SHIPPED:  # the same entries, LZ4 instead of the samples' LZMA: shows what decompression costs
            lz4.append(Path(tmp) / f"{f.stem}_lz4.root")
            concatenate_trees([f], lz4[-1], "Events", compression="lz4")
        baskets = rebasket(SHIPPED, Path(tmp) / "shipped_baskets.root", args.basket)
        sets = {"shipped (default path, chunk 2000)": (SHIPPED, 2000, full),
                f"shipped, LZMA, {args.basket}-entry baskets (chunk 2000)": ([baskets], 2000, full),
                "shipped recompressed LZ4 (chunk 2000)": (lz4, 2000, kept),
                f"synthetic unsorted {args.events} events (chunk 10000)": ([synthetic], 10_000, kept)}
        got = {(k, v): {"uproot": [], "begin": [], "loop": [], "bulk": []}
               for k, (_, _, vs) in sets.items() for v in vs}
        events = {}
        for _ in range(args.repeat):
            for name, (files, chunk, variants) in sets.items():
                for variant, (n_threads, ahead) in variants.items():  # interleaved: serial, threads, ...
                    t = got[name, variant]
                    t["uproot"].append(time_uproot(files, chunk, n_threads))
                    begin, loop, bulk, n = time_source(files, chunk, n_threads, ahead)
                    t["begin"].append(begin)
                    t["loop"].append(loop)
                    t["bulk"].append(bulk)
                    events[name] = n
    print(f"median of {args.repeat}, python {sys.version.split()[0]}, {available_cores()} cores available\n")
    print("| input | events | decompression | uproot.iterate µs/event (same threads) | begin_job (file check) ms "
          "| event loop µs/event | of which bulk I/O (open, read, convert; with read-ahead: the wait) "
          "| source + batcher in all (check + loop) µs/event | in all / uproot single-threaded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, variant), t in got.items():
        n = events[name]
        up, loop, bulk, begin = (statistics.median(t[k]) for k in ("uproot", "loop", "bulk", "begin"))
        serial_up = statistics.median(got[name, "serial"]["uproot"])
        total = begin + loop
        print(f"| {name} | {n} | {variant} | {1e6 * up / n:.1f} | {1e3 * begin:.0f} | {1e6 * loop / n:.1f} "
              f"| {1e6 * bulk / n:.1f} | {1e6 * total / n:.1f} | {total / serial_up:.2f} |")
    return 0

