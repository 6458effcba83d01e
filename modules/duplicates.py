"""Duplicate event ids across input files, as CMSSW's ``duplicateCheckMode`` finds them.

Modes (CMSSW's names): ``checkAllFilesOpened`` (default) remembers every (run, lumi, event) of the
job; ``checkEachFile`` only those of the current file; ``noDuplicateCheck`` none. A duplicate is not
processed: it is skipped and counted, and the first few are named in the log.

A distributed run finds them on its client, over the whole job in input order (``duplicate_runs``), and
each work unit skips the entries found (``PlannedDuplicates``): the units run anywhere in any order, and
a check inside each alone kept an event whose first copy was in another unit.

Memory: ids are kept as 16-byte keys in sorted numpy runs merged like a log-structured tree
(O(log n) runs, O(n log n) total work): 16 bytes per event remembered, i.e. 16 MB per million events
in ``checkAllFilesOpened`` mode, bounded by the largest file in ``checkEachFile`` mode. A merge holds
its two runs and the merged one (sorted in place) at once: up to twice the remembered bytes, briefly,
when the largest runs merge (docs/memory.md, "What grows in a long job").
"""

from __future__ import annotations

from typing import Iterable, Iterator, Literal

import numpy as np

from hltrun.framework.event import MAX32 as _MAX32

Mode = Literal["checkAllFilesOpened", "checkEachFile", "noDuplicateCheck"]
_KEY = np.dtype([("runlumi", ">u8"), ("event", ">u8")])  # big-endian: byte order == numeric order


def keys(run: np.ndarray, lumi: np.ndarray, event: np.ndarray) -> np.ndarray:
    """(run, lumi, event) -> 16-byte sortable keys. Run and lumi are 32-bit in CMS data and share the
    key's first 8 bytes: one outside 0..2^32-1 would alias another id (lumi 2^32+1 is lumi 1 of the next
    run's key space), so it is refused here (ValueError), not packed; the source refuses such ids
    first, in a line naming the file (source.event_ids.id_values)."""
    run, lumi, event = (np.asarray(x) for x in (run, lumi, event))
    for name, values in (("run", run), ("lumi", lumi)):
        if len(values) and (values.min() < 0 or values.max() > _MAX32):
            raise ValueError(f"duplicate check: {name} numbers must be 0 to {_MAX32}, got {values.min()!r} "
                             f"to {values.max()!r}")
    if len(event) and event.min() < 0:
        raise ValueError(f"duplicate check: event numbers must be 0 to 2^64-1, got {event.min()!r}")
    k = np.empty(len(event), _KEY)
    k["runlumi"] = (run.astype(np.uint64) << np.uint64(32)) | lumi.astype(np.uint64)
    k["event"] = event.astype(np.uint64)
    return k.view("V16")


class DuplicateChecker:
    """``first_seen(keys)`` -> mask of the entries that are not duplicates; remembers them."""

    def __init__(self, mode: Mode = "checkAllFilesOpened") -> None:
        self.mode = mode
        self._runs: list[np.ndarray] = []  # sorted, disjoint; sizes decrease along the list

    def new_file(self) -> None:
        if self.mode == "checkEachFile":
            self._runs = []

    def _known(self, k: np.ndarray) -> np.ndarray:
        found = np.zeros(len(k), bool)
        for run in self._runs:
            idx = np.searchsorted(run, k)
            idx[idx == len(run)] = 0
            found |= run[idx] == k
        return found

    def first_seen(self, k: np.ndarray) -> np.ndarray:
        if self.mode == "noDuplicateCheck" or len(k) == 0:
            return np.ones(len(k), bool)
        keep = np.zeros(len(k), bool)
        keep[np.unique(k, return_index=True)[1]] = True  # the first of equal ids within this chunk
        keep &= ~self._known(k)
        self._add(np.sort(k[keep]))
        return keep

    def _add(self, run: np.ndarray) -> None:
        if len(run) == 0:
            return
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            merged = np.concatenate([self._runs[-1], last])
            merged.sort()  # in place: np.sort's copy made a merge hold its runs three times, not twice
            self._runs[-1] = merged

    @property
    def remembered(self) -> int:
        return sum(len(r) for r in self._runs)


Runs = tuple[tuple[int, int], ...]  # sorted, disjoint entry ranges [a, b) (framework.units.Runs)


def duplicate_runs(files: Iterable[tuple[int, Iterator[tuple[int, np.ndarray | None]]]], mode: Mode,
                   limit: int | None) -> list[Runs]:
    """Per file, the entry runs that are duplicates of an event before them in the job, as the event loop's
    checker finds them reading the files in order. ``files``: (first entry read, its (entries, keys or None)
    chunk by chunk, lazily); ``limit``: stop once that many events are found (maxEvents: the rest is never
    read, and a file after that is not opened)."""
    checker, result, left = DuplicateChecker(mode), [], limit
    for start, chunks in files:
        if mode == "noDuplicateCheck" or (left is not None and left <= 0):
            result.append(())
            continue
        checker.new_file()
        masks = []
        for n, k in chunks:
            keep = np.ones(n, bool) if k is None else checker.first_seen(k)
            masks.append(keep)
            if left is not None:
                left -= int(keep.sum())
                if left <= 0:
                    break
        result.append(_runs(np.concatenate(masks) if masks else np.ones(0, bool), start))
    return result


def _runs(keep: np.ndarray, start: int) -> Runs:
    """The runs of False in ``keep`` as entry ranges (``keep[0]`` is entry ``start``)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~keep).astype(np.int8), [0]])))
    return tuple((start + int(a), start + int(b)) for a, b in zip(edges[::2], edges[1::2]))


class PlannedDuplicates:
    """A work unit's checker: the entries the client found to be duplicates (``duplicate_runs``) are the
    ones skipped, whatever this unit has seen; ``first_seen`` takes the unit's chunks in order from ``start``."""

    def __init__(self, runs: Runs, start: int) -> None:
        self.runs, self.at = runs, start

    def new_file(self) -> None:
        pass

    def first_seen(self, k: np.ndarray) -> np.ndarray:
        keep = np.ones(len(k), bool)
        for a, b in self.runs:
            lo, hi = max(a, self.at) - self.at, min(b, self.at + len(k)) - self.at
            if lo < hi:
                keep[lo:hi] = False
        self.at += len(k)
        return keep
