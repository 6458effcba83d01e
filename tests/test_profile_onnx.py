"""hltbench profile (tools/bench/profile_onnx.py) (scopes, FLOP, the command) and the export's lean-graph rewrite."""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
from onnx import TensorProto, helper  # noqa: E402

from hltrun.tools.bench import profile_onnx as P  # noqa: E402
from hltrun.tools.bench.cli import main as hltbench  # noqa: E402
from tests.helpers import stdout_full  # noqa: E402


def _save(path, nodes, inits, inp, out):
    graph = helper.make_graph(nodes, "g", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_scope_names() -> None:
    names = ["conv_vae_1/encoder_1/conv2d_1/Elu", "fused conv_vae_1/decoder_1/dense_4_1/MatMul",
             "conv_vae_1/score_1/Min", "Slice__205", "conv_vae_1/kl_1/add"]
    prefix = P.shared_prefix(names)
    assert prefix == ["conv_vae_1"]
    assert [P.scope_of(n, prefix) for n in names] == ["encoder", "decoder", "score", P.UNSCOPED, "kl"]
    # a model without a common wrapper: the first component is the scope
    names = ["/encoder/conv1/Conv", "/decoder/fc/Gemm", "Relu_3"]
    prefix = P.shared_prefix(names)
    assert [P.scope_of(n, prefix) for n in names] == ["encoder", "decoder", P.UNSCOPED]


def test_matrix_flop_shapes() -> None:
    assert P.matrix_flop("MatMul", [[4, 100, 5], [4, 5, 100]], [[4, 100, 100]]) == 2 * 4 * 100 * 100 * 5
    assert P.matrix_flop("Gemm", [[4, 1128], [1128, 136]], [[4, 136]]) == 2 * 4 * 1128 * 136
    assert P.matrix_flop("Conv", [[4, 16, 1, 98], [20, 16, 1, 3]], [[4, 20, 1, 96]]) == 2 * 4 * 20 * 96 * 16 * 3
    assert P.matrix_flop("ConvTranspose", [[4, 24, 1, 94], [24, 20, 1, 3]], [[4, 20, 1, 96]]) == 2 * 4 * 24 * 94 * 20 * 3


def test_command_on_any_model(tmp_path) -> None:
    """A two-scope model with a known FLOP count: the tool finds both scopes and the exact FLOP."""
    k, n = 32, 48
    w = helper.make_tensor("w", TensorProto.FLOAT, [k, n], np.random.default_rng(0).normal(size=k * n).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="net/encoder/dense/MatMul"),
             helper.make_node("ReduceMin", ["h"], ["y"], name="net/score/Min", keepdims=0, axes=[1])]
    path = _save(tmp_path / "two_scopes.onnx", nodes, [w],
                 helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k]),
                 helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]))
    out = tmp_path / "prof.json"
    rc = hltbench(["profile", str(path), "--batch-sizes", "1", "4", "--profile-batch", "4", "--profile-calls", "5",
                 "--min-time", "0.05", "--repeat", "2", "--json", str(out), "--sample", str(tmp_path / "none.root")])
    assert rc == 0
    res = json.loads(out.read_text())["models"][str(path)]
    assert set(res["scope_share"]) == {"encoder", "score"}
    assert sum(res["scope_share"].values()) == pytest.approx(1.0)
    assert res["mflop_per_jet"] == pytest.approx(2 * k * n / 1e6)
    assert set(res["us_per_jet"]) == {"1", "4"} and all(v > 0 for v in res["us_per_jet"].values())


