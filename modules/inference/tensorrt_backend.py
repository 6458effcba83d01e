"""TensorRT backend (TensorRT 10 and 11 Python API), with its own host<->device copy accounting.

The ONNX model is compiled into an engine with one optimisation profile for the dynamic batch
(min 1, opt ``opt_batch``, max ``max_batch``), which gives every input its shapes (a model with several
inputs, ParticleNet's points, features, mask: each one's, the batch varied alike); the serialized engine
is cached on disk under a name
that holds the ONNX file's sha256, the GPU name, the TensorRT version, the precision and the
profile, so a different model, card or TensorRT never picks up a stale engine.

Precision: FP32 by default. ``precision: fp16`` uses TensorRT 10's weak typing
(``BuilderFlag.FP16``) where ``builder.platform_has_fast_fp16``; TensorRT 11 removed both (strong
typing only: FP16 must be baked into the ONNX file, e.g. with ModelOpt AutoCast), so there an
explicit fp16 request is an error, never a silent FP32 engine.

Memory: pinned host buffers and device buffers are allocated once for ``max_batch`` jets, through
pycuda or, when pycuda is absent, cuda-python's runtime bindings (``cuda.bindings.runtime``,
cuda-python/cuda-bindings 12.6 or later; the old ``cuda.cudart`` module is gone in 13). Every buffer
has the engine's own dtype (an FP16-I/O engine, as TensorRT 11's AutoCast writes, gets float16
buffers and copies) and the size of the tensor at the profile's maximum batch as the execution
context reports it (an (N, k) output gets k values per jet). Each input is bound by its tensor name
(``set_input_shape``, ``set_tensor_address``), with its own pair of buffers. Each batch is one H2D copy of the jets
(one per input),
``execute_async_v3`` on the backend's stream (its integer handle), and one small D2H copy per
requested output (the score is computed inside the graph, so 8 bytes per jet come back instead of a
100x3 reconstruction). CUDA events around the copies give their time; bytes, counts and times go to
``counters``. ``close`` frees the buffers and destroys the stream and events.
"""

from __future__ import annotations

import ctypes
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hltrun.framework.atomic import write_bytes
from hltrun.framework.destinations import fit_name
from hltrun.framework.errors import ModuleError
from hltrun.framework.extras import need

from .base import InferenceBackend, check_input_shape, log
from .machine import CACHE_STEM_BYTES, engine_cache_dir, model_digest

MIN_TRT_MAJOR = 10


# ---------------------------------------------------------------------- CUDA memory, two bindings
class CudaApi:
    """The few CUDA runtime calls the backend needs, behind one face for pycuda and cuda-python."""

    binding = "none"

    def device_count(self) -> int: raise NotImplementedError
    def device_name(self) -> str: raise NotImplementedError
    def activate(self) -> None: """Make the device context current in this thread."""
    def deactivate(self) -> None: """Undo ``activate``."""
    def host_empty(self, n: int, dtype: np.dtype) -> np.ndarray: raise NotImplementedError
    def device_alloc(self, nbytes: int) -> Any: raise NotImplementedError
    def device_ptr(self, mem: Any) -> int: raise NotImplementedError
    def stream(self) -> Any: raise NotImplementedError
    def stream_handle(self, stream: Any) -> int: raise NotImplementedError
    def synchronize(self, stream: Any) -> None: raise NotImplementedError
    def h2d(self, dst: Any, src: np.ndarray, nbytes: int, stream: Any) -> None: raise NotImplementedError
    def d2h(self, dst: np.ndarray, src: Any, nbytes: int, stream: Any) -> None: raise NotImplementedError
    def event(self) -> Any: raise NotImplementedError
    def record(self, event: Any, stream: Any) -> None: raise NotImplementedError
    def elapsed_ms(self, start: Any, end: Any) -> float: raise NotImplementedError
    def free(self, host: list[np.ndarray], device: list[Any]) -> None: """Release buffers."""
    def destroy(self, stream: Any, events: list[Any]) -> None: """Destroy a stream and events."""


