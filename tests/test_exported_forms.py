"""Networks in the forms the field's tools export them (docs/your-model.md, "One score per jet" and the
forms table): an ONNX Runtime optimised save with its own ``com.microsoft`` ops, an ``.ort`` file, an old
opset, an autoencoder returning its reconstruction and a classifier returning its class probabilities.
Every model is built here, small; scores are checked against ONNX Runtime run directly, or numpy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference.iree_backend import IreeBackend
from tests.tiny_models import jets, loaded, save_graph

REPO = Path(__file__).resolve().parents[1]
N, F = 100, 3


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.normal(0, 0.05, (N * F, 16)).astype(np.float32), "b1": rng.normal(0, 0.1, 16).astype(np.float32),
            "w2": rng.normal(0, 0.3, (16, N * F)).astype(np.float32)}


def _save(path: Path, nodes: list, outputs: list, weights: dict[str, np.ndarray], opset: int, ir: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", N, F])]
    if ir < 4:  # IR 3 (opset 7 and before): every weight is a graph input too, as torch wrote them
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "net", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reconstruction_onnx(path: Path, opset: int = 17, name: str = "reconstruction") -> Path:
    """An autoencoder as most users export it: jets (N, 100, 3) -> reconstruction (N, 100, 3), no score; its output
    named ``name`` (``score`` too, by a user who meant to score it)."""
    from onnx import TensorProto, helper

    w = _weights() | {"flat": np.array([-1, N * F], np.int64), "back": np.array([-1, N, F], np.int64)}
    nodes = [helper.make_node("Reshape", ["jets", "flat"], ["x"]), helper.make_node("MatMul", ["x", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]), helper.make_node("Tanh", ["h1"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["r"]),
             helper.make_node("Reshape", ["r", "back"], [name])]
    out = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", N, F])
    return _save(path, nodes, [out], w, opset, 8)


def reconstruction_numpy(x: np.ndarray) -> np.ndarray:
    w = _weights()
    return (np.tanh(x.reshape(len(x), -1).astype(np.float64) @ w["w1"] + w["b1"]) @ w["w2"]).reshape(x.shape)


def classifier_onnx(path: Path) -> Path:
    """A tagger as weaver-core exports one: jets -> softmax (N, 2), class probabilities."""
    from onnx import TensorProto, helper

    w = {"flat": np.array([-1, N * F], np.int64), "w1": _weights()["w1"][:, :2] * 0.01}
    nodes = [helper.make_node("Reshape", ["jets", "flat"], ["x"]), helper.make_node("MatMul", ["x", "w1"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["softmax"], axis=1)]
    return _save(path, nodes, [helper.make_tensor_value_info("softmax", TensorProto.FLOAT, ["N", 2])], w, 17, 8)


def old_opset_mlp(path: Path, opset: int) -> Path:
    """An MLP score as an old TorchScript export writes it: Flatten, Gemm, ReduceSum with its axes attribute
    (opset < 13). IREE's compiler refused the opset 7/9 Flatten ('failed to legalize ... onnx.Flatten')."""
    from onnx import TensorProto, helper

    w = _weights()
    w = {"w1": w["w1"], "b1": w["b1"]}
    nodes = [helper.make_node("Flatten", ["jets"], ["x"], axis=1), helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"]),
             helper.make_node("Tanh", ["h0"], ["h"]), helper.make_node("Mul", ["h", "h"], ["sq"]),
             helper.make_node("ReduceSum", ["sq"], ["score"], axes=[1], keepdims=0)]
    return _save(path, nodes, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], w, opset,
                 3 if opset < 9 else 4)


