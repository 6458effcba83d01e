"""TensorFlow Lite backend: a ``.tflite`` flatbuffer on TFLite's interpreter with its XNNPACK CPU delegate.

Why another CPU engine: at the HLT's batch of two jets a model of ~100 small ops is paid in per-op
dispatch, and XNNPACK's is lighter than ONNX Runtime's; it also evaluates Elu vectorised. On the
Conv-VAE written for it (``tools/physics/conv_tflite.py``) it is the only engine measured within 5x the
one-core sgemm floor at batch 2 (docs/inference.md, issue 21 item 3). TFLite reads no ONNX: the model
is a TFLite file, as TensorFlow's converter writes it (``tf.lite.TFLiteConverter``).

The file's batch axis must be dynamic (the contract's rule for every engine: hltrun sends a variable
number of jets per call). Like IREE it runs static shapes: one interpreter per batch bucket (powers
of two up to the one holding ``opt_batch`` jets, 1 to 16 by default), its tensors resized and its
XNNPACK plan prepared at warm-up (begin_job), never at an event; a batch is zero-padded to its bucket
and a bigger one runs in slices of the largest. A model with several inputs (ParticleNet's ``points``,
``features``, ``mask``) is fed by name: each declared input goes to the tensor the file's serving signature names
so (the converter keeps the Keras input names there, and orders the tensors its own way: ``points``, ``mask``,
``features`` for a Keras [points, features, mask]), each padded to the bucket as ``BucketedBackend`` pads every
input (zero jets: a mask's padding is 0). Outputs are named by the file's
serving signature (what the converter writes from a Keras model, ``from_keras_model``, or a SavedModel), else
by tensor name; ``outputs:`` maps them like any backend's. (``from_concrete_functions([f], model)`` with a Keras 3
model wrote a signature but lost the weights, TF 2.21: docs/your-model.md; ``auto``'s agreement check rejects
such a file.)

The runtime is ``ai_edge_litert`` (TFLite's own package, numpy only; the ``cpu`` and ``tflite`` extras install it)
when installed, else ``tensorflow.lite`` (TensorFlow's, deprecated in its favour). ``backend: auto`` times this
backend on the ``.tflite`` beside the path's ``.onnx`` model, on LiteRT only (``not_ready_for_auto``).
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.errors import ModuleError
from hltrun.framework.native_stderr import without_native_notice
from hltrun.framework.resources import why_not_readable

from . import model_import
from .base import check_model_file
from .buckets import up_to_typical
from .bucketed import BucketedBackend, Buffers, Executed


@dataclass(frozen=True)
class TfliteGraph:
    """The facts ``BucketedBackend`` needs of a model: its inputs (one entry each, in the file's order) and its
    outputs, by name."""

    input_names: tuple[str, ...]
    input_dtypes: tuple[np.dtype, ...]
    input_shapes: tuple[tuple[Any, ...], ...]
    output_names: list[str]
    output_types: dict[str, str] = field(default_factory=dict)  # none known: the outputs' types are not checked


def interpreter_class() -> tuple[type, str, str]:
    """(Interpreter class, runtime name, version): LiteRT when installed, else TensorFlow's."""
    try:
        from ai_edge_litert import interpreter as litert
        from importlib.metadata import version

        return litert.Interpreter, "ai-edge-litert", version("ai-edge-litert")
    except ImportError:
        from .tf_import import import_tensorflow  # its start-up log kept off the console, as the tensorflow backend's

        tf = import_tensorflow("tflite: running a .tflite model (or install ai-edge-litert)")
        return tf.lite.Interpreter, "tensorflow.lite", tf.__version__


def open_interpreter(cls: type, model: bytes, threads: int) -> Any:
    """One interpreter on the model's bytes (its default XNNPACK delegate for float models)."""
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice, once per bucket
        warnings.simplefilter("ignore")
        return cls(model_content=model, num_threads=max(1, int(threads)))


XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_first_allocation = threading.Lock()
_allocated_once = False


def allocate(interp: Any) -> None:
    """``allocate_tensors``, with the delegate's INFO line (C++, printed once per process at the first
    allocation, past ``-q``) kept off the console; any other line it prints is shown."""
    global _allocated_once
    if _allocated_once:
        interp.allocate_tensors()
        return
    with _first_allocation:
        if _allocated_once:
            interp.allocate_tensors()
            return
        with without_native_notice(lambda line: line.strip() == XNNPACK_NOTICE):
            interp.allocate_tensors()
        _allocated_once = True


def reduced_tensors(interp: Any) -> str | None:
    """``int8`` when the file holds quantised integer tensors (the converter's ``Optimize.DEFAULT``: weights, and with
    a representative dataset activations too, float input and output kept), ``float16`` for float16 weights, else
    None. Such a file beside a float32 ``.onnx`` ran 12 % (int8) off ONNX Runtime's scores of that model, said nowhere
    when the user named ``backend: tflite`` (``auto`` leaves it out on its agreement check)."""
    details = interp.get_tensor_details()
    if any(np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) and
           (d.get("quantization", (0.0, 0))[0] or len(d.get("quantization_parameters", {}).get("scales", ())))
           for d in details):  # a scale per tensor, or per channel (quantization_parameters)
        return "int8"
    return "float16" if any(np.dtype(d["dtype"]) == np.float16 for d in details) else None


