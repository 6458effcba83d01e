"""Three small anomaly networks on the shipped (N, 100, 3) input, one per translator form session 39 added, built with
the onnx helper API in milliseconds (the GPU machine has onnx and onnxruntime, no TensorFlow or exporter): an ``If``
on the batch's values, a QDQ convolution, and a k-nearest-neighbour EdgeConv (TopK, GatherND with batch_dims=1).
tests/test_torch_gpu.py and tests/test_jax_gpu.py run them on a GPU in every bucket; tests/test_torch_cuda_fake.py runs
them through the CUDA-graph flow on the CPU, in CI. Weights from their own generator (the same whichever test ran
before); one output, ``score`` (N,), a sum of squares (no score near 0, so relative differences mean something)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.recurrent_models import i64, save_onnx

PT_CUT = 1.0  # the If's condition: the batch's largest constituent pT over it (tests.tiny_models.jets: always)
LOW_PT = 1e-3  # those jets' pT times this: the largest is under PT_CUT (~300 at most), the condition false


def _f32(name: str, value) -> object:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _w(rng: np.random.Generator, name: str, *shape: int) -> object:
    return _f32(name, rng.normal(0, 1 / np.sqrt(shape[0]), size=shape))


def _graph(nodes, inits, name: str):
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 3])],
                             [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)


def _score(head: str) -> list:
    """score = the sum of squares of ``head`` (N, K) per jet."""
    return [helper.make_node("Mul", [head, head], ["sq"]), helper.make_node("ReduceSum", ["sq", "ax1"], ["score"],
                                                                            keepdims=0)]


def low_pt(x: np.ndarray) -> np.ndarray:
    """The same jets, pT scaled by LOW_PT: the If model takes its other branch for them."""
    y = x.copy()
    y[..., 2] *= LOW_PT
    assert x[..., 2].max() > PT_CUT > y[..., 2].max(), "the If would take the same branch for both batches"
    return y


def if_on_values_onnx(path: Path) -> Path:
    """``if max(pT of the batch) > PT_CUT``: the mean over the constituents of a per-constituent embedding, else twice
    its maximum, each through the head (the branches read the graph around them). A condition on the values: PyTorch
    runs both branches and selects (``where``: one CUDA graph holds either outcome), JAX a ``lax.cond``. Zero jets
    padding a bucket change no maximum, so the backend and ONNX Runtime take the same branch."""
    rng = np.random.default_rng(391)
    then = helper.make_graph([helper.make_node("ReduceMean", ["h"], ["hm"], axes=[1], keepdims=0),
                              helper.make_node("MatMul", ["hm", "v"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 4])])
    other = helper.make_graph([helper.make_node("ReduceMax", ["h"], ["hx"], axes=[1], keepdims=0),
                               helper.make_node("MatMul", ["hx", "v"], ["e0"]),
                               helper.make_node("Mul", ["e0", "two"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 4])],
                              [_f32("two", 2.0)])
    nodes = [helper.make_node("Mul", ["x", "feature_scale"], ["xs"]), helper.make_node("MatMul", ["xs", "w"], ["h0"]),
             helper.make_node("Add", ["h0", "b"], ["h1"]), helper.make_node("Tanh", ["h1"], ["h"]),
             helper.make_node("Slice", ["x", "two_i", "three_i", "last"], ["pt"]),
             helper.make_node("ReduceMax", ["pt"], ["pt_max"], keepdims=0),
             helper.make_node("Greater", ["pt_max", "cut"], ["c"]),
             helper.make_node("If", ["c"], ["head"], then_branch=then, else_branch=other), *_score("head")]
    inits = [_f32("feature_scale", [1.0, 1.0, 0.05]), _w(rng, "w", 3, 8), _w(rng, "b", 8), _w(rng, "v", 8, 4),
             i64("two_i", [2]), i64("three_i", [3]), i64("last", [2]), _f32("cut", PT_CUT), i64("ax1", [1])]
    return save_onnx(_graph(nodes, inits, "if_on_values"), path)


def qdq_conv_onnx(path: Path) -> Path:
    """A Conv1d over the constituents in quantize_static's QDQ form: the input quantised per feature
    (QuantizeLinear/DequantizeLinear, uint8: (Δη, Δφ) by 0.01 around 128, pT by 1 GeV from 0, saturating at 255),
    int8 weights with a scale per output channel and int32 biases dequantised, a ReLU, the mean over the
    constituents, a head. The activations are not quantised again after the Conv: a Conv output within rounding of
    a quantum's edge would move a quantum between cuDNN's and ONNX Runtime's sums (a property of quantised networks,
    not of the translator), and the 1e-4 agreement could not hold."""
    rng = np.random.default_rng(392)
    w_scale = rng.uniform(0.005, 0.02, 8).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("QuantizeLinear", ["xt", "in_scale", "in_zero"], ["xq"], axis=1),
             helper.make_node("DequantizeLinear", ["xq", "in_scale", "in_zero"], ["xd"], axis=1),
             helper.make_node("DequantizeLinear", ["wq", "w_scale"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "b_scale"], ["bd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], kernel_shape=[5], pads=[2, 2]),
             helper.make_node("Relu", ["y"], ["r"]), helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
             helper.make_node("MatMul", ["m", "v"], ["head"]), *_score("head")]
    inits = [_f32("in_scale", [0.01, 0.01, 1.0]),
             numpy_helper.from_array(np.array([128, 128, 0], np.uint8), "in_zero"),
             numpy_helper.from_array(rng.integers(-127, 128, (8, 3, 5)).astype(np.int8), "wq"),
             _f32("w_scale", w_scale),
             numpy_helper.from_array(rng.integers(-2000, 2000, 8).astype(np.int32), "bq"),
             _f32("b_scale", w_scale * 0.01), _w(rng, "v", 8, 4), i64("ax1", [1])]
    return save_onnx(_graph(nodes, inits, "qdq_conv"), path, opset=13)


def knn_edgeconv_onnx(path: Path, k: int = 4) -> Path:
    """ParticleNet's EdgeConv as tf2onnx writes Keras' ``take_along_axis``: each constituent's ``k`` nearest in
    (Δη, Δφ) by TopK, their features gathered per jet by GatherND with batch_dims=1, an edge MLP on (neighbour -
    centre), the max over the neighbours, the mean over the constituents, a head. The distance is |Δη| + |Δφ|
    (subtractions, absolute values and one addition, each rounded once: the same bits on every device and engine,
    so no neighbour is swapped by a matrix product's summation order; the padding's zero constituents tie with each
    other only, and any of them gives the same features)."""
    rng = np.random.default_rng(393)
    nodes = [helper.make_node("Mul", ["x", "feature_scale"], ["xs"]),
             helper.make_node("Slice", ["x", "zero_i", "two_i", "last"], ["c"]),  # (N, 100, 2)
             helper.make_node("Unsqueeze", ["c", "ax2"], ["ci"]), helper.make_node("Unsqueeze", ["c", "ax1"], ["cj"]),
             helper.make_node("Sub", ["ci", "cj"], ["diff"]), helper.make_node("Abs", ["diff"], ["ad"]),
             helper.make_node("ReduceSum", ["ad", "ax3"], ["d"], keepdims=0),  # (N, 100, 100)
             helper.make_node("TopK", ["d", "k"], ["dk", "idx"], axis=2, largest=0),  # (N, 100, k)
             helper.make_node("Unsqueeze", ["idx", "minus1"], ["i"]),  # (N, 100, k, 1)
             helper.make_node("GatherND", ["xs", "i"], ["nb"], batch_dims=1),  # (N, 100, k, 3)
             helper.make_node("Unsqueeze", ["xs", "ax2"], ["centre"]), helper.make_node("Sub", ["nb", "centre"], ["e"]),
             helper.make_node("MatMul", ["e", "w"], ["e1"]), helper.make_node("Add", ["e1", "b"], ["e2"]),
             helper.make_node("Relu", ["e2"], ["e3"]),
             helper.make_node("ReduceMax", ["e3"], ["p"], axes=[2], keepdims=0),  # (N, 100, 8)
             helper.make_node("ReduceMean", ["p"], ["m"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["m", "v"], ["h0"]), helper.make_node("Add", ["h0", "one_f"], ["head"]),
             *_score("head")]
    inits = [_f32("feature_scale", [1.0, 1.0, 0.05]), i64("zero_i", [0]), i64("two_i", [2]), i64("last", [2]),
             i64("ax1", [1]), i64("ax2", [2]), i64("ax3", [3]), i64("k", [k]), i64("minus1", [-1]),
             _w(rng, "w", 3, 8), _w(rng, "b", 8), _w(rng, "v", 8, 4), _f32("one_f", 1.0)]
    return save_onnx(_graph(nodes, inits, "knn_edgeconv"), path)


FORMS = {"if-on-values": if_on_values_onnx, "qdq-conv": qdq_conv_onnx, "knn-gathernd": knn_edgeconv_onnx}
