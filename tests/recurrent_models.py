"""Recurrent networks (one ONNX LSTM / GRU / RNN node) built with the onnx helper API in milliseconds, no exporter
needed: the field-networks tests run them on every engine that reads ONNX (the CPU), tests/test_torch_gpu.py runs
them under CUDA graphs on a GPU (the GPU machine has onnx and onnxruntime, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save_onnx(graph, path: Path, functions=(), opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                     helper.make_opsetid("user.layers", 1)],
                              functions=list(functions))
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def i64(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def recurrent_onnx(path: Path, op: str, hidden: int, attrs: dict, *, bias: bool = True, states: bool = True,
                   peepholes: bool = False, seed: int = 0, layout: int = 0, lens: str = "input", steps: int = 7,
                   score: bool = False) -> Path:
    """One ONNX ``op`` node over x (N, ``steps``, 3), fed time-major (a Transpose; ``layout`` 1: batch-major as it
    is), its ``sequence_lens`` each jet's count of real constituents (pT > 0: the padded ones left out, as a user
    feeds them; ``lens`` "full": ``steps`` for every jet, from the input's shape; "none": no sequence_lens), every
    output flattened per jet into y (N, ...), the same values whatever the layout; ``score``: the network's output
    is instead ``score`` (N,), the sum of y's squares per jet (one anomaly score per jet, as the scorer reads it).
    Weights from their own generator (the same whichever test ran before)."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    w = lambda name, *shape: numpy_helper.from_array(rng.normal(0, 0.6, size=shape).astype(np.float32), name)  # noqa: E731
    inits = [w("W", dirs, gates * hidden, 3), w("R", dirs, gates * hidden, hidden), i64("perm", [1, 0, 2]),
             i64("two", [2]), i64("three", [3]), i64("last", [2]), i64("one", [1])]
    ins = ["xt" if not layout else "x", "W", "R", "B" if bias else "", "lens", "h0" if states else ""]
    if bias:
        inits.append(w("B", dirs, 2 * gates * hidden))
    if states:
        inits.append(w("h0", dirs, 1, hidden))  # broadcast to the batch by an Expand below: (dirs, N, hidden)
        if layout:  # batch-major states: (N, dirs, hidden)
            inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]).transpose(1, 0, 2), "h0")
    if op == "LSTM":
        ins += ["c0" if states else "", "P" if peepholes else ""]
        if states:
            inits.append(w("c0", dirs, 1, hidden))
            if layout:
                inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]).transpose(1, 0, 2), "c0")
        if peepholes:
            inits.append(w("P", dirs, 3 * hidden))
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Slice", ["x", "two", "three", "last"], ["pt"]),
             helper.make_node("Greater", ["pt", "zero"], ["real"]),
             helper.make_node("Cast", ["real"], ["realf"], to=TensorProto.INT32),
             helper.make_node("ReduceSum", ["realf", "axes"], ["lens"], keepdims=0)]
    inits += [numpy_helper.from_array(np.float32(0), "zero"), i64("axes", [1, 2])]
    if lens == "none":
        ins[4] = ""
    elif lens == "full":  # every jet all its steps: a constant of the batch size, as some exporters write it
        nodes += [helper.make_node("Shape", ["x"], ["xs_l"], end=1),
                  helper.make_node("Expand", ["seven", "xs_l"], ["full"])]
        inits.append(numpy_helper.from_array(np.asarray([steps], np.int32), "seven"))
        ins[4] = "full"
    if states:  # the states' batch axis from the input: (dirs, N, hidden)
        nodes += [helper.make_node("Shape", ["x"], ["xs"]), helper.make_node("Slice", ["xs", "zero_i", "one"], ["n"]),
                  helper.make_node("Concat", ["n", "d", "h"] if layout else ["d", "n", "h"], ["sshape"], axis=0)]
        inits += [i64("zero_i", [0]), i64("d", [dirs]), i64("h", [hidden])]
        for s in ("h0", "c0") if op == "LSTM" else ("h0",):
            nodes.append(helper.make_node("Expand", [s, "sshape"], [s + "e"]))
            ins[ins.index(s)] = s + "e"
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    nodes.append(helper.make_node(op, ins, outs, hidden_size=hidden, **attrs, **({"layout": 1} if layout else {})))
    flat = []
    for name, perm in (("Y", [2, 0, 1, 3]), ("Yh", [1, 0, 2]), ("Yc", [1, 0, 2])):
        if name in outs and layout:  # already (N, seq, dirs, hidden) and (N, dirs, hidden)
            nodes.append(helper.make_node("Flatten", [name], [name + "f"]))
            flat.append(name + "f")
        elif name in outs:
            nodes += [helper.make_node("Transpose", [name], [name + "t"], perm=perm),
                      helper.make_node("Flatten", [name + "t"], [name + "f"])]
            flat.append(name + "f")
    nodes.append(helper.make_node("Concat", flat, ["y"], axis=1))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])
    if score:
        nodes += [helper.make_node("Mul", ["y", "y"], ["yy"]),
                  helper.make_node("ReduceSum", ["yy", "one"], ["score"], keepdims=0)]
        out = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", steps, 3])],
                              [out], inits)
    return save_onnx(graph, path)


def jets_of_lengths(lengths) -> np.ndarray:
    """(N, 7, 3) jets, each with ``lengths[i]`` real constituents (pT > 0), the rest zero padding."""
    rng = np.random.default_rng(1)
    x = np.zeros((len(lengths), 7, 3), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n, :2] = rng.normal(size=(n, 2))
        x[i, :n, 2] = rng.uniform(0.5, 2, size=n)
    return x


def recurrent_anomaly_onnx(path: Path, op: str, lens: str = "none") -> Path:
    """A small recurrent anomaly network on the shipped (N, 100, 3) input: a bidirectional ``op`` (LSTM or GRU,
    hidden 8, initial states) over the constituents, its outputs' sum of squares the score. ``lens`` "none": the
    form PyTorch runs as its own ``nn.LSTM``/``nn.GRU`` (cuDNN's RNN on a GPU); "input": each jet's own length
    (pT > 0), which PyTorch runs as the step loop."""
    attrs = {"direction": "bidirectional", **({"linear_before_reset": 1} if op == "GRU" else {})}
    return recurrent_onnx(path, op, 8, attrs, lens=lens, steps=100, score=True)