_SIGNATURE_TENSOR = re.compile(r"^serving_default_(.+):\d+$")


def io_indices(interp: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(input details, output name -> tensor index): the serving signature's names when the file has one
    signature, else the tensors' own names; of several inputs, each read without the ``serving_default_``/``:0``
    the converter wraps it in (``serving_default_points:0`` is the input ``points``) where that leaves every input
    its own name. The names are what a declared input is matched to: a several-input model is fed by them (one
    input keeps its tensor's name, as before: it is the model's only input whatever its name)."""
    signatures = interp.get_signature_list()
    key = next(iter(signatures)) if len(signatures) == 1 else first_subgraph_signature(interp)
    if key is not None:
        runner = interp.get_signature_runner(key)
        inputs = [{**detail, "name": name} for name, detail in runner.get_input_details().items()]
        return inputs, {name: d["index"] for name, d in runner.get_output_details().items()}
    inputs = interp.get_input_details()
    bare = [_SIGNATURE_TENSOR.sub(r"\1", d["name"]) for d in inputs]
    if len(bare) > 1 and len(set(bare)) == len(bare):
        inputs = [{**d, "name": name} for d, name in zip(inputs, bare)]
    return inputs, {d["name"]: d["index"] for d in interp.get_output_details()}


SERVING = "serving_default"  # the signature a SavedModel serves by default (tf.saved_model.save, Keras export)


def first_subgraph_signature(interp: Any) -> str | None:
    """The signature ``invoke()`` runs: the one whose tensors are the first subgraph's inputs and outputs (a
    file of several signatures holds one subgraph each, and the interpreter's own tensors are the first's);
    None where no signature's are."""
    tensors = ({d["name"] for d in interp.get_input_details()}, {d["name"] for d in interp.get_output_details()})
    for key in interp.get_signature_list():
        runner = interp.get_signature_runner(key)
        if ({d["name"] for d in runner.get_input_details().values()},
                {d["name"] for d in runner.get_output_details().values()}) == tensors:
            return key
    return None


def several_signatures(interp: Any) -> str | None:
    """Why a file of several signatures (a SavedModel's ``serving_default`` beside others, several functions
    converted together) cannot be run as it is, or None. hltrun runs the serving signature, and only the first
    subgraph can be: until 2026-12-07 it ran the first subgraph whatever its signature, the scores of another
    function than the network's, silently."""
    signatures = list(interp.get_signature_list())
    if len(signatures) < 2:
        return None
    first = first_subgraph_signature(interp)
    if SERVING in signatures and first == SERVING:
        return None
    why = (f"its {SERVING!r} is not the one the interpreter runs (the first, {first!r})" if SERVING in signatures
           else f"none is {SERVING!r}, the one hltrun would run")
    return (f"holds {len(signatures)} signatures {signatures} and {why}: convert the scoring function alone "
            f"(tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=[{SERVING!r}]), or "
            f"from_concrete_functions with that one function)")


