#!/usr/bin/env python3
"""hltbench: latency and memory of every inference backend vs batch size, threads and events processed,
against the model's arithmetic limit on one core — the IML 2022 study's figures, redone here.

Why: the study this project follows compared TensorFlow, ONNX Runtime and TensorRT latency and memory
against batch size; hltrun must be able to redo that on any machine, with the backends the trigger
path really uses (modules/inference), and say how far each one is from what the hardware could do.

Axes: model (Conv-VAE, GCN-VAE) x backend (``SPECS``: TensorFlow predict / eager / function / xla, ONNX
Runtime fp32 and INT8 on the CPU, its CUDA and TensorRT execution providers, TensorRT fp32 / fp16, and
``ort-bare``, a plain ``InferenceSession.run`` showing what the wrapper costs) x intra-op threads (ONNX
Runtime on the CPU) x batch size. A backend that cannot run here (package, provider, GPU or model file
missing, load failure) is listed once with the reason — printed, in the docs section and in the JSON
``skipped`` list — never silently dropped. Each cell times ``backend.run`` (lowest of three medians over
``--min-time``; median/p10/p90 over all calls), then runs ``--mem-calls`` calls under a 1 ms RSS
sampler (peak RSS; GPU memory in use for GPU backends); per configuration ``--mem-jets`` jets at
``--mem-batch`` give RSS vs jets processed. ``--out DIR`` (or ``--json``/``--csv``/``--plots``) writes the
cells with machine and library versions, and latency.png / memory.png with the study's own numbers
(tools/bench/study_reference.json) drawn beside ours.

FLOPs per jet are counted from the ONNX graph: 2 x the multiply-accumulates of every Conv,
ConvTranspose, MatMul and Gemm, with shapes taken from one run of the model at batch 1 (so
everything computed in the graph counts: the networks, the GCN adjacency product, the Chamfer
x.y^T). The arithmetic limit of one core is the float32 sgemm rate measured in the same run (ONNX
Runtime's own 256^3 MatMul on one thread, ``hltrun.tools.bench.flops.sgemm_rates``; the nominal
``GHz x FLOP/cycle`` from /proc/cpuinfo under-states turbo and AVX-512 by up to 3x), or
``--ghz x --flops-per-cycle`` when ``--ghz`` is given; ``limit`` is the time per jet at that rate,
``eff`` the fraction of it a backend reaches.

Only ``--docs`` writes into docs/ (the results section of docs/backends.md)::

    taskset -c 0 hltbench backends --out bench_out   # prints; JSON/CSV/PNG in bench_out/
    taskset -c 0 hltbench backends --docs            # also rewrites docs/backends.md's section
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from hltrun.framework.resources import local_output_path
from hltrun.framework.atomic import write_text
from hltrun.framework.errors import HltError, one_line
from hltrun.tools.bench import runner
from hltrun.tools.bench.flops import count_macs, sgemm_rates
from hltrun.tools.catalogue import MODELS, models_dir, rss_mb, sample_path


@dataclass(frozen=True)
class Spec:
    """One bench axis value: a hltrun.modules.inference backend, the model file it reads, its options."""

    backend: str  # an installed hltrun.backends entry point ("bare": a plain InferenceSession, no wrapper)
    suffix: str  # appended to the model name in --models-dir
    options: dict[str, Any] = field(default_factory=dict)  # BackendOptions fields

    @property
    def threaded(self) -> bool:
        """Does --threads sweep it (ONNX Runtime on the CPU; TF fixes threads once per process)."""
        return self.backend in ("onnxruntime", "bare") and not self.options.get("providers")


SPECS: dict[str, Spec] = {
    **{f"tf-{m}": Spec("tensorflow", ".keras", {"mode": m}) for m in ("predict", "eager", "function", "xla")},
    "ort-fp32": Spec("onnxruntime", ".onnx"),
    "ort-int8": Spec("onnxruntime", "_int8.onnx"),
    "ort-bare": Spec("bare", ".onnx"),
    "ort-cuda": Spec("onnxruntime", ".onnx", {"providers": ["cuda"]}),
    "ort-trt": Spec("onnxruntime", ".onnx", {"providers": ["tensorrt"]}),
    "trt-fp32": Spec("tensorrt", ".onnx", {"precision": "fp32"}),
    "trt-fp16": Spec("tensorrt", ".onnx", {"precision": "fp16"}),
    # compiled per batch bucket (powers of two up to opt_batch); bigger batches run in slices of the largest
    "iree": Spec("iree", ".onnx", {"opt_batch": 64}),
    "tflite": Spec("tflite", ".tflite", {"opt_batch": 64}),  # a .tflite beside the model (conv_vae's and gcn_vae's are shipped)
    "jax-cpu": Spec("jax", ".onnx", {"device": "cpu", "max_batch": 64}),
    "jax-gpu": Spec("jax", ".onnx", {"device": "gpu", "max_batch": 1024}),
    "torch-cpu": Spec("torch", ".onnx", {"device": "cpu", "max_batch": 64}),
    "torch-gpu": Spec("torch", ".onnx", {"device": "gpu", "max_batch": 1024}),
}
BACKENDS = tuple(SPECS)
BATCHES = (1, 9, 64, 1024)
MARK_BEGIN, MARK_END = "<!-- bench_backends:begin -->", "<!-- bench_backends:end -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench backends`` options."""
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model names in --models-dir")
    p.add_argument("--models-dir", type=Path, default=models_dir(), help="folder with the models")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                   help="what to time (default: all; those absent here are listed with the reason)")
    p.add_argument("--batch-sizes", nargs="+", type=runner.positive_int, default=list(BATCHES), help="jets per call")
    p.add_argument("--sample", type=Path, default=sample_path("qcd_dijet"), help="jets to run on")
    p.add_argument("--min-time", type=runner.seconds, default=0.3,
                   help="seconds timed per (backend, batch) cell beyond its --min-calls calls (0: those only)")
    p.add_argument("--min-calls", type=runner.positive_int, default=3, help="at least this many timed calls per cell")
    p.add_argument("--ghz", type=runner.positive_float, default=None,
                   help="core clock for a nominal FLOP limit (default: the measured one-core sgemm rate)")
    p.add_argument("--flops-per-cycle", type=runner.positive_float, default=None,
                   help="with --ghz: FP32 FLOP per cycle of one core (default 32: 2 FMA x 8 lanes; 64 for 2 x "
                        "AVX-512 FMA)")
    p.add_argument("--docs", nargs="?", type=local_output_path, const=runner.checkout() / "docs/backends.md", default=None,
                   help="also rewrite the results section of this markdown file (default when given without a "
                        "path: docs/backends.md) and write its figures to img/hltbench_*.png beside it; without "
                        "--docs nothing under docs/ is written")
    p.add_argument("--note", default="", help="a line added to the results section (e.g. which weights)")
    p.add_argument("--threads", nargs="+", type=runner.positive_int, default=[1],
                   help="intra-op thread counts to sweep for the ONNX Runtime backends (TensorFlow fixes its "
                        "threads once per process, so TF cells always use 1)")
    p.add_argument("--json", type=local_output_path, default=None,
                   help="write every cell (median, p10, p90, calls, RSS) with machine and library versions")
    p.add_argument("--csv", type=local_output_path, default=None, help="the same cells as CSV, one row per cell")
    p.add_argument("--out", type=local_output_path, default=None,
                   help="folder for cells.json, cells.csv, cells.events.csv (RSS vs jets processed), latency.png and "
                        "memory.png")
    p.add_argument("--plots", type=local_output_path, default=None,
                   help="folder for the PNG figures (latency and memory vs batch size, the study's numbers beside "
                        "ours); default: --out, else next to --json")
    p.add_argument("--mem-calls", type=runner.non_negative_int, default=5,
                   help="calls per (backend, batch) cell run under the RSS sampler for the cell's peak memory")
    p.add_argument("--mem-jets", type=runner.non_negative_int, default=5000,
                   help="jets run per backend configuration at --mem-batch for the memory-vs-events curve (0: off)")
    p.add_argument("--mem-batch", type=runner.positive_int, default=64, help="batch size of the memory-vs-events run")
    p.add_argument("--isolate", action="store_true",
                   help="run each (model, backend) in its own process, so that its memory is not shared with or "
                        "hidden by the configurations before it (slower: each process imports its framework)")


