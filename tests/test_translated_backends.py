"""The backends that run the ONNX graph through the translator (``onnx_graph``): jax and torch, on the
CPU device: the tests CI runs (they never skip; jax and torch are in the ``test`` extra). The
translator is checked op by op against ONNX Runtime on small graphs for each engine (the attributes
the shipped models use and the ONNX defaults around them), each backend against ONNX Runtime on every
jet of every shipped sample at the model card's working points, the shared bucket padding and
chunking, the one-line errors, ``auto`` with a fake JAX / PyTorch that has a GPU, and the shipped path
end to end. CUDA-specific checks are in tests/test_jax_gpu.py and tests/test_torch_gpu.py (marker ``gpu``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import torch
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.modules.inference import BackendOptions, backend_class, create_backend
from hltrun.modules.inference import accelerator
from hltrun.modules.inference.bucketed import bucket_for, bucket_sizes
from hltrun.modules.inference.jax_backend import JaxBackend, compile_cache_size
from hltrun.modules.inference.onnx_jax import OPS, translate
from hltrun.modules.inference.onnx_torch import translate as translate_torch
from tests.agreement import assert_agrees_on_every_shipped_sample, run_concurrently

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"
SAMPLES = sorted((REPO / "data").glob("*.root"))
MAX_BATCH = 64  # 7 buckets: enough to exercise padding and chunking, cheap to compile on a CI CPU
ENGINES = ("jax", "torch")


def _jets(n: int, seed: int = 0) -> np.ndarray:
    from tests.tiny_models import jets

    return jets(n, seed)


@pytest.fixture(scope="module", params=ENGINES)
def backends(request) -> dict[str, SimpleNamespace]:
    """Per shipped model: the engine's backend (CPU, max_batch 64) and ONNX Runtime, both warmed up."""
    out = {}
    for model in ("conv_vae", "gcn_vae"):
        path = MODELS / f"{model}.onnx"
        e = create_backend(request.param, path, BackendOptions(max_batch=MAX_BATCH, device="cpu")).load()
        e.warm_up()
        o = create_backend("onnxruntime", path).load()
        o.warm_up()
        out[model] = SimpleNamespace(eng=e, ort=o, engine=request.param)
    return out


def _prepared(backend) -> int:
    """Graphs compiled / traced so far: no engine may prepare one at run time."""
    return compile_cache_size() if backend.name == "jax" else len(backend._calls)


def _translated(engine: str, path: Path, model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The first output of ``model`` on ``x`` through the engine's translation (jitted / specialised)."""
    if engine == "jax":
        return np.asarray(jax.jit(translate(path, model).fn)(x)[0])
    t = torch.from_numpy(x)
    return translate_torch(path, model).specialize(t)(t)[0].numpy()


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path


def _jet_model(path: Path, shape=("N", 100, 3), extra_node=None) -> Path:
    """A valid (N,100,3) -> score, kl model: score = sum of pT, kl = sum of eta (plus an optional node, or
    nodes: a list, the last one's float output the third)."""
    x = helper.make_tensor_value_info("jets", TensorProto.FLOAT, list(shape))
    nodes = [helper.make_node("ReduceSum", ["jets", "axes"], ["s3"], keepdims=0),
             helper.make_node("Slice", ["s3", "two", "three", "one"], ["s1"]),
             helper.make_node("Squeeze", ["s1", "one"], ["score"]),
             helper.make_node("Slice", ["s3", "zero", "one", "one"], ["k1"]),
             helper.make_node("Squeeze", ["k1", "one"], ["kl"])]
    extra = extra_node if isinstance(extra_node, list) else [extra_node] if extra_node is not None else []
    nodes += extra  # a list: the last one's output is the model's third output
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
             (("zero", 0), ("one", 1), ("two", 2), ("three", 3))]
    inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"]) for n in ("score", "kl")]
    if extra:
        outs.append(helper.make_tensor_value_info(extra[-1].output[0], TensorProto.FLOAT, None))
    return _save(_model(nodes, [x], outs, inits), path)


# ---------------------------------------------------------------------- registry, buckets
def test_registered_as_jax():
    assert backend_class("jax") is JaxBackend and JaxBackend.model_suffixes == (".onnx",)


def test_bucket_sizes_are_powers_of_two_up_to_max_batch():
    assert bucket_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert [bucket_for(n, bucket_sizes(64)) for n in (1, 2, 3, 9, 33, 64)] == [1, 2, 4, 16, 64, 64]
    with pytest.raises(ModuleError, match="over the largest bucket 64"):
        bucket_for(65, bucket_sizes(64))
    with pytest.raises(ConfigError, match="at least 1"):
        bucket_sizes(0)


# ---------------------------------------------------------------------- the translator, op by op
def _f(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


RNG = np.random.default_rng(7)
W2 = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)  # Conv (O, I, kh, kw)
WT = RNG.normal(size=(3, 2, 3, 2)).astype(np.float32)  # ConvTranspose (I, O, kh, kw)
B4 = RNG.normal(size=(4,)).astype(np.float32)
B2 = RNG.normal(size=(2,)).astype(np.float32)
I64 = lambda *v: np.array(v, np.int64)  # noqa: E731

