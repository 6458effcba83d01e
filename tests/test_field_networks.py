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

from tests.recurrent_models import i64, jets_of_lengths, recurrent_onnx, save_onnx  # noqa: E402
from tests.tiny_models import jets, loaded  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TRANSLATED = ("jax", "torch")
RNG = np.random.default_rng(3)


def local_function_model(path: Path) -> Path:
    """(N, 100, 3) -> score (N,): a per-constituent dense layer written as a model-local function
    ``user.layers.Dense`` (as TorchScript's ``export_modules_as_functions`` writes an ``nn.Linear``), called
    twice, then a sum over the constituents."""
    dense = helper.make_function(
        "user.layers", "Dense", ["x", "w", "b"], ["y"],
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["xwb"]),
         helper.make_node("Tanh", ["xwb"], ["y"])],
        [helper.make_opsetid("", 17)])
    rng = np.random.default_rng(7)  # its own: the same weights whichever test ran before
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in
             (("w1", (3, 8)), ("b1", (8,)), ("w2", (8, 2)), ("b2", (2,)))]
    inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
    nodes = [helper.make_node("Dense", ["jets", "w1", "b1"], ["h1"], domain="user.layers"),
             helper.make_node("Dense", ["h1", "w2", "b2"], ["h2"], domain="user.layers"),
             helper.make_node("ReduceSum", ["h2", "axes"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "local_functions",
                              [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    return save_onnx(graph, path, [dense])


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


# ---------------------------------------------------------------------- GatherElements (k nearest neighbours)
def _translated(engine: str, path: Path, model, x: np.ndarray) -> np.ndarray:
    """The first output of ``model`` on ``x`` through the engine's translation (jitted / specialised)."""
    if engine == "jax":
        import jax

        from hltrun.modules.inference.onnx_jax import translate

        return np.asarray(jax.jit(translate(path, model).fn)(x)[0])
    import torch

    from hltrun.modules.inference.onnx_torch import translate

    t = torch.from_numpy(x)
    return translate(path, model).specialize(t)(t)[0].numpy()


GATHER_ELEMENTS = [  # (id, nodes, initializers): x is (2, 5, 3) float32
    ("static-axis1", [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
     [i64("i", RNG.integers(0, 5, size=(2, 4, 3)))]),
    ("static-negative-axis-last", [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=-1)],
     [i64("i", RNG.integers(-3, 3, size=(2, 5, 3)))]),
    ("indices-shorter-on-other-axes", [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
     [i64("i", RNG.integers(0, 5, size=(1, 2, 2)))]),
    # ParticleNet's form: the indices come from the input (TopK over pairwise distances), then gathered
    ("topk-then-gather", [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
                          helper.make_node("MatMul", ["x", "xt"], ["d"]),  # (2, 5, 5): x·xᵀ per jet
                          helper.make_node("TopK", ["d", "k"], ["v", "idx"], axis=2),  # (2, 5, 2)
                          helper.make_node("Slice", ["x", "zero", "two", "last"], ["x2"]),  # (2, 5, 2)
                          helper.make_node("GatherElements", ["x2", "idx"], ["y"], axis=1)],
     [i64("k", [2]), i64("zero", [0]), i64("two", [2]), i64("last", [2])]),
    # ONNX allows int32 indices (torch's take_along_dim takes int64 only: refused until 2026-12-07); drawn
    # from its own generator: a draw from RNG would change every later model's weights
    ("static-int32", [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
     [numpy_helper.from_array(np.random.default_rng(5).integers(-5, 5, size=(2, 4, 3)).astype(np.int32), "i")]),
    ("topk-int32-negative", [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
                             helper.make_node("MatMul", ["x", "xt"], ["d"]),
                             helper.make_node("TopK", ["d", "k"], ["v", "idx"], axis=2),
                             helper.make_node("Sub", ["idx", "five"], ["neg"]),  # -5..-1: from the end
                             helper.make_node("Cast", ["neg"], ["i32"], to=TensorProto.INT32),
                             helper.make_node("GatherElements", ["x", "i32"], ["y"], axis=1)],
     [i64("k", [3]), i64("five", [5])]),
]


@pytest.mark.parametrize("engine", TRANSLATED)
@pytest.mark.parametrize("case", GATHER_ELEMENTS, ids=[c[0] for c in GATHER_ELEMENTS])
def test_gather_elements_matches_onnxruntime(case, engine, tmp_path):
    """Until 2026-12-07 every ParticleNet/EdgeConv-like export (TopK + GatherElements over the k nearest
    constituents) was refused by JAX and PyTorch: "does not implement: GatherElements"."""
    import onnxruntime as ort

    _, nodes, inits = case
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = (np.random.default_rng(0).permutation(30).reshape(2, 5, 3) / 8).astype(np.float32)  # no ties in TopK
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    got = _translated(engine, tmp_path / "m.onnx", model, x)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------- a Keras 3 custom layer
def _keras_with_custom_layer(path: Path) -> Path:
    """A Deep Sets model whose pooling is a custom layer, registered (as a training script registers it)
    and saved, then unregistered: hltrun's process has not imported the user's code."""
    keras = pytest.importorskip("keras")

    name = "hltrun_field_test>MaskedSum"
    custom = keras.saving.get_custom_objects()

    @keras.saving.register_keras_serializable(package="hltrun_field_test")
    class MaskedSum(keras.layers.Layer):
        def call(self, h, x):
            return keras.ops.sum(h * keras.ops.cast(x[..., 2:3] > 0, h.dtype), axis=1)

    try:
        x = keras.Input((100, 3), name="jets")
        pooled = MaskedSum()(keras.layers.Dense(4, activation="relu")(x), x)
        keras.Model(x, keras.ops.squeeze(keras.layers.Dense(1)(pooled), -1)).save(str(path))
    finally:
        custom.pop(name, None)
    return path


def test_a_keras_custom_layer_not_imported_is_one_line_naming_the_class(tmp_path):
    """Until 2026-12-07: "cannot load model ...: TypeError: <class 'keras.src.models.functional.Functional'>
    could not be deserialized properly ..." and 300 characters of configuration, the class name lost."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import create_backend

    path = _keras_with_custom_layer(tmp_path / "deepsets.keras")
    with pytest.raises(ModuleError) as info:
        create_backend("tensorflow", path).load()
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "custom Keras class 'MaskedSum'" in msg and "export it to ONNX" in msg
    (tmp_path / "deepsets.onnx").write_bytes(b"")  # an ONNX file beside it: named as the way on
    with pytest.raises(ModuleError, match=r"run deepsets.onnx beside it on another engine \(the scorer's model: .*deepsets.onnx, with backend: "
                                         r"onnxruntime or auto"):
        create_backend("tensorflow", path).load()


# ---------------------------------------------------------------------- ONNX external data
def _external_data_model(path: Path) -> Path:
    """score = sum over constituents of tanh(x·w): ``w`` kept in ``<name>.data`` beside the file, as
    ``torch.onnx.export(..., dynamo=True)`` writes every model."""
    w = numpy_helper.from_array(RNG.normal(size=(3, 16)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["jets", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("ReduceSum", ["t", "axes"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "external", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
                              [w, numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=100)
    return path


def test_hltinputs_write_keeps_the_weights_in_their_external_data_file(tmp_path):
    """``hltinputs --write`` changes the metadata only. Until 2026-12-07 it loaded the weights and wrote them
    into the .onnx file (the .data file left behind, unused; a model over protobuf's 2 GB could not be
    declared at all)."""
    from hltrun.tools.declare_inputs import main as hltinputs

    path = _external_data_model(tmp_path / "ext.onnx")
    side = tmp_path / "ext.onnx.data"
    before, x = side.read_bytes(), jets(3)
    want = loaded("onnxruntime", path).run(x)["score"]
    assert hltinputs([str(path), "--write", "[{features: [deta, dphi, pt], n_constituents: 100}]"]) == 0
    stored = onnx.load(str(path), load_external_data=False)
    assert any(p.key == "hltrun.inputs" for p in stored.metadata_props)
    locations = {t.name: {e.key: e.value for e in t.external_data}.get("location") for t in stored.graph.initializer
                 if t.data_location == TensorProto.EXTERNAL}
    assert locations.get("w") == "ext.onnx.data" and side.read_bytes() == before
    np.testing.assert_array_equal(loaded("onnxruntime", path).run(x)["score"], want)


def test_the_sgemm_floor_counts_the_matrix_products_inside_local_functions(tmp_path):
    """``hltbench profile``/``backends`` count multiply-accumulates from the graph's nodes: until 2026-12-07
    the MatMuls inside a model-local function were not seen (this model: 0, "sgemm floor n/a")."""
    from hltrun.tools.bench.flops import count_macs

    macs = count_macs(local_function_model(tmp_path / "fn.onnx"))
    assert macs == {"weights": 100 * (3 * 8 + 8 * 2), "data": 0}  # two dense layers per constituent


def _training_norm_in_a_function(path: Path) -> Path:
    """(N, 100, 3) -> score: a BatchNormalization in training mode inside a model-local function (an
    ``nn.BatchNorm1d`` exported as a function with ``training=TrainingMode.TRAINING``)."""
    norm = helper.make_function(
        "user.layers", "Norm", ["x", "s", "b", "m", "v"], ["y"],
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1)],
        [helper.make_opsetid("", 17)])
    inits = [numpy_helper.from_array(np.ones(100, np.float32), n) for n in ("s", "v")]
    inits += [numpy_helper.from_array(np.zeros(100, np.float32), n) for n in ("b", "m")]
    inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
    nodes = [helper.make_node("Norm", ["jets", "s", "b", "m", "v"], ["n"], domain="user.layers"),
             helper.make_node("ReduceSum", ["n", "axes"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "training", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    return save_onnx(graph, path, [norm])


@pytest.mark.parametrize("engine", ("onnxruntime", "jax"))
def test_training_mode_inside_a_local_function_is_refused(engine, tmp_path):
    """The training-mode check read the graph's own nodes only: until 2026-12-07 ONNX Runtime ran a
    training-mode BatchNormalization inside a function without a word (each call normalised by its own
    jets)."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import create_backend

    path = _training_norm_in_a_function(tmp_path / "train.onnx")
    with pytest.raises(ModuleError, match=r"BatchNormalization node .* is in training mode \(training_mode=1"):
        create_backend(engine, path).load()


@pytest.mark.slow
def test_iree_says_slices_when_its_largest_bucket_does_not_compile(tmp_path, monkeypatch, caplog):
    """An EdgeConv-like model (100x100 distances per jet) overflows IREE's stack limit at batch 16 and
    compiles at 8: the warning said "batches of that size run padded to 8", a batch of 16 cannot be padded
    to 8 (it runs as two slices of 8)."""
    import logging

    from hltrun.modules.inference import iree_backend as ib

    real = ib.compile_bucket

    def refuse_two(model, batch):
        if batch == 2:
            raise RuntimeError("error: 'func.func' op exceeded stack allocation limit of 32768 bytes for function")
        return real(model, batch)

    monkeypatch.setattr(ib, "compile_bucket", refuse_two)
    path = local_function_model(tmp_path / "fn.onnx")
    logger = logging.getLogger("hltrun.inference")  # the CLI's "hltrun" logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    try:
        backend = loaded("iree", path, engine_cache=str(tmp_path / "cache"), opt_batch=2, max_batch=2)
    finally:
        logger.removeHandler(caplog.handler)
    assert backend.buckets == [1]
    assert "does not compile for batch 2 (" in caplog.text and "batches of that size run in slices of 1" in caplog.text
    x = jets(2)
    reference = loaded("onnxruntime", path).run(x)["score"]  # engines agree within 1e-4 (AGREEMENT_RTOL)
    np.testing.assert_allclose(backend.run(x)["score"], reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


@pytest.mark.parametrize("engine", ("onnxruntime", "iree", "jax", "torch"))
def test_missing_external_data_is_the_same_line_on_every_engine(engine, tmp_path):
    """Until 2026-12-07 each engine said it its own way: ONNX Runtime "External data path validation failed
    ... tensorprotoutils.cc:619 ValidateExternalDataPathFromDir ...", the others "ValidationError: Data of
    TensorProto ... should be stored in ..., but it is not regular file"."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import create_backend

    path = _external_data_model(tmp_path / "ext.onnx")
    path.rename(tmp_path / "renamed.onnx")  # renamed, the weights file left behind under its old name
    path = tmp_path / "renamed.onnx"
    (tmp_path / "ext.onnx.data").rename(tmp_path / "elsewhere.data")
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    assert str(info.value) == (f"{engine}: model {path} keeps its weights in 'ext.onnx.data' beside it (ONNX external "
                               f"data), which is not there: copy it next to the model")


@pytest.mark.parametrize("where", ("absolute", "parent"))
def test_missing_external_data_named_outside_the_models_folder_is_one_line(where, tmp_path):
    """A location that is not a plain name beside the model (absolute, as a hand-edited or copied model may
    have it; ``../``): until 2026-12-07 the check itself failed, "ValueError: '/x/w.data' is not in the
    subpath of ...", instead of naming the missing file."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import create_backend

    (tmp_path / "model").mkdir()
    path = _external_data_model(tmp_path / "model" / "m.onnx")
    location = str(tmp_path / "gone" / "w.data") if where == "absolute" else "../gone/w.data"
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))
    with pytest.raises(ModuleError) as info:
        create_backend("onnxruntime", path).load()
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"onnxruntime: model {path} keeps its weights in {location!r} (ONNX ")
    assert "which is not there" in line and "beside it (ONNX" not in line


@pytest.mark.parametrize("engine", TRANSLATED)
def test_isnan_of_scaled_dot_product_attention_matches_onnxruntime(engine, tmp_path):
    """``F.scaled_dot_product_attention`` with a padding mask exports (TorchScript, and dynamo at opset 18)
    as Softmax, then ``Where(IsNaN(p), 0, p)`` for rows with every key masked: until 2026-12-07 every such
    transformer was refused by JAX and PyTorch ("does not implement: IsNaN"). Here the NaNs come from the
    logarithm of negative values, cleared the same way."""
    import onnxruntime as ort

    nodes = [helper.make_node("Log", ["x"], ["l"]), helper.make_node("IsNaN", ["l"], ["bad"]),
             helper.make_node("Where", ["bad", "zero", "l"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    assert (ref == 0).any() and np.isfinite(ref).all()
    np.testing.assert_allclose(_translated(engine, tmp_path / "m.onnx", model, x), ref, rtol=1e-6)


# ---------------------------------------------------------------------- recurrent layers (LSTM, GRU, RNN)
RECURRENT = [("LSTM", 1, False), ("LSTM", 2, True), ("GRU", 1, False), ("GRU", 2, True), ("RNN", 2, True)]


@pytest.fixture(scope="module")
def torch_recurrent(tmp_path_factory):
    """``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` over (jets, 7 constituents, 3 features), batch first as physicists
    write them, exported by torch.onnx (TorchScript exporter: one ONNX LSTM/GRU/RNN node per layer, the
    initial states from the input's shape); the output: every step's Y and the last h (and c), flattened."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("recurrent")

    class Net(torch.nn.Module):
        def __init__(self, cell: str, layers: int, bidirectional: bool) -> None:
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(3, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional)

        def forward(self, x):
            y, state = self.rnn(x)
            states = state if isinstance(state, tuple) else (state,)
            return torch.cat([y.flatten(1)] + [s.transpose(0, 1).flatten(1) for s in states], 1)

    torch.manual_seed(0)
    out = {}
    for cell, layers, bi in RECURRENT:
        path = folder / f"{cell}{layers}{'bi' if bi else ''}.onnx"
        torch.onnx.export(Net(cell, layers, bi).eval(), (torch.zeros(2, 7, 3),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                          opset_version=17)
        out[(cell, layers, bi)] = path
    return out


def _against_onnxruntime(engine: str, path: Path, x: np.ndarray, tol: float = 1e-5) -> None:
    import onnxruntime as ort

    model = onnx.load(str(path))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = _translated(engine, path, model, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("engine", TRANSLATED)
@pytest.mark.parametrize("config", RECURRENT, ids=[f"{c}-{n}layer{'-bi' if b else ''}" for c, n, b in RECURRENT])
def test_torch_recurrent_layers_match_onnxruntime(torch_recurrent, config, engine):
    """Until 2026-12-07 JAX and PyTorch refused every recurrent autoencoder: "does not implement: LSTM" (GRU,
    RNN); every step's output and the final states now agree with ONNX Runtime, both directions, two layers."""
    x = RNG.normal(size=(3, 7, 3)).astype(np.float32)
    _against_onnxruntime(engine, torch_recurrent[config], x)


RECURRENT_FORMS = [  # (id, op, attributes, keyword arguments of recurrent_onnx)
    ("lstm-bi-peepholes-states", "LSTM", {"direction": "bidirectional"}, {"peepholes": True}),
    ("lstm-reverse-clip-no-bias", "LSTM", {"direction": "reverse", "clip": 0.8}, {"bias": False, "states": False}),
    ("lstm-input-forget-activations", "LSTM", {"input_forget": 1, "activations": ["HardSigmoid", "Tanh", "Softsign"],
                                               "activation_alpha": [0.3], "activation_beta": [0.45]}, {}),
    ("gru-reset-after-product-bi", "GRU", {"direction": "bidirectional", "linear_before_reset": 0}, {}),
    ("gru-linear-before-reset-reverse", "GRU", {"direction": "reverse", "linear_before_reset": 1,
                                                "activations": ["Sigmoid", "LeakyRelu"], "activation_alpha": [0.2]}, {}),
    ("rnn-bi-relu", "RNN", {"direction": "bidirectional", "activations": ["Relu", "Tanh"]}, {}),
]


@pytest.mark.parametrize("engine", TRANSLATED)
@pytest.mark.parametrize("form", RECURRENT_FORMS, ids=[f[0] for f in RECURRENT_FORMS])
def test_recurrent_forms_with_sequence_lengths_match_onnxruntime(form, engine, tmp_path):
    """The ONNX forms no torch export writes but other exporters and users do: each jet's own sequence length
    (``sequence_lens``: its steps past it hold the state and give zeros; a reverse direction runs over its real
    steps only), initial states, peepholes, ``clip``, ``input_forget``, GRU's reset gate before its product, and
    the cell activations with their alphas and betas; lengths 0 (an empty jet), 1 and the full 7."""
    _, op, attrs, kwargs = form
    path = recurrent_onnx(tmp_path / "r.onnx", op, 4, attrs, **kwargs)
    _against_onnxruntime(engine, path, jets_of_lengths([7, 3, 0, 1, 5]))


# the forms PyTorch's own nn.LSTM / nn.GRU / nn.RNN compute (PyTorch runs them as that layer): every jet its full
# length, the default activations (an RNN's Relu too), no peepholes, no clip, a GRU's linear_before_reset 1
PLAIN_FORMS = [  # (id, op, attributes, keyword arguments of recurrent_onnx)
    ("lstm-bi-states", "LSTM", {"direction": "bidirectional"}, {"lens": "none"}),
    ("lstm-reverse-no-bias-no-states", "LSTM", {"direction": "reverse"},
     {"lens": "none", "bias": False, "states": False}),
    ("lstm-full-lengths-activations-named", "LSTM", {"activations": ["Sigmoid", "Tanh", "Tanh"]}, {"lens": "full"}),
    ("gru-bi-states", "GRU", {"direction": "bidirectional", "linear_before_reset": 1}, {"lens": "none"}),
    ("gru-reverse-no-states", "GRU", {"direction": "reverse", "linear_before_reset": 1},
     {"lens": "none", "states": False}),
    ("rnn-bi-relu", "RNN", {"direction": "bidirectional", "activations": ["Relu", "Relu"]}, {"lens": "none"}),
    ("rnn-reverse-no-bias-full-lengths", "RNN", {"direction": "reverse"}, {"lens": "full", "bias": False}),
]
_FUSED_NODES = {"LSTM": "aten::lstm", "GRU": "aten::gru", "RNN": ("aten::rnn_tanh", "aten::rnn_relu")}


@pytest.mark.parametrize("engine", TRANSLATED)
@pytest.mark.parametrize("form", PLAIN_FORMS, ids=[f[0] for f in PLAIN_FORMS])
def test_forms_pytorch_has_a_layer_for_match_onnxruntime(form, engine, tmp_path):
    """The forms PyTorch runs as its own ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (weights reordered from ONNX's iofc / zrh,
    both biases, initial states, a reverse-only direction, an RNN's Relu) give ONNX Runtime's values; JAX's scan
    the same."""
    _, op, attrs, kwargs = form
    _against_onnxruntime(engine, recurrent_onnx(tmp_path / "r.onnx", op, 4, attrs, **kwargs),
                         jets_of_lengths([7, 3, 0, 1, 5]))


def _traced_kinds(path: Path, n: int) -> list[str]:
    """The node kinds of the PyTorch backend's trace of ``path`` for a bucket of ``n`` jets (the CPU's executor)."""
    import warnings

    import torch

    from hltrun.modules.inference.onnx_torch import translate

    example = torch.from_numpy(jets_of_lengths([7, 3, 0, 1, 5] * (n // 5 + 1))[:n])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(translate(path).specialize(example), (example,), check_trace=False)
    return [node.kind() for node in traced.inlined_graph.nodes()]


@pytest.mark.parametrize("form", PLAIN_FORMS, ids=[f[0] for f in PLAIN_FORMS])
def test_pytorch_traces_a_plain_recurrent_node_as_one_layer_op(form, tmp_path):
    """Until 2026-12-07 PyTorch's trace unrolled every cell step (a sigmoid, tanh, matmul ... per constituent, per
    bucket: a 2-layer bidirectional LSTM over 100 constituents took ~8 s to trace per bucket and ran ~100x slower
    than ONNX Runtime); the forms ``nn.LSTM``/``nn.GRU``/``nn.RNN`` compute are now one ``aten::lstm`` (``gru``,
    ``rnn_tanh``, ``rnn_relu``) node, nothing per step."""
    pytest.importorskip("torch")
    _, op, attrs, kwargs = form
    kinds = _traced_kinds(recurrent_onnx(tmp_path / "r.onnx", op, 4, attrs, **kwargs), 5)
    fused = _FUSED_NODES[op]
    assert sum(k in fused for k in kinds) == 1, kinds
    assert not {"aten::sigmoid", "aten::tanh", "aten::relu"} & set(kinds), kinds


@pytest.mark.parametrize("config", RECURRENT, ids=[f"{c}-{n}layer{'-bi' if b else ''}" for c, n, b in RECURRENT])
def test_pytorch_traces_torch_exported_layers_as_their_own_op(torch_recurrent, config):
    """What torch.onnx writes for ``nn.LSTM``/``nn.GRU``/``nn.RNN`` goes back into them: one op per layer."""
    op, layers, _ = config
    kinds = _traced_kinds(torch_recurrent[config], 3)
    assert sum(k in _FUSED_NODES[op] for k in kinds) == layers, kinds
    assert not {"aten::sigmoid", "aten::tanh"} & set(kinds), kinds


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_decoder_started_from_the_encoders_states_matches_onnxruntime(cell, tmp_path):
    """A sequence-to-sequence autoencoder: the decoder's initial states are the encoder's last ones (tensors of the
    input, not folded constants); both layers are PyTorch's own op, the values ONNX Runtime's."""
    torch = pytest.importorskip("torch")

    class Seq2Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = getattr(torch.nn, cell)(3, 5, batch_first=True, bidirectional=True)
            self.dec = getattr(torch.nn, cell)(3, 5, batch_first=True, bidirectional=True)

        def forward(self, x):
            _, state = self.enc(x)
            y, _ = self.dec(x.flip(1), state)
            return y.flatten(1)

    torch.manual_seed(1)
    path = tmp_path / "s2s.onnx"
    torch.onnx.export(Seq2Seq().eval(), (torch.zeros(2, 7, 3),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    assert sum(k == _FUSED_NODES[cell] for k in _traced_kinds(path, 5)) == 2
    _against_onnxruntime("torch", path, RNG.normal(size=(4, 7, 3)).astype(np.float32))


RECURRENT_LOOPED = [  # forms PyTorch's layers do not compute: the step loop, on PyTorch too
    ("jets-own-lengths", "LSTM", {}, {}),
    ("peepholes", "LSTM", {}, {"lens": "none", "peepholes": True}),
    ("clip", "GRU", {"linear_before_reset": 1, "clip": 2.0}, {"lens": "none"}),
    ("reset-gate-before-product", "GRU", {}, {"lens": "none"}),
    ("activations", "RNN", {"activations": ["Sigmoid"]}, {"lens": "none"}),
    ("rnn-mixed-activations", "RNN", {"direction": "bidirectional", "activations": ["Relu", "Tanh"]}, {"lens": "none"}),
]


@pytest.mark.parametrize("form", RECURRENT_LOOPED, ids=[f[0] for f in RECURRENT_LOOPED])
def test_pytorch_keeps_the_step_loop_for_forms_its_layers_do_not_compute(form, tmp_path):
    """Jets of their own lengths (``pack_padded_sequence`` would sync with the host), peepholes, ``clip``,
    ``linear_before_reset`` 0, other activations: no layer op in the trace, and the values are ONNX Runtime's."""
    pytest.importorskip("torch")
    _, op, attrs, kwargs = form
    path = recurrent_onnx(tmp_path / "r.onnx", op, 4, attrs, **kwargs)
    kinds = _traced_kinds(path, 5)
    assert not any(k in _FUSED_NODES[op] for k in kinds), kinds
    _against_onnxruntime("torch", path, jets_of_lengths([7, 3, 0, 1, 5]))


@pytest.mark.parametrize("engine", TRANSLATED)
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("lens", ["input", "none"])
def test_batch_major_layout_gives_the_time_major_values(op, engine, lens, tmp_path):
    """``layout: 1`` (batch-major X, Y and states) has no ONNX Runtime to check it against (its CPU kernels refuse
    it: "Batchwise recurrent operations (layout == 1) are not supported"): the same weights time-major on ONNX
    Runtime give the values (the step loop with lengths and peepholes; PyTorch's layer without them)."""
    import onnxruntime as ort

    attrs = {"direction": "bidirectional", **({"linear_before_reset": 1} if op == "GRU" and lens == "none" else {})}
    peep = op == "LSTM" and lens == "input"
    time_major = onnx.load(str(recurrent_onnx(tmp_path / "t.onnx", op, 4, attrs, peepholes=peep, lens=lens)))
    batch_major = recurrent_onnx(tmp_path / "b.onnx", op, 4, attrs, peepholes=peep, layout=1, lens=lens)
    x = jets_of_lengths([7, 3, 0, 1, 5])
    ref = ort.InferenceSession(time_major.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = _translated(engine, batch_major, onnx.load(str(batch_major)), x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("lens", ["input", "none"])
def test_a_recurrent_graph_after_two_runs_is_capturable(op, lens, tmp_path):
    """What PyTorch's GPU backend captures as a CUDA graph per bucket is the specialised graph's third run: with
    ``sequence_lens`` from the input (the step loop) or without (PyTorch's own layer), initial states and both
    directions, that run makes no tensor from host data, no new layer, and syncs nothing with the host (checked
    on the CPU, as for the shipped models)."""
    torch = pytest.importorskip("torch")
    from hltrun.modules.inference.onnx_torch import translate
    from tests.test_translated_backends import _HOST_CALLS, torch_calls

    attrs = {"direction": "bidirectional", **({"linear_before_reset": 1} if op == "GRU" and lens == "none" else {})}
    graph = translate(recurrent_onnx(tmp_path / "r.onnx", op, 4, attrs, peepholes=op == "LSTM" and lens == "input",
                                      lens=lens))
    with torch.inference_mode():
        for bucket in (1, 5):
            example = torch.from_numpy(jets_of_lengths([7, 3, 0, 1, 5][:bucket]))
            run = graph.specialize(example)
            run(example), run(example)
            lifted, layers = len(graph.kernels.xp._lifted), len(graph.kernels._layers)
            with torch_calls() as calls:
                run(example)
            assert (len(graph.kernels.xp._lifted), len(graph.kernels._layers)) == (lifted, layers), bucket
            assert not calls.names & _HOST_CALLS, (bucket, calls.names & _HOST_CALLS)
