"""The torch backend's GPU flow on the CPU, against a stand-in for ``torch.cuda`` that keeps the contracts
the backend relies on (runs in CI; the real GPU runs tests/test_torch_gpu.py):

* a capture may not make a tensor from host data or sync with the host (CUDA refuses both while a
  stream is capturing), and must run on the stream it is given;
* a captured graph keeps no Python object alive: what it reads must be kept by the caller (the fake
  holds the captured function weakly and refuses a replay once it is gone — the backend's first version
  dropped it, and a real replay would have read freed device memory);
* every event is recorded, on the backend's stream, before its time is read, and the last one is waited
  for first; timings are device times in ms (here: the host clock between records);
* the copies in and out go through page-locked buffers, one stream per instance;
* device memory as the caching allocator counts it: a capture allocates its intermediates and outputs
  from the graph's pool and frees the intermediates at its end (the peak keeps them), a replay allocates
  nothing, the outputs are freed with the graph; ``reset_peak`` starts the peaks again from the current
  figures (``torch.cuda.reset_peak_memory_stats``), ``release_cached`` gives back the unoccupied blocks
  (``torch.cuda.empty_cache``); in use <= peak and in use <= reserved always.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")

from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference import torch_backend, torch_cuda  # noqa: E402
from tests.agreement import run_concurrently  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
# host work a capture cannot contain (a host -> device copy, a host sync)
HOST_CALLS = {"tensor", "as_tensor", "from_numpy", "asarray", "scalar_tensor", "item", "tolist", "nonzero",
              "__bool__", "__int__", "__float__", "numpy", "masked_select"}
_IDS = itertools.count(1)


class _NoHostWork(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in HOST_CALLS:
            raise RuntimeError(f"operation not permitted when stream is capturing ({name})")
        return func(*args, **(kwargs or {}))


class FakeStream:
    def __init__(self) -> None:
        self.cuda_stream = next(_IDS)
        self.synced = 0


class FakeEvent:
    def __init__(self, cuda: "FakeCuda", blocking: bool) -> None:
        self.cuda, self.blocking, self.t_ns, self.stream, self.done = cuda, blocking, None, None, False

    def record(self, stream: FakeStream) -> None:
        assert self.cuda.current is stream, "event recorded outside the stream it names"
        self.t_ns, self.stream, self.done = time.perf_counter_ns(), stream, False

    def synchronize(self) -> None:
        """Waits for this event, and so (stream order) for every event recorded before it on its stream."""
        assert self.t_ns is not None, "waiting for an event that was never recorded"
        self.cuda.waits.append(self.blocking)
        for e in self.cuda.events:
            if e.stream is self.stream and e.t_ns is not None and e.t_ns <= self.t_ns:
                e.done = True

    def elapsed_time(self, end: "FakeEvent") -> float:
        if self.t_ns is None or end.t_ns is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        if not end.done:
            raise RuntimeError("the end event has not completed: wait for it first")
        return (end.t_ns - self.t_ns) / 1e6


class FakeGraph:
    """Replays the captured function into the captured outputs; holds the function only weakly."""

    def __init__(self, fn, examples, outs) -> None:
        self.fn, self.examples, self.outs = weakref.ref(fn), examples, outs

    def replay(self, cuda: "FakeCuda", stream: FakeStream) -> None:
        fn = self.fn()
        if fn is None:
            raise RuntimeError("illegal memory access: the graph reads device memory its owner freed")
        assert cuda.current is stream, "replay outside the capturing stream"
        for out, new in zip(self.outs, fn(*self.examples)):
            out.copy_(new)


def new_allocator() -> dict[str, int]:
    return {"bytes_in_use": 0, "peak_bytes_in_use": 0, "bytes_reserved": 0, "peak_bytes_reserved": 0}


class FakeCuda(torch_cuda.TorchCuda):
    """The CPU standing in for the device (tensors stay on the CPU), with the contracts above."""

    def __init__(self, allocator: dict[str, int] | None = None) -> None:
        super().__init__(torch, torch.device("cpu"))
        self.current: FakeStream | None = None
        self.pinned: set[int] = set()
        self.waits: list[bool] = []
        self.events: list[FakeEvent] = []
        self.captures = 0
        # the device's caching allocator: one per process and device, so the backends of a test share it
        self.allocator = allocator if allocator is not None else new_allocator()

    def name(self) -> str:
        return "Fake GPU"

    def new_stream(self) -> FakeStream:
        return FakeStream()

    def stream_id(self, stream: FakeStream) -> int:
        return stream.cuda_stream

    @contextlib.contextmanager
    def use(self, stream: FakeStream):
        before, self.current = self.current, stream
        try:
            yield stream
        finally:
            self.current = before

    def after_current(self, stream: FakeStream) -> None:
        pass

    def synchronize(self, stream: FakeStream) -> None:
        stream.synced += 1

    def timing_events(self, n: int) -> list[FakeEvent]:
        self.events = [FakeEvent(self, i == n - 1) for i in range(n)]
        return self.events

    def new_pool(self) -> object:
        return object()

    INTERMEDIATES = 4  # a capture's intermediates, in input sizes: allocated from the pool, freed at its end

    def _allocate(self, nbytes: int) -> None:
        a = self.allocator
        a["bytes_in_use"] += nbytes
        a["bytes_reserved"] = max(a["bytes_reserved"], a["bytes_in_use"])
        a["peak_bytes_in_use"] = max(a["peak_bytes_in_use"], a["bytes_in_use"])
        a["peak_bytes_reserved"] = max(a["peak_bytes_reserved"], a["bytes_reserved"])

    def _free(self, nbytes: int) -> None:
        self.allocator["bytes_in_use"] -= nbytes
        assert self.allocator["bytes_in_use"] >= 0, "freed more device memory than was allocated"

    def capture(self, fn, examples, pool, stream):
        assert pool is not None and type(examples) is tuple  # the static device inputs, one per model input
        self.captures += 1
        scratch = self.INTERMEDIATES * sum(e.nbytes for e in examples)
        self._allocate(scratch)
        with self.use(stream), _NoHostWork():
            outs = fn(*examples)
        kept = sum(o.nbytes for o in outs)
        self._allocate(kept)
        self._free(scratch)
        graph = FakeGraph(fn, examples, outs)
        weakref.finalize(graph, self._free, kept)  # the pool's outputs go with the graph
        return graph, outs

    def replay(self, graph: FakeGraph) -> None:
        graph.replay(self, self.current)

    def pinned_zeros(self, shape, dtype):
        t = torch.zeros(tuple(shape), dtype=dtype)
        self.pinned.add(t.data_ptr())
        return t

    def memory(self) -> dict[str, int]:
        a = self.allocator
        assert a["bytes_in_use"] <= min(a["peak_bytes_in_use"], a["bytes_reserved"]) <= a["peak_bytes_reserved"]
        return {**a, "bytes_limit": 80 << 30}

    def reset_peak(self) -> None:
        a = self.allocator
        a["peak_bytes_in_use"], a["peak_bytes_reserved"] = a["bytes_in_use"], a["bytes_reserved"]

    def release_cached(self) -> None:
        self.allocator["bytes_reserved"] = self.allocator["bytes_in_use"]


@pytest.fixture
def fake_gpu(monkeypatch):
    """Every torch backend made in the test gets its own FakeCuda (as each gets its own device side)."""
    made: list[FakeCuda] = []
    allocator = new_allocator()

    def cuda_for(torch_module, device):
        made.append(FakeCuda(allocator))
        return made[-1]

    monkeypatch.setattr(torch_cuda, "cuda_for", cuda_for)
    return made


def _backend(model: str, graphs: bool = True, max_batch: int = 64):
    b = create_backend("torch", MODELS / f"{model}.onnx",
                       BackendOptions(max_batch=max_batch, device="cpu", cuda_graphs=graphs)).load()
    b.warm_up()
    return b


def _jets(n: int, seed: int) -> np.ndarray:
    from tests.tiny_models import jets

    return jets(n, seed)


@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_gpu_flow_gives_onnxruntime_scores_in_every_bucket(fake_gpu, model, graphs):
    """Every bucket captured (or not) at warm-up, then batches in every bucket, after all captures:
    ONNX Runtime's scores; nothing captured at run time."""
    b = _backend(model, graphs)
    cuda = fake_gpu[-1]
    assert b.device == "gpu-nvidia" and b.describe()["executor"] == ("cuda-graph" if graphs else "eager")
    assert cuda.captures == (len(b.buckets) if graphs else 0)
    o = create_backend("onnxruntime", MODELS / f"{model}.onnx").load()
    for n in (1, 3, 7, 33, 50, 64, 100):
        x = _jets(n, seed=n)
        np.testing.assert_allclose(b.run(x)["score"], o.run(x)["score"], rtol=1e-4, err_msg=f"{n} jets")
    assert cuda.captures == (len(b.buckets) if graphs else 0)


