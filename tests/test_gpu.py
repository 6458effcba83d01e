"""Real-hardware checks (marker ``gpu``): they skip, with the reason, where no NVIDIA GPU, CUDA
binding, TensorRT or ONNX Runtime GPU provider is present. tools/gpu_check.sh runs them on a GPU box.

Runs without tests/conftest.py (``pytest --noconftest``: a GPU box may lack uproot/awkward) and
without TensorFlow: the small model is the closed-form ONNX graph of tests/fakes/onnx_models.py.

* the CUDA wrappers' contract (tests/cuda_contract.py) against the real pycuda / cuda-python;
* TensorRT (FP32 and FP16 I/O) on small closed-form models, and FP32 against ONNX Runtime on the shipped samples with the shipped
  models: scores within a relative 1e-4, identical decisions at the card's thresholds;
* ONNX Runtime's CUDA / TensorRT execution providers against its CPU provider.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hltrun.modules.inference.accelerator import tensorrt_gpu_status
from tests.cuda_contract import roundtrip
from tests.fakes.onnx_models import expected, write_vae_like
from tests.tiny_models import jets, loaded

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"


def _binding_status(binding: str) -> str:
    """'' when the binding imports and sees a GPU, else why not."""
    from hltrun.modules.inference import tensorrt_backend as tb

    module = {"pycuda": "pycuda", "cuda-python": "cuda.bindings"}[binding]
    try:
        if importlib.util.find_spec(module) is None:
            return f"{binding} is not installed"
    except ModuleNotFoundError:
        return f"{binding} is not installed"
    try:
        api = {"pycuda": tb.PyCudaApi, "cuda-python": tb.CudaPythonApi}[binding]()
        return "" if api.device_count() > 0 else "no NVIDIA GPU visible"
    except Exception as exc:  # noqa: BLE001 - report any driver problem as the skip reason
        return f"{binding}: {type(exc).__name__}: {exc}"


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_real_cuda_wrapper_contract(binding):
    why = _binding_status(binding)
    if why:
        pytest.skip(f"real {binding} check: {why}")
    from hltrun.modules.inference import tensorrt_backend as tb

    api = {"pycuda": tb.PyCudaApi, "cuda-python": tb.CudaPythonApi}[binding]()
    for dtype in ("float32", "float16"):
        times = roundtrip(api, n=1 << 20, dtype=dtype)
        print(f"{binding} {dtype}: 4 MiB-ish round trip h2d {times['h2d_ms']:.3f} ms d2h {times['d2h_ms']:.3f} ms")


def _needs_trt() -> None:
    status = tensorrt_gpu_status()
    if not status.usable:
        pytest.skip(f"TensorRT check: {status.reason}")


@pytest.mark.parametrize("io_dtype,extra", [("float32", False), ("float32", True), ("float16", True)])
def test_tensorrt_small_models_agree_and_count_copies(tmp_path, io_dtype, extra):
    """FP32 and FP16 I/O, with and without an (N, 3) output: closed-form scores, exact byte counts."""
    _needs_trt()
    model = write_vae_like(tmp_path / "small.onnx", io_dtype=io_dtype, extra_output=extra)
    x = jets(40, seed=6)
    ref = expected(x, io_dtype)
    trt = loaded("tensorrt", model, engine_cache=str(tmp_path), max_batch=16)  # 40 jets: 3 chunks
    out = trt.run(x)
    rtol = 1e-5 if io_dtype == "float32" else 2e-3
    np.testing.assert_allclose(out["score"], ref["score"], rtol=rtol)
    size = np.dtype(io_dtype).itemsize
    c = trt.counters
    assert c["chunks"] == 3 and c["h2d_bytes"] == 40 * 300 * size and c["d2h_bytes"] == 40 * 2 * size
    print(f"TensorRT {io_dtype} extra={extra}: h2d {c['h2d_us']} us, compute {c['compute_us']} us, "
          f"d2h {c['d2h_us']} us for 3 chunks")
    assert list(tmp_path.glob("small-*.engine"))
    again = loaded("tensorrt", model, engine_cache=str(tmp_path), max_batch=16)  # from the cache
    np.testing.assert_allclose(again.run(x)["score"], out["score"], rtol=1e-6)
    trt.close()
    again.close()


def test_tensorrt_several_inputs_agree_with_onnxruntime(tmp_path):
    """The ParticleNet-like EdgeConv of tests/particlenet.py (points, features, mask): one profile for every input,
    each bound by its tensor name; batches of 1 to 40 jets (chunks of 16) against ONNX Runtime on the CPU, within the
    agreement criterion beyond float32 rounding. Written against TensorRT 10's API and its fake only (2026-12-07)."""
    _needs_trt()
    pytest.importorskip("torch", reason="exporting the several-input test model needs torch")
    from hltrun.modules.inference.autoselect import beyond_rounding, sample_inputs
    from hltrun.modules.inference.base import AGREEMENT_RTOL
    from tests.particlenet import particlenet_onnx

    model = particlenet_onnx(tmp_path / "pn.onnx")
    ref = loaded("onnxruntime", model)
    trt = loaded("tensorrt", model, engine_cache=str(tmp_path), max_batch=16)
    worst = 0.0
    for n in (1, 2, 3, 9, 16, 40):
        xs = sample_inputs(ref, n, seed=n)
        worst = max(worst, beyond_rounding({"score": trt.run(xs)["score"]}, {"score": ref.run(xs)["score"]}))
    print(f"TensorRT several inputs: {worst:.2e} beyond float32 rounding of ONNX Runtime's scores")
    assert worst <= AGREEMENT_RTOL
    trt.close()


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_tensorrt_fp32_matches_onnxruntime_on_shipped_samples(model, tmp_path):
    _needs_trt()
    pytest.importorskip("uproot", reason="reading the shipped samples needs uproot (carry its wheels in .whl/)")
    from hltrun.modules.models.preprocess import load_jets

    samples = sorted((REPO / "data").glob("*.root"))
    x = np.concatenate([load_jets(str(f), max_events=300)[0] for f in samples])
    ref = loaded("onnxruntime", MODELS / f"{model}.onnx").run(x)["score"]
    got = loaded("tensorrt", MODELS / f"{model}.onnx", engine_cache=str(tmp_path), precision="fp32").run(x)["score"]
    rel = np.abs(got - ref) / np.abs(ref)
    print(f"{model}: {len(x)} jets, max relative difference TensorRT fp32 vs ONNX Runtime {rel.max():.2e}")
    assert rel.max() <= 1e-4
    for key, thr in json.loads((MODELS / "thresholds.json").read_text())[model].items():
        differ = int(np.count_nonzero((got > thr) != (ref > thr)))
        assert differ == 0, f"{model}: {differ} decisions differ at {key} = {thr}"


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_onnxruntime_gpu_providers_agree_with_cpu(tmp_path, provider):
    ort = pytest.importorskip("onnxruntime")
    if provider not in ort.get_available_providers():
        pytest.skip(f"ONNX Runtime {ort.__version__} here has no {provider} (providers: {ort.get_available_providers()})")
    model = write_vae_like(tmp_path / "small.onnx")
    x = jets(32, seed=9)
    cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    try:
        gpu = ort.InferenceSession(str(model), providers=[provider, "CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a provider listed but not loadable (missing CUDA libraries)
        pytest.skip(f"{provider} listed but not usable: {str(exc).splitlines()[0][:200]}")
    if gpu.get_providers()[0] != provider:
        pytest.skip(f"{provider} fell back to {gpu.get_providers()} (libraries missing?)")
    name = cpu.get_inputs()[0].name
    ref = cpu.run(["score"], {name: x})[0]
    got = gpu.run(["score"], {name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)
