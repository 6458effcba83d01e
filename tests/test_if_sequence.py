"""ONNX ``If`` and the Sequence ops on the translated engines (JAX, PyTorch), each against ONNX Runtime: hand-built
graphs for each form (a condition on a shape, on the values, on a loop's counter and on its carried state; a branch
with an If inside; every Sequence op), and real exports that write them (``torch.jit.script``'s ``if`` on a shape and
on a value and its ``torch.unbind``/``split`` + ``stack`` loops, the dynamo exporter's ``torch.cond``, tf2onnx's
``tf.cond``), also through ``hltrun`` on the shipped path. Until 2026-12-07 both engines refused every such model at
load ("uses If, whose output's shape is the taken branch's ..."; the Sequence ops: "does not implement").
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from hltrun.framework.errors import ModuleError
from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference.onnx_jax import translate
from tests import control_models
from tests.tiny_models import jets

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ENGINES = ("jax", "torch")
REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(39)
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _v(name: str, kind=F, shape=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, shape)


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _w(*shape: int) -> np.ndarray:
    return (RNG.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)


def _graph(name: str, nodes, outputs, inits=()) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [_v(o) for o in outputs], list(inits))


def _model(nodes, inits=(), outputs=("y",), shape=(3, 6, 3)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [_v("x", F, list(shape))], [_v(o) for o in outputs], list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


_outputs = control_models.translated_outputs


def _against_onnxruntime(engine: str, tmp_path: Path, model: onnx.ModelProto, x: np.ndarray) -> None:
    refs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = _outputs(engine, tmp_path / "m.onnx", model, x)
    assert len(got) == len(refs)
    for g, r in zip(got, refs):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- If, hand-built
def _if_on_shape() -> onnx.ModelProto:
    """``if x.shape[1] > 4``: static; the branches give different shapes (then (3, 3), else (3, 1, 3)), which only
    a static condition allows."""
    then = _graph("then", [helper.make_node("ReduceMean", ["x", "ax1"], ["t"], keepdims=0)], ["t"])
    other = _graph("else", [helper.make_node("ReduceMax", ["x", "ax1"], ["e"], keepdims=1)], ["e"])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one"], ["n"]),
             helper.make_node("Greater", ["n", "four"], ["c"]),
             helper.make_node("If", ["c"], ["r"], then_branch=then, else_branch=other),
             helper.make_node("MatMul", ["r", "w"], ["y"])]
    return _model(nodes, [_init("one", np.int64(1)), _init("four", np.int64(4)), _init("ax1", np.array([1])),
                          _init("w", _w(3, 2))])


def _if_on_values(nested: bool = False) -> onnx.ModelProto:
    """``if x.sum() > 0``: the branches read the graph around them (h, w) and their own weights; two outputs, one
    an int64 count; ``nested``: the then branch holds an If of its own on another value."""
    then_nodes = [helper.make_node("MatMul", ["h", "w"], ["t0"]), helper.make_node("Tanh", ["t0"], ["t"]),
                  helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([1], np.int64)))]
    if nested:
        inner_a = _graph("a", [helper.make_node("Mul", ["t", "two"], ["ia"])], ["ia"], [_init("two", np.float32(2))])
        inner_b = _graph("b", [helper.make_node("Neg", ["t"], ["ib"])], ["ib"])
        then_nodes += [helper.make_node("ReduceMax", ["h"], ["hm"], keepdims=0),
                       helper.make_node("Less", ["hm", "half"], ["c2"]),
                       helper.make_node("If", ["c2"], ["tt"], then_branch=inner_a, else_branch=inner_b)]
    then = helper.make_graph(then_nodes, "then", [], [_v("tt" if nested else "t"), _v("k", I64)],
                             [_init("half", np.float32(0.5))] if nested else [])
    other = helper.make_graph([helper.make_node("MatMul", ["h", "w2"], ["e0"]),
                               helper.make_node("Mul", ["e0", "h0"], ["e"]),
                               helper.make_node("Constant", [], ["k2"],
                                                value=numpy_helper.from_array(np.array([2], np.int64)))],
                              "else", [], [_v("e"), _v("k2", I64)], [_init("w2", _w(3, 2))])
    nodes = [helper.make_node("ReduceMean", ["x", "ax1"], ["h"], keepdims=0),
             helper.make_node("Slice", ["h", "z", "one", "one"], ["h0"]),
             helper.make_node("ReduceSum", ["x"], ["sum"], keepdims=0),
             helper.make_node("Greater", ["sum", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["r", "k_out"], then_branch=then, else_branch=other),
             helper.make_node("Cast", ["k_out"], ["kf"], to=F), helper.make_node("Mul", ["r", "kf"], ["y"])]
    return _model(nodes, [_init("ax1", np.array([1])), _init("z", np.array([0])), _init("one", np.array([1])),
                          _init("zero", np.float32(0)), _init("w", _w(3, 2))])


def _loop_with_if(on: str) -> onnx.ModelProto:
    """A Loop of 6 steps over the constituents whose body holds an If: on the counter (``if t < 3``: static per step,
    a scanned value on JAX's lax.scan) or on the carried state (``if h.sum() > 0``: the data)."""
    then = _graph("then", [helper.make_node("Add", ["h", "x_t"], ["a"])], ["a"])
    other = _graph("else", [helper.make_node("Mul", ["h", "half"], ["m"])], ["m"], [_init("half", np.float32(0.5))])
    cond = ([helper.make_node("Less", ["i", "three"], ["c"])] if on == "counter" else
            [helper.make_node("ReduceSum", ["h"], ["hs"], keepdims=0),
             helper.make_node("Greater", ["hs", "zero"], ["c"])])
    body = helper.make_graph(
        [helper.make_node("Gather", ["xt", "i"], ["x_t"]), *cond,
         helper.make_node("If", ["c"], ["h1"], then_branch=then, else_branch=other),
         helper.make_node("Tanh", ["h1"], ["h_out"]), helper.make_node("Identity", ["go"], ["go_out"])],
        "body", [_v("i", I64, []), _v("go", B, []), _v("h")], [_v("go_out", B, []), _v("h_out")],
        [_init("three", np.int64(3)), _init("zero", np.float32(0))])
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Neg", ["x"], ["nx"]), helper.make_node("ReduceMean", ["nx", "ax1"], ["h0"], keepdims=0),
             helper.make_node("Loop", ["M", "", "h0"], ["y"], body=body)]
    return _model(nodes, [_init("M", np.int64(6)), _init("ax1", np.array([1]))])