def test_copies_events_counters_and_description(fake_gpu):
    b = _backend("gcn_vae")
    cuda = fake_gpu[-1]
    assert all(t.data_ptr() in cuda.pinned for ts in b._host_t.values() for t in ts)  # the padded inputs
    assert all(p.data_ptr() in cuda.pinned for pinned, _ in b._host_out.values() for p in pinned)  # the outputs
    cuda.waits.clear()
    for _ in range(5):
        b.run(_jets(9, seed=1))
    c = b.counters
    assert c["chunks"] == 5 and c["padded_jets"] == 5 * 7
    assert c["h2d_bytes"] == 5 * 16 * 100 * 3 * 4 and c["d2h_bytes"] == 5 * 2 * 16 * 4
    assert c["compute_us"] > 0
    assert cuda.waits == [True] * 5  # one wait per call, on the blocking-sync event
    desc = b.describe()
    assert desc["device_memory"] == cuda.memory() and desc["pinned_host_buffers"] is True
    assert desc["torch_device"] == "Fake GPU (cpu)" and desc["cuda_stream"] == b._stream.cuda_stream


def test_a_capture_that_needs_host_work_fails_in_one_line(fake_gpu, monkeypatch):
    """A graph whose captured run would copy from the host (a value lifted only at capture time) is a
    ModuleError at warm-up naming the model, as CUDA's refusal is."""
    b = create_backend("torch", MODELS / "gcn_vae.onnx", BackendOptions(max_batch=2, device="cpu")).load()
    lifted = b.graph.kernels.xp._lifted
    real = b.graph.specialize

    def forgetful(example):  # every call lifts its static values again, as without the cache
        run = real(example)

        def again(x):
            lifted.clear()
            return run(x)
        return again

    monkeypatch.setattr(b.graph, "specialize", forgetful)
    with pytest.raises(ModuleError, match=r"torch: model .*gcn_vae.onnx failed to prepare a batch of 1 jets: "
                                          r"RuntimeError: while capturing the batch as a CUDA graph \(cuda_graphs: "
                                          r"false runs this model op by op, without graphs\): operation not permitted "
                                          r"when stream is capturing"):
        b.warm_up()
    # the way round it said is one: the same model without graphs warms up (and captures nothing)
    eager = create_backend("torch", MODELS / "gcn_vae.onnx",
                           BackendOptions(max_batch=2, device="cpu", cuda_graphs=False)).load()
    monkeypatch.setattr(eager.graph, "specialize", forgetful)
    eager.warm_up()


