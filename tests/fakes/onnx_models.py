"""Tiny ONNX graphs with the VAE models' interface, written with onnx.helper (no TensorFlow), whose
outputs have closed forms so tests can check numbers without another backend:

* ``score`` (N,) = mean over (100, 3) of x**2;
* ``kl`` (N,) = sum over (100, 3) of x;
* optionally ``feature_mean`` (N, 3) = mean over constituents (a non-scalar output, as a model with a
  reconstruction or latent output has);
* I/O in float32 or float16 (what ModelOpt AutoCast writes without ``keep_io_types``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_vae_like(path: Path, io_dtype: str = "float32", extra_output: bool = False,
                   n_constituents: int = 100) -> Path:
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[io_dtype]
    nodes = [
        helper.make_node("Cast", ["jets"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["score32"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceSum", ["x", "axes12"], ["kl32"], keepdims=0),
        helper.make_node("Cast", ["score32"], ["score"], to=elem),
        helper.make_node("Cast", ["kl32"], ["kl"], to=elem),
    ]
    outputs = [helper.make_tensor_value_info("score", elem, ["N"]),
               helper.make_tensor_value_info("kl", elem, ["N"])]
    if extra_output:
        nodes += [helper.make_node("ReduceMean", ["x"], ["fm32"], axes=[1], keepdims=0),
                  helper.make_node("Cast", ["fm32"], ["feature_mean"], to=elem)]
        outputs.insert(0, helper.make_tensor_value_info("feature_mean", elem, ["N", 3]))
    graph = helper.make_graph(
        nodes, "vae_like", [helper.make_tensor_value_info("jets", elem, ["N", n_constituents, 3])], outputs,
        initializer=[helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected(x: np.ndarray, io_dtype: str = "float32") -> dict[str, np.ndarray]:
    """The graph's outputs computed with numpy, for the same (possibly fp16-rounded) input."""
    x = x.astype(io_dtype).astype(np.float32)
    return {"score": (x ** 2).mean(axis=(1, 2)).astype(io_dtype).astype(np.float32),
            "kl": x.sum(axis=(1, 2)).astype(io_dtype).astype(np.float32),
            "feature_mean": x.mean(axis=1).astype(io_dtype).astype(np.float32)}
