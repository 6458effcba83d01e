"""The torch backend on a real NVIDIA GPU (marker ``gpu``): skipped, with the reason, where PyTorch sees
no CUDA GPU; tools/gpu_check.sh runs them. The same backend on the CPU device is tested in CI by
tests/test_translated_backends.py (never skipped there).

Runs without tests/conftest.py (``pytest --noconftest``) and without TensorFlow.

* agreement with ONNX Runtime CPU on every jet of every shipped sample, CUDA graphs on and off (fp32,
  TF32 off), ≤ 1e-4 relative on score and kl, zero decision changes at the card's working points;
* one CUDA graph captured per bucket at warm-up, and a run allocates no device memory;
* one CUDA stream per backend instance (not the default stream); two instances in two threads agree;
* page-locked host buffers, CUDA-event times for each part, exact byte counts, device memory figures;
* the allocator's peak reset per cell (hltbench gpu-sweep) and its cache given back at close;
* a recurrent anomaly network (an ONNX LSTM / GRU node, run as PyTorch's ``nn.LSTM``/``nn.GRU``: cuDNN's RNN) with
  CUDA graphs per bucket — captured, or refused in one line naming ``cuda_graphs: false`` (then xfail, and the log
  says which) — and op by op, fp32 (cuDNN's RNN not in TF32): ONNX Runtime CPU's scores ≤ 1e-4 relative in every
  bucket (the same flow runs in CI against the CUDA stand-in, tests/test_torch_cuda_fake.py);
* session 39's translator forms (tests/translated_forms.py: an If on the values, a QDQ Conv, a kNN EdgeConv with TopK
  and GatherND batch_dims=1) the same way: captured, or refused in one line naming ``cuda_graphs: false`` (xfail), and
  op by op, ≤ 1e-4 from ONNX Runtime CPU in every bucket (the If's jets in either branch);
* a several-input network (a ParticleNet-like EdgeConv on points, features, mask) the same way, one static device
  input per model input and bucket: ONNX Runtime CPU's scores in every bucket, padded ones included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")
pytest.importorskip("array_api_compat", reason="array-api-compat is not installed (carry its wheel: tools/gpu_check.sh)")
pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[cpu]')")

from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference.bucketed import bucket_sizes  # noqa: E402
from tests.agreement import (assert_agrees_in_every_bucket, assert_agrees_on_every_shipped_sample,  # noqa: E402
                             run_concurrently)
from tests.recurrent_models import recurrent_anomaly_onnx  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason=f"PyTorch sees no CUDA GPU (torch {torch.__version__}, CUDA build: "
                                        f"{torch.version.cuda or 'none'})")]
REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"


def _gpu(model: str, max_batch: int = 1024, graphs: bool = True):
    b = create_backend("torch", MODELS / f"{model}.onnx",
                       BackendOptions(max_batch=max_batch, device="gpu", cuda_graphs=graphs)).load()
    b.warm_up()
    return b


def _jets(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 100, 3), np.float32)
    x[:, :40, :2] = rng.normal(0, 0.2, (n, 40, 2))
    x[:, :40, 2] = rng.exponential(0.05, (n, 40))
    return x


@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_gpu_agrees_with_onnxruntime_cpu_on_every_shipped_sample(model, graphs):
    g = _gpu(model, graphs=graphs)
    assert g.device == "gpu-nvidia" and g.describe()["executor"] == ("cuda-graph" if graphs else "eager")
    assert_agrees_on_every_shipped_sample(g, model, f"torch {g.describe()['executor']}")


@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_every_bucket_agrees_after_all_are_captured(model):
    """Batches landing in every bucket, run after all buckets were captured (a graph must not read
    device memory that an earlier bucket's preparation freed: the folded constants, e.g. the (N, 100, 1)
    ones of the score, live as long as the backend): ONNX Runtime's scores, bucket by bucket."""
    g = _gpu(model, max_batch=1024)
    o = create_backend("onnxruntime", MODELS / f"{model}.onnx").load()
    for n in (1, 2, 3, 7, 13, 33, 50, 100, 200, 400, 700, 1024):
        x = _jets(n, seed=n)
        np.testing.assert_allclose(g.run(x)["score"], o.run(x)["score"], rtol=1e-4, err_msg=f"{model}, {n} jets")


def test_one_graph_per_bucket_and_no_device_allocation_at_run_time():
    g = _gpu("conv_vae", max_batch=48)
    assert g.buckets == bucket_sizes(48) and sorted(g._graphs) == g.buckets
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(g.torch_device)
    for n in (1, 2, 3, 9, 48, 100):
        g.run(_jets(n, seed=n))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated(g.torch_device) == before
    assert sorted(g._graphs) == g.buckets  # nothing captured at run time


