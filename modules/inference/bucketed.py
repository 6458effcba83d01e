"""The part every engine with static batch buckets shares (JAX/XLA, PyTorch, TFLite): pad a batch into the
bucket's host buffers, copy them to the device (if it has one), run, copy the outputs back, each part timed.

A compiled (or captured) graph runs one static input shape, so a batch of n jets is padded with zero
jets to the next bucket (``buckets.bucket_sizes``: powers of two up to ``max_batch``) and the result
sliced back; batches over ``max_batch`` run in ``max_batch`` chunks (as TensorRT does with its
profile). Every bucket is prepared (compiled, traced, captured) and run once in ``warm_up``
(begin_job), never at an event, and that time is reported on its own (``warm_up_s``).

A model with several inputs (ParticleNet's ``points``, ``features``, ``mask``) has one host buffer per input
and bucket, each padded along the batch axis to the same bucket with zero jets (a mask's padding is 0: a
padded jet has no constituent), and the real jets' outputs are the first n rows, as for one input. A
one-input model runs as it did: its one buffer, no per-call loop over inputs.

Counters (integers that add over streams, carried by the scorer's summary into ``hltrun.json`` and the
TimeReport): ``h2d_us``/``compute_us``/``d2h_us`` and ``h2d_bytes``/``d2h_bytes`` per part, ``chunks``
(engine calls) and ``padded_jets``. An engine says how it times them (the host clock after a wait, or
CUDA events); a CPU device that needs no copy counts none. The time counters are the floor of exact
nanosecond sums, which ``device_split_ns()`` gives (for a per-call difference of a few µs).
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from typing import Any, Sequence

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError, one_line

from . import buckets
from .base import InferenceBackend, log, require_float32

DEVICES = ("auto", "cpu", "gpu")  # BackendOptions.device for these engines
TRANSFER_COUNTERS = ("h2d_bytes", "h2d_us", "compute_us", "d2h_bytes", "d2h_us", "padded_jets", "chunks")

# what one engine call took: outputs in the graph's order (host arrays, valid until the next call),
# then nanoseconds for the copy in, the computation and the copy out
Executed = tuple[Sequence[np.ndarray], int, int, int]
Buffers = tuple[np.ndarray, ...]  # a bucket's host buffers, one per model input, in the model's input order


def bucket_sizes(max_batch: int, engine: str = "buckets") -> list[int]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself (``buckets.bucket_sizes``)."""
    try:
        return buckets.bucket_sizes(max_batch)
    except ValueError:
        raise ConfigError(f"{engine}: max_batch {max_batch} must be at least 1") from None


def bucket_for(n: int, sizes: Sequence[int], engine: str = "buckets") -> int:
    """The smallest bucket holding n jets (n <= sizes[-1])."""
    bucket = buckets.bucket_for(n, sizes)
    if bucket is None:
        raise ModuleError(f"{engine}: batch of {n} jets over the largest bucket {sizes[-1]}")
    return bucket


