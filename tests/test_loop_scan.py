"""ONNX ``Scan`` and ``Loop`` on the translated engines (JAX, PyTorch): hand-built graphs for each form the
translator runs (states, scan inputs and outputs on any axis and in either direction, a body reading the graph
around it, a constant trip count, a while-loop on a counter, a loop ended early by its condition, a body that needs
its counter static) and real exports that write them (``torch.jit.script``'s ``for``; tf2onnx's Keras ``GRU``,
``SimpleRNN``, masked and ``Bidirectional`` ``GRU``, the last with a ReverseSequence), each against ONNX Runtime. Until 2026-12-07 both engines refused every such
model at load ("uses Loop, whose output's shape grows with a trip count ..."; Scan: "does not implement: Scan").
A Loop whose trip count or condition depends on the data stays refused: tests/test_translated_backends.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference.onnx_graph import Kernels
from tests.control_models import translated_outputs
from tests.tiny_models import jets

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ENGINES = ("jax", "torch")
RNG = np.random.default_rng(38)
F = TensorProto.FLOAT


def _f(name: str, shape=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, F, None if shape is None else list(shape))


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _i64(name: str, *values: int) -> onnx.TensorProto:
    return _init(name, np.array(values, np.int64))


def _w(*shape: int) -> np.ndarray:
    return (RNG.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)


def _model(nodes, shape, inits=(), outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [_f("x", shape)], [_f(o) for o in outputs], list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


_outputs = translated_outputs


def _against_onnxruntime(engine: str, tmp_path: Path, model: onnx.ModelProto, x: np.ndarray) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    refs = session.run(None, {"x": x})
    got = _outputs(engine, tmp_path / "m.onnx", model, x)
    assert len(got) == len(refs)
    for g, r in zip(got, refs):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- Scan
def _rnn_scan(reverse: bool = False) -> onnx.ModelProto:
    """An RNN over the constituents (scan axis 1 of (N, C, F)): h' = tanh(x_t Wx + h Wh), Wh read from the outer
    graph, Wx the body's own; every h' stacked on axis 1 (reversed in both directions when ``reverse``)."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "wx"], ["a"]), helper.make_node("MatMul", ["h", "wh"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Tanh", ["s"], ["h_out"]),
         helper.make_node("Identity", ["h_out"], ["y_t"])],
        "rnn", [_f("h", ["N", 4]), _f("x_t", ["N", 3])], [_f("h_out", ["N", 4]), _f("y_t", ["N", 4])],
        [_init("wx", _w(3, 4))])
    d = [1 if reverse else 0]
    nodes = [helper.make_node("ReduceSum", ["x", "ax1"], ["m"], keepdims=0),  # (N, 3): h0 from the input
             helper.make_node("MatMul", ["m", "w0"], ["h0"]),
             helper.make_node("Scan", ["h0", "x"], ["h_last", "ys"], body=body, num_scan_inputs=1,
                              scan_input_axes=[1], scan_output_axes=[1], scan_input_directions=d,
                              scan_output_directions=d),
             helper.make_node("ReduceSum", ["ys", "ax1"], ["ysum"], keepdims=0),
             helper.make_node("Add", ["ysum", "h_last"], ["y"])]
    return _model(nodes, (3, 6, 3), [_i64("ax1", 1), _init("w0", _w(3, 4)), _init("wh", _w(4, 4))], ("y", "ys"))