IF_CASES = {"if-on-a-shape": _if_on_shape, "if-on-the-values": _if_on_values,
            "if-in-a-branch-of-an-if": lambda: _if_on_values(nested=True),
            "if-in-a-loop-on-its-counter": lambda: _loop_with_if("counter"),
            "if-in-a-loop-on-its-state": lambda: _loop_with_if("state")}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(IF_CASES))
def test_if_matches_onnxruntime_on_either_branch(case, engine, tmp_path):
    """Each batch twice, as it is and negated: the value conditions take one branch, then the other."""
    x = RNG.normal(size=(3, 6, 3)).astype(np.float32) + 0.3
    for batch in (x, -x):
        _against_onnxruntime(engine, tmp_path, IF_CASES[case](), batch)


def test_a_static_condition_translates_only_the_taken_branch(monkeypatch, tmp_path):
    """A condition on a shape is worked out while the graph is traced: the other branch's ops never run (its
    ReduceMax is not called), on JAX as on PyTorch's specialised graph."""
    from hltrun.modules.inference import onnx_graph

    called: list[str] = []
    real = onnx_graph.OPS["ReduceMax"]
    monkeypatch.setitem(onnx_graph.OPS, "ReduceMax", lambda *a, **kw: called.append("max") or real(*a, **kw))
    x = RNG.normal(size=(3, 6, 3)).astype(np.float32)
    for engine in ENGINES:
        _outputs(engine, tmp_path / "m.onnx", _if_on_shape(), x)
    assert called == []


def test_jax_compiles_a_conditional_for_a_condition_on_the_values(tmp_path):
    """JAX holds both branches as one ``cond`` in the compiled graph (the taken one runs), not a select of both."""
    x = RNG.normal(size=(3, 6, 3)).astype(np.float32)
    fn = translate(tmp_path / "m.onnx", _if_on_values()).fn
    assert "cond" in str(jax.make_jaxpr(fn)(x))