# (id, nodes, input shape, initializers): one output "y", compared with ONNX Runtime
OP_CASES = [
    ("conv-default", [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3])], (2, 3, 7, 6),
     [_init("w", W2), _init("b", B4)]),
    ("conv-pads-strides-dil", [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1],
                                                dilations=[1, 2])], (2, 3, 9, 8), [_init("w", W2)]),
    ("conv-same-upper", [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
     (1, 3, 7, 6), [_init("w", W2)]),
    ("convT-default", [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"])], (2, 3, 5, 4),
     [_init("w", WT), _init("b", B2)]),
    ("convT-strides-pads-outpad", [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 3],
                                                    pads=[1, 0, 0, 1], output_padding=[1, 2])],
     (2, 3, 5, 4), [_init("w", WT)]),
    ("avgpool", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 2], strides=[1, 2])],
     (2, 3, 4, 9), []),
    ("avgpool-pads-exclude", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
     (2, 3, 5, 5), []),
    ("avgpool-pads-include", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                               count_include_pad=1)], (2, 3, 5, 5), []),
    ("slice-neg-step", [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], (4, 6, 5),
     [_init("s", I64(-1, 1)), _init("e", I64(-100, 1000)), _init("a", I64(1, 2)), _init("st", I64(-2, 2))]),
    ("reshape-0-minus1", [helper.make_node("Reshape", ["x", "s"], ["y"])], (3, 4, 5), [_init("s", I64(0, -1))]),
    ("transpose-default", [helper.make_node("Transpose", ["x"], ["y"])], (2, 3, 4), []),
    ("tile-concat", [helper.make_node("Tile", ["x", "r"], ["t"]),
                     helper.make_node("Concat", ["t", "x2"], ["y"], axis=-1)], (2, 3),
     [_init("r", I64(1, 2)), _init("x2", RNG.normal(size=(2, 1)).astype(np.float32))]),
    ("reducemin-attr", [helper.make_node("ReduceMin", ["x"], ["y"], axes=[1], keepdims=0)], (3, 4, 5), []),
    ("reducesum-noop", [helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)], (3, 4), []),
    ("reducesum-all", [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], (3, 4), []),
    ("squeeze-unsqueeze", [helper.make_node("Unsqueeze", ["x", "a"], ["u"]),
                           helper.make_node("Squeeze", ["u"], ["y"])], (3, 4), [_init("a", I64(0, -1))]),
    ("squeeze-unsqueeze-attr-opset11", [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
                                        helper.make_node("Squeeze", ["u"], ["y"], axes=[-1])], (3, 4), [], 11),
    ("shape-constofshape", [helper.make_node("Shape", ["x"], ["s"]),
                            helper.make_node("ConstantOfShape", ["s"], ["c"],
                                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [2.5])),
                            helper.make_node("Mul", ["x", "c"], ["y"])], (3, 4), []),
    ("elementwise", [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "x"], ["b"]),
                     helper.make_node("Sqrt", ["a"], ["c"]), helper.make_node("Log", ["c"], ["d"]),
                     helper.make_node("Exp", ["d"], ["e"]), helper.make_node("Tanh", ["e"], ["f"]),
                     helper.make_node("Reciprocal", ["f"], ["g"]), helper.make_node("Div", ["g", "b"], ["h"]),
                     helper.make_node("Sub", ["h", "x"], ["i"]), helper.make_node("Max", ["i", "x", "a"], ["j"]),
                     helper.make_node("Min", ["i", "a", "x"], ["k"]), helper.make_node("Add", ["j", "k"], ["y"])],
     (4, 5), []),
    ("compare-cast-not", [helper.make_node("Greater", ["x", "z"], ["g"]), helper.make_node("Less", ["x", "z"], ["l"]),
                          helper.make_node("Not", ["l"], ["n"]), helper.make_node("Cast", ["g"], ["gf"], to=1),
                          helper.make_node("Cast", ["n"], ["nf"], to=1), helper.make_node("Add", ["gf", "nf"], ["y"])],
     (4, 5), [_init("z", np.float32(0.1))]),
    ("matmul-batched", [helper.make_node("MatMul", ["x", "w"], ["y"])], (2, 3, 4),
     [_init("w", RNG.normal(size=(4, 5)).astype(np.float32))]),
    ("gemm-transB", [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)], (3, 4),
     [_init("w", RNG.normal(size=(5, 4)).astype(np.float32)), _init("c", RNG.normal(size=(5,)).astype(np.float32))]),
    ("gather-neg-softmax", [helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
                            helper.make_node("Softmax", ["g"], ["y"], axis=-1)], (3, 5, 4), [_init("i", I64(-1, 0))]),
    ("elu-sigmoid-relu-where", [helper.make_node("Elu", ["x"], ["e"], alpha=0.7), helper.make_node("Sigmoid", ["e"], ["s"]),
                                helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Greater", ["x", "z"], ["c"]),
                                helper.make_node("Where", ["c", "s", "r"], ["y"])], (4, 5), [_init("z", np.float32(0))]),
    # the ops users' networks bring (LayerNorm/Gelu transformers, BatchNorm and pooling CNNs, attention
    # as Einsum, top-k constituents, RNN-free sequence tricks); a fifth entry: the opset
    ("erf-gelu", [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Gelu", ["x"], ["g"]),
                  helper.make_node("Gelu", ["x"], ["t"], approximate="tanh"), helper.make_node("Add", ["e", "g"], ["a"]),
                  helper.make_node("Add", ["a", "t"], ["y"])], (4, 5), [], 20),
    ("layernorm-3-outputs", [helper.make_node("LayerNormalization", ["x", "s", "b"], ["l", "m", "i"], epsilon=1e-3),
                             helper.make_node("Mul", ["m", "i"], ["mi"]), helper.make_node("Add", ["l", "mi"], ["y"])],
     (2, 3, 4), [_init("s", RNG.normal(size=(4,)).astype(np.float32)), _init("b", RNG.normal(size=(4,)).astype(np.float32))]),
    ("layernorm-axis1-no-bias", [helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=1)], (2, 3, 4),
     [_init("s", RNG.normal(size=(3, 4)).astype(np.float32))]),
    ("batchnorm", [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)], (2, 3, 5),
     [_init("s", RNG.normal(size=(3,)).astype(np.float32)), _init("b", RNG.normal(size=(3,)).astype(np.float32)),
      _init("m", RNG.normal(size=(3,)).astype(np.float32)), _init("v", RNG.uniform(0.5, 2, size=(3,)).astype(np.float32))]),
    ("global-pools", [helper.make_node("GlobalAveragePool", ["x"], ["a"]), helper.make_node("GlobalMaxPool", ["x"], ["m"]),
                      helper.make_node("Add", ["a", "m"], ["y"])], (2, 3, 4, 5), []),
    ("clip-inputs", [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]), helper.make_node("Clip", ["x", "", "hi"], ["d"]),
                     helper.make_node("Add", ["c", "d"], ["y"])], (4, 5),
     [_init("lo", np.float32(-0.5)), _init("hi", np.float32(0.7))]),
    ("clip-attributes", [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.7)], (4, 5), [], 10),
    ("softplus-logsoftmax", [helper.make_node("Softplus", ["x"], ["s"]), helper.make_node("LogSoftmax", ["s"], ["y"], axis=1)],
     (3, 4, 5), []),
    ("softmax-logsoftmax-opset11-coerced", [helper.make_node("Softmax", ["x"], ["s"]),
                                            helper.make_node("LogSoftmax", ["x"], ["l"], axis=1),
                                            helper.make_node("Add", ["s", "l"], ["y"])], (3, 4, 5), [], 11),
    ("mod-fmod", [helper.make_node("Mod", ["x", "d"], ["y"], fmod=1)], (3, 4),
     [_init("d", np.array([0.7, -0.3, 0.25, -1.1], np.float32))]),
    ("einsum-attention", [helper.make_node("Einsum", ["x", "w"], ["q"], equation="nid,de->nie"),
                          helper.make_node("Einsum", ["q", "x"], ["a"], equation="nie,nje->nij"),
                          helper.make_node("Softmax", ["a"], ["y"], axis=-1)], (2, 5, 4),
     [_init("w", RNG.normal(size=(4, 4)).astype(np.float32))]),
    ("topk-largest-axis1", [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1), helper.make_node("Cast", ["i"], ["f"], to=1),
                            helper.make_node("Add", ["v", "f"], ["y"])], (3, 6, 5), [_init("k", I64(3))]),
    ("topk-smallest-last", [helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=0), helper.make_node("Cast", ["i"], ["f"], to=1),
                            helper.make_node("Sub", ["v", "f"], ["y"])], (3, 6), [_init("k", I64(2))]),
    ("maxpool-pads-strides", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2])],
     (2, 3, 7, 6), []),
    ("maxpool-1d", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], strides=[2])], (2, 3, 9), []),
    ("split-dropout-range", [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1), helper.make_node("Dropout", ["a"], ["d"]),
                             helper.make_node("Concat", ["b", "d"], ["c"], axis=1),
                             helper.make_node("Range", ["r0", "r1", "r2"], ["r"]), helper.make_node("Add", ["c", "r"], ["y"])],
     (3, 5, 4), [_init("sp", I64(2, 3)), _init("r0", np.float32(0)), _init("r1", np.float32(2)), _init("r2", np.float32(0.5))]),
    ("split-equal-opset18", [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=-1, num_outputs=3),
                             helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Mul", ["d", "c"], ["y"])],
     (2, 6), [], 18),
    ("elementwise-2", [helper.make_node("Sin", ["x"], ["s"]), helper.make_node("Cos", ["x"], ["c"]),
                       helper.make_node("Floor", ["x"], ["f"]), helper.make_node("Ceil", ["x"], ["e"]),
                       helper.make_node("Sign", ["x"], ["g"]), helper.make_node("GreaterOrEqual", ["x", "z"], ["ge"]),
                       helper.make_node("LessOrEqual", ["x", "z"], ["le"]), helper.make_node("Where", ["ge", "s", "c"], ["w"]),
                       helper.make_node("Where", ["le", "f", "e"], ["v"]), helper.make_node("Add", ["w", "v"], ["a"]),
                       helper.make_node("Add", ["a", "g"], ["y"])], (4, 5), [_init("z", np.float32(0.1))]),
    # Pad and Resize (2026-12-07, users' networks: F.pad, nn.Upsample / F.interpolate in a decoder), each form
    ("pad-constant-input-crop", [helper.make_node("Pad", ["x", "p", "v"], ["y"])], (2, 3, 5),
     [_init("p", I64(0, 1, -1, 0, 2, 3)), _init("v", np.float32(0.5))], 13),
    ("pad-edge-reflect", [helper.make_node("Pad", ["x", "p"], ["e"], mode="edge"),
                          helper.make_node("Pad", ["e", "q"], ["y"], mode="reflect")], (2, 3, 5),
     [_init("p", I64(0, 0, 2, 0, 0, 1)), _init("q", I64(0, 0, 3, 0, 2, 2))], 11),
    ("pad-wrap-axes-opset19", [helper.make_node("Pad", ["x", "p", "", "ax"], ["y"], mode="wrap")], (2, 3, 5),
     [_init("p", I64(2, 1)), _init("ax", I64(-1))], 19),
    ("pad-attribute-opset10", [helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 1, 0, 0, 2], value=-1.0)], (2, 3, 5), [], 10),
    ("resize-nearest-scales", [helper.make_node("Resize", ["x", "", "s"], ["y"])], (2, 3, 7),
     [_init("s", np.array([1, 1, 2.5], np.float32))], 13),
    ("resize-nearest-asymmetric-floor", [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                                                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
     (2, 3, 4, 5), [_init("s", np.array([1, 1, 2, 3], np.float32))], 17),
    ("resize-linear-half-pixel-down", [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")], (2, 3, 9),
     [_init("s", np.array([1, 1, 0.5], np.float32))], 13),
    ("resize-linear-align-corners-sizes-opset11", [helper.make_node("Resize", ["x", "roi", "s", "z"], ["y"], mode="linear",
                                                                    coordinate_transformation_mode="align_corners")],
     (2, 3, 4, 6), [_init("roi", np.zeros(0, np.float32)), _init("s", np.zeros(0, np.float32)), _init("z", I64(2, 3, 7, 4))], 11),
    ("resize-linear-pytorch-axes-opset18", [helper.make_node("Resize", ["x", "", "", "z"], ["y"], mode="linear", axes=[2],
                                                             coordinate_transformation_mode="pytorch_half_pixel")],
     (2, 3, 5), [_init("z", I64(11))], 18),
    # 2026-12-07: the activations, reductions, scans and scatters of users' Deep-Sets / GNN / flow networks
    ("prelu-hardsigmoid-hardswish-selu", [helper.make_node("PRelu", ["x", "sl"], ["p"]),
                                          helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.3, beta=0.4),
                                          helper.make_node("HardSwish", ["x"], ["w"]), helper.make_node("Selu", ["x"], ["s"]),
                                          helper.make_node("Sum", ["p", "h", "w"], ["a"]), helper.make_node("Mean", ["a", "s"], ["y"])],
     (2, 3, 4), [_init("sl", RNG.normal(size=(3, 1)).astype(np.float32))]),
    ("reduce-l1-l2-sumsquare-prod-attr", [helper.make_node("ReduceL1", ["x"], ["a"], axes=[1]),
                                          helper.make_node("ReduceL2", ["x"], ["b"], axes=[1]),
                                          helper.make_node("ReduceSumSquare", ["x"], ["c"], axes=[-2], keepdims=0),
                                          helper.make_node("ReduceProd", ["x"], ["d"], axes=[1]),
                                          helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "d"], ["abd"]),
                                          helper.make_node("Unsqueeze", ["c", "one"], ["cu"]),
                                          helper.make_node("Concat", ["abd", "cu"], ["y"], axis=1)], (2, 3, 4),
     [_init("one", I64(1))], 13),
    ("reduce-logsumexp-logsum-inputs-opset18", [helper.make_node("ReduceLogSumExp", ["x", "ax"], ["a"], keepdims=0),
                                                helper.make_node("Abs", ["x"], ["ab"]),
                                                helper.make_node("ReduceLogSum", ["ab", "ax"], ["b"], keepdims=0),
                                                helper.make_node("Mul", ["x", "big"], ["xb"]),
                                                helper.make_node("ReduceLogSumExp", ["xb", "ax"], ["c"], keepdims=0),
                                                helper.make_node("Sum", ["a", "b", "c"], ["y"])], (3, 5, 4),
     [_init("ax", I64(1, -1)), _init("big", np.float32(60))], 18),
    # reduced over no axis (noop_with_empty_axes, axes empty or absent): each value alone, as ONNX Runtime and the
    # ONNX reference give (|x|, |x|, x^2, log x, x); until 2026-12-07 x itself for all, the score silently off
    ("reduce-over-no-axis-opset18", [helper.make_node("ReduceL1", ["x", "e"], ["a"], noop_with_empty_axes=1),
                                     helper.make_node("ReduceL2", ["x", "e"], ["b"], noop_with_empty_axes=1),
                                     helper.make_node("ReduceSumSquare", ["x"], ["c"], noop_with_empty_axes=1),
                                     helper.make_node("Abs", ["x"], ["ab"]),
                                     helper.make_node("ReduceLogSum", ["ab", "e"], ["d"], noop_with_empty_axes=1),
                                     helper.make_node("ReduceLogSumExp", ["x", "e"], ["f"], noop_with_empty_axes=1),
                                     helper.make_node("Sum", ["a", "b", "c", "d", "f"], ["y"])], (3, 5, 4),
     [_init("e", np.zeros(0, np.int64))], 18),
    ("argmax-argmin-keepdims-last-index", [helper.make_node("Floor", ["x"], ["f"]),  # ties: first or last index
                                           helper.make_node("ArgMax", ["f"], ["a"], axis=1),
                                           helper.make_node("ArgMin", ["f"], ["b"], axis=-1, keepdims=0, select_last_index=1),
                                           helper.make_node("ArgMax", ["f"], ["c"], axis=2, keepdims=0, select_last_index=1),
                                           helper.make_node("Cast", ["a"], ["af"], to=1), helper.make_node("Cast", ["b"], ["bf"], to=1),
                                           helper.make_node("Cast", ["c"], ["cf"], to=1), helper.make_node("Sub", ["bf", "cf"], ["d"]),
                                           helper.make_node("Unsqueeze", ["d", "one"], ["du"]),
                                           helper.make_node("Add", ["af", "du"], ["y"])], (3, 6, 5), [_init("one", I64(2))]),
    ("cumsum-exclusive-reverse", [helper.make_node("CumSum", ["x", "a1"], ["c"]),
                                  helper.make_node("CumSum", ["x", "a2"], ["e"], exclusive=1, reverse=1),
                                  helper.make_node("CumSum", ["x", "a1"], ["f"], exclusive=1),
                                  helper.make_node("CumSum", ["x", "a2"], ["r"], reverse=1),
                                  helper.make_node("Sum", ["c", "e", "f", "r"], ["y"])], (3, 6, 2),
     [_init("a1", I64(1)), _init("a2", np.int32(-2))]),
    ("instance-norm", [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)], (2, 3, 7),
     [_init("s", RNG.normal(size=(3,)).astype(np.float32)), _init("b", RNG.normal(size=(3,)).astype(np.float32))]),
    # index_add_ / scatter_add_ message passing: repeated indices summed (reduction add), and the others
    ("scatter-elements-reductions", [helper.make_node("Slice", ["x", "s0", "s2", "s1"], ["u"]),  # (3, 2, 4): updates
                                     helper.make_node("ScatterElements", ["x", "i", "u"], ["a"], axis=1, reduction="add"),
                                     helper.make_node("ScatterElements", ["x", "i", "u"], ["m"], axis=1, reduction="mul"),
                                     helper.make_node("ScatterElements", ["x", "i", "u"], ["mx"], axis=1, reduction="max"),
                                     helper.make_node("ScatterElements", ["x", "i", "u"], ["mn"], axis=1, reduction="min"),
                                     helper.make_node("ScatterElements", ["x", "j", "u"], ["n"], axis=-2),
                                     helper.make_node("Sum", ["a", "m", "mx", "mn", "n"], ["y"])], (3, 5, 4),
     [_init("s0", I64(0)), _init("s2", I64(2)), _init("s1", I64(1)),
      _init("i", np.random.default_rng(11).integers(-5, 5, size=(3, 2, 4))),  # repeats and negative ones
      _init("j", np.stack([np.stack([np.random.default_rng(12 + 3 * a + b).permutation(5)[:2] for b in range(4)], 1)
                           for a in range(3)]))]),  # unique per column: reduction none is defined
    # the indices from the input: each constituent pooled into the cluster its features pick (ArgMax)
    ("argmax-then-scatter-add", [helper.make_node("ArgMax", ["x"], ["c"], axis=2),  # (2, 6, 1)
                                 helper.make_node("Expand", ["c", "shape"], ["ce"]),  # (2, 6, 4)
                                 helper.make_node("ScatterElements", ["zeros", "ce", "x"], ["y"], axis=1, reduction="add")],
     (2, 6, 4), [_init("shape", I64(2, 6, 4)), _init("zeros", np.zeros((2, 4, 4), np.float32))]),
    # tf2onnx's Keras Bidirectional / go_backwards recurrent layers: the lengths static, or counted from the input
    ("reverse-sequence-time-major", [helper.make_node("ReverseSequence", ["x", "lens"], ["y"])], (5, 3, 4),
     [_init("lens", I64(5, 2, 1))]),
    ("reverse-sequence-batch-major-lengths-from-input",
     [helper.make_node("Gather", ["x", "f0"], ["x0"], axis=2),  # (3, 6): the first feature
      helper.make_node("Greater", ["x0", "zero"], ["pos"]), helper.make_node("Cast", ["pos"], ["posi"], to=TensorProto.INT64),
      helper.make_node("ReduceSum", ["posi", "ax"], ["cnt"], keepdims=0),  # (3,): 0-6 positive steps per batch row
      helper.make_node("Max", ["cnt", "one"], ["lens"]),
      helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=0, time_axis=1)], (3, 6, 2),
     [_init("zero", np.float32(0)), _init("ax", I64(1)), _init("one", I64(1)), _init("f0", np.int64(0))]),
    ("scatternd-add-and-none", [helper.make_node("Slice", ["x", "s0", "s2", "s1"], ["u"]),  # (3, 2, 4)
                                helper.make_node("Transpose", ["u"], ["ut"], perm=[1, 0, 2]),  # (2, 3, 4)
                                helper.make_node("ScatterND", ["x", "i", "ut"], ["a"], reduction="add"),
                                helper.make_node("ScatterND", ["x", "k", "v"], ["n"]),
                                helper.make_node("GatherND", ["x", "k"], ["g"]),
                                helper.make_node("ReduceSum", ["g"], ["gs"]),
                                helper.make_node("Add", ["a", "n"], ["an"]), helper.make_node("Add", ["an", "gs"], ["y"])],
     (3, 5, 4), [_init("s0", I64(0)), _init("s2", I64(2)), _init("s1", I64(1)),
                 _init("i", np.array([[[0, 1], [1, 1], [2, -1]], [[0, 1], [1, 3], [-3, 4]]], np.int64)),  # (2, 3, 2)
                 _init("k", np.array([[0, 0, 1], [2, 4, -1]], np.int64)), _init("v", np.float32([7, -7]))]),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_translator_matches_onnxruntime_op_by_op(case, engine, tmp_path):
    _, nodes, shape, inits, *opset = case
    m = _model(nodes, [_f("x", shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
               *opset)
    x = RNG.normal(size=shape).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    got = _translated(engine, tmp_path / "m.onnx", m, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_integer_div_truncates_toward_zero(engine, tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [4])
    m = _model([helper.make_node("Div", ["a", "b"], ["y"])], [a],
               [helper.make_tensor_value_info("y", TensorProto.INT64, [4])], [_init("b", I64(2, -2, 2, -2))])
    x = I64(7, 7, -7, -7)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"a": x})[0]
    assert list(_translated(engine, tmp_path / "m.onnx", m, x)) == list(ref) == [3, -3, -3, 3]


@pytest.mark.parametrize("engine", ENGINES)
def test_integer_mod_follows_the_divisor_or_the_dividend(engine, tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [4])
    nodes = [helper.make_node("Mod", ["a", "b"], ["p"]), helper.make_node("Mod", ["a", "b"], ["c"], fmod=1),
             helper.make_node("Mul", ["p", "ten"], ["pt"]), helper.make_node("Add", ["pt", "c"], ["y"])]
    m = _model(nodes, [a], [helper.make_tensor_value_info("y", TensorProto.INT64, [4])],
               [_init("b", I64(3, -3, 3, -3)), _init("ten", I64(10))])
    x = I64(7, 7, -7, -7)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"a": x})[0]
    assert list(_translated(engine, tmp_path / "m.onnx", m, x)) == list(ref)


