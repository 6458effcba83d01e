"""The Timing service's measurements as mergeable data (one per stream, per work unit, per job).

Per-event rows (int64 ns: index, stream, event real, event CPU, each module's real, each module's CPU)
are kept while a merged result holds at most ``max_rows`` of them: ``bounded.ROWS_KEPT`` per stream of the
Process that measured them, ``options.executor.maxTimingRows`` at most (``Timing._job_rows``), so a Dask
job's units merge into no more rows than the same job run locally keeps (stated size: ``max_rows x (4 + 2 x
modules) x 8`` bytes, 1.1 MB for 10 000 rows of the default 5-module path). Past that the rows are
folded into fixed logarithmic histograms (boost-histogram, 100 ns .. 1000 s, 1000 bins, ~2.3 % wide) with exact sums,
sums of squares, minima and maxima per column, so any number of units merges in bounded memory;
means and totals stay exact, percentiles come from the histogram.

The Timing service folds its rows the same way while it measures: each stream keeps at most
``bounded.ROWS_KEPT`` rows, so a long local job or a large work unit arrives here as histograms
already (with the over-budget count counted exactly from the rows before they were folded).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import boost_histogram as bh
import numpy as np

FIXED = 4  # row columns before the modules: event index, stream, event real, event CPU
# 1000 log bins, 100 ns .. 1000 s: a Regular axis with a log transform bins in O(1) (a Variable axis
# searches 1001 edges: ~6x slower to fill); its edges equal np.geomspace(1e2, 1e12, 1001) to 1e-14
_TIME_AXIS = bh.axis.Regular(1000, 1e2, 1e12, transform=bh.axis.transform.log)
EDGES_NS = _TIME_AXIS.edges
# values outside the axis count in its first or last bin (clipped to those bins' centres, safe from rounding)
_CLIP_NS = (float(np.sqrt(EDGES_NS[0] * EDGES_NS[1])), float(np.sqrt(EDGES_NS[-2] * EDGES_NS[-1])))


@dataclass
class TimingHistograms:
    """Columns: event real, event CPU, overhead real, overhead CPU, modules real..., modules CPU...

    ``hist`` is a boost-histogram (column x time in ns on ``EDGES_NS``, int64 counts): it pickles (Dask
    ships it) and merges with ``+``; the exact sums, minima and maxima ride beside it."""

    hist: Any  # boost_histogram.Histogram
    total: np.ndarray  # (columns,) float64 ns
    sumsq: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    count: int

    @property
    def counts(self) -> np.ndarray:
        """(columns, bins) int64: a view of the histogram's bins (its flow bins stay empty: values are clipped)."""
        return self.hist.view()

    @classmethod
    def from_rows(cls, rows: np.ndarray, n: int) -> "TimingHistograms":
        """Fold a block of rows in one array ``fill``; below 100 ns counts in the first bin and from
        1000 s on in the last, as before boost-histogram (the exact minima and maxima keep the truth)."""
        mod_w = rows[:, FIXED:FIXED + n]
        mod_c = rows[:, FIXED + n:FIXED + 2 * n]
        cols = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] - mod_w.sum(axis=1),
                                rows[:, 3] - mod_c.sum(axis=1), mod_w, mod_c]).astype(np.float64)
        hist = bh.Histogram(bh.axis.Integer(0, cols.shape[1], underflow=False, overflow=False), _TIME_AXIS,
                            storage=bh.storage.Int64())
        hist.fill(np.broadcast_to(np.arange(cols.shape[1]), cols.shape).ravel(), np.clip(cols, *_CLIP_NS).ravel())
        empty = len(rows) == 0
        return cls(hist, cols.sum(axis=0), (cols ** 2).sum(axis=0),
                   np.full(cols.shape[1], np.inf) if empty else cols.min(axis=0),
                   np.full(cols.shape[1], -np.inf) if empty else cols.max(axis=0), len(rows))

    def merge(self, other: "TimingHistograms") -> "TimingHistograms":
        return TimingHistograms(self.hist + other.hist, self.total + other.total, self.sumsq + other.sumsq,
                                np.minimum(self.mins, other.mins), np.maximum(self.maxs, other.maxs),
                                self.count + other.count)


