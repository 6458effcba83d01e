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
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.extras import need
from hltrun.modules.contract import ModelInput

from .base import InferenceBackend, log
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


_UNKNOWN_CLASS = re.compile(r"Could not locate class '([^']+)'")
_PYTHON_LAMBDA = "deserialization of a `Lambda` layer whose `function` is a Python lambda"


def unloadable_keras(exc: BaseException, model: Path) -> ModuleError | None:
    """A ``.keras`` file that Keras 3 cannot rebuild here is one line saying why and the way on, or None for another
    failure. A custom layer (or function) whose class is not registered in this process: Keras rebuilds it from its
    Python class only, and the user's training code is not imported here (Keras' own words were a 400-character
    dump of the functional model's configuration, "could not be deserialized properly", the class lost in it). A
    ``Lambda`` layer of a Python lambda: Keras loads its pickled code only with ``safe_mode=False`` (it would run
    code from the file), and its line told the user to pass that "to the loading function", which hltrun's user
    cannot reach."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found = _UNKNOWN_CLASS.search(str(exc))
        if found:
            return ModuleError(f"tensorflow: model {model} uses the custom Keras class {found.group(1)!r}, whose Python "
                               f"code is not imported by hltrun (Keras 3 rebuilds a custom layer only from its "
                               f"registered class): {_way_on(model)}")
        if _PYTHON_LAMBDA in str(exc):
            return ModuleError(f"tensorflow: model {model} has a Lambda layer of a Python lambda, which Keras loads only "
                               f"with safe_mode=False (it runs code saved in the file); hltrun loads in safe mode: write "
                               f"it with keras.ops in the model itself and save again, or {_way_on(model)}")
        exc = exc.__cause__ or exc.__context__
    return None


def _way_on(model: Path) -> str:
    """Where a ``.keras`` file hltrun cannot rebuild goes on: the ``.onnx`` beside it, else an ONNX export."""
    beside = model.with_suffix(".onnx")
    if beside.is_file():
        return (f"run {beside.name} beside it on another engine (the scorer's model: {beside}, with backend: "
                f"onnxruntime or auto; every engine but tensorflow reads ONNX)")
    return "export it to ONNX (tf2onnx, docs/your-model.md) and run that file on any engine"


# what Keras' cast of hltrun's float32 values to an input's dtype keeps exactly: float64 widens every value; an
# integer type holds whole numbers (a 0/1 mask, a constituent count); bool and a half type, a 0/1 mask only. A file
# branch's values (a charge, a pdgId) are the user's: checked on every call, for such a model only (``kept_values``).
FED_EXACTLY = ("float32", "float64")
_WHOLE_FEATURES = frozenset(("mask", "n_constituents"))
_CAST_LOSES = {"int": "truncating them to whole numbers", "bool": "turning every non-zero value into 1 (True)",
               "float16": "rounding them to 11 significant bits (and any above 65504 to inf)",
               "bfloat16": "rounding them to 8 significant bits"}


def numpy_dtype(dtype: str) -> np.dtype | None:
    """numpy's type of a Keras dtype name, or None where numpy has none (bfloat16, string)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def lossy_input(model: Path, name: str, dtype: str, decl: ModelInput) -> ModuleError | None:
    """A Keras input whose dtype would change hltrun's float32 values is one line naming it, its dtype and the
    features lost; None where the cast is exact, or is checked per call (file branches). Why: Keras casts what it
    is fed to each ``keras.Input``'s dtype without a word, so an int32 ``features`` input ran with every value
    truncated (-32.2 scored as -16), a bool one with all ones, and the engines that refuse a non-float32 input
    (``require_float32``) were not asked. A 0/1 mask is exact in any of these types and is fed so (ParticleNet's
    ``mask`` is often int or bool)."""
    if dtype in FED_EXACTLY:
        return None
    kind = "int" if dtype.startswith(("int", "uint")) else dtype
    exact = set(_WHOLE_FEATURES if kind == "int" else {"mask"} if kind in _CAST_LOSES else ())
    if kind in _CAST_LOSES and numpy_dtype(dtype) is not None:
        exact.update(decl.branches())
    lost = [f for f in decl.features if f not in exact]
    if not lost:
        return None
    how = _CAST_LOSES.get(kind, "which it cannot hold")
    return ModuleError(f"tensorflow: model {model} input {name!r} is {dtype}: Keras would cast hltrun's float32 values "
                       f"{lost} to it, {how}; declare it keras.Input(..., dtype=\"float32\") (float64 is fed "
                       f"exactly too; only a 0/1 mask{', a constituent count' if kind == 'int' else ''} or a file "
                       f"branch whose values it holds may stay {dtype}) and save the model again")


def kept_values(model: Path, checks: Sequence[tuple[str | None, str, str, tuple[str, ...]]],
                call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``call`` that first checks each (feed key (None: the one input's array), name, dtype, file branches) input's values
    survive Keras' cast to its dtype: a branch the user declared is whole numbers (a charge) or not (a weight),
    which only its values tell. One line at the first call that would change one."""
    def checked(feed: Any) -> Any:
        for key, name, dtype, branches in checks:
            x = feed if key is None else feed[key]
            with np.errstate(invalid="ignore", over="ignore"):
                cast = x.astype(dtype).astype(x.dtype)
            changed = cast != x
            if changed.any():
                at = tuple(np.argwhere(changed)[0])
                raise ModuleError(f"tensorflow: model {model} input {name!r} is {dtype}, and Keras would change "
                                  f"hltrun's float32 values of {list(branches)} in the cast to it ({float(x[at]):g} "
                                  f"became {float(cast[at]):g}); declare it keras.Input(..., dtype=\"float32\") and "
                                  f"save the model again")
        return call(feed)
    return checked


_HDF5 = b"\x89HDF\r\n\x1a\n"
_LFS = b"version https://git-lfs"


def not_a_keras_file(model: Path) -> ModuleError | None:
    """A ``.keras`` file that is not the zip archive Keras saves is one line saying what it is. Keras' own words
    were "File not found: filepath=... Please ensure the file is an accessible `.keras` zip file." for a file that
    is there: a Git LFS pointer not pulled, a copy cut short, an HDF5 model saved under the name."""
    if zipfile.is_zipfile(model):
        return None
    with open(model, "rb") as fh:
        head = fh.read(64)
    what = ("a Git LFS pointer, not the model: fetch it (git lfs pull)" if head.startswith(_LFS) else
            "an HDF5 file (Keras' legacy .h5 format) under a .keras name: load it in the Keras that saved it and "
            "save it again with model.save('<name>.keras')"
            if head.startswith(_HDF5) else
            f"cut short ({model.stat().st_size} bytes, a zip archive's start but not its end): copy it again"
            if head.startswith(b"PK") else "not the zip archive Keras saves: save it with model.save('<name>.keras')")
    return ModuleError(f"tensorflow: cannot load model {model}: it is {what}")


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
            if dtype not in FED_EXACTLY and decl.branches():
                checks.append((name if self._inputs else None, name, dtype, decl.branches()))
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
