"""Inference backends and the VAE scorer: interface, registry, lazy imports, agreement, bad input.

Most tests use a tiny Keras model built here (same input/outputs as the shipped VAEs) so they run
in seconds on any checkout; the agreement test on the shipped samples runs when data/models has
the trained models. TensorRT tests run only where tensorrt and an NVIDIA GPU exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from framework.errors import ConfigError, ModuleError
from modules.inference import BACKEND_NAMES, BackendOptions, InferenceBackend, backend_class, create_backend
from modules.inference.accelerator import choose_backend, tensorrt_gpu_status
from modules.inference.base import check_input_shape
from modules.products import JetBatch, JetScores

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"
SAMPLES = sorted((REPO / "data").glob("*.root"))
TRT = tensorrt_gpu_status()
needs_trt = pytest.mark.skipif(not TRT.usable, reason=f"TensorRT tests need tensorrt + an NVIDIA GPU: {TRT.reason}")


# ---------------------------------------------------------------------- tiny model fixtures
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

    tf.config.threading.set_intra_op_parallelism_threads(1)  # before TF's first op, as a job does
    tf.config.threading.set_inter_op_parallelism_threads(1)
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


# ---------------------------------------------------------------------- registry and interface
def test_registry_names_and_unknown():
    assert set(BACKEND_NAMES) == {"tensorflow", "onnxruntime", "tensorrt", "auto"}
    for name in ("tensorflow", "onnxruntime", "tensorrt"):
        cls = backend_class(name)
        assert issubclass(cls, InferenceBackend) and cls.name == name
    with pytest.raises(ConfigError, match="unknown inference backend 'tensorfow'"):
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
        import modules
        from modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters
        from modules.products import JetBatch
        job = types.SimpleNamespace(options=types.SimpleNamespace(accelerators=["*"]), facts={{}},
                                    config=types.SimpleNamespace(modules={{}}))
        scorer = VAEAnomalyScorer("vae", VAEAnomalyScorerParameters(model={str(tiny.onnx)!r}, backend="onnxruntime"))
        scorer.begin_job(job)
        x = np.zeros((3, 100, 3), np.float32); x[:, :5, 2] = 1.0
        class Ev:
            def get(self, tag): return JetBatch(x, x[..., 2] > 0, np.ones(3), True)
            def put(self, p): self.p = p
        ev = Ev(); scorer.produce(ev)
        assert ev.p.score.shape == (3,)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorrt", "tf2onnx"))
        print("BAD", bad)
        sys.exit(1 if bad else 0)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------------- agreement
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


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_shipped_models_agree_on_samples(model):
    """TF (function mode) and ONNX Runtime fp32 on the shipped samples: scores within a relative 1e-4
    per jet (the agreement criterion of issue 8; it was 1e-5 with the exact nearest-neighbour
    recompute), identical trigger decisions at the model card's thresholds and at score quantiles
    (there for jets further than the tolerance from the cut)."""
    missing = [p.name for p in (MODELS / f"{model}.keras", MODELS / f"{model}.onnx") if not p.exists()]
    if missing or not SAMPLES:
        pytest.skip(f"trained model files {missing} not in data/models" if missing else "no data/*.root samples")
    from modules.models.preprocess import load_jets

    x = np.concatenate([load_jets(str(f), max_events=150)[0] for f in SAMPLES])
    ort_out = loaded("onnxruntime", MODELS / f"{model}.onnx").run(x)
    tf_out = loaded("tensorflow", MODELS / f"{model}.keras").run(x)
    assert ort_out["valid"].all()
    rel = np.abs(tf_out["score"] - ort_out["score"]) / np.abs(ort_out["score"])
    assert rel.max() <= 1e-4, f"{model}: max relative score difference {rel.max():.2e} on {len(x)} jets"
    np.testing.assert_allclose(tf_out["kl"], ort_out["kl"], rtol=1e-5, atol=1e-6)
    for thr in [float(np.quantile(ort_out["score"], q)) for q in (0.5, 0.9, 0.99)]:
        far = np.abs(ort_out["score"] - thr) > 1e-4 * thr
        assert np.array_equal(tf_out["score"][far] > thr, ort_out["score"][far] > thr), f"{model}: decisions differ at {thr}"
    card = MODELS / "thresholds.json"
    if card.exists():
        for thr in [float(v) for v in json.loads(card.read_text()).get(model, {}).values() if isinstance(v, (int, float))]:
            assert np.array_equal(tf_out["score"] > thr, ort_out["score"] > thr), f"{model}: decisions differ at {thr}"


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name,suffix", [("onnxruntime", ".onnx"), ("tensorflow", ".keras"), ("tensorrt", ".onnx")])
def test_missing_model_file(tmp_path, name, suffix):
    path = tmp_path / f"nope{suffix}"
    with pytest.raises(ModuleError, match=f"model file {path} does not exist"):
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
    with pytest.raises(ModuleError, match=rf"model {path} takes input of shape \(N, 50, 3\)"):
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


@pytest.mark.skipif(TRT.usable, reason="this machine has a usable TensorRT GPU")
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


# ---------------------------------------------------------------------- the scorer module
class FakeEvent:
    def __init__(self, batch: JetBatch) -> None:
        self.batch, self.product = batch, None

    def get(self, tag: str) -> JetBatch:
        return self.batch

    def put(self, product, instance: str = "") -> None:
        self.product = product


def fake_job(accelerators=("*",), modules=None) -> SimpleNamespace:
    return SimpleNamespace(options=SimpleNamespace(accelerators=list(accelerators)), facts={},
                           config=SimpleNamespace(modules=modules or {}))


def make_scorer(**params):
    from modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters

    return VAEAnomalyScorer("vae", VAEAnomalyScorerParameters(**params))


def batch_of(x: np.ndarray) -> JetBatch:
    return JetBatch(x, x[..., 2] > 0, np.ones(len(x), np.float32), True)


def test_scorer_scores_counts_and_reports(tiny):
    scorer = make_scorer(model=str(tiny.onnx), backend="auto", outputs=["score"])
    job = fake_job()
    scorer.begin_job(job)
    assert job.facts["accelerators"]["vae"]["backend"] in ("onnxruntime", "tensorrt")
    x = jets(3)
    x[2, 0, 0] = np.nan
    for data in (x, np.zeros((0, 100, 3), np.float32)):
        ev = FakeEvent(batch_of(data))
        scorer.produce(ev)
        assert isinstance(ev.product, JetScores) and len(ev.product) == len(data) and ev.product.kl is None
    summary = scorer.summary()
    assert (summary["events"], summary["empty_events"], summary["jets"], summary["nonfinite_jets"]) == (2, 1, 3, 1)
    assert summary["backend"]["model"] == str(tiny.onnx)


def test_scorer_empty_event_skips_backend(tiny, monkeypatch):
    scorer = make_scorer(model=str(tiny.onnx), backend="onnxruntime")
    scorer.begin_job(fake_job())
    monkeypatch.setattr(scorer.backend, "run", lambda x: pytest.fail("backend called for an event without jets"))
    ev = FakeEvent(batch_of(np.zeros((0, 100, 3), np.float32)))
    scorer.produce(ev)
    assert len(ev.product.score) == 0 and len(ev.product.valid) == 0


def test_scorer_model_by_name_and_sibling_suffix(tiny):
    scorer = make_scorer(model="tiny", backend="tensorflow", models_dir=str(tiny.dir))
    scorer.begin_job(fake_job())
    assert scorer.backend.model_path == tiny.keras
    scorer = make_scorer(model=str(tiny.keras), backend="onnxruntime")  # .keras given, .onnx beside it
    scorer.begin_job(fake_job())
    assert scorer.backend.model_path == tiny.onnx


def test_scorer_errors_name_the_model(tiny, tmp_path):
    with pytest.raises(ModuleError, match=rf"modules.vae: .*{tiny.wrong_onnx} takes input of shape \(N, 50, 3\)"):
        make_scorer(model=str(tiny.wrong_onnx), backend="onnxruntime").begin_job(fake_job())
    with pytest.raises(ModuleError, match=r"model file .*missing_vae\.onnx does not exist"):
        make_scorer(model="missing_vae", backend="onnxruntime", models_dir=str(tmp_path)).begin_job(fake_job())
    with pytest.raises(ConfigError, match="int8 requested but .* not a quantised model"):
        make_scorer(model=str(tiny.onnx), backend="onnxruntime", precision="int8").begin_job(fake_job())
    batcher = SimpleNamespace(params=SimpleNamespace(n_constituents=50))
    with pytest.raises(ConfigError, match="pads jets to 50 constituents"):
        make_scorer(model=str(tiny.onnx)).begin_job(fake_job(modules={"batcher": batcher}))


def test_scorer_parameters_are_validated():
    from framework.schema import build
    from modules.vae_scorer import VAEAnomalyScorerParameters

    with pytest.raises(ConfigError, match="modules.vae.backend: expected one of"):
        build(VAEAnomalyScorerParameters, {"backend": "pytorch"}, "modules.vae")
    with pytest.raises(ConfigError, match="outputs must include 'score'"):
        build(VAEAnomalyScorerParameters, {"outputs": ["kl"]}, "modules.vae")


def test_full_path_on_onnxruntime(tiny, counts_file, write_config):
    """The scorer inside a real job: source -> batcher -> vae -> filter, facts and counters reported."""
    from tests.helpers import run_config

    path = write_config(f"""
        options: {{accelerators: [cpu], streams: 2}}
        source: {{type: RootJetSource, files: [{counts_file}], layout: counts}}
        modules:
          batcher: {{type: JetBatcher, max_jets: 2}}
          vae: {{type: VAEAnomalyScorer, model: {tiny.onnx}, backend: auto}}
          filt: {{type: AnomalyScoreFilter, src: vae, threshold: 1.0e+9}}
        paths:
          p: [batcher, vae, filt]
    """)
    summary, process = run_config(path)
    facts = summary.module_summaries["vae"]
    assert process.job.facts["accelerators"]["vae"]["backend"] == "onnxruntime"
    assert facts["events"] == summary.events_processed > 0 and facts["empty_events"] > 0
    assert summary.events_passed == 0


# ---------------------------------------------------------------------- TensorRT
def test_tensorrt_engine_cache_key(tiny, tmp_path):
    from modules.inference.tensorrt_backend import engine_cache_path

    a = engine_cache_path(tiny.onnx, tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0", "fp32", 9, 1024)
    b = engine_cache_path(tiny.onnx, tmp_path, "NVIDIA H100 80GB HBM3", "11.0.0", "fp32", 9, 1024)
    c = engine_cache_path(tiny.wrong_onnx, tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0", "fp32", 9, 1024)
    assert len({a, b, c}) == 3 and a.parent == tmp_path and "NVIDIA_H100_80GB_HBM3" in a.name


@needs_trt
def test_tensorrt_agrees_with_onnxruntime_and_counts_copies(tiny, tmp_path):
    x = jets(40, seed=6)
    ref = loaded("onnxruntime", tiny.onnx).run(x)
    trt = loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), max_batch=16)  # 40 jets: 3 chunks
    out = trt.run(x)
    np.testing.assert_allclose(out["score"], ref["score"], rtol=1e-4, atol=1e-6)
    c = trt.counters
    assert c["h2d_copies"] == 3 and c["h2d_bytes"] == x.nbytes and c["d2h_bytes"] == 40 * 4 * 2
    assert list(tmp_path.glob("tiny-*.engine"))
    again = loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), max_batch=16)  # from the cache
    np.testing.assert_allclose(again.run(x)["score"], out["score"], rtol=1e-6)
    trt.close()
    again.close()


# ---------------------------------------------------------------------- TensorRT code paths, no GPU
# A stand-in for the tensorrt module and the CUDA binding with the TensorRT 10 Python API names the
# backend uses; the "engine" runs the ONNX file with ONNX Runtime on buffers in a fake device memory.
# It checks the backend's control flow (build, cache, profile, addresses, chunking, copy accounting),
# not TensorRT itself: test_tensorrt_agrees_with_onnxruntime_and_counts_copies does that on a GPU.
class _FakeCuda:
    binding = "fake"

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.next_ptr = 1 << 20
        self.freed = 0

    def device_count(self): return 1
    def device_name(self): return "Fake GPU 80GB"
    def activate(self): pass
    def deactivate(self): pass
    def host_empty(self, n, dtype): return np.zeros(n, dtype)
    def device_ptr(self, mem): return mem
    def stream(self): return "stream"
    def stream_handle(self, stream): return 7
    def synchronize(self, stream): pass
    def event(self): return object()
    def record(self, event, stream): pass
    def elapsed_ms(self, start, end): return 0.002

    def device_alloc(self, nbytes):
        ptr, self.next_ptr = self.next_ptr, self.next_ptr + nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def h2d(self, dst, src, nbytes, stream):
        self.mem[dst][:nbytes] = src.reshape(-1).view(np.uint8)[:nbytes]

    def d2h(self, dst, src, nbytes, stream):
        dst.reshape(-1).view(np.uint8)[:nbytes] = self.mem[src][:nbytes]

    def free(self, host, device):
        self.freed += len(device)


def _fake_trt(cuda: _FakeCuda, version: str = "10.9.0", builds: list | None = None):
    import importlib.machinery
    import types

    import onnx
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    flags = {"TF32": "TF32"} if version.startswith("11") else {"FP16": "FP16", "TF32": "TF32"}
    trt.BuilderFlag = type("BuilderFlag", (), flags)
    trt.MemoryPoolType = type("MemoryPoolType", (), {"WORKSPACE": "WORKSPACE"})
    trt.TensorIOMode = type("TensorIOMode", (), {"INPUT": "INPUT", "OUTPUT": "OUTPUT"})
    trt.nptype = lambda dtype: dtype

    class Network:
        def __init__(self): self.inputs, self.onnx = [], b""
        num_inputs = property(lambda self: len(self.inputs))
        def get_input(self, i): return self.inputs[i]

    class OnnxParser:
        num_errors = 0
        def __init__(self, network, logger): self.network = network

        def parse_from_file(self, path):
            graph = onnx.load(path).graph
            self.network.onnx = Path(path).read_bytes()
            for i in graph.input:
                dims = tuple(d.dim_value if d.dim_value else -1 for d in i.type.tensor_type.shape.dim)
                self.network.inputs.append(SimpleNamespace(name=i.name, shape=dims))
            return True

    class Profile:
        def set_shape(self, name, lo, opt, hi): self.shape = (name, lo, opt, hi)

    class Config:
        def __init__(self): self.flags, self.profiles = {"TF32"}, []
        def set_memory_pool_limit(self, pool, size): self.pool = (pool, size)
        def add_optimization_profile(self, p): self.profiles.append(p)
        def set_flag(self, f): self.flags.add(f)
        def clear_flag(self, f): self.flags.discard(f)

    class Builder:
        platform_has_fast_fp16 = True
        def __init__(self, logger): pass
        def create_network(self, flags): assert flags == 0; return Network()
        def create_builder_config(self): return Config()
        def create_optimization_profile(self): return Profile()

        def build_serialized_network(self, network, config):
            (name, lo, opt, hi), = [p.shape for p in config.profiles]
            if builds is not None:
                builds.append(sorted(config.flags))
            head = json.dumps({"input": name, "max": hi[0], "flags": sorted(config.flags)}).encode()
            return b"FAKETRT" + head + b"\n" + network.onnx

    class Context:
        def __init__(self, engine): self.engine, self.addr, self.n = engine, {}, None
        def set_tensor_address(self, name, ptr): self.addr[name] = ptr

        def set_input_shape(self, name, shape):
            self.n = shape[0]
            return 1 <= shape[0] <= self.engine.head["max"] and tuple(shape[1:]) == (100, 3)

        def execute_async_v3(self, stream_handle):
            e, n = self.engine, self.n
            x = cuda.mem[self.addr[e.input]][: n * 1200].view(np.float32).reshape(n, 100, 3)
            for name, val in zip(e.outputs, e.sess.run(e.outputs, {e.input: x})):
                cuda.mem[self.addr[name]][: n * 4] = val.astype(np.float32).view(np.uint8)
            return True

    class Engine:
        def __init__(self, blob):
            head, model = blob[7:].split(b"\n", 1)
            self.head = json.loads(head)
            self.sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            self.input = self.sess.get_inputs()[0].name
            self.outputs = [o.name for o in self.sess.get_outputs()]
            self.names = [self.input, *self.outputs]
        num_io_tensors = property(lambda self: len(self.names))
        def get_tensor_name(self, i): return self.names[i]
        def get_tensor_mode(self, name): return "INPUT" if name == self.input else "OUTPUT"
        def get_tensor_shape(self, name): return (-1, 100, 3) if name == self.input else (-1,)
        def get_tensor_dtype(self, name): return np.float32
        def create_execution_context(self): return Context(self)

    class Runtime:
        def __init__(self, logger): pass
        def deserialize_cuda_engine(self, blob): return Engine(bytes(blob)) if blob[:7] == b"FAKETRT" else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture()
def fake_trt(monkeypatch):
    """Install the stand-in tensorrt + CUDA binding; returns (cuda, builds, install(version))."""
    import modules.inference.tensorrt_backend as trt_backend

    cuda, builds = _FakeCuda(), []

    def install(version: str = "10.9.0"):
        monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(cuda, version, builds))
        tensorrt_gpu_status.cache_clear()

    monkeypatch.setattr(trt_backend, "cuda_api", lambda: cuda)
    install()
    yield SimpleNamespace(cuda=cuda, builds=builds, install=install)
    tensorrt_gpu_status.cache_clear()


def test_tensorrt_backend_flow_with_stand_in(tiny, tmp_path, fake_trt):
    x = jets(40, seed=8)
    x[5, 0, 0] = np.inf
    ref = loaded("onnxruntime", tiny.onnx).run(x)
    backend = loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), max_batch=16)
    assert fake_trt.builds == [[]]  # FP32: TF32 cleared, no FP16
    out = backend.run(x)
    np.testing.assert_allclose(out["score"], ref["score"], rtol=1e-6, equal_nan=True)
    assert np.isnan(out["score"][5]) and not out["valid"][5]
    c = backend.counters
    assert (c["h2d_copies"], c["h2d_bytes"], c["d2h_copies"], c["d2h_bytes"]) == (3, x.nbytes, 6, 40 * 8)
    assert c["h2d_us"] == 3 * 2 and c["gpu_compute_us"] == 6
    desc = backend.describe()
    assert desc["device"] == "gpu-nvidia" and desc["gpu"] == "Fake GPU 80GB" and desc["precision"] == "fp32"
    engine = Path(desc["engine"])
    assert engine.parent == tmp_path and "Fake_GPU_80GB-trt10.9.0-fp32-b1_9_16" in engine.name
    backend.close()
    assert fake_trt.cuda.freed == 3
    loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), max_batch=16)
    assert len(fake_trt.builds) == 1  # second load: engine from the cache
    engine.write_bytes(b"garbage")
    loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), max_batch=16)
    assert len(fake_trt.builds) == 2  # unusable cache file: rebuilt


def test_tensorrt_precision_and_shape_errors_with_stand_in(tiny, tmp_path, fake_trt):
    loaded("tensorrt", tiny.onnx, engine_cache=str(tmp_path), precision="fp16")
    assert "FP16" in fake_trt.builds[-1]
    with pytest.raises(ModuleError, match=r"takes input of shape \(N, 50, 3\)"):
        create_backend("tensorrt", tiny.wrong_onnx, BackendOptions(engine_cache=str(tmp_path))).load()
    with pytest.raises(ModuleError, match="INT8 use an explicitly quantised"):
        create_backend("tensorrt", tiny.onnx, BackendOptions(precision="int8")).load()
    fake_trt.install("11.0.0")
    with pytest.raises(ModuleError, match="precision fp16 requested .*TensorRT 11 needs an FP16 ONNX"):
        create_backend("tensorrt", tiny.onnx, BackendOptions(engine_cache=str(tmp_path), precision="fp16")).load()


def test_auto_picks_tensorrt_when_present_with_stand_in(tiny, tmp_path, fake_trt):
    assert choose_backend("auto", ["*"]) == ("tensorrt", "auto: TensorRT on Fake GPU 80GB")
    assert choose_backend("auto", ["cpu"])[0] == "onnxruntime"
    scorer = make_scorer(model=str(tiny.onnx), engine_cache=str(tmp_path))
    job = fake_job()
    scorer.begin_job(job)
    assert job.facts["accelerators"]["vae"]["device"] == "gpu-nvidia"
    scorer.produce(FakeEvent(batch_of(jets(9))))
    summary = scorer.summary()
    assert summary["h2d_bytes"] == 9 * 1200 and summary["d2h_bytes"] == 9 * 8 and summary["jets"] == 9


# ---------------------------------------------------------------------- tools
def test_bench_counts_macs_from_the_onnx_graph(tiny):
    from tools.bench_backends import count_macs

    # Dense 300->8, 8->4 twice, 4->300; the tiny score has no matrix product of data
    assert count_macs(tiny.onnx) == {"weights": 300 * 8 + 2 * 8 * 4 + 4 * 300, "data": 0}


def test_quantize_tool_selects_weight_nodes_and_keeps_the_card(tiny, tmp_path):
    from tools.quantize_models import SECTION, quantize, weight_nodes, write_card

    nodes = weight_nodes(tiny.onnx)
    assert len(nodes) == 4 and len(weight_nodes(tiny.onnx, exclude=nodes[0])) == 3
    out = quantize(tiny.onnx, tmp_path / "tiny_int8.onnx", "dynamic", False, None)
    assert out["quantised_nodes"] == 4
    backend = loaded("onnxruntime", tmp_path / "tiny_int8.onnx")
    assert backend.describe()["precision"] == "int8"
    np.testing.assert_allclose(backend.run(jets(9))["score"], loaded("onnxruntime", tiny.onnx).run(jets(9))["score"],
                               rtol=0.1)
    card = tmp_path / "README.md"
    card.write_text("# Card\n\n## Performance\n\nAUC 0.9\n\n## Reproducing\n\nrun it\n")
    write_card(card, f"{SECTION}\n\nfirst\n")
    write_card(card, f"{SECTION}\n\nsecond\n")
    text = card.read_text()
    assert text.count(SECTION) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Card\n\n## Performance\n\nAUC 0.9\n\n## Reproducing\n\nrun it\n")