def _two_input_scan() -> onnx.ModelProto:
    """Two states (a running sum and a running max) over two scan inputs on different axes and directions (x and
    its transpose), two scan outputs on axes 0 and -1, one reversed; a body reading a value the outer graph computes
    from the input, listed after the Scan node (the graph's order is not trusted)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "a_t"], ["s1"]), helper.make_node("Mul", ["b_t", "mean"], ["bm"]),
         helper.make_node("Add", ["s1", "bm"], ["s_out"]), helper.make_node("Max", ["mx", "a_t"], ["mx_out"]),
         helper.make_node("Sub", ["s_out", "mx_out"], ["d_t"]), helper.make_node("Identity", ["s_out"], ["e_t"])],
        "two", [_f("s", [4, 5]), _f("mx", [4, 5]), _f("a_t", [4, 5]), _f("b_t", [4, 5])],
        [_f("s_out", [4, 5]), _f("mx_out", [4, 5]), _f("d_t", [4, 5]), _f("e_t", [4, 5])])
    nodes = [helper.make_node("Scan", ["s0", "s0", "x", "xt"], ["s_end", "mx_end", "d", "e"], body=body,
                              num_scan_inputs=2, scan_input_axes=[1, -1], scan_input_directions=[1, 0],
                              scan_output_axes=[0, -1], scan_output_directions=[0, 1]),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),  # (4, 5, 6): scanned on its last axis
             helper.make_node("ReduceMean", ["x"], ["mean"], keepdims=0),
             helper.make_node("Slice", ["x", "z", "one", "ax1"], ["x0"]),
             helper.make_node("Squeeze", ["x0", "ax1"], ["s0"]),
             helper.make_node("ReduceSum", ["d", "ax0"], ["dsum"], keepdims=0),
             helper.make_node("ReduceSum", ["e", "ax2"], ["esum"], keepdims=0),
             helper.make_node("Add", ["dsum", "esum"], ["de"]), helper.make_node("Add", ["de", "s_end"], ["y"])]
    graph = helper.make_graph(nodes, "g", [_f("x", (4, 6, 5))], [_f("y"), _f("mx_end"), _f("e")],
                              [_i64("z", 0), _i64("one", 1), _i64("ax0", 0), _i64("ax1", 1), _i64("ax2", -1)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


# ---------------------------------------------------------------------- Loop
def _loop_body(extra_nodes=(), cond_node=None, scan_out=True) -> onnx.GraphProto:
    """h' = tanh(x[:, i] Wx + h Wh) with x read from the outer graph, picked by the iteration count (torch.jit.script's
    ``for t in range(x.shape[1])``); the condition passed on, or ``cond_node``'s; h' also a scan output."""
    nodes = [helper.make_node("Gather", ["xt", "i"], ["x_t"]), helper.make_node("MatMul", ["x_t", "wx"], ["a"]),
             helper.make_node("MatMul", ["h", "wh"], ["b"]), helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Tanh", ["s"], ["h_out"]), *extra_nodes,
             cond_node or helper.make_node("Identity", ["c"], ["c_out"])]
    outs = [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), _f("h_out", ["N", 4])]
    if scan_out:
        nodes.append(helper.make_node("Identity", ["h_out"], ["y_t"]))
        outs.append(_f("y_t", ["N", 4]))
    return helper.make_graph(nodes, "loop", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                             helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                             _f("h", ["N", 4])], outs, [_init("wx", _w(3, 4))])


def _loop_model(m_name: str, cond_name: str, body: onnx.GraphProto, inits=(), extra=()) -> onnx.ModelProto:
    outs = [o.name for o in body.output][1:]
    loop_outs = ["h_last", *(["ys"] if len(outs) > 1 else [])]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]), *extra,
             helper.make_node("ReduceSum", ["x", "ax1"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w0"], ["h0"]),
             helper.make_node("Loop", [m_name, cond_name, "h0"], loop_outs, body=body),
             helper.make_node("Mul", ["h_last", "two"], ["y"])]
    inits = [_i64("ax1", 1), _init("w0", _w(3, 4)), _init("wh", _w(4, 4)), _init("two", np.float32(2)), *inits]
    return _model(nodes, (3, 6, 3), inits, ("y", *loop_outs[1:]))


def _constant_trip() -> onnx.ModelProto:
    """M an initializer (6: every constituent), no condition."""
    return _loop_model("M", "", _loop_body(), [_i64("M", 6)])


def _trip_from_shape() -> onnx.ModelProto:
    """M from the input's Shape (torch.jit.script), the condition a Constant true."""
    extra = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["M"]),
             helper.make_node("Constant", [], ["true"], value=numpy_helper.from_array(np.array(True)))]
    return _loop_model("M", "true", _loop_body(), [_i64("one", 1)], extra)