def _branches_differ(path: Path) -> Path:
    """``if x.sum() > 0`` whose branches give (N, 3) and (N, 1, 3), summed over the last axis into the score: (N,)
    or (N, 1), no one shape per batch bucket."""
    then = _graph("then", [helper.make_node("ReduceMean", ["x", "ax1"], ["t"], keepdims=0)], ["t"])
    other = _graph("else", [helper.make_node("ReduceMax", ["x", "ax1"], ["e"], keepdims=1)], ["e"])
    nodes = [helper.make_node("ReduceSum", ["x"], ["sum"], keepdims=0),
             helper.make_node("Greater", ["sum", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["r"], then_branch=then, else_branch=other),
             helper.make_node("ReduceSum", ["r", "last"], ["score"], keepdims=0)]
    model = _model(nodes, [_init("ax1", np.array([1])), _init("last", np.array([-1])), _init("zero", np.float32(0))],
                   ("score",), ("N", 100, 3))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_an_if_on_the_values_whose_branches_differ_in_shape_is_one_line_at_load(engine, tmp_path):
    """The job ends at begin_job with one line naming the node, what each branch gives and who runs the model
    (exit 4), not at an event; as the engine's own error, from the trace (it was "uses If, whose output's shape is the
    taken branch's" for every If until 2026-12-07)."""
    from hltrun.framework.cli import main as hltrun

    path = _branches_differ(tmp_path / "differ.onnx")
    with pytest.raises(ModuleError) as info:
        create_backend(engine, path).load()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{engine}: model {path}: If node 'r': "), msg
    assert "then: float32(1, 3); else: float32(1, 1, 3)" in msg and "use backend: onnxruntime" in msg, msg
    assert hltrun([str(REPO / "configs" / "path.yaml"), "-n", "5", f"modules.vae.model={path}",
                   f"modules.vae.backend={engine}", "modules.anomalyFilter.threshold=1",
                   f"modules.out.file={tmp_path / 'out.root'}"]) == 4


# ---------------------------------------------------------------------- sequences, hand-built
def _sequence_ops() -> onnx.ModelProto:
    """Every Sequence op on a sequence of a static length: SplitToSequence by sizes, by one size (the last part
    smaller) and into single slices without their axis (``torch.unbind``); SequenceConstruct, SequenceInsert (at the
    end, at a negative position), SequenceErase, SequenceAt (negative), SequenceLength, ConcatFromSequence joined and
    stacked on a new (negative) axis; its outputs one tensor each."""
    nodes = [helper.make_node("SplitToSequence", ["x", "sizes"], ["s1"], axis=1),  # (3,2,3), (3,4,3)
             helper.make_node("SplitToSequence", ["x", "four"], ["s2"], axis=1),  # (3,4,3), (3,2,3)
             helper.make_node("SplitToSequence", ["x"], ["s3"], axis=-1, keepdims=0),  # 3 x (3,6)
             helper.make_node("SequenceAt", ["s1", "minus1"], ["a"]),
             helper.make_node("SequenceAt", ["s2", "zero"], ["b"]),
             helper.make_node("SequenceConstruct", ["a", "b"], ["c"]),
             helper.make_node("SequenceInsert", ["c", "a"], ["c2"]),
             helper.make_node("SequenceInsert", ["c2", "b", "minus1"], ["c3"]),
             helper.make_node("SequenceErase", ["c3", "zero"], ["c4"]),
             helper.make_node("SequenceErase", ["c4"], ["c5"]),
             helper.make_node("ConcatFromSequence", ["c5"], ["joined"], axis=1),  # (3, 8, 3)
             helper.make_node("ConcatFromSequence", ["s3"], ["stacked"], axis=-1, new_axis=1),  # (3, 6, 3)
             helper.make_node("SequenceLength", ["c5"], ["n"]), helper.make_node("Cast", ["n"], ["nf"], to=F),
             helper.make_node("Mul", ["stacked", "nf"], ["y"])]
    return _model(nodes, [_init("sizes", np.array([2, 4])), _init("four", np.int64(4)), _init("minus1", np.int64(-1)),
                          _init("zero", np.int64(0))], ("y", "joined"))


@pytest.mark.parametrize("engine", ENGINES)
def test_sequence_ops_match_onnxruntime(engine, tmp_path):
    _against_onnxruntime(engine, tmp_path, _sequence_ops(), RNG.normal(size=(3, 6, 3)).astype(np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sequence_position_from_the_values_is_one_line_naming_the_node(engine, tmp_path):
    """SequenceAt at an ArgMax of the input: which element is taken depends on the values. One line naming the node
    and who runs the model."""
    nodes = [helper.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
             helper.make_node("ReduceSum", ["x"], ["t"], keepdims=0),
             helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=0),
             helper.make_node("ReduceMax", ["am"], ["pos"], keepdims=0),
             helper.make_node("SequenceAt", ["s", "pos"], ["y"])]
    path = tmp_path / "m.onnx"
    with pytest.raises(ModuleError) as info:
        _outputs(engine, path, _model(nodes), RNG.normal(size=(3, 6, 3)).astype(np.float32))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{engine}: model {path}: SequenceAt node 'y': "), msg
    assert "depends on the input" in msg and "use backend: onnxruntime" in msg, msg


# ---------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("control_exports")
    return {name: control_models.torch_export(name, d / f"{name}.onnx") for name in control_models.torch_models()}


def _ops(path: Path) -> set[str]:
    def walk(graph):
        for node in graph.node:
            yield node.op_type
            for a in node.attribute:
                if a.type == a.GRAPH:
                    yield from walk(a.g)
    return set(walk(onnx.load(str(path)).graph))


def _agrees(engine: str, path: Path) -> None:
    """Batches of 1, 3 and 8 jets as they are and with their pT scaled down: the value conditions take both
    branches (checked), each score within hltrun's agreement tolerance of ONNX Runtime's."""
    ref = create_backend("onnxruntime", path).load()
    got = create_backend(engine, path, BackendOptions(max_batch=8, device="cpu")).load()
    got.warm_up()
    taken = set()
    for n in (1, 3, 8):
        for scale in (1.0, control_models.LOW_PT):
            x = jets(n, seed=n) * np.float32([1, 1, scale])
            taken.add(control_models.pt_sum_over(x))
            np.testing.assert_allclose(got.run(x)["score"], ref.run(x)["score"], rtol=1e-5, atol=1e-6)
    assert taken == {True, False}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(control_models.torch_models()))
def test_a_torch_export_with_control_flow_runs_as_onnxruntime(exports, name, engine):
    want = {"scripted-unbind-stack": {"SplitToSequence", "SequenceAt", "SequenceInsert", "ConcatFromSequence", "Loop"},
            "scripted-split-stack": {"SplitToSequence", "SequenceLength", "ConcatFromSequence", "Loop"}}
    assert want.get(name, {"If"}) <= _ops(exports[name])  # the form this test is about
    _agrees(engine, exports[name])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_tf2onnx_tf_cond_runs_as_onnxruntime(engine, tmp_path):
    pytest.importorskip("tf2onnx")
    path = control_models.tf_cond(tmp_path / "tf_cond.onnx")
    assert "If" in _ops(path)
    _agrees(engine, path)


def _slice_at_the_counter(path: Path) -> Path:
    """A Loop of 5 steps taking constituent t with a Slice at its counter (Slice's starts must be static on JAX):
    score = the sum of h after h' = h + tanh(x[:, t])."""
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["i", "z"], ["iu"]), helper.make_node("Add", ["iu", "one"], ["iu1"]),
         helper.make_node("Slice", ["x", "iu", "iu1", "one"], ["xs"]),
         helper.make_node("Squeeze", ["xs", "one"], ["xt"]),
         helper.make_node("Tanh", ["xt"], ["a"]), helper.make_node("Add", ["h", "a"], ["h_out"]),
         helper.make_node("Identity", ["go"], ["go_out"])],
        "body", [_v("i", I64, []), _v("go", B, []), _v("h")], [_v("go_out", B, []), _v("h_out")],
        [_init("z", np.array([0])), _init("one", np.array([1]))])
    nodes = [helper.make_node("ReduceMean", ["x", "ax1"], ["h0"], keepdims=0),
             helper.make_node("Loop", ["M", "", "h0"], ["h_last"], body=body),
             helper.make_node("ReduceSum", ["h_last", "ax1"], ["score"], keepdims=0)]
    onnx.save(_model(nodes, [_init("M", np.int64(5)), _init("ax1", np.array([1]))], ("score",), ("N", 100, 3)),
              str(path))
    return path


