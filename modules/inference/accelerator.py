"""Which backend runs: ``backend: auto`` and ``options.accelerators``, CMSSW-style.

* ``auto`` takes TensorRT when a GPU and the tensorrt package are both there and the job allows
  ``gpu-nvidia``; otherwise ONNX Runtime on the CPU — loudly (log line + ``job.facts``).
* An explicit backend is never swapped for another: ``tensorrt`` without a GPU, or a backend the
  accelerators list forbids, is a one-line error.

GPU detection never imports TensorFlow or initialises CUDA contexts it keeps: it looks for the
packages with ``importlib.util.find_spec`` and asks the driver for a device count.
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


def allowed(accelerators: Sequence[str]) -> set[str]:
    acc = set(accelerators or ["*"])
    return {CPU, GPU} if "*" in acc else acc


def backend_device(backend: str, providers: Sequence[str] = ()) -> str:
    """The accelerator a backend configuration needs."""
    if backend == "tensorrt":
        return GPU
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
            gpu_reason = status.reason
        else:
            gpu_reason = f"options.accelerators {list(accelerators)} excludes {GPU}"
        if CPU in ok:
            return "onnxruntime", f"auto: ONNX Runtime on CPU (TensorRT not used: {gpu_reason})"
        raise AcceleratorUnavailable(f"{where}: auto with options.accelerators {list(accelerators)} needs a GPU, "
                          f"but {gpu_reason}")
    need = backend_device(requested, providers)
    if need not in ok:
        raise ConfigError(f"{where}: {requested} runs on {need}, which options.accelerators "
                          f"{list(accelerators)} does not allow")
    if requested == "tensorrt":
        status = tensorrt_gpu_status()
        if not status.usable:
            raise AcceleratorUnavailable(f"{where}: tensorrt requested but {status.reason}; use backend: onnxruntime "
                              f"or backend: auto to run on CPU")
        return "tensorrt", f"TensorRT on {status.gpu_name}"
    return requested, f"{requested} on {need} (explicit)"