def ort_optimised(source: Path, path: Path) -> Path:
    """``source`` saved by ONNX Runtime after its own graph optimisation, as users save a "faster" model:
    Gemm + Tanh... become ONNX Runtime's own ops (com.microsoft FusedGemm, FusedMatMul)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    domains = {n.domain for n in onnx.load(str(path)).graph.node}
    assert "com.microsoft" in domains, domains  # the form under test: ONNX Runtime's own ops in the file
    return path


def relu_gemm_onnx(path: Path) -> Path:
    """Gemm followed by Relu: ONNX Runtime fuses the pair into com.microsoft.FusedGemm."""
    from onnx import TensorProto, helper

    w = _weights()
    w = {"flat": np.array([-1, N * F], np.int64), "w1": w["w1"], "b1": w["b1"]}
    nodes = [helper.make_node("Reshape", ["jets", "flat"], ["x"]), helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("ReduceSum", ["h"], ["score"], axes=[1], keepdims=0)]
    return _save(path, nodes, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], w, 11, 6)


# ------------------------------------------------------------------ ONNX Runtime's own ops and format
def test_ort_optimised_model_is_refused_by_iree_before_compiling_naming_its_ops(tmp_path, monkeypatch):
    """IREE's importer, handed com.microsoft.FusedGemm, failed on the standard Gemm reading its output, and
    the line named that Gemm: a user looked for a problem in a layer they had not written. Now the ops and
    where they come from, before any compiling; and ``auto`` gives that reason, not "run once with backend:
    iree", a command that only fails."""
    model = ort_optimised(relu_gemm_onnx(tmp_path / "net.onnx"), tmp_path / "net_ort.onnx")
    monkeypatch.setattr("hltrun.modules.inference.iree_backend.compile_bucket",
                        lambda *a, **k: pytest.fail("compiled a model with ONNX Runtime's own ops"))
    options = BackendOptions(engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    with pytest.raises(ModuleError) as err:
        create_backend("iree", model, options).load()
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"iree: model {model} uses op(s) outside the default ONNX domain"), line
    assert "com.microsoft.FusedGemm" in line and "use backend: onnxruntime" in line and "ORT_ENABLE_BASIC" in line
    why = IreeBackend.not_ready_for_auto(model, options)
    assert why is not None and "com.microsoft.FusedGemm" in why and "run once" not in why, why
    assert IreeBackend.not_ready_for_auto(tmp_path / "net.onnx", options).startswith("not compiled")