def _said_unrolled(path: Path, caplog) -> set[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hltrun.inference"):
        create_backend("jax", path, BackendOptions(max_batch=4, device="cpu")).load().warm_up()
    return {r.getMessage() for r in caplog.records if "unrolled" in r.getMessage() and r.once}  # the CLI's filter


def test_jax_says_once_at_begin_job_that_a_loop_runs_unrolled(exports, tmp_path, caplog):
    """A Loop whose body needs its counter static (a Slice at it) or carries a list (the scripted ``torch.unbind``
    loop's ``outs.append``) cannot be one lax.scan step: JAX traces a copy of its body per step in every bucket. It
    was silent (session 38's note); said once now, with the node and the steps. A loop compiled as one step, or a
    model without one, says nothing."""
    said = _said_unrolled(_slice_at_the_counter(tmp_path / "slice.onnx"), caplog)
    assert len(said) == 1 and "loop node 'h_last' runs unrolled, 5 copies of its body per batch bucket" in said.pop()
    path = exports["scripted-unbind-stack"]
    loop = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Loop").output[0]
    said = _said_unrolled(path, caplog)
    assert len(said) == 1 and f"loop node {loop!r} runs unrolled, 10 copies of its body" in said.pop(), said
    assert not _said_unrolled(exports["scripted-if-on-a-value"], caplog)