class PyCudaApi(CudaApi):
    """pycuda on the device's primary context (the one TensorRT's runtime calls use)."""

    binding = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as drv

        self.drv = drv
        try:
            drv.init()
        except drv.Error as exc:  # cuInit reports "no CUDA-capable device" as an error
            if "no CUDA-capable device" not in str(exc):
                raise
            self.dev = self.ctx = None
            return
        self.dev = drv.Device(0) if drv.Device.count() else None
        self.ctx = self.dev.retain_primary_context() if self.dev is not None else None

    def device_count(self) -> int: return self.drv.Device.count() if self.dev is not None else 0
    def device_name(self) -> str: return self.dev.name()
    def activate(self) -> None: self.ctx.push()
    def deactivate(self) -> None: self.drv.Context.pop()
    def host_empty(self, n: int, dtype: np.dtype) -> np.ndarray: return self.drv.pagelocked_empty(n, dtype)
    def device_alloc(self, nbytes: int) -> Any: return self.drv.mem_alloc(nbytes)
    def device_ptr(self, mem: Any) -> int: return int(mem)
    def stream(self) -> Any: return self.drv.Stream()
    def stream_handle(self, stream: Any) -> int: return stream.handle
    def synchronize(self, stream: Any) -> None: stream.synchronize()

    def h2d(self, dst: Any, src: np.ndarray, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src.reshape(-1).view(np.uint8)[:nbytes], stream)

    def d2h(self, dst: np.ndarray, src: Any, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst.reshape(-1).view(np.uint8)[:nbytes], src, stream)

    def event(self) -> Any: return self.drv.Event()
    def record(self, event: Any, stream: Any) -> None: event.record(stream)
    def elapsed_ms(self, start: Any, end: Any) -> float: return float(start.time_till(end))

    def free(self, host: list[np.ndarray], device: list[Any]) -> None:
        for mem in device:
            mem.free()

    def destroy(self, stream: Any, events: list[Any]) -> None:
        """pycuda destroys a stream or event with its last Python reference: the caller drops them."""