def test_auto_asks_a_several_input_model_to_be_compiled_on_iree(tmp_path):
    """For ParticleNet's points, features and mask ``auto`` said "iree not compiled for this model here (run once
    with backend: iree)", and that run was refused ("feeds models with one input"); then it said IREE "feeds models
    with one input". IREE feeds every input since 2026-12-07: the run it asks for is one IREE makes
    (tests/test_iree_several_inputs.py)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Concat", ["points", "mask"], ["both"], axis=1),
             helper.make_node("ReduceSum", ["both"], ["score"], axes=[1, 2], keepdims=0)]
    graph = helper.make_graph(nodes, "pn", [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["N", 2, 30]),
                                            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, 30])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])])
    model = tmp_path / "pn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(model))
    why = IreeBackend.not_ready_for_auto(model, BackendOptions(engine_cache=str(tmp_path / "cache")))
    assert why == "not compiled for this model here (run once with backend: iree)", why


def test_the_onnx_runtime_ops_iree_reads_are_left_to_its_compiler():
    """IREE's import lowers a few com.microsoft ops (QLinearAdd, RotaryEmbedding, ...): a model with them is
    compiled, not refused; the others (FusedGemm, and FusedMatMul, which its compiler refused) are named,
    in subgraphs too."""
    from onnx import helper

    from hltrun.modules.inference.iree_backend import unreadable_ops

    body = helper.make_graph([helper.make_node("FusedGemm", ["a", "b"], ["c"], domain="com.microsoft")], "body", [], [])
    graph = helper.make_graph([helper.make_node("QLinearAdd", ["x"], ["y"], domain="com.microsoft"),
                               helper.make_node("FusedMatMul", ["y", "w"], ["z"], domain="com.microsoft"),
                               helper.make_node("If", ["cond"], ["o"], then_branch=body, else_branch=body),
                               helper.make_node("Relu", ["z"], ["r"])], "g", [], [])
    assert unreadable_ops(graph) == ["com.microsoft.FusedGemm", "com.microsoft.FusedMatMul"]


def test_ort_optimised_model_runs_on_onnxruntime_as_exported(tmp_path):
    plain = relu_gemm_onnx(tmp_path / "net.onnx")
    model = ort_optimised(plain, tmp_path / "net_ort.onnx")
    x = jets(5, seed=3)
    w = _weights()
    want = np.maximum(x.reshape(5, -1).astype(np.float64) @ w["w1"] + w["b1"], 0).sum(1)
    np.testing.assert_allclose(loaded("onnxruntime", model).run(x)["score"], want, rtol=1e-5)


@pytest.mark.parametrize("engine", ["torch", "jax"])
def test_ort_optimised_model_on_a_translated_engine_says_where_the_ops_come_from(tmp_path, engine):
    pytest.importorskip(engine)
    model = ort_optimised(relu_gemm_onnx(tmp_path / "net.onnx"), tmp_path / "net_ort.onnx")
    with pytest.raises(ModuleError) as err:
        create_backend(engine, model, BackendOptions()).load()
    line = str(err.value)
    assert "com.microsoft.FusedGemm" in line and "optimized_model_filepath" in line and "ORT_ENABLE_BASIC" in line, line


def _ort_format(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    source = reconstruction_onnx(tmp_path / "src" / "net.onnx")
    subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source),
                    "--output_dir", str(tmp_path / "ort")], check=True, capture_output=True)
    return tmp_path / "ort" / "net.ort"


def test_an_ort_format_file_is_one_line_naming_the_format(tmp_path, capsys):
    """An ``.ort`` file (ONNX Runtime's minimal-build format) without the ``.onnx`` beside it was refused
    with "the onnxruntime backend reads .onnx files": ONNX Runtime reads this file too, so the line sent
    the user looking for a mistake in the name. hltinputs said the declaration goes into "the .onnx file
    beside it, which hltrun reads", of a file that is not there."""
    from hltrun.modules.vae_scorer import resolve_model
    from hltrun.tools.declare_inputs import main as hltinputs

    ort_file = _ort_format(tmp_path)
    assert ort_file.is_file() and not ort_file.with_suffix(".onnx").exists()
    for backend in ("onnxruntime", "iree", "torch"):
        with pytest.raises(ConfigError) as err:
            resolve_model(str(ort_file), backend, "fp32", "data/models")
        assert str(err.value).startswith(f"model {ort_file} is in ONNX Runtime's own .ort format"), err.value
        assert "give the .onnx model it was converted from" in str(err.value)
    assert hltinputs([str(ort_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hltinputs: model {ort_file} is in ONNX Runtime's own .ort format") and "\n" not in err


# ------------------------------------------------------------------ old opsets on IREE
@pytest.mark.slow
@pytest.mark.parametrize("opset", [7, 9])
def test_an_old_opset_export_compiles_on_iree_and_agrees(tmp_path, opset):
    """IREE's compiler refused the opset 7/9 form of Flatten ('failed to legalize operation ...
    onnx.Flatten'), so an old export never ran on IREE; it is now upgraded to opset 17 for IREE's import
    (the file untouched) and scores as ONNX Runtime does."""
    model = old_opset_mlp(tmp_path / f"mlp{opset}.onnx", opset)
    iree = loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    x = jets(3, seed=opset)
    want = loaded("onnxruntime", model).run(x)["score"]
    np.testing.assert_allclose(iree.run(x)["score"], want, rtol=1e-5)


def upsampling_scorer(path: Path, opset: int, mode: str, scales: tuple[float, float] = (2, 2)) -> Path:
    """(N, 100, 3) -> Upsample by ``scales`` along both axes (``mode``) -> a weighted sum per jet: the resampling
    an old convolutional decoder's export has (opset 9 Upsample, opset 10 Resize)."""
    from onnx import TensorProto, helper

    rows, cols = int(N * scales[0]), int(F * scales[1])
    ramp = np.linspace(-1, 1, rows * cols, dtype=np.float32).reshape(1, 1, rows, cols)
    op = "Upsample" if opset < 10 else "Resize"
    given = ["x4", "scales"] if opset < 11 else ["x4", "roi", "scales"]  # Resize-11: X, roi, scales
    nodes = [helper.make_node("Unsqueeze", ["jets"], ["x4"], axes=[1]),
             helper.make_node(op, given, ["up"], mode=mode),
             helper.make_node("Mul", ["up", "ramp"], ["w"]),
             helper.make_node("ReduceSum", ["w"], ["score"], axes=[1, 2, 3], keepdims=0)]
    weights = {"scales": np.array([1, 1, *scales], np.float32), "ramp": ramp,
               **({"roi": np.zeros(0, np.float32)} if opset >= 11 else {})}
    return _save(path, nodes, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], weights, opset, 4)


@pytest.mark.parametrize("opset", [9, 10])
def test_an_old_linear_upsampling_is_refused_on_iree_not_scored_otherwise(tmp_path, opset):
    """ONNX's version converter turns an opset 9 Upsample / opset 10 Resize into a Resize with half_pixel
    coordinates (theirs were asymmetric): upgraded for IREE's import, the bilinear one scored 19 % away from
    ONNX Runtime, silently. Refused in one line, measured (the original and the upgrade on ONNX Runtime) and
    naming the op, before anything compiles; the nearest one, which the upgrade keeps as it is, still compiles
    and agrees."""
    model = upsampling_scorer(tmp_path / f"up{opset}.onnx", opset, "linear")
    with pytest.raises(ModuleError) as refused:
        loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    line = str(refused.value)
    op = "Upsample" if opset < 10 else "Resize"
    assert "\n" not in line and f"opset {opset}" in line and "changes its outputs (output 'score' by" in line, line
    assert f"ops whose meaning changed between opsets: {op})" in line, line
    assert "backend: onnxruntime" in line and not list((tmp_path / "cache").rglob("*.vmfb")), line
    nearest = upsampling_scorer(tmp_path / f"near{opset}.onnx", opset, "nearest")
    x = jets(3, seed=opset)
    want = loaded("onnxruntime", nearest).run(x)["score"]
    got = loaded("iree", nearest, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1).run(x)["score"]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("opset, scales", [(10, (0.25, 1)), (9, (1.25, 1))])
def test_an_old_nearest_resampling_the_upgrade_changes_is_refused_on_iree(tmp_path, opset, scales):
    """Nearest sampling is kept by the upgrade only at some scales (x2, x3, /2): an opset 10 nearest Resize
    that keeps every 4th constituent (scale 0.25) scored 8 % away from ONNX Runtime on IREE, silently, as the
    upgrade's half_pixel coordinates pick other rows than the old op's asymmetric ones (an opset 9 x1.25
    Upsample too). Refused in one line saying by how much the upgrade changes the score, before anything
    compiles."""
    model = upsampling_scorer(tmp_path / f"near{opset}.onnx", opset, "nearest", scales)
    with pytest.raises(ModuleError) as refused:
        loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    line = str(refused.value)
    assert "\n" not in line and f"opset {opset}" in line and "changes its outputs (output 'score' by" in line, line
    assert "backend: onnxruntime" in line and not list((tmp_path / "cache").rglob("*.vmfb")), line


@pytest.mark.parametrize("mode, scales", [("linear", (2, 2)), ("nearest", (0.25, 1))])
def test_an_opset_11_resize_is_upgraded_for_iree_and_agrees(tmp_path, mode, scales):
    """A Resize of opset 11 or 12 states its coordinates (half_pixel by default, as after the upgrade), so the
    upgrade keeps its values: only opset 9 Upsample and opset 10 Resize change. The linear one was refused all
    the same ('upgrading it would change what its Resize (mode linear) computes'), exit 4, though it agrees."""
    model = upsampling_scorer(tmp_path / f"{mode}11.onnx", 11, mode, scales)
    x = jets(3, seed=11)
    want = loaded("onnxruntime", model).run(x)["score"]
    got = loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1).run(x)["score"]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_an_old_upsampling_with_scales_computed_in_the_graph_is_measured_and_agrees(tmp_path):
    """Scales computed in the graph (here 1 * the constant scales) cannot be read off it: they were refused
    unchecked. The upgrade is measured on ONNX Runtime instead: a nearest x2 one keeps its values, so it
    compiles and agrees."""
    import onnx
    from onnx import helper, numpy_helper

    model = upsampling_scorer(tmp_path / "computed9.onnx", 9, "nearest")
    proto = onnx.load(str(model))
    proto.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "one"))
    proto.graph.node.insert(0, helper.make_node("Mul", ["scales_given", "one"], ["computed"]))
    proto.graph.initializer[[t.name for t in proto.graph.initializer].index("scales")].name = "scales_given"
    up = next(n for n in proto.graph.node if n.op_type == "Upsample")
    up.input[1] = "computed"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(model))
    x = jets(3, seed=9)
    want = loaded("onnxruntime", model).run(x)["score"]
    got = loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1).run(x)["score"]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def hardmax_scorer(path: Path, opset: int) -> Path:
    """(N, 100, 3) -> Hardmax over the constituents (axis 1 of 3) -> a weighted sum per jet."""
    from onnx import TensorProto, helper

    ramp = np.linspace(-1, 1, N * F, dtype=np.float32).reshape(1, N, F)
    nodes = [helper.make_node("Hardmax", ["jets"], ["h"], axis=1), helper.make_node("Mul", ["h", "ramp"], ["w"]),
             helper.make_node("ReduceSum", ["w"], ["score"], axes=[1, 2], keepdims=0)]
    return _save(path, nodes, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], {"ramp": ramp},
                 opset, 6)


