"""Event ids and lumi sections: a chunk's run, lumi and event numbers, checked, and the lumis handed out.

Apart from the conversion: the ids drive the duplicate check, the lumi/event selections and the job
report's runs and lumis, and their checks (whole numbers in CMSSW's range) are the same at begin_job
and per chunk.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Iterator

import awkward as ak
import numpy as np

from hltrun.framework.errors import SourceError
from hltrun.framework.event import ID_MAX, EventID

from ..duplicates import keys
from .chunk import Chunk
from .tree import has, read_columns, read_failure
from .parameters import JetBranches

_RUN, _LUMI, _EVENT = attrgetter("run"), attrgetter("luminosityBlock"), attrgetter("event")


# event-id numbers as CMSSW stores them: run and lumi are 32-bit, the event number 64-bit (unsigned)
_ID_LIMITS = {role: most + 1 for role, most in ID_MAX.items()}  # one past the largest: values must stay below
_ID_WORDS = {"run": "run", "luminosityBlock": "lumi", "event": "event"}
_FLOAT_EXACT = 2**53  # a float64 holds every whole number below it, and not every one above


def one_per_event(array: ak.Array, name: str, role: str, setting: str, path: str) -> None:
    """A per-event branch (an event id, the weight) holds one number per event: a list per event
    (``event`` given a jagged branch) would be read as something else, or fail deep in numpy."""
    if array.ndim != 1:
        got = "a list per event" if array.ndim == 2 else f"{array.ndim - 1} levels of lists"
        raise SourceError(f"source: {role} branch '{name}' ({setting}) must hold one number per event, got "
                          f"{got} in {path}")


# no generator weight comes near it (cross sections in pb, NLO signs); past ~1.3e154 the squared weights of the
# rates' Sumw2 overflowed a double: the job ended in "internal error: OverflowError", exit 1, with no report
MAX_WEIGHT = 1e100


def weight_values(array: ak.Array, name: str, path: str, first_entry: int,
                  setting: str = "source.branches.weight") -> np.ndarray:
    """The weight branch's values as float64, once every one is a finite number. A NaN or infinite
    generator weight would make every rate and weighted figure it enters NaN (sums of weights), without a
    word: the file is bad data, said with its entry and value as for an event id (``skipBadFiles`` skips from
    that entry). Dropping the event instead would change the sample's normalisation just as silently.
    Vectorised: at begin_job on the entries the file check reads, then per chunk. ``setting``: where the user
    named the branch (hltcard's ``--weight-branch``)."""
    one_per_event(array, name, "weight", setting, path)
    values = np.asarray(array)
    if values.dtype.kind not in "iuf":
        raise SourceError(f"source: weight branch '{name}' ({setting}) is {values.dtype.name} in {path}, not a "
                          "number", first_entry=first_entry)
    values = values.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~(np.abs(values) <= MAX_WEIGHT))  # NaN compares False: caught with the infinities
    if len(bad):
        at = int(bad[0])
        more = f" (and {len(bad) - 1} more of entries {first_entry}-{first_entry + len(values)})" if len(bad) > 1 \
            else ""
        raise SourceError(f"source: weight branch '{name}' ({setting}) holds {values[at].item()!r} at entry "
                          f"{first_entry + at} of {path}{more}: an event weight must be a finite number (a NaN or "
                          "infinite one makes every rate it enters NaN) of magnitude at most "
                          f"{MAX_WEIGHT:.0e} (sums of squared weights must fit a double)", first_entry=first_entry)
    return values


def id_values(array: ak.Array, name: str, role: str, path: str, first_entry: int) -> np.ndarray:
    """An event-id branch's values as uint64, once they are known to be whole numbers in CMSSW's range
    (run, lumi: 0 to 2^32-1; event: 0 to 2^64-1). An integer branch is read as is; a float branch
    (some ntuples write ids as double) only where every value is a whole number below 2^53, which a
    double holds exactly: 0.1 must not become event 0, NaN must not become anything. Vectorised."""
    setting = f"source.branches.{role}"
    one_per_event(array, name, "event-id", setting, path)
    values = np.asarray(array)
    kind, limit = values.dtype.kind, _ID_LIMITS[role]
    if kind not in "iuf":
        raise SourceError(f"source: event-id branch '{name}' ({setting}) is {values.dtype.name} in {path}, "
                          f"not an integer")
    if kind == "f":
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(values) & (values >= 0) & (values < min(limit, _FLOAT_EXACT)) \
                & (values == np.floor(values))
    else:
        ok = None
        if kind == "i":
            ok = values >= 0
        if np.iinfo(values.dtype).max >= limit:
            ok = values < limit if ok is None else ok & (values < limit)
    bad = np.flatnonzero(~ok) if ok is not None else ()
    if len(bad):
        at = int(bad[0])
        value = values[at].item()
        raise SourceError(f"source: event-id branch '{name}' ({setting}) holds {value!r} at entry "
                          f"{first_entry + at} of {path}: {_ID_WORDS[role]} numbers are whole numbers from 0 to "
                          f"{limit - 1}" + (" (a float branch is read where every value is a whole number below "
                                            "2^53)" if kind == "f" else ""), first_entry=first_entry)
    return values.astype(np.uint64, copy=False)


