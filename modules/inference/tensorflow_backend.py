"""TensorFlow / Keras 3 backend for the ``.keras`` inference models, in four execution modes.

The modes exist to be compared (``hltbench backends``): ``predict`` is the slow path most
analysis code uses (Keras builds a data pipeline per call), ``eager`` calls the model op by op,
``function`` (default) traces one ``tf.function`` with a fixed (None, 100, 3) signature so every
batch size reuses one graph, and ``xla`` compiles that graph with ``jit_compile=True`` (one
compilation per distinct batch size: warm up the sizes you will use).

A model with several inputs (ParticleNet's ``points``, ``features``, ``mask``) is fed by name, never by
position: each declared input goes to the Keras input of its name (``keras_inputs``: a dict model's keys, else
its ``keras.Input`` names), as one dict per call, in every mode. A one-input model runs as before, its one array
per call.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.extras import need

from .base import InferenceBackend, log
from .keras_checks import FED_EXACTLY, kept_values, lossy_input, not_a_keras_file, unloadable_keras
from .tf_import import import_tensorflow

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


def keras_inputs(model: Any, path: Path) -> list[tuple[str, Any]]:
    """(name, KerasTensor) of every model input, by the name a call feeds it under: a dict model's keys (Keras
    maps a dict to them, whatever its ``Input`` layers are called), else each ``keras.Input``'s name (Keras maps a
    dict to a list model's inputs by those), in ``model.inputs``' order for a list. A nested structure has no one
    name per input: one line."""
    struct = model.input
    tensors = list(struct.values()) if isinstance(struct, dict) else \
        list(struct) if isinstance(struct, (list, tuple)) else [struct]
    if any(isinstance(t, (dict, list, tuple)) for t in tensors):
        raise ModuleError(f"tensorflow: model {path} takes nested inputs; hltrun feeds a Keras model whose inputs "
                          f"are a list or a dict of keras.Input tensors, each by its name")
    return list(struct.items()) if isinstance(struct, dict) else [(str(t.name), t) for t in tensors]


class TensorFlowBackend(InferenceBackend):
    name = "tensorflow"
    reads = frozenset(("mode", "threads"))
    model_suffixes = (".keras",)

    def _load(self) -> None:
        mode = self.options.mode
        if mode not in MODES:
            raise ConfigError(f"tensorflow: mode {mode!r} (allowed: {', '.join(MODES)})")
        # TensorFlow's native (C++) log: warnings and errors would repeat our one-line errors per event
        tf = import_tensorflow(f"tensorflow: running {self.model_path}")
        keras = need("keras", f"tensorflow: running {self.model_path}")

        self._tf = tf
        self.threads = configure_threads(tf, self.options.threads, self.options.inter_threads)
        for module in CUSTOM_OBJECT_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:  # a model without custom layers still loads
                log.debug("tensorflow: custom layers %s not importable: %s", module, exc)
        refusal = not_a_keras_file(self.model_path)
        if refusal is not None:
            raise refusal
        try:
            self.model = keras.saving.load_model(str(self.model_path), compile=False)
        except Exception as exc:
            refusal = unloadable_keras(exc, self.model_path)
            if refusal is None:
                raise
            raise refusal from exc
        # several inputs: (name, tensor) per input, each fed by its name; one input: its array, as before
        self._inputs = keras_inputs(self.model, self.model_path) if len(self.model.inputs) > 1 else []
        self._outputs = keras_output_names(self.model)
        tensors = [t for _, t in self._inputs] or self.model.inputs[:1]
        checks = []
        for (name, _), tensor, decl in zip(self._input_signature(), tensors, self.settle_inputs().inputs):
            dtype = keras.backend.standardize_dtype(tensor.dtype)
            refusal = lossy_input(self.model_path, name, dtype, decl)
            if refusal is not None:
                raise refusal
            if dtype not in FED_EXACTLY and decl.file_branches():
                checks.append((name if self._inputs else None, name, dtype, decl.file_branches()))
        self._call = self._make_call(mode)
        if checks:  # only such a model pays the check
            self._call = kept_values(self.model_path, checks, self._call)

    def _make_call(self, mode: str) -> Callable[[Any], Any]:
        """The model call of ``mode``: on one array (one input), or on a dict of arrays by input name."""
        tf, model = self._tf, self.model
        if mode == "predict":
            if self._inputs:
                return lambda feed: model.predict(feed, batch_size=len(next(iter(feed.values()))), verbose=0)
            return lambda x: model.predict(x, batch_size=len(x), verbose=0)
        if mode == "eager":
            return lambda x: model(x, training=False)
        inputs = self.settle_inputs().inputs  # in the order of _input_signature: the names of self._inputs
        if self._inputs:
            signature: list[Any] = [{name: tf.TensorSpec((None, *decl.shape(0)[1:]), tf.float32)
                                     for (name, _), decl in zip(self._inputs, inputs)}]
        else:
            signature = [tf.TensorSpec((None, *inputs[0].shape(0)[1:]), tf.float32, name="jets")]
        fn = tf.function(lambda x: model(x, training=False), input_signature=signature,
                         jit_compile=(mode == "xla"), reduce_retracing=True)
        return fn

    def _input_shape(self) -> tuple[Any, ...]:
        return tuple(self.model.inputs[0].shape)

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        if self._inputs:
            return [(name, tuple(t.shape)) for name, t in self._inputs]
        return [(self.model.inputs[0].name, tuple(self.model.inputs[0].shape))]

    def _output_names(self) -> Sequence[str]:
        return self._outputs

    def _run(self, x: np.ndarray | dict[str, np.ndarray]) -> Any:
        """One input's array, or (``_run_inputs``) a dict of every input's by name: the model's outputs by name."""
        raw = self._call(x)
        if isinstance(raw, dict):
            return {k: np.asarray(v) for k, v in raw.items()}
        if isinstance(raw, (list, tuple)):
            return dict(zip(self._outputs, (np.asarray(v) for v in raw)))
        return {self._outputs[0]: raw}

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> Any:
        """Several inputs, in the order of ``_input_signature`` (the contract is matched to it): fed by name."""
        if not self._inputs:
            return self._run(xs[0])
        return self._run({name: x for (name, _), x in zip(self._inputs, xs)})

    def _describe(self) -> dict[str, Any]:
        import keras

        return {"versions": {"tensorflow": self._tf.__version__, "keras": keras.__version__},
                "mode": self.options.mode, "threads": self.threads, "precision": "fp32"}
