"""The TensorRT backend against a strict fake TensorRT (10 and 11) and fake CUDA bindings, no GPU.

The fakes (tests/fakes/) enforce what real TensorRT and CUDA enforce: integer device addresses and
stream handles, bounds-checked copies, the engine's own I/O dtypes and output shapes, TensorRT 11's
missing weak-typing API, failing parsers/builds, and live handles at the end. The backend runs
through the real pycuda / cuda-python wrappers of modules/inference/tensorrt_backend.py on top of
fake ``pycuda.driver`` / ``cuda.bindings.runtime`` modules. The real-hardware checks are in
tests/test_gpu.py (marker ``gpu``).
"""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hltrun.framework.errors import ModuleError
from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference.accelerator import choose_backend, tensorrt_gpu_status
from hltrun.modules.inference.tensorrt_backend import BuildSettings, engine_cache_path
from tests.fakes import gpu as fake_gpu_mod
from tests.fakes import trt as fake_trt_mod
from tests.fakes.onnx_models import expected, write_vae_like

BINDINGS = ["cuda-python", "pycuda"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("trt_models")
    return SimpleNamespace(
        plain=write_vae_like(d / "plain.onnx"),
        wide=write_vae_like(d / "wide.onnx", extra_output=True),  # + an (N, 3) output
        fp16=write_vae_like(d / "fp16.onnx", io_dtype="float16", extra_output=True),
        wrong=write_vae_like(d / "wrong.onnx", n_constituents=50))


def _install(monkeypatch, binding: str, version: str = "10.9.0", devices: int = 1) -> SimpleNamespace:
    gpu = fake_gpu_mod.FakeGpu(devices=devices)
    ctl = fake_trt_mod.FakeTrtControl(version=version)
    fake_gpu_mod.install(monkeypatch, gpu, binding)
    fake_trt_mod.install(monkeypatch, gpu, ctl)
    tensorrt_gpu_status.cache_clear()
    return SimpleNamespace(gpu=gpu, ctl=ctl, binding=binding)


@pytest.fixture(params=BINDINGS)
def fake(monkeypatch, request) -> SimpleNamespace:
    f = _install(monkeypatch, request.param)
    f.reinstall = lambda **kw: f.__dict__.update(vars(_install(monkeypatch, request.param, **kw)))
    yield f
    tensorrt_gpu_status.cache_clear()


def jets(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 100, 3), np.float32)
    for i in range(n):
        k = int(rng.integers(10, 101))
        x[i, :k] = rng.normal(0, 1, (k, 3))
    return x


def trt_backend(path: Path, cache: Path, **opts):
    backend = create_backend("tensorrt", path, BackendOptions(engine_cache=str(cache), **opts)).load()
    backend.warm_up()
    return backend


def _live_after_close(fake) -> dict[str, int]:
    gc.collect()  # pycuda releases streams and events with their Python objects
    live = fake.gpu.live()
    if fake.binding == "pycuda":
        live.pop("host")  # pycuda's page-locked memory is released by the garbage collector, not tracked here
    return live


def test_results_copies_and_cleanup(models, tmp_path, fake):
    """40 jets through a max_batch-16 engine with an extra (N, 3) output: 3 chunks, right numbers,
    right byte counts, integer stream handles, nothing alive after close."""
    x = jets(40, seed=1)
    x[5, 0, 0] = np.inf
    backend = trt_backend(models.wide, tmp_path, max_batch=16)
    fake.gpu.elapsed_ms = 0.1234  # every event pair; the counters hold the floor of the exact sums
    out = backend.run(x)
    ref = expected(np.where(np.isfinite(x), x, 0))
    ok = np.arange(40) != 5
    np.testing.assert_allclose(out["score"][ok], ref["score"][ok], rtol=1e-6)
    np.testing.assert_allclose(out["kl"][ok], ref["kl"][ok], rtol=1e-5, atol=1e-5)
    assert np.isnan(out["score"][5]) and not out["valid"][5]
    c = backend.counters
    assert (c["chunks"], c["h2d_bytes"], c["d2h_copies"], c["d2h_bytes"]) == (3, 40 * 1200, 6, 40 * 8)
    assert (c["h2d_us"], c["compute_us"], c["d2h_us"]) == (370, 370, 370)  # 3 × 123.4 µs
    assert all(type(h) is int for h in fake.ctl.executions)  # noqa: E721
    desc = backend.describe()
    assert desc["versions"]["cuda_binding"] == fake.binding and desc["gpu"] == "Fake GPU 80GB"
    backend.close()
    backend.close()  # idempotent
    assert _live_after_close(fake) == {"device": 0, "streams": 0, "events": 0} | (
        {} if fake.binding == "pycuda" else {"host": 0})