def test_stream_per_instance_events_pinned_buffers_and_memory():
    a, b = _gpu("gcn_vae", max_batch=64), _gpu("gcn_vae", max_batch=64)
    default = torch.cuda.default_stream(a.torch_device).cuda_stream
    sa, sb = a.describe()["cuda_stream"], b.describe()["cuda_stream"]
    assert sa != sb and default not in (sa, sb)
    assert all(t.is_pinned() for ts in a._host_t.values() for t in ts)
    assert all(p.is_pinned() for pinned, _ in a._host_out.values() for p in pinned)
    for _ in range(20):
        a.run(_jets(9))
    c = a.counters
    assert c["chunks"] == 20 and c["padded_jets"] == 20 * 7
    assert c["h2d_bytes"] == 20 * 16 * 100 * 3 * 4 and c["d2h_bytes"] == 20 * 2 * 16 * 4
    assert c["h2d_us"] > 0 and c["compute_us"] > 0 and c["d2h_us"] > 0
    mem = a.describe()["device_memory"]
    assert set(mem) == {"bytes_in_use", "peak_bytes_in_use", "bytes_reserved", "peak_bytes_reserved", "bytes_limit"}
    assert 0 < mem["bytes_in_use"] <= mem["peak_bytes_in_use"] <= mem["peak_bytes_reserved"] <= mem["bytes_limit"]


def test_two_instances_in_two_threads_agree():
    """Two hltrun streams' backends on one GPU at once (their own CUDA streams and graphs)."""
    pair = [_gpu("conv_vae", max_batch=64) for _ in range(2)]
    x = _jets(37, seed=5)
    ref = create_backend("onnxruntime", MODELS / "conv_vae.onnx").load().run(x)["score"]
    for results in run_concurrently(pair, x, 50):
        for got in results:
            np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_peak_reset_per_cell_and_close_gives_the_cache_back():
    """What hltbench gpu-sweep's per-cell memory rests on, on the real allocator: after
    ``reset_device_peak`` the peak is the bytes in use; an op-by-op batch of 512 raises it by its
    activations while a CUDA-graph replay raises it by nothing; ``close`` gives the cached blocks back."""
    graphs = _gpu("conv_vae", max_batch=512)
    eager = _gpu("conv_vae", max_batch=512, graphs=False)
    for b in (graphs, eager):
        assert b.reset_device_peak() is True
        mem = b.device_memory()
        assert mem["peak_bytes_in_use"] == mem["bytes_in_use"] and mem["peak_bytes_reserved"] == mem["bytes_reserved"]
    graphs.run(_jets(512))
    mem = graphs.device_memory()
    assert mem["peak_bytes_in_use"] == mem["bytes_in_use"]  # a replay allocates nothing
    eager.run(_jets(512))
    mem = eager.device_memory()
    print("op by op, batch 512: peak", mem["peak_bytes_in_use"], "in use", mem["bytes_in_use"])
    assert mem["peak_bytes_in_use"] > mem["bytes_in_use"]  # the activations, freed at the end of the call
    reserved = mem["bytes_reserved"]
    graphs.close()
    eager.close()
    assert eager.device_memory()["bytes_reserved"] < reserved
    split = eager.device_split_ns()
    assert split["h2d_ns"] > 0 and split["compute_ns"] > 0 and split["d2h_ns"] > 0


# ---------------------------------------------------------------------- a recurrent network (cuDNN's RNN)
def _recurrent(path: Path, graphs: bool):
    return create_backend("torch", path, BackendOptions(max_batch=32, device="gpu", cuda_graphs=graphs)).load()


def _assert_fp32_recurrent(b) -> None:
    """TF32 off for cuDNN, its RNNs included (PyTorch 2.9+ defaults ``cudnn.rnn`` to tf32), and said so."""
    fp32 = b.describe()["fp32"]
    assert fp32["cudnn.allow_tf32"] == "False" and torch.backends.cudnn.allow_tf32 is False
    if hasattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision"):
        assert fp32["cudnn.rnn.fp32_precision"] == "ieee" == torch.backends.cudnn.rnn.fp32_precision


def _captured_or_xfail(b, path: Path, what: str, short: str, where: str) -> None:
    """Warm ``b`` up under CUDA graphs and print CAPTURED or REFUSED (gpu_check.sh's summary keeps those lines): a
    refusal must be one line naming the model and ``cuda_graphs: false``, and makes the test an expected failure."""
    try:
        b.warm_up()
    except ModuleError as exc:
        line = str(exc)
        print(f"{what} under CUDA graphs: capture REFUSED ({where}): {line}")
        assert "\n" not in line and str(path) in line and "cuda_graphs: false" in line, line
        pytest.xfail(f"CUDA refused to capture {short} ({where}), said in one line naming cuda_graphs: false")
    print(f"{what} under CUDA graphs: CAPTURED, one graph per bucket {sorted(b._graphs)} ({where})")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_recurrent_network_captures_as_cuda_graphs_or_says_cuda_graphs_false(op, tmp_path):
    """Whether cuDNN's RNN captures in a CUDA graph is CUDA's and cuDNN's to say: captured, one graph per bucket,
    none at run time and ONNX Runtime's scores (fp32); refused, one line naming the model and the way round it
    (``cuda_graphs: false``), and the test is an expected failure with that line. Which one happened is printed."""
    path = recurrent_anomaly_onnx(tmp_path / f"{op.lower()}.onnx", op)
    b = _recurrent(path, graphs=True)
    where = f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {b.device_label()}"
    _captured_or_xfail(b, path, f"recurrent {op}", f"cuDNN's {op}", where)
    assert b.describe()["executor"] == "cuda-graph" and sorted(b._graphs) == b.buckets
    _assert_fp32_recurrent(b)
    assert_agrees_in_every_bucket(b, path, f"torch cuda-graph {op}")
    assert sorted(b._graphs) == b.buckets  # nothing captured at run time


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_recurrent_network_runs_op_by_op_without_graphs(op, tmp_path):
    """``cuda_graphs: false``, the way a refused capture names: cuDNN's RNN op by op, ONNX Runtime's scores."""
    path = recurrent_anomaly_onnx(tmp_path / f"{op.lower()}.onnx", op)
    b = _recurrent(path, graphs=False)
    b.warm_up()
    assert b.describe()["executor"] == "eager" and not b._graphs
    _assert_fp32_recurrent(b)
    assert_agrees_in_every_bucket(b, path, f"torch eager {op}")