class BucketedBackend(InferenceBackend):
    """Static batch buckets over a model graph: an ONNX graph translated for an array engine (``onnx_graph``), or
    a TFLite file's facts (``input_names``, ``input_shapes``, ``input_dtypes``: one each per model input;
    ``output_names``). Subclasses load the engine, set ``self.graph`` through ``_use_graph`` and implement
    the hooks."""

    pads_batches = True  # a batch runs padded to the next prepared size
    model_suffixes = (".onnx",)
    copies = True  # the engine copies the batch to its device and back (False: it runs on the host buffer)
    fresh_outputs = False  # True: ``_execute``'s host arrays are new on every call (a one-chunk batch keeps them)

    def _use_graph(self, graph: Any) -> None:
        """Settle the translated graph, the contract, the precision and the buckets (from ``_load``)."""
        self.graph = graph
        for name, dtype in zip(graph.input_names, graph.input_dtypes):
            require_float32(self.name, self.model_path, name, dtype)
        self.settle_inputs()  # a shape that does not match the contract: one line, before any tracing
        self._jet = self._jet_shapes[0]  # one jet's first input shape: (100, 3) for the shipped models
        self._several = len(self._jet_shapes) > 1  # several inputs: a tuple of arrays per call
        self.precision = "fp32"  # the only one (``precisions``), checked at ``load``
        self.max_batch = int(self.options.max_batch)
        self.buckets = bucket_sizes(self.max_batch, self.name)
        self._index = {name: i for i, name in enumerate(graph.output_names)}
        self._host: dict[int, Buffers] = {}  # bucket -> its host buffers, one per input
        self._in_bytes: dict[int, int] = {}  # bucket -> the bytes of its buffers (one copy in)
        self._dirty: dict[int, int] = {}  # rows of each host buffer that may hold old jets
        self._prepared: set[int] = set()
        self._bucket_of: list[int] = []  # n jets -> its bucket, made at the end of warm_up
        self.warm_up_s = 0.0
        self.counters.update(dict.fromkeys(TRANSFER_COUNTERS, 0))
        self._split_ns = {"h2d_ns": 0, "compute_ns": 0, "d2h_ns": 0}  # exact sums: the µs counters are their floor

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _prepare_bucket(self, bucket: int) -> None:
        """Compile / trace / capture the graph for ``bucket`` jets (at warm-up)."""

    def _host_buffers(self, bucket: int) -> Buffers:
        """The zeroed (bucket, *jet) float32 host buffers the batch is padded into, one per input (pinned on a
        GPU)."""
        return tuple(np.zeros((bucket, *jet), np.float32) for jet in self._jet_shapes)

    @abstractmethod
    def _execute(self, bucket: int, bufs: Buffers) -> Executed:
        """Run one padded bucket (its host buffers, one per input): its outputs on the host and the three parts'
        nanoseconds."""

    # ------------------------------------------------------------------ warm up and run
    def warm_up(self, batch_sizes: Sequence[int] = (1, 9)) -> None:
        """Prepare every bucket and run zeros through it once (device allocations, first-call set-up),
        then the base class's check of the requested sizes; none of it counts as job work."""
        saved, saved_ns = dict(self.counters), dict(self._split_ns or {})
        t0 = time.perf_counter()
        self._bucket_of = []  # buckets may have changed since the last warm-up
        for b in self.buckets:
            try:
                self._host[b] = self._host_buffers(b)
                self._in_bytes[b] = sum(buf.nbytes for buf in self._host[b])
                self._dirty[b] = 0
                self._prepare_bucket(b)
                self._prepared.add(b)
                zeros = tuple(np.zeros((b, *jet), np.float32) for jet in self._jet_shapes)
                self._run_chunk(zeros if self._several else zeros[0], None, 0)
            except (ModuleError, ConfigError):
                raise
            except Exception as exc:
                raise ModuleError(f"{self.name}: model {self.model_path} failed to prepare a batch of {b} jets: "
                                  f"{type(exc).__name__}: {one_line(exc)}") from exc
        self.warm_up_s = time.perf_counter() - t0
        self._bucket_of = [bucket_for(n, self.buckets, self.name) for n in range(self.buckets[-1] + 1)]
        self.counters.update(saved)
        super().warm_up(batch_sizes)  # restores the counters it found
        self._split_ns = saved_ns
        log.log(logging.INFO if self.announce else logging.DEBUG,
                "%s: %s prepared and warmed up for batches %s on %s in %.2f s", self.name, self.model_path.name,
                self.buckets, self.device_label(), self.warm_up_s, extra={"once": True})

    def wanted_device(self) -> str:
        """``BackendOptions.device`` checked: auto (a GPU when the engine sees one), cpu or gpu."""
        want = str(getattr(self.options, "device", "auto")).lower()
        if want not in DEVICES:
            raise ConfigError(f"{self.name}: device {want!r} (allowed: {', '.join(DEVICES)})")
        return want

    def device_label(self) -> str:
        """The device, as the warm-up line names it."""
        return self.device

    def _unprepared(self) -> ModuleError:
        return ModuleError(f"{self.name}: run() before warm_up() for model {self.model_path}: buckets are "
                           f"prepared at warm-up, never at an event")

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self._prepared:
            raise self._unprepared()
        out: dict[str, np.ndarray] = {}
        n = len(x)
        if n <= self.max_batch:  # the HLT's case, a few jets: one chunk, its outputs as the engine gave them
            self._run_chunk(x, out, 0, n)
            return out
        for start in range(0, n, self.max_batch):
            self._run_chunk(x[start:start + self.max_batch], out, start, n)
        return out

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """``_run`` for several inputs: every input's jets [start, start + max_batch) make one chunk."""
        if not self._several:
            return self._run(xs[0])
        if not self._prepared:
            raise self._unprepared()
        out: dict[str, np.ndarray] = {}
        n = len(xs[0])
        if n <= self.max_batch:
            self._run_chunk(xs, out, 0, n)
            return out
        for start in range(0, n, self.max_batch):
            self._run_chunk(tuple(x[start:start + self.max_batch] for x in xs), out, start, n)
        return out

    def _run_chunk(self, x: np.ndarray | tuple[np.ndarray, ...], out: dict[str, np.ndarray] | None, start: int,
                   total: int = 0) -> None:
        """Pad into the bucket's host buffers, run them, keep the real jets' outputs; count each part. Per call
        at the HLT's batch of two jets, so kept lean: the bucket from a table made at warm-up, no copy of
        outputs an engine made fresh for this call, the copy counters only for engines that copy. ``x``: the
        one input's array, or a tuple of one array per input (``_several``)."""
        m = len(x[0]) if self._several else len(x)
        table = self._bucket_of  # empty during warm-up itself: those calls look their bucket up
        b = table[m] if m < len(table) else bucket_for(m, self.buckets, self.name)
        bufs = self._host[b]
        dirty = self._dirty[b]
        if self._several:
            for buf, xi in zip(bufs, x):
                buf[:m] = xi
                if dirty > m:
                    buf[m:dirty] = 0.0  # zero jets as padding, in every input: a mask's padding is 0
        else:
            buf = bufs[0]
            buf[:m] = x
            if dirty > m:
                buf[m:dirty] = 0.0  # zero jets as padding: rows the previous batch left behind
        self._dirty[b] = m
        host, h2d_ns, compute_ns, d2h_ns = self._execute(b, bufs)
        if out is not None:
            if m == total and self.fresh_outputs:
                for name in self.output_names:
                    y = host[self._index[name]]
                    out[name] = y[:m] if y.ndim else np.array(y)  # 0-d: a value per call, normalise_outputs names it
            else:
                for name in self.output_names:
                    y = host[self._index[name]]
                    if not y.ndim:  # one value per call, not per jet: kept whole for normalise_outputs' line
                        out[name] = np.array(y)
                        continue
                    if name not in out:
                        out[name] = np.empty((total, *y.shape[1:]), np.float32)
                    out[name][start:start + m] = y[:m]
        c = self.counters
        c["chunks"] += 1
        c["padded_jets"] += b - m
        if self.copies:
            c["h2d_bytes"] += self._in_bytes[b]
            c["d2h_bytes"] += sum(h.nbytes for h in host)
        self._count_split(h2d_ns, compute_ns, d2h_ns)  # an engine that copies nothing gives 0 for the copies

    # ------------------------------------------------------------------ the graph's facts
    def _input_shape(self) -> tuple[Any, ...]:
        return self.graph.input_shapes[0]

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(name, tuple(shape)) for name, shape in zip(self.graph.input_names, self.graph.input_shapes)]

    def _output_names(self) -> Sequence[str]:
        return self.graph.output_names

    def _output_types(self) -> dict[str, str]:
        return self.graph.output_types

    def _bucketed_describe(self) -> dict[str, Any]:
        return {"precision": self.precision, "buckets": list(self.buckets), "warm_up_s": round(self.warm_up_s, 3),
                "input": ", ".join(self.graph.input_names)}
