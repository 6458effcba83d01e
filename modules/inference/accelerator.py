"""Which backend runs: ``backend: auto`` and ``options.accelerators``, CMSSW-style.

* ``auto`` takes TensorRT when a GPU and the tensorrt package are both there and the job allows
  ``gpu-nvidia``; else PyTorch on the GPU when a CUDA build of torch sees one (CUDA graphs per batch
  bucket, a CUDA stream per hltrun stream, CUDA-event timing: docs/gpu.md); else JAX on the GPU when
  JAX sees one (jax with its CUDA plugin); otherwise ONNX Runtime on the CPU — loudly (log line +
  ``job.facts``), the reason naming what was missing.
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
from typing import Sequence

from hltrun.framework.errors import AcceleratorUnavailable, ConfigError

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


def _find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


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


def choose_backend(requested: str, accelerators: Sequence[str], providers: Sequence[str] = (),
                   where: str = "backend") -> tuple[str, str]:
    """Return (backend name, one-line reason). Raises ConfigError/ModuleError, never falls back
    from an explicit choice."""
    ok = allowed(accelerators)
    if requested == "auto":
        if GPU in ok:
            status = tensorrt_gpu_status()
            if status.usable:
                return "tensorrt", f"auto: TensorRT on {status.gpu_name}"
            torch_status = torch_gpu_status()
            if torch_status.usable:
                return "torch", (f"auto: PyTorch on {torch_status.gpu_name}, CUDA graphs per batch bucket "
                                 f"(TensorRT not used: {status.reason})")
            jax_status = jax_gpu_status()
            if jax_status.usable:
                return "jax", (f"auto: JAX on {jax_status.gpu_name} (TensorRT not used: {status.reason}; "
                               f"PyTorch GPU not used: {torch_status.reason})")
            gpu_reason = f"{status.reason}; PyTorch GPU not used: {torch_status.reason}; JAX GPU not used: {jax_status.reason}"
        else:
            gpu_reason = f"options.accelerators {list(accelerators)} excludes {GPU}"
        if CPU in ok:
            return "onnxruntime", f"auto: ONNX Runtime on CPU (TensorRT not used: {gpu_reason})"
        raise AcceleratorUnavailable(f"{where}: auto with options.accelerators {list(accelerators)} needs a GPU, "
                          f"but {gpu_reason}")
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


def auto_fallback(requested: str, chosen: str, accelerators: Sequence[str], refusal: str) -> tuple[str, str] | None:
    """(``onnxruntime``, reason) when ``auto``'s engine refused the model at load and the CPU is allowed,
    else None (an explicit engine is never replaced). ``choose_backend`` picks a GPU engine by name,
    before the model is read; JAX and PyTorch run only the ops hltrun translates, so a model with a NonZero
    (boolean indexing) would end the job where ONNX Runtime runs it."""
    if requested != "auto" or chosen == "onnxruntime" or CPU not in allowed(accelerators):
        return None
    return "onnxruntime", f"auto: ONNX Runtime on CPU ({chosen} cannot run this model: {refusal})"

