"""JAX backend: the shipped ONNX model translated to JAX (``onnx_jax``) and compiled by XLA, on the
CPU or on an NVIDIA GPU — the GPU engine that is installed on the GPU machines hltrun can reach.

Static shapes per batch bucket (``bucketed.BucketedBackend``, shared with the PyTorch backend): XLA
compiles one executable per input shape in ``warm_up`` (begin_job), never at an event. Compiled executables are shared by the backends of one process (one per stream) for the same model
file and device: a compiled XLA executable is immutable and safe to call from several threads, and
compiling it once per stream would only multiply begin_job time. Each backend keeps its own padded
host buffers (pinned with ``cudaMallocHost`` through cuda-python on a GPU when it is installed).

Timing: H2D (``jax.device_put`` + wait), compute (the executable + wait) and D2H (``np.asarray`` of
the outputs) are timed separately with the host clock, waiting for each to finish (JAX exposes no
CUDA events or streams), into the shared integer counters. Device memory (``Device.memory_stats()``: in use, peak, limit) is in
``describe()`` on a GPU; the CPU device has none, and the key is absent. The peak is the process's since
it started: JAX offers no reset (``reset_device_peak`` says False).

Device: ``BackendOptions.device`` ``auto`` (a GPU when JAX sees one, else the CPU), ``cpu`` or
``gpu``. ``JAX_PLATFORMS=cpu`` keeps JAX (and so ``auto``) off a GPU.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.errors import ModuleError
from hltrun.framework.extras import need

from .base import log
from .bucketed import BucketedBackend, Buffers, Executed
from .machine import cache_root, engine_cache_dir

# (model file identity, device, the inputs' jet shapes, bucket) -> compiled executable. The shapes are the declared
# ones: a model with a dynamic constituent axis compiles once per n_constituents (two scorers of one file declaring
# 20 and 30 shared the first's executable, and the second failed its warm-up on "Argument types differ")
_COMPILED: dict[tuple[Any, ...], Any] = {}
_COMPILE_LOCK = threading.Lock()


def gpu_devices(jax: Any) -> list[Any]:
    """JAX's GPU devices, [] when it has no GPU platform (``jax.devices('gpu')`` raises then)."""
    for name in ("gpu", "cuda"):
        try:
            return list(jax.devices(name))
        except RuntimeError:
            continue
    return []


def compile_cache_size() -> int:
    """Executables compiled in this process (for tests and the bench: one per model, device, input shapes, bucket)."""
    return len(_COMPILED)


