"""The tiny Keras/ONNX VAE-shaped models the backend, scorer and tool tests share (session fixture
``tiny``, registered in conftest.py), and helpers to make jets and load backends."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hltrun.modules.inference import BackendOptions, InferenceBackend, create_backend


def _tiny_model(n_constituents: int = 100):
    """A small VAE-shaped Keras model: jets -> {'score': (N,), 'kl': (N,)} via a registered layer."""
    import keras

    @keras.saving.register_keras_serializable(package="hltrun_test")
    class TinyScore(keras.layers.Layer):
        def call(self, inputs):
            x, reco, z_mean, z_log_var = inputs
            score = keras.ops.mean(keras.ops.square(x - reco), axis=(1, 2))
            kl = -0.5 * keras.ops.sum(1 + z_log_var - keras.ops.square(z_mean) - keras.ops.exp(z_log_var), axis=-1)
            return score, kl

    keras.utils.set_random_seed(7)
    x = keras.Input((n_constituents, 3), name="jets")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(x))
    z_mean, z_log_var = keras.layers.Dense(4)(h), keras.layers.Dense(4)(h)
    reco = keras.layers.Reshape((n_constituents, 3))(keras.layers.Dense(n_constituents * 3)(z_mean))
    score, kl = TinyScore(name="scores")([x, reco, z_mean, z_log_var])
    return keras.Model(x, {"score": score, "kl": kl}, name="tiny_vae")


def _export(model, path: Path, n_constituents: int = 100) -> None:
    import onnx
    import tensorflow as tf
    import tf2onnx

    sig = (tf.TensorSpec((None, n_constituents, 3), tf.float32, name="jets"),)

    @tf.function(input_signature=sig)
    def serve(jets):
        out = model(jets, training=False)
        return {"score": out["score"], "kl": out["kl"]}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=sig, opset=17)
    onnx.save(proto, str(path))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """tiny.keras / tiny.onnx (input (N,100,3)) and wrong.keras / wrong.onnx (input (N,50,3))."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from hltrun.modules.inference.tensorflow_backend import configure_threads

    configure_threads(tf, 1, 1)  # before TF's first op, as a job does (a warning if another test ran one first)
    d = tmp_path_factory.mktemp("models")
    model = _tiny_model()
    model.save(d / "tiny.keras")
    _export(model, d / "tiny.onnx")
    wrong = _tiny_model(50)
    wrong.save(d / "wrong.keras")
    _export(wrong, d / "wrong.onnx", 50)
    return SimpleNamespace(dir=d, keras=d / "tiny.keras", onnx=d / "tiny.onnx",
                           wrong_keras=d / "wrong.keras", wrong_onnx=d / "wrong.onnx")


def jets(n: int, seed: int = 0) -> np.ndarray:
    """Zero-padded jets like the batcher's: 10-100 constituents, (deta, dphi, pT)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 100, 3), np.float32)
    for i in range(n):
        k = int(rng.integers(10, 101))
        x[i, :k, :2] = rng.normal(0, 0.2, (k, 2))
        x[i, :k, 2] = np.sort(rng.exponential(20, k))[::-1] + 0.5
    return x


def loaded(name: str, path: Path, **opts) -> InferenceBackend:
    backend = create_backend(name, path, BackendOptions(**opts)).load()
    backend.warm_up()
    return backend


def sum_of_squares_onnx(path: Path, shape: list | None, elem: int | None = None) -> Path:
    """score = sum x² per jet: an ONNX model with input ``x`` of ``shape`` (None: unknown rank, and the
    output's shape unknown too) and element type ``elem`` (default float32), for the bad-model checks."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if elem is None else elem
    graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["xx"]),
                               helper.make_node("ReduceSum", ["xx", "ax"], ["score"], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("score", elem, ["N"] if shape else None)],
                              [helper.make_tensor("ax", TensorProto.INT64, [2], [1, 2])])
    save_graph(graph, path, 18)
    return path


def half_mlp_onnx(path: Path, half: bool = True, seed: int = 0) -> Path:
    """A small MLP on the shipped (N, 100, 3) input, as ``float16.convert_float_to_float16(keep_io_types=True)``
    leaves one: float16 weights, a Cast to float16 at the input and back to float32 at the score (``half``
    False: the same network in float32, no Cast)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dtype = np.float16 if half else np.float32
    weights = [numpy_helper.from_array(rng.normal(0, s, shape).astype(dtype), name)
               for name, shape, s in (("w1", (300, 32), 0.1), ("b1", (32,), 0.1), ("w2", (32, 8), 0.3))]
    consts = [numpy_helper.from_array(np.array([-1, 300], np.int64), "shape"),
              numpy_helper.from_array(np.array([1], np.int64), "axes")]
    x, y = ("xh", "sh") if half else ("jets", "score")
    nodes = [helper.make_node("Cast", ["jets"], ["xh"], to=TensorProto.FLOAT16)] if half else []
    nodes += [helper.make_node("Reshape", [x, "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w1"], ["m1"]),
              helper.make_node("Add", ["m1", "b1"], ["a1"]), helper.make_node("Tanh", ["a1"], ["t1"]),
              helper.make_node("MatMul", ["t1", "w2"], ["m2"]), helper.make_node("Mul", ["m2", "m2"], ["sq"]),
              helper.make_node("ReduceSum", ["sq", "axes"], [y], keepdims=0)]
    if half:
        nodes.append(helper.make_node("Cast", ["sh"], ["score"], to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], weights + consts)
    save_graph(graph, path, 17)
    return path


def logit_mlp_onnx(path: Path, bias: float = 0.0, seed: int = 0, sigmoid_gain: float | None = None) -> Path:
    """A small MLP on the shipped (N, 100, 3) input whose score is a logit (a last Dense(1) plus ``bias``, no
    activation): its scores cross 0, as a classifier's do. ``sigmoid_gain``: the score is sigmoid(gain x logit)
    instead, a classifier's probability (a large gain piles it up near 0 and 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.normal(0, s, shape).astype(np.float32), name)
               for name, shape, s in (("w1", (300, 32), 0.05), ("b1", (32,), 0.1), ("w2", (32, 1), 0.3))]
    weights += [numpy_helper.from_array(np.array([bias], np.float32), "b2"),
                numpy_helper.from_array(np.array([-1, 300], np.int64), "shape"),
                numpy_helper.from_array(np.array([-1], np.int64), "flat_score")]
    nodes = [helper.make_node("Reshape", ["jets", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]), helper.make_node("Tanh", ["a1"], ["t1"]),
             helper.make_node("MatMul", ["t1", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["a2"]),
             helper.make_node("Reshape", ["a2", "flat_score"], ["logit" if sigmoid_gain else "score"])]
    if sigmoid_gain:
        weights.append(numpy_helper.from_array(np.array([sigmoid_gain], np.float32), "gain"))
        nodes += [helper.make_node("Mul", ["logit", "gain"], ["z"]), helper.make_node("Sigmoid", ["z"], ["score"])]
    graph = helper.make_graph(nodes, "logit", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], weights)
    save_graph(graph, path, 17)
    return path


def save_graph(graph, path, opset: int = 17):
    """``graph`` saved at ``path`` as an ONNX model of the default domain at ``opset``, IR version 8 (what the
    test models here are written as); ``path`` back."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
