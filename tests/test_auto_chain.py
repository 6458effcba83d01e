"""``backend: auto`` on a GPU machine hands a model its engine refuses at load to the next usable engine:
TensorRT, then PyTorch, then JAX on the GPU, then ONNX Runtime on the CPU where the job allows it
(``accelerator.auto_next``, the scorer's ``_load_first``). Until 2026-12-07 any refusal went straight to ONNX
Runtime on the CPU, so a several-input model (TensorRT then fed one input) ran on the CPU of a GPU node where
PyTorch or JAX would have run it on the GPU. TensorRT feeds several inputs since 2026-12-07: the refusals here are
its parser's (an op it has no importer for), of the ParticleNet-like model as of a one-input one.

The GPU is faked: TensorRT by the strict fakes of tests/fakes (tests/test_tensorrt_fake.py), PyTorch's and
JAX's GPU checks by fakes keeping ``torch.cuda``'s and ``jax.devices()``' contracts
(tests/test_translated_backends.py); the engines then run on this machine's CPU.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
pytest.importorskip("jax", reason="jax is not installed (pip install -e '.[jax]')")

from onnx import helper  # noqa: E402

from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.inference import accelerator  # noqa: E402
from tests.test_scorer import fake_job, make_scorer  # noqa: E402
from tests.test_tensorrt_fake import _install  # noqa: E402
from tests.test_translated_backends import _FakeCuda, _FakeJax, _jet_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HARDMAX = "In node 5 (parseGraph): UNSUPPORTED_NODE: No importer registered for op: Hardmax"  # TensorRT's words


@pytest.fixture(scope="module")
def particlenet(tmp_path_factory) -> Path:
    from tests.particlenet import particlenet_onnx

    return particlenet_onnx(tmp_path_factory.mktemp("pn") / "pn.onnx")


@pytest.fixture
def gpu(monkeypatch):
    """A GPU node: TensorRT usable (fake TensorRT and CUDA), and what ``engines`` names of torch and jax seeing
    the GPU (their checks faked; the engines run on the CPU here)."""

    def install(engines: tuple[str, ...] = ("torch", "jax")) -> SimpleNamespace:
        fake = _install(monkeypatch, "cuda-python")
        found = {"jax", "jax_plugins.xla_cuda13", "torch"}
        monkeypatch.setattr(accelerator, "_find", lambda name: name in found)
        monkeypatch.setattr(accelerator, "_torch_is_cuda_build", lambda: True)
        monkeypatch.setattr(accelerator, "_load_torch",
                            lambda: SimpleNamespace(cuda=_FakeCuda(1 if "torch" in engines else 0)))
        monkeypatch.setattr(accelerator, "_load_jax", lambda: _FakeJax(1 if "jax" in engines else 0))
        accelerator.jax_gpu_status.cache_clear()
        accelerator.torch_gpu_status.cache_clear()
        return fake

    yield install
    for status in (accelerator.tensorrt_gpu_status, accelerator.jax_gpu_status, accelerator.torch_gpu_status):
        status.cache_clear()


def _scorer(model: Path, tmp_path: Path, accelerators=("*",), **params):
    scorer = make_scorer(model=str(model), backend="auto", max_batch=4, engine_cache=str(tmp_path / "engines"),
                         **params)
    job = fake_job(accelerators)
    scorer.begin_job(job)
    return scorer, job.channels.facts()["accelerators"]["vae"]


REFUSED = f"tensorrt cannot run this model: cannot parse ONNX model {{model}}: {HARDMAX}"


@pytest.mark.parametrize("engines, runs, says", [
    (("torch", "jax"), "torch", f"auto: PyTorch on NVIDIA H100 80GB HBM3, CUDA graphs per batch bucket ({REFUSED})"),
    (("jax",), "jax", f"auto: JAX on NVIDIA H100 80GB HBM3 ({REFUSED}; PyTorch GPU not used: PyTorch sees no CUDA "
                      f"GPU)"),
])
def test_a_several_input_model_goes_from_tensorrt_to_the_next_gpu_engine(gpu, particlenet, tmp_path, engines, runs,
                                                                         says):
    """TensorRT usable, a ParticleNet-like model (points, features, mask) its parser refuses: the next usable GPU
    engine runs it (it ran on ONNX Runtime on the CPU until 2026-12-07), and the reason says why TensorRT was passed
    over, in the first clause of its refusal."""
    fake = gpu(engines)
    fake.ctl.fail_parse = HARDMAX
    assert accelerator.choose_backend("auto", ["*"]) == ("tensorrt", "auto: TensorRT on Fake GPU 80GB")
    scorer, fact = _scorer(particlenet, tmp_path)
    assert scorer.backend_name == runs == fact["backend"] and scorer.backend.name == runs
    assert scorer.reason == says.format(model=particlenet) == fact["reason"]
    scorer.end_job()


def test_tensorrt_runs_a_several_input_model_itself(gpu, particlenet, tmp_path):
    """The same model where TensorRT's parser takes it: TensorRT runs it, every input in its profile (it was
    refused for its three inputs until 2026-12-07, and ran on the next engine)."""
    fake = gpu()
    scorer, fact = _scorer(particlenet, tmp_path)
    assert scorer.backend_name == "tensorrt" == fact["backend"] and scorer.reason == "auto: TensorRT on Fake GPU 80GB"
    assert sorted(fake.ctl.builds[-1]["profiles"][0]) == ["features", "mask", "points"]
    scorer.end_job()


def test_an_op_tensorrts_parser_lacks_goes_to_pytorch_then_every_refusal_is_said(gpu, tmp_path):
    """A model with an op TensorRT's parser does not import: PyTorch runs it. A model with an op neither the parser
    nor the ONNX translator has: PyTorch and JAX refuse it too, and ONNX Runtime runs it on the CPU, the reason
    naming each engine passed over."""
    fake = gpu()
    fake.ctl.fail_parse = HARDMAX
    plain = _jet_model(tmp_path / "plain.onnx")
    scorer, _ = _scorer(plain, tmp_path)
    assert scorer.backend_name == "torch"
    assert scorer.reason.endswith(f"(tensorrt cannot run this model: cannot parse ONNX model {plain}: {HARDMAX})")
    scorer.end_job()
    odd = _jet_model(tmp_path / "odd.onnx", extra_node=helper.make_node("Hardmax", ["jets"], ["hs"]))
    scorer, _ = _scorer(odd, tmp_path)
    assert scorer.backend_name == "onnxruntime"
    said = scorer.reason.removeprefix("auto: ONNX Runtime on CPU (").split("; ")
    assert [s.split(" cannot run this model: ")[0] for s in said] == ["tensorrt", "torch", "jax"], said
    assert all("Hardmax" in s for s in said) and str(odd) not in said[1], said
    scorer.end_job()


def test_without_the_cpu_the_last_refusal_ends_the_job_naming_the_others(gpu, tmp_path):
    """``options.accelerators: [gpu-nvidia]``: no engine left after JAX; the job ends at begin_job in one line with
    JAX's refusal and the engines auto tried before it. An explicit engine is never replaced."""
    fake = gpu()
    fake.ctl.fail_parse = HARDMAX
    odd = _jet_model(tmp_path / "odd.onnx", extra_node=helper.make_node("Hardmax", ["jets"], ["hs"]))
    with pytest.raises(ModuleError) as info:
        _scorer(odd, tmp_path, accelerators=["gpu-nvidia"])
    msg = str(info.value)
    assert msg.startswith("modules.vae: jax: model ") and "Hardmax" in msg and "\n" not in msg, msg
    assert "(auto tried before it: tensorrt: cannot parse ONNX model" in msg and "; torch: uses ONNX op(s)" in msg, msg
    with pytest.raises(ModuleError, match=r"^modules.vae: tensorrt: cannot parse ONNX model .*pn.onnx") as info:
        make_scorer(model=str(_several(tmp_path)), backend="tensorrt", engine_cache=str(tmp_path)).begin_job(fake_job())
    assert "auto tried" not in str(info.value)