@dataclass
class TimingData:
    """Everything the Timing reports are rendered from; ``merge`` is associative."""

    descs: list[tuple[str, str, str, int]]  # (label, type, kind, index); index 0 is the source
    path_names: list[str]
    endpath_names: list[str]
    path_labels: dict[str, list[str]]
    deps: dict[str, list[str]]
    highlight: list[str]
    calls: np.ndarray
    path_w: np.ndarray
    path_runs: np.ndarray
    path_mod_w: np.ndarray  # (paths, modules)
    nested: set[tuple[int, int]] = field(default_factory=set)
    first_ns: int | None = None  # epoch ns of the first pull, the end of the last event or pull
    last_ns: int | None = None
    self_cost: dict[str, float] | None = None
    max_rows: int = 200_000
    rows: np.ndarray | None = None
    hist: TimingHistograms | None = None
    over_budget: int | None = None  # events with real time > options.budgetMs, exact (None: not counted)
    # the source's bulk I/O (file open, chunk read and conversion), kept out of the per-event times
    bulk_real_ns: int = 0
    bulk_cpu_ns: int = 0
    bulk_pulls: int = 0
    bulk_begin_real_ns: int = 0  # of it, read at begin_job for the loop (outside the loop's wall time)
    bulk_begin_cpu_ns: int = 0
    # run/lumi transitions done by a pull after its event was read, kept out of the event's times: the
    # wait for the other streams' events in flight, the begin/end hooks (real), the CPU of both
    transition_wait_ns: int = 0
    transition_real_ns: int = 0
    transition_cpu_ns: int = 0
    transitions: int = 0
    # the process's CPU from the first pull to the last end-of-input pull, every thread's (None: not
    # measured, as on Dask, where a worker process runs several units at once)
    process_cpu_ns: int | None = None

    @property
    def events(self) -> int:
        return len(self.rows) if self.rows is not None else self.hist.count if self.hist is not None else 0

    def bounded(self) -> "TimingData":
        """Fold the rows into histograms if there are more than ``max_rows`` of them."""
        if self.rows is not None and len(self.rows) > self.max_rows:
            return replace(self, rows=None, hist=TimingHistograms.from_rows(self.rows, len(self.descs)))
        return self

    def merge(self, other: "TimingData") -> "TimingData":
        if [d[0] for d in self.descs] != [d[0] for d in other.descs]:
            raise ValueError("Timing results of different processes cannot be merged")
        firsts = [t for t in (self.first_ns, other.first_ns) if t is not None]
        lasts = [t for t in (self.last_ns, other.last_ns) if t is not None]
        out = replace(self, calls=self.calls + other.calls, path_w=self.path_w + other.path_w,
                      path_runs=self.path_runs + other.path_runs, path_mod_w=self.path_mod_w + other.path_mod_w,
                      nested=self.nested | other.nested, first_ns=min(firsts) if firsts else None,
                      last_ns=max(lasts) if lasts else None, self_cost=self.self_cost or other.self_cost,
                      max_rows=min(self.max_rows, other.max_rows), bulk_real_ns=self.bulk_real_ns + other.bulk_real_ns,
                      bulk_cpu_ns=self.bulk_cpu_ns + other.bulk_cpu_ns, bulk_pulls=self.bulk_pulls + other.bulk_pulls,
                      bulk_begin_real_ns=self.bulk_begin_real_ns + other.bulk_begin_real_ns,
                      bulk_begin_cpu_ns=self.bulk_begin_cpu_ns + other.bulk_begin_cpu_ns,
                      transition_wait_ns=self.transition_wait_ns + other.transition_wait_ns,
                      transition_real_ns=self.transition_real_ns + other.transition_real_ns,
                      transition_cpu_ns=self.transition_cpu_ns + other.transition_cpu_ns,
                      transitions=self.transitions + other.transitions,
                      process_cpu_ns=None if self.process_cpu_ns is None or other.process_cpu_ns is None
                      else self.process_cpu_ns + other.process_cpu_ns,
                      over_budget=None if self.over_budget is None or other.over_budget is None
                      else self.over_budget + other.over_budget)
        if self.rows is not None and other.rows is not None and len(self.rows) + len(other.rows) <= out.max_rows:
            return replace(out, rows=np.concatenate([self.rows, other.rows]), hist=None)
        n = len(self.descs)
        mine = self.hist if self.rows is None else TimingHistograms.from_rows(self.rows, n)
        theirs = other.hist if other.rows is None else TimingHistograms.from_rows(other.rows, n)
        return replace(out, rows=None, hist=mine.merge(theirs))

    def sorted_rows(self) -> np.ndarray | None:
        if self.rows is None:
            return None
        return self.rows[np.argsort(self.rows[:, 0], kind="stable")]
