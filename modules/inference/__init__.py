"""Inference backends behind one interface (``base.InferenceBackend``), picked by name.

Importing this package imports no ML framework: each backend module is imported only when its name
is asked for, so a job on ONNX Runtime never loads TensorFlow (tests/test_backends.py checks it).
``auto`` is resolved by ``accelerator.choose_backend`` before a backend is created.
"""

from __future__ import annotations

import importlib
import os

from framework.errors import ConfigError

from .base import BackendOptions, InferenceBackend

BACKENDS: dict[str, str] = {
    "tensorflow": "modules.inference.tensorflow_backend:TensorFlowBackend",
    "onnxruntime": "modules.inference.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "modules.inference.tensorrt_backend:TensorRTBackend",
}
BACKEND_NAMES = (*BACKENDS, "auto")
# the model file each backend reads, for a model given by name (``conv_vae``)
MODEL_SUFFIX = {"tensorflow": ".keras", "onnxruntime": ".onnx", "tensorrt": ".onnx"}


def backend_class(name: str) -> type[InferenceBackend]:
    """The backend class for ``name`` (imports its module, and so its framework, now)."""
    if name not in BACKENDS:
        hint = " (resolve 'auto' with accelerator.choose_backend first)" if name == "auto" else ""
        raise ConfigError(f"unknown inference backend {name!r}{hint}; known: {', '.join(BACKEND_NAMES)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, model_path: str | os.PathLike[str],
                   options: BackendOptions | None = None) -> InferenceBackend:
    """An unloaded backend; call ``load()`` (and ``warm_up()``) before ``run``."""
    return backend_class(name)(model_path, options)


__all__ = ["BACKENDS", "BACKEND_NAMES", "MODEL_SUFFIX", "BackendOptions", "InferenceBackend",
           "backend_class", "create_backend"]