def _several(tmp_path: Path) -> Path:
    from tests.particlenet import particlenet_onnx

    path = tmp_path / "pn.onnx"
    return path if path.exists() else particlenet_onnx(path)


def test_the_shipped_path_runs_a_several_input_model_on_pytorch_behind_tensorrt(gpu, particlenet, tmp_path, capfd):
    """``hltrun configs/path.yaml modules.vae.model=pn.onnx`` on a GPU node with a TensorRT whose parser refuses it:
    PyTorch runs it, the log and the job report say why TensorRT did not."""
    from hltrun.framework.cli import main as hltrun

    gpu().ctl.fail_parse = HARDMAX
    rc = hltrun([str(REPO / "configs" / "path.yaml"), "-n", "5", f"modules.vae.model={particlenet}",
                 "modules.vae.max_batch=4", f"modules.vae.engine_cache={tmp_path / 'engines'}",
                 "modules.anomalyFilter.threshold=1", f"modules.out.file={tmp_path / 'out.root'}",
                 "--report-dir", str(tmp_path / "rep")])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "modules.vae: auto: PyTorch on NVIDIA H100 80GB HBM3" in err and "tensorrt cannot run this model" in err
    vae = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]["module_summaries"]["vae"]
    assert vae["backend"]["backend"] == "torch" and "tensorrt cannot run this model: cannot parse" in vae["choice"]