# ---------------------------------------------------------------------- timing
class BareSession:
    """A plain InferenceSession.run, to show what the backend wrapper (checks, NaN handling) costs.

    It feeds what the wrapper feeds: the contract is settled as the backends settle it (``inputs``'
    declaration, else the model's metadata, else the fallback; ``modules/contract.py``), so a model with
    a declared (N, 40, 5) input, or several inputs, is timed on its own shapes, not the shipped jets."""

    def __init__(self, path: Path, threads: int = 1, inputs: Mapping[str, Any] | None = None) -> None:
        import onnxruntime as ort

        from hltrun.modules.contract import default_contract, from_metadata, match_model

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        model_inputs = self.sess.get_inputs()
        self.input_names = [i.name for i in model_inputs]  # a user's model need not call it "jets"
        declared = (inputs or {}).get("inputs") or from_metadata(
            dict(self.sess.get_modelmeta().custom_metadata_map), path) or (inputs or {}).get("fallback_inputs")
        self.contract = match_model(declared or default_contract(), [(i.name, tuple(i.shape)) for i in model_inputs],
                                    path)  # in the model's input order, as input_names

    def run(self, x: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
        return self.sess.run(None, dict(zip(self.input_names, x if isinstance(x, tuple) else (x,))))

    def describe(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def unavailable(spec: str) -> str | None:
    """Why ``spec`` cannot run on this machine (None if it can): package, provider or GPU missing.
    Asked before any model is loaded, so an absent backend is listed once, not once per model."""
    import importlib.util

    sp = SPECS[spec]
    if sp.backend == "tflite":   # TFLite's own runtime, else TensorFlow's interpreter
        found = any(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "tensorflow"))
        return None if found else "neither the ai_edge_litert nor the tensorflow Python package is installed"
    package = {"bare": "onnxruntime", "iree": "iree.runtime"}.get(sp.backend, sp.backend)
    if importlib.util.find_spec(package) is None:
        return f"the {package} Python package is not installed"
    if sp.backend == "tensorrt":
        from hltrun.modules.inference.accelerator import tensorrt_gpu_status

        status = tensorrt_gpu_status()
        return None if status.usable else status.reason
    if sp.options.get("device") == "gpu":
        from hltrun.modules.inference import accelerator

        status = accelerator.engine_gpu_status(sp.backend)
        return None if status.usable else status.reason
    if sp.options.get("providers"):
        import onnxruntime as ort

        from hltrun.modules.inference.onnxruntime_backend import PROVIDER_ALIASES

        wanted = PROVIDER_ALIASES[sp.options["providers"][0]]
        if wanted not in ort.get_available_providers():
            return (f"this onnxruntime build ({ort.__version__}) has no {wanted} "
                    f"(has {', '.join(ort.get_available_providers())}; install onnxruntime-gpu)")
    return None


def make_backend(spec: str, models_dir: Path, model: str, threads: int = 1, outputs: Any = None,
                 inputs: dict[str, Any] | None = None):
    """A loaded backend for ``spec`` (hltrun.modules.inference, or the bare session for 'ort-bare'), or the
    reason it cannot be had (str): model file missing, load failed, GPU provider fell back to CPU.
    ``outputs``: the scorer's role -> model output mapping (``BackendOptions.outputs``; None: the default
    rule), for a user's model whose score the default rule does not find. ``inputs``: ``BackendOptions``'
    ``inputs``/``fallback_inputs`` as the path's scorer sets them (hltbench verdict); none: the model's
    metadata, else the shipped input."""
    from hltrun.framework.errors import ConfigError, ModuleError
    from hltrun.framework.resources import unreadable_reason
    from hltrun.modules.inference import BackendOptions, create_backend

    sp = SPECS[spec]
    path = models_dir / f"{model}{sp.suffix}"
    unreadable = unreadable_reason(path, "model file")  # a FIFO would block ort-bare's session for ever
    if unreadable is not None:
        return unreadable
    if sp.backend == "bare":
        try:
            return BareSession(path, threads, inputs)
        except (ModuleError, ConfigError) as exc:  # a declaration the model does not fit: said as the others say it
            return f"cannot load: {exc}"
    try:
        backend = create_backend(sp.backend, path, BackendOptions(threads=threads, outputs=outputs, **(inputs or {}),
                                                                   **sp.options)).load()
        backend.warm_up()  # compiled engines (jax, iree) build every batch bucket here, not in a timed call
    except (ModuleError, ConfigError) as exc:
        return f"cannot load: {exc}"
    wanted = sp.options.get("providers")
    if wanted and wanted[0] not in " ".join(getattr(backend, "providers", [])).lower():
        backend.close()
        return f"onnxruntime fell back to {getattr(backend, 'providers', '?')} (no usable {wanted[0]} device)"
    return backend


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


class PeakRss:
    """Context manager: a thread samples RSS every ``period`` s while the block runs; ``peak`` (MB) is
    the highest sample, so memory a call allocates and frees again is still seen. Used only outside the
    timed loops (the sampling thread would compete for the GIL)."""

    def __init__(self, period: float = 0.001) -> None:
        self.period, self.peak = period, 0.0

    def sample(self) -> float:
        now = rss_mb()
        self.peak = max(self.peak, now)
        return now

    def __enter__(self) -> "PeakRss":
        import threading

        self._stop = threading.Event()
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def device_used_mb(backend: Any) -> float | None:
    """GPU memory in use (MB, whole device: total - free from the CUDA driver) for a backend on a GPU;
    None on the CPU (no CUDA context is created for CPU backends: it would inflate their RSS)."""
    if getattr(backend, "device", "cpu") == "cpu":
        return None
    try:
        from cuda.bindings import runtime as rt

        err, free, total = rt.cudaMemGetInfo()
        if int(err) == 0:
            return (total - free) / 1e6
    except Exception:  # noqa: BLE001 - try the other binding
        pass
    try:
        import pycuda.driver as drv

        free, total = drv.mem_get_info()
        return (total - free) / 1e6
    except Exception:  # noqa: BLE001 - no binding or no context: say nothing rather than guess
        return None


def memory_vs_events(backend: Any, x: np.ndarray, jets: int) -> list[dict[str, float]]:
    """Run ``jets`` jets in batches of len(x) under the RSS sampler; RSS and peak so far at ~12
    log-spaced points of jets processed (the study's memory-vs-signal-events curve)."""
    n = len(x)
    calls = max(1, -(-jets // n))
    marks = sorted({int(round(v)) for v in np.geomspace(1, calls, num=min(calls, 12))})
    out = []
    with PeakRss() as peak:
        for i in range(1, calls + 1):
            backend.run(x)
            if i in marks:
                out.append({"jets": i * n, "rss_MB": round(peak.sample(), 1), "peak_MB": round(peak.peak, 1),
                            "device_MB": device_used_mb(backend)})
    return out


def load_sample(path: Path, n: int) -> np.ndarray:
    """n real jets (leading two of each event), repeated if the sample is smaller."""
    jets = runner.read_sample_jets(path, "hltbench backends", max_events=n)[0]
    reps = -(-n // max(len(jets), 1))
    return np.ascontiguousarray(np.tile(jets, (reps, 1, 1))[:n])


# ---------------------------------------------------------------------- report
def render(results: dict[str, Any], args: argparse.Namespace, command: str, env: dict[str, str],
           skipped: list[dict[str, str]] = ()) -> str:
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
            # a model without Conv/MatMul/Gemm has no arithmetic limit: its cost is element-wise work
            fraction = f"{limit / best:.1%}" if flops else "n/a (no matrix products)"
            lines.append(f"| {model} | {flops / 1e6:.2f} ({2 * r['macs']['weights'] / 1e6:.2f} + "
                         f"{2 * r['macs']['data'] / 1e6:.2f}) | {limit:.2f} | {spec} | {best:.1f} ({best_n}) | "
                         f"{fraction} |")
    if skipped:
        lines += ["", "Not measured here:", ""]
        lines += [f"- `{s['backend']}`" + (f" ({s['model']})" if s["model"] != "*" else "") + f": {s['reason']}"
                  for s in skipped]
    return "\n".join(lines) + "\n"


def write_tables(json_path: Path | None, csv_path: Path | None, data: dict[str, Any]) -> None:
    """JSON (machine, versions, skipped backends with reasons, every cell, memory vs events) and CSV
    (one row per cell; memory vs events in ``<name>.events.csv``), written atomically.
    ``us_per_jet`` is the lowest of 3 round medians (what the tables show); median/p10/p90 are over
    all timed calls; ``rss_loaded_MB`` is the process RSS once the backend is loaded, ``rss_peak_MB``
    the highest RSS sampled (every 1 ms) over --mem-calls calls at that batch size, ``device_MB`` GPU
    memory in use (GPU backends only). RSS figures are MiB (2^20 bytes, ``catalogue.rss_mb``)."""
    if json_path:
        runner.write_json(json_path, data, "backends")
    if csv_path:
        runner.write_csv(csv_path, data["cells"], "backends")
        runner.write_csv(csv_path.with_suffix(".events.csv"), data["memory_vs_events"], "backends")


def write_docs(path: Path, section: str) -> None:
    """Replace the text between the bench markers (or append them) in docs/backends.md."""
    text = path.read_text() if path.exists() else "# Inference backends\n"
    block = f"{MARK_BEGIN}\n{section}{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Measured latency\n\n" + block + "\n"
    write_text(path, text, "hltbench --docs")


def run_child(args: argparse.Namespace, model: str, spec: str) -> dict[str, Any]:
    """--isolate: measure one (model, backend) in a fresh interpreter with the same settings; its
    JSON (cells, memory vs events, skipped, versions) is merged by the caller."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hltbench-") as tmp:
        out = Path(tmp) / "cells.json"
        cmd = [*runner.python(), "-m", "hltrun.tools.bench", "backends", "--models", model, "--backends", spec,
               "--models-dir", str(args.models_dir), "--sample", str(args.sample),
               "--batch-sizes", *map(str, args.batch_sizes), "--threads", *map(str, args.threads),
               "--min-time", str(args.min_time), "--min-calls", str(args.min_calls),
               "--mem-calls", str(args.mem_calls), "--mem-jets", str(args.mem_jets),
               "--mem-batch", str(args.mem_batch), "--ghz", str(args.peak_gflops / 32.0), "--json", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout.splitlines():  # the child's progress lines, not its tables
            if line.startswith(("  ", "hltbench backends:")):
                print(line, flush=True)
        if proc.returncode != 0 or not out.exists():
            tail = proc.stdout.strip().splitlines()[-1:] or ["no output"]
            return {"cells": [], "memory_vs_events": [], "machine": {"versions": {}},
                    "skipped": [{"backend": spec, "model": model,
                                 "reason": f"isolated run failed (rc {proc.returncode}): {tail[0][:200]}"}]}
        return json.loads(out.read_text())


@dataclass
class Collected:
    """What the measurements gather across models and backends (cells, memory curve, skips, versions)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    gpu: str = ""
    checked: dict[str, dict[str, Any] | str] = field(default_factory=dict)  # spec -> outputs on ``check``'s inputs, or why none


def measure_isolated(args: argparse.Namespace, model: str, specs: list[str], got: Collected) -> dict[str, dict]:
    """--isolate: each backend in its own process; the latency table of ``model`` from the merged cells."""
    for spec in specs:
        child = run_child(args, model, spec)
        got.rows += child["cells"]
        got.events += child["memory_vs_events"]
        got.skipped += child["skipped"]
        got.versions.update(child["machine"]["versions"])
        got.gpu = got.gpu or child["machine"].get("gpu", "")
    latency: dict[str, dict] = {}
    for c in (c for c in got.rows if c["model"] == model):
        label = c["backend"] if c["threads"] == 1 else f"{c['backend']} x{c['threads']}"
        latency.setdefault(label, {})[c["batch"]] = c["ms_per_call"] / 1e3
    return latency


def measure_config(args: argparse.Namespace, model: str, spec: str, threads: int, x_all: np.ndarray,
                   got: Collected, check: Callable[[Any], Any] | None = None) -> dict[int, float] | None:
    """One (model, backend, threads) configuration in this process: seconds per call per batch size, the
    cells and memory curve added to ``got``; None (and a skip with the reason) when it cannot be loaded.
    ``check``: ``backend -> inputs``; the outputs on them go to ``got.checked[spec]`` (hltbench verdict
    compares every engine with ONNX Runtime before it ranks them)."""
    gc.collect()  # the previous configuration's backend is gone before the baseline is taken
    rss_before = rss_mb()
    backend = make_backend(spec, args.models_dir, model, threads, getattr(args, "outputs", None),
                           getattr(args, "inputs", None))
    if isinstance(backend, str):
        got.skipped.append({"backend": spec, "model": model, "reason": backend})
        print(f"  skipped {model} {spec}: {backend}", file=sys.stderr)
        return None
    info = backend.describe()
    got.versions.update(info.get("versions", {}))
    got.gpu = got.gpu or info.get("gpu", "") or info.get("gpu_name", "")
    rss_loaded = rss_mb()
    x_of = _batches(backend, x_all, max(args.batch_sizes + [args.mem_batch]))
    cells: dict[int, float] = {}
    for n in args.batch_sizes:
        st: dict[str, float] = {}
        cells[n] = time_cell(backend, x_of(n), args.min_time, args.min_calls, stats=st)
        with PeakRss() as peak:
            for _ in range(args.mem_calls):
                backend.run(x_of(n))
        got.rows.append({"model": model, "backend": spec, "threads": threads, "batch": n,
                         "device": getattr(backend, "device", "cpu"), "pid": os.getpid(),
                         "ms_per_call": cells[n] * 1e3,
                         "us_per_jet": cells[n] * 1e6 / n, "us_per_jet_median": st["median"] * 1e6 / n,
                         "us_per_jet_p10": st["p10"] * 1e6 / n, "us_per_jet_p90": st["p90"] * 1e6 / n,
                         "calls": st["calls"], "rss_before_load_MB": round(rss_before, 1),
                         "rss_loaded_MB": round(rss_loaded, 1), "rss_peak_MB": round(peak.peak, 1),
                         "device_MB": device_used_mb(backend)})
    if args.mem_jets > 0 and isinstance(x_of(1), np.ndarray):  # the RSS curve feeds one input
        for point in memory_vs_events(backend, x_of(args.mem_batch), args.mem_jets):
            got.events.append({"model": model, "backend": spec, "threads": threads, "batch": args.mem_batch, **point})
    if check is not None:  # after the timing and memory cells: its larger batch must not grow their arenas first
        try:
            got.checked[spec] = backend.run(check(backend))
        except HltError as exc:  # the cells stand; the check says why it has no outputs
            got.checked[spec] = f"the check's jets failed: {exc}"
    label = spec if threads == 1 else f"{spec} x{threads}"
    print(f"  {model:8s} {label:14s} " + "  ".join(f"b={n}: {cells[n] * 1e6 / n:9.1f} µs/jet" for n in args.batch_sizes)
          + f"  peak RSS {max(c['rss_peak_MB'] for c in got.rows[-len(args.batch_sizes):]):.0f} MB", flush=True)
    backend.close()
    return cells


def _batches(backend: Any, x_all: np.ndarray, most: int) -> Callable[[int], Any]:
    """``n -> the first n jets`` in the form the loaded model takes: the real jets for the shipped
    (N, 100, 3) input, else jet-like values for each input its declared contract names (modules/contract.py;
    the time does not depend on the values)."""
    contract = backend.contract  # the bare session's too: it feeds what the wrapper feeds
    if contract.is_shipped() and contract.inputs[0].shape(0)[1:] == x_all.shape[1:]:
        return lambda n: x_all[:n]
    from hltrun.modules.inference.autoselect import sample_inputs

    made = sample_inputs(backend, most)
    return (lambda n: made[:n]) if isinstance(made, np.ndarray) else (lambda n: tuple(x[:n] for x in made))


def peak_rate(args: argparse.Namespace) -> None:
    """The arithmetic limit of one core: nominal from --ghz, else the sgemm rate measured now."""
    if args.flops_per_cycle is not None and args.ghz is None:  # it would be ignored: the limit is measured
        raise runner.BenchError("hltbench backends: --flops-per-cycle sets the nominal limit with --ghz; without "
                                "--ghz the limit is the one-core sgemm rate measured in this run")
    if args.ghz:
        flops_per_cycle = args.flops_per_cycle or 32.0
        args.peak_gflops = args.ghz * flops_per_cycle
        args.peak_source = f"{args.ghz:.2f} GHz x {flops_per_cycle:g} FP32 FLOP/cycle (nominal)"
    else:
        args.peak_gflops = sgemm_rates()["ort_gflops"]
        args.peak_source = "ONNX Runtime 256^3 sgemm on one thread, measured in this run"


def write_outputs(args: argparse.Namespace, data: dict[str, Any], section: str) -> None:
    """JSON/CSV cells, the PNG figures and (only with --docs) the docs section."""
    if args.json or args.csv:
        write_tables(args.json, args.csv, data)
    plots_dir = args.plots or args.out or (args.json.parent if args.json else None)
    if plots_dir:
        try:
            from hltrun.tools.bench.plots import plot

            for path in plot(data, plots_dir):
                print(f"wrote {path}")
        except ImportError as exc:  # matplotlib is in the 'cpu' extra; a bare GPU box may lack it
            print(f"hltbench backends: plots not written ({exc}); the JSON/CSV have every figure", file=sys.stderr)
    if args.docs:
        try:  # the section shows the figures: docs/img/hltbench_*.png, written only with --docs
            from hltrun.tools.bench.plots import plot

            images = plot(data, args.docs.parent / "img", prefix="hltbench_")
            section += "\n" + "\n".join(f"![{p.stem}](img/{p.name})" for p in images) + "\n"
        except ImportError as exc:
            print(f"hltbench backends: plots not written ({exc})", file=sys.stderr)
        write_docs(args.docs, section)
        print(f"wrote {args.docs}")


def macs_of(path: Path) -> dict[str, int]:
    """``count_macs`` of a model hltrun loads (``runner.check_model``); a graph it cannot run at batch 1
    on a (1, 100, 3) input (a model with other declared inputs) is one line, not ONNX Runtime's traceback."""
    try:
        return count_macs(path)
    except Exception as exc:
        raise runner.BenchError(f"hltbench backends: cannot count the multiply-accumulates of {path} on one "
                                f"jet of its input's shape: {type(exc).__name__}: {one_line(exc)}") from None


def run(args: argparse.Namespace) -> int:
    """Time every (model, backend, threads, batch) cell; print the tables, write JSON/CSV/plots/docs."""
    for path in runner.named_models(args.models, args.models_dir, "hltbench backends"):
        # before anything is measured: refused as hltrun refuses it, in one line
        runner.check_model(path, "hltbench backends", getattr(args, "inputs", None))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    peak_rate(args)
    if args.out:
        args.json = args.json or args.out / "cells.json"
        args.csv = args.csv or args.out / "cells.csv"
    load_before = runner.loadavg()
    x_all = load_sample(args.sample, max(args.batch_sizes + [args.mem_batch]))
    results: dict[str, Any] = {}
    got = Collected()
    absent = {spec: unavailable(spec) for spec in args.backends}
    for spec, reason in absent.items():
        if reason:
            got.skipped.append({"backend": spec, "model": "*", "reason": reason})
            print(f"  skipped {spec}: {reason}", file=sys.stderr)
    present = [s for s in args.backends if not absent[s]]
    for model in args.models:
        r = results[model] = {"macs": macs_of(args.models_dir / f"{model}.onnx"), "latency": {}}
        if args.isolate:
            r["latency"] = measure_isolated(args, model, present, got)
            continue
        for spec in present:
            for threads in (args.threads if SPECS[spec].threaded else [1]):
                cells = measure_config(args, model, spec, threads, x_all, got)
                if cells is None:
                    break
                r["latency"][spec if threads == 1 else f"{spec} x{threads}"] = cells
    cpus = runner.affinity()
    record = runner.machine()
    env = {"load": f"{load_before} / {record['load']}", "cpu": record["cpu"], "cores": str(record["cores"]),
           "affinity": record["affinity"], "versions": ", ".join(f"{k} {v}" for k, v in sorted(got.versions.items()))}
    pin = f"taskset -c {','.join(map(str, cpus))} " if cpus and len(cpus) < (os.cpu_count() or 1) else ""
    command = f"{pin}hltbench " + shlex.join(args.argv)  # copy-pasteable
    section = render(results, args, command, env, got.skipped)
    print(section)
    if not got.rows:  # every backend skipped: an empty table is not a measurement
        reasons = "; ".join(f"{s['backend']}: {s['reason']}" for s in got.skipped[:3])
        raise runner.BenchError(f"hltbench backends: nothing measured for {', '.join(args.models)} ({reasons})")
    data = {"machine": {**record, **env, "gpu": got.gpu, "command": command,
                        "versions": {**record["versions"], **got.versions}, "peak_gflops": args.peak_gflops,
                        "peak_source": args.peak_source, "isolated": args.isolate},
            "skipped": got.skipped, "cells": got.rows, "memory_vs_events": got.events}
    write_outputs(args, data, section)
    return 0