class CudaPythonApi(CudaApi):
    """cuda-python runtime bindings: ``cuda.bindings.runtime`` (cuda-python / cuda-bindings >= 12.6;
    the pre-12.6 ``cuda.cudart`` module no longer exists in 13). Every call returns ``(error, *values)``."""

    binding = "cuda-python"
    NO_DEVICE = ("cudaErrorNoDevice", "cudaErrorInsufficientDriver")

    def __init__(self) -> None:
        from cuda.bindings import runtime as cudart

        self.rt = cudart
        self._host_ptrs: dict[int, int] = {}

    def _call(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ModuleError(f"tensorrt: CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def device_count(self) -> int:
        """0 when the runtime says there is no device or no driver (an error code, not a count)."""
        err, count = self.rt.cudaGetDeviceCount()
        if err != self.rt.cudaError_t.cudaSuccess and getattr(err, "name", "") in self.NO_DEVICE:
            return 0
        return int(self._call((err, count)))

    def device_name(self) -> str:
        name = self._call(self.rt.cudaGetDeviceProperties(0)).name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()

    def host_empty(self, n: int, dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        ptr = int(self._call(self.rt.cudaMallocHost(n * dtype.itemsize)))
        buf = (ctypes.c_byte * (n * dtype.itemsize)).from_address(ptr)
        arr = np.frombuffer(buf, dtype=dtype, count=n)
        self._host_ptrs[id(arr)] = ptr
        return arr

    def device_alloc(self, nbytes: int) -> Any: return self._call(self.rt.cudaMalloc(nbytes))
    def device_ptr(self, mem: Any) -> int: return int(mem)
    def stream(self) -> Any: return self._call(self.rt.cudaStreamCreate())
    def stream_handle(self, stream: Any) -> int: return int(stream)
    def synchronize(self, stream: Any) -> None: self._call(self.rt.cudaStreamSynchronize(stream))

    def h2d(self, dst: Any, src: np.ndarray, nbytes: int, stream: Any) -> None:
        self._call(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes,
                                           self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, dst: np.ndarray, src: Any, nbytes: int, stream: Any) -> None:
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes,
                                           self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def event(self) -> Any: return self._call(self.rt.cudaEventCreate())
    def record(self, event: Any, stream: Any) -> None: self._call(self.rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._call(self.rt.cudaEventSynchronize(end))
        return float(self._call(self.rt.cudaEventElapsedTime(start, end)))

    def free(self, host: list[np.ndarray], device: list[Any]) -> None:
        for mem in device:
            self._call(self.rt.cudaFree(mem))
        for arr in host:
            ptr = self._host_ptrs.pop(id(arr), None)
            if ptr is not None:
                self._call(self.rt.cudaFreeHost(ptr))

    def destroy(self, stream: Any, events: list[Any]) -> None:
        for event in events:
            self._call(self.rt.cudaEventDestroy(event))
        self._call(self.rt.cudaStreamDestroy(stream))


def cuda_api() -> CudaApi:
    """pycuda if importable, else cuda-python; a clear error when neither is installed."""
    errors = []
    for cls in (PyCudaApi, CudaPythonApi):
        try:
            return cls()
        except ImportError as exc:
            errors.append(f"{cls.binding}: {exc}")
        except Exception as exc:  # driver present but broken (no device, driver mismatch)
            raise ModuleError(f"tensorrt: CUDA initialisation through {cls.binding} failed: {exc}") from exc
    raise ModuleError("tensorrt: needs pycuda or cuda-python for device memory; neither is importable ("
                      + "; ".join(errors) + ")")


# ---------------------------------------------------------------------- engine build and cache
@dataclass(frozen=True)
class BuildSettings:
    """Everything the builder is told that changes the engine; all of it is in the cache key."""

    precision: str = "fp32"
    opt_batch: int = 9
    max_batch: int = 1024
    workspace: int = 1 << 30  # bytes: bounds the tactics TensorRT may choose
    tf32: bool = False  # off: FP32 must agree with the CPU backends

    def key(self) -> str:
        return (f"{self.precision}-tf32_{'on' if self.tf32 else 'off'}-ws{self.workspace >> 20}M"
                f"-b1_{self.opt_batch}_{self.max_batch}")


def engine_cache_path(onnx_path: Path, cache_dir: Path, gpu_name: str, trt_version: str,
                      settings: BuildSettings) -> Path:
    """Cache key: ONNX content hash (external data included), GPU, TensorRT version and every build setting."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name).strip("_") or "gpu"
    key = f"{model_digest(onnx_path)[:16]}-{gpu}-trt{trt_version}-{settings.key()}"
    return cache_dir / f"{fit_name(onnx_path.stem, CACHE_STEM_BYTES)}-{key}.engine"  # a 255-byte model name fits


def fp16_supported(trt: Any, builder: Any) -> bool:
    """TensorRT 10 weak typing only: the flag and the platform query are gone in TensorRT 11."""
    return hasattr(trt.BuilderFlag, "FP16") and bool(getattr(builder, "platform_has_fast_fp16", False))


def jet_shapes(network: Any, onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """Input name -> one jet's shape (static), for every input of the parsed network in its order: the profile
    varies the batch only. A shape it cannot vary so is one line naming the input (a one-input model with a fixed
    batch: the shared refusal, as before several inputs were fed)."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    jets: dict[str, tuple[int, ...]] = {}
    for inp in inputs:
        shape = tuple(inp.shape)
        if len(inputs) == 1 and (len(shape) < 2 or shape[0] >= 0):  # a fixed batch: the shared one-line refusal
            check_input_shape(shape, onnx_path)
        if len(shape) < 2 or shape[0] >= 0 or any(d < 0 for d in shape[1:]):
            raise ModuleError(f"tensorrt: model {onnx_path} input {inp.name!r} has shape {shape}; TensorRT profiles "
                              f"here vary the batch only: export it with a dynamic first axis and the other "
                              f"dimensions static")
        jets[inp.name] = shape[1:]
    return jets


def build_serialized_engine(trt: Any, logger: Any, onnx_path: Path, settings: BuildSettings) -> bytes:
    """Parse the ONNX file, check its inputs, build the engine with one dynamic-batch profile giving every input
    its min/opt/max (a dynamic input missing from the profile fails TensorRT's build)."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModuleError(f"tensorrt: cannot parse ONNX model {onnx_path}: {errors[:300]}")
    jets = jet_shapes(network, Path(onnx_path))
    precision, opt_batch, max_batch = settings.precision, settings.opt_batch, settings.max_batch
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace)
    profile = builder.create_optimization_profile()
    for name, jet in jets.items():
        profile.set_shape(name, (1, *jet), (opt_batch, *jet), (max_batch, *jet))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        if not fp16_supported(trt, builder):
            raise ModuleError(f"tensorrt: precision fp16 requested for {onnx_path}, but TensorRT "
                              f"{trt.__version__} on this GPU has no weak-typed FP16 (TensorRT 11 needs an "
                              f"FP16 ONNX file, e.g. from ModelOpt AutoCast); use precision: fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    if not settings.tf32 and hasattr(trt.BuilderFlag, "TF32"):  # TF32 is on by default
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModuleError(f"tensorrt: engine build failed for {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


# ---------------------------------------------------------------------- the backend
class TensorRTBackend(InferenceBackend):
    name = "tensorrt"
    reads = frozenset(("max_batch", "engine_cache"))
    model_suffixes = (".onnx",)
    precisions = ("fp32", "fp16")
    precision_hint = "; for INT8 use an explicitly quantised (Q/DQ) ONNX model"
    device = "gpu-nvidia"

    def _load(self) -> None:
        trt = need("tensorrt", f"tensorrt: running {self.model_path} on TensorRT")
        if int(trt.__version__.split(".")[0]) < MIN_TRT_MAJOR:
            raise ModuleError(f"tensorrt: TensorRT {trt.__version__} found, hltrun needs {MIN_TRT_MAJOR} or later")
        self.trt = trt
        self.cuda = cuda_api()
        if self.cuda.device_count() < 1:
            raise ModuleError(f"tensorrt: no NVIDIA GPU visible; cannot run {self.model_path} on TensorRT")
        self.gpu_name = self.cuda.device_name()
        opts = self.options
        self.precision = "fp32" if opts.precision in ("auto", "fp32") else opts.precision  # ``precisions``: at load
        self.max_batch, self.opt_batch = int(opts.max_batch), int(min(opts.opt_batch, opts.max_batch))
        self.settings = BuildSettings(self.precision, self.opt_batch, self.max_batch)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.cuda.activate()
        try:
            self.engine = self._engine()
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise ModuleError(f"tensorrt: cannot create an execution context for {self.model_path}")
            self._allocate()
        finally:
            self.cuda.deactivate()
        # integers (times in microseconds) so that the report can add them over streams
        self.counters.update({"chunks": 0, "h2d_bytes": 0, "h2d_us": 0, "d2h_copies": 0,
                              "d2h_bytes": 0, "d2h_us": 0, "compute_us": 0})
        self._split_ns = {"h2d_ns": 0, "compute_ns": 0, "d2h_ns": 0}  # exact: the µs counters are their floor

    def _engine(self) -> Any:
        """Deserialize the cached engine, or build and cache it (atomically) on first use."""
        trt, opts = self.trt, self.options
        cache_dir = engine_cache_dir(opts, lambda: self.model_path.parent / "engines")
        path = engine_cache_path(self.model_path, cache_dir, self.gpu_name, trt.__version__, self.settings)
        self.engine_path = path
        runtime = trt.Runtime(self.logger)
        self._runtime = runtime  # the engine must not outlive its runtime
        if path.is_file():
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is not None:
                log.info("tensorrt: engine %s loaded from cache", path, extra={"once": True})
                return engine
            log.warning("tensorrt: cached engine %s unusable; rebuilding", path, extra={"once": True})
        log.info("tensorrt: building engine for %s (%s, batch 1/%d/%d) on %s", self.model_path,
                 self.precision, self.opt_batch, self.max_batch, self.gpu_name, extra={"once": True})
        blob = build_serialized_engine(trt, self.logger, self.model_path, self.settings)
        try:
            write_bytes(path, blob, "tensorrt engine cache")
        except ModuleError as exc:  # a read-only model folder must not stop the job
            log.warning("tensorrt: %s; the engine is not cached", exc, extra={"once": True})
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise ModuleError(f"tensorrt: cannot deserialize the engine just built for {self.model_path}")
        return engine

    def _allocate(self) -> None:
        """Pinned host + device buffers for ``max_batch`` jets in each tensor's own dtype and per-jet
        size (from the context at the profile's maximum, every input's shape set); tensor addresses set once, by
        name. Several inputs: one pair of buffers each, bound by its tensor name, in the engine's input order."""
        trt, engine, cuda, ctx = self.trt, self.engine, self.cuda, self.context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input_name = self.input_names[0]
        self._outputs = [n for n in names if n not in self.input_names]
        self._shapes = {n: tuple(engine.get_tensor_shape(n)) for n in self.input_names}
        self._shape = self._shapes[self.input_name]
        for name in self.input_names:
            if not ctx.set_input_shape(name, (self.max_batch, *self._shapes[name][1:])):
                raise ModuleError(f"tensorrt: engine for {self.model_path} rejects its own maximum batch "
                                  f"{self.max_batch} for input {name!r}")
        unset = ctx.infer_shapes()  # every input has its shape? (all_binding_shapes_specified ignores set_input_shape)
        if unset:
            raise ModuleError(f"tensorrt: engine for {self.model_path} has input(s) {list(unset)} without a shape")
        self.width: dict[str, int] = {}  # values per jet
        for name in names:
            shape = tuple(ctx.get_tensor_shape(name))
            if len(shape) < 1 or shape[0] != self.max_batch or any(d < 0 for d in shape):
                raise ModuleError(f"tensorrt: tensor {name!r} of {self.model_path} has shape {shape} at batch "
                                  f"{self.max_batch}; expected ({self.max_batch}, ...) with static other dimensions")
            self.width[name] = math.prod(shape[1:])
        self.resolve_outputs()  # the outputs fetched per call, before they are checked and copied
        wide = [n for n in self.output_names if n in self.width and self.width[n] != 1]
        if wide:
            raise ModuleError(f"tensorrt: output(s) {wide} of {self.model_path} are not one value per jet")
        self.stream = cuda.stream()
        self.events = [cuda.event() for _ in range(4)]
        self.host: dict[str, np.ndarray] = {}
        self.dev: dict[str, Any] = {}
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            n = self.max_batch * self.width[name]
            self.host[name] = cuda.host_empty(n, dtype)
            self.dev[name] = cuda.device_alloc(n * dtype.itemsize)
            if not ctx.set_tensor_address(name, cuda.device_ptr(self.dev[name])):
                raise ModuleError(f"tensorrt: engine for {self.model_path} has no tensor {name!r} to bind")

    def _input_shape(self) -> tuple[Any, ...]:
        return self._shape

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every input, in the engine's order (the network's): ``settle_inputs`` checks each one's static dimensions
        against the declaration, one line naming the input."""
        return [(name, self._shapes[name]) for name in self.input_names]

    def _output_names(self) -> Sequence[str]:
        return self._outputs

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self._run_inputs((x,))

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """One array per input, in the engine's input order (the contract's, matched by name at load). Batches
        above ``max_batch`` run in profile-sized chunks, every input sliced alike."""
        n = len(xs[0])
        out = {k: np.empty(n, np.float32) for k in self.output_names}
        self.cuda.activate()
        try:
            for start in range(0, n, self.max_batch):
                self._run_chunk(tuple(x[start:start + self.max_batch] for x in xs), out, start)
        finally:
            self.cuda.deactivate()
        return out

    def _run_chunk(self, xs: tuple[np.ndarray, ...], out: dict[str, np.ndarray], start: int) -> None:
        """Each input's shape set and its jets copied by its own tensor name (one H2D copy per input), one launch,
        the D2H copies of the requested outputs."""
        cuda, ctx, c, (e0, e1, e2, e3) = self.cuda, self.context, self.counters, self.events
        m = len(xs[0])
        in_bytes = 0
        for name, x in zip(self.input_names, xs):
            if not ctx.set_input_shape(name, (m, *self._shapes[name][1:])):
                raise ModuleError(f"tensorrt: batch of {m} jets outside the engine profile of {self.model_path}")
            host_in = self.host[name]
            host_in[: x.size] = x.reshape(-1)  # casts to the engine's input dtype (float16 for FP16 I/O)
        cuda.record(e0, self.stream)
        for name, x in zip(self.input_names, xs):
            nbytes = x.size * self.host[name].itemsize
            cuda.h2d(self.dev[name], self.host[name], nbytes, self.stream)
            in_bytes += nbytes
        cuda.record(e1, self.stream)
        if not ctx.execute_async_v3(cuda.stream_handle(self.stream)):
            raise ModuleError(f"tensorrt: execute_async_v3 failed for {self.model_path}")
        cuda.record(e2, self.stream)
        for name in self.output_names:
            cuda.d2h(self.host[name], self.dev[name], m * self.host[name].itemsize, self.stream)
        cuda.record(e3, self.stream)
        cuda.synchronize(self.stream)
        for name in self.output_names:
            out[name][start:start + m] = self.host[name][:m]
        c["chunks"] += 1  # the H2D copies (one per input), one launch, the D2H copies: one device call
        c["h2d_bytes"] += in_bytes
        c["d2h_copies"] += len(self.output_names)
        c["d2h_bytes"] += m * sum(self.host[n].itemsize for n in self.output_names)
        self._count_split(*(round(1e6 * cuda.elapsed_ms(a, b)) for a, b in ((e0, e1), (e1, e2), (e2, e3))))

    def _describe(self) -> dict[str, Any]:
        return {"versions": {"tensorrt": self.trt.__version__, "cuda_binding": self.cuda.binding},
                "gpu": self.gpu_name, "precision": self.precision, "engine": str(self.engine_path),
                "profile": {"min": 1, "opt": self.opt_batch, "max": self.max_batch}}

    def close(self) -> None:
        """Free the buffers, destroy the stream and events; a second call does nothing."""
        if getattr(self, "host", None) is None:
            return
        self.cuda.activate()
        try:
            self.cuda.free(list(self.host.values()), list(self.dev.values()))
            self.cuda.destroy(self.stream, self.events)
        finally:
            self.cuda.deactivate()
        self.host, self.dev, self.stream, self.events = None, None, None, []


def main(argv: list[str] | None = None) -> int:
    """Build (or verify) the cached engines ahead of a job, so the first event does not pay for it::

        python -m hltrun.modules.inference.tensorrt_backend data/models/conv_vae.onnx data/models/gcn_vae.onnx
    """
    import argparse

    from .base import BackendOptions

    p = argparse.ArgumentParser(description="Build and cache TensorRT engines for hltrun ONNX models.")
    p.add_argument("models", nargs="+", type=Path, help=".onnx files")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="engine precision")
    p.add_argument("--max-batch", type=int, default=1024, help="optimisation profile maximum batch")
    p.add_argument("--engine-cache", default=None, help="cache folder (default: <model folder>/engines)")
    args = p.parse_args(argv)
    for path in args.models:
        backend = TensorRTBackend(path, BackendOptions(precision=args.precision, max_batch=args.max_batch,
                                                       engine_cache=args.engine_cache)).load()
        print(f"{path}: {backend.engine_path}")
        backend.close()
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except ModuleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
