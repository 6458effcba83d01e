"""CMS certification ("Golden") JSON lumi masks: ``source.lumiMask``, as CRAB's ``lumiMask`` and CMSSW's
``LumiList(filename=...).getVLuminosityBlockRange()`` take them.

The format (FWCore/PythonUtilities/python/LumiList.py's compact list): one JSON object, each key a run
number written as a string, each value a list of inclusive ``[first, last]`` lumi ranges of that run::

    {"355374": [[1, 24], [30, 99]], "355375": [[1, 7]]}

A lumi section is selected when one of its run's ranges holds it, exactly as the ``"R:first-R:last"``
strings LumiList hands to ``lumisToProcess`` select it in CMSSW (a ``last`` of 0 is LumiList's "to the end
of the run"; overlapping ranges select their union). A ``first`` of 0 is read as lumi 1 here: real lumi
sections start at 1 (CMSSW's C++ range would make ``R:0-R:5`` select nothing). A run with an
empty list selects nothing of that run, as in LumiList.

Stricter than LumiList where it would select something else than the file says without a word: a run
listed twice (``json.load`` keeps the last list), a range out of order (``[5, 3]`` selects nothing), a
number that is not a whole number in CMSSW's 32-bit range, and a mask that selects nothing at all are
refused, one line naming the file and the culprit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .event import MAX32
from .ranges import LumiRange
from .resources import find_file, unreadable_reason

EXAMPLE = '{"355374": [[1, 24], [30, 99]]}'


@dataclass(frozen=True)
class LumiMask:
    """A read mask: the file as found, its sha256 (which mask, months later) and its lumi ranges."""

    path: str
    sha256: str
    ranges: tuple[LumiRange, ...]

    def record(self) -> dict[str, str]:
        """What the job's facts (hltrun.json, the outputs' provenance) keep of it."""
        return {"file": self.path, "sha256": self.sha256}


def read_lumi_mask(given: str) -> LumiMask:
    """Read and check the mask ``given`` (a path, ``~`` or a ``file://`` URL); ValueError naming the file and
    the culprit (a parameter check's error: the configuration prefixes the key)."""
    try:
        path = find_file(given, "lumiMask")  # a remote URL: the words every other input gets
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    why = unreadable_reason(path, "lumiMask file")  # a FIFO would block the job for ever
    if why is not None:
        raise ValueError(why)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"lumiMask: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    try:
        runs = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_pairs)
    except UnicodeDecodeError:
        raise ValueError(f"lumiMask: {path} is not a JSON text (not UTF-8); expected a CMS certification "
                         f"JSON like {EXAMPLE}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"lumiMask: {path} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         f"expected a CMS certification JSON like {EXAMPLE}") from None
    try:
        ranges = _ranges(runs)
    except ValueError as exc:
        raise ValueError(f"lumiMask: {path}: {exc}") from None
    return LumiMask(os.path.abspath(path), hashlib.sha256(data).hexdigest(), ranges)


class _Object(list):
    """A JSON object as its (key, value) pairs, so that a run listed twice is seen (``dict`` keeps the last)."""


def _pairs(items: list[tuple[str, Any]]) -> _Object:
    return _Object(items)


def _ranges(runs: Any) -> tuple[LumiRange, ...]:
    if not isinstance(runs, _Object):
        raise ValueError(f"expected an object of runs and their lumi ranges like {EXAMPLE}, got {_kind(runs)}")
    if not runs:
        raise ValueError("no run in it (an empty object selects no lumi section)")
    out: list[LumiRange] = []
    seen: dict[int, str] = {}
    for key, value in runs:
        run = _run_number(key)
        if run in seen:
            raise ValueError(f"run {key!r} is listed twice{'' if seen[run] == key else f' (as {seen[run]!r})'}: "
                             f"JSON readers keep only the last list; merge them into one")
        seen[run] = key
        if not _array(value):
            raise ValueError(f"run {key!r}: expected a list of [first, last] lumi ranges, got {_show(value)}")
        for item in value:
            out.append(_lumi_range(key, run, item))
    if not out:
        raise ValueError("no lumi range in it (every run's list is empty): it selects no lumi section")
    return tuple(out)


def _run_number(key: str) -> int:
    if not (key.isascii() and key.isdigit()):
        raise ValueError(f"run {key!r} is not a run number (keys are run numbers as strings, e.g. \"355374\")")
    run = int(key)
    if run > MAX32:
        raise ValueError(f"run {key!r} is out of range (0 to {MAX32})")
    return run


def _lumi_range(key: str, run: int, item: Any) -> LumiRange:
    """``[first, last]`` of run ``run`` as a LumiRange, with CMSSW's meaning of 0 (see the module docstring)."""
    if not (_array(item) and len(item) == 2):
        raise ValueError(f"run {key!r}: expected lumi ranges as [first, last] lists, got {_show(item)}")
    for number in item:
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValueError(f"run {key!r}: lumi range {_show(item)}: {_show(number)} is not a whole lumi number")
        if not 0 <= number <= MAX32:
            raise ValueError(f"run {key!r}: lumi range {_show(item)}: lumi {number} is out of range (0 to {MAX32})")
    first, last = item
    if last != 0 and last < first:
        raise ValueError(f"run {key!r}: lumi range {_show(item)} is out of order (first > last)")
    return LumiRange((run, first or 1), (run, last))


def _array(value: Any) -> bool:
    return isinstance(value, list) and not isinstance(value, _Object)


def _plain(value: Any) -> Any:
    """``value`` with each ``_Object`` a dict again (to show it as the file wrote it)."""
    if isinstance(value, _Object):
        return {key: _plain(item) for key, item in value}
    return [_plain(item) for item in value] if isinstance(value, list) else value


def _kind(value: Any) -> str:
    return "an array" if _array(value) else _show(value)


def _show(value: Any) -> str:
    text = json.dumps(_plain(value))
    return text if len(text) <= 40 else text[:37] + "..."
