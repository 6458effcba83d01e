"""Per-event rows kept by services, in bounded memory however long the job runs.

A service that kept one row per event would grow by ~100 bytes per event: 100 MB per million events.
``ROWS_KEPT`` is the bound per stream (per work unit in a Dask run); what is exact stays exact past it:

* Timing keeps every row up to ``ROWS_KEPT``, then folds its rows into fixed log histograms with
  exact totals, minima, maxima and over-budget count (``timing.py``, ``timing_data.py``).
* ``Thinned``: a series along the job (RSS per event, Memory): every row up to ``capacity``, then
  every 2nd, 4th, ... row, so the plot still spans the whole job with at most ``capacity`` points.
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
