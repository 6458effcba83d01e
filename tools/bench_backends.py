#!/usr/bin/env python3
"""Per-jet inference latency of every CPU backend, against the model's arithmetic limit on one core.

Why: the study this project follows (IML 2022) compared TensorFlow and ONNX Runtime latency against
batch size; hltrun must be able to redo that, on this machine, with the backends the trigger path
really uses (modules/inference), and say how far each one is from what the hardware could do.

For each model (Conv-VAE, GCN-VAE) and each backend — TensorFlow in the modes predict / eager /
function / xla, ONNX Runtime fp32 and INT8 — it times ``backend.run`` (what the scorer calls) at
batch sizes 1, 9 (typical jets per HLT event), 64 and 1024, single thread, on real QCD jets, all in
one process on the same machine. The time per call (lowest of three medians over ``--min-time``
seconds in all) is divided by the batch size. ``ort-bare`` is a plain ``InferenceSession.run`` on the fp32 file: the
difference to ``ort-fp32`` is what the backend wrapper (input checks, non-finite handling) costs.

FLOPs per jet are counted from the ONNX graph: 2 x the multiply-accumulates of every Conv,
ConvTranspose, MatMul and Gemm, with shapes taken from one run of the model at batch 1 (so
everything computed in the graph counts: the networks, the GCN adjacency product, the Chamfer
x.y^T). The arithmetic limit of one core is the float32 sgemm rate measured in the same run (ONNX
Runtime's own 256^3 MatMul on one thread, ``tools/profile_onnx.sgemm_rates``; the nominal
``GHz x FLOP/cycle`` from /proc/cpuinfo under-states turbo and AVX-512 by up to 3x), or
``--ghz x --flops-per-cycle`` when ``--ghz`` is given; ``limit`` is the time per jet at that rate,
``eff`` the fraction of it a backend reaches.

Run pinned to one core (prints only), and with ``--docs`` also write the results section of
docs/backends.md::

    taskset -c 0 python tools/bench_backends.py --docs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

MODELS = ("conv_vae", "gcn_vae")
BACKENDS = ("tf-predict", "tf-eager", "tf-function", "tf-xla", "ort-fp32", "ort-int8", "ort-bare")
BATCHES = (1, 9, 64, 1024)
MARK_BEGIN, MARK_END = "<!-- bench_backends:begin -->", "<!-- bench_backends:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(description="Per-jet latency of TF (4 modes) and ONNX Runtime (fp32, INT8) "
                                            "at several batch sizes, single thread, vs the FLOP limit of one core.")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model names in --models-dir")
    p.add_argument("--models-dir", type=Path, default=REPO / "data/models", help="folder with the models")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="what to time")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCHES), help="jets per call")
    p.add_argument("--sample", type=Path, default=REPO / "data/qcd_dijet.root", help="jets to run on")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds timed per (backend, batch) cell")
    p.add_argument("--min-calls", type=int, default=3, help="at least this many timed calls per cell")
    p.add_argument("--ghz", type=float, default=None,
                   help="core clock for a nominal FLOP limit (default: the measured one-core sgemm rate)")
    p.add_argument("--flops-per-cycle", type=float, default=32.0,
                   help="FP32 FLOP per cycle of one core (32: 2 FMA x 8 lanes; 64 for 2 x AVX-512 FMA)")
    p.add_argument("--docs", nargs="?", type=Path, const=REPO / "docs/backends.md", default=None,
                   help="also rewrite the results section of this markdown file (default when given without a "
                        "path: docs/backends.md); without --docs the results are only printed")
    p.add_argument("--note", default="", help="a line added to the results section (e.g. which weights)")
    p.add_argument("--threads", nargs="+", type=int, default=[1],
                   help="intra-op thread counts to sweep for the ONNX Runtime backends (TensorFlow fixes its "
                        "threads once per process, so TF cells always use 1)")
    p.add_argument("--json", type=Path, default=None,
                   help="write every cell (median, p10, p90, calls, RSS) with machine and library versions")
    p.add_argument("--csv", type=Path, default=None, help="the same cells as CSV, one row per cell")
    p.add_argument("--profile", action="store_true",
                   help="instead: where the ONNX models' time goes (tools/profile_onnx.py: µs/jet per batch size, "
                        "share per graph scope from ORT's profiler, ratio to the one-core sgemm rate)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------- FLOPs from the ONNX graph
def count_macs(path: Path) -> dict[str, int]:
    """Multiply-accumulates per jet of Conv/ConvTranspose/MatMul/Gemm, split into ops with weights
    ('weights') and data x data products ('data': Chamfer, GCN adjacency)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    g = model.graph
    heavy = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    inputs = {i.name for i in g.input}
    known = {o.name for o in g.output}
    wanted = sorted({t for n in heavy for t in (*n.input[:2], n.output[0]) if t and t not in inits})
    for name in wanted:
        if name not in known and name not in inputs:
            g.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor name
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 100, 3), np.float32)
    x[0, :50, 2] = 1.0
    x[0, :50, :2] = 0.1
    names = [o.name for o in sess.get_outputs()]
    shapes = dict(inits)
    shapes.update({n: v.shape for n, v in zip(names, sess.run(names, {g.input[0].name: x}))})
    shapes[g.input[0].name] = x.shape
    macs = {"weights": 0, "data": 0}
    for n in heavy:
        a, b, out = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "MatMul":
            m = int(np.prod(out)) * a[-1]
        elif n.op_type == "Gemm":
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            m = int(np.prod(out)) * (a[0] if trans_a else a[-1])
        elif n.op_type == "Conv":
            m = int(np.prod(out)) * int(np.prod(b[1:]))
        else:  # ConvTranspose: every input element meets the whole kernel of its group
            m = int(np.prod(a)) * int(np.prod(b[1:]))
        macs["weights" if (n.input[0] in inits or n.input[1] in inits) else "data"] += int(m)
    return macs