class TfliteBackend(BucketedBackend):
    name = "tflite"
    reads = frozenset(("threads", "max_batch"))
    model_suffixes = (".tflite",)
    copies = False  # the host buffer is copied into the interpreter's input: no device
    fresh_outputs = True  # get_tensor returns a copy on every call

    @classmethod
    def not_ready_for_auto(cls, model_path: Path, options: Any) -> str | None:
        """``auto`` times TFLite on the ``.tflite`` file beside the path's ``.onnx`` model (its scores are checked
        against ONNX Runtime's before it can win), and only on LiteRT: TensorFlow's interpreter would cost
        seconds of import at begin_job."""
        if why_not_readable(model_path) == "not found":
            origin = model_import.provenance(Path(model_path).with_suffix(".onnx"))
            if origin is not None:  # it named the import cache's hashed file as the one missing beside the model
                return f"reads .tflite files, and {Path(origin.source).name} is a {origin.format} network"
            return f"has no {Path(model_path).name} beside the model"
        try:  # a folder, a FIFO, no read permission, an empty file: skipped, never hashed or opened
            check_model_file(Path(model_path), cls.model_suffixes, cls.name)
        except ModuleError as exc:
            return f"skipped: {str(exc).removeprefix(f'{cls.name}: ')}"
        if importlib.util.find_spec("ai_edge_litert") is None:
            return "needs ai-edge-litert to be timed by auto (the cpu or tflite extra installs it)"
        return None

    def _load(self) -> None:
        self._cls, self.runtime, self.version = interpreter_class()
        self._model = self.model_path.read_bytes()
        probe = open_interpreter(self._cls, self._model, self.options.threads)
        refusal = several_signatures(probe)
        if refusal is not None:
            raise ModuleError(f"{self.name}: model {self.model_path} {refusal}")
        inputs, outputs = io_indices(probe)
        shapes = tuple(tuple(None if int(d) < 0 else int(d) for d in i.get("shape_signature", i["shape"]))
                       for i in inputs)
        self.device = "cpu"
        self._use_graph(TfliteGraph(tuple(i["name"] for i in inputs), tuple(np.dtype(i["dtype"]) for i in inputs),
                                    shapes, list(outputs)))
        self.buckets = up_to_typical(self.options.opt_batch, self.max_batch)   # as IREE's
        self.max_batch = self.buckets[-1]  # bigger batches run in slices of the largest bucket
        # bucket -> (interpreter, its input tensor: one index, or one per input by name, outputs' indices)
        self._interp: dict[int, tuple[Any, Any, list[int]]] = {}
        self._computes_in = reduced_tensors(probe)

    def computes_in(self) -> str | None:
        return self._computes_in

    def _prepare_bucket(self, bucket: int) -> None:
        """An interpreter of its own, every input resized to the bucket; XNNPACK plans it at allocation (warm-up,
        begin_job). Its inputs are looked up by name, in the order of the graph's (and so of the buffers')."""
        interp = open_interpreter(self._cls, self._model, self.options.threads)
        inputs, outputs = io_indices(interp)
        index_of = {i["name"]: i["index"] for i in inputs}
        indices = tuple(index_of[name] for name in self.graph.input_names)
        for index, jet in zip(indices, self._jet_shapes):
            interp.resize_tensor_input(index, [bucket, *jet], strict=True)
        allocate(interp)
        self._interp[bucket] = (interp, indices if self._several else indices[0],
                                [outputs[name] for name in self.graph.output_names])

    def _execute(self, bucket: int, bufs: Buffers) -> Executed:
        interp, index, outs = self._interp[bucket]
        t0 = time.perf_counter_ns()
        if self._several:
            for i, buf in zip(index, bufs):
                interp.set_tensor(i, buf)
        else:
            interp.set_tensor(index, bufs[0])
        interp.invoke()
        host = [interp.get_tensor(i) for i in outs]  # copies: valid after the next call
        return host, 0, time.perf_counter_ns() - t0, 0

    def device_label(self) -> str:
        return f"CPU ({self.runtime} {self.version}, XNNPACK, {self.options.threads} thread(s))"

    def close(self) -> None:
        """Drop the interpreters; a later run() is refused as one before warm_up()."""
        self._interp, self._host, self._prepared = {}, {}, set()

    def _describe(self) -> dict[str, Any]:
        return {"versions": {self.runtime: self.version}, "delegate": "XNNPACK", **self._bucketed_describe()}


__all__ = ["TfliteBackend", "allocate", "interpreter_class", "io_indices", "open_interpreter", "reduced_tensors"]
