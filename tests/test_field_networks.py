"""Networks the field brings, in the forms their exporters write, on every engine that reads ONNX:
model-local functions (``torch.onnx.export(..., export_modules_as_functions=...)``, onnxscript without its
optimiser), ParticleNet's k-nearest-neighbour ``GatherElements``, ... Each model is built here with the onnx
helper API (a few nodes, milliseconds) and every engine's scores are compared with ONNX Runtime's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.tiny_models import jets, loaded  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TRANSLATED = ("jax", "torch")
RNG = np.random.default_rng(3)


def _save(graph, path: Path, functions=(), opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                     helper.make_opsetid("user.layers", 1)],
                              functions=list(functions))
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def local_function_model(path: Path) -> Path:
    """(N, 100, 3) -> score (N,): a per-constituent dense layer written as a model-local function
    ``user.layers.Dense`` (as TorchScript's ``export_modules_as_functions`` writes an ``nn.Linear``), called
    twice, then a sum over the constituents."""
    dense = helper.make_function(
        "user.layers", "Dense", ["x", "w", "b"], ["y"],
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["xwb"]),
         helper.make_node("Tanh", ["xwb"], ["y"])],
        [helper.make_opsetid("", 17)])
    inits = [numpy_helper.from_array(RNG.normal(size=s).astype(np.float32), n) for n, s in
             (("w1", (3, 8)), ("b1", (8,)), ("w2", (8, 2)), ("b2", (2,)))]
    inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
    nodes = [helper.make_node("Dense", ["jets", "w1", "b1"], ["h1"], domain="user.layers"),
             helper.make_node("Dense", ["h1", "w2", "b2"], ["h2"], domain="user.layers"),
             helper.make_node("ReduceSum", ["h2", "axes"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "local_functions",
                              [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    return _save(graph, path, [dense])


def _agrees(engine: str, path: Path, **opts) -> None:
    ref = loaded("onnxruntime", path)
    backend = loaded(engine, path, **opts)
    for n in (1, 2, 5):
        x = jets(n, seed=n)
        np.testing.assert_allclose(backend.run(x)["score"], ref.run(x)["score"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- model-local functions
@pytest.mark.parametrize("engine", TRANSLATED)
def test_model_local_functions_run_on_the_translated_engines(engine, tmp_path):
    """Until 2026-12-07 JAX and PyTorch refused such a model: "uses ONNX op(s) the ONNX translator does not
    implement: user.layers.Dense" (the function is expanded now, as ONNX Runtime expands it)."""
    _agrees(engine, local_function_model(tmp_path / "fn.onnx"), device="cpu", max_batch=4)


@pytest.mark.slow
def test_model_local_functions_compile_on_iree(tmp_path):
    """IREE's ONNX importer expands no function: until 2026-12-07 it failed "failed to legalize operation
    'torch.operator' ... onnx.Dense" for every bucket."""
    _agrees("iree", local_function_model(tmp_path / "fn.onnx"), engine_cache=str(tmp_path / "cache"),
            opt_batch=2, max_batch=2)