def test_a_refusal_is_asked_once_per_label_not_once_per_stream(gpu, particlenet, tmp_path, monkeypatch):
    """Four streams (four instances of one label sharing its context): TensorRT is offered the several-input model
    once, by the first instance; the others start where that walk ended (every stream runs the same engine, with
    the same reason), instead of parsing the model again each (a real TensorRT's parse, or a build that fails after
    minutes, once per stream), and a refusal seen by one stream cannot leave another stream on another engine."""
    from hltrun.modules.inference import tensorrt_backend

    gpu().ctl.fail_parse = HARDMAX
    offered: list[str] = []
    build = tensorrt_backend.build_serialized_engine

    def counted(trt, logger, onnx_path, settings):
        offered.append(str(onnx_path))
        return build(trt, logger, onnx_path, settings)

    monkeypatch.setattr(tensorrt_backend, "build_serialized_engine", counted)
    job = fake_job()
    scorers = [make_scorer(model=str(particlenet), backend="auto", max_batch=4,
                           engine_cache=str(tmp_path / "engines")) for _ in range(4)]
    for scorer in scorers:
        scorer.begin_job(job)
    assert offered == [str(particlenet)]
    assert {(s.backend_name, s.reason) for s in scorers} == {(scorers[0].backend_name, scorers[0].reason)}
    assert scorers[0].backend_name == "torch" and "tensorrt cannot run this model: cannot parse" in scorers[0].reason
    for scorer in scorers:
        scorer.end_job()