def test_missing_model_is_one_line(tmp_path, capsys) -> None:
    assert hltbench(["profile", str(tmp_path / "nope.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"hltbench profile: model file not found: {tmp_path / 'nope.onnx'}"


@pytest.mark.parametrize("shape", [[None, 16, 98, 1], [None, 136]])
def test_export_elu_rewrite_is_elu(tmp_path, shape) -> None:
    """The export's Elu rewrite computes Elu (also on a trailing axis of length 1) and leaves no Elu."""
    from hltrun.tools.physics.export_onnx import lean_graph

    dims = ["N", *shape[1:]]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Elu", ["x"], ["y"], name="m/encoder/Elu")], "g", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert lean_graph(model) == 1
    onnx.checker.check_model(model)
    assert "Elu" not in {n.op_type for n in model.graph.node}
    assert all(n.name.startswith("m/encoder/Elu/") for n in model.graph.node)  # the layer's scope is kept
    lean = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(scale=3, size=[5, *shape[1:]]).astype(np.float32)
    np.testing.assert_allclose(lean.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-6, atol=1e-7)


def test_export_shape_folding_keeps_dynamic_batch_and_data_dependence(tmp_path) -> None:
    """fold_shapes turns batch-derived shape arithmetic into constants (with -1 for the batch) but
    never folds an integer that depends on the data (here an ArgMin feeding a Gather)."""
    from hltrun.tools.physics.export_onnx import fold_shapes

    i64 = TensorProto.INT64
    inits = [helper.make_tensor("i0", i64, [1], [0]), helper.make_tensor("tail", i64, [1], [300])]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "tail"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("ArgMin", ["flat"], ["idx"], axis=1, keepdims=0),
             helper.make_node("Gather", ["flat", "idx"], ["picked"], axis=1),
             helper.make_node("ReduceMax", ["picked"], ["y"], keepdims=0, axes=[1])]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    removed = fold_shapes(model)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert removed == 3 and "Shape" not in ops and "Concat" not in ops
    assert "ArgMin" in ops  # data-dependent: kept
    lean = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 4, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 100, 3)).astype(np.float32)
        np.testing.assert_array_equal(lean.run(None, {"x": x})[0], ref.run(None, {"x": x})[0])


def test_export_shape_folding_keeps_a_slice_to_the_last_real_slot(tmp_path) -> None:
    """A slice end computed from the data (the batch's last real constituent slot, as a crop of the
    score would compute it) must stay dynamic: the probes pad different numbers of trailing slots.
    With probes that pad slot by slot at random, some jet always has slot 100 real and the end would
    be folded to a constant 100 (found while trying the crop for issue 8; values stay right, so only
    the shape shows it)."""
    from hltrun.tools.physics.export_onnx import fold_shapes

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inits = [helper.make_tensor("slots", f32, [100], list(range(1, 101))),
             helper.make_tensor("two", i64, [1], [2]), helper.make_tensor("zero", f32, [], [0.0]),
             helper.make_tensor("one", i64, [1], [1]), helper.make_tensor("start", i64, [1], [0])]
    nodes = [helper.make_node("Gather", ["x", "two"], ["pt"], axis=2),
             helper.make_node("Squeeze", ["pt", "two"], ["pt2"]),
             helper.make_node("Greater", ["pt2", "zero"], ["real"]),
             helper.make_node("Cast", ["real"], ["mask"], to=f32),
             helper.make_node("Mul", ["mask", "slots"], ["pos"]),
             helper.make_node("ReduceMax", ["pos"], ["last"], axes=[0, 1], keepdims=1),
             helper.make_node("Cast", ["last"], ["last_i"], to=i64),
             helper.make_node("Reshape", ["last_i", "one"], ["end"]),
             helper.make_node("Slice", ["x", "start", "end", "one"], ["y"])]
    inp = helper.make_tensor_value_info("x", f32, ["N", 100, 3])
    out = helper.make_tensor_value_info("y", f32, ["N", None, 3])
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    fold_shapes(model)
    onnx.checker.check_model(model)
    assert "ReduceMax" in [n.op_type for n in model.graph.node]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 100, 3), np.float32)
    x[0, :7], x[1, :23] = 1.0, 1.0
    assert sess.run(None, {"x": x})[0].shape == (2, 23, 3)


