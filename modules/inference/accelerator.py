"""Which backend runs: ``backend: auto`` and ``options.accelerators``, CMSSW-style.

* ``auto`` takes TensorRT when a GPU and the tensorrt package are both there and the job allows
  ``gpu-nvidia``; else PyTorch on the GPU when a CUDA build of torch sees one (CUDA graphs per batch
  bucket, a CUDA stream per hltrun stream, CUDA-event timing: docs/gpu.md); else JAX on the GPU when
  JAX sees one (jax with its CUDA plugin); otherwise ONNX Runtime on the CPU — loudly (log line +
  ``job.facts``), the reason naming what was missing.
* The engine is picked by name, before the model is read; one that refuses the model at load (TensorRT
  parses only the ops it imports, JAX and PyTorch the ops hltrun translates) or fails its warm-up (a CUDA-graph
  capture, an XLA compile, a translated branch only a batch of several jets takes) hands it on, released, to the
  next usable engine in that order, ONNX Runtime on the CPU last where the job allows the CPU (``auto_next``); the
  reason names each engine passed over and why.
* An explicit backend is never swapped for another: ``tensorrt`` without a GPU, or a backend the
  accelerators list forbids, is a one-line error.

GPU detection never imports TensorFlow or initialises CUDA contexts it keeps: it looks for the
packages with ``importlib.util.find_spec`` and asks the driver for a device count. JAX is imported
only where its CUDA plugin is installed, torch only where it is a CUDA build (its ``lib`` holds
libtorch_cuda), so a CPU-only machine never pays for either; their GPU contexts are the ones the
backends then use.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

from hltrun.framework.errors import AcceleratorUnavailable, ConfigError
from hltrun.framework.extras import installed as _find  # the tests stand in for it by this name

log = logging.getLogger("hltrun.inference")

CPU, GPU = "cpu", "gpu-nvidia"


@dataclass(frozen=True)
class GpuStatus:
    usable: bool
    reason: str  # why not, or the GPU name
    gpu_name: str = ""


@lru_cache(maxsize=1)
def tensorrt_gpu_status() -> GpuStatus:
    """Is TensorRT usable here: the tensorrt package, a CUDA binding, at least one NVIDIA GPU."""
    if importlib.util.find_spec("tensorrt") is None:
        return GpuStatus(False, "the tensorrt Python package is not installed")
    try:
        from .tensorrt_backend import cuda_api

        api = cuda_api()
        if api.device_count() < 1:
            return GpuStatus(False, "no NVIDIA GPU is visible to CUDA")
        name = api.device_name()
    except Exception as exc:  # ModuleError from cuda_api, driver errors
        return GpuStatus(False, str(exc))
    return GpuStatus(True, name, name)


JAX_CUDA_PLUGINS = ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12", "jax_cuda13_plugin", "jax_cuda12_plugin")


def _load_jax():  # noqa: ANN202 - the jax module; a seam for tests (a fake keeping jax.devices()' contract)
    import jax

    return jax


@lru_cache(maxsize=1)
def jax_gpu_status() -> GpuStatus:
    """Does JAX see an NVIDIA GPU: the jax package, a CUDA plugin, ``jax.devices('gpu')`` non-empty."""
    if not _find("jax"):
        return GpuStatus(False, "the jax Python package is not installed")
    if not any(_find(p) for p in JAX_CUDA_PLUGINS):
        return GpuStatus(False, "jax has no CUDA plugin installed (pip install 'jax[cuda13]')")
    try:
        jax = _load_jax()
        gpus = list(jax.devices("gpu"))
    except RuntimeError as exc:  # jax's answer when no GPU platform initialised
        return GpuStatus(False, f"JAX sees no GPU ({str(exc).splitlines()[0][:160]})")
    except Exception as exc:  # noqa: BLE001 - a broken plugin: say it, do not crash the choice
        return GpuStatus(False, f"JAX GPU check failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    if not gpus:
        return GpuStatus(False, "JAX sees no GPU")
    name = getattr(gpus[0], "device_kind", "") or str(gpus[0])
    return GpuStatus(True, name, name)


def _torch_is_cuda_build() -> bool:
    """A CUDA build of torch ships libtorch_cuda beside libtorch (the CPU build does not): known without
    importing torch (seconds) on a machine that cannot use it."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return any(lib.glob("*torch_cuda*"))


def _load_torch():  # noqa: ANN202 - the torch module; a seam for tests (a fake keeping torch.cuda's contract)
    import torch

    return torch


