"""The CUDA calls of the torch backend, in one place: streams, events, graph capture, page-locked
buffers, the allocator's figures.

Why a class of its own: these are the only calls of the backend that need an NVIDIA GPU; gathered
here, the backend's flow (prepare a bucket, copy in, replay, copy out, time each part) runs in CI
against a CPU stand-in that keeps their contracts (tests/test_torch_cuda_fake.py), the way the
TensorRT backend's ``CudaApi`` does; on a GPU this class is the real thing, a thin layer over
``torch.cuda``.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Sequence

Graph = Callable[..., tuple[Any, ...]]


class TorchCuda:
    """``torch.cuda`` for one device."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.device = torch, device

    def name(self) -> str:
        return str(self.torch.cuda.get_device_name(self.device))

    def new_stream(self) -> Any:
        return self.torch.cuda.Stream(device=self.device)

    def stream_id(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def use(self, stream: Any) -> ContextManager[Any]:
        """Work issued inside runs on ``stream``."""
        return self.torch.cuda.stream(stream)

    def after_current(self, stream: Any) -> None:
        """``stream`` waits for what the current stream has queued (e.g. a fill of a new tensor)."""
        stream.wait_stream(self.torch.cuda.current_stream(self.device))

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def timing_events(self, n: int) -> list[Any]:
        """``n`` timing events; the last blocking-sync, so the host sleeps on it instead of spinning."""
        return [self.torch.cuda.Event(enable_timing=True, blocking=i == n - 1) for i in range(n)]

    def new_pool(self) -> Any:
        return self.torch.cuda.graph_pool_handle()

    def capture(self, fn: Graph, examples: tuple[Any, ...], pool: Any, stream: Any) -> tuple[Any, tuple[Any, ...]]:
        """``fn(*examples)`` captured as a CUDA graph on ``stream`` (memory from ``pool``): the graph and
        its output tensors, which every replay rewrites. ``examples`` are the static device inputs, one per
        model input: a replay reads them where they are, so each call copies its batch into them first. The
        caller keeps ``fn`` (and so the device tensors it holds) alive as long as the graph: a replay reads them."""
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph, pool=pool, stream=stream):
            outs = fn(*examples)
        return graph, outs

    def replay(self, graph: Any) -> None:
        graph.replay()

    def pinned_zeros(self, shape: Sequence[int], dtype: Any) -> Any:
        """A zeroed page-locked host tensor (the copies from and to it can be asynchronous)."""
        return self.torch.zeros(tuple(shape), dtype=dtype, pin_memory=True)

    def reset_peak(self) -> None:
        """The allocator's peaks (allocated, reserved) start again from its current figures, for the
        whole process on this device (``torch.cuda.reset_peak_memory_stats``)."""
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def release_cached(self) -> None:
        """Give the allocator's unoccupied cached blocks back to the device (``torch.cuda.empty_cache``),
        so that the memory reserved afterwards is what live tensors hold."""
        self.torch.cuda.empty_cache()

    def memory(self) -> dict[str, int]:
        """The caching allocator's figures, under the JAX backend's key names."""
        cuda, dev = self.torch.cuda, self.device
        return {"bytes_in_use": int(cuda.memory_allocated(dev)), "peak_bytes_in_use": int(cuda.max_memory_allocated(dev)),
                "bytes_reserved": int(cuda.memory_reserved(dev)), "peak_bytes_reserved": int(cuda.max_memory_reserved(dev)),
                "bytes_limit": int(cuda.get_device_properties(dev).total_memory)}


def cuda_for(torch: Any, device: Any) -> TorchCuda | None:
    """The CUDA side for ``device``, None for the CPU (tests put their stand-in here)."""
    return TorchCuda(torch, device) if device.type == "cuda" else None
