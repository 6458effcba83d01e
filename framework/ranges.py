"""CMSSW's lumi and event ranges (``VLuminosityBlockRange``, ``VEventRange``), as PoolSource's
``lumisToProcess`` and ``eventsToProcess`` take them, and the selection they make.

Syntax as FWCore/ParameterSet/python/Types.py parses it:

* a lumi range ``"R:L-R:L"`` or one lumi ``"R:L"``; ``max`` as the end lumi: to the end of that run
  (``"2:3-2:max"``), ``min`` or ``0`` as a lumi: 1;
* an event range ``"R:L:E-R:L:E"`` or ``"R:E-R:E"`` (the lumi then plays no part), or one event
  ``"R:L:E"`` / ``"R:E"``; ``max`` as the end event: to the end of that run (and lumi).

An event is selected if its lumi is in one of ``lumisToProcess`` (when given) and it is in one of
``eventsToProcess`` (when given), as PoolSource does, and its lumi is in the ``lumiMask`` (a CMS
certification JSON, framework/lumimask.py; when given): the mask narrows the ranges, as CRAB's
``runRange`` narrows its ``lumiMask``. Chunks are tested at once with numpy, so the
selection costs nothing per event in Python.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .event import ID_MAX, MAX32 as _MAX32, MAX64

_MAX64 = np.uint64(MAX64)
_LIMITS = {"run": ID_MAX["run"], "lumi": ID_MAX["luminosityBlock"], "event": ID_MAX["event"]}


def _number(text: str, what: str, end: bool, kind: str = "run") -> int:
    """A run/lumi/event number; ``max`` (0 in CMSSW) as an end means no limit, ``min``/``0`` as a start 1
    (a lumi's or an event's: run 0 is run 0, as in CMSSW's LuminosityBlockRange and EventRange).
    A number past CMSSW's range (``kind``: run and lumi 32-bit, event 64-bit) is refused: it would
    overflow numpy's selection, or alias another (a lumi 2^32+1 packed beside its run is lumi 1)."""
    t = text.strip().lower()
    if t == "max" and end:
        return 0
    if not end and (t == "min" or (t == "0" and kind != "run")):
        return 1
    if not (t.isascii() and t.isdigit()):
        raise ValueError(what)
    value = int(t)
    if value > _LIMITS[kind]:
        raise ValueError(f"{kind} number {value} is out of range (0 to {_LIMITS[kind]})")
    return value


@dataclass(frozen=True)
class LumiRange:
    start: tuple[int, int]
    end: tuple[int, int]  # lumi 0: to the end of the run


@dataclass(frozen=True)
class EventRange:
    start: tuple[int, int, int]  # (run, lumi, event); lumi 0 in both: lumis play no part ("R:E")
    end: tuple[int, int, int]  # event 0: to the end of the run (and lumi)


def _split(text: str, what: str) -> tuple[list[str], list[str]]:
    parts = str(text).replace(" ", "").split("-")
    if len(parts) > 2 or not parts[0]:
        raise ValueError(what)
    return parts[0].split(":"), (parts[1] if len(parts) == 2 else parts[0]).split(":")


def parse_lumi_range(text: str) -> LumiRange:
    what = f"expected 'run:lumi' or 'run:lumi-run:lumi' (e.g. '1:1-1:5', '2:3-2:max'), got {text!r}"
    a, b = _split(text, what)
    if len(a) != 2 or len(b) != 2:
        raise ValueError(what)
    start = (_number(a[0], what, False), _number(a[1], what, False, "lumi"))
    end = (_number(b[0], what, False), _number(b[1], what, True, "lumi"))
    if end[0] < start[0] or (end[0] == start[0] and end[1] != 0 and end[1] < start[1]):
        raise ValueError(f"lumi range {text!r} is out of order")
    return LumiRange(start, end)


def parse_event_range(text: str) -> EventRange:
    what = (f"expected 'run:event', 'run:lumi:event' or a range of them "
            f"(e.g. '1:5:100-1:7:max', '1:100-2:50'), got {text!r}")
    a, b = _split(text, what)
    if len(a) != len(b) or len(a) not in (2, 3):
        raise ValueError(what)
    if len(a) == 2:
        a, b = [a[0], "0", a[1]], [b[0], "0", b[1]]
    start = (_number(a[0], what, False), int(a[1]) if a[1] == "0" else _number(a[1], what, False, "lumi"),
             _number(a[2], what, False, "event"))
    end = (_number(b[0], what, False), int(b[1]) if b[1] == "0" else _number(b[1], what, False, "lumi"),
           _number(b[2], what, True, "event"))
    if end[:2] < start[:2] or (end[:2] == start[:2] and end[2] != 0 and end[2] < start[2]):
        raise ValueError(f"event range {text!r} is out of order")
    return EventRange(start, end)


def _in(exc: ValueError, text: str) -> str:
    """The parse error, naming the entry where the message does not quote it already."""
    msg = str(exc)
    return msg if repr(str(text)) in msg else f"{msg} in {str(text)!r}"


class _LumiIndex:
    """``ranges`` as sorted starts and running farthest ends, built once per selection: a test is then one
    binary search per event, not one pass over the chunk per range (a year's certification JSON holds
    thousands of ranges), and nothing per chunk grows with the number of ranges."""

    def __init__(self, ranges: Sequence[LumiRange]) -> None:
        lo = np.array([(r.start[0] << 32) | r.start[1] for r in ranges], np.uint64)
        hi = np.array([(r.end[0] << 32) | (r.end[1] or _MAX32) for r in ranges], np.uint64)
        order = np.argsort(lo, kind="stable")
        self.lo, self.reach = lo[order], np.maximum.accumulate(hi[order])  # reach[i]: farthest end of 0..i

    def holds(self, rl: np.ndarray) -> np.ndarray:
        """Which of the (run << 32 | lumi) values one of the ranges holds."""
        last = np.searchsorted(self.lo, rl, side="right") - 1  # the last range starting at or before each
        return (last >= 0) & (rl <= self.reach[np.maximum(last, 0)])


@dataclass(frozen=True)
class Selection:
    """lumisToProcess, eventsToProcess and the lumiMask's ranges of a source; empty ones select everything."""

    lumis: tuple[LumiRange, ...] = ()
    events: tuple[EventRange, ...] = ()
    lumi_mask: tuple[LumiRange, ...] = ()  # a certification JSON's (never empty when one is given: lumimask.py)

    @classmethod
    def parse(cls, lumis: Sequence[str], events: Sequence[str], mask: Sequence[LumiRange] = ()) -> "Selection":
        """Raises ValueError naming the parameter and the entry that is malformed."""
        out_lumis, out_events = [], []
        for i, text in enumerate(lumis):
            try:
                out_lumis.append(parse_lumi_range(text))
            except ValueError as exc:
                raise ValueError(f"lumisToProcess[{i}]: {_in(exc, text)}") from None
        for i, text in enumerate(events):
            try:
                out_events.append(parse_event_range(text))
            except ValueError as exc:
                raise ValueError(f"eventsToProcess[{i}]: {_in(exc, text)}") from None
        return cls(tuple(out_lumis), tuple(out_events), tuple(mask))

    def __bool__(self) -> bool:
        return bool(self.lumis or self.events or self.lumi_mask)

    @functools.cached_property
    def _lumi_indexes(self) -> tuple[_LumiIndex, ...]:
        """lumisToProcess's and the mask's ranges, indexed once (not per chunk)."""
        return tuple(_LumiIndex(ranges) for ranges in (self.lumis, self.lumi_mask) if ranges)

    def mask(self, run: np.ndarray, lumi: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Which of the events (run, lumi, event arrays) are selected."""
        run, lumi, event = (np.asarray(x, np.uint64) for x in (run, lumi, event))
        keep = np.ones(len(run), bool)
        for index in self._lumi_indexes:
            keep &= index.holds((run << np.uint64(32)) | lumi)
        if self.events:
            inside = np.zeros(len(run), bool)
            for r in self.events:
                if r.start[1] == 0:  # "R:E": runs and events only
                    outer = run
                    lo_o, hi_o = np.uint64(r.start[0]), np.uint64(r.end[0])
                else:
                    outer = (run << np.uint64(32)) | lumi
                    lo_o = np.uint64((r.start[0] << 32) | r.start[1])
                    hi_o = np.uint64((r.end[0] << 32) | r.end[1])
                lo_e = np.uint64(r.start[2])
                hi_e = np.uint64(r.end[2]) if r.end[2] else _MAX64
                after = (outer > lo_o) | ((outer == lo_o) & (event >= lo_e))
                before = (outer < hi_o) | ((outer == hi_o) & (event <= hi_e))
                inside |= after & before
            keep &= inside
        return keep