def _while_counter() -> onnx.ModelProto:
    """tf2onnx's while loop: no M, the condition i + 1 < 4 computed in the body from the counter (4 steps)."""
    body = _loop_body([helper.make_node("Add", ["i", "one"], ["i1"])],
                      helper.make_node("Less", ["i1", "four"], ["c_out"]), scan_out=False)
    body.initializer.extend([_i64("one", 1), _i64("four", 4)])
    return _loop_model("", "go", body, [_init("go", np.array(True))])


def _ended_early() -> onnx.ModelProto:
    """M 10 but the condition i < 2 ends it after 3 steps: the scan output has 3 rows, as ONNX Runtime's."""
    body = _loop_body([], helper.make_node("Less", ["i", "two_i"], ["c_out"]))
    body.initializer.extend([_i64("two_i", 2)])
    return _loop_model("M", "", body, [_i64("M", 10)])


def _slice_at_counter() -> onnx.ModelProto:
    """The time step taken with a Slice at the counter (its starts must be static on JAX: the body is unrolled
    there, not one lax.scan step) over the input itself, not a transposed copy."""
    body = _loop_body()
    nodes = [helper.make_node("Unsqueeze", ["i", "z"], ["iu"]), helper.make_node("Add", ["iu", "one"], ["iu1"]),
             helper.make_node("Slice", ["x", "iu", "iu1", "one"], ["xs"]),
             helper.make_node("Squeeze", ["xs", "one"], ["xt_i"])]
    body.node[0].CopyFrom(helper.make_node("Identity", ["xt_i"], ["x_t"]))
    for n in reversed(nodes):
        body.node.insert(0, n)
    body.initializer.extend([_i64("z", 0), _i64("one", 1)])
    return _loop_model("M", "", body, [_i64("M", 6)])


def _growing_state() -> onnx.ModelProto:
    """A carried value that grows each step (Concat of the constituents read so far): no lax.scan carry on JAX, so
    the body is unrolled there."""
    body = helper.make_graph([helper.make_node("Gather", ["xt", "i"], ["x_t"]),
                              helper.make_node("Unsqueeze", ["x_t", "one"], ["x_u"]),
                              helper.make_node("Concat", ["acc", "x_u"], ["acc_out"], axis=1),
                              helper.make_node("Identity", ["c"], ["c_out"])], "grow",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("c", TensorProto.BOOL, []), _f("acc")],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), _f("acc_out")],
                             [_i64("one", 1)])
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Slice", ["x", "z", "one", "one"], ["acc0"]),
             helper.make_node("Loop", ["M", "", "acc0"], ["y"], body=body)]
    return _model(nodes, (3, 6, 3), [_i64("M", 4), _i64("z", 0), _i64("one", 1)])