def test_shipped_models_use_only_translated_ops():
    for model in ("conv_vae", "gcn_vae"):
        ops = {n.op_type for n in onnx.load(str(MODELS / f"{model}.onnx")).graph.node}
        assert ops <= set(OPS), ops - set(OPS)


# ---------------------------------------------------------------------- agreement on the shipped samples
@pytest.mark.slow
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_agrees_with_onnxruntime_on_every_shipped_sample(backends, model):
    """Every jet of every shipped sample (all events, the two leading jets each): score and kl within
    1e-4 relative of ONNX Runtime CPU, and not one decision changed at the card's working points
    (per jet, at the event-level and jet-level cuts of both background efficiencies)."""
    assert_agrees_on_every_shipped_sample(backends[model].eng, model, backends[model].engine)


# ---------------------------------------------------------------------- buckets: padding and chunking
@pytest.mark.parametrize("n", [1, 3, 9, 64, 200])
def test_bucket_padding_and_chunking(backends, n):
    """1, 3, 9, 64 jets pad to 1, 4, 16, 64; 200 > max_batch runs as 64+64+64+8 (chunks, as TensorRT):
    the same scores as ONNX Runtime, and no compilation at run time."""
    b = backends["conv_vae"]
    x = _jets(n, seed=n)
    compiled = _prepared(b.eng)
    before = dict(b.eng.counters)
    got, ref = b.eng.run(x), b.ort.run(x)
    np.testing.assert_allclose(got["score"], ref["score"], rtol=1e-4)
    np.testing.assert_allclose(got["kl"], ref["kl"], rtol=1e-4)
    chunks = [MAX_BATCH] * (n // MAX_BATCH) + ([n % MAX_BATCH] if n % MAX_BATCH else [])
    padded = sum(bucket_for(m, bucket_sizes(MAX_BATCH)) - m for m in chunks)
    assert b.eng.counters["chunks"] - before["chunks"] == len(chunks)
    assert b.eng.counters["padded_jets"] - before["padded_jets"] == padded
    assert b.eng.counters["jets"] - before["jets"] == n
    assert _prepared(b.eng) == compiled


def test_padding_rows_are_zeroed_between_batches(backends):
    """A smaller batch in the same bucket after a larger one: the old jets are not left as padding."""
    b = backends["gcn_vae"]
    b.eng.run(_jets(7, seed=1))
    b.eng.run(_jets(5, seed=2))
    assert not b.eng._host[8][0][5:].any()


def test_counters_and_describe(backends):
    engine = backends["gcn_vae"].engine
    desc = backends["gcn_vae"].eng.describe()
    assert desc["backend"] == engine and desc["device"] == "cpu" and desc["precision"] == "fp32"
    version = {"jax": jax.__version__, "torch": torch.__version__}[engine]
    assert desc["buckets"] == bucket_sizes(MAX_BATCH) and desc["versions"][engine] == version
    assert "device_memory" not in desc  # the CPU device has no allocator statistics
    fresh = create_backend(engine, MODELS / "gcn_vae.onnx", BackendOptions(max_batch=MAX_BATCH, device="cpu")).load()
    fresh.warm_up()
    assert fresh.counters["calls"] == 0 and fresh.counters["chunks"] == 0  # warm-up is not job work
    fresh.run(_jets(3))
    c = fresh.counters
    assert all(isinstance(c[k], int) for k in ("h2d_us", "compute_us", "d2h_us"))
    assert c["chunks"] == 1 and c["padded_jets"] == 1 and c["compute_us"] > 0
    if engine == "jax":  # device_put copies even to the CPU device
        assert c["h2d_bytes"] == 4 * 100 * 3 * 4 and c["d2h_bytes"] == 2 * 4 * 4
    else:  # torch on the CPU runs on the host buffer itself: no copy, none counted
        assert c["h2d_bytes"] == c["d2h_bytes"] == c["h2d_us"] == c["d2h_us"] == 0
        assert desc["executor"] == "torchscript" and desc["intra_op_threads"] == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_run_before_warm_up_is_an_error(engine):
    b = create_backend(engine, MODELS / "gcn_vae.onnx", BackendOptions(max_batch=4, device="cpu")).load()
    with pytest.raises(ModuleError, match="run\\(\\) before warm_up\\(\\)"):
        b.run(_jets(2))


# ---------------------------------------------------------------------- errors, one line each
@pytest.mark.parametrize("engine", ENGINES)
def test_unsupported_op_is_one_line_naming_op_and_model(engine, tmp_path):
    path = _jet_model(tmp_path / "odd.onnx", extra_node=helper.make_node("Hardmax", ["jets"], ["hs"]))
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    msg = str(info.value)
    assert "\n" not in msg and "Hardmax" in msg and str(path) in msg and "onnxruntime" in msg


@pytest.mark.parametrize("engine", ENGINES)
def test_an_op_outside_onnx_is_not_sent_to_onnxruntime(engine, tmp_path):
    """tf2onnx 1.17 writes Keras' exact gelu as ``Erfc``, which is no ONNX operator: ONNX Runtime refuses
    the file too, so the line says what is wrong instead of "use backend: onnxruntime"."""
    path = _jet_model(tmp_path / "erfc.onnx", extra_node=helper.make_node("Erfc", ["jets"], ["e"]))
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    msg = str(info.value)
    assert "\n" not in msg and "not ONNX operators: Erfc" in msg and "onnxruntime" not in msg


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_input_shape_is_the_shared_error(engine, tmp_path):
    path = _jet_model(tmp_path / "wrong.onnx", shape=("N", 50, 3))
    with pytest.raises(ModuleError, match=rf"model {path} takes input .*of shape \(N, 50, 3\)"):
        create_backend(engine, path).load()
    fixed = _jet_model(tmp_path / "fixed.onnx", shape=(4, 100, 3))
    with pytest.raises(ModuleError, match="takes a fixed batch of 4 jet"):
        create_backend(engine, fixed).load()


@pytest.mark.parametrize("engine", ENGINES)
def test_small_valid_model_runs_and_bad_batch_shape_is_one_line(engine, tmp_path):
    path = _jet_model(tmp_path / "ok.onnx")
    b = create_backend(engine, path, BackendOptions(max_batch=4, device="cpu")).load()
    b.warm_up()
    x = _jets(6)
    out = b.run(x)
    np.testing.assert_allclose(out["score"], x[..., 2].sum(axis=1), rtol=1e-6)
    with pytest.raises(ModuleError, match=r"batch of shape \(2, 50, 3\), expected \(N, 100, 3\)"):
        b.run(np.zeros((2, 50, 3), np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_device_option(engine, tmp_path):
    path = _jet_model(tmp_path / "ok.onnx")
    with pytest.raises(ConfigError, match="device 'tpu'"):
        create_backend(engine, path, BackendOptions(device="tpu")).load()
    from hltrun.modules.inference.jax_backend import gpu_devices

    has_gpu = bool(gpu_devices(jax)) if engine == "jax" else torch.cuda.is_available()
    if has_gpu:  # a GPU machine (tools/gpu_check.sh): gpu is granted
        assert create_backend(engine, path, BackendOptions(device="gpu")).load().device == "gpu-nvidia"
    else:
        sees = {"jax": "JAX sees no GPU", "torch": "PyTorch sees no CUDA GPU"}[engine]
        with pytest.raises(ModuleError, match=f"device gpu requested .* {sees}"):
            create_backend(engine, path, BackendOptions(device="gpu")).load()
    assert create_backend(engine, path, BackendOptions(device="cpu")).load().device == "cpu"


# ---------------------------------------------------------------------- auto, with a fake JAX
class _FakeDevice:
    def __init__(self, platform: str, kind: str, id: int = 0) -> None:
        self.platform, self.device_kind, self.id = platform, kind, id


class _FakeJax:
    """Keeps jax.devices()' contract: a list of devices; a platform it does not have raises RuntimeError."""

    def __init__(self, gpus: int) -> None:
        self._devices = {"cpu": [_FakeDevice("cpu", "cpu")],
                         "gpu": [_FakeDevice("gpu", "NVIDIA H100 80GB HBM3", i) for i in range(gpus)]}

    def devices(self, backend: str | None = None) -> list[_FakeDevice]:
        if backend is None:
            return self._devices["gpu"] or self._devices["cpu"]
        if not self._devices.get(backend):
            raise RuntimeError(f"Unknown backend: '{backend}' requested, but no platforms that are instances of "
                               f"{backend} are present. Platforms present are: cpu")
        return self._devices[backend]


@pytest.fixture
def fake_jax(monkeypatch):
    def install(gpus: int) -> None:
        monkeypatch.setattr(accelerator, "tensorrt_gpu_status",
                            lambda: accelerator.GpuStatus(False, "the tensorrt Python package is not installed"))
        monkeypatch.setattr(accelerator, "_find", lambda name: name in ("jax", "jax_plugins.xla_cuda13"))
        monkeypatch.setattr(accelerator, "_load_jax", lambda: _FakeJax(gpus))
        accelerator.jax_gpu_status.cache_clear()
        accelerator.torch_gpu_status.cache_clear()

    yield install
    accelerator.jax_gpu_status.cache_clear()
    accelerator.torch_gpu_status.cache_clear()


def test_auto_picks_jax_on_a_gpu_without_tensorrt(fake_jax):
    fake_jax(1)
    name, reason = accelerator.choose_backend("auto", ["*"])
    assert name == "jax"
    assert reason == ("auto: JAX on NVIDIA H100 80GB HBM3 (TensorRT not used: the tensorrt Python package is not "
                      "installed; PyTorch GPU not used: the torch Python package is not installed)")
    assert accelerator.choose_backend("jax", ["gpu-nvidia"])[0] == "jax"
    # the CPU only: auto keeps ONNX Runtime; an explicit jax that would land on the GPU is refused, with the way out
    assert accelerator.choose_backend("auto", ["cpu"])[0] == "onnxruntime"
    with pytest.raises(ConfigError, match=r"jax runs on gpu-nvidia.*\['cpu'\].*JAX_PLATFORMS=cpu"):
        accelerator.choose_backend("jax", ["cpu"])


def test_auto_without_a_jax_gpu_keeps_onnxruntime_and_says_why(fake_jax):
    fake_jax(0)
    name, reason = accelerator.choose_backend("auto", ["*"])
    assert name == "onnxruntime"
    assert "TensorRT not used: the tensorrt Python package is not installed" in reason
    assert "JAX GPU not used: JAX sees no GPU (Unknown backend: 'gpu'" in reason
    assert accelerator.choose_backend("jax", ["cpu"]) == ("jax", "jax on cpu (explicit)")


def test_auto_never_imports_jax_without_a_cuda_plugin(monkeypatch):
    monkeypatch.setattr(accelerator, "tensorrt_gpu_status",
                        lambda: accelerator.GpuStatus(False, "the tensorrt Python package is not installed"))
    monkeypatch.setattr(accelerator, "_find", lambda name: name == "jax")
    monkeypatch.setattr(accelerator, "_load_jax", lambda: pytest.fail("jax imported without a CUDA plugin"))
    accelerator.jax_gpu_status.cache_clear()
    try:
        name, reason = accelerator.choose_backend("auto", ["*"])
    finally:
        accelerator.jax_gpu_status.cache_clear()
    assert name == "onnxruntime" and "jax has no CUDA plugin installed" in reason


# ---------------------------------------------------------------------- the shipped path, end to end
@pytest.mark.slow
def test_shipped_path_on_jax_and_torch_decides_as_onnxruntime(tmp_path):
    """``hltrun configs/path.yaml -n 50 modules.vae.backend=<engine>`` (max_batch 8: the path sends 2 jets
    per event, 4 buckets prepare quicker) against the same command on onnxruntime: hltdiff finds no
    difference, and the trigger counts agree."""
    results = {}
    for backend in ("onnxruntime", *ENGINES):
        d = tmp_path / backend
        cmd = [sys.executable, "-m", "hltrun", str(REPO / "configs" / "path.yaml"), "-n", "50",
               f"modules.vae.backend={backend}", "modules.vae.max_batch=8", f"modules.out.file={d / 'out.root'}",
               "modules.out.select_events=[]", "--report-dir", str(d / "rep")]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        job = json.loads((d / "rep" / "hltrun.json").read_text())["job"]
        results[backend] = job
        assert job["module_summaries"]["vae"]["backend"]["backend"] == backend
    for engine in ENGINES:
        summary = results[engine]["module_summaries"]["vae"]
        assert summary["chunks"] == 50 and summary["compute_us"] > 0 and summary["backend"]["buckets"] == [1, 2, 4, 8]
        diff = subprocess.run([sys.executable, "-m", "hltrun.tools.hltdiff", str(tmp_path / "onnxruntime" / "out.root"),
                               str(tmp_path / engine / "out.root")], capture_output=True, text=True, timeout=300)
        assert diff.returncode == 0, engine + diff.stdout[-2000:] + diff.stderr[-2000:]


# ---------------------------------------------------------------------- the sweep tool, on the CPU
def test_gpu_sweep_runs_on_cpu(tmp_path):
    """`hltbench gpu-sweep`'s tiny CPU configuration (the one gpu_check.sh scales up): every row written,
    with the H2D/compute/D2H split; no device memory on the CPU; the plot. No timing is asserted."""
    import csv

    from hltrun.tools.bench.cli import main

    assert main(["gpu-sweep", "--device", "cpu", "--engines", "torch", "jax", "--batches", "1", "64", "--repeat", "3",
                 "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [(r["engine"], r["model"], r["batch"]) for r in rows] == [
        (e, m, b) for m in ("conv_vae", "gcn_vae") for e in ("torch", "jax") for b in ("1", "64")]
    for r in rows:
        assert r["device"] == "cpu" and float(r["median_ms"]) > 0 and float(r["jets_per_s"]) > 0
        assert r["h2d_ms"] != "" and r["compute_ms"] != "" and r["d2h_ms"] != ""
        assert r["device_bytes_in_use"] == ""
        if r["engine"] == "torch":  # no copy on the CPU: the engine time is all compute
            assert float(r["h2d_ms"]) == float(r["d2h_ms"]) == 0.0 and float(r["copy_share"]) == 0.0
    meta = json.loads((tmp_path / "sweep.json").read_text())["meta"]
    assert meta["jax"] == jax.__version__ and meta["torch"] == torch.__version__ and meta["torch_gpu"] == "none"
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def _run_json(folder: Path, backend: str, device: str, streams: int, events: int, loop_s: float) -> Path:
    folder.mkdir(parents=True)
    job = {"streams": streams, "events_processed": events, "loop_s": loop_s,
           "module_summaries": {"vae": {"backend": {"backend": backend, "device": device}}, "out": {"files": 1}}}
    (folder / "hltrun.json").write_text(json.dumps({"job": job}))
    return folder


def test_gpu_farm_projection(tmp_path, capsys):
    """One CPU core at 400 events/s; a GPU run with 4 streams at 6000 events/s is 15 cores' worth, so one
    GPU replaces 11 cores beyond the 4 it keeps busy; 100 kHz needs 250 cores or 16.7 such nodes."""
    from hltrun.tools.bench.cli import main

    cpu = _run_json(tmp_path / "path-ort-1", "onnxruntime", "cpu", 1, 2000, 5.0)
    gpu = _run_json(tmp_path / "path-torch-4", "torch", "gpu-nvidia", 4, 2000, 2000 / 6000)
    assert main(["gpu-farm", "--cpu", str(cpu), "--gpu", str(gpu), "--out", str(tmp_path / "farm")]) == 0
    rows = json.loads((tmp_path / "farm" / "farm.json").read_text())["rows"]
    assert rows[0]["events_per_s_per_core"] == pytest.approx(400) and rows[0]["cores_at_rate"] == pytest.approx(250)
    assert rows[1]["x_one_cpu_core"] == pytest.approx(15) and rows[1]["cpu_cores_replaced"] == pytest.approx(11)
    assert rows[1]["nodes_at_rate"] == pytest.approx(100_000 / 6000)
    assert "torch" in capsys.readouterr().out
    short = _run_json(tmp_path / "path-short", "torch", "gpu-nvidia", 1, 1000, 1.0)
    assert main(["gpu-farm", "--cpu", str(cpu), "--gpu", str(short), "--out", str(tmp_path / "farm2")]) == 2
    assert "path-short processed 1000 events, path-ort-1 2000: run the same events" in capsys.readouterr().err


def test_two_stream_backends_share_executables_and_agree(backends):
    """One backend per stream (as the scorer makes them), run from two threads at once: each gives ONNX
    Runtime's scores; JAX compiles nothing more (its executables are shared by the streams)."""

    engine = backends["conv_vae"].engine
    ref = backends["conv_vae"].ort.run(_jets(37, seed=5))["score"]
    compiled = compile_cache_size()
    pair = [create_backend(engine, MODELS / "conv_vae.onnx", BackendOptions(max_batch=MAX_BATCH, device="cpu")).load()
            for _ in range(2)]
    for b in pair:
        b.warm_up()
    assert compile_cache_size() == compiled
    for results in run_concurrently(pair, _jets(37, seed=5), 10):
        for got in results:
            np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_one_file_declared_with_two_constituent_counts_runs_each(tmp_path):
    """A model whose constituent axis is dynamic, (N, P, 3), declared by two scorers of one job with P = 20 and
    P = 30: each runs with its own count. JAX's executables are shared by model file, device and bucket; until
    session 40's review the declared shapes were not part of that key, so the second scorer was handed the
    first's executable and failed its warm-up ("Argument types differ ... float32[1,20,3]")."""
    from hltrun.modules.contract import Contract, ModelInput

    path = tmp_path / "dynamic_p.onnx"
    x = helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", "P", 3])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    onnx.save(_model([helper.make_node("Mul", ["jets", "jets"], ["sq"]),
                      helper.make_node("ReduceSum", ["sq", "axes"], ["score"], keepdims=0)], [x], [y], [axes]), path)
    for n in (20, 30):
        declared = Contract((ModelInput("jets", "constituents", ("deta", "dphi", "pt"), n, 0.0, "pt", "NCF"),), "config")
        backend = create_backend("jax", path, BackendOptions(max_batch=4, device="cpu", inputs=declared)).load()
        backend.warm_up()
        np.testing.assert_array_equal(backend.run(np.ones((3, n, 3), np.float32))["score"], np.full(3, 3.0 * n))
        backend.close()


def test_missing_jax_names_the_extra():
    from hltrun.framework.extras import install_hint

    assert install_hint("jax") == 'pip install -e ".[jax]"  (or: pip install "jax")'
    assert install_hint("torch") == 'pip install -e ".[torch]"  (or: pip install "torch")'


# ---------------------------------------------------------------------- auto, with a fake PyTorch
class _FakeCuda:
    """Keeps torch.cuda's contract for what auto asks: is_available(), current_device(), get_device_name()."""

    def __init__(self, gpus: int) -> None:
        self.gpus = gpus

    def is_available(self) -> bool:
        return self.gpus > 0

    def current_device(self) -> int:
        if not self.gpus:
            raise RuntimeError("No CUDA GPUs are available")
        return 0

    def get_device_name(self, device: int) -> str:
        if device >= self.gpus:
            raise AssertionError("Invalid device id")
        return "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("cuda_build, gpus, expect", [(True, 1, "torch"), (True, 0, "jax"), (False, 1, "jax")])
def test_auto_on_a_gpu_prefers_torch_then_jax(monkeypatch, fake_jax, cuda_build, gpus, expect):
    """TensorRT absent: a CUDA build of torch that sees a GPU is taken (CUDA graphs, streams, events);
    otherwise JAX on the GPU, the reason saying why PyTorch was not; a CPU build is never imported."""
    fake_jax(1)
    monkeypatch.setattr(accelerator, "_find", lambda name: name in ("jax", "jax_plugins.xla_cuda13", "torch"))
    monkeypatch.setattr(accelerator, "_torch_is_cuda_build", lambda: cuda_build)
    fake = SimpleNamespace(cuda=_FakeCuda(gpus))
    monkeypatch.setattr(accelerator, "_load_torch", lambda: fake if cuda_build else pytest.fail("CPU torch imported"))
    accelerator.torch_gpu_status.cache_clear()
    name, reason = accelerator.choose_backend("auto", ["*"])
    assert name == expect
    if expect == "torch":
        assert reason.startswith("auto: PyTorch on NVIDIA H100 80GB HBM3, CUDA graphs per batch bucket (TensorRT not used")
        with pytest.raises(ConfigError, match=r"torch runs on gpu-nvidia.*CUDA_VISIBLE_DEVICES="):
            accelerator.choose_backend("torch", ["cpu"])
    else:
        why = "PyTorch sees no CUDA GPU" if cuda_build else "torch is a CPU build (no libtorch_cuda)"
        assert f"PyTorch GPU not used: {why}" in reason


def test_torch_cpu_build_is_seen_without_importing_it():
    """This machine's torch (CPU build in CI): recognised from its files; a CUDA build has libtorch_cuda."""
    lib = Path(torch.__file__).parent / "lib"
    assert accelerator._torch_is_cuda_build() == any(lib.glob("*torch_cuda*"))
    if "+cpu" in torch.__version__:
        assert not accelerator._torch_is_cuda_build()


class _FakePinned:
    """The face of tensorrt_backend.CudaPythonApi the jax backend uses (host_empty / free)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.given, self.freed = fail, [], []

    def host_empty(self, n: int, dtype) -> np.ndarray:
        if self.fail:
            raise ModuleError("tensorrt: CUDA runtime error cudaErrorMemoryAllocation")
        arr = np.full(n, np.nan, dtype)  # like cudaMallocHost: not zeroed
        self.given.append(arr)
        return arr

    def free(self, host, device) -> None:
        self.freed.extend(host)


@pytest.mark.parametrize("fail", [False, True])
def test_pinned_host_buffers_bookkeeping(monkeypatch, fail):
    """On a GPU the padded host buffers come from cudaMallocHost and are freed by close(); a refused
    allocation falls back to pageable memory and says so. Checked here with the CPU device standing in."""
    fake = _FakePinned(fail)
    monkeypatch.setattr(JaxBackend, "_pinned_api", lambda self: fake)
    b = create_backend("jax", MODELS / "gcn_vae.onnx", BackendOptions(max_batch=8, device="cpu")).load()
    b.device = "gpu-nvidia"  # as on a GPU: the buffers are asked for page-locked
    b.warm_up()
    x = _jets(5)
    np.testing.assert_allclose(b.run(x)["score"], create_backend("onnxruntime", MODELS / "gcn_vae.onnx").load()
                               .run(x)["score"], rtol=1e-4)
    assert b.describe()["pinned_host_buffers"] is (not fail)
    assert len(fake.given) == (0 if fail else len(b.buckets))
    b.close()
    assert [id(a) for a in fake.freed] == [id(a) for a in fake.given]


def test_static_values_use_array_api_compat_on_numpy_1(monkeypatch):
    """numpy 1 lacks the standard's names (permute_dims, concat, astype ...): the translator's static
    values then go through array_api_compat's numpy, which has them."""
    import array_api_compat.numpy as compat_numpy

    from hltrun.modules.inference import onnx_graph

    assert onnx_graph.static_namespace() is np  # numpy 2 here
    monkeypatch.setattr(onnx_graph, "np", SimpleNamespace(__version__="1.26.4"))  # no permute_dims
    assert onnx_graph.static_namespace() is compat_numpy


# host work that a CUDA graph capture cannot contain (a host -> device copy, a host sync)
_HOST_CALLS = {"tensor", "as_tensor", "from_numpy", "asarray", "scalar_tensor", "item", "tolist", "nonzero",
               "__bool__", "__int__", "__float__", "numpy", "masked_select"}


def test_fp32_only_names_cudnn_recurrent_layers_too():
    """The translator runs ``nn.LSTM``/``nn.GRU`` (cuDNN's RNNs on a GPU), whose ``fp32_precision`` PyTorch 2.9+
    defaults to tf32: set to ieee beside matmul's and the convolutions', and named in ``describe()['fp32']``."""
    from hltrun.modules.inference.torch_backend import fp32_only

    if not hasattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no torch.backends.cudnn.rnn.fp32_precision")
    settings = fp32_only(torch)
    assert settings["cudnn.rnn.fp32_precision"] == "ieee" == torch.backends.cudnn.rnn.fp32_precision


def torch_calls():
    """A torch function mode that records the name of every torch function called under it (``.names``)."""
    from torch.overrides import TorchFunctionMode

    class Calls(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: set[str] = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.add(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    return Calls()


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_torch_graph_after_two_runs_is_capturable(model):
    """What the GPU backend captures per bucket is the specialised graph's third run (two warm-up runs
    first): checked here on the CPU, that run makes no tensor from host data (no static value lifted
    again, no slice index made) and syncs nothing with the host."""
    graph = translate_torch(MODELS / f"{model}.onnx")
    with torch.inference_mode():
        for bucket in (1, 7, 64):
            example = torch.zeros((bucket, 100, 3))
            run = graph.specialize(example)
            run(example), run(example)
            lifted, index = len(graph.kernels.xp._lifted), len(graph.kernels._index)
            with torch_calls() as calls:
                outs = run(example)
            assert len(graph.kernels.xp._lifted) == lifted and len(graph.kernels._index) == index, bucket
            assert not calls.names & _HOST_CALLS, (bucket, calls.names & _HOST_CALLS)
            assert [tuple(o.shape) for o in outs] == [(bucket,), (bucket,)]


def _auto_runs_onnxruntime(path: Path, tmp_path: Path, capfd) -> str:
    """The shipped path with ``model`` on ``backend: auto`` (a GPU faked): it runs, on ONNX Runtime; stderr."""
    from hltrun.framework.cli import main as hltrun

    rc = hltrun([str(REPO / "configs" / "path.yaml"), "-n", "5", f"modules.vae.model={path}",
                 "modules.anomalyFilter.threshold=1", f"modules.out.file={tmp_path / 'out.root'}",
                 "--report-dir", str(tmp_path / "rep")])
    err = capfd.readouterr().err
    assert rc == 0, err
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    assert job["module_summaries"]["vae"]["backend"]["backend"] == "onnxruntime"
    return err


def test_auto_on_a_gpu_skips_an_engine_that_cannot_run_the_model(fake_jax, tmp_path, capfd):
    """``auto`` on a GPU machine picks JAX (or PyTorch) by name; a model with an op the translator lacks
    (here Hardmax) used to end the job with exit 4 at begin_job. It runs on ONNX Runtime
    instead, and the reason says why the GPU engine was not used."""
    from hltrun.framework.cli import main as hltrun

    fake_jax(1)
    path = _jet_model(tmp_path / "odd.onnx", extra_node=helper.make_node("Hardmax", ["jets"], ["hs"]))
    err = _auto_runs_onnxruntime(path, tmp_path, capfd)
    assert "jax cannot run this model" in err and "Hardmax" in err, err
    # an explicit engine is never replaced: the same model on backend: jax is still refused, in one line
    assert hltrun([str(REPO / "configs" / "path.yaml"), "-n", "5", f"modules.vae.model={path}",
                   "modules.vae.backend=jax", "modules.anomalyFilter.threshold=1",
                   f"modules.out.file={tmp_path / 'out2.root'}"]) == 4


def test_auto_on_a_gpu_runs_a_several_input_model_on_the_engine_it_picked(fake_jax, tmp_path, capfd):
    """``auto`` on a GPU machine without TensorRT picks JAX by name; a ParticleNet-like model (points, features,
    mask declared in its metadata) fell back to ONNX Runtime on the CPU until 2026-12-07 ("jax cannot run this
    model: ... feeds models with one input"). JAX runs it now, and the reason says why JAX."""
    from hltrun.framework.cli import main as hltrun
    from tests.particlenet import particlenet_onnx

    fake_jax(1)
    path = particlenet_onnx(tmp_path / "pn.onnx")
    rc = hltrun([str(REPO / "configs" / "path.yaml"), "-n", "5", f"modules.vae.model={path}", "modules.vae.max_batch=4",
                 "modules.anomalyFilter.threshold=1", f"modules.out.file={tmp_path / 'out.root'}",
                 "--report-dir", str(tmp_path / "rep")])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "cannot run this model" not in err, err
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    assert job["module_summaries"]["vae"]["backend"]["backend"] == "jax"
    assert "auto: JAX on NVIDIA H100" in json.dumps(job), err


def _boolean_indexing_model(path: Path) -> Path:
    """A valid model with a NonZero (PyTorch's ``x[mask]``): its output's length is the count of real values."""
    return _jet_model(path, extra_node=[helper.make_node("NonZero", ["jets"], ["nz"]),
                                        helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT)])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_data_dependent_shape_is_one_line_naming_the_op_and_who_runs_it(engine, tmp_path):
    """NonZero is not a gap in the op table: its output's shape depends on the values, which one static graph
    per batch bucket cannot hold. Until 2026-12-07 the line called it an op "the ONNX translator does not
    implement", as if a later version might; it says what it is now, and which engine runs the model."""
    path = _boolean_indexing_model(tmp_path / "masked.onnx")
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and msg.startswith(f"{engine}: "), msg
    assert "uses NonZero, whose output's shape is the count of non-zero values" in msg, msg
    assert "data-dependent shape" in msg and "ONNX Runtime runs this model (use backend: onnxruntime" in msg, msg


def test_auto_on_a_gpu_says_the_data_dependent_op_that_keeps_jax_out(fake_jax, tmp_path, capfd):
    """``auto`` on a GPU machine skips JAX for a NonZero model and runs ONNX Runtime; its reason names the
    engine that cannot run the model and the op (until 2026-12-07: "does not implement: NonZero")."""
    fake_jax(1)
    err = _auto_runs_onnxruntime(_boolean_indexing_model(tmp_path / "masked.onnx"), tmp_path, capfd)
    assert "jax cannot run this model" in err and "uses NonZero" in err and "data-dependent shape" in err, err


def _data_dependent_loop(path: Path, what: str) -> Path:
    """A valid model with a Loop that ONNX Runtime runs but no static graph holds: its trip count the input's
    largest value (``trip``), or its condition a sum the body computes from the state (``condition``)."""
    const = lambda name, v: helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(v)))  # noqa: E731
    body_nodes = [const("half", np.float32(0.5)), helper.make_node("Mul", ["v", "half"], ["v_out"])]
    if what == "trip":
        body_nodes.append(helper.make_node("Identity", ["c"], ["c_out"]))
        outer = [helper.make_node("ReduceMax", ["jets"], ["mx"], keepdims=0),
                 helper.make_node("Cast", ["mx"], ["M"], to=TensorProto.INT64)]
    else:
        body_nodes += [const("small", np.float32(1.0)), helper.make_node("ReduceSum", ["v_out"], ["total"], keepdims=0),
                       helper.make_node("Greater", ["total", "small"], ["c_out"])]
        outer = [const("M", np.int64(100))]
    body = helper.make_graph(body_nodes, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                                  helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                                  helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 3])],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 3])])
    return _jet_model(path, extra_node=[*outer, helper.make_node("ReduceSum", ["jets", "axes"], ["v0"], keepdims=0),
                                        helper.make_node("Loop", ["M", "", "v0"], ["lv"], body=body)])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("what, says", [("trip", "trip count (M)"), ("condition", "condition (computed in its body)")])
