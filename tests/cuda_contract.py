"""One contract check of a ``CudaApi`` wrapper (pycuda or cuda-python), shared by the fake-binding
tests (test_cuda_wrappers.py) and the real-GPU tests (test_gpu.py), so both run the same checks."""

from __future__ import annotations

import numpy as np

from hltrun.modules.inference.tensorrt_backend import CudaApi


def roundtrip(api: CudaApi, n: int = 1000, dtype: str = "float32") -> dict[str, float]:
    """Allocate pinned + device memory, copy host -> device -> host on a stream between events,
    check the bytes came back, the stream handle is an int and the timings are numbers; release all."""
    assert api.device_count() >= 1
    name = api.device_name()
    assert isinstance(name, str) and name and "\0" not in name
    api.activate()
    try:
        stream = api.stream()
        handle = api.stream_handle(stream)
        assert type(handle) is int, f"stream handle is {type(handle).__name__}, TensorRT needs an int"  # noqa: E721
        events = [api.event() for _ in range(3)]
        src, dst = api.host_empty(n, np.dtype(dtype)), api.host_empty(n, np.dtype(dtype))
        src[:] = np.arange(n, dtype=dtype) * 0.5 - 7
        dst[:] = 0
        mem = api.device_alloc(src.nbytes)
        assert type(api.device_ptr(mem)) is int and api.device_ptr(mem) != 0  # noqa: E721
        api.record(events[0], stream)
        api.h2d(mem, src, src.nbytes, stream)
        api.record(events[1], stream)
        api.d2h(dst, mem, src.nbytes, stream)
        api.record(events[2], stream)
        api.synchronize(stream)
        assert np.array_equal(dst, src)
        h2d_ms, d2h_ms = api.elapsed_ms(events[0], events[1]), api.elapsed_ms(events[1], events[2])
        assert isinstance(h2d_ms, float) and isinstance(d2h_ms, float) and h2d_ms >= 0 and d2h_ms >= 0
        # a partial copy moves exactly the bytes asked for
        dst[:] = 0
        api.d2h(dst, mem, 8 * np.dtype(dtype).itemsize, stream)
        api.synchronize(stream)
        assert np.array_equal(dst[:8], src[:8]) and not dst[8:].any()
        api.free([src, dst], [mem])
        api.destroy(stream, events)
    finally:
        api.deactivate()
    return {"h2d_ms": h2d_ms, "d2h_ms": d2h_ms}