def test_fp16_io_engine_uses_its_own_dtype(models, tmp_path, fake):
    """An engine with float16 inputs and outputs: float16 buffers, half the bytes, no overrun."""
    x = jets(33, seed=2)
    backend = trt_backend(models.fp16, tmp_path, max_batch=16)
    out = backend.run(x)
    ref = expected(x, "float16")
    np.testing.assert_allclose(out["score"], ref["score"], rtol=2e-3)
    np.testing.assert_allclose(out["kl"], ref["kl"], rtol=2e-3, atol=0.05)
    assert out["score"].dtype == np.float32
    assert backend.counters["h2d_bytes"] == 33 * 300 * 2 and backend.counters["d2h_bytes"] == 33 * 2 * 2
    backend.close()


def test_engine_cache_reuse_and_rebuild(models, tmp_path, fake):
    trt_backend(models.plain, tmp_path, max_batch=16).close()
    assert len(fake.ctl.builds) == 1
    build = fake.ctl.builds[0]
    assert build["flags"] == [] and build["pools"] == {"WORKSPACE": BuildSettings().workspace}  # TF32 cleared
    assert build["profiles"] == [{"jets": [[1, 100, 3], [9, 100, 3], [16, 100, 3]]}]
    (engine,) = tmp_path.glob("plain-*.engine")
    trt_backend(models.plain, tmp_path, max_batch=16).close()
    assert len(fake.ctl.builds) == 1  # from the cache
    engine.write_bytes(b"garbage")
    trt_backend(models.plain, tmp_path, max_batch=16).close()
    assert len(fake.ctl.builds) == 2  # unusable cache file: rebuilt
    fake.reinstall(version="10.10.0")
    trt_backend(models.plain, tmp_path, max_batch=16).close()
    assert len(fake.ctl.builds) == 1 and len(list(tmp_path.glob("plain-*.engine"))) == 2  # new version, new engine


