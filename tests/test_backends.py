"""Inference backends: interface, registry, lazy imports, agreement, bad input, accelerator choice.

Most tests use the tiny Keras/ONNX model of tests/tiny_models.py (same input/outputs as the shipped
VAEs) so they run in seconds; the agreement test on the shipped samples runs when data/models has the
trained models. The scorer module is tested in test_scorer.py, TensorRT against a strict fake in
test_tensorrt_fake.py and on real hardware in test_gpu.py, the tools in test_tools.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.modules.inference import backend_names, BackendOptions, InferenceBackend, backend_class, create_backend
from hltrun.modules.inference.accelerator import choose_backend, jax_gpu_status, tensorrt_gpu_status
from hltrun.modules.inference.base import check_input_shape


pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"
SAMPLES = sorted((REPO / "data").glob("*.root"))
TRT = tensorrt_gpu_status()
needs_trt = pytest.mark.skipif(not TRT.usable, reason=f"TensorRT tests need tensorrt + an NVIDIA GPU: {TRT.reason}")


from tests.agreement import assert_agree, shipped_jets
from tests.tiny_models import jets, loaded


# ---------------------------------------------------------------------- registry and interface
def test_registry_names_and_unknown():
    assert set(backend_names()) == {"tensorflow", "onnxruntime", "tensorrt", "jax", "torch", "iree", "tflite", "auto"}
    for name in ("tensorflow", "onnxruntime", "tensorrt", "jax", "torch"):
        cls = backend_class(name)
        assert issubclass(cls, InferenceBackend) and cls.name == name
    with pytest.raises(ConfigError, match="unknown backend type 'tensorfow'; did you mean tensorflow"):
        backend_class("tensorfow")
    with pytest.raises(ConfigError, match="choose_backend"):
        backend_class("auto")


@pytest.mark.parametrize("name,attr,opts", [("onnxruntime", "onnx", {}), ("onnxruntime", "onnx", {"io_binding": True}),
                                            ("tensorflow", "keras", {"mode": "function"})])
def test_interface_and_describe(tiny, name, attr, opts):
    backend = loaded(name, getattr(tiny, attr), **opts)
    desc = backend.describe()
    assert desc["backend"] == name and desc["device"] == "cpu" and desc["precision"] == "fp32"
    assert desc["versions"] and desc["threads"]
    out = backend.run(jets(9))
    assert set(out) == {"score", "kl", "valid"}
    assert out["score"].shape == (9,) and out["score"].dtype == np.float32 and out["valid"].all()


def test_onnxruntime_job_never_imports_tensorflow(tiny):
    """A whole scorer begin_job + produce on ONNX Runtime, in a fresh interpreter."""
    code = textwrap.dedent(f"""
        import sys, types, numpy as np
        import hltrun.modules
        from hltrun.modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters
        from hltrun.modules.products import JetBatch
        from hltrun.framework.context import ModuleContext
        job = ModuleContext("vae")
        scorer = VAEAnomalyScorer("vae", VAEAnomalyScorerParameters(model={str(tiny.onnx)!r}, backend="onnxruntime"))
        scorer.begin_job(job)
        x = np.zeros((3, 100, 3), np.float32); x[:, :5, 2] = 1.0
        class Ev:
            def get(self, tag): return JetBatch(x, x[..., 2] > 0, np.ones(3), True)
            def put(self, p): self.p = p
        ev = Ev(); scorer.produce(ev)
        assert ev.p.score.shape == (3,)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorrt", "tf2onnx", "jax", "torch"))
        print("BAD", bad)
        sys.exit(1 if bad else 0)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------------- agreement
@pytest.mark.slow
def test_tensorflow_modes_agree_with_onnxruntime(tiny):
    x = jets(64, seed=3)
    ref = loaded("onnxruntime", tiny.onnx).run(x)
    threshold = float(np.quantile(ref["score"], 0.9))
    for mode in ("predict", "eager", "function", "xla"):
        got = loaded("tensorflow", tiny.keras, mode=mode).run(x)
        for key in ("score", "kl"):
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-7, err_msg=f"{mode} {key}")
        assert np.array_equal(got["score"] > threshold, ref["score"] > threshold), mode


