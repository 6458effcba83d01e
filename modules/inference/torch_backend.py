"""PyTorch backend: the shipped ONNX model translated to PyTorch (``onnx_torch``), run on an NVIDIA GPU
the way the field runs small networks there, or on the CPU (the same code, tested in CI).

Why PyTorch beside JAX: it exposes what a GPU trigger path is built from — CUDA streams, CUDA events,
CUDA graphs, page-locked host memory, the caching allocator's statistics — where JAX hides them; and
it is the engine CMSSW's PyTorch interface runs. The model is not converted to a ``.pt`` file: the
ONNX graph every engine reads is translated once (``onnx_graph``) and specialised per batch bucket.

On a GPU (``device: auto`` when PyTorch sees one, or ``gpu``):

* one CUDA stream per backend instance, and the scorer has one instance per hltrun stream: hltrun's
  streams overlap their copies and kernels on the GPU as CMSSW's do;
* static shapes per bucket (``bucketed``), each captured once at warm-up as a CUDA graph
  (``torch.cuda.CUDAGraph``; the buckets of one instance share a memory pool) and replayed per call,
  so a call costs one copy in, one graph launch, one copy out — no per-op launches from Python;
  ``cuda_graphs: false`` runs the specialised graph op by op instead (to measure what the graphs buy);
* page-locked (pinned) host buffers per bucket for both copies, asynchronous on the instance's stream;
* H2D, compute and D2H timed with CUDA events recorded on that stream (device time of each part), into
  the shared counters; the caching allocator's figures (in use, peak, reserved, peak reserved, the
  device's total) in ``describe()['device_memory']`` under the same keys as the JAX backend; its peaks
  can be reset (``reset_device_peak``: hltbench gpu-sweep's per-cell peak).

On the CPU: the specialised graph traced once per bucket with ``torch.jit.trace`` (TorchScript, as
CMSSW loads PyTorch models), run on the host buffer itself (no copy, none counted); ``threads`` sets
``torch.set_num_threads`` (process-wide in PyTorch: every stream shares it).

fp32 only, TF32 turned off process-wide for matrix products and cuDNN convolutions (the agreement
criterion is fp32's); a reduced precision is not offered.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from hltrun.framework.errors import ModuleError
from hltrun.framework.extras import need

from . import torch_cuda
from .base import log
from .bucketed import BucketedBackend, Buffers, Executed


class TorchBackend(BucketedBackend):
    name = "torch"
    reads = frozenset(("threads", "max_batch", "cuda_graphs"))
    device = "cpu"

    def _load(self) -> None:
        torch = need("torch", f"torch: running {self.model_path} on PyTorch")
        need("array_api_compat", f"torch: running {self.model_path} on PyTorch")
        need("onnx", f"torch: reading {self.model_path}")
        from .onnx_torch import translate

        self.torch = torch
        self.torch_device = self._pick_device(torch)
        self.cuda = torch_cuda.cuda_for(torch, self.torch_device)  # None on the CPU
        on_gpu = self.cuda is not None
        self.device = "gpu-nvidia" if on_gpu else "cpu"
        self.copies = on_gpu
        self.cuda_graphs = on_gpu and bool(self.options.cuda_graphs)
        self._fp32 = fp32_only(torch)  # fp32 products and convolutions: the agreement criterion's precision
        if not on_gpu and torch.get_num_threads() != self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._use_graph(translate(self.model_path, device=self.torch_device))
        try:  # run once at batch 1: an attribute value the translator refuses fails now, not at warm-up
            with torch.inference_mode():
                self.graph.specialize(*(torch.zeros((1, *jet), device=self.torch_device) for jet in self._jet_shapes))
        except ModuleError:
            raise
        except Exception as exc:
            raise ModuleError(f"torch: cannot translate model {self.model_path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc
        self._calls: dict[int, Callable[..., tuple[Any, ...]]] = {}  # bucket -> traced / specialised graph
        self._host_t: dict[int, tuple[Any, ...]] = {}  # bucket -> the host buffers as tensors (pinned on a GPU)
        self._dev_in: dict[int, tuple[Any, ...]] = {}  # GPU: the bucket's static device inputs, one per input
        self._copies_in: dict[int, tuple[tuple[Any, Any], ...]] = {}  # GPU: (device input, its host buffer)
        self._dev_out: dict[int, tuple[Any, ...]] = {}  # GPU with graphs: the captured outputs
        self._host_out: dict[int, tuple[list[Any], list[np.ndarray]]] = {}  # GPU: pinned outputs, numpy views
        self._graphs: dict[int, Any] = {}
        self._stream: Any = None
        self._events: list[Any] = []
        self._pool: Any = None
        if self.cuda is not None:
            self._stream = self.cuda.new_stream()  # this instance's (this hltrun stream's)
            self._events = self.cuda.timing_events(4)  # around the copy in, the compute, the copy out
            self._pool = self.cuda.new_pool() if self.cuda_graphs else None

    def _pick_device(self, torch: Any) -> Any:
        want = self.wanted_device()
        gpu = want != "cpu" and torch.cuda.is_available()
        if want == "gpu" and not gpu:
            raise ModuleError(f"torch: device gpu requested for {self.model_path}, but PyTorch sees no CUDA GPU "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); install a "
                              f"CUDA build of torch on a machine with an NVIDIA GPU, or use device cpu")
        return torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")

    def device_label(self) -> str:
        return f"{self.cuda.name()} ({self.torch_device})" if self.cuda is not None else "cpu"

    # ------------------------------------------------------------------ prepare a bucket
    def _host_buffers(self, bucket: int) -> Buffers:
        """Zeroed (bucket, *jet) float32 host buffers, one per input: page-locked on a GPU (asynchronous copies)."""
        torch, shapes = self.torch, [(bucket, *jet) for jet in self._jet_shapes]
        ts = tuple(self.cuda.pinned_zeros(shape, torch.float32) if self.cuda is not None else torch.zeros(shape)
                   for shape in shapes)
        self._host_t[bucket] = ts
        return tuple(t.numpy() for t in ts)  # the same memory: the base class pads the batch into it

    def _prepare_bucket(self, bucket: int) -> None:
        torch = self.torch
        with torch.inference_mode():
            if not self.copies:
                self._calls[bucket] = self._traced(bucket)
                return
            cuda, s = self.cuda, self._stream
            cuda.after_current(s)  # nothing earlier is still writing
            with cuda.use(s):
                examples = tuple(torch.zeros((bucket, *jet), dtype=torch.float32, device=self.torch_device)
                                 for jet in self._jet_shapes)  # the static device inputs, one per model input
                run = self.graph.specialize(*examples)  # also moves the static values to the device, once
                for _ in range(2):  # warm the allocator and cuDNN's choices before a capture
                    outs = run(*examples)
            cuda.synchronize(s)
            # kept in both modes: a captured graph reads the device tensors the specialised graph holds
            # (its folded constants: a large ConstantOfShape is a device fill), so they must outlive it
            self._calls[bucket] = run
            self._dev_in[bucket] = examples
            self._copies_in[bucket] = tuple(zip(examples, self._host_t[bucket]))
            if self.cuda_graphs:
                try:
                    self._graphs[bucket], outs = cuda.capture(run, examples, self._pool, s)
                except RuntimeError as exc:  # CUDA refused something in the graph: say the way round it, first
                    # (PyTorch's CUDA errors run to 400 characters of advice: after them the way was cut off)
                    raise RuntimeError(f"while capturing the batch as a CUDA graph (cuda_graphs: false runs this "
                                       f"model op by op, without graphs): {exc}") from exc
                self._dev_out[bucket] = outs
            pinned = [cuda.pinned_zeros(o.shape, o.dtype) for o in outs]
            self._host_out[bucket] = (pinned, [p.numpy() for p in pinned])

    def _traced(self, bucket: int) -> Callable[[Any], tuple[Any, ...]]:
        """The bucket's specialised graph as TorchScript (no Python between ops); the eager graph if
        tracing refuses it (said once)."""
        torch = self.torch
        examples = self._host_t[bucket]
        run = self.graph.specialize(*examples)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about constants: every static value is one
                traced = torch.jit.trace(run, examples, check_trace=False)
                for _ in range(2):  # TorchScript's profiling runs: it optimises the graph after them
                    traced(*examples)
                return traced
        except Exception as exc:  # noqa: BLE001 - an op TorchScript cannot trace: eager, slower, same results
            log.warning("torch: %s not traceable for a batch of %d (%s); it runs op by op", self.model_path.name,
                        bucket, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                        extra={"once": True})
            return run

    # ------------------------------------------------------------------ run
    def _execute(self, bucket: int, bufs: Buffers) -> Executed:
        torch = self.torch
        if not self.copies:  # the CPU: the traced graph reads the host buffers themselves
            t0 = time.perf_counter_ns()
            with torch.inference_mode():
                outs = self._calls[bucket](*self._host_t[bucket])
            host = [o.numpy() for o in outs]
            return host, 0, time.perf_counter_ns() - t0, 0
        cuda, s, e = self.cuda, self._stream, self._events
        pinned, host = self._host_out[bucket]
        try:
            with torch.inference_mode(), cuda.use(s):
                e[0].record(s)
                for dev_in, host_in in self._copies_in[bucket]:  # one per input: the shipped models, one
                    dev_in.copy_(host_in, non_blocking=True)
                e[1].record(s)
                if self.cuda_graphs:
                    cuda.replay(self._graphs[bucket])
                    outs = self._dev_out[bucket]
                else:
                    outs = self._calls[bucket](*self._dev_in[bucket])
                e[2].record(s)
                for p, o in zip(pinned, outs):
                    p.copy_(o, non_blocking=True)
                e[3].record(s)
        except BaseException:
            cuda.synchronize(s)  # nothing of this call may still be copying when the host buffers are written again
            raise
        e[3].synchronize()
        ns = [round(1e6 * e[i].elapsed_time(e[i + 1])) for i in range(3)]
        return host, ns[0], ns[1], ns[2]

    # ------------------------------------------------------------------ describe, close
    def device_memory(self) -> dict[str, int] | None:
        """The caching allocator's figures on this device (JAX's key names); None on the CPU."""
        return self.cuda.memory() if self.cuda is not None else None

    def reset_device_peak(self) -> bool:
        """The caching allocator's peaks start again from its current figures (process-wide on the device)."""
        if self.cuda is None:
            return False
        self.cuda.reset_peak()
        return True

    def _describe(self) -> dict[str, Any]:
        torch = self.torch
        on_gpu = self.cuda is not None
        desc: dict[str, Any] = {
            "versions": {"torch": torch.__version__, "cuda": torch.version.cuda or "none"},
            "torch_device": self.device_label(), **self._bucketed_describe(),
            "executor": ("cuda-graph" if self.cuda_graphs else "eager") if on_gpu else "torchscript",
            "pinned_host_buffers": on_gpu, "intra_op_threads": torch.get_num_threads(),
            "fp32": self._fp32,
        }
        if self.cuda is not None:
            desc["cuda_stream"] = self.cuda.stream_id(self._stream)
            desc["device_memory"] = self.device_memory()
        return desc

    def close(self) -> None:
        """Drop the graphs, buffers and device copies of the weights, and give the caching allocator's
        now unoccupied blocks back to the device: what is reserved after a close is what live tensors
        hold (the next engine's reserved memory is its own)."""
        self._graphs, self._dev_out, self._dev_in, self._host_out, self._copies_in = {}, {}, {}, {}, {}
        self._calls, self._host_t, self._host, self._prepared = {}, {}, {}, set()
        graph = getattr(self, "graph", None)
        if graph is not None:
            graph.kernels.forget()
        if getattr(self, "cuda", None) is not None:
            self.cuda.release_cached()


def fp32_only(torch: Any) -> dict[str, str]:
    """TF32 off for matrix products, cuDNN convolutions and cuDNN's recurrent layers (``nn.LSTM``/``nn.GRU``, which
    the translator runs; ``cudnn.rnn`` defaults to tf32) process-wide in PyTorch: the legacy ``allow_tf32``
    flags, and the ``fp32_precision`` settings that replace them from PyTorch 2.9 where they exist. Returns the
    settings in force, for ``describe()``."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    settings = {"matmul.allow_tf32": "False", "cudnn.allow_tf32": "False"}
    cudnn = torch.backends.cudnn
    for name, owner in (("matmul", torch.backends.cuda.matmul), ("cudnn.conv", getattr(cudnn, "conv", None)),
                        ("cudnn.rnn", getattr(cudnn, "rnn", None))):
        if owner is not None and hasattr(owner, "fp32_precision"):
            owner.fp32_precision = "ieee"
            settings[f"{name}.fp32_precision"] = str(owner.fp32_precision)
    return settings
