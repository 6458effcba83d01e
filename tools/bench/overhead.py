"""hltrun's own per-event cost on the default path, without I/O: µs per event over a bare loop.

``hltbench path`` compares whole jobs, where ~90 µs per event of LZMA decompression and its
noise hide a few µs of per-event Python. Here the shipped samples are read once, and the same events
(the source's own per-event products) are then fed, again and again, to

* ``bare loop``: one plain ``InferenceSession.run`` per event on the event's model input (the 2
  leading jets), max over jets > threshold;
* ``hltrun``: ``EventProcessor.run`` of configs/path.yaml without the output module and services (the
  batcher, the VAE scorer on ONNX Runtime, the filter, the schedule and the event loop), timed from its
  first event to the end of its loop (``JobSummary.loop_s``), so begin_job and the reading are out.

``--stand-in`` replaces ``onnxruntime.InferenceSession.run`` in both by a function returning zeros of
the right shapes, so that the difference is hltrun's Python alone, without ONNX Runtime's time and
noise (the decisions are then all "reject", in both). Both make the same decisions (checked).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hltrun.tools.bench import runner
from hltrun.tools.catalogue import models_dir

def _stand_in_run(self, names, feeds, run_options=None):  # noqa: ANN001, ANN202
    """InferenceSession.run's stand-in: zeros, one float32 (N,) array per requested output."""
    n = len(next(iter(feeds.values())))
    return [np.zeros(n, np.float32) for _ in names]


def _process():  # noqa: ANN202 - a Process
    return runner.default_path("overhead", {})


def hltrun_loop(items: list) -> tuple[float, list[bool]]:
    """Seconds of hltrun's event loop over ``items`` (the source's (id, products) pairs) and its decisions."""
    from hltrun.framework.eventloop import EventProcessor

    process = _process()
    process.source.events = lambda skip, limit: iter(items)  # the events already read, not the files
    decisions: dict[int, bool] = {}
    process.signals.post_event.connect(
        lambda event, status: decisions.__setitem__(event.index, event.trigger_results["HLT_AnomalyDetection"]))
    summary = EventProcessor(process).run()
    return summary.loop_s, [decisions[i] for i in sorted(decisions)]


def bare_loop(inputs: list[np.ndarray], model: Path, threshold: float) -> tuple[float, list[bool]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    session.run(["score"], {"jets": np.zeros((2, 100, 3), np.float32)})
    decisions = []
    t0 = time.perf_counter()
    for x in inputs:
        if len(x):
            (score,) = session.run(["score"], {"jets": x})
            decisions.append(bool(score.max() > threshold))
        else:
            decisions.append(False)
    return time.perf_counter() - t0, decisions


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench overhead`` options."""
    runner.add_repeat(ap, 9, "repetitions, interleaved; the fastest is reported")
    ap.add_argument("--stand-in", action="store_true",
                    help="replace InferenceSession.run by a function returning zeros (hltrun's Python alone)")


def run(args: argparse.Namespace) -> int:
    """Run the study; print its table (exit 0), or 1 when its check fails."""
    runner.check_repeat(args.repeat, "hltbench overhead")
    import os

    os.chdir(runner.checkout())
    if args.stand_in:
        import onnxruntime as ort

        ort.InferenceSession.run = _stand_in_run
    from hltrun.modules.jets import InputSpec, requested_specs

    threshold = json.loads((models_dir() / "thresholds.json").read_text())["conv_vae"]["bkg_eff_1e-2"]
    model = models_dir() / "conv_vae.onnx"
    reader = _process()
    reader.begin_job()
    items = list(reader.source.events(0, None))
    (spec,) = requested_specs(reader.channels.requests["source"])  # through the batcher: its consumers' inputs
    assert spec == InputSpec(2, 100, True), spec  # the shipped input: what the bare loop feeds
    inputs = [products[""].model_input(spec)[0] for _, products in items]
    bare, path = [], []
    for _ in range(args.repeat):
        t, ref = bare_loop(inputs, model, threshold)
        bare.append(t)
        t, got = hltrun_loop(items)
        path.append(t)
        assert got == ref, "hltrun and the bare loop disagree on decisions"
    n = len(items)
    b, h = 1e6 * min(bare) / n, 1e6 * min(path) / n
    what = "a stand-in returning zeros" if args.stand_in else "ONNX Runtime"
    print(f"events: {n}, conv_vae, InferenceSession.run: {what}, fastest of {args.repeat}, I/O excluded\n")
    print("| run | µs/event | over the bare loop |\n|---|---|---|")
    print(f"| bare loop (InferenceSession.run per event) | {b:.2f} | |")
    print(f"| hltrun event loop (batcher, scorer, filter) | {h:.2f} | **{h - b:+.2f} µs** ({h / b:.3f}×) |")
    return 0