def test_an_old_hardmax_on_another_axis_than_the_last_is_refused_on_iree(tmp_path):
    """Before opset 13 Hardmax on axis 1 of a 3-D input takes the largest of each jet's 300 values; from 13 on,
    of each constituent's features. ONNX's version converter upgrades the op without that change: upgraded for
    IREE's import, the score was 1.7 (171 %) away from ONNX Runtime's, exit 0. The hand-written table of ops
    the upgrade changes missed it; the upgrade is now measured on ONNX Runtime, and refused in one line."""
    model = hardmax_scorer(tmp_path / "hardmax11.onnx", 11)
    with pytest.raises(ModuleError) as refused:
        loaded("iree", model, engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    line = str(refused.value)
    assert "\n" not in line and "opset 11" in line and "changes its outputs (output 'score' by" in line, line
    assert "ops whose meaning changed between opsets: Hardmax)" in line and "backend: onnxruntime" in line, line
    assert not list((tmp_path / "cache").rglob("*.vmfb")), line


# ------------------------------------------------------------------ one score per jet
def test_a_reconstruction_output_says_how_to_get_a_score(tmp_path):
    model = reconstruction_onnx(tmp_path / "recon.onnx")
    with pytest.raises(ModuleError) as err:
        loaded("onnxruntime", model)
    line = str(err.value)
    assert "\n" not in line and "has shape (1, 100, 3) for 1 jet(s); expected one value per jet" in line, line
    assert "as a reconstruction does: return the score from the network instead" in line
    assert "between the output 'reconstruction' and the input" in line, line  # the output named as one
    assert "append it to this .onnx file with add_score.py" in line, line  # for a user with only the file
    assert "docs/your-model.md, 'One score per jet'" in line


def test_class_probabilities_say_how_to_get_a_score(tmp_path):
    model = classifier_onnx(tmp_path / "pn.onnx")
    with pytest.raises(ModuleError) as err:
        loaded("onnxruntime", model)
    line = str(err.value)
    assert "has shape (1, 2) for 1 jet(s)" in line and "class probabilities" in line and "softmax[:, 1]" in line, line


def _docs_script() -> str:
    """The add_score.py block of docs/your-model.md, as a user copies it."""
    text = (REPO / "docs" / "your-model.md").read_text()
    block, = re.findall(r"```python\n(# add_score\.py:.*?)```", text, re.S)
    return block


@pytest.mark.parametrize("opset, name", [(17, "reconstruction"), (18, "reconstruction"), (17, "score")])
def test_the_documented_script_turns_a_reconstruction_into_its_mean_squared_error(tmp_path, opset, name):
    """The section the line points to works as a user follows it: its script, copied from the page, run on a
    reconstruction-only export; the result runs on the path's engine and scores the mean squared
    difference, computed here with numpy. A reconstruction output named ``score`` made the script write a second
    ``score`` (the checker refused the graph: "'score' has been used as output names multiple times")."""
    (tmp_path / "add_score.py").write_text(_docs_script())
    recon = reconstruction_onnx(tmp_path / "recon.onnx", opset, name)
    subprocess.run([sys.executable, "add_score.py", "recon.onnx", "scored.onnx", "mse"], cwd=tmp_path, check=True,
                   capture_output=True)
    x = jets(7, seed=opset)
    want = np.mean((reconstruction_numpy(x) - x) ** 2, axis=(1, 2))
    np.testing.assert_allclose(loaded("onnxruntime", tmp_path / "scored.onnx").run(x)["score"], want, rtol=1e-4)
    assert recon.is_file()


def test_the_documented_script_takes_one_class_of_a_classifier(tmp_path):
    import onnxruntime as ort

    (tmp_path / "add_score.py").write_text(_docs_script())
    classifier_onnx(tmp_path / "pn.onnx")
    subprocess.run([sys.executable, "add_score.py", "pn.onnx", "scored.onnx", "1"], cwd=tmp_path, check=True,
                   capture_output=True)
    x = jets(6, seed=2)
    session = ort.InferenceSession(str(tmp_path / "pn.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"jets": x})[0]
    np.testing.assert_allclose(loaded("onnxruntime", tmp_path / "scored.onnx").run(x)["score"], probs[:, 1], rtol=1e-6)


def sklearn_like_onnx(path: Path, second: str) -> Path:
    """skl2onnx's output order: an int64 ``label`` first, then the float output: ``probabilities`` (N, 3) of a
    classifier converted without its ZipMap, or an IsolationForest's ``scores`` (N, 1), high for ordinary jets.
    Both computed from the jets' sums per feature."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceSum", ["jets"], ["per_feature"], axes=[1], keepdims=0),
             helper.make_node("ArgMax", ["per_feature"], ["label"], axis=1, keepdims=0)]
    if second == "probabilities":
        nodes.append(helper.make_node("Softmax", ["per_feature"], [second], axis=1))
        shape = ["N", 3]
    else:
        nodes.append(helper.make_node("ReduceMax", ["per_feature"], [second], axes=[1], keepdims=1))
        shape = ["N", 1]
    graph = helper.make_graph(nodes, "sklearn_like", [helper.make_tensor_value_info("jets", TensorProto.FLOAT,
                                                                                     ["N", 100, 3])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                               helper.make_tensor_value_info(second, TensorProto.FLOAT, shape)])
    return save_graph(graph, path, 12)


@pytest.mark.parametrize("second, kind", [("probabilities", "1"), ("scores", "neg")])
def test_the_documented_script_takes_the_float_output_of_a_converted_tree_model(tmp_path, second, kind):
    """skl2onnx writes the int64 label first: the script took ``g.output[0]`` and appended its Gather to the label
    (refused by ONNX Runtime at load), and had no way to turn an IsolationForest's scores, high for ordinary jets,
    into a score the filter cuts from above. It takes the first float output now, and ``neg`` negates it."""
    import onnxruntime as ort

    (tmp_path / "add_score.py").write_text(_docs_script())
    sklearn_like_onnx(tmp_path / "tree.onnx", second)
    subprocess.run([sys.executable, "add_score.py", "tree.onnx", "scored.onnx", kind], cwd=tmp_path, check=True,
                   capture_output=True)
    x = jets(6, seed=3)
    session = ort.InferenceSession(str(tmp_path / "tree.onnx"), providers=["CPUExecutionProvider"])
    floats = session.run([second], {"jets": x})[0]
    want = floats[:, 1] if kind == "1" else -floats[:, 0]
    np.testing.assert_array_equal(loaded("onnxruntime", tmp_path / "scored.onnx").run(x)["score"], want)


@pytest.mark.parametrize("engine", ["onnxruntime", "jax", "torch", "iree"])
def test_an_integer_label_as_the_score_is_refused_the_same_on_every_engine(tmp_path, engine):
    """An int64 label mapped as the score ran on every engine, cast to float32, a cut between its steps keeping no
    chosen fraction of the background; now one line at load naming the float output, from ONNX Runtime's session
    or the graph's output types (the engines that translate or compile the graph), the same line everywhere."""
    pytest.importorskip({"onnxruntime": "onnxruntime", "jax": "jax", "torch": "torch", "iree": "iree.runtime"}[engine])
    model = sklearn_like_onnx(tmp_path / "tree.onnx", "scores")
    with pytest.raises(ModuleError) as refused:
        create_backend(engine, model, BackendOptions(outputs={"score": "label"},
                                                     engine_cache=str(tmp_path / "cache"))).load()
    line = str(refused.value)
    assert line.startswith(f"{engine}: model {model}: output 'label' (the score) is int64, not a floating-point "
                           f"score"), line
    assert "its floating-point outputs: ['scores']" in line and "\n" not in line, line
    kept = loaded(engine, model, outputs={"score": "scores", "n": "label"}, engine_cache=str(tmp_path / "cache"))
    x = jets(3, seed=4)
    out = kept.run(x)  # the float output scores; an integer extra output is kept
    np.testing.assert_allclose(out["score"], x.sum(axis=1).max(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(out["n"], x.sum(axis=1).argmax(axis=1))


@pytest.mark.parametrize("engine", ["onnxruntime", "jax", "torch", "iree"])
def test_an_output_whose_type_the_graph_leaves_out_is_scored_on_every_engine(tmp_path, engine):
    """A graph output without a declared type (onnx-graphsurgeon writes one whose dtype was never set): ONNX Runtime
    infers it and runs the model; the output-type check said it was ``None``, "not a tensor of one value per jet"
    (a ZipMap), and refused it on JAX, PyTorch and IREE, which ran it before the check."""
    from onnx import TensorProto, helper

    pytest.importorskip({"onnxruntime": "onnxruntime", "jax": "jax", "torch": "torch", "iree": "iree.runtime"}[engine])
    nodes = [helper.make_node("Mul", ["jets", "jets"], ["squares"]),
             helper.make_node("ReduceSum", ["squares"], ["score"], axes=[1, 2], keepdims=0)]
    graph = helper.make_graph(nodes, "untyped_output", [helper.make_tensor_value_info("jets", TensorProto.FLOAT,
                                                                                       ["N", 100, 3])],
                              [helper.make_empty_tensor_value_info("score")])
    model = save_graph(graph, tmp_path / "untyped.onnx", 12)
    x = jets(3, seed=5)
    out = loaded(engine, model, engine_cache=str(tmp_path / "cache")).run(x)
    np.testing.assert_allclose(out["score"], (x * x).sum(axis=(1, 2)), rtol=1e-5)
