"""TensorFlow / Keras 3 backend for the ``.keras`` inference models, in four execution modes.

The modes exist to be compared (``hltbench backends``): ``predict`` is the slow path most
analysis code uses (Keras builds a data pipeline per call), ``eager`` calls the model op by op,
``function`` (default) traces one ``tf.function`` with a fixed (None, 100, 3) signature so every
batch size reuses one graph, and ``xla`` compiles that graph with ``jit_compile=True`` (one
compilation per distinct batch size: warm up the sizes you will use).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.extras import need

from .base import InferenceBackend, log, several_inputs

MODES = ("predict", "eager", "function", "xla")
# modules whose import registers the custom layers of the shipped models (package "hltrun")
CUSTOM_OBJECT_MODULES = ("hltrun.modules.models.layers",)


def configure_threads(tf: Any, intra: int, inter: int) -> dict[str, int]:
    """Set TF's process-wide thread pools; they freeze once TF runs its first op, so a later,
    different request is logged and the threads actually in use are reported."""
    for setter, value in ((tf.config.threading.set_intra_op_parallelism_threads, intra),
                          (tf.config.threading.set_inter_op_parallelism_threads, inter)):
        try:
            setter(value)
        except RuntimeError as exc:
            log.warning("tensorflow: cannot set threads to %d (%s); TensorFlow was already initialised",
                        value, exc, extra={"once": True})
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def keras_output_names(model: Any) -> list[str]:
    """The model's outputs by the names Keras gives them: a dict's keys, else its output layers' names
    (``model.output_names``), so that the scorer's rule (the output named ``score``, else the only one,
    else ``outputs:``) and the names it lists are the model's own, as for an ONNX file. (A list of outputs
    used to be renamed (score, kl) by position: a model [anomaly, kl_div] was scored by its first output
    unasked, and ``outputs: {score: kl_div}`` was refused as naming no output.)"""
    out = model.output
    if isinstance(out, dict):
        return list(out)
    names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    count = len(out) if isinstance(out, (list, tuple)) else 1
    if len(names) == count and len(set(names)) == count:
        return names
    return [f"output_{i}" for i in range(count)] if count > 1 else ["output"]


_UNKNOWN_CLASS = re.compile(r"Could not locate class '([^']+)'")


def unknown_custom_class(exc: BaseException, model: Path) -> ModuleError | None:
    """A ``.keras`` file with a custom layer (or function) whose class is not registered in this process is
    one line naming the class and the way on. Keras 3 rebuilds a custom layer from its Python class only, and
    the user's training code is not imported here; Keras' own words were a 400-character dump of the
    functional model's configuration ("could not be deserialized properly"), the class name lost in it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found = _UNKNOWN_CLASS.search(str(exc))
        if found:
            beside = model.with_suffix(".onnx")
            way = (f"run {beside.name} beside it on another engine (the scorer's model: {beside}, with backend: "
                   f"onnxruntime or auto; every engine but tensorflow reads ONNX)" if beside.is_file() else
                   "export it to ONNX (tf2onnx, docs/your-model.md) and run that file on any engine")
            return ModuleError(f"tensorflow: model {model} uses the custom Keras class {found.group(1)!r}, whose Python "
                               f"code is not imported by hltrun (Keras 3 rebuilds a custom layer only from its "
                               f"registered class): {way}")
        exc = exc.__cause__ or exc.__context__
    return None


class TensorFlowBackend(InferenceBackend):
    name = "tensorflow"
    reads = frozenset(("mode", "threads"))
    model_suffixes = (".keras",)

    def _load(self) -> None:
        mode = self.options.mode
        if mode not in MODES:
            raise ConfigError(f"tensorflow: mode {mode!r} (allowed: {', '.join(MODES)})")
        # TensorFlow's native (C++) log: warnings and errors would repeat our one-line errors per event
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        tf = need("tensorflow", f"tensorflow: running {self.model_path}")
        keras = need("keras", f"tensorflow: running {self.model_path}")

        self._tf = tf
        self.threads = configure_threads(tf, self.options.threads, self.options.inter_threads)
        for module in CUSTOM_OBJECT_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:  # a model without custom layers still loads
                log.debug("tensorflow: custom layers %s not importable: %s", module, exc)
        try:
            self.model = keras.saving.load_model(str(self.model_path), compile=False)
        except Exception as exc:
            refusal = unknown_custom_class(exc, self.model_path)
            if refusal is None:
                raise
            raise refusal from exc
        if len(self.model.inputs) != 1:
            raise several_inputs(self.name, self.model_path, [i.name for i in self.model.inputs])
        self._outputs = keras_output_names(self.model)
        self._call = self._make_call(mode)

    def _make_call(self, mode: str) -> Callable[[np.ndarray], Any]:
        tf, model = self._tf, self.model
        if mode == "predict":
            return lambda x: model.predict(x, batch_size=len(x), verbose=0)
        if mode == "eager":
            return lambda x: model(x, training=False)
        signature = [tf.TensorSpec((None, *self.settle_inputs().inputs[0].shape(0)[1:]), tf.float32, name="jets")]
        fn = tf.function(lambda x: model(x, training=False), input_signature=signature,
                         jit_compile=(mode == "xla"), reduce_retracing=True)
        return fn

    def _input_shape(self) -> tuple[Any, ...]:
        return tuple(self.model.inputs[0].shape)

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(self.model.inputs[0].name, tuple(self.model.inputs[0].shape))]

    def _output_names(self) -> Sequence[str]:
        return self._outputs

    def _run(self, x: np.ndarray) -> Any:
        raw = self._call(x)
        if isinstance(raw, dict):
            return {k: np.asarray(v) for k, v in raw.items()}
        if isinstance(raw, (list, tuple)):
            return dict(zip(self._outputs, (np.asarray(v) for v in raw)))
        return {self._outputs[0]: raw}

    def _describe(self) -> dict[str, Any]:
        import keras

        return {"versions": {"tensorflow": self._tf.__version__, "keras": keras.__version__},
                "mode": self.options.mode, "threads": self.threads, "precision": "fp32"}
