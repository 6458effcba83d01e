"""A strict fake GPU: device memory, streams and events, behind the two Python CUDA bindings'
real faces (``cuda.bindings.runtime`` of cuda-python / cuda-bindings 12.6+, and ``pycuda.driver``).

Why strict: the real bindings fail (or corrupt memory) where a lenient fake says nothing. This one
raises on what real CUDA rejects or silently corrupts:

* device addresses and stream handles must be Python ``int`` where the C API takes a pointer
  (TensorRT's ``set_tensor_address`` / ``execute_async_v3``; ``bool`` is not accepted);
* every copy is bounds-checked against the allocation it starts in, on the device and on the host
  (a copy past the end of a buffer is an ``OutOfBounds`` error, not a silent overwrite);
* freed memory, destroyed streams and destroyed events cannot be used again; what is still alive at
  the end is visible (``FakeGpu.live()``), so leaks are testable.

Return conventions follow the real bindings (checked on an H200 with cuda-bindings 13.3.1: every
call returns a tuple, ``(err,)`` for no value, ``(err, None)`` on failure; handles are objects with
``int()``; pointers are ints): cuda-python returns a tuple ``(cudaError_t, *values)``
from every call (``(err,)`` when there is no value) and reports "no device" as an error code from
``cudaGetDeviceCount``; pycuda raises ``pycuda.driver.Error`` subclasses and its ``Stream.handle``
is an int. Only the calls hltrun makes are provided.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class OutOfBounds(AssertionError):
    """A copy or kernel touched bytes outside the allocation it started in."""


class ContractError(AssertionError):
    """A call the real binding would reject (wrong type, dead handle)."""


def _strict_int(value: Any, what: str) -> int:
    if type(value) is not int:  # noqa: E721 - bool and int-like objects are exactly what we reject
        raise ContractError(f"{what} must be a Python int, got {type(value).__name__}: {value!r}")
    return value


@dataclass
class FakeGpu:
    """The memory and handle bookkeeping every fake binding and the fake TensorRT share."""

    devices: int = 1
    name: str = "Fake GPU 80GB"
    elapsed_ms: float = 0.002  # what every event pair reports
    device: dict[int, np.ndarray] = field(default_factory=dict)  # base address -> bytes
    host: dict[int, np.ndarray] = field(default_factory=dict)  # pinned host allocations
    streams: set[int] = field(default_factory=set)
    events: set[int] = field(default_factory=set)
    recorded: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {"h2d": 0, "d2h": 0, "streams": 0, "events": 0})
    _next: Any = field(default_factory=lambda: itertools.count(1 << 32, 1 << 20))
    _handles: Any = field(default_factory=lambda: itertools.count(0x7F0000001000, 0x100))

    # ------------------------------------------------------------------ memory
    def malloc(self, nbytes: int) -> int:
        _strict_int(nbytes, "allocation size")
        if nbytes <= 0:
            raise ContractError(f"allocation of {nbytes} bytes")
        ptr = next(self._next)
        self.device[ptr] = np.full(nbytes, 0xAB, np.uint8)  # garbage, as real fresh memory
        return ptr

    def free(self, ptr: int) -> None:
        if self.device.pop(_strict_int(ptr, "device pointer"), None) is None:
            raise ContractError(f"free of {ptr:#x}: not a live device allocation")

    def pinned(self, nbytes: int) -> int:
        buf = np.zeros(nbytes, np.uint8)
        ptr = buf.ctypes.data
        self.host[ptr] = buf
        return ptr

    def free_pinned(self, ptr: int) -> None:
        if self.host.pop(ptr, None) is None:
            raise ContractError(f"free of host pointer {ptr:#x}: not a live pinned allocation")

    def device_view(self, ptr: int, nbytes: int) -> np.ndarray:
        """The ``nbytes`` at device address ``ptr`` (inside one live allocation), as a writable view."""
        _strict_int(ptr, "device pointer")
        for base, mem in self.device.items():
            if base <= ptr < base + len(mem):
                if ptr + nbytes > base + len(mem):
                    raise OutOfBounds(f"{nbytes} bytes at {ptr:#x} run {ptr + nbytes - base - len(mem)} bytes "
                                      f"past the end of a {len(mem)}-byte device allocation")
                return mem[ptr - base: ptr - base + nbytes]
        raise ContractError(f"device pointer {ptr:#x} is not inside a live allocation")

    def host_check(self, ptr: int, nbytes: int) -> None:
        """A host range used by an async copy must lie inside one pinned allocation."""
        for base, mem in self.host.items():
            if base <= ptr < base + len(mem):
                if ptr + nbytes > base + len(mem):
                    raise OutOfBounds(f"{nbytes} bytes at host {ptr:#x} run past a {len(mem)}-byte pinned buffer")
                return
        raise ContractError(f"host pointer {ptr:#x} is not pinned memory from this binding")

    def h2d(self, dst: int, src_ptr: int, nbytes: int, stream: int) -> None:
        self.stream_check(stream)
        self.host_check(src_ptr, nbytes)
        view = self.device_view(dst, nbytes)
        ctypes.memmove(view.ctypes.data, src_ptr, nbytes)
        self.counts["h2d"] += 1

    def d2h(self, dst_ptr: int, src: int, nbytes: int, stream: int) -> None:
        self.stream_check(stream)
        self.host_check(dst_ptr, nbytes)
        view = self.device_view(src, nbytes)
        ctypes.memmove(dst_ptr, view.ctypes.data, nbytes)
        self.counts["d2h"] += 1

    # ------------------------------------------------------------------ handles
    def new_stream(self) -> int:
        h = next(self._handles)
        self.streams.add(h)
        self.counts["streams"] += 1
        return h

    def stream_check(self, handle: Any) -> int:
        _strict_int(handle, "stream handle")
        if handle != 0 and handle not in self.streams:
            raise ContractError(f"stream {handle:#x} is not a live stream")
        return handle

    def destroy_stream(self, handle: int) -> None:
        self.streams.remove(self.stream_check(handle))

    def new_event(self) -> int:
        h = next(self._handles)
        self.events.add(h)
        self.counts["events"] += 1
        return h

    def event_check(self, handle: int) -> int:
        if handle not in self.events:
            raise ContractError(f"event {handle:#x} is not a live event")
        return handle

    def live(self) -> dict[str, int]:
        return {"device": len(self.device), "host": len(self.host), "streams": len(self.streams),
                "events": len(self.events)}


# ---------------------------------------------------------------------- cuda-python runtime
class cudaError_t(enum.IntEnum):  # noqa: N801 - the binding's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class _Handle:
    """cuda-python's ``cudaStream_t`` / ``cudaEvent_t``: an object, convertible with ``int()``."""

    def __init__(self, value: int) -> None:
        self._value = value

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:  # noqa: N802
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value:#x}>"


