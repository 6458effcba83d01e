"""Real-hardware checks (marker ``gpu``): they skip, with the reason, where no NVIDIA GPU, CUDA
binding, TensorRT or ONNX Runtime GPU provider is present. tools/gpu_check.sh runs them on a GPU box.

* the CUDA wrappers' contract (tests/cuda_contract.py) against the real pycuda / cuda-python;
* TensorRT FP32 against ONNX Runtime on the tiny model and on the shipped samples with the shipped
  models: scores within a relative 1e-4, identical decisions at the card's thresholds;
* ONNX Runtime's CUDA / TensorRT execution providers against its CPU provider.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from modules.inference.accelerator import tensorrt_gpu_status
from tests.cuda_contract import roundtrip
from tests.tiny_models import jets, loaded

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"


def _binding_status(binding: str) -> str:
    """'' when the binding imports and sees a GPU, else why not."""
    from modules.inference import tensorrt_backend as tb

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
    from modules.inference import tensorrt_backend as tb

    api = {"pycuda": tb.PyCudaApi, "cuda-python": tb.CudaPythonApi}[binding]()
    for dtype in ("float32", "float16"):
        times = roundtrip(api, n=1 << 20, dtype=dtype)
        print(f"{binding} {dtype}: 4 MiB-ish round trip h2d {times['h2d_ms']:.3f} ms d2h {times['d2h_ms']:.3f} ms")


def _needs_trt() -> None:
    status = tensorrt_gpu_status()
    if not status.usable:
        pytest.skip(f"TensorRT check: {status.reason}")


def test_tensorrt_tiny_model_agrees_and_counts_copies(tiny, tmp_path):
    _needs_trt()
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


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_tensorrt_fp32_matches_onnxruntime_on_shipped_samples(model, tmp_path):
    _needs_trt()
    from modules.models.preprocess import load_jets

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
def test_onnxruntime_gpu_providers_agree_with_cpu(tiny, provider):
    ort = pytest.importorskip("onnxruntime")
    if provider not in ort.get_available_providers():
        pytest.skip(f"ONNX Runtime {ort.__version__} here has no {provider} (providers: {ort.get_available_providers()})")
    x = jets(32, seed=9)
    cpu = ort.InferenceSession(str(tiny.onnx), providers=["CPUExecutionProvider"])
    try:
        gpu = ort.InferenceSession(str(tiny.onnx), providers=[provider, "CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a provider listed but not loadable (missing CUDA libraries)
        pytest.skip(f"{provider} listed but not usable: {str(exc).splitlines()[0][:200]}")
    if gpu.get_providers()[0] != provider:
        pytest.skip(f"{provider} fell back to {gpu.get_providers()} (libraries missing?)")
    name = cpu.get_inputs()[0].name
    ref = cpu.run(["score"], {name: x})[0]
    got = gpu.run(["score"], {name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)