def loadavg() -> str:
    """1-minute load average: other work on the machine shows up here (report it with the numbers)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------- timing
class BareSession:
    """A plain InferenceSession.run, to show what the backend wrapper (checks, NaN handling) costs."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(None, {"jets": x})

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def make_backend(spec: str, models_dir: Path, model: str, threads: int = 1):
    """A loaded backend for 'tf-<mode>', 'ort-fp32'/'ort-int8', or the bare session 'ort-bare'
    (None if the file is missing); ``threads`` applies to the ONNX Runtime ones."""
    from modules.inference import BackendOptions, create_backend

    if spec == "ort-bare":
        path = models_dir / f"{model}.onnx"
        return BareSession(path, threads) if path.exists() else None
    if spec.startswith("tf-"):
        path, name, opts = models_dir / f"{model}.keras", "tensorflow", BackendOptions(mode=spec[3:])
    else:
        suffix = "_int8" if spec == "ort-int8" else ""
        path, name, opts = models_dir / f"{model}{suffix}.onnx", "onnxruntime", BackendOptions(threads=threads)
    if not path.exists():
        return None
    return create_backend(name, path, opts).load()


def time_cell(backend, x: np.ndarray, min_time: float, min_calls: int, rounds: int = 3,
              stats: dict[str, float] | None = None) -> float:
    """Seconds per call of backend.run(x): the lowest of ``rounds`` medians, each over at least
    ``min_time / rounds`` seconds — a burst of other work on the core spoils one round, not the cell.
    ``stats`` (if given) gets the spread over all timed calls: median, p10, p90, calls."""
    backend.run(x)  # this size once untimed (XLA compiles per shape, arenas grow)
    medians, every = [], []
    for _ in range(rounds):
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_calls or time.perf_counter() - start < min_time / rounds:
            t = time.perf_counter()
            backend.run(x)
            times.append(time.perf_counter() - t)
        medians.append(statistics.median(times))
        every += times
    if stats is not None:
        stats.update(median=statistics.median(every), p10=float(np.percentile(every, 10)),
                     p90=float(np.percentile(every, 90)), calls=len(every))
    return min(medians)


def rss_mb() -> float:
    """Resident memory of this process now (MB): what the loaded backends and their arenas hold."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 1e6
    except ImportError:  # pragma: no cover - psutil is in the 'cpu' extra
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def load_sample(path: Path, n: int) -> np.ndarray:
    """n real jets (leading two of each event), repeated if the sample is smaller."""
    from modules.models.preprocess import load_jets

    jets = load_jets(str(path), max_events=n)[0]
    reps = -(-n // max(len(jets), 1))
    return np.ascontiguousarray(np.tile(jets, (reps, 1, 1))[:n])


# ---------------------------------------------------------------------- report
def render(results: dict[str, Any], args: argparse.Namespace, command: str, env: dict[str, str]) -> str:
    peak = args.peak_gflops * 1e9
    b = args.batch_sizes
    lines = [f"Command: `{command}`", "", *([args.note, ""] if args.note else []),
             f"Machine: {env['cpu']}, {env['cores']} cores visible, pinned: {env['affinity']}; "
             f"{env['versions']}. One thread per backend (`xN`: N intra-op threads); time per call (lowest of 3 medians) / batch size. "
             f"Load average (1 min) before / after: {env['load']}.", "",
             "Per-jet latency in µs (lower is better); `ms/event` is one call at batch 9:", "",
             "| model | backend | " + " | ".join(f"b={n}" for n in b) + " | ms/event (b=9) |",
             "|---|---|" + "---|" * len(b) + "---|"]
    for model, r in results.items():
        for spec, cells in r["latency"].items():
            row = " | ".join(f"{cells[n] * 1e6 / n:.1f}" if n in cells else "-" for n in b)
            event = f"{cells[9] * 1e3:.3f}" if 9 in cells else "-"
            lines.append(f"| {model} | {spec} | {row} | {event} |")
    lines += ["", f"Arithmetic limit of one core: {args.peak_source} = {peak / 1e9:.1f} GFLOP/s.", "",
              "| model | MFLOP/jet (weights + in-graph data products) | limit µs/jet | backend | best µs/jet "
              "(batch) | fraction of peak |", "|---|---|---|---|---|---|"]
    for model, r in results.items():
        flops = 2 * (r["macs"]["weights"] + r["macs"]["data"])
        limit = flops / peak * 1e6
        for spec, cells in r["latency"].items():
            if not cells:
                continue
            best_n = min(cells, key=lambda n: cells[n] / n)
            best = cells[best_n] / best_n * 1e6
            lines.append(f"| {model} | {flops / 1e6:.2f} ({2 * r['macs']['weights'] / 1e6:.2f} + "
                         f"{2 * r['macs']['data'] / 1e6:.2f}) | {limit:.2f} | {spec} | {best:.1f} ({best_n}) | "
                         f"{limit / best:.1%} |")
    return "\n".join(lines) + "\n"


def write_tables(args: argparse.Namespace, rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    """--json (machine, versions, every cell) and --csv (one row per cell), written atomically.
    ``us_per_jet`` is the lowest of 3 round medians (what the tables show); median/p10/p90 are over
    all timed calls; ``rss_MB`` is the process's resident memory after the cell."""
    import csv

    for path, write in ((args.json, "json"), (args.csv, "csv")):
        if not path:
            continue
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            if write == "json":
                json.dump({"machine": machine, "cells": rows}, fh, indent=1)
            else:
                out = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["model"])
                out.writeheader()
                out.writerows(rows)
        os.replace(tmp, path)
        print(f"wrote {path}")


