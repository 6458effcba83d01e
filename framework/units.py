"""Work units: the input split into (file, entry range) pieces of at most ``events_per_task`` events.

A unit is plain data (it travels to Dask workers). ``first_index`` is the job-wide index of its first
event, so per-event rows, output parts and reports keep the input order whatever worker ran the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class WorkUnit:
    """Entries ``start``..``stop`` (exclusive) of input ``file``; the ``index``-th unit of the job."""

    index: int
    file: str
    start: int
    stop: int
    first_index: int

    @property
    def events(self) -> int:
        return self.stop - self.start

    @property
    def tag(self) -> str:
        """A file-name-safe name, used for output parts (``out.root.unit00003.part``)."""
        return f"unit{self.index:05d}"

    def __str__(self) -> str:
        return f"unit {self.index} ({self.file} entries {self.start}-{self.stop})"


def plan_units(inputs: Sequence[tuple[str, int]], skip: int, limit: int | None, size: int) -> list[WorkUnit]:
    """Split ``inputs`` [(file, entries)] in order, honouring skipEvents/maxEvents like the local source."""
    if size < 1:
        raise ValueError(f"events_per_task must be >= 1, got {size}")
    units: list[WorkUnit] = []
    to_skip, left, first = skip, limit, 0
    for file, n in inputs:
        if left is not None and left <= 0:
            break
        start = min(to_skip, n)
        to_skip -= start
        stop = n if left is None else min(n, start + left)
        for a in range(start, stop, size):
            b = min(a + size, stop)
            units.append(WorkUnit(len(units), file, a, b, first))
            first += b - a
        if left is not None:
            left -= max(stop - start, 0)
    return units
