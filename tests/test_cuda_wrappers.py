"""The pycuda and cuda-python wrappers of the TensorRT backend against fake bindings with the real
return conventions (cuda-python: ``(err, *values)`` tuples, "no device" as an error code;
pycuda: exceptions, ``Stream.handle`` an int). The same contract runs on a real GPU in test_gpu.py."""

from __future__ import annotations

import gc
import sys
import types

import pytest

from hltrun.framework.errors import ModuleError
from hltrun.modules.inference.tensorrt_backend import CudaPythonApi, PyCudaApi, cuda_api
from tests.cuda_contract import roundtrip
from tests.fakes import gpu as fake_gpu

WRAPPERS = {"cuda-python": CudaPythonApi, "pycuda": PyCudaApi}


@pytest.mark.parametrize("binding", list(WRAPPERS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_wrapper_roundtrip_and_release(monkeypatch, binding, dtype):
    gpu = fake_gpu.FakeGpu()
    fake_gpu.install(monkeypatch, gpu, binding)
    api = cuda_api()
    assert type(api) is WRAPPERS[binding] and api.binding == binding
    times = roundtrip(api, dtype=dtype)
    assert times == {"h2d_ms": gpu.elapsed_ms, "d2h_ms": gpu.elapsed_ms}
    assert gpu.counts["h2d"] == 1 and gpu.counts["d2h"] == 2
    gc.collect()
    live = gpu.live()
    if binding == "pycuda":
        live.pop("host")  # page-locked memory goes with the array in pycuda
    assert set(live.values()) == {0}, live


@pytest.mark.parametrize("binding", list(WRAPPERS))
def test_wrapper_copy_is_bounds_checked(monkeypatch, binding):
    """The fake catches what the real GPU would corrupt: a copy longer than the device buffer."""
    import numpy as np

    gpu = fake_gpu.FakeGpu()
    fake_gpu.install(monkeypatch, gpu, binding)
    api = cuda_api()
    api.activate()
    stream = api.stream()
    host = api.host_empty(100, np.dtype("float32"))
    mem = api.device_alloc(200)
    with pytest.raises(fake_gpu.OutOfBounds):
        api.h2d(mem, host, 400, stream)
    api.deactivate()


def test_cuda_python_no_device_counts_zero(monkeypatch):
    fake_gpu.install(monkeypatch, fake_gpu.FakeGpu(devices=0), "cuda-python")
    assert cuda_api().device_count() == 0  # not a "CUDA runtime error 100"


def test_cuda_python_other_errors_raise(monkeypatch):
    gpu = fake_gpu.FakeGpu()
    fake_gpu.install(monkeypatch, gpu, "cuda-python")
    api = cuda_api()
    ev = api.event()
    with pytest.raises(ModuleError, match="CUDA runtime error"):  # never recorded: an error code
        api.elapsed_ms(ev, ev)


def test_pycuda_without_device_counts_zero(monkeypatch):
    fake_gpu.install(monkeypatch, fake_gpu.FakeGpu(devices=0), "pycuda")
    assert cuda_api().device_count() == 0


def test_cuda_python_needs_the_bindings_module(monkeypatch):
    """cuda-bindings 13 has only ``cuda.bindings.runtime``; the old ``cuda.cudart`` is not used."""
    old = types.ModuleType("cuda")
    old.__path__ = []
    old.cudart = object()  # a pre-12.6 layout: must not be picked up
    for name, mod in (("pycuda", None), ("pycuda.driver", None), ("cuda", old), ("cuda.bindings", None),
                      ("cuda.bindings.runtime", None), ("cuda.cudart", old.cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
    with pytest.raises(ModuleError, match="needs pycuda or cuda-python.*cuda-python:"):
        cuda_api()
