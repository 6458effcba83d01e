"""Per-event rows kept by services, in bounded memory however long the job runs.

A service that kept one row per event would grow by ~100 bytes per event: 100 MB per million events.
``ROWS_KEPT`` is the bound per stream (per work unit in a Dask run); what is exact stays exact past it:

* Timing keeps every row up to ``ROWS_KEPT``, then folds its rows into fixed log histograms with
  exact totals, minima, maxima and over-budget count (``timing.py``, ``timing_data.py``).
* ``Thinned``: a series along the job (RSS per event, Memory): every row up to ``capacity``, then
  every 2nd, 4th, ... row, so the plot still spans the whole job with at most ``capacity`` points.
* ``thin_series``: such series from several work units (and workers) merged into one of at most
  ``ROWS_KEPT`` points, as bounded as one local job's, evenly along the job's event numbers.
"""

from __future__ import annotations

import numpy as np

ROWS_KEPT = 10_000  # per-event rows kept exactly per stream; past that, histograms or a thinned series


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


def _first_per_bucket(rows: np.ndarray, stride: int) -> np.ndarray:
    """The rows (sorted by column 0) with the smallest column 0 in each bucket of ``stride`` values of it."""
    if len(rows) == 0:
        return rows
    bucket = rows[:, 0] // stride
    keep = np.empty(len(rows), bool)
    keep[0] = True
    keep[1:] = bucket[1:] != bucket[:-1]
    return rows[keep]


def thin_series(series: dict[str, np.ndarray], stride: int, capacity: int) -> tuple[dict[str, np.ndarray], int]:
    """Series keyed by who measured them (a worker), each ``(n, k)`` rows led by the job's event number,
    thinned together to at most ``capacity`` rows in all: per key, the first row of every bucket of
    ``stride`` events, the stride doubled until they fit; returns them and the stride.

    Why buckets of event numbers and not every other row: work units thinned at different strides
    (a unit of 1000 events keeps every one, a unit of 40,000 every 4th) give, halved row by row, a series
    dense in some units and sparse in others; a bucket grid is even along the job whatever the units kept.
    It is also associative: with power-of-two strides the buckets nest, so merging in any order keeps the
    same rows (the first of each bucket of the union at the smallest stride that fits)."""
    stride = max(int(stride), 1)
    ordered = {key: rows[np.lexsort(rows.T[::-1])] for key, rows in series.items()}
    span = max((int(rows[-1, 0]) + 1 for rows in ordered.values() if len(rows)), default=0)
    while True:
        kept = {key: _first_per_bucket(rows, stride) for key, rows in ordered.items()}
        if sum(len(rows) for rows in kept.values()) <= capacity or stride >= span:  # more keys than capacity
            return kept, stride
        ordered, stride = kept, stride * 2
