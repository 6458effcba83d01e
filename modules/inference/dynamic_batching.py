"""Cross-event dynamic batching, as CMSSW's SONIC lets a Triton server batch requests of many streams.

The jets of events in flight on all streams are gathered into one backend call; each event waits for
its own scores. It is opt-in per scorer (``batching: {max_batch: 64, max_delay_ms: 2}``, docs/inference.md).

How a batch is sent (leader/follower, no extra thread):

* a stream submits its event's jets and waits; while it waits it checks, under one lock, whether the
  queue is due: **full** (``max_batch`` jets queued), **all present** (every stream that can still
  bring an event has one in the queue: nobody else can join, so waiting would only add delay; with one
  stream this is always true and nothing waits; once the loop takes no new event, a stream that is
  idle or whose event is past the scorer can bring nothing), or **delay** (the oldest request has
  waited ``max_delay_ms``: the bound for a stream whose event never reaches the scorer);
* the first waiter that sees a due queue takes up to ``max_batch`` jets from its head and runs them on
  *its own stream's* backend, outside the lock, so batches of different streams can still overlap;
* results (or the batch's error) are handed to exactly the events of that batch.

No event waits forever: every waiter re-checks at least every ``_POLL_S`` (the end of the events, a
stream that ends, makes "all present" true at the next check) and the delay bound makes a waiter the
leader of a partial batch. A failing call of several events is run again event by event, each on its
own stream's backend, so only an event whose own jets fail gets an error, as without batching (the
retry's time is the module's, in no batch's queue or inference split); a failing batch of one event is
that event's own exception, and the framework's error policy (``options.TryToContinue``) blames and
counts each event.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.context import IDLE  # the event loop's in_flight value for a stream with no event
from hltrun.framework.errors import ModuleError
from hltrun.framework.schema import limited

from .base import MAX_BATCH

_POLL_S = 0.0005  # a waiter re-checks "all present" at least this often
_NS = time.perf_counter_ns
_BINS_PER_OCTAVE = 16  # wait histograms: log bins ~4.4 % wide, keyed by their geometric centre (ns)


@dataclass
class BatchingParameters:
    """``modules.<scorer>.batching``: gather the jets of events in flight on all streams."""

    max_batch: int = limited(64, 1, MAX_BATCH)  # jets per backend call at most (an event with more jets is sent alone)
    max_delay_ms: float = 2.0  # the longest the oldest queued event waits for others to join

    def __post_init__(self) -> None:
        if not 0 <= self.max_delay_ms <= 60_000:
            raise ValueError(f"max_delay_ms must be in [0, 60000], got {self.max_delay_ms}")


Jets = np.ndarray | tuple[np.ndarray, ...]  # one event's jets: one array, or one per input of the model (same N)
Run = Callable[[Jets], dict[str, np.ndarray]]


class _Request:
    __slots__ = ("stream", "index", "x", "n", "t_submit", "t_start", "t_end", "out", "error", "done", "batch")

    def __init__(self, stream: int, index: int, x: Jets) -> None:
        self.stream, self.index, self.x = stream, index, x
        self.n = len(x[0]) if isinstance(x, tuple) else len(x)  # the event's jets
        self.t_submit = self.t_start = self.t_end = 0
        self.out: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.batch = (0, 0)  # (events, jets) of the backend call this request went into


class DynamicBatcher:
    """One per scorer label, shared by that scorer's per-stream instances (``ModuleContext.global_cache``)."""

    def __init__(self, max_batch: int, max_delay_ms: float, in_flight: Callable[[], Sequence[int]],
                 draining: Callable[[], bool] = lambda: True) -> None:
        """``in_flight()``: per stream, the index of its event or ``IDLE`` (``StreamActivity.in_flight``);
        ``draining()``: True once the loop takes no new event (``StreamActivity.draining``)."""
        self.max_batch = int(max_batch)
        self.max_delay_ns = int(max_delay_ms * 1e6)
        self._in_flight = in_flight
        self._draining = draining
        self._queued: dict[int, int] = {}  # stream -> requests of it in the queue
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._queued_jets = 0
        self._submitted: dict[int, int] = {}  # stream -> index of the last event it submitted
        self._init_stats()

    # ------------------------------------------------------------------ the hot path
    def submit(self, stream: int, index: int, x: Jets, run: Run) -> dict[str, np.ndarray]:
        """Queue event ``index``'s jets from ``stream``: a non-empty (n, ...) array, or a tuple of them, one per
        input of a model with several (each n jets, the backend's ``check``); return its outputs once its batch
        ran. ``run`` is this stream's backend, used if this call leads a batch."""
        req = _Request(stream, index, x)
        cond = self._cond
        with cond:
            req.t_submit = _NS()
            self._queue.append(req)
            self._queued_jets += req.n
            self._queued[stream] = self._queued.get(stream, 0) + 1
            self._submitted[stream] = index
            cond.notify_all()  # waiters re-check: this may complete "all present" or "full"
            while not req.done:
                reason = self._due()
                if reason is None:
                    cond.wait(self._timeout())
                    continue
                batch = self._take()
                cond.release()
                try:
                    self._run(batch, run, reason)
                finally:
                    cond.acquire()
                    cond.notify_all()
            woke = _NS()
            inference = req.t_end - req.t_start
            queue = woke - req.t_submit - inference
            self._queue_ns += queue
            self._inference_ns += inference
            _fill(self._queue_hist, queue)
            _fill(self._inference_hist, inference)
        if req.error is not None:
            if req.batch[0] > 1 and isinstance(req.error, Exception):
                # another event's jets may have failed the call: this event alone, on this stream's backend,
                # decides as without batching (an error now is its own, raised as an unbatched call's)
                return run(x)
            raise _for_event(req)
        assert req.out is not None
        return req.out

    def _due(self) -> str | None:
        """Why the queue must be sent now (lock held), or None to keep waiting."""
        if not self._queue:
            return None
        if self._queued_jets >= self.max_batch:
            return "full"
        if self._all_present():
            return "all_present"
        if _NS() - self._queue[0].t_submit >= self.max_delay_ns:
            return "delay"
        return None

    def _all_present(self) -> bool:
        """Every stream that can still bring an event to this batch has one queued."""
        queued, submitted = self._queued, self._submitted
        draining = None
        for s, i in enumerate(self._in_flight()):
            if queued.get(s):
                continue
            if draining is None:
                draining = self._draining()
            if not (draining and (i == IDLE or submitted.get(s) == i)):
                return False  # in flight towards the scorer, or will take a new event
        return True

    def _timeout(self) -> float:
        if not self._queue:  # own request is running in another stream's batch: it will notify
            return 0.05
        left = (self._queue[0].t_submit + self.max_delay_ns - _NS()) * 1e-9
        return min(max(left, 0.0), _POLL_S)

    def _take(self) -> list[_Request]:
        """Requests from the head of the queue, at most ``max_batch`` jets (at least one request)."""
        jets, n = 0, 0
        for req in self._queue:
            if n and jets + req.n > self.max_batch:
                break
            jets += req.n
            n += 1
        batch, self._queue = self._queue[:n], self._queue[n:]
        self._queued_jets -= jets
        for req in batch:
            self._queued[req.stream] -= 1
        return batch

    def _run(self, batch: list[_Request], run: Run, reason: str) -> None:
        """Run one backend call (lock released); fill every request of the batch, even on failure."""
        sizes = [r.n for r in batch]
        out: dict[str, np.ndarray] | None = None
        error: BaseException | None = None
        t0 = _NS()
        try:
            x = batch[0].x if len(batch) == 1 else _gather([r.x for r in batch])
            t0 = _NS()
            out = run(x)
        except BaseException as exc:  # noqa: BLE001 - every waiter of the batch must be woken, even on Ctrl-C
            error = exc
        t1 = _NS()
        with self._cond:
            self._count_batch(reason, len(batch), sum(sizes), t1 - t0, error is not None)
            start = 0
            for req, n in zip(batch, sizes):
                req.t_start, req.t_end, req.batch = t0, t1, (len(batch), sum(sizes))
                if out is not None:
                    req.out = {k: v[start:start + n] for k, v in out.items()}
                req.error = error
                req.done = True
                start += n
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt & co. in the leader: its followers got it as an error too

    # ------------------------------------------------------------------ statistics
    def _init_stats(self) -> None:
        self._reasons = {"full": 0, "all_present": 0, "delay": 0}
        self._batches = self._events = self._jets = self._failed = 0
        self._batch_ns = self._queue_ns = self._inference_ns = 0
        self._jets_per_call: dict[str, int] = {}
        self._queue_hist: dict[str, int] = {}
        self._inference_hist: dict[str, int] = {}

    def _count_batch(self, reason: str, events: int, jets: int, ns: int, failed: bool) -> None:
        self._reasons[reason] += 1
        self._batches += 1
        self._events += events
        self._jets += jets
        self._batch_ns += ns
        self._failed += int(failed)
        key = str(jets)
        self._jets_per_call[key] = self._jets_per_call.get(key, 0) + 1

    def begin_unit(self) -> None:
        """A new work unit (distributed run): forget which events were submitted."""
        with self._cond:
            self._submitted.clear()

    def stats(self) -> dict[str, Any]:
        """The job's batching, as counters that add up (over work units and Dask workers, like every
        module summary): batches and why they were sent, jets per call, and each event's wait split into
        queue time (submit until its scores are back, less the call) and inference time (the backend
        call its jets were in), as totals and log histograms. The Timing report derives means and
        percentiles from them (``framework/services/timing_results.py``)."""
        with self._cond:
            return {
                "settings": f"max_batch {self.max_batch} jets, max_delay_ms {self.max_delay_ns * 1e-6:g}",
                "batches": self._batches, "events": self._events, "jets": self._jets,
                "failed_batches": self._failed, "sent": dict(self._reasons), "backend_ns": self._batch_ns,
                "queue_ns": self._queue_ns, "inference_ns": self._inference_ns,
                "jets_per_call": dict(self._jets_per_call),
                "queue_hist_ns": dict(self._queue_hist), "inference_hist_ns": dict(self._inference_hist),
            }