class cudaStream_t(_Handle):  # noqa: N801
    pass


class cudaEvent_t(_Handle):  # noqa: N801
    pass


def _as_int(value: Any) -> int:
    """The runtime binding accepts its handle objects or plain ints where C takes a handle/pointer."""
    return int(value) if isinstance(value, (_Handle, int)) and not isinstance(value, bool) else value


def cuda_runtime_module(gpu: FakeGpu) -> types.ModuleType:
    """A ``cuda.bindings.runtime`` stand-in over ``gpu``."""
    rt = types.ModuleType("cuda.bindings.runtime")
    ok = cudaError_t.cudaSuccess
    rt.cudaError_t, rt.cudaMemcpyKind = cudaError_t, cudaMemcpyKind
    rt.cudaStream_t, rt.cudaEvent_t = cudaStream_t, cudaEvent_t

    def get_device_count():
        if gpu.devices < 1:
            return (cudaError_t.cudaErrorNoDevice, None)  # as cuda-bindings 13.3 on CUDA_VISIBLE_DEVICES=""
        return (ok, gpu.devices)

    def get_device_properties(device):
        if not 0 <= device < gpu.devices:
            return (cudaError_t.cudaErrorInvalidValue if gpu.devices else cudaError_t.cudaErrorNoDevice, None)
        return (ok, types.SimpleNamespace(name=gpu.name.encode() + b"\0" * (256 - len(gpu.name))))

    def malloc(nbytes):
        return (ok, gpu.malloc(nbytes))

    def malloc_host(nbytes):
        return (ok, gpu.pinned(nbytes))

    def free(ptr):
        gpu.free(_strict_int(_as_int(ptr), "device pointer"))
        return (ok,)

    def free_host(ptr):
        gpu.free_pinned(_as_int(ptr))
        return (ok,)

    def stream_create():
        return (ok, cudaStream_t(gpu.new_stream()))

    def stream_destroy(stream):
        gpu.destroy_stream(_as_int(stream))
        return (ok,)

    def stream_synchronize(stream):
        gpu.stream_check(_as_int(stream))
        return (ok,)

    def memcpy_async(dst, src, nbytes, kind, stream):
        dst, src, s = _as_int(dst), _as_int(src), _as_int(stream)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            gpu.h2d(dst, src, nbytes, s)
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            gpu.d2h(dst, src, nbytes, s)
        else:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (ok,)

    def event_create():
        return (ok, cudaEvent_t(gpu.new_event()))

    def event_destroy(event):
        gpu.events.remove(gpu.event_check(_as_int(event)))
        return (ok,)

    def event_record(event, stream):
        gpu.stream_check(_as_int(stream))
        gpu.recorded.add(gpu.event_check(_as_int(event)))
        return (ok,)

    def event_synchronize(event):
        gpu.event_check(_as_int(event))
        return (ok,)

    def event_elapsed(start, end):
        for e in (start, end):
            if gpu.event_check(_as_int(e)) not in gpu.recorded:
                return (cudaError_t.cudaErrorInvalidResourceHandle, None)
        return (ok, gpu.elapsed_ms)

    for name, fn, n in (("cudaGetDeviceCount", get_device_count, 1),
                        ("cudaGetDeviceProperties", get_device_properties, 1),
                        ("cudaMalloc", malloc, 1), ("cudaMallocHost", malloc_host, 1), ("cudaFree", free, 0),
                        ("cudaFreeHost", free_host, 0), ("cudaStreamCreate", stream_create, 1),
                        ("cudaStreamDestroy", stream_destroy, 0), ("cudaStreamSynchronize", stream_synchronize, 0),
                        ("cudaMemcpyAsync", memcpy_async, 0), ("cudaEventCreate", event_create, 1),
                        ("cudaEventDestroy", event_destroy, 0), ("cudaEventRecord", event_record, 0),
                        ("cudaEventSynchronize", event_synchronize, 0),
                        ("cudaEventElapsedTime", event_elapsed, 1)):
        setattr(rt, name, fn)  # a contract violation raises: a test failure, not an error code
    return rt