def test_cache_key_holds_every_build_setting(models, tmp_path):
    base = BuildSettings()
    variants = [base, BuildSettings(tf32=True), BuildSettings(workspace=1 << 28), BuildSettings(precision="fp16"),
                BuildSettings(opt_batch=4), BuildSettings(max_batch=512)]
    paths = {engine_cache_path(models.plain, tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0", s) for s in variants}
    paths.add(engine_cache_path(models.plain, tmp_path, "NVIDIA H100 80GB HBM3", "11.0.0", base))
    paths.add(engine_cache_path(models.plain, tmp_path, "NVIDIA H200", "10.9.0", base))
    paths.add(engine_cache_path(models.wide, tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0", base))
    assert len(paths) == len(variants) + 3
    assert all(p.parent == tmp_path for p in paths)


def test_precision_on_tensorrt_10_and_11(models, tmp_path, fake):
    trt_backend(models.plain, tmp_path, precision="fp16").close()
    assert "FP16" in fake.ctl.builds[-1]["flags"]
    fake.reinstall(version="11.0.0")
    with pytest.raises(ModuleError, match="precision fp16 requested .*TensorRT 11 needs an FP16 ONNX"):
        trt_backend(models.plain, tmp_path, precision="fp16")
    trt_backend(models.plain, tmp_path).close()  # FP32 builds on 11 (strong typing)
    assert fake.ctl.builds[-1]["flags"] == []
    trt_backend(models.fp16, tmp_path).close()  # an FP16 ONNX file is how 11 does FP16


def test_parse_build_and_shape_failures_are_one_line(models, tmp_path, fake):
    fake.ctl.fail_parse = "In node 3 (Conv): unsupported attribute"
    with pytest.raises(ModuleError, match=rf"cannot parse ONNX model {models.plain}: In node 3") as err:
        trt_backend(models.plain, tmp_path)
    assert "\n" not in str(err.value)
    fake.ctl.fail_parse = None
    fake.ctl.fail_build = True
    with pytest.raises(ModuleError, match=rf"engine build failed for {models.plain}"):
        trt_backend(models.plain, tmp_path)
    fake.ctl.fail_build = False
    with pytest.raises(ModuleError, match=r"takes input .*of shape \(N, 50, 3\)"):
        trt_backend(models.wrong, tmp_path)
    with pytest.raises(ModuleError, match="INT8 use an explicitly quantised"):
        trt_backend(models.plain, tmp_path, precision="int8")
    with pytest.raises(ModuleError, match=r"output\(s\) \['feature_mean'\] .* not one value per jet"):
        trt_backend(models.wide, tmp_path, outputs=["score", "feature_mean"])


@pytest.mark.parametrize("binding", BINDINGS)
def test_no_gpu_is_named(models, monkeypatch, binding):
    _install(monkeypatch, binding, devices=0)
    with pytest.raises(ModuleError, match=f"no NVIDIA GPU visible; cannot run {models.plain} on TensorRT"):
        create_backend("tensorrt", models.plain).load()
    assert tensorrt_gpu_status().reason == "no NVIDIA GPU is visible to CUDA"
    name, reason = choose_backend("auto", ["*"])
    assert name == "onnxruntime" and "no NVIDIA GPU is visible" in reason
    tensorrt_gpu_status.cache_clear()


def test_auto_picks_tensorrt_and_the_scorer_reports_copies(models, tmp_path, fake):
    from tests.test_scorer import FakeEvent, batch_of, fake_job, make_scorer

    assert choose_backend("auto", ["*"]) == ("tensorrt", "auto: TensorRT on Fake GPU 80GB")
    assert choose_backend("auto", ["cpu"])[0] == "onnxruntime"
    scorer = make_scorer(model=str(models.plain), engine_cache=str(tmp_path))
    job = fake_job()
    scorer.begin_job(job)
    assert job.channels.facts()["accelerators"]["vae"]["device"] == "gpu-nvidia"
    x = jets(9, seed=3)
    ev = FakeEvent(batch_of(x))
    scorer.produce(ev)
    np.testing.assert_allclose(ev.product.score, expected(x)["score"], rtol=1e-6)
    summary = scorer.summary()
    assert summary["h2d_bytes"] == 9 * 1200 and summary["d2h_bytes"] == 9 * 8 and summary["jets"] == 9
    scorer.end_job()
    assert _live_after_close(fake)["device"] == 0


def test_a_model_name_of_255_bytes_makes_a_valid_engine_name(tmp_path):
    model = tmp_path / ("m" * 250 + ".onnx")
    model.write_bytes(b"model")
    path = engine_cache_path(model, tmp_path, "NVIDIA H100 80GB HBM3", "10.9.0", BuildSettings())
    assert len(path.name.encode()) <= 255 and path.name.startswith("m" * 100 + "-")


def test_engine_cache_with_a_tilde_is_the_home_folder(models, tmp_path, fake, monkeypatch):
    """``engine_cache: ~/engines`` (machine.engine_cache_dir, the rule every backend follows)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for _ in range(2):
        trt_backend(models.plain, Path("~/engines"), max_batch=16).close()
    assert len(list((tmp_path / "engines").glob("plain-*.engine"))) == 1
    assert len(fake.ctl.builds) == 1  # the second from the cache: looked for where it was written


def test_device_times_are_exact_sums_not_rounded_per_call(models, tmp_path, fake):
    """A D2H copy of a few scores takes 1-2 µs: rounded to whole µs per call, 10 calls of 1.4 µs counted
    10 µs (29 % short) in the TimeReport's device split. The counters are the floor of exact ns sums,
    which ``device_split_ns()`` gives; warm-up is not counted."""
    backend = trt_backend(models.plain, tmp_path, max_batch=16)
    assert backend.device_split_ns() == {"h2d_ns": 0, "compute_ns": 0, "d2h_ns": 0}
    fake.gpu.elapsed_ms = 0.0014
    for _ in range(10):
        backend.run(jets(2))
    c = backend.counters
    assert (c["h2d_us"], c["compute_us"], c["d2h_us"]) == (14, 14, 14)
    assert backend.device_split_ns() == {"h2d_ns": 14_000, "compute_ns": 14_000, "d2h_ns": 14_000}
    backend.close()
