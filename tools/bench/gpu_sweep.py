"""Latency vs batch size on the GPU engines (torch with CUDA graphs, torch op by op, jax; on the GPU or
the CPU), with the H2D / compute / D2H split and device memory, optionally beside ONNX Runtime on the
CPU in the same process::

    hltbench gpu-sweep --device gpu --batches 1 2 4 ... 4096 --repeat 50 --out OUT
    hltbench gpu-sweep --device cpu --engines torch --batches 2 64 --onnxruntime --out OUT   # CPU comparison

One row per (engine, model, batch): host latency per ``run`` call (padding and copies included: what
an event pays) as median and p99 over ``--repeat`` calls, jets/s at the median, µs per jet, the
median per-call H2D / compute / D2H times (the differences of the backend's exact nanosecond sums,
``device_split_ns()``, over each call) and the device memory of the cell (GPU; empty on the CPU):

* ``device_bytes_in_use``: the engine's bytes in use after the cell: the allocator's, less what was in
  use before the engine loaded (read from the framework's previous engine, closed and kept until then,
  after the garbage of earlier ones is collected; 0 before the framework's first engine);
* ``device_peak_bytes``: the engine's peak during the cell (the allocator's peaks reset at its start,
  ``reset_device_peak``; less the same base). torch only: JAX has no reset, so empty there;
* ``device_process_reserved_bytes``: torch's caching allocator's reserved bytes after the cell
  (``torch.cuda.memory_reserved``), process-wide: this engine's segments and those of the earlier
  engines' still-live tensors (a closed torch engine gives its cached blocks back). Empty on JAX, whose
  ``bytes_reserved`` depends on its allocator;
* ``device_process_peak_bytes``: where the peak cannot be reset (JAX), the allocator's peak since the
  process started, read after the cell: every bucket's warm-up and every earlier engine and model on that
  framework included, an upper bound and never a per-batch figure; empty where the peak is reset.

Inputs: for a model that reads the shipped (N, 100, 3) input, real jets from a shipped sample, repeated to
fill the batch; for a user's model with other declared inputs (several inputs, a ParticleNet's points,
features and mask; other shapes), the inputs ``auto``'s agreement check feeds it (``sample_inputs``:
each declared input in its shape, padded and masked as the source pads them), one set per model. Written as ``sweep.csv`` and ``sweep.json`` in ``--out``, and ``sweep.png`` (latency
and copy share vs batch per model, the study's TensorRT host latency drawn beside) where matplotlib is
installed. A figure tool, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.atomic import together, write_text
from hltrun.framework.resources import local_output_path
from hltrun.tools.figures import save_figure
from .runner import BenchError, csv_text, named_models, positive_int

FIELDS = ("engine", "device", "model", "batch", "repeat", "median_ms", "p99_ms", "us_per_jet", "jets_per_s",
          "h2d_ms", "compute_ms", "d2h_ms", "copy_share", "device_bytes_in_use", "device_peak_bytes",
          "device_process_reserved_bytes", "device_process_peak_bytes")
SPLIT = ("h2d_ns", "compute_ns", "d2h_ns")  # device_split_ns(): per-call differences, exact
DEFAULT_BATCHES = [1 << k for k in range(13)]  # 1 ... 4096
# engine name in the table -> (backend, BackendOptions overrides)
ENGINES: dict[str, tuple[str, dict[str, Any]]] = {
    "torch": ("torch", {"cuda_graphs": True}),
    "torch-eager": ("torch", {"cuda_graphs": False}),
    "jax": ("jax", {}),
}


def sample_jets(n: int) -> np.ndarray:
    """n real jets (the QCD sample's two leading jets per event, repeated as needed)."""
    from hltrun.modules.models.preprocess import load_jets

    x = load_jets(str(_sample()), max_events=max(1, min(n, 5000) // 2 + 1))[0]
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n])


def model_inputs(backend: Any, n: int) -> np.ndarray | tuple[np.ndarray, ...]:
    """n jets' inputs for a loaded backend's settled contract: real jets for the shipped (N, 100, 3) input,
    else every declared input (why: the sweep fed (N, 100, 3) jets to every model, and a user's several-input
    network stopped at its first engine with "1 input array(s) for a model with 3 declared inputs")."""
    from hltrun.modules.inference.autoselect import sample_inputs
    from hltrun.modules.inference.base import N_CONSTITUENTS, N_FEATURES

    contract = backend.contract
    if contract.is_shipped() and contract.inputs[0].shape(0)[1:] == (N_CONSTITUENTS, N_FEATURES):
        return sample_jets(n)
    return sample_inputs(backend, n, seed=0)


def first_jets(x: np.ndarray | tuple[np.ndarray, ...], n: int) -> np.ndarray | tuple[np.ndarray, ...]:
    """The first n jets of every input array."""
    return tuple(a[:n] for a in x) if isinstance(x, tuple) else x[:n]


def _sample() -> Path:
    """The shipped QCD sample (the installed ``hltrun.data`` folder, or the checkout's)."""
    from hltrun.framework.resources import shipped_dir

    return shipped_dir("data") / "qcd_dijet.root"


MIN_CALLS = 5  # timed calls per cell at least, whatever the time limit


def _time_calls(backend: Any, x: np.ndarray | tuple[np.ndarray, ...], repeat: int, max_s: float = float("inf")
                ) -> tuple[list[float], dict[str, list[int]]]:
    """``repeat`` timed calls, or fewer (at least MIN_CALLS) once ``max_s`` seconds are spent: a CPU
    engine at batch 4096 must not eat the GPU script's time. The H2D / compute / D2H nanoseconds of each
    call (empty lists for an engine that does not split its time)."""
    split: dict[str, list[int]] = {key: [] for key in SPLIT}
    times: list[float] = []
    end = time.perf_counter() + max_s
    for _ in range(repeat):
        if len(times) >= MIN_CALLS and time.perf_counter() > end:
            break
        before = backend.device_split_ns()
        t0 = time.perf_counter()
        backend.run(x)
        times.append(time.perf_counter() - t0)
        if before is not None:
            after = backend.device_split_ns()
            for key in SPLIT:
                split[key].append(after[key] - before[key])
    return times, split


def _split_columns(split: dict[str, list[int]]) -> dict[str, float]:
    """h2d_ms, compute_ms, d2h_ms (medians per call) and the copies' share of their sum; {} without a split."""
    if not split["h2d_ns"]:
        return {}
    h2d, comp, d2h = (float(np.median(split[key])) / 1e6 for key in SPLIT)
    total = h2d + comp + d2h
    return {"h2d_ms": h2d, "compute_ms": comp, "d2h_ms": d2h, "copy_share": (h2d + d2h) / total if total else 0.0}


def _memory_columns(mem: dict[str, int] | None, base: dict[str, int], peak_reset: bool) -> dict[str, int]:
    """The cell's device memory columns (module docstring) from the allocator's figures after the cell,
    ``base`` (the allocator's before the engine loaded: {} before the framework's first engine) and
    whether the peak was reset at the cell's start; {} where the engine has no device allocator (the CPU)."""
    if not mem or "bytes_in_use" not in mem:
        return {}
    before = base.get("bytes_in_use", 0)
    columns = {"device_bytes_in_use": mem["bytes_in_use"] - before,
               "device_peak_bytes": mem["peak_bytes_in_use"] - before if peak_reset else None,
               "device_process_reserved_bytes": mem.get("bytes_reserved") if peak_reset else None,
               "device_process_peak_bytes": None if peak_reset else mem.get("peak_bytes_in_use")}
    return {key: value for key, value in columns.items() if value is not None}  # empty in the CSV, absent in the JSON


def sweep(models: Sequence[str], batches: Sequence[int], device: str, repeat: int, onnxruntime: bool,
          models_dir: Path, engine_names: Sequence[str] = ("torch", "jax"),
          done: Callable[[list[dict[str, Any]]], None] | None = None, max_s: float = float("inf")
          ) -> list[dict[str, Any]]:
    """Every (model, engine, batch) row; ``done`` gets the rows so far after each engine (so a run cut
    short by its time limit keeps what it measured)."""
    from hltrun.modules.inference import BackendOptions, create_backend

    rows: list[dict[str, Any]] = []
    # framework -> its last closed engine, kept until the next one has run: what it still holds on the
    # device stays there, so the allocator read through it before the next load is that engine's base
    previous: dict[str, Any] = {}
    for model in models:
        path = models_dir / f"{model}.onnx"
        engines = [(name, create_backend(ENGINES[name][0], path, BackendOptions(
            max_batch=max(batches), device=device, **ENGINES[name][1]))) for name in engine_names]
        if onnxruntime:
            engines.append(("onnxruntime", create_backend("onnxruntime", path)))
        x_all = None  # the model's inputs, made from the first engine's settled contract (the same on every engine)
        for name, backend in engines:
            gc.collect()  # earlier engines no longer referenced free their device memory now, not in a cell
            base = (previous[backend.name].device_memory() or {}) if backend.name in previous else {}
            backend.load()
            if x_all is None:
                x_all = model_inputs(backend, max(batches))
            backend.warm_up([1])
            desc = backend.describe()
            print(f"{model} {name}: {desc['device']} {desc.get('jax_device', desc.get('torch_device', ''))} warm-up "
                  f"{desc.get('warm_up_s', 0.0):.1f} s", file=sys.stderr)
            for b in batches:
                x = first_jets(x_all, b)
                peak_reset = backend.reset_device_peak()  # the cell's own peak, its settling calls included
                for _ in range(max(2, min(repeat // 10, MIN_CALLS))):
                    backend.run(x)  # a few untimed calls: caches and allocators settled
                times, split = _time_calls(backend, x, repeat, max_s)
                med = float(np.median(times))
                row: dict[str, Any] = {"engine": name, "device": desc["device"], "model": model, "batch": b,
                                       "repeat": len(times), "median_ms": med * 1e3,
                                       "p99_ms": float(np.quantile(times, 0.99)) * 1e3,
                                       "us_per_jet": med * 1e6 / b, "jets_per_s": b / med if med else 0.0,
                                       **_split_columns(split),
                                       **_memory_columns(backend.device_memory(), base, peak_reset)}
                rows.append(row)
                print(f"  batch {b:5d}: median {row['median_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms, "
                      f"{row['us_per_jet']:.1f} us/jet", file=sys.stderr)
            backend.close()
            previous[backend.name] = backend
            if done is not None:
                done(rows)
    return rows


def write(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    """sweep.csv and sweep.json, both whole or neither (framework/atomic.py): a sweep stopped by Ctrl-C or
    a full disk leaves the rows of the last complete write, never a half file under its final name."""
    with together():
        write_text(out / "sweep.csv", csv_text(rows, FIELDS), "hltbench gpu-sweep --out")
        write_text(out / "sweep.json", json.dumps({"meta": meta, "rows": rows}, indent=1), "hltbench gpu-sweep --out")


def plot(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """sweep.png: per model, host latency per call vs batch (every engine) with the study's TensorRT
    host latency as a line, and the copies' share of the engine time; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from .plots import load_study

    study = [g for g in load_study().get("gpu", []) if g.get("host_latency_median_ms")]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for col, model in enumerate(models):
        lat, share = axes[0][col], axes[1][col]
        for index, engine in enumerate(dict.fromkeys(r["engine"] for r in rows)):
            color = f"C{index}"  # the same engine, the same colour in both panels
            cells = sorted((r for r in rows if r["model"] == model and r["engine"] == engine), key=lambda r: r["batch"])
            if not cells:
                continue
            label = f"{engine} ({cells[0]['device']})"
            lat.plot([c["batch"] for c in cells], [c["median_ms"] for c in cells], "o-", color=color, label=label)
            with_split = [c for c in cells if c.get("copy_share") is not None and c.get("h2d_ms", 0) + c.get("d2h_ms", 0) > 0]
            if with_split:
                share.plot([c["batch"] for c in with_split], [100 * c["copy_share"] for c in with_split], "o-",
                           color=color, label=label)
        for g in study:
            lat.axhline(g["host_latency_median_ms"], color="grey", ls="--",
                        label=f"study: TensorRT {g['host_latency_median_ms']:.2f} ms (trtexec, batch not stated)")
        lat.set(xscale="log", yscale="log", xlabel="batch (jets)", ylabel="host latency per call, median (ms)", title=model)
        share.set(xscale="log", xlabel="batch (jets)", ylabel="H2D + D2H share of engine time (%)", ylim=(0, 100))
        lat.legend(fontsize=8)
        if share.lines:
            share.legend(fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, out / "sweep.png", "hltbench gpu-sweep --out", dpi=110)
    plt.close(fig)
    return path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``hltbench gpu-sweep`` options."""
    ap.add_argument("--models", nargs="+", default=["conv_vae", "gcn_vae"],
                    help="model names, <name>.onnx in --models-dir (default: conv_vae gcn_vae)")
    ap.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=["torch", "torch-eager", "jax"],
                    help="torch: CUDA graphs per bucket; torch-eager: the same op by op; jax: XLA (default: all)")
    ap.add_argument("--batches", nargs="+", type=positive_int, default=DEFAULT_BATCHES,
                    help="jets per call (default: 1 2 4 ... 4096)")
    ap.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                    help="where the engines run (auto: the GPU where there is one)")
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per batch size")
    ap.add_argument("--max-seconds", type=float, default=float("inf"),
                    help=f"stop a cell's timing after this many seconds (at least {MIN_CALLS} calls; default: no limit)")
    ap.add_argument("--onnxruntime", action="store_true", help="also ONNX Runtime (CPU, 1 thread), same inputs")
    ap.add_argument("--models-dir", type=Path, default=None, help="folder of the .onnx files (default: shipped)")
    ap.add_argument("--out", type=local_output_path, required=True, help="folder for sweep.csv and sweep.json")


def run(args: argparse.Namespace) -> int:
    if any(b < 1 for b in args.batches) or args.repeat < 1 or not args.max_seconds > 0:
        raise BenchError("hltbench gpu-sweep: --batches, --repeat and --max-seconds must be positive")
    from hltrun.framework.errors import HltError

    models_dir = args.models_dir or _sample().parent / "models"
    named_models(args.models, models_dir, "hltbench gpu-sweep")  # an argument error (2), not the first engine's (4)
    meta = {"command": " ".join(sys.argv), "host": platform.node(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **_versions(args.engines)}
    try:
        rows = sweep(args.models, sorted(set(args.batches)), args.device, args.repeat, args.onnxruntime, models_dir,
                     list(dict.fromkeys(args.engines)), lambda so_far: write(so_far, args.out, meta),
                     args.max_seconds)
        write(rows, args.out, meta)
        png = plot(rows, args.out)
    except HltError as exc:  # an engine that cannot run, an output that cannot be written: one line
        print(f"hltbench gpu-sweep: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    print(f"wrote {args.out / 'sweep.csv'}, {args.out / 'sweep.json'}{f' and {png}' if png else ''} ({len(rows)} rows)",
          file=sys.stderr)
    return 0


def _versions(engines: Sequence[str]) -> dict[str, Any]:
    """The engines' versions and devices, for the figures' record ("absent" where one is not installed:
    the sweep then says so in one line when it loads it)."""
    meta: dict[str, Any] = {}
    if "jax" in engines:
        try:
            import jax

            meta.update(jax=jax.__version__, devices=[str(d) for d in jax.devices()])
        except ImportError:
            meta["jax"] = "absent"
    if any(e.startswith("torch") for e in engines):
        try:
            import torch

            meta.update(torch=torch.__version__, torch_cuda=torch.version.cuda or "none",
                        torch_gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
        except ImportError:
            meta["torch"] = "absent"
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return meta
