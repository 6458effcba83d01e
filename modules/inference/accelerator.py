"""Which backend runs: ``backend: auto`` and ``options.accelerators``, CMSSW-style.

* ``auto`` takes TensorRT when a GPU and the tensorrt package are both there and the job allows
  ``gpu-nvidia``; else JAX on the GPU when JAX sees a GPU (jax with its CUDA plugin); otherwise ONNX
  Runtime on the CPU — loudly (log line + ``job.facts``), the reason naming what was missing.
* An explicit backend is never swapped for another: ``tensorrt`` without a GPU, or a backend the
  accelerators list forbids, is a one-line error.

GPU detection never imports TensorFlow or initialises CUDA contexts it keeps: it looks for the
packages with ``importlib.util.find_spec`` and asks the driver for a device count. JAX is imported
only where its CUDA plugin is installed (so a CPU-only machine never pays for it); its GPU context is
the one the jax backend then uses.
"""

from __future__ import annotations

import importlib.util
import logging
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


def allowed(accelerators: Sequence[str]) -> set[str]:
    acc = set(accelerators or ["*"])
    return {CPU, GPU} if "*" in acc else acc


def backend_device(backend: str, providers: Sequence[str] = ()) -> str:
    """The accelerator a backend configuration needs."""
    if backend == "tensorrt":
        return GPU
    if backend == "jax":  # device auto: the GPU when JAX sees one
        return GPU if jax_gpu_status().usable else CPU
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
            jax_status = jax_gpu_status()
            if jax_status.usable:
                return "jax", f"auto: JAX on {jax_status.gpu_name} (TensorRT not used: {status.reason})"
            gpu_reason = f"{status.reason}; JAX GPU not used: {jax_status.reason}"
        else:
            gpu_reason = f"options.accelerators {list(accelerators)} excludes {GPU}"
        if CPU in ok:
            return "onnxruntime", f"auto: ONNX Runtime on CPU (TensorRT not used: {gpu_reason})"
        raise AcceleratorUnavailable(f"{where}: auto with options.accelerators {list(accelerators)} needs a GPU, "
                          f"but {gpu_reason}")
    need = backend_device(requested, providers)
    if need not in ok:
        hint = " (JAX sees a GPU here; JAX_PLATFORMS=cpu keeps it on the CPU)" if requested == "jax" and need == GPU else ""
        raise ConfigError(f"{where}: {requested} runs on {need}, which options.accelerators "
                          f"{list(accelerators)} does not allow{hint}")
    if requested == "tensorrt":
        status = tensorrt_gpu_status()
        if not status.usable:
            raise AcceleratorUnavailable(f"{where}: tensorrt requested but {status.reason}; use backend: onnxruntime "
                              f"or backend: auto to run on CPU")
        return "tensorrt", f"TensorRT on {status.gpu_name}"
    return requested, f"{requested} on {need} (explicit)"
