#!/usr/bin/env python3
"""Where an ONNX model's inference time goes, per jet, against one core's sgemm rate.

Why: the per-jet targets of the trigger path (issue 8) are checked against what the hardware can do,
and a slow model is only fixed once one knows which part of its graph is slow.  For ANY ONNX model
this tool prints, with ONNX Runtime on one thread (sequential execution, full graph optimisation):

* µs per jet at each batch size (median of repeated timed calls, alternating the models given so
  that machine noise hits them alike), and the fastest single call (on a shared machine the closer
  estimate of a quiet one);
* the share of ORT's kernel time per top-level graph scope (``encoder`` / ``decoder`` / ``score`` /
  ``kl`` for the hltrun VAEs), from ORT's own profiler.  The scope of a node is the first component
  of its name after the prefix that all scoped node names share (``conv_vae_1/encoder_1/...`` ->
  ``encoder``; trailing ``_<n>`` removed); nodes ORT created or renamed while optimising and nodes
  without a ``/`` in their name go to ``(unscoped)``;
* FLOP per jet of the model's matrix ops (Conv, ConvTranspose, MatMul, Gemm: 2 x multiply-
  accumulates, shapes from one run at batch 1; also shown: the FLOP ORT really ran, from the
  profiler, which includes the channel padding of its blocked NCHWc convolutions) and the ratio of
  the measured time to ``FLOP / sgemm rate``, where the sgemm rate is measured in the same run on one core:
  ONNX Runtime's own MatMul (256 x 256 x 256, one thread) and numpy's matmul limited to one thread by
  threadpoolctl (its BLAS kernel is printed; OPENBLAS_CORETYPE, where set, selects it).

The models' input must be float32 with one dynamic (batch) axis.  A (N, 100, 3) input gets real jets
from ``--sample`` (the shipped QCD file); any other input gets standard-normal values.

Example (pinned to one core; the figures in docs/inference.md were made so)::

    taskset -c 0 hltbench profile conv_vae gcn_vae
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.resources import local_output_path
from hltrun.framework.errors import ModuleError, one_line
from hltrun.modules.inference.base import check_model_file
from hltrun.tools.bench import runner
from hltrun.tools.bench.flops import count_macs, declared_jet_shapes, sgemm_rates
from hltrun.tools.catalogue import MODELS, models_dir, sample_path

MATRIX_OPS = ("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul",
              "MatMulIntegerToFloat", "QGemm", "Conv", "FusedConv", "NhwcFusedConv", "QLinearConv",
              "ConvTranspose", "QLinearMatMul")
UNSCOPED = "(unscoped)"


def model_file(name: str) -> Path:
    """A catalogue model name (``conv_vae``) means its shipped ONNX file; anything else is a path."""
    return models_dir() / f"{name}.onnx" if name in MODELS else Path(name)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench profile`` options."""
    p.add_argument("models", nargs="+", type=model_file, metavar="MODEL",
                   help=f"ONNX files or shipped model names ({', '.join(MODELS)}), timed alternately in one process")
    p.add_argument("--batch-sizes", nargs="+", type=runner.positive_int, default=[1, 2, 9, 64], help="jets per call")
    p.add_argument("--profile-batch", type=runner.positive_int, default=64, help="batch size of the profiled calls")
    p.add_argument("--profile-calls", type=runner.positive_int, default=50, help="profiled calls per model")
    p.add_argument("--min-time", type=runner.seconds, default=0.4,
                   help="seconds timed per (model, batch) cell, split into --repeat alternating rounds (0: 3 calls "
                        "per round)")
    runner.add_repeat(p, 5, "alternating rounds; the median round counts")
    p.add_argument("--threads", type=runner.positive_int, default=1, help="ORT intra-op threads")
    p.add_argument("--sample", type=Path, default=sample_path("qcd_dijet"),
                   help="ROOT file whose leading jets feed (N, 100, 3) inputs")
    p.add_argument("--top-nodes", type=int, default=0, help="also list the N most expensive nodes")
    runner.add_json(p)
    p.add_argument("--save-optimised", type=local_output_path, default=None,
                   help="folder: write the graph ORT optimised and ran, <model>.ort-optimised.onnx")