# PyTorch 2.11's text of a CUDA error (c10/cuda/CUDAException.cpp, in libc10_cuda.so), as a refused capture raises it
CUDA_CAPTURE_ERROR = ("CUDA error: operation not permitted when stream is capturing\nSearch for "
                      "`cudaErrorStreamCaptureUnsupported' in https://docs.nvidia.com/cuda/cuda-runtime-api/"
                      "group__CUDART__TYPES.html for more information.\nCUDA kernel errors might be asynchronously "
                      "reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging "
                      "consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side "
                      "assertions.\n")


def test_a_capture_refused_with_cudas_own_long_message_still_names_cuda_graphs_false(fake_gpu, monkeypatch):
    """Until 2026-12-07 the way round (``cuda_graphs: false``) came after CUDA's message, and the one-line error is
    cut at 400 characters: PyTorch's CUDA errors (410 characters of advice) pushed it out of every real refusal."""
    b = create_backend("torch", MODELS / "gcn_vae.onnx", BackendOptions(max_batch=2, device="cpu")).load()

    def refuse(fn, example, pool, stream):
        raise RuntimeError(CUDA_CAPTURE_ERROR)

    monkeypatch.setattr(fake_gpu[-1], "capture", refuse)
    with pytest.raises(ModuleError) as info:
        b.warm_up()
    line = str(info.value)
    assert "\n" not in line and str(MODELS / "gcn_vae.onnx") in line, line
    assert "cuda_graphs: false runs this model op by op" in line and "operation not permitted when stream is capturing" in line, line