def _lone_jet_branch(path: Path) -> Path:
    """A scripted network that treats a lone jet apart (``if x.size(0) == 1``): an If on the batch size, its
    several-jet branch pooling with ``ceil_mode=1``, which ONNX Runtime runs and hltrun's ONNX translator does not.
    PyTorch and JAX load it (their batch-1 trace takes the lone-jet branch) and fail at warm-up, on the bucket of
    2 jets."""
    from onnx import TensorProto, checker, save

    def const(name: str, values: list[int], dims: list[int]) -> object:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, dims, values))

    out = {n: [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"])] for n in ("lone", "many")}
    lone = helper.make_graph([helper.make_node("ReduceSum", ["sq", "axes"], ["lone"], keepdims=0)], "lone", [],
                             out["lone"])
    many = helper.make_graph([helper.make_node("Transpose", ["sq"], ["t"], perm=[0, 2, 1]),
                              helper.make_node("MaxPool", ["t"], ["p"], kernel_shape=[3], strides=[2], ceil_mode=1),
                              helper.make_node("ReduceSum", ["p", "axes"], ["many"], keepdims=0)], "many", [],
                             out["many"])
    nodes = [const("axes", [1, 2], [2]), const("zero", [0], [1]), const("one", [1], []),
             helper.make_node("Mul", ["jets", "jets"], ["sq"]), helper.make_node("Shape", ["jets"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["n1"], axis=0), helper.make_node("Squeeze", ["n1"], ["n"]),
             helper.make_node("Equal", ["n", "one"], ["is_lone"]),
             helper.make_node("If", ["is_lone"], ["score"], then_branch=lone, else_branch=many)]
    graph = helper.make_graph(nodes, "lone_jet", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, str(path))
    return path


@pytest.fixture
def no_tensorrt(gpu, monkeypatch):
    """A GPU node where PyTorch and JAX see the GPU and TensorRT is not usable: ``auto`` starts with PyTorch."""
    def install(engines: tuple[str, ...] = ("torch", "jax")) -> None:
        gpu(engines)
        monkeypatch.setattr(accelerator, "tensorrt_gpu_status", functools.lru_cache(maxsize=1)(
            lambda: accelerator.GpuStatus(False, "no TensorRT on this test's GPU node")))
    return install


def _spy(monkeypatch, cls: type, method: str, calls: list[str]) -> None:
    """Record ``cls.method``'s calls (the engine's name) in ``calls``, then run it."""
    real = getattr(cls, method)

    def spied(self, *args, **kwargs):
        calls.append(f"{self.name}.{method}")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, spied)


def test_an_engine_that_fails_its_warm_up_hands_the_model_on_released(no_tensorrt, tmp_path, monkeypatch, caplog):
    """A model PyTorch and JAX load but fail to warm up (the several-jet branch of a lone-jet special case): with
    ``auto`` each hands it on, closed before the next engine loads, and ONNX Runtime runs it, the reason (logged
    once, and in the job's facts) naming why each was passed over. Until 2026-12-07 PyTorch's warm-up failure
    ended the job with exit 4, where ONNX Runtime runs the model."""
    import numpy as np

    from hltrun.modules.inference.jax_backend import JaxBackend
    from hltrun.modules.inference.torch_backend import TorchBackend

    no_tensorrt()
    model = _lone_jet_branch(tmp_path / "lone_jet.onnx")
    calls: list[str] = []
    for cls in (TorchBackend, JaxBackend):
        for method in ("load", "warm_up", "close"):
            _spy(monkeypatch, cls, method, calls)
    with caplog.at_level("WARNING", logger="hltrun.vae"):
        scorer, fact = _scorer(model, tmp_path)
    assert scorer.backend_name == "onnxruntime" == fact["backend"] and scorer.backend.name == "onnxruntime"
    assert calls == ["torch.load", "torch.warm_up", "torch.close", "jax.load", "jax.warm_up", "jax.close"], calls
    said = scorer.reason.removeprefix("auto: ONNX Runtime on CPU (").removesuffix(")").split("; ")
    assert said[0] == "TensorRT not used: no TensorRT on this test's GPU node", said
    assert [s.split(" cannot run this model: ")[0] for s in said[1:]] == ["torch", "jax"], said
    assert all("ceil_mode=1" in s and str(model) not in s for s in said[1:]), said
    assert scorer.reason == fact["reason"]
    warned = [r.getMessage() for r in caplog.records if "cannot run this model" in r.getMessage()]
    assert warned and all("\n" not in w for w in warned), warned
    x = np.random.default_rng(0).random((3, 100, 3), dtype=np.float32)
    score = scorer.backend.run(x)["score"]  # the several-jet branch: every jet's score
    assert score.shape == (3,) and np.isfinite(score).all() and (score > 0).all(), score
    scorer.end_job()


def test_a_warm_up_failure_is_met_once_per_label_and_ends_an_explicit_engine(no_tensorrt, tmp_path, monkeypatch):
    """Four streams: PyTorch and JAX are warmed up by the first instance only; the others start on ONNX Runtime
    with the same reason. ``backend: torch`` named explicitly is never replaced: its warm-up failure ends the job in
    one line naming the module, the engine and the node."""
    from hltrun.modules.inference.jax_backend import JaxBackend
    from hltrun.modules.inference.torch_backend import TorchBackend

    no_tensorrt()
    model = _lone_jet_branch(tmp_path / "lone_jet.onnx")
    calls: list[str] = []
    for cls in (TorchBackend, JaxBackend):
        _spy(monkeypatch, cls, "warm_up", calls)
    job = fake_job()
    scorers = [make_scorer(model=str(model), backend="auto", max_batch=4) for _ in range(4)]
    for scorer in scorers:
        scorer.begin_job(job)
    assert calls == ["torch.warm_up", "jax.warm_up"], calls
    assert {(s.backend_name, s.reason) for s in scorers} == {("onnxruntime", scorers[0].reason)}
    for scorer in scorers:
        scorer.end_job()
    with pytest.raises(ModuleError) as info:
        make_scorer(model=str(model), backend="torch", max_batch=4).begin_job(fake_job())
    msg = str(info.value)
    assert msg.startswith(f"modules.vae: torch: model {model}") and "ceil_mode=1" in msg and "\n" not in msg, msg
    assert "auto tried" not in msg


def test_a_precision_the_next_engine_does_not_run_is_a_configuration_error_as_for_the_first(gpu, tmp_path):
    """``precision: fp16`` (TensorRT's): TensorRT refuses the model at load and hands it on to PyTorch, which runs
    fp32 only. That is the configuration error the first engine's refusal is (exit 2, README's table: a precision
    the engine does not run), naming the engine auto chose and why; it was PyTorch's load refusal, exit 4."""
    from hltrun.framework.errors import ConfigError

    fake = gpu()
    fake.ctl.fail_parse = HARDMAX
    plain = _jet_model(tmp_path / "plain.onnx")
    with pytest.raises(ConfigError) as first:  # the first engine auto chose on a CPU-only job: ONNX Runtime
        _scorer(plain, tmp_path, accelerators=["cpu"], precision="fp16")
    with pytest.raises(ConfigError) as handed:
        _scorer(plain, tmp_path, precision="fp16")
    assert first.value.exit_code == handed.value.exit_code == 2
    assert str(first.value).startswith("modules.vae.precision: onnxruntime: precision 'fp16' not supported")
    msg = str(handed.value)
    assert msg.startswith("modules.vae.precision: torch: precision 'fp16' not supported (fp32 only) (backend: auto "
                          "chose torch: PyTorch on NVIDIA H100 80GB HBM3"), msg
    assert "(tensorrt cannot run this model: cannot parse ONNX model" in msg and "\n" not in msg, msg


def test_an_engine_auto_timed_on_the_cpu_is_named_when_it_hands_the_model_on(tmp_path):
    """On the CPU ``auto`` may choose IREE or TFLite by timing them (``autoselect``), outside the order TensorRT,
    PyTorch, JAX, ONNX Runtime. Should the one it chose fail its warm-up on a batch size it was not timed at, ONNX
    Runtime runs the model and its reason names that engine and why; it said only "auto: ONNX Runtime on CPU"."""
    model = tmp_path / "m.onnx"
    refusal = f"iree: model {model} failed its warm-up on a batch of 9 jet(s): RuntimeError: Error invoking function"
    engine, reason = accelerator.auto_next(["cpu"], [("iree", refusal)], model)
    assert engine == "onnxruntime"
    assert reason == ("auto: ONNX Runtime on CPU (iree cannot run this model: failed its warm-up on a batch of 9 "
                      "jet(s): RuntimeError: Error invoking function; TensorRT not used: options.accelerators ['cpu'] "
                      "excludes gpu-nvidia)"), reason


def test_a_later_streams_warm_up_failure_does_not_leave_it_on_another_engine(no_tensorrt, tmp_path, monkeypatch):
    """Two streams: the first warms PyTorch up, the second's warm-up fails alone (a GPU's memory held by the first
    stream's CUDA graphs: the failure is made here, the GPU being faked). That stream handed the model on to JAX
    while the first ran PyTorch: one label on two engines, its times mixed, and the job's facts naming the last
    stream's engine. Now the second stream's failure ends the job in one line naming the engine the first runs."""
    from hltrun.modules.inference.torch_backend import TorchBackend

    no_tensorrt()
    model = _jet_model(tmp_path / "plain.onnx")
    real, calls = TorchBackend.warm_up, []

    def warm_up(self, *args, **kwargs):
        calls.append(self.name)
        if len(calls) > 1:
            raise ModuleError(f"torch: model {model} failed its warm-up on 4 jets: CUDA out of memory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TorchBackend, "warm_up", warm_up)
    job = fake_job()
    first = make_scorer(model=str(model), backend="auto", max_batch=4)
    first.begin_job(job)
    assert first.backend_name == "torch"
    second = make_scorer(model=str(model), backend="auto", max_batch=4)
    with pytest.raises(ModuleError) as info:
        second.begin_job(job)
    msg = str(info.value)
    assert msg.startswith("modules.vae: torch: ") and "CUDA out of memory" in msg and "\n" not in msg, msg
    assert "first stream runs torch" in msg, msg
    assert job.channels.facts()["accelerators"]["vae"]["backend"] == "torch"
    first.end_job()
