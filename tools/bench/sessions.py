#!/usr/bin/env python3
"""One ONNX Runtime session shared by the streams, or one per stream: which is faster? (issue 8 point 6)

Why: ``InferenceSession.run`` is thread-safe, so the scorer's per-stream sessions could be one. This
times exactly that question without the framework around it: T threads each run the shipped model on
the two leading jets of consecutive events of a shipped sample (the default path's per-event call),
either all through one session or each through its own; one intra-op thread per session, as CMSSW
and hltrun configure it.  Modes alternate round by round in one process; the median round counts.
Also reported: the process RSS after the sessions are built (what sharing would save).

Example::

    hltbench sessions --threads 2 --repeat 5
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from hltrun.tools.bench import runner
from hltrun.tools.catalogue import models_dir, rss_mb, sample_path



def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench sessions`` options."""
    p.add_argument("--model", type=Path, default=models_dir() / "conv_vae.onnx", help="ONNX model")
    p.add_argument("--sample", type=Path, default=sample_path("qcd_dijet"),
                   help="ROOT file whose two leading jets per event make the calls")
    p.add_argument("--threads", type=runner.positive_int, default=2, help="concurrent callers (streams)")
    p.add_argument("--events", type=runner.positive_int, default=2000, help="calls per thread per round")
    runner.add_repeat(p, 5, "alternating rounds per mode; the median round counts")


def make_session(model: Path):  # noqa: ANN201 - onnxruntime.InferenceSession
    """One session as the scorer builds it on the CPU: one intra-op and one inter-op thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def per_event_batches(sample: Path) -> list[np.ndarray]:
    """The (n_jets, 100, 3) input of every event: its two leading jets, as the default path feeds them."""
    jets, event = runner.read_sample_jets(sample, "hltbench sessions")
    starts = np.flatnonzero(np.r_[True, event[1:] != event[:-1]])
    return [np.ascontiguousarray(b) for b in np.split(jets, starts[1:])]


def timed_round(sessions: list, batches: list[np.ndarray], events: int) -> float:
    """Wall seconds for len(sessions) threads to make ``events`` calls each (thread i uses sessions[i]).

    The main thread waits for each caller's own ``done`` event, not ``Thread.join``: Ctrl-C landing in
    CPython 3.11's join marks the still-running thread stopped (bpo-45274's fix releases the lock the
    running thread holds), so a second join, and interpreter shutdown, no longer waited for it and the
    process aborted at exit with a caller still inside ONNX Runtime ("terminate called without an
    active exception", exit 134)."""
    start = threading.Barrier(len(sessions) + 1)
    stop = threading.Event()
    done = [threading.Event() for _ in sessions]

    def work(sess, offset: int, finished: threading.Event) -> None:  # noqa: ANN001
        try:
            start.wait()
            for k in range(events):
                if stop.is_set():
                    return
                sess.run(None, {"jets": batches[(offset + k) % len(batches)]})
        except threading.BrokenBarrierError:
            return
        finally:
            finished.set()

    threads = [threading.Thread(target=work, args=(s, i * 997, done[i])) for i, s in enumerate(sessions)]
    try:
        for t in threads:  # inside the try: an interrupt in a start() must release those already waiting
            t.start()
        t0 = time.perf_counter()
        start.wait()
        for finished in done:
            finished.wait()
    except BaseException:  # Ctrl-C: the callers stop after their call, so the process exits cleanly (no abort)
        stop.set()
        start.abort()
        for t, finished in zip(threads, done):
            if t.ident is not None:  # launched (a start() cut short may still have launched it)
                finished.wait()
        raise
    seconds = time.perf_counter() - t0
    for t in threads:
        t.join()  # each has set its event: only its last bytecodes are left
    return seconds


def run(args: argparse.Namespace) -> int:
    """Print calls per second for each mode and the RSS cost of the sessions."""
    runner.check_repeat(args.repeat, "hltbench sessions")
    runner.check_model(args.model, "hltbench sessions")
    batches = per_event_batches(args.sample)
    base = rss_mb()
    shared = make_session(args.model)
    after_one = rss_mb()
    own = [make_session(args.model) for _ in range(args.threads)]
    after_all = rss_mb()
    modes = {"shared": [shared] * args.threads, "one per thread": own, "single thread": [shared]}
    for sessions in modes.values():  # warm-up: first calls allocate arenas
        timed_round(sessions, batches, 50)
    seconds = runner.interleave({m: (lambda s=s: timed_round(s, batches, args.events)) for m, s in modes.items()},
                                args.repeat)
    print(f"{args.model.name}, {len(batches)} events of {args.sample.name}, {args.threads} threads x "
          f"{args.events} calls per round, median of {args.repeat} rounds")
    rate = {m: len(modes[m]) * args.events / statistics.median(v) for m, v in seconds.items()}
    print("| mode | calls/s | vs single thread |\n|---|---|---|")
    for mode in modes:
        print(f"| {mode} | {rate[mode]:.0f} | {rate[mode] / rate['single thread']:.2f} |")
    print(f"RSS: one session +{after_one - base:.1f} MB; {args.threads} more sessions "
          f"+{after_all - after_one:.1f} MB (what sharing saves)")
    return 0

