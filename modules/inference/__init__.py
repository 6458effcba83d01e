"""Inference backends behind one interface (``base.InferenceBackend``), picked by name.

Backends register through the ``hltrun.backends`` entry-point group (setup.cfg), hltrun's own as a
third-party one would. Importing this package imports no ML framework: a backend's module is
imported only when its name is asked for, so a job on ONNX Runtime never loads TensorFlow
(tests/test_backends.py checks it). ``auto`` is resolved by ``accelerator.choose_backend`` before a
backend is created.
"""

from __future__ import annotations

import os

from hltrun.framework.errors import ConfigError
from hltrun.framework.registry import BACKEND_ENTRY_POINT_GROUP, known_names, plugin_class

from .base import BackendOptions, InferenceBackend

AUTO = "auto"


def backend_names() -> tuple[str, ...]:
    """Every installed backend's name, then ``auto``."""
    return (*known_names(BACKEND_ENTRY_POINT_GROUP), AUTO)


def backend_class(name: str) -> type[InferenceBackend]:
    """The backend class for ``name`` (imports its module, and so its framework, now)."""
    if name == AUTO:
        raise ConfigError("backend 'auto' must be resolved with accelerator.choose_backend first")
    cls = plugin_class(BACKEND_ENTRY_POINT_GROUP, name, "backend")
    if not issubclass(cls, InferenceBackend):
        raise ConfigError(f"backend {name!r} ({cls.__module__}.{cls.__qualname__}) is not an InferenceBackend")
    return cls


def model_suffix(name: str) -> str:
    """The model file suffix the backend reads, for a model given by name (``conv_vae``)."""
    return backend_class(name).model_suffixes[0]


def create_backend(name: str, model_path: str | os.PathLike[str],
                   options: BackendOptions | None = None) -> InferenceBackend:
    """An unloaded backend; call ``load()`` (and ``warm_up()``) before ``run``."""
    return backend_class(name)(model_path, options)


__all__ = ["AUTO", "BackendOptions", "InferenceBackend", "backend_class", "backend_names", "create_backend",
           "model_suffix"]