def test_a_loop_whose_trip_count_depends_on_the_data_is_one_line(engine, what, says, tmp_path):
    """Loop runs on JAX and PyTorch since 2026-12-07 when its trip count and condition are static
    (tests/test_loop_scan.py); one whose count or condition depends on the input's values has no shape per bucket
    and stays refused at load, in one line naming the node, what depends on the data, and who runs it."""
    path = _data_dependent_loop(tmp_path / f"{what}.onnx", what)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"jets": _jets(2)})  # valid
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{engine}: model {path} uses Loop (node 'lv'), whose {says} "), msg
    assert "depends on the input's values" in msg and "use backend: onnxruntime" in msg, msg


def test_auto_on_a_gpu_says_the_data_dependent_loop_that_keeps_jax_out(fake_jax, tmp_path, capfd):
    """``auto`` on a GPU machine skips JAX for a Loop it cannot hold and runs ONNX Runtime, saying why."""
    fake_jax(1)
    err = _auto_runs_onnxruntime(_data_dependent_loop(tmp_path / "trip.onnx", "trip"), tmp_path, capfd)
    assert "jax cannot run this model" in err and "uses Loop (node 'lv'), whose trip count (M) depends" in err, err


def _outputs(engine: str, path: Path, model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    """Every output of ``model`` on ``x`` through the engine's translation, as numpy arrays."""
    if engine == "jax":
        return [np.asarray(y) for y in jax.jit(translate(path, model).fn)(x)]
    t = torch.from_numpy(x)
    return [y.numpy() for y in translate_torch(path, model).specialize(t)(t)]


def _topk_dropout_model() -> onnx.ModelProto:
    """TopK's int64 indices and Dropout's bool mask as graph outputs, beside a mask read by a node."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
             helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Cast", ["mask"], ["m"], to=1), helper.make_node("Mul", ["d", "m"], ["y"])]
    outs = [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, None), _f("y", (3, 6, 5))]
    return _model(nodes, [_f("x", (3, 6, 5))], outs, [_init("k", I64(3))], 13)


@pytest.mark.parametrize("engine", ENGINES)
def test_topk_indices_and_dropout_mask_as_onnxruntime_gives_them(engine, tmp_path):
    """Dropout's optional mask was never defined (a node reading it failed, a graph output was missing);
    at inference ONNX makes it all true, of the input's shape. TopK's indices are int64 (JAX: int32
    unless jax_enable_x64, ``onnx_jax.index_dtype``: JAX has no 64-bit integers without it)."""
    from hltrun.modules.inference.onnx_jax import index_dtype

    m = _topk_dropout_model()
    x = RNG.normal(size=(3, 6, 5)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = _outputs(engine, tmp_path / "m.onnx", m, x)
    assert [g.shape for g in got] == [r.shape for r in ref]
    assert got[1].dtype == (np.dtype(np.int64) if engine == "torch" else index_dtype())
    assert got[2].dtype == ref[2].dtype == np.dtype(bool) and got[2].all()
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[2], ref[2])
    for g, r in zip(got[::3], ref[::3]):
        np.testing.assert_allclose(g, r, rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("largest", [1, 0])
def test_topk_breaks_ties_by_the_lower_index_as_onnx_says(engine, largest, tmp_path):
    """ONNX TopK: of equal values the lower index comes first. Padded constituents (all zero) and
    reduced-precision pT tie; torch.topk orders ties as it likes, so a network that sorts its
    constituents (or embeds their positions) got other rows than ONNX Runtime gives it."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest),
             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    m = _model(nodes, [_f("x", (3, 40))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
               [_init("k", I64(12))])
    x = np.zeros((3, 40), np.float32)
    x[0, :5] = [3, 1, 2, 1, 3]  # ties among real values and among the padding
    x[1] = 1.0
    x[2] = np.repeat(np.float32([0.5, -0.5, 0.25, 2.0]), 10)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    np.testing.assert_array_equal(_translated(engine, tmp_path / "m.onnx", m, x), ref)


def test_torch_traces_a_gather_with_negative_indices(tmp_path):
    """A Gather with negative constant indices (x[:, -1], PyTorch's own export of it) added them to the
    axis' size, which torch.jit.trace hands out as a tensor numpy cannot add: every bucket of such a
    model fell back to op-by-op eager runs on the CPU (the same scores, slower, a warning per bucket)."""
    node = helper.make_node("Gather", ["jets", "last"], ["g"], axis=1)
    path = _jet_model(tmp_path / "m.onnx", extra_node=node)
    m = onnx.load(str(path))
    m.graph.initializer.append(_init("last", I64(-1, -100)))
    _save(m, path)
    backend = create_backend("torch", path, BackendOptions(max_batch=4, device="cpu")).load()
    backend.warm_up()
    assert all(isinstance(call, torch.jit.ScriptFunction) for call in backend._calls.values()), backend._calls
    x = _jets(3)
    np.testing.assert_allclose(backend.run(x)["score"], create_backend("onnxruntime", path).load().run(x)["score"],
                               rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_clip_without_a_bound_clips_infinities_to_the_float_limits(engine, tmp_path):
    """ONNX Clip's absent min/max are the type's lowest()/max(), not 'no bound': ONNX Runtime turns -inf
    into -3.4e38 there, and log(0) of a padded constituent, clamped on one side and masked by a product,
    is then 0 on ONNX Runtime and NaN (-inf x 0) where the bound was skipped."""
    nodes = [helper.make_node("Clip", ["x", "", "hi"], ["a"]), helper.make_node("Clip", ["x", "lo"], ["b"]),
             helper.make_node("Mul", ["a", "zero"], ["az"]), helper.make_node("Mul", ["b", "zero"], ["bz"]),
             helper.make_node("Concat", ["a", "b", "az", "bz"], ["y"], axis=0)]
    m = _model(nodes, [_f("x", (2, 3))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
               [_init("hi", np.float32(0.3)), _init("lo", np.float32(-0.3)), _init("zero", np.float32(0))])
    x = np.array([[-np.inf, 0.1, np.inf], [1.0, -1.0, -np.inf]], np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    np.testing.assert_array_equal(_translated(engine, tmp_path / "m.onnx", m, x), ref)


def test_jax_topk_indices_are_int64_with_x64():
    """With ``jax_enable_x64`` JAX has int64, and TopK's indices are ONNX's int64 (``lax.top_k`` gives
    int32 even then)."""
    m = _topk_dropout_model()
    x = RNG.normal(size=(3, 6, 5)).astype(np.float32)
    with jax.enable_x64(True):
        indices = np.asarray(jax.jit(translate(Path("m.onnx"), m).fn)(x)[1])
    assert indices.dtype == np.int64


def test_gpu_farm_refuses_a_gpu_run_that_ran_on_the_cpu(tmp_path, capsys):
    """A --gpu run whose inference module recorded device cpu would 'replace' a negative number of cores:
    one line naming it, exit 2, nothing written."""
    from hltrun.tools.bench.cli import main

    cpu = _run_json(tmp_path / "R0", "onnxruntime", "cpu", 4, 2000, 5.0)
    also_cpu = _run_json(tmp_path / "R1", "onnxruntime", "cpu", 1, 2000, 5.0)
    gpu = _run_json(tmp_path / "R2", "torch", "gpu-nvidia", 1, 2000, 1.0)
    assert main(["gpu-farm", "--cpu", str(cpu), "--gpu", str(gpu), str(also_cpu), "--out", str(tmp_path / "farm")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"hltbench gpu-farm: --gpu {also_cpu}: its inference ran on cpu (onnxruntime), "
                                    "not a GPU; give the report of a GPU run")
    assert not (tmp_path / "farm" / "farm.json").exists() and not captured.out


# ---------------------------------------------------------------------- exact device split, device memory
def test_device_split_ns_is_the_exact_sum_behind_the_us_counters(backends):
    """``device_split_ns()``: the nanosecond sums of job work (warm-up excluded) whose floor the µs counters
    are; a copy, so a caller cannot change them. Engines without the split (ONNX Runtime) say None."""
    engine = backends["gcn_vae"].engine
    fresh = create_backend(engine, MODELS / "gcn_vae.onnx", BackendOptions(max_batch=MAX_BATCH, device="cpu")).load()
    fresh.warm_up()
    assert fresh.device_split_ns() == {"h2d_ns": 0, "compute_ns": 0, "d2h_ns": 0}
    fresh.run(_jets(3))
    fresh.run(_jets(5))
    ns = fresh.device_split_ns()
    assert ns["compute_ns"] > 0
    assert all(fresh.counters[f"{part}_us"] == ns[f"{part}_ns"] // 1000 for part in ("h2d", "compute", "d2h"))
    ns["compute_ns"] = -1
    assert fresh.device_split_ns()["compute_ns"] > 0
    assert backends["gcn_vae"].ort.device_split_ns() is None


def test_jax_device_memory_leaves_out_unavailable_stats():
    """``Device.memory_stats()`` gives -1 for a statistic the platform does not keep (its docstring): such a
    key is left out, never reported as -1 bytes."""
    b = create_backend("jax", MODELS / "gcn_vae.onnx", BackendOptions(max_batch=2, device="cpu")).load()
    b.jax_device = SimpleNamespace(memory_stats=lambda: {"bytes_in_use": 1024, "peak_bytes_in_use": -1,
                                                         "bytes_limit": 4096, "bytes_reserved": -1})
    assert b.device_memory() == {"bytes_in_use": 1024, "bytes_limit": 4096}
    assert b.reset_device_peak() is False  # JAX has no reset of its peak


class _JaxLikeEngine:
    """A stand-in for a JAX engine on a GPU in ``sweep``: an allocator whose peak is never reset, some
    bytes left in use by the previous model's engine, exact sub-µs copy times."""

    name = "jax"
    allocator = {"bytes_in_use": 0, "peak_bytes_in_use": 0}

    def __init__(self, path, options) -> None:
        from hltrun.modules.contract import default_contract

        self.contract = default_contract()  # the shipped (N, 100, 3) input, as a real engine settles it at load
        self.path, self.ns = path, {"h2d_ns": 0, "compute_ns": 0, "d2h_ns": 0}
        self.counters = {"h2d_us": 0, "compute_us": 0, "d2h_us": 0}  # their floor, as a real engine's

    def _use(self, nbytes: int) -> None:
        a = self.allocator
        a["bytes_in_use"] += nbytes
        a["peak_bytes_in_use"] = max(a["peak_bytes_in_use"], a["bytes_in_use"])

    def load(self):
        self._use(1000)  # weights
        return self

    def warm_up(self, sizes) -> None:
        self._use(50_000)
        self._use(-50_000)  # every bucket's warm-up: the process peak from now on

    def describe(self):
        return {"device": "gpu-nvidia", "jax_device": "cuda:0", "warm_up_s": 0.0}

    def run(self, x):
        for key, ns in (("h2d_ns", 1600), ("compute_ns", 5200), ("d2h_ns", 1400)):
            self.ns[key] += ns
            self.counters[key[:-3] + "_us"] = self.ns[key] // 1000
        return {}

    def device_split_ns(self):
        return dict(self.ns)

    def device_memory(self):
        return dict(self.allocator)

    def reset_device_peak(self) -> bool:
        return False

    def close(self) -> None:
        self._use(-600)  # 400 bytes stay in use after close, until the object goes (its weights, say)

    def __del__(self) -> None:
        self._use(-400)


def test_gpu_sweep_memory_and_split_columns_on_an_engine_without_a_peak_reset(monkeypatch, tmp_path):
    """jax has no reset of its allocator's peak: the per-cell peak column stays empty and the process's
    peak is given under its own name; bytes in use are the engine's own (what the earlier model's engine
    still holds is not counted); H2D/compute/D2H are exact (1.6/5.2/1.4 µs per call, not whole µs)."""
    import hltrun.modules.inference as inference
    from hltrun.tools.bench import gpu_sweep

    monkeypatch.setattr(_JaxLikeEngine, "allocator", {"bytes_in_use": 0, "peak_bytes_in_use": 0})
    monkeypatch.setattr(inference, "create_backend", lambda name, path, options=None: _JaxLikeEngine(path, options))
    rows = gpu_sweep.sweep(["conv_vae", "gcn_vae"], [1, 64], "gpu", 7, False, MODELS, ["jax"])
    assert [(r["model"], r["batch"]) for r in rows] == [(m, b) for m in ("conv_vae", "gcn_vae") for b in (1, 64)]
    for r in rows:
        assert (r["h2d_ms"], r["compute_ms"], r["d2h_ms"]) == (0.0016, 0.0052, 0.0014)
        assert r["copy_share"] == pytest.approx(3.0 / 8.2)
        assert r["device_bytes_in_use"] == 1000  # the engine's weights; not the 400 bytes the first one left
        assert "device_peak_bytes" not in r and "device_process_reserved_bytes" not in r
        assert r["device_process_peak_bytes"] == 51_000 if r["model"] == "conv_vae" else 51_400
    assert set(gpu_sweep.FIELDS) >= set(rows[0])
    import gc

    gc.collect()
    assert _JaxLikeEngine.allocator["bytes_in_use"] == 0  # every engine gone with the sweep


@pytest.mark.parametrize("engine", [*ENGINES, "iree"])
def test_a_score_per_call_is_the_shared_line_on_padding_engines(engine, tmp_path):
    """A model scoring the whole call (a scalar output: ``s.max()``) is refused at warm-up with the line
    ONNX Runtime gives (naming the shape and score_per: event), not an IndexError from slicing a 0-d
    output back to the batch's jets (until 2026-12-07 on JAX, PyTorch and IREE)."""
    x = helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])
    path = _save(_model([helper.make_node("ReduceMax", ["jets"], ["score"], keepdims=0)], [x],
                        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [])]), tmp_path / "scalar.onnx")
    backend = create_backend(engine, path, BackendOptions(max_batch=16, device="cpu")).load()
    with pytest.raises(ModuleError) as info:
        backend.warm_up()
    msg = str(info.value)
    assert "\n" not in msg and "output 'score' has shape () for 9 jet(s)" in msg and "score_per: event" in msg


def test_gpu_farm_and_the_jobs_farm_report_give_one_figure(tmp_path):
    """The CPU run's cores at the input rate are the job's own FarmReport "measured throughput" figure
    (read from its hltrun.json), not a second figure from another loop time (job.loop_s starts earlier
    than the Timing service's loop)."""
    import contextlib
    import io

    from hltrun.framework.cli import main as hltrun_main
    from hltrun.tools.bench.cli import main

    cpu = tmp_path / "path-ort-1"
    with contextlib.redirect_stdout(io.StringIO()):
        assert hltrun_main(["configs/path.yaml", "-q", "-n", "300", "modules.vae.backend=onnxruntime",
                            "--report-dir", str(cpu)]) == 0
    report = json.loads((cpu / "hltrun.json").read_text())
    farm = report["services"]["Timing"]["farm"]
    job = report["job"]
    assert farm["throughput"]["events_per_s"] != pytest.approx(job["events_processed"] / job["loop_s"], rel=1e-9)
    gpu = _run_json(tmp_path / "path-torch-1", "torch", "gpu-nvidia", 1, job["events_processed"], 0.01)
    assert main(["gpu-farm", "--cpu", str(cpu), "--gpu", str(gpu), "--out", str(tmp_path / "farm"),
                 "--rate", str(farm["input_rate_hz"])]) == 0
    rows = json.loads((tmp_path / "farm" / "farm.json").read_text())["rows"]
    assert rows[0]["cores_at_rate"] == pytest.approx(farm["throughput"]["cores"], rel=1e-6)


def test_the_op_list_in_your_model_md_is_the_translators():
    """docs/your-model.md's list of translated ops ("Element-wise and logic: ...") names exactly the ops
    ``OPS`` implements: a user reads it to know whether JAX and PyTorch run a network (round 5 added 26 ops)."""
    text = (REPO / "docs" / "your-model.md").read_text()
    start = text.index("Element-wise and logic:")
    listed = text[start:text.index("(Softmax/LogSoftmax with opset", start)]
    named = {op for span in listed.split("`")[1::2] for op in span.split() if op[:1].isupper()}
    assert named == set(OPS), (sorted(named - set(OPS)), sorted(set(OPS) - named))