def _state_of_one_row() -> onnx.ModelProto:
    """The initial state one row, an initializer (torch.jit.script's ``h = torch.zeros(1, 4)``), broadcast to the
    batch by the first step: the carried value's shape changes once, then stays."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Loop", ["M", "", "h1"], ["h_last", "ys"], body=_loop_body()),
             helper.make_node("Mul", ["h_last", "two"], ["y"])]
    inits = [_i64("M", 6), _init("h1", np.full((1, 4), 0.3, np.float32)), _init("wh", _w(4, 4)),
             _init("two", np.float32(2))]
    return _model(nodes, (3, 6, 3), inits, ("y", "ys"))


def _loop_in_scan() -> onnx.ModelProto:
    """A Loop (2 steps) inside a Scan's body, its body reading the outer graph's weight and the Scan body's value."""
    inner = helper.make_graph([helper.make_node("MatMul", ["h2", "wh"], ["a"]),
                               helper.make_node("Add", ["a", "x4"], ["s"]), helper.make_node("Tanh", ["s"], ["h2_out"]),
                               helper.make_node("Identity", ["c"], ["c_out"])],
                              "inner", [helper.make_tensor_value_info("j", TensorProto.INT64, []),
                                        helper.make_tensor_value_info("c", TensorProto.BOOL, []), _f("h2")],
                              [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), _f("h2_out")])
    body = helper.make_graph([helper.make_node("MatMul", ["x_t", "w34"], ["x4"]),
                              helper.make_node("Loop", ["two", "", "h"], ["h_out"], body=inner),
                              helper.make_node("Identity", ["h_out"], ["y_t"])], "scan_body",
                             [_f("h", [3, 4]), _f("x_t", [3, 3])], [_f("h_out", [3, 4]), _f("y_t", [3, 4])],
                             [_i64("two", 2)])
    nodes = [helper.make_node("ReduceSum", ["x", "ax1"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w34"], ["h0"]),
             helper.make_node("Scan", ["h0", "x"], ["h_last", "y"], body=body, num_scan_inputs=1, scan_input_axes=[1])]
    return _model(nodes, (3, 6, 3), [_i64("ax1", 1), _init("w34", _w(3, 4)), _init("wh", _w(4, 4))], ("y", "h_last"))


CASES = {"scan-rnn-over-constituents": _rnn_scan, "scan-reversed": lambda: _rnn_scan(reverse=True),
         "scan-two-inputs-axes-directions-outer-value": _two_input_scan, "loop-constant-trip": _constant_trip,
         "loop-trip-from-shape": _trip_from_shape, "loop-while-counter": _while_counter,
         "loop-ended-early-by-its-condition": _ended_early, "loop-slice-at-the-counter": _slice_at_counter,
         "loop-carried-state-grows": _growing_state, "loop-state-of-one-row": _state_of_one_row,
         "loop-in-a-scan-body-reading-the-outer-graph": _loop_in_scan}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(CASES))
def test_scan_and_loop_match_onnxruntime(case, engine, tmp_path):
    model = CASES[case]()
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    _against_onnxruntime(engine, tmp_path, model, RNG.normal(size=shape).astype(np.float32))


def test_jax_compiles_one_step_unless_the_body_needs_its_counter_static(monkeypatch, tmp_path):
    """JAX runs a Loop whose counter only indexes (Gather) as one ``lax.scan`` step, not 6 unrolled copies per
    bucket; a body that needs the counter static (Slice's starts) is unrolled, and still agrees (above)."""
    unrolled: list[int] = []
    base = Kernels.scan
    monkeypatch.setattr(Kernels, "scan", lambda self, *a, **kw: unrolled.append(1) or base(self, *a, **kw))
    x = RNG.normal(size=(3, 6, 3)).astype(np.float32)
    _outputs("jax", tmp_path / "m.onnx", _constant_trip(), x)
    assert unrolled == []
    _outputs("jax", tmp_path / "m.onnx", _state_of_one_row(), x)  # its first step peeled: it was unrolled
    assert unrolled == []
    _outputs("jax", tmp_path / "m.onnx", _slice_at_counter(), x)
    assert unrolled == [1]


# ---------------------------------------------------------------------- real exports
class _ScriptedRecurrence(torch.nn.Module):
    """A recurrent scorer's weights and step, for the Python ``for`` loops of its subclasses' ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.wx, self.head = torch.nn.Linear(3, 8), torch.nn.Linear(8, 1)
        self.wh = torch.nn.Linear(8, 8, bias=False)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.wx(x_t / 20.0) + self.wh(h))


def _scripted(net: type[_ScriptedRecurrence], path: Path) -> Path:
    """``net`` scripted and exported by torch.onnx: each ``for`` becomes a Loop."""
    torch.manual_seed(0)
    torch.onnx.export(torch.jit.script(net().eval()), (torch.randn(2, 100, 3),), str(path), input_names=["jets"],
                      output_names=["score"], dynamic_axes={"jets": {0: "N"}, "score": {0: "N"}}, opset_version=17,
                      dynamo=False)
    return path


def _torch_scripted_loop(path: Path) -> Path:
    """A recurrent scorer with a Python ``for`` over the constituents, scripted: torch.onnx writes a Loop whose
    trip count is the input's Shape."""
    class Net(_ScriptedRecurrence):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(jets.shape[0], 8)
            x = jets.transpose(0, 1)
            for t in range(x.shape[0]):
                h = self.step(x[t], h)
            return self.head(h).squeeze(-1)

    return _scripted(Net, path)


def _torch_scripted_nested_loop(path: Path) -> Path:
    """Two passes of the recurrence (a loop over layers, its count from the input's shape so that it stays a Loop),
    each a ``for`` over the constituents: torch.onnx writes the inner Loop's trip count as the Shape of a value of
    the graph around it, taken inside the outer Loop's body. It was refused at load as a count that "depends on the
    input's values"."""
    class Net(_ScriptedRecurrence):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(jets.shape[0], 8)
            x = jets.transpose(0, 1)
            for _ in range(jets.shape[2] - 1):
                for t in range(x.shape[0]):
                    h = self.step(x[t], h)
            return self.head(h).squeeze(-1)

    _scripted(Net, path)
    loop = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Loop")
    assert "Loop" in {n.op_type for n in loop.attribute[0].g.node}  # the form this test is about
    return path


def _keras_recurrent(path: Path, kind: str) -> Path:
    """tf2onnx's export of a Keras recurrent scorer it writes as a Loop: ``GRU``, ``SimpleRNN``, a ``Masking``
    layer before a ``GRU`` (the padded constituents skipped), a ``Bidirectional`` ``GRU`` (with a ReverseSequence)."""
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras.utils.set_random_seed(1)
    x = keras.Input((100, 3), name="jets")
    h = keras.layers.Rescaling(0.05)(x)
    if kind == "masked":
        h = keras.layers.GRU(8)(keras.layers.Masking(0.0)(h))
    elif kind == "bidirectional":  # two Loops and a ReverseSequence
        h = keras.layers.Bidirectional(keras.layers.GRU(8))(h)
    else:
        h = (keras.layers.GRU if kind == "gru" else keras.layers.SimpleRNN)(8)(h)
    model = keras.Model(x, keras.layers.Dense(1)(keras.layers.Dense(4, activation="tanh")(h)))
    spec = (tf.TensorSpec((None, 100, 3), tf.float32, name="jets"),)
    tf2onnx.convert.from_function(tf.function(lambda t: model(t)), input_signature=spec, opset=17,
                                  output_path=str(path))
    return path


def _agrees(engine: str, path: Path) -> None:
    assert "Loop" in {n.op_type for n in onnx.load(str(path)).graph.node}
    ref = create_backend("onnxruntime", path).load()
    got = create_backend(engine, path, BackendOptions(max_batch=8, device="cpu")).load()
    got.warm_up()
    for n in (1, 3, 8):
        x = jets(n, seed=n)
        np.testing.assert_allclose(got.run(x)["score"], ref.run(x)["score"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_torch_scripted_for_loop_runs_as_onnxruntime(engine, tmp_path):
    _agrees(engine, _torch_scripted_loop(tmp_path / "scripted.onnx"))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_torch_scripted_loop_inside_a_loop_runs_as_onnxruntime(engine, tmp_path):
    _agrees(engine, _torch_scripted_nested_loop(tmp_path / "nested.onnx"))


KERAS = ("gru", "simplernn", "masked", "bidirectional")


@pytest.fixture(scope="module")
def keras_loops(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keras_loops")
    return {kind: _keras_recurrent(d / f"{kind}.onnx", kind) for kind in KERAS}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KERAS)
def test_a_keras_recurrent_layer_tf2onnx_wrote_as_a_loop_runs_as_onnxruntime(keras_loops, kind, engine):
    _agrees(engine, keras_loops[kind])