@lru_cache(maxsize=1)
def torch_gpu_status() -> GpuStatus:
    """Does PyTorch see an NVIDIA GPU: torch installed, a CUDA build, ``torch.cuda.is_available()``."""
    if not _find("torch"):
        return GpuStatus(False, "the torch Python package is not installed")
    if not _torch_is_cuda_build():
        return GpuStatus(False, "torch is a CPU build (no libtorch_cuda)")
    try:
        torch = _load_torch()
        if not torch.cuda.is_available():
            return GpuStatus(False, "PyTorch sees no CUDA GPU")
        name = str(torch.cuda.get_device_name(torch.cuda.current_device()))
    except Exception as exc:  # noqa: BLE001 - a broken driver/toolkit: say it, do not crash the choice
        return GpuStatus(False, f"PyTorch GPU check failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return GpuStatus(True, name, name)


def engine_gpu_status(engine: str) -> GpuStatus:
    """Does the array engine behind a backend (``jax``, ``torch``) see an NVIDIA GPU."""
    return {"jax": jax_gpu_status, "torch": torch_gpu_status}[engine]()


def allowed(accelerators: Sequence[str]) -> set[str]:
    acc = set(accelerators or ["*"])
    return {CPU, GPU} if "*" in acc else acc


def backend_device(backend: str, providers: Sequence[str] = ()) -> str:
    """The accelerator a backend configuration needs."""
    if backend == "tensorrt":
        return GPU
    if backend in ("jax", "torch"):  # device auto: the GPU when the engine sees one
        return GPU if engine_gpu_status(backend).usable else CPU
    if backend == "onnxruntime" and any(p.lower() in ("cuda", "tensorrt", "cudaexecutionprovider",
                                                      "tensorrtexecutionprovider") for p in providers):
        return GPU
    return CPU


@dataclass(frozen=True)
class AutoStep:
    """One engine in ``auto``'s order: its reason line's head where it is usable here, else None and why not."""

    engine: str
    head: str | None  # "auto: TensorRT on <GPU>"; None: not usable here
    why_not: str = ""  # "TensorRT not used: <reason>", said by every later engine's reason


def auto_steps(accelerators: Sequence[str]) -> Iterator[AutoStep]:
    """``auto``'s engines in order: TensorRT, PyTorch, JAX on a GPU (where the job allows ``gpu-nvidia``),
    then ONNX Runtime on the CPU (where it allows ``cpu``). Lazy: an engine's GPU check (importing torch or
    jax) runs only when every engine before it is unusable or refused the model."""
    ok = allowed(accelerators)
    if GPU in ok:
        for engine, label, status, head in (
                ("tensorrt", "TensorRT", tensorrt_gpu_status, "auto: TensorRT on {}"),
                ("torch", "PyTorch GPU", torch_gpu_status, "auto: PyTorch on {}, CUDA graphs per batch bucket"),
                ("jax", "JAX GPU", jax_gpu_status, "auto: JAX on {}")):
            s = status()
            yield AutoStep(engine, head.format(s.gpu_name) if s.usable else None, f"{label} not used: {s.reason}")
    else:
        yield AutoStep("tensorrt", None, f"TensorRT not used: options.accelerators {list(accelerators)} excludes {GPU}")
    yield AutoStep("onnxruntime", "auto: ONNX Runtime on CPU" if CPU in ok else None,
                   f"ONNX Runtime not used: options.accelerators {list(accelerators)} excludes {CPU}")


AUTO_ENGINES = ("tensorrt", "torch", "jax", "onnxruntime")  # ``auto_steps``' engines, in its order


def auto_next(accelerators: Sequence[str], refused: Sequence[tuple[str, str]] = (),
              model: object = "") -> tuple[str, str] | None:
    """(engine, reason) ``auto`` runs after the engines in ``refused`` ((engine, its refusal at load or its failure
    to warm up), in the order they were tried) turned the model down; None when no engine is left. ``choose_backend`` picks a GPU
    engine by name, before the model is read, so one that cannot run it (TensorRT parses only ops it imports, JAX and
    PyTorch run the ops hltrun translates) hands it on to the next usable one, the CPU last. The reason names
    every engine passed over: why it is not usable here, or the first clause of its refusal."""
    said = dict(refused)
    # an engine outside this order (IREE or TFLite, which ``auto`` timed on the CPU and chose) was tried first
    notes = [f"{engine} cannot run this model: {first_clause(why, engine, model)}" for engine, why in refused
             if engine not in AUTO_ENGINES]
    for step in auto_steps(accelerators):
        if step.engine in said:
            notes.append(f"{step.engine} cannot run this model: {first_clause(said[step.engine], step.engine, model)}")
        elif step.head is not None:
            return step.engine, step.head + (f" ({'; '.join(notes)})" if notes else "")
        else:
            notes.append(step.why_not)
    return None


def first_clause(refusal: str, engine: str, model: object = "", limit: int = 300) -> str:
    """A refusal in a reason line: its first clause (up to its first "; "), without the engine's name and the
    model's path, which the job's line says beside it."""
    text = refusal.split("; ")[0].removeprefix(f"{engine}: ")
    if model:  # "model m failed its warm-up ...", "model m: If node 'y': ..."
        text = text.removeprefix(f"model {model} ").removeprefix(f"model {model}: ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def choose_backend(requested: str, accelerators: Sequence[str], providers: Sequence[str] = (),
                   where: str = "backend") -> tuple[str, str]:
    """Return (backend name, one-line reason): ``auto``'s first usable engine (``auto_next``), or the explicit
    one if the job's accelerators allow it. Raises ConfigError/ModuleError, never falls back from an explicit
    choice."""
    ok = allowed(accelerators)
    if requested == "auto":
        choice = auto_next(accelerators)
        if choice is not None:
            return choice
        gpu_reason = "; ".join(s.why_not for s in auto_steps(accelerators) if s.engine != "onnxruntime")
        raise AcceleratorUnavailable(f"{where}: auto with options.accelerators {list(accelerators)} needs a GPU, "
                                     f"but {gpu_reason.removeprefix('TensorRT not used: ')}")
    need = backend_device(requested, providers)
    if need not in ok:
        hints = {"jax": " (JAX sees a GPU here; JAX_PLATFORMS=cpu keeps it on the CPU)",
                 "torch": " (PyTorch sees a GPU here; CUDA_VISIBLE_DEVICES= keeps it on the CPU)"}
        hint = hints.get(requested, "") if need == GPU else ""
        raise ConfigError(f"{where}: {requested} runs on {need}, which options.accelerators "
                          f"{list(accelerators)} does not allow{hint}")
    if requested == "tensorrt":
        status = tensorrt_gpu_status()
        if not status.usable:
            raise AcceleratorUnavailable(f"{where}: tensorrt requested but {status.reason}; use backend: onnxruntime "
                              f"or backend: auto to run on CPU")
        return "tensorrt", f"TensorRT on {status.gpu_name}"
    return requested, f"{requested} on {need} (explicit)"
