"""Per-event rows kept by services, in bounded memory however long the job runs.

A service that kept one row per event would grow by ~100 bytes per event: 100 MB per million events.
Past ``ROWS_KEPT`` events the rows are a sample instead, while everything that must be exact stays
exact (counts, sums, maxima, counts above a cut, the largest values):

* ``RowReservoir``: int64 rows; all of them up to ``capacity``, then a uniform random sample of
  ``capacity`` rows (Vitter's algorithm R, applied per block of rows with numpy), plus exact count,
  column sums and maxima, and exact counts of rows above given cuts. Percentiles and histograms come
  from the sample; totals and means from the exact sums.
* ``Thinned``: a series along the job (RSS per event): every row up to ``capacity``, then every
  2nd, 4th, ... row, so the plot still spans the whole job with at most ``capacity`` points.
"""

from __future__ import annotations

import numpy as np

ROWS_KEPT = 10_000  # per-event rows kept exactly; past that, a fixed-size sample (stated in the reports)
_BLOCK = 4096


class RowReservoir:
    """int64 rows of fixed width: exact totals over all rows, at most ``capacity`` rows kept."""

    __slots__ = ("width", "capacity", "count", "sums", "maxs", "above", "_cuts", "_kept", "_n_kept",
                 "_block", "_n", "_rng")

    def __init__(self, width: int, capacity: int | None = None, cuts: dict[int, int] | None = None,
                 seed: int = 0) -> None:
        self.width = width
        self.capacity = max(int(capacity or ROWS_KEPT), 1)
        self.count = 0  # rows seen (flushed)
        self.sums = np.zeros(width, np.int64)
        self.maxs = np.full(width, np.iinfo(np.int64).min, np.int64)
        self._cuts = dict(cuts or {})  # column -> cut: exact number of rows with value > cut
        self.above = {c: 0 for c in self._cuts}
        self._kept = np.empty((0, width), np.int64)
        self._n_kept = 0
        self._block = np.empty((_BLOCK, width), np.int64)
        self._n = 0
        self._rng = np.random.default_rng(seed)

    def append(self, row: list[int]) -> None:
        """The hot path: one row into the current block (a numpy row assignment)."""
        self._block[self._n] = row
        self._n += 1
        if self._n == _BLOCK:
            self._flush()

    def _flush(self) -> None:
        block = self._block[: self._n]
        self._n = 0
        if not len(block):
            return
        start = self.count
        self.count += len(block)
        self.sums += block.sum(axis=0)
        np.maximum(self.maxs, block.max(axis=0), out=self.maxs)
        for col, cut in self._cuts.items():
            self.above[col] += int(np.count_nonzero(block[:, col] > cut))
        free = max(self.capacity - self._n_kept, 0)
        if free:  # filling phase: keep every row
            take = block[:free]
            if len(self._kept) < self._n_kept + len(take):
                grown = np.empty((min(self.capacity, max(2 * len(self._kept), self._n_kept + len(take))),
                                  self.width), np.int64)
                grown[: self._n_kept] = self._kept[: self._n_kept]
                self._kept = grown
            self._kept[self._n_kept:self._n_kept + len(take)] = take
            self._n_kept += len(take)
            block = block[free:]
            start += free
        if len(block):  # algorithm R: row number t replaces a random kept row with probability cap/(t+1)
            t = np.arange(start, start + len(block))
            slot = (self._rng.random(len(block)) * (t + 1)).astype(np.int64)
            hit = slot < self.capacity
            self._kept[slot[hit]] = block[hit]  # later rows overwrite earlier ones, as sequentially

    def flush(self) -> "RowReservoir":
        self._flush()
        return self

    @property
    def sampled(self) -> bool:
        """True when the kept rows are a sample, not every row."""
        return self.flush().count > self._n_kept

    def array(self) -> np.ndarray:
        """The kept rows (a copy): every row, or a uniform sample of ``capacity`` rows."""
        self.flush()
        return self._kept[: self._n_kept].copy()

    def nbytes(self) -> int:
        return self._kept.nbytes + self._block.nbytes


class Thinned:
    """A series along the job in at most ``capacity`` rows: past that, every 2nd, 4th, ... row."""

    __slots__ = ("capacity", "stride", "seen", "_rows", "_n", "width")

    def __init__(self, width: int, capacity: int | None = None) -> None:
        self.width = width
        self.capacity = max(int(capacity or ROWS_KEPT) // 2 * 2, 2)
        self.stride = 1
        self.seen = 0
        self._rows = np.empty((self.capacity, width), np.int64)
        self._n = 0

    def append(self, row: tuple[int, ...]) -> None:
        seen = self.seen
        self.seen = seen + 1
        if seen % self.stride:
            return
        if self._n == self.capacity:  # full: keep every other row, take rows half as often
            half = self._rows[::2].copy()
            self._rows[: len(half)] = half
            self._n = len(half)
            self.stride *= 2
            if seen % self.stride:
                return
        self._rows[self._n] = row
        self._n += 1

    def array(self) -> np.ndarray:
        return self._rows[: self._n].copy()