# ------------------------------------------------------------------------------------ inputs
def make_inputs(sess: Any, batch: int, jets: np.ndarray | None,
                declared: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """One feed: real jets for a (N, 100, 3) input, standard normal values for anything else, each input of
    the shape its declared contract gives (``flops.declared_jet_shapes``) where the model declares one: an
    open constituent axis took the batch size, so that batch 64 timed 64 constituents per jet, batch 1 one."""
    feed = {}
    rng = np.random.default_rng(0)
    for inp in sess.get_inputs():  # float32, a batch axis: ``check_inputs``
        jet = (declared or {}).get(inp.name)
        shape = [batch, *jet[1:]] if jet else [batch if not isinstance(d, int) else d for d in inp.shape]
        if jets is not None and shape[1:] == list(jets.shape[1:]):
            reps = -(-batch // len(jets))
            feed[inp.name] = np.ascontiguousarray(np.tile(jets, (reps, 1, 1))[:batch])
        else:
            feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def check_inputs(path: Path, sess: Any, batches: list[int]) -> None:
    """What the tool feeds: float32 inputs with a batch axis, each timed batch size; otherwise one line
    naming the model and the input. A fixed batch is profiled at that batch only (``--batch-sizes`` and
    ``--profile-batch`` set to it), not fed a batch it refuses."""
    for inp in sess.get_inputs():
        what = f"hltbench profile: model {path} input {inp.name!r}"
        if inp.type != "tensor(float)":
            raise runner.BenchError(f"{what} is {inp.type}; only float32 inputs are supported")
        if not inp.shape:
            raise runner.BenchError(f"{what} has no shape (unknown rank, or a scalar); the tool feeds a batch of "
                                    f"jets along a first axis: export the model with its input's shape")
        fixed = inp.shape[0]
        if isinstance(fixed, int) and fixed > 0 and set(batches) != {fixed}:
            raise runner.BenchError(f"{what} takes a fixed batch of {fixed} (shape {list(inp.shape)}), not "
                                    f"{sorted(set(batches))}: profile it at its batch (--batch-sizes {fixed} "
                                    f"--profile-batch {fixed}) or export it with a dynamic first axis")


def session(path: Path, threads: int, profile: bool = False, prefix: str | None = None,
            optimised: Path | None = None) -> Any:
    """ORT CPU session as the hltrun backend opens it (one thread, sequential, all optimisations); a
    file ONNX Runtime cannot load is one line naming it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # no warning about serialising an NCHWc-optimised graph
    if optimised is not None:
        opts.optimized_model_filepath = str(optimised)
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = prefix
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # not ONNX, no graph, an op ORT lacks: ORT's words, in one line
        raise runner.BenchError(f"hltbench profile: cannot load model {path}: {type(exc).__name__}: "
                                f"{one_line(exc)}") from None


# ------------------------------------------------------------------------------------ timing
def time_models(sessions: dict[str, Any], feeds: dict[str, dict[int, dict]], batches: list[int],
                min_time: float, rounds: int, best: dict | None = None) -> dict[str, dict[int, float]]:
    """µs per jet per (model, batch): per round, each model in turn runs for min_time/rounds seconds;
    per round the median call counts; the median over rounds is returned.  ``best`` (if given) gets
    the fastest single call per (model, batch): on a busy machine the closest to a quiet one."""
    per_round: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in sessions}
    fastest: dict[str, dict[int, float]] = {m: {} for m in sessions}
    for b in batches:
        for s in sessions:
            try:
                sessions[s].run(None, feeds[s][b])  # warm-up (arena growth)
            except Exception as exc:  # a model that fails on what check_inputs let through: one line
                raise runner.BenchError(f"hltbench profile: model {s} failed on a batch of {b}: "
                                        f"{type(exc).__name__}: {one_line(exc)}") from None
        for _ in range(rounds):
            for name, sess in sessions.items():
                times, t_end = [], time.perf_counter() + min_time / rounds
                while time.perf_counter() < t_end or len(times) < 3:
                    t0 = time.perf_counter()
                    sess.run(None, feeds[name][b])
                    times.append(time.perf_counter() - t0)
                per_round[name][b].append(statistics.median(times) / b * 1e6)
                fastest[name][b] = min(fastest[name].get(b, float("inf")), min(times) / b * 1e6)
    if best is not None:
        best.update(fastest)
    return {m: {b: statistics.median(v) for b, v in per_b.items()} for m, per_b in per_round.items()}


# ------------------------------------------------------------------------------------ profiler
def scope_of(node: str, prefix: list[str]) -> str:
    """Top-level scope of a node name, after the shared prefix (see the module docstring)."""
    parts = [p for p in re.sub(r"^fused ", "", node).split("/") if p]
    if len(parts) < 2:
        return UNSCOPED
    rest = parts[len(prefix):] if parts[:len(prefix)] == prefix else parts
    if len(rest) < 2:
        return UNSCOPED
    return re.sub(r"_\d+$", "", rest[0]) or UNSCOPED


def shared_prefix(names: list[str]) -> list[str]:
    """Leading name components common to every scoped node name (e.g. ['conv_vae_1'])."""
    split = [[p for p in re.sub(r"^fused ", "", n).split("/") if p][:-1] for n in names if "/" in n]
    if not split:
        return []
    prefix = split[0]
    for parts in split[1:]:
        k = 0
        while k < min(len(prefix), len(parts)) and prefix[k] == parts[k]:
            k += 1
        prefix = prefix[:k]
    return prefix


def matrix_flop(op: str, ins: list[list[int]], outs: list[list[int]]) -> float:
    """2 x multiply-accumulates of one matrix op, from the shapes the profiler recorded."""
    if not ins or not outs:
        return 0.0
    out = float(np.prod(outs[0]))
    if op in ("Conv", "FusedConv", "NhwcFusedConv", "QLinearConv"):
        w = ins[3] if op == "QLinearConv" else ins[1]
        return 2.0 * out * float(np.prod(w[1:]))
    if op == "ConvTranspose":
        return 2.0 * float(np.prod(ins[0])) * float(np.prod(ins[1][1:]))
    if op in ("Gemm", "FusedGemm", "QGemm"):
        m = outs[0][0] if outs[0] else 1
        return 2.0 * out * float(np.prod(ins[0])) / max(m, 1)
    a = ins[0]
    return 2.0 * out * (a[-1] if a else 1)


def _shapes(spec: Any) -> list[list[int]]:
    return [list(next(iter(d.values()))) for d in (spec or [])]


def weight_shapes(optimised: Path) -> dict[str, list[list[int]]]:
    """node name -> shapes of its initializer inputs, in the graph ORT really runs (the profiler
    leaves constant inputs out of its shape lists)."""
    import onnx

    graph = onnx.load(str(optimised)).graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    return {n.name: [inits[i] for i in n.input if i in inits] for n in graph.node}


def profile_model(path: Path, feed: dict[str, np.ndarray], calls: int, threads: int,
                  save_optimised: Path | None = None) -> dict[str, Any]:
    """Run ``calls`` profiled calls; kernel time per scope and op type, FLOP per call."""
    with tempfile.TemporaryDirectory() as tmp:
        optimised = save_optimised or Path(tmp) / "optimised.onnx"
        sess = session(path, threads, profile=True, prefix=str(Path(tmp) / "prof"), optimised=optimised)
        for _ in range(calls + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
        weights = weight_shapes(optimised)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    first_run_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    kernels = [e for e in kernels if e["ts"] >= first_run_end]  # drop the warm-up call
    names = [e["name"][:-len("_kernel_time")] for e in kernels]
    prefix = shared_prefix(names)
    # per node: the median over the calls, so that a call descheduled on a busy machine does not
    # charge its pause to whichever kernel was running
    durations: dict[str, list[float]] = defaultdict(list)
    info: dict[str, tuple[str, float]] = {}
    for e, node in zip(kernels, names):
        args = e.get("args", {})
        op = args.get("op_name", "?")
        durations[node].append(e["dur"])
        if node not in info:
            flop = 0.0
            if op in MATRIX_OPS:
                ins = _shapes(args.get("input_type_shape"))
                if op in ("Conv", "FusedConv", "ConvTranspose") and len(ins) < 2:
                    ins = ins[:1] + weights.get(re.sub(r"^fused ", "", node), [])
                flop = matrix_flop(op, ins, _shapes(args.get("output_type_shape")))
            info[node] = (op, flop)
    by_scope: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = {}
    for node, durs in durations.items():
        op, _ = info[node]
        med = statistics.median(durs)
        by_scope[scope_of(node, prefix)] += med
        by_op[op] += med
        by_node[f"{op} {node}"] = med
    flop = sum(f for _, f in info.values())
    total = sum(by_scope.values()) or 1.0
    run_us = statistics.median([r["dur"] for r in runs[1:]]) if len(runs) > 1 else float("nan")
    return {"kernel_us_per_call": total, "run_us_per_call": run_us,
            "scope_share": {k: v / total for k, v in sorted(by_scope.items(), key=lambda kv: -kv[1])},
            "op_share": {k: v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]},
            "node_share": {k: v / total for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])},
            "flop_per_call": flop, "n_kernels_per_call": len(durations)}


def model_flop_per_jet(path: Path) -> float:
    """2 x multiply-accumulates per jet of the model's own Conv/ConvTranspose/MatMul/Gemm (shapes from
    one run at batch 1, ``hltrun.tools.bench.flops.count_macs``): the work the model defines, without the
    channel padding of ORT's blocked (NCHWc) convolutions; 0 if the graph cannot be run at batch 1."""
    try:
        macs = count_macs(path)
    except Exception as exc:  # a model whose input is not a single float tensor: fall back to the profile
        print(f"hltbench profile: FLOP count of {path} failed ({exc}); using the profiled ops", file=sys.stderr)
        return 0.0
    return 2.0 * (macs["weights"] + macs["data"])


# ------------------------------------------------------------------------------------ main
def load_sample_jets(sample: Path) -> np.ndarray | None:
    """Leading jets of the sample as (N, 100, 3), or None when it cannot be read."""
    try:
        from hltrun.modules.models.preprocess import load_jets

        return load_jets(str(sample), max_events=500)[0]
    except Exception as exc:  # any model still profiles, on random inputs
        print(f"hltbench profile: {sample}: {exc}; using random inputs", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """Profile the models; print the tables (and --json)."""
    runner.check_repeat(args.repeat, "hltbench profile")
    if args.top_nodes < 0:  # a negative N would slice off the last nodes instead of listing the first N
        raise runner.BenchError(f"hltbench profile: --top-nodes must be at least 0 (got {args.top_nodes})")
    for m in args.models:  # missing, unreadable, a FIFO, empty: hltrun's line, before ONNX Runtime sees it
        try:
            check_model_file(m, (), "hltbench profile")
        except ModuleError as exc:
            raise runner.BenchError(str(exc)) from None
    import onnxruntime as ort

    names = {str(m): m for m in args.models}
    sessions = {n: session(p, args.threads) for n, p in names.items()}
    batches = sorted(set(args.batch_sizes) | {args.profile_batch})
    for n, s in sessions.items():  # before the sample is read: a model the tool cannot feed is the one line
        check_inputs(names[n], s, batches)
    jets = load_sample_jets(args.sample)
    declared = {n: declared_jet_shapes(names[n], [(i.name, i.shape) for i in s.get_inputs()])
                for n, s in sessions.items()}  # a declared (N, 40, 5) is fed (b, 40, 5), whatever axes it leaves open
    feeds = {n: {b: make_inputs(s, b, jets, declared[n]) for b in batches} for n, s in sessions.items()}
    rates = sgemm_rates()
    best: dict[str, dict[int, float]] = {}
    us = time_models(sessions, feeds, sorted(set(args.batch_sizes)), args.min_time, args.repeat, best)
    rates_after = sgemm_rates()  # the rate before and after the timing shows how steady the core was
    ort_rate = statistics.mean([rates["ort_gflops"], rates_after["ort_gflops"]])
    if args.save_optimised:
        args.save_optimised.mkdir(parents=True, exist_ok=True)
    prof = {n: profile_model(p, feeds[n][args.profile_batch], args.profile_calls, args.threads,
                             args.save_optimised / f"{p.stem}.ort-optimised.onnx" if args.save_optimised else None)
            for n, p in names.items()}

    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s); sgemm {rates['n']}^3 one core: ORT MatMul "
          f"{rates['ort_gflops']:.1f} -> {rates_after['ort_gflops']:.1f} GFLOP/s (before -> after), numpy "
          f"{rates['numpy_gflops'] or float('nan'):.1f} GFLOP/s [{rates['numpy_blas']}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE')}]")
    for n, path in names.items():
        p = prof[n]
        ran_jet = p["flop_per_call"] / args.profile_batch
        flop_jet = model_flop_per_jet(path) or ran_jet
        floor_us = flop_jet / (ort_rate * 1e3)
        floor = (f"sgemm floor {floor_us:.1f} µs per jet (ORT MatMul rate)" if floor_us > 0 else
                 "sgemm floor n/a: the model has no matrix products (Conv/ConvTranspose/MatMul/Gemm), its time "
                 "is element-wise work")
        print(f"\n{n}: {flop_jet / 1e6:.2f} MFLOP per jet in matrix ops ({ran_jet / 1e6:.2f} as ORT ran them, with "
              f"NCHWc channel padding) -> {floor}")
        print("  batch   µs/jet (median)  x floor   µs/jet (fastest call)  x floor")
        for b, v in us[n].items():
            ratios = (f"{v / floor_us:9.2f}", f"{best[n][b] / floor_us:8.2f}") if floor_us > 0 else (f"{'n/a':>9}", f"{'n/a':>8}")
            print(f"  {b:5d} {v:15.1f} {ratios[0]} {best[n][b]:22.1f} {ratios[1]}")
        print(f"  profile at batch {args.profile_batch} (per-node medians): kernels "
              f"{p['kernel_us_per_call'] / args.profile_batch:.1f} µs/jet of run "
              f"{p['run_us_per_call'] / args.profile_batch:.1f} µs/jet, {p['n_kernels_per_call']:.0f} kernels per call")
        print("  scope share of kernel time: " + ", ".join(f"{k} {v:.1%}" for k, v in p["scope_share"].items()))
        print("  top ops: " + ", ".join(f"{k} {v:.1%}" for k, v in p["op_share"].items()))
        for k, v in list(p["node_share"].items())[:args.top_nodes]:
            print(f"    {v:6.1%}  {k}")
        p.update(us_per_jet=us[n], us_per_jet_fastest=best[n], mflop_per_jet=flop_jet / 1e6,
                 mflop_per_jet_as_run=ran_jet / 1e6, floor_us_per_jet=floor_us if floor_us > 0 else None)
    if args.json:
        out = {"onnxruntime": ort.__version__, "threads": args.threads, "sgemm": [rates, rates_after],
               "models": prof, "command": "hltbench " + " ".join(args.argv)}
        runner.write_json(args.json, out, "profile")
    return 0