def write_docs(path: Path, section: str) -> None:
    """Replace the text between the bench markers (or append them) in docs/backends.md."""
    text = path.read_text() if path.exists() else "# Inference backends\n"
    block = f"{MARK_BEGIN}\n{section}{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Measured latency\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        from tools import profile_onnx

        paths = [str(args.models_dir / f"{m}.onnx") for m in args.models]
        return profile_onnx.main([*paths, "--batch-sizes", *map(str, args.batch_sizes), "--sample", str(args.sample),
                                  *(["--json", str(args.json)] if args.json else [])])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.ghz:
        args.peak_gflops = args.ghz * args.flops_per_cycle
        args.peak_source = f"{args.ghz:.2f} GHz x {args.flops_per_cycle:g} FP32 FLOP/cycle (nominal)"
    else:
        from tools.profile_onnx import sgemm_rates

        args.peak_gflops = sgemm_rates()["ort_gflops"]
        args.peak_source = "ONNX Runtime 256^3 sgemm on one thread, measured in this run"
    load_before = loadavg()
    x_all = load_sample(args.sample, max(args.batch_sizes))
    results: dict[str, Any] = {}
    versions: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for model in args.models:
        onnx_path = args.models_dir / f"{model}.onnx"
        if not onnx_path.exists():
            print(f"bench_backends: {onnx_path} not found", file=sys.stderr)
            return 1
        r = results[model] = {"macs": count_macs(onnx_path), "latency": {}}
        for spec in args.backends:
            for threads in (args.threads if spec.startswith("ort-") else [1]):
                backend = make_backend(spec, args.models_dir, model, threads)
                if backend is None:
                    print(f"  {model} {spec}: model file missing, skipped", file=sys.stderr)
                    break
                versions.update(backend.describe().get("versions", {}))
                label = spec if threads == 1 else f"{spec} x{threads}"
                cells = r["latency"][label] = {}
                for n in args.batch_sizes:
                    st: dict[str, float] = {}
                    cells[n] = time_cell(backend, x_all[:n], args.min_time, args.min_calls, stats=st)
                    rows.append({"model": model, "backend": spec, "threads": threads, "batch": n,
                                 "us_per_jet": cells[n] * 1e6 / n, "us_per_jet_median": st["median"] * 1e6 / n,
                                 "us_per_jet_p10": st["p10"] * 1e6 / n, "us_per_jet_p90": st["p90"] * 1e6 / n,
                                 "calls": st["calls"], "rss_MB": round(rss_mb(), 1)})
                print(f"  {model:8s} {label:14s} " + "  ".join(f"b={n}: {cells[n] * 1e6 / n:9.1f} µs/jet"
                                                                for n in args.batch_sizes), flush=True)
                backend.close()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    env = {"load": f"{load_before} / {loadavg()}", "cpu": cpu_name(), "cores": str(os.cpu_count()),
           "affinity": ",".join(map(str, cpus)) or "?",
           "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))}
    pin = f"taskset -c {','.join(map(str, cpus))} " if cpus and len(cpus) < (os.cpu_count() or 1) else ""
    extra = argv if argv is not None else sys.argv[1:]
    command = f"{pin}python tools/bench_backends.py" + (" " + " ".join(extra) if extra else "")
    section = render(results, args, command, env)
    print(section)
    if args.json or args.csv:
        write_tables(args, rows, {**env, "python": platform.python_version(), "numpy": np.__version__,
                                  "command": command, "versions": versions})
    if args.docs:
        write_docs(args.docs, section)
        print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