# ---------------------------------------------------------------------- pycuda.driver
def pycuda_driver_module(gpu: FakeGpu) -> types.ModuleType:
    """A ``pycuda.driver`` stand-in over ``gpu`` (raises ``Error`` subclasses, as pycuda does)."""
    drv = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class RuntimeError_(Error):
        pass

    class LogicError(Error):
        pass

    drv.Error, drv.RuntimeError, drv.LogicError = Error, RuntimeError_, LogicError
    state = {"init": False, "ctx": 0}

    def init(flags: int = 0) -> None:
        if gpu.devices < 1:
            raise RuntimeError_("cuInit failed: no CUDA-capable device is detected")
        state["init"] = True

    def need_init() -> None:
        if not state["init"]:
            raise LogicError("cuInit has not been called")

    class Context:
        @staticmethod
        def pop() -> None:
            if state["ctx"] < 1:
                raise LogicError("context::pop failed: no context on the stack")
            state["ctx"] -= 1

        def push(self) -> None:
            state["ctx"] += 1

    class Device:
        def __init__(self, ordinal: int) -> None:
            need_init()
            if not 0 <= ordinal < gpu.devices:
                raise LogicError(f"cuDeviceGet failed: invalid device ordinal {ordinal}")

        @staticmethod
        def count() -> int:
            need_init()
            return gpu.devices

        def name(self) -> str:
            return gpu.name

        def retain_primary_context(self) -> Context:
            return Context()

    class DeviceAllocation:
        def __init__(self, nbytes: int) -> None:
            self.ptr = gpu.malloc(nbytes)

        def __int__(self) -> int:
            return self.ptr

        def __index__(self) -> int:
            return self.ptr

        def free(self) -> None:
            gpu.free(self.ptr)

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            self.handle = gpu.new_stream()

        def synchronize(self) -> None:
            gpu.stream_check(self.handle)

        def __del__(self) -> None:  # pycuda destroys a stream with its Python object
            gpu.streams.discard(self.handle)

    class Event:
        def __init__(self, flags: int = 0) -> None:
            self.handle = gpu.new_event()

        def record(self, stream: Stream | None = None) -> "Event":
            gpu.stream_check(stream.handle if stream is not None else 0)
            gpu.recorded.add(gpu.event_check(self.handle))
            return self

        def synchronize(self) -> "Event":
            return self

        def time_till(self, end: "Event") -> float:
            for e in (self, end):
                if e.handle not in gpu.recorded:
                    raise LogicError("cuEventElapsedTime failed: invalid resource handle")
            return gpu.elapsed_ms

        def __del__(self) -> None:
            gpu.events.discard(self.handle)

    def _dev(ptr: Any) -> int:
        if isinstance(ptr, DeviceAllocation):
            return ptr.ptr
        return _strict_int(ptr, "device pointer")

    def _pinned(buf: Any) -> np.ndarray:
        arr = np.asarray(buf)
        if not arr.flags.c_contiguous:
            raise LogicError("memcpy: host buffer must be contiguous")
        return arr

    def memcpy_htod_async(dest: Any, src: Any, stream: Stream | None = None) -> None:
        arr = _pinned(src)
        gpu.h2d(_dev(dest), arr.ctypes.data, arr.nbytes, stream.handle if stream is not None else 0)

    def memcpy_dtoh_async(dest: Any, src: Any, stream: Stream | None = None) -> None:
        arr = _pinned(dest)
        gpu.d2h(arr.ctypes.data, _dev(src), arr.nbytes, stream.handle if stream is not None else 0)

    def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape))
        ptr = gpu.pinned(n * dtype.itemsize)
        return gpu.host[ptr].view(dtype)[:n].reshape(shape)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        need_init()
        return DeviceAllocation(nbytes)

    for name, obj in (("init", init), ("Context", Context), ("Device", Device), ("Stream", Stream),
                      ("Event", Event), ("DeviceAllocation", DeviceAllocation), ("mem_alloc", mem_alloc),
                      ("memcpy_htod_async", memcpy_htod_async), ("memcpy_dtoh_async", memcpy_dtoh_async),
                      ("pagelocked_empty", pagelocked_empty)):
        setattr(drv, name, obj)
    drv._state = state
    return drv


def install(monkeypatch: Any, gpu: FakeGpu, binding: str) -> None:
    """Make ``binding`` ("cuda-python" or "pycuda") importable over ``gpu`` and the other one absent."""
    import sys

    if binding == "cuda-python":
        rt = cuda_runtime_module(gpu)
        cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        cuda.__path__, bindings.__path__ = [], []
        cuda.bindings, bindings.runtime = bindings, rt
        for name, mod in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt),
                          ("pycuda", None), ("pycuda.driver", None)):
            monkeypatch.setitem(sys.modules, name, mod)
    elif binding == "pycuda":
        drv = pycuda_driver_module(gpu)
        pycuda = types.ModuleType("pycuda")
        pycuda.__path__, pycuda.driver = [], drv
        for name, mod in (("pycuda", pycuda), ("pycuda.driver", drv), ("cuda", None),
                          ("cuda.bindings", None), ("cuda.bindings.runtime", None)):
            monkeypatch.setitem(sys.modules, name, mod)
    else:
        raise ValueError(binding)
