"""The default HLT path in hltrun vs a bare loop doing the same work, in one process.

* ``bare loop``: read the shipped samples with uproot.iterate (chunks of 2000), build each event's
  (2, 100, 3) model input per chunk with the source's own numpy kernels, one plain
  ``onnxruntime.InferenceSession.run`` per event (one intra-op thread), max over jets > threshold;
  once with uproot's default serial decompression, once with the thread pool hltrun's source uses by
  default (``source.decompression_threads``: auto), so that the second ratio is hltrun's framework
  cost alone and the first what a user gains over the plain loop;
* ``hltrun``: configs/path.yaml (source, batcher, VAEAnomalyScorer on ONNX Runtime, filter), without
  the output module, with and without the Timing service.

Both are timed from the first file open to the last event: the bare loop's session creation and the
modules' begin_job (model load, warm-up) are start-up (``hltbench startup`` times it); the source's
begin_job (opening and checking the files) is part of hltrun's time.

Both runs make the same decisions (checked); the ratio is hltrun's cost over the bare loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from hltrun.tools.bench import runner
from hltrun.tools.catalogue import models_dir

FILES = runner.path_files()


def bare_loop(model: Path, threshold: float, threads: int = 1) -> tuple[float, list[bool]]:
    """uproot.iterate in chunks of 2000 (``threads`` > 1: baskets decompressed in a thread pool of
    that size), the source's own numpy kernels (hltrun.modules.jets: the 2 leading jets with constituents,
    padded, jet-relative, per chunk), one ``InferenceSession.run`` per event."""
    from concurrent.futures import ThreadPoolExecutor
    import awkward as ak
    import onnxruntime as ort
    import uproot

    from hltrun.modules.jets import InputSpec
    from hltrun.modules.root_source import make_chunk

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    session.run(["score"], {"jets": np.zeros((2, 100, 3), np.float32)})
    spec = InputSpec(2, 100, True)
    names = ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_nConstituents",
             "FatJetPFCand_pt", "FatJetPFCand_eta", "FatJetPFCand_phi"]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    executor = {"decompression_executor": pool} if pool is not None else {}
    t0 = time.perf_counter()
    decisions = []
    for f in FILES:
        for a in uproot.iterate(f"{f}:Events", names, step_size=2000, library="ak", **executor):
            def flat(name: str, dtype=np.float32) -> np.ndarray:
                return np.asarray(ak.flatten(a[name], axis=None), dtype=dtype)

            counts = np.asarray(ak.num(a["FatJet_pt"], axis=1), dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            pt = flat("FatJet_pt")
            jet_of_cand = np.repeat(np.arange(len(pt)), flat("FatJet_nConstituents", np.int64))
            chunk = make_chunk(offsets, pt, flat("FatJet_eta"), flat("FatJet_phi"), np.zeros_like(pt),
                               (jet_of_cand, flat("FatJetPFCand_eta"), flat("FatJetPFCand_phi"),
                                flat("FatJetPFCand_pt")), None, None, 100, [spec])
            inputs = chunk.prepare(spec)
            for i in range(len(counts)):
                x = inputs.event(i)[0]
                if len(x):
                    (score,) = session.run(["score"], {"jets": x})
                    decisions.append(bool(score.max() > threshold))
                else:
                    decisions.append(False)
    elapsed = time.perf_counter() - t0
    if pool is not None:
        pool.shutdown()
    return elapsed, decisions


def hltrun_path(timing: bool) -> tuple[float, list[bool]]:
    from hltrun.framework.eventloop import EventProcessor

    process = runner.default_path("path", {"Timing": {"calibrate": False}} if timing else {})
    decisions: dict[int, bool] = {}
    process.signals.post_event.connect(
        lambda event, status: decisions.__setitem__(event.index, event.trigger_results["HLT_AnomalyDetection"]))
    began: dict[str, float] = {}
    process.signals.pre_module_begin_job.connect(lambda d: began.__setitem__(d.label, time.perf_counter()))
    process.signals.post_module_begin_job.connect(
        lambda d: began.__setitem__(d.label, time.perf_counter() - began[d.label]))
    summary = EventProcessor(process).run()
    # the modules' begin_job (model load and warm-up) is start-up, as the bare loop's session creation
    # is; the source's (opening and checking the files, which may read them) counts as reading
    return summary.wall_s - summary.begin_job_s + began["source"], [decisions[i] for i in sorted(decisions)]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench path`` options."""
    runner.add_repeat(ap, 3, "repetitions, interleaved; the median is reported")
    runner.add_json(ap)


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    runner.check_repeat(args.repeat, "hltbench path")
    import os

    os.chdir(runner.checkout())
    threshold = json.loads((models_dir() / "thresholds.json").read_text())["conv_vae"]["bkg_eff_1e-2"]
    model = models_dir() / "conv_vae.onnx"
    from hltrun.modules.decompression import threads_for

    threads = threads_for(None, 7)  # what the source picks by default for its 7 branches
    pooled = f"bare loop, {threads} decompression threads (as hltrun's source)"
    runs = {"bare loop (uproot + InferenceSession.run)": lambda: bare_loop(model, threshold),
            pooled: lambda: bare_loop(model, threshold, threads),
            "hltrun path": lambda: hltrun_path(False), "hltrun path + Timing": lambda: hltrun_path(True)}
    timed = runner.interleave(runs, args.repeat)
    times = {name: [t for t, _ in got] for name, got in timed.items()}
    decisions = {name: got[-1][1] for name, got in timed.items()}
    ref = decisions["bare loop (uproot + InferenceSession.run)"]
    assert all(d == ref for d in decisions.values()), "hltrun and the bare loop disagree on decisions"
    n = len(ref)
    bare = statistics.median(times["bare loop (uproot + InferenceSession.run)"])
    print(f"events: {n} (accepted {sum(ref)}), conv_vae on ONNX Runtime, 1 thread, median of {args.repeat}\n")
    same = statistics.median(times[pooled])
    print("| run | s | ms/event | ratio to bare loop | ratio to the bare loop with hltrun's decompression threads |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {t:.3f} | {1e3 * t / n:.3f} | {t / bare:.3f} | {t / same:.3f} |")
    if args.json:
        runner.write_json(args.json, {"events": n, "accepted": sum(ref), "repeat": args.repeat, "seconds": times},
                          "path")
    return 0