def test_io_binding_and_optimisation_levels_agree(tiny):
    x = jets(16, seed=4)
    ref = loaded("onnxruntime", tiny.onnx).run(x)["score"]
    for opts in ({"io_binding": True}, {"graph_optimization": "disable"}, {"graph_optimization": "basic"}):
        np.testing.assert_allclose(loaded("onnxruntime", tiny.onnx, **opts).run(x)["score"], ref, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_shipped_models_agree_on_samples(model):
    """TF (function mode) and ONNX Runtime fp32 on the shipped samples: scores within a relative 1e-4
    per jet (the agreement criterion of issue 8; it was 1e-5 with the exact nearest-neighbour
    recompute), identical trigger decisions at the model card's thresholds and at score quantiles
    (there for jets further than the tolerance from the cut)."""
    missing = [p.name for p in (MODELS / f"{model}.keras", MODELS / f"{model}.onnx") if not p.exists()]
    if missing or not SAMPLES:
        pytest.skip(f"trained model files {missing} not in data/models" if missing else "no data/*.root samples")
    x = shipped_jets()
    ort_out = loaded("onnxruntime", MODELS / f"{model}.onnx").run(x)
    tf_out = loaded("tensorflow", MODELS / f"{model}.keras").run(x)
    assert_agree(model, ort_out, tf_out, f"{model} tensorflow vs onnxruntime")


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name,suffix", [("onnxruntime", ".onnx"), ("tensorflow", ".keras"), ("tensorrt", ".onnx")])
def test_missing_model_file(tmp_path, name, suffix):
    path = tmp_path / f"nope{suffix}"
    with pytest.raises(ModuleError, match=f"model file not found: {path}"):
        create_backend(name, path).load()


@pytest.mark.parametrize("name,suffix", [("onnxruntime", ".onnx"), ("tensorflow", ".keras")])
def test_unreadable_or_corrupt_model_file(tmp_path, name, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(ModuleError, match=f"{empty} is empty"):
        create_backend(name, empty).load()
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"\x00not a model\xff" * 10)
    with pytest.raises(ModuleError, match=f"cannot load model {garbage}") as err:
        create_backend(name, garbage).load()
    assert "\n" not in str(err.value)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / f"locked{suffix}"
        locked.write_bytes(b"x")
        locked.chmod(0)
        with pytest.raises(ModuleError, match="not readable"):
            create_backend(name, locked).load()


def test_wrong_suffix_is_named(tiny):
    with pytest.raises(ModuleError, match=r"reads \.onnx files"):
        create_backend("onnxruntime", tiny.keras).load()


@pytest.mark.parametrize("name,attr", [("onnxruntime", "wrong_onnx"), ("tensorflow", "wrong_keras")])
def test_wrong_input_shape(tiny, name, attr):
    path = getattr(tiny, attr)
    with pytest.raises(ModuleError, match=rf"model {path} takes input .*of shape \(N, 50, 3\)"):
        create_backend(name, path).load()


def test_input_shape_check_accepts_symbolic_batch():
    check_input_shape(("N", 100, 3), Path("m.onnx"))
    check_input_shape((-1, 100, 3), Path("m.onnx"))
    with pytest.raises(ModuleError, match=r"\(N, 100\)"):
        check_input_shape((None, 100), Path("m.onnx"))


@pytest.mark.parametrize("name,attr", [("onnxruntime", "onnx"), ("tensorflow", "keras")])
def test_nonfinite_jets_get_nan_and_leave_others_alone(tiny, name, attr):
    backend = loaded(name, getattr(tiny, attr))
    x = jets(6, seed=5)
    clean = backend.run(x)
    x[1, 3, 0], x[4, 0, 2] = np.nan, np.inf
    out = backend.run(x)
    assert out["valid"].tolist() == [True, False, True, True, False, True]
    assert np.isnan(out["score"][[1, 4]]).all() and np.isnan(out["kl"][[1, 4]]).all()
    ok = out["valid"]
    np.testing.assert_allclose(out["score"][ok], clean["score"][ok], rtol=1e-6)
    assert backend.counters["nonfinite_jets"] == 2
    assert not (out["score"] > 0.0)[~ok].any()  # NaN never passes a threshold


def test_empty_batch_does_not_call_framework(tiny, monkeypatch):
    backend = loaded("onnxruntime", tiny.onnx)
    monkeypatch.setattr(backend, "_run", lambda x: pytest.fail("framework called for an empty batch"))
    out = backend.run(np.zeros((0, 100, 3), np.float32))
    assert all(len(v) == 0 for v in out.values()) and backend.counters["empty_batches"] == 1


def test_bad_batch_shape_is_one_line(tiny):
    backend = loaded("onnxruntime", tiny.onnx)
    with pytest.raises(ModuleError, match=r"batch of shape \(2, 50, 3\)"):
        backend.run(np.zeros((2, 50, 3), np.float32))


def test_unknown_provider_is_an_error_not_a_fallback(tiny):
    with pytest.raises(ConfigError, match="CUDAExecutionProvider.*not available"):
        create_backend("onnxruntime", tiny.onnx, BackendOptions(providers=["cuda"])).load()


# ---------------------------------------------------------------------- accelerator choice
@pytest.mark.skipif(TRT.usable, reason="this machine has a usable TensorRT GPU")
def test_tensorrt_without_gpu_is_a_clear_error(tiny):
    with pytest.raises(ModuleError, match="tensorrt requested but .*backend: auto"):
        choose_backend("tensorrt", ["*"])
    with pytest.raises(ModuleError, match=f"cannot run {tiny.onnx} on TensorRT|tensorrt"):
        create_backend("tensorrt", tiny.onnx).load()


@pytest.mark.skipif(TRT.usable or jax_gpu_status().usable, reason="this machine has a GPU auto would use")
def test_auto_falls_back_to_cpu_loudly_and_honours_accelerators():
    name, reason = choose_backend("auto", ["*"])
    assert name == "onnxruntime" and "TensorRT not used" in reason
    with pytest.raises(ModuleError, match="needs a GPU"):
        choose_backend("auto", ["gpu-nvidia"])


def test_accelerators_list_forbids_backends():
    with pytest.raises(ConfigError, match=r"tensorrt runs on gpu-nvidia.*\['cpu'\]"):
        choose_backend("tensorrt", ["cpu"])
    with pytest.raises(ConfigError, match=r"onnxruntime runs on cpu.*\['gpu-nvidia'\]"):
        choose_backend("onnxruntime", ["gpu-nvidia"])
    assert choose_backend("auto", ["cpu"])[0] == "onnxruntime"
    assert choose_backend("onnxruntime", ["gpu-nvidia"], ["cuda"])[0] == "onnxruntime"


# ---------------------------------------------------------------------- training-mode exports
def _training_mode_model(path: Path, op: str) -> Path:
    """An (N, 100, 3) -> score model with a BatchNormalization (training_mode=1; at opset 12, its
    statistics' outputs) or a Dropout whose training_mode input is a constant true: what
    torch.onnx.export(..., training=TrainingMode.TRAINING) writes for a network with BatchNorm1d and Dropout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1], np.int64), "ax")]
    opset = 17
    if op.startswith("BatchNormalization"):
        inits += [numpy_helper.from_array(np.full(100, v, np.float32), n)
                  for n, v in (("g", 1.0), ("b", 0.0), ("m", 0.1), ("v", 2.0))]
        if op == "BatchNormalization-opset12":  # training shown by the statistics' outputs (torch, opset 9-13)
            opset, op = 12, "BatchNormalization"
            node = helper.make_node(op, ["jets", "g", "b", "m", "v"], ["h", "rm", "rv", "sm", "sv"])
        else:
            node = helper.make_node(op, ["jets", "g", "b", "m", "v"], ["h", "run_mean", "run_var"], training_mode=1)
    else:
        inits += [numpy_helper.from_array(np.array(0.3, np.float32), "r"), numpy_helper.from_array(np.array(True), "t")]
        node = helper.make_node(op, ["jets", "r", "t"], ["h"])
    axes = {"axes": [1]} if opset < 13 else {}  # an attribute before opset 13, the input "ax" since
    reduce = [helper.make_node("ReduceSum", [x] + ([] if axes else ["ax"]), [y], keepdims=0, **axes)
              for x, y in (("h", "s"), ("s", "score"))]
    graph = helper.make_graph([node, *reduce], "g",
                              [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("op", ["BatchNormalization", "BatchNormalization-opset12", "Dropout"])
@pytest.mark.parametrize("name", ["onnxruntime", "iree", "jax", "torch"])
def test_training_mode_export_is_refused_on_every_onnx_engine(tmp_path, name, op):
    """A network exported in training mode normalises with each call's batch statistics (a jet's score
    depends on the other jets of the call: ONNX Runtime and IREE ran it silently, IREE's padded
    batches differing from ONNX Runtime's by 100 %) or drops activations at random (a jet's score changes
    from call to call): refused at load, one line naming the node, on every engine that reads ONNX."""
    path = _training_mode_model(tmp_path / f"{op}.onnx", op)
    with pytest.raises(ModuleError) as info:
        create_backend(name, path).load()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{name}: model {path}: {op.split('-')[0]} node 'h' is in training mode")
    assert "eval mode" in msg


def test_eval_mode_dropout_and_batch_norm_still_run(tmp_path):
    """The check refuses training mode only: a Dropout without training_mode, or with a constant false
    one, and an inference BatchNormalization load and run on ONNX Runtime."""
    import onnx
    from onnx import numpy_helper

    for op in ("BatchNormalization", "Dropout"):
        path = _training_mode_model(tmp_path / f"{op}.onnx", op)
        model = onnx.load(str(path))
        node = model.graph.node[0]
        if op == "BatchNormalization":
            node.attribute[0].i = 0
            del node.output[1:]  # the running statistics are outputs in training mode only
        else:
            model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array(False), "t"))
        onnx.save(model, str(path))
        backend = create_backend("onnxruntime", path).load()
        assert backend.run(jets(3))["score"].shape == (3,)