@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_recurrent_network_gives_onnxruntime_scores_in_every_bucket(fake_gpu, op, graphs, tmp_path):
    """The recurrent network tests/test_torch_gpu.py runs on a GPU (PyTorch's ``nn.LSTM``/``nn.GRU`` from an ONNX
    node), through the GPU flow here: captured per bucket (no host work in the capture) or op by op, then
    ONNX Runtime's scores in every bucket, nothing captured at run time."""
    pytest.importorskip("onnx")
    from tests.agreement import assert_agrees_in_every_bucket
    from tests.recurrent_models import recurrent_anomaly_onnx

    path = recurrent_anomaly_onnx(tmp_path / f"{op.lower()}.onnx", op)
    b = create_backend("torch", path, BackendOptions(max_batch=32, device="cpu", cuda_graphs=graphs)).load()
    b.warm_up()
    cuda = fake_gpu[-1]
    assert b.describe()["executor"] == ("cuda-graph" if graphs else "eager")
    assert cuda.captures == (len(b.buckets) if graphs else 0) and sorted(b._graphs) == (b.buckets if graphs else [])
    assert_agrees_in_every_bucket(b, path, f"fake GPU {op}")
    assert cuda.captures == (len(b.buckets) if graphs else 0)


@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
def test_a_several_input_network_gives_onnxruntime_scores_in_every_bucket(fake_gpu, graphs, tmp_path):
    """A ParticleNet-like EdgeConv (points, features, mask; tests/particlenet.py) through the GPU flow: one pinned
    host buffer and one static device input per model input and bucket, every one copied in before the graph
    (captured once per bucket, no host work in it) or the ops run; ONNX Runtime's scores in every bucket, padded
    ones and a batch over max_batch included. Refused at begin_job until 2026-12-07 ("feeds models with one input")."""
    pytest.importorskip("onnx")
    from hltrun.modules.inference.autoselect import beyond_rounding, sample_inputs
    from hltrun.modules.inference.base import AGREEMENT_RTOL
    from hltrun.modules.inference.bucketed import bucket_for
    from tests.particlenet import particlenet_onnx

    path = particlenet_onnx(tmp_path / "pn.onnx")
    b = create_backend("torch", path, BackendOptions(max_batch=8, device="cpu", cuda_graphs=graphs)).load()
    b.warm_up()
    cuda = fake_gpu[-1]
    assert cuda.captures == (len(b.buckets) if graphs else 0)
    assert all(len(b._dev_in[k]) == len(b._host_t[k]) == 3 for k in b.buckets)
    assert all(t.data_ptr() in cuda.pinned for ts in b._host_t.values() for t in ts)
    reference = create_backend("onnxruntime", path).load()
    before = dict(b.counters)
    batches = (1, 2, 3, 5, 8, 11, 3)
    for n in batches:
        xs = sample_inputs(reference, n, seed=n)
        got, want = b.run(xs)["score"], reference.run(xs)["score"]
        assert beyond_rounding({"score": got}, {"score": want}) <= AGREEMENT_RTOL, (n, got, want)
    assert cuda.captures == (len(b.buckets) if graphs else 0)  # nothing captured at run time
    chunks = [m for n in batches for m in [8] * (n // 8) + [n % 8] if m]
    copied = sum(bucket_for(m, b.buckets) for m in chunks) * 4 * 16 * (2 + 2 + 1)  # every input, padded jets too
    assert b.counters["h2d_bytes"] - before["h2d_bytes"] == copied


@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graphs", "op-by-op"])
@pytest.mark.parametrize("form", ["if-on-values", "qdq-conv", "knn-gathernd"])
def test_session_39s_translator_forms_give_onnxruntime_scores_in_every_bucket(fake_gpu, form, graphs, tmp_path):
    """The forms tests/test_torch_gpu.py runs on a GPU (an If on the values: both branches and a ``where``; a QDQ
    Conv; TopK and GatherND with batch_dims=1), through the GPU flow here: captured per bucket (no host work in the
    capture) or op by op, then ONNX Runtime's scores in every bucket (the If's jets also with their pT lowered, so
    that one captured graph per bucket gives either branch), nothing captured at run time."""
    pytest.importorskip("onnx")
    from tests.agreement import assert_agrees_in_every_bucket
    from tests.translated_forms import FORMS, low_pt

    path = FORMS[form](tmp_path / f"{form}.onnx")
    b = create_backend("torch", path, BackendOptions(max_batch=32, device="cpu", cuda_graphs=graphs)).load()
    b.warm_up()
    cuda = fake_gpu[-1]
    assert b.describe()["executor"] == ("cuda-graph" if graphs else "eager")
    assert cuda.captures == (len(b.buckets) if graphs else 0) and sorted(b._graphs) == (b.buckets if graphs else [])
    assert_agrees_in_every_bucket(b, path, f"fake GPU {form}", also=low_pt if form == "if-on-values" else None)
    assert cuda.captures == (len(b.buckets) if graphs else 0)


def test_two_instances_have_their_own_streams_and_agree(fake_gpu):
    pair = [_backend("conv_vae") for _ in range(2)]
    assert pair[0]._stream.cuda_stream != pair[1]._stream.cuda_stream
    x = _jets(37, seed=5)
    ref = create_backend("onnxruntime", MODELS / "conv_vae.onnx").load().run(x)["score"]
    for results in run_concurrently(pair, x, 5):
        for got in results:
            np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_the_captured_function_must_be_kept(fake_gpu, monkeypatch):
    """The fake's replay fails when the specialised graph a capture read is gone: what the backend's
    first version did (it kept the function only in op-by-op mode)."""
    b = _backend("conv_vae", max_batch=4)
    b.run(_jets(3, seed=2))
    b._calls.clear()  # as if the backend had not kept them
    import gc

    gc.collect()
    with pytest.raises(ModuleError, match="illegal memory access"):
        b.run(_jets(3, seed=2))


def test_gpu_sweep_memory_and_split_per_engine_and_batch(fake_gpu, monkeypatch):
    """hltbench gpu-sweep on the GPU flow: each cell's device memory is the engine's own (what the earlier
    engine and model left is not counted), its peak the cell's (reset at its start: a CUDA-graph replay
    allocates nothing, so the peak is what the captured graphs hold, not the captures' scratch of every
    bucket), the process's reserved memory that engine's alone (a closed engine gives its cache back);
    H2D / compute / D2H exact per call (1.6 / 5.2 / 1.4 µs from the events, not whole µs)."""
    from hltrun.tools.bench import gpu_sweep

    real = FakeEvent.elapsed_time
    parts = {0: 0.0016, 1: 0.0052, 2: 0.0014}  # ms between events 0-1, 1-2, 2-3

    def fixed(self, end):
        real(self, end)  # the contract: both recorded, the end one waited for
        return parts[self.cuda.events.index(self)]

    monkeypatch.setattr(FakeEvent, "elapsed_time", fixed)
    rows = gpu_sweep.sweep(["conv_vae", "gcn_vae"], [1, 8], "cpu", 7, False, MODELS, ["torch", "torch-eager"])
    buckets = [1, 2, 4, 8]
    outputs = sum(2 * 4 * b for b in buckets)  # score and kl, float32, per bucket: what the graphs keep
    scratch = FakeCuda.INTERMEDIATES * max(buckets) * 100 * 3 * 4  # the largest capture's, its pool reused
    assert len(rows) == 8
    for r in rows:
        assert (r["h2d_ms"], r["compute_ms"], r["d2h_ms"]) == (0.0016, 0.0052, 0.0014)
        assert r["copy_share"] == pytest.approx(3.0 / 8.2) and "device_process_peak_bytes" not in r
        graphs = r["engine"] == "torch"
        assert r["device_bytes_in_use"] == r["device_peak_bytes"] == (outputs if graphs else 0), r
        assert r["device_process_reserved_bytes"] == (outputs + scratch if graphs else 0), r
    assert all(c.allocator["bytes_in_use"] == c.allocator["bytes_reserved"] == 0 for c in fake_gpu)  # all closed


def test_gpu_sweep_feeds_a_several_input_network_its_declared_inputs(fake_gpu, tmp_path):
    """hltbench gpu-sweep on a user's ParticleNet-like model (points, features, mask; tests/particlenet.py) through
    the GPU flow: every engine and batch timed, each call copying in the three declared inputs (padded to the
    bucket). Until 2026-12-07 the sweep fed every model (N, 100, 3) jets and stopped at its first engine with
    "1 input array(s) for a model with 3 declared inputs", on a GPU as on the CPU."""
    pytest.importorskip("onnx")
    from hltrun.tools.bench import gpu_sweep
    from tests.particlenet import particlenet_onnx

    particlenet_onnx(tmp_path / "pn.onnx")
    batches = [1, 3, 8]
    rows = gpu_sweep.sweep(["pn"], batches, "cpu", 3, True, tmp_path, ["torch", "torch-eager"])
    assert [(r["engine"], r["batch"]) for r in rows] == [(e, b) for e in ("torch", "torch-eager", "onnxruntime")
                                                        for b in batches]
    assert {r["device"] for r in rows if r["engine"] != "onnxruntime"} == {"gpu-nvidia"}
    assert [c.captures for c in fake_gpu] == [4, 0]  # buckets 1, 2, 4, 8 captured by the CUDA-graph engine only
    assert all(r["h2d_ms"] >= 0 and r["compute_ms"] > 0 for r in rows if r["engine"] != "onnxruntime")


def test_torch_cuda_memory_calls_are_torch_cudas_on_its_device(monkeypatch):
    """``TorchCuda``'s allocator calls, as torch.cuda names them (torch 2.x), each given the device."""
    calls: list[tuple[str, object]] = []
    device = torch.device("cuda", 0)
    for name in ("reset_peak_memory_stats", "memory_allocated", "max_memory_allocated", "memory_reserved",
                 "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, lambda dev=None, _name=name: calls.append((_name, dev)) or 7)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty_cache", None)))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: SimpleNamespace(total_memory=9))
    cuda = torch_cuda.TorchCuda(torch, device)
    cuda.reset_peak()
    cuda.release_cached()
    assert cuda.memory() == {"bytes_in_use": 7, "peak_bytes_in_use": 7, "bytes_reserved": 7,
                             "peak_bytes_reserved": 7, "bytes_limit": 9}
    assert calls[:2] == [("reset_peak_memory_stats", device), ("empty_cache", None)]
    assert all(dev is device for name, dev in calls[2:])