def id_columns(arrays: ak.Array, b: JetBranches, path: str, first_entry: int) -> dict[str, np.ndarray]:
    """The event-id branches among ``arrays``' fields (by role: run, luminosityBlock, event), checked
    (``id_values``) and as uint64: at begin_job on the entries the file check reads, then per chunk."""
    return {role: id_values(arrays[name], name, role, path, first_entry)
            for role, name in (("run", b.run), ("luminosityBlock", b.luminosityBlock), ("event", b.event))
            if name and name in arrays.fields}


def event_ids(arrays: ak.Array, b: JetBranches, path: str, first_entry: int
              ) -> tuple[list[EventID], np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A chunk's EventIDs, their duplicate-check keys (None without an event branch) and its (run, lumi,
    event) arrays; an absent id branch counts as run 1, lumi 1, event entry number + 1."""
    run, lumi, evt = _id_arrays(arrays, b, path, first_entry)
    ids = [EventID(r, l, e) for r, l, e in zip(run.tolist(), lumi.tolist(), evt.tolist())]
    return ids, (keys(run, lumi, evt) if b.event else None), (run, lumi, evt)  # entry numbers are no event ids


def _id_arrays(arrays: ak.Array, b: JetBranches, path: str, first_entry: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(arrays)
    found = id_columns(arrays, b, path, first_entry)
    return (found.get("run", np.ones(n, np.uint64)), found.get("luminosityBlock", np.ones(n, np.uint64)),
            found.get("event", np.arange(first_entry + 1, first_entry + n + 1, dtype=np.uint64)))


def id_keys(tree: Any, b: JetBranches, path: str, start: int, stop: int, step: int
            ) -> Iterator[tuple[int, np.ndarray | None]]:
    """(entries, duplicate-check keys or None) of entries ``start``..``stop`` of ``tree``, chunk by chunk,
    reading the id branches only: the keys ``event_ids`` gives the event loop for the same entries, for the
    Dask client's job-wide duplicate check (``RootJetSource.plan_duplicates``)."""
    names = [n for n in (b.run, b.luminosityBlock, b.event) if n and has(tree, n)]
    if not b.event:
        yield stop - start, None
        return
    for at in range(start, stop, step):
        end = min(stop, at + step)
        try:
            arrays = read_columns(tree, names, at, end) if names \
                else ak.Array(np.zeros(end - at))  # no id branch: the entry numbers, as event_ids counts them
        except Exception as exc:  # a corrupt basket: the event loop's line (skipBadFiles skips from here)
            raise read_failure(path, at, end, exc) from exc
        yield end - at, keys(*_id_arrays(arrays, b, path, at))


def lumi_at(tree: Any, b: JetBranches, path: str, entry: int) -> tuple[int, int]:
    """(run, lumi) of one entry, reading the id branches only: where maxEvents stopped, whether the next entry
    is of the same lumi section (one cut short, whose per-lumi rate is of its first events only)."""
    names = [n for n in (b.run, b.luminosityBlock) if n and has(tree, n)]
    return lumi_in(read_columns(tree, names, entry, entry + 1) if names else ak.Array(np.zeros(1)), b, path, entry)


def lumi_in(arrays: ak.Array, b: JetBranches, path: str, entry: int) -> tuple[int, int]:
    """(run, lumi) of the first entry of ``arrays`` (entry ``entry`` of ``path``): a file read whole is not read again."""
    run, lumi, _ = _id_arrays(arrays[:1], b, path, entry)
    return int(run[0]), int(lumi[0])


def event_id_arrays(chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(run, lumi, event) arrays of a chunk's events (from its ids if it was built without them)."""
    if chunk.id_arrays is not None:
        return chunk.id_arrays
    n = len(chunk.ids)
    return tuple(np.fromiter(map(get, chunk.ids), np.uint64, n) for get in (_RUN, _LUMI, _EVENT))  # type: ignore[return-value]


def count_lumis(lumis: dict[str, int], chunk: Chunk, used: int, handed: np.ndarray | None) -> None:
    """Add the first ``used`` events of ``chunk`` (those ``handed`` marks, if given) to ``lumis``
    ("run:lumi" -> events): once per chunk with numpy, not per event."""
    run, lumi, _ = event_id_arrays(chunk)
    key = (np.asarray(run[:used], np.uint64) << np.uint64(32)) | np.asarray(lumi[:used], np.uint64)
    if handed is not None:
        key = key[handed]
    values, counts = np.unique(key, return_counts=True)
    for k, n in zip(values.tolist(), counts.tolist()):
        name = f"{k >> 32}:{k & 0xFFFFFFFF}"
        lumis[name] = lumis.get(name, 0) + n


def handed_out(keep: np.ndarray | None, selected: np.ndarray | None, used: int) -> np.ndarray | None:
    """The events of a chunk's first ``used`` that were handed out: not duplicates, and selected."""
    if keep is None and selected is None:
        return None
    if keep is None:
        return selected[:used]
    return keep[:used] if selected is None else keep[:used] & selected[:used]