def _gather(xs: list[Jets]) -> Jets:
    """One call's input from several events' jets, in the requests' order; for a model with several inputs, each
    input's arrays in that same order, so that a jet's rows in every input stay one jet's and the outputs split
    back by the requests' sizes."""
    if isinstance(xs[0], tuple):
        return tuple(np.concatenate([x[i] for x in xs]) for i in range(len(xs[0])))
    return np.concatenate(xs)


def _fill(hist: dict[str, int], ns: int) -> None:
    """Count ``ns`` in its log bin, keyed by the bin's geometric centre in ns."""
    b = math.floor(math.log2(max(ns, 1)) * _BINS_PER_OCTAVE)
    key = str(round(2 ** ((b + 0.5) / _BINS_PER_OCTAVE)))
    hist[key] = hist.get(key, 0) + 1


def _for_event(req: _Request) -> ModuleError:
    """The batch's error as this event's own exception (the framework records and blames it per event)."""
    err = req.error
    events, jets = req.batch
    detail = str(err) if isinstance(err, Exception) else f"the backend call was interrupted ({type(err).__name__})"
    if not isinstance(err, ModuleError):
        detail = f"{type(err).__name__}: {err}" if isinstance(err, Exception) else detail
    exc = ModuleError(f"{detail} [dynamic batch of {events} event(s), {jets} jet(s)]")
    exc.__cause__ = err
    return exc