def test_score_core_bench_variants_agree(capsys) -> None:
    """hltbench score-core: every variant of the score core (cropped, pre-transposed, pooled)
    gives the shipped formulation's per-jet sums before anything is timed."""
    assert hltbench(["score-core", "--batch-sizes", "3", "--real", "30", "--repeat", "1", "--calls", "20"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("shipped", "crop", "keepdims", "transposed", "pool"))


@pytest.mark.parametrize("bad, fragment", [
    ("empty", "hltbench profile: model file {path} is empty"),
    ("garbage", "hltbench profile: cannot load model {path}: InvalidProtobuf: "),
    ("b1", "hltbench profile: model {path} input 'x' takes a fixed batch of 1 (shape [1, 100, 3]), not [1, 2, 9, 64]: "
           "profile it at its batch (--batch-sizes 1 --profile-batch 1)"),
    ("f16", "hltbench profile: model {path} input 'x' is tensor(float16); only float32 inputs are supported"),
    ("norank", "hltbench profile: model {path} input 'x' has no shape (unknown rank"),
])
def test_a_model_the_tool_cannot_feed_is_one_line(tmp_path, capfd, bad, fragment) -> None:
    """Empty, not ONNX, a fixed batch, float16, no shape: one line naming the model, exit 2 (were ONNX
    Runtime's tracebacks at the session or at the first timed call)."""
    from tests.tiny_models import sum_of_squares_onnx

    path = tmp_path / f"{bad}.onnx"
    if bad in ("empty", "garbage"):
        path.write_bytes(b"" if bad == "empty" else b"this is not onnx" * 10)
    else:
        sum_of_squares_onnx(path, {"b1": [1, 100, 3], "f16": ["N", 100, 3], "norank": None}[bad],
                            TensorProto.FLOAT16 if bad == "f16" else None)
    capfd.readouterr()
    assert hltbench(["profile", str(path), "--sample", str(tmp_path / "none.root")]) == 2
    err = capfd.readouterr().err
    assert err.startswith(fragment.format(path=path)), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_fixed_batch_model_is_profiled_at_its_batch(tmp_path) -> None:
    from tests.tiny_models import sum_of_squares_onnx

    path = sum_of_squares_onnx(tmp_path / "b1.onnx", [1, 100, 3])
    out = tmp_path / "prof.json"
    assert hltbench(["profile", str(path), "--batch-sizes", "1", "--profile-batch", "1", "--profile-calls", "3",
                     "--min-time", "0.02", "--repeat", "1", "--json", str(out), "--sample", str(tmp_path / "none.root")]) == 0
    assert set(json.loads(out.read_text())["models"][str(path)]["us_per_jet"]) == {"1"}


def test_an_unwritable_json_stops_the_profile_before_it_times(tmp_path, monkeypatch, capsys) -> None:
    path = _save(tmp_path / "sos.onnx", [helper.make_node("Mul", ["x", "x"], ["xx"]),
                                         helper.make_node("ReduceSum", ["xx", "ax"], ["score"], keepdims=0)],
                 [helper.make_tensor("ax", TensorProto.INT64, [2], [1, 2])],
                 helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 3]),
                 helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]))
    monkeypatch.setattr(P, "time_models", lambda *a, **k: pytest.fail("timed before the output was checked"))
    (tmp_path / "plain").write_text("x")
    assert hltbench(["profile", str(path), "--json", str(tmp_path / "plain" / "y.json")]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"hltbench profile --json: {tmp_path / 'plain'} is a file, not a folder"


def test_a_json_over_the_profiled_model_is_refused_and_the_model_kept(tmp_path, capsys) -> None:
    """``hltbench profile m.onnx --json m.onnx`` replaced the model with the results' JSON, exit 0. Every
    study runs as one job (destinations.one_job): a model it reads is never one of its outputs."""
    from tests.tiny_models import sum_of_squares_onnx

    path = sum_of_squares_onnx(tmp_path / "m.onnx", ["N", 100, 3])
    before = path.read_bytes()
    assert hltbench(["profile", str(path), "--batch-sizes", "1", "--profile-batch", "1", "--profile-calls", "3",
                     "--min-time", "0.02", "--repeat", "1", "--json", str(path),
                     "--sample", str(tmp_path / "none.root")]) == 4
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the note that --sample is absent
    assert last == (f"hltbench profile --json: {path} is an input file of this job ({path}); writing it would "
                    "replace what the job reads: give the output another name")
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_stdout_full_is_one_line_exit_4_and_the_json_is_written(tmp_path, monkeypatch, capfd) -> None:
    """``hltbench profile m.onnx > /dev/full`` (any study; or a reader gone) ended in a traceback, exit 1: stdout
    is a destination like the others (tools/bench/cli.py). ``>&-`` loses only the printed table: exit 0."""
    k = 8
    w = helper.make_tensor("w", TensorProto.FLOAT, [k, 4], np.ones(k * 4).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="net/encoder/MatMul"),
             helper.make_node("ReduceMin", ["h"], ["y"], name="net/score/Min", keepdims=0, axes=[1])]
    path = _save(tmp_path / "m.onnx", nodes, [w], helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k]),
                 helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]))
    argv = ["profile", str(path), "--batch-sizes", "1", "--profile-batch", "1", "--profile-calls", "2",
            "--min-time", "0.01", "--repeat", "1", "--sample", str(tmp_path / "none.root")]
    with stdout_full(monkeypatch):
        assert hltbench([*argv, "--json", str(tmp_path / "full.json")]) == 4
    assert capfd.readouterr().err.splitlines()[-1] == \
        "stdout: cannot print hltbench profile's results (No space left on device)"
    assert str(path) in json.loads((tmp_path / "full.json").read_text())["models"]
    monkeypatch.setattr("sys.stdout", None)
    assert hltbench([*argv, "--json", str(tmp_path / "closed.json")]) == 0
