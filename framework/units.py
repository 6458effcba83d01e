"""Work units: the input split into (file, entry range) pieces of at most ``events_per_task`` events.

A unit is plain data (it travels to Dask workers). ``first_index`` is the job-wide index of its first
event, so per-event rows, output parts and reports keep the input order whatever worker ran the unit.

Duplicate events (the same run, lumi, event as one read before) are found by the client, over the whole
job in input order as a local run finds them (``Source.plan_duplicates``), and travel with each unit as
entry runs to skip: a check inside each unit alone kept the second copy of an event whose first copy is
in another unit, so a Dask run processed events a local run skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Runs = tuple[tuple[int, int], ...]  # sorted, disjoint entry ranges [a, b)


@dataclass(frozen=True)
class WorkUnit:
    """Entries ``start``..``stop`` (exclusive) of input ``file``; the ``index``-th unit of the job. ``name``
    is the input as configured (what the reports call it); ``file`` the path the workers open."""

    index: int
    file: str
    start: int
    stop: int
    first_index: int
    duplicates: Runs = ()  # entries of the range that repeat an earlier event of the job: skipped, counted
    name: str = ""  # the input as configured ("" : as ``file``)

    @property
    def events(self) -> int:
        return self.stop - self.start

    @property
    def tag(self) -> str:
        """A file-name-safe name, used for output parts (``out.root.unit00003.part``)."""
        return f"unit{self.index:05d}"

    def __str__(self) -> str:
        return f"unit {self.index} ({self.file} entries {self.start}-{self.stop})"


def plan_units(inputs: Sequence[tuple[str, int]], skip: int, limit: int | None, size: int,
               duplicates: Sequence[Runs] | None = None, names: Sequence[str] | None = None) -> list[WorkUnit]:
    """Split ``inputs`` [(file, entries)] in order, honouring skipEvents/maxEvents like the local source.
    ``duplicates``: per input, the entry runs that are duplicates (``Source.plan_duplicates``): maxEvents
    counts the events processed, so a duplicate entry does not count towards it (the local source reads on).
    ``names``: per input, its name as configured, where ``file`` is another path to it."""
    if size < 1:
        raise ValueError(f"events_per_task must be >= 1, got {size}")
    units: list[WorkUnit] = []
    to_skip, left, first = skip, limit, 0
    for i, (file, n) in enumerate(inputs):
        if left is not None and left <= 0:
            break
        runs = duplicates[i] if duplicates else ()
        start = min(to_skip, n)
        to_skip -= start
        stop = n if left is None else _stop_after(start, left, n, runs)
        for a in range(start, stop, size):
            b = min(a + size, stop)
            inside = _within(runs, a, b)
            units.append(WorkUnit(len(units), file, a, b, first, inside, names[i] if names else ""))
            first += b - a - sum(y - x for x, y in inside)
        if left is not None:
            left -= stop - start - sum(y - x for x, y in _within(runs, start, stop))
    return units


def events_after(inputs: Sequence[tuple[str, int]], skip: int, duplicates: Sequence[Runs] | None = None) -> int:
    """The events ``inputs`` hold past ``skip`` entries, less their duplicate entries: what they can give
    towards maxEvents (``duplicates`` as ``plan_units`` takes them)."""
    to_skip, events = skip, 0
    for i, (_, n) in enumerate(inputs):
        start = min(to_skip, n)
        to_skip -= start
        events += n - start - sum(y - x for x, y in _within(duplicates[i] if duplicates else (), start, n))
    return events


def _within(runs: Runs, a: int, b: int) -> Runs:
    """The parts of ``runs`` inside entries [a, b)."""
    return tuple((max(x, a), min(y, b)) for x, y in runs if x < b and y > a)


def _stop_after(start: int, events: int, n: int, runs: Runs) -> int:
    """The entry after the ``events``-th non-duplicate entry from ``start`` (``n`` if the file has fewer)."""
    stop = start
    for x, y in runs:
        if y <= stop:
            continue
        gap = max(x - stop, 0)  # non-duplicate entries before this run
        if gap >= events:
            break
        events -= gap
        stop = max(stop, y)
    return min(n, stop + events)