# ---------------------------------------------------------------------- session 39's translator forms
FORMS = ["if-on-values", "qdq-conv", "knn-gathernd"]


def _form(form: str, tmp_path: Path, graphs: bool):
    from tests.translated_forms import FORMS as BUILD

    path = BUILD[form](tmp_path / f"{form}.onnx")
    return path, create_backend("torch", path, BackendOptions(max_batch=32, device="gpu", cuda_graphs=graphs)).load()


def _also(form: str):
    from tests.translated_forms import low_pt

    return low_pt if form == "if-on-values" else None  # the If's jets also with the other branch's condition


@pytest.mark.parametrize("form", FORMS)
def test_a_translator_form_captures_as_cuda_graphs_or_says_cuda_graphs_false(form, tmp_path):
    """An If on the values (both branches, a ``where``: one graph per bucket gives either branch), a QDQ Conv
    (QuantizeLinear/DequantizeLinear) and a kNN EdgeConv (TopK, GatherND with batch_dims=1), tests/translated_forms.py:
    captured, one graph per bucket, none at run time, ONNX Runtime CPU's scores ≤ 1e-4 relative in every bucket (fp32);
    or refused in one line naming the model and ``cuda_graphs: false`` (xfail, printed). The same flow runs in CI
    against the CUDA stand-in (tests/test_torch_cuda_fake.py)."""
    path, b = _form(form, tmp_path, graphs=True)
    _captured_or_xfail(b, path, f"translator form {form}", form, f"torch {torch.__version__}, {b.device_label()}")
    assert b.device == "gpu-nvidia" and b.describe()["executor"] == "cuda-graph" and sorted(b._graphs) == b.buckets
    assert_agrees_in_every_bucket(b, path, f"torch cuda-graph {form}", also=_also(form))
    assert sorted(b._graphs) == b.buckets  # nothing captured at run time


@pytest.mark.parametrize("form", FORMS)
def test_a_translator_form_runs_op_by_op_without_graphs(form, tmp_path):
    """``cuda_graphs: false``, the way a refused capture names: the same forms op by op, ONNX Runtime's scores."""
    path, b = _form(form, tmp_path, graphs=False)
    b.warm_up()
    assert b.describe()["executor"] == "eager" and not b._graphs
    assert_agrees_in_every_bucket(b, path, f"torch eager {form}", also=_also(form))


# ---------------------------------------------------------------------- several inputs
@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
def test_a_several_input_network_agrees_in_every_bucket(graphs, tmp_path):
    """A ParticleNet-like EdgeConv (points, features, mask; tests/particlenet.py): one pinned host buffer and one
    static device input per model input and bucket, captured as one graph per bucket (or refused in one line naming
    ``cuda_graphs: false``: xfail, printed) or op by op; ONNX Runtime CPU's scores within the agreement criterion in
    every bucket, padded ones and a batch over max_batch included, the jets padded and masked as the source does."""
    from tests.agreement import assert_several_inputs_agree
    from tests.particlenet import particlenet_onnx

    path = particlenet_onnx(tmp_path / "pn.onnx")
    b = create_backend("torch", path, BackendOptions(max_batch=32, device="gpu", cuda_graphs=graphs)).load()
    if graphs:
        _captured_or_xfail(b, path, "several-input EdgeConv", "the EdgeConv", f"torch {torch.__version__}, "
                           f"{b.device_label()}")
    else:
        b.warm_up()
    assert all(len(b._dev_in[k]) == 3 and all(t.is_cuda for t in b._dev_in[k]) for k in b.buckets)
    assert all(t.is_pinned() for ts in b._host_t.values() for t in ts)
    assert_several_inputs_agree(b, path, f"torch {'cuda-graph' if graphs else 'eager'} several inputs")
    if graphs:
        assert sorted(b._graphs) == b.buckets  # nothing captured at run time
