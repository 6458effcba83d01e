"""The jax backend on a real NVIDIA GPU (marker ``gpu``): skipped, with the reason, where JAX sees no
GPU; tools/gpu_check.sh runs them. The same backend on the CPU device is tested in CI by
tests/test_translated_backends.py (never skipped there).

Runs without tests/conftest.py (``pytest --noconftest``) and without TensorFlow.

* agreement with ONNX Runtime CPU on every jet of every shipped sample (fp32, ``Precision.HIGHEST``:
  no TF32), ≤ 1e-4 relative on score and kl, zero decision changes at the card's working points;
* one compiled executable per bucket for the GPU device, none compiled at run time;
* device memory from the allocator (in use, peak) in ``describe()``;
* host buffers page-locked when cuda-python is there;
* two backends (two streams) in two threads on the same GPU give the same scores as one;
* a recurrent anomaly network (an ONNX LSTM / GRU node: ``lax.scan``) gives ONNX Runtime CPU's scores in every bucket;
* so do session 39's translator forms (tests/translated_forms.py: an If on the values, a QDQ Conv, a kNN EdgeConv);
* and a several-input network (tests/particlenet.py: points, features, mask), one device input per model input.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install -e '.[jax]')")

from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference.bucketed import bucket_sizes  # noqa: E402
from hltrun.modules.inference.jax_backend import compile_cache_size, gpu_devices  # noqa: E402
from tests.agreement import (assert_agrees_in_every_bucket, assert_agrees_on_every_shipped_sample,  # noqa: E402
                             assert_several_inputs_agree, run_concurrently)

GPUS = gpu_devices(jax)
pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.skipif(not GPUS, reason=f"JAX sees no GPU (devices: {jax.devices()})")]
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"
SAMPLES = sorted((REPO / "data").glob("*.root"))


def _gpu(model: str, max_batch: int = 1024):
    b = create_backend("jax", MODELS / f"{model}.onnx", BackendOptions(max_batch=max_batch, device="gpu")).load()
    b.warm_up()
    return b


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_gpu_agrees_with_onnxruntime_cpu_on_every_shipped_sample(model):
    g = _gpu(model)
    assert g.device == "gpu-nvidia" and g.jax_device.platform != "cpu"
    assert_agrees_on_every_shipped_sample(g, model, "jax")


def test_one_executable_per_bucket_compiled_at_warm_up():
    from hltrun.modules.inference import jax_backend

    g = _gpu("gcn_vae", max_batch=48)
    assert g.buckets == bucket_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    assert g._key[3] != "cpu"  # compiled for the GPU device, one executable per bucket
    assert all(jax_backend._COMPILED[(*g._key, b)] is g._compiled[b] for b in g.buckets)
    compiled = compile_cache_size()
    for n in (1, 5, 30, 48, 100):
        g.run(np.zeros((n, 100, 3), np.float32))
    assert compile_cache_size() == compiled
    assert g.counters["chunks"] == 1 + 1 + 1 + 1 + 3


def test_device_memory_in_describe():
    g = _gpu("conv_vae", max_batch=64)
    g.run(np.zeros((64, 100, 3), np.float32))
    mem = g.describe()["device_memory"]
    print("device memory:", mem)
    assert mem["bytes_in_use"] > 0 and mem["peak_bytes_in_use"] >= mem["bytes_in_use"]
    assert all(v >= 0 for v in mem.values())  # an unavailable statistic (-1) is left out
    assert g.reset_device_peak() is False  # JAX has no reset: gpu-sweep gives its peak to date instead
    split = g.device_split_ns()
    assert split["h2d_ns"] > 0 and split["compute_ns"] > 0 and split["d2h_ns"] > 0


def test_pinned_host_buffers_with_cuda_python():
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        pytest.skip("cuda-python (cuda.bindings) is not installed: host buffers are pageable")
    g = _gpu("gcn_vae", max_batch=8)
    assert g.describe()["pinned_host_buffers"] is True
    g.close()


def test_two_streams_on_one_gpu_agree():
    from tests.tiny_models import jets

    x = jets(37, seed=3)
    ref = _gpu("conv_vae", max_batch=64).run(x)["score"]
    for results in run_concurrently([_gpu("conv_vae", max_batch=64) for _ in range(2)], x, 20):
        for got in results:
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_recurrent_network_agrees_in_every_bucket(op, tmp_path):
    """The recurrent network tests/test_torch_gpu.py runs under CUDA graphs, on JAX's GPU (a scan over 100
    constituents, fp32 at ``Precision.HIGHEST``): ONNX Runtime CPU's scores ≤ 1e-4 relative, jet by jet."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[cpu]')")
    from tests.recurrent_models import recurrent_anomaly_onnx

    path = recurrent_anomaly_onnx(tmp_path / f"{op.lower()}.onnx", op)
    g = create_backend("jax", path, BackendOptions(max_batch=8, device="gpu")).load()
    g.warm_up()
    assert g.device == "gpu-nvidia" and g.jax_device.platform != "cpu"
    assert_agrees_in_every_bucket(g, path, f"jax {op}")


@pytest.mark.parametrize("form", ["if-on-values", "qdq-conv", "knn-gathernd"])
def test_a_translator_form_agrees_in_every_bucket(form, tmp_path):
    """Session 39's translator forms (tests/translated_forms.py) on JAX's GPU: an If on the values (``lax.cond``, the
    jets also with the other branch's condition), a QDQ Conv (QuantizeLinear's exact division), a kNN EdgeConv (TopK,
    GatherND with batch_dims=1): ONNX Runtime CPU's scores ≤ 1e-4 relative in every bucket."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[cpu]')")
    from tests.translated_forms import FORMS, low_pt

    path = FORMS[form](tmp_path / f"{form}.onnx")
    g = create_backend("jax", path, BackendOptions(max_batch=32, device="gpu")).load()
    g.warm_up()
    assert g.device == "gpu-nvidia" and g.jax_device.platform != "cpu"
    assert_agrees_in_every_bucket(g, path, f"jax {form}", also=low_pt if form == "if-on-values" else None)


def test_a_several_input_network_agrees_in_every_bucket(tmp_path):
    """A ParticleNet-like EdgeConv (points, features, mask; tests/particlenet.py) on JAX's GPU: every input put on the
    device per call, one executable per bucket over all three; ONNX Runtime CPU's scores within the agreement
    criterion in every bucket, padded ones and a batch over max_batch included, the jets padded and masked as the
    source does. ``auto`` hands such a model to JAX where PyTorch refuses it (accelerator.auto_next)."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[cpu]')")
    from tests.particlenet import particlenet_onnx

    path = particlenet_onnx(tmp_path / "pn.onnx")
    g = create_backend("jax", path, BackendOptions(max_batch=32, device="gpu")).load()
    g.warm_up()
    assert g.device == "gpu-nvidia" and g.jax_device.platform != "cpu"
    assert all(len(g._host[k]) == 3 for k in g.buckets)
    assert_several_inputs_agree(g, path, "jax several inputs")