class JaxBackend(BucketedBackend):
    name = "jax"
    reads = frozenset(("max_batch", "engine_cache"))
    device = "cpu"

    def _load(self) -> None:
        jax = need("jax", f"jax: running {self.model_path} on JAX")
        need("onnx", f"jax: reading {self.model_path}")
        from .onnx_jax import translate

        self.jax = jax
        self.compile_cache = self._compile_cache(jax)
        self.jax_device = self._pick_device(jax)
        self.device = "cpu" if self.jax_device.platform == "cpu" else "gpu-nvidia"
        self._use_graph(translate(self.model_path))
        try:  # trace once at batch 1: attribute values the translator refuses fail now, not at warm-up
            jax.eval_shape(self.graph.fn, *(jax.ShapeDtypeStruct((1, *jet), np.float32) for jet in self._jet_shapes))
        except ModuleError:
            raise
        except Exception as exc:
            raise ModuleError(f"jax: cannot translate model {self.model_path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from exc
        st = self.model_path.resolve().stat()
        self._key = (str(self.model_path.resolve()), st.st_mtime_ns, st.st_size, self.jax_device.platform,
                     self.jax_device.id)
        self._compiled: dict[int, Any] = {}
        self._pinned: Any = None
        self._pinned_raw: list[np.ndarray] = []
        self._pinned_failed = False

    def _compile_cache(self, jax: Any) -> str | None:
        """JAX's persistent compilation cache, so that the next job loads the buckets' executables
        (measured here: conv_vae, 5 buckets, 17 s compiling -> 1.8 s loading on the CPU). The folder:
        ``engine_cache`` when set (the option TensorRT keeps its engines in), else one JAX was already
        given (``JAX_COMPILATION_CACHE_DIR``), else ``$XDG_CACHE_HOME/hltrun/jax``. An unwritable folder
        only turns the cache off."""
        current = jax.config.jax_compilation_cache_dir
        if current and not self.options.engine_cache:
            return str(current)
        path = "$XDG_CACHE_HOME/hltrun/jax"  # named in the warning when even that cannot be found
        try:
            path = str(engine_cache_dir(self.options, lambda: cache_root("jax")))
            enable_compile_cache(path)
        except OSError as exc:
            log.warning("jax: compilation cache %s not usable (%s); every job compiles", path, exc,
                        extra={"once": True})
            return None
        return str(path)

    def _pick_device(self, jax: Any) -> Any:
        want = self.wanted_device()
        gpus = gpu_devices(jax) if want != "cpu" else []
        if want == "gpu" and not gpus:
            raise ModuleError(f"jax: device gpu requested for {self.model_path}, but JAX sees no GPU "
                              f"(platforms: {sorted({d.platform for d in jax.devices()})}); install jax[cuda13] "
                              f"on a machine with an NVIDIA GPU, or use device cpu")
        return gpus[0] if gpus else jax.devices("cpu")[0]

    # ------------------------------------------------------------------ compile and warm up
    def _prepare_bucket(self, bucket: int) -> None:
        """The compiled executable for one bucket (compiled once per process, model, device and declared input
        shapes)."""
        key = (*self._key, self._jet_shapes, bucket)
        with _COMPILE_LOCK:
            exe = _COMPILED.get(key)
            if exe is None:
                jax = self.jax
                on = jax.sharding.SingleDeviceSharding(self.jax_device)
                specs = [jax.ShapeDtypeStruct((bucket, *jet), np.float32, sharding=on) for jet in self._jet_shapes]
                exe = jax.jit(self.graph.fn).lower(*specs).compile()
                _COMPILED[key] = exe
        self._compiled[bucket] = exe
        self._say_unrolled()

    def _say_unrolled(self) -> None:
        """Once per loop: a Loop or Scan traced as copies of its body, not one ``lax.scan`` step (its body needs its
        counter static, or carries a sequence): XLA compiles every copy per bucket, begin_job's time grows with it."""
        for node, steps in self.graph.kernels.unrolled.items():
            log.log(logging.INFO if self.announce else logging.DEBUG,
                    "jax: %s: loop node %r runs unrolled, %d copies of its body per batch bucket (its body needs its "
                    "counter as a static value, e.g. a Slice or SequenceAt at it, or carries a sequence), not one "
                    "compiled lax.scan step: compiling takes longer, the scores are the same", self.model_path.name,
                    node, steps, extra={"once": True})

    def _host_buffers(self, bucket: int) -> Buffers:
        """Zeroed (bucket, *one jet's input shape) float32 host buffers, one per input, page-locked on a GPU when
        cuda-python is there."""
        return tuple(self._host_buffer((bucket, *jet)) for jet in self._jet_shapes)

    def _host_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """One zeroed float32 host buffer of ``shape`` (pinned where it can be)."""
        if self.device != "cpu" and self._pinned is None:
            self._pinned = self._pinned_api()
        n = int(np.prod(shape))
        buf = None
        if self._pinned:
            try:
                buf = self._pinned.host_empty(n, np.float32)
            except Exception as exc:  # noqa: BLE001 - page-locked memory refused: pageable, said once
                log.warning("jax: cudaMallocHost of %d bytes failed (%s); host buffers not pinned", 4 * n, exc,
                            extra={"once": True})
                self._pinned_failed = True
            else:
                buf[:] = 0.0
                self._pinned_raw.append(buf)  # the array cudaMallocHost's pointer is filed under, for close()
        if buf is None:
            buf = np.zeros(n, np.float32)
        return buf.reshape(shape)

    def _pinned_api(self) -> Any:
        """cuda-python's cudaMallocHost (the TensorRT backend's wrapper), or False: pageable buffers."""
        try:
            from .tensorrt_backend import CudaPythonApi

            return CudaPythonApi()
        except Exception as exc:  # noqa: BLE001 - no cuda-python: pageable host memory, said in describe()
            log.info("jax: host buffers not pinned (%s)", exc, extra={"once": True})
            return False

    def device_label(self) -> str:
        return str(self.jax_device)

    # ------------------------------------------------------------------ run
    def _execute(self, bucket: int, bufs: Buffers) -> Executed:
        """Copy to the device, run, copy back, each part waited for and timed with the host clock. Several
        inputs go to the device in one ``device_put`` and are all waited for before the computation starts."""
        jax = self.jax
        t0 = time.perf_counter_ns()
        if self._several:
            xds = jax.device_put(bufs, self.jax_device)
            jax.block_until_ready(xds)
        else:  # the shipped models: one array, as before
            xd = jax.device_put(bufs[0], self.jax_device)
            xd.block_until_ready()
            xds = (xd,)
        t1 = time.perf_counter_ns()
        ys = self._compiled[bucket](*xds)
        jax.block_until_ready(ys)
        t2 = time.perf_counter_ns()
        host = [np.asarray(y) for y in ys]
        t3 = time.perf_counter_ns()
        return host, t1 - t0, t2 - t1, t3 - t2

    # ------------------------------------------------------------------ describe, close
    def device_memory(self) -> dict[str, int] | None:
        """The device allocator's figures (bytes in use, peak, limit ...), None where the device has
        none (JAX's CPU device returns None). A statistic the platform does not keep (-1, as
        ``memory_stats`` documents) is left out. Its peak is the process's: JAX has no reset."""
        try:
            stats = self.jax_device.memory_stats()
        except Exception:  # noqa: BLE001 - a platform without allocator statistics
            return None
        if not stats:
            return None
        keys = ("bytes_in_use", "peak_bytes_in_use", "bytes_reserved", "peak_bytes_reserved", "bytes_limit",
                "largest_alloc_size", "num_allocs")
        return {k: int(stats[k]) for k in keys if k in stats and int(stats[k]) >= 0}

    def _describe(self) -> dict[str, Any]:
        import jaxlib

        desc: dict[str, Any] = {
            "versions": {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__},
            "jax_device": str(self.jax_device), "device_kind": self.jax_device.device_kind,
            **self._bucketed_describe(),
            "pinned_host_buffers": bool(self._pinned) and not self._pinned_failed, "compile_cache": self.compile_cache,
        }
        memory = self.device_memory()
        if memory is not None:
            desc["device_memory"] = memory
        return desc

    def close(self) -> None:
        """Free pinned host buffers (device buffers are JAX's, freed with their arrays)."""
        if getattr(self, "_pinned", None) and self._pinned_raw:
            self._host = {}
            self._pinned.free(self._pinned_raw, [])
            self._pinned_raw = []
        self._host, self._compiled, self._prepared = {}, {}, set()


def enable_compile_cache(path: str | os.PathLike[str]) -> None:
    """JAX's persistent compilation cache in ``path`` (process-wide): a later process loads the
    buckets' executables instead of compiling them again."""
    import jax

    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
