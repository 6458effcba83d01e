"""Layout checks: the branches read as one collection agree in depth and length, event by event.

Apart from the conversion, which flattens each branch on its own and trusts these checks: one shifted
list would misplace every later value of a chunk, silently. The same checks run at begin_job on the
first entries and on every chunk; each failure is one line naming both branches and the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import awkward as ak
import numpy as np

from hltrun.framework.errors import ConfigError, SourceError

from .parameters import JetBranches


def same_counts(a: ak.Array, b: ak.Array) -> bool:
    """Do two (possibly doubly) jagged arrays hold the same number of items everywhere?"""
    return _first_mismatch(a, b) is None


def constituents_per_jet(arrays: ak.Array, b: JetBranches, path: str, first_entry: int) -> np.ndarray:
    """layout counts: each jet's constituent count, once they are known to add up, event by event, to
    the constituents the event holds: each jet takes the next ``count`` of them, so one wrong count
    would give every later constituent of the event to the wrong jet."""
    stored = np.asarray(ak.flatten(arrays[b.jet_n_constituents], axis=None))
    jets = np.concatenate([[0], np.cumsum(_per_event(arrays[b.jet_pt]))])
    _refuse_non_counts(stored, jets, b, path, first_entry)
    per_jet = stored.astype(np.int64)
    negative = np.flatnonzero(per_jet < 0) if stored.dtype.kind != "u" else ()
    if len(negative):  # a count may not be negative even where the event's counts add up
        jet = int(negative[0])
        at = int(np.searchsorted(jets, jet, side="right")) - 1
        raise SourceError(f"source: '{b.jet_n_constituents}' holds a negative constituent count "
                          f"({int(per_jet[jet])}, jet {jet - int(jets[at])}) at entry {first_entry + at} of {path}: "
                          f"a jet's number of constituents is 0 or more", first_entry=first_entry)
    cumulative = np.concatenate([[0], np.cumsum(per_jet)])
    declared = cumulative[jets[1:]] - cumulative[jets[:-1]]
    present = _per_event(arrays[b.cand_pt])
    bad = np.flatnonzero(declared != present)
    if len(bad):
        at = int(bad[0])
        raise SourceError(_counts_mismatch(b, stored.dtype, int(declared[at]), int(present[at]), first_entry + at,
                                           path), first_entry=first_entry)
    return per_jet


def _refuse_non_counts(stored: np.ndarray, jets: np.ndarray, b: JetBranches, path: str, first_entry: int) -> None:
    """A count branch that cannot hold counts: a bool one (a flag, such as a jet ID, set by mistake: read
    as 0/1, it was refused as "does not add up", which sent the user looking for a wrong count), or a
    floating-point one (as some ntuples store every number) with a value that is not a whole number,
    which casting to an integer would cut to another count, or to garbage for NaN, silently."""
    if stored.dtype.kind == "b":
        raise SourceError(f"source: '{b.jet_n_constituents}' is a bool branch in {path}, not a count: set "
                          f"source.branches.jet_n_constituents to the branch holding each jet's number of "
                          f"constituents", first_entry=first_entry)
    if stored.dtype.kind != "f":
        return
    bad = np.flatnonzero(~np.isfinite(stored) | (stored != np.round(stored)))
    if len(bad):
        jet = int(bad[0])
        at = int(np.searchsorted(jets, jet, side="right")) - 1
        raise SourceError(f"source: '{b.jet_n_constituents}' holds {float(stored[jet])}, not a whole number of "
                          f"constituents (jet {jet - int(jets[at])}) at entry {first_entry + at} of {path}: set "
                          f"source.branches.jet_n_constituents to the branch holding each jet's number of "
                          f"constituents", first_entry=first_entry)


def _counts_mismatch(b: JetBranches, dtype: np.dtype, declared: int, present: int, entry: int, path: str) -> str:
    """The line for per-jet counts that do not add up to the event's constituents: the constituents
    cannot be given to their jets. NanoAOD stores ``FatJet_nConstituents`` as UChar_t (uint8): a jet
    with more than 255 constituents wraps, which shows as a shortfall of a multiple of 256."""
    line = (f"source: '{b.jet_n_constituents}' does not add up to the number of '{b.cand_pt}' entries (first at "
            f"entry {entry} of {path}: the jets declare {declared}, the event has {present})")
    bits = 8 * dtype.itemsize
    short = present - declared
    if dtype.kind == "u" and bits < 32 and short > 0 and short % 2**bits == 0:
        line += (f"; '{b.jet_n_constituents}' is {dtype.name}, which wraps above {2**bits - 1} constituents per "
                 f"jet: write the counts as a wider integer, or write a jet index per constituent and read the "
                 f"file with layout jet_index")
    return line


def _first_mismatch(a: ak.Array, b: ak.Array) -> int | None:
    """The first event where two (possibly doubly) jagged arrays differ in their number of items (in
    the event, or in one of its jets), 0 if they differ in depth; None where they agree."""
    if a.ndim != b.ndim:
        return 0
    if a.ndim < 2:
        return None
    at = _first_event_mismatch(a, b)
    if at is not None:
        return at
    for axis in range(2, a.ndim):  # per jet (nested layout): map the first bad jet to its event
        inner = [np.asarray(ak.flatten(ak.num(x, axis=axis), axis=None)) for x in (a, b)]
        bad = np.flatnonzero(inner[0] != inner[1])
        if len(bad):
            return int(np.searchsorted(np.cumsum(_per_event(a)), bad[0], side="right"))
    return None


def _first_event_mismatch(a: ak.Array, b: ak.Array) -> int | None:
    """The first event where two jagged arrays hold different numbers of lists or values; None: none."""
    bad = np.flatnonzero(_per_event(a) != _per_event(b))
    return int(bad[0]) if len(bad) else None


def _per_event(array: ak.Array) -> np.ndarray:
    """Items per event of a jagged array: from its offsets as uproot reads them (ak.num costs ~6x
    more, which every chunk would pay per branch)."""
    layout = array.layout
    if isinstance(layout, ak.contents.ListOffsetArray):
        offsets = np.asarray(layout.offsets)
        return offsets[1:] - offsets[:-1]
    return np.asarray(ak.num(array, axis=1))


@dataclass(frozen=True)
class Collection:
    """Branches read as one collection: each of ``members`` holds as many values as ``ref`` in every
    event (and jet); ``ref`` has ``depth`` levels (2: a list per event, 3: a list per jet per event)
    and, with ``jets_of``, one list per jet of that jet branch."""

    kind: str
    ref: str
    members: tuple[str, ...]
    depth: int = 2
    jets_of: str | None = None
    declared: tuple[str, ...] = ()  # the members a model's declared inputs read (its features), not a setting's


def collections_of(b: JetBranches, layout: str, extra_jet: tuple[str, ...] = (),
                 extra_cand: tuple[str, ...] = ()) -> list[Collection]:
    """The collections of a layout, with the consumers' extra jet and constituent branches."""
    n_constituents = (b.jet_n_constituents,) if layout == "counts" else ()
    jets = tuple(n for n in (b.jet_eta, b.jet_phi, b.jet_mass, *extra_jet, *n_constituents) if n)
    direct = (b.cand_jet_index,) if layout == "jet_index" and not b.cand_index else ()  # a jet index per constituent
    nested = layout == "nested"
    groups = [Collection("jet", b.jet_pt, jets, declared=extra_jet),
              Collection("constituent", b.cand_pt, (b.cand_eta, b.cand_phi, *extra_cand, *direct),
                          3 if nested else 2, b.jet_pt if nested else None, extra_cand)]
    if layout == "jet_index" and b.cand_index:
        groups.append(Collection("link", b.cand_jet_index, (b.cand_index,)))
    return groups


def check_collections(arrays: ak.Array, groups: list[Collection], path: str, first_entry: int) -> None:
    """Every collection's branches agree in depth and length, event by event (and jet by jet): on the
    first entries at begin_job and on every chunk, since the conversion flattens each branch on its
    own, so one shifted list would misplace every later value of the chunk (or index past its end),
    silently or as an IndexError far from the cause."""
    for g in groups:
        _check_depth(arrays[g.ref], g, path)
        if g.jets_of is not None:  # nested: one constituent list per jet
            at = _first_event_mismatch(arrays[g.ref], arrays[g.jets_of])
            _refuse_misaligned(at, g.ref, g.jets_of, "jet", path, first_entry, deep=False)
        for name in dict.fromkeys(n for n in g.members if n != g.ref):
            refuse_per_event(arrays[name], name, g.kind, g.ref, path, name in g.declared, first_entry)
            at = _first_mismatch(arrays[name], arrays[g.ref])
            _refuse_misaligned(at, name, g.ref, g.kind, path, first_entry, deep=arrays[g.ref].ndim > 2)


def refuse_per_event(array: ak.Array, name: str, kind: str, ref: str, path: str, declared: bool,
                     first_entry: int | None = None) -> None:
    """One line for a branch of one value per event (a per-event ρ, an event's mjj) read as a member of the
    ``kind`` collection of ``ref``: it said "differs in length", of a branch that is no list at all."""
    if array.ndim != 1 or name == ref:
        return
    line = f"source: branch '{name}' holds one value per event, not one per {kind} as '{ref}' does, in {path}"
    if declared:  # a model's feature: what a physicist adds beside the constituents (pile-up density, say)
        line += (f": declare it per event, in a jet-level input's per_event (kind: jet, features: [..., {name}], "
                 f"per_event: [{name}]) or in an input of kind: event (features: [{name}]), and each scored jet "
                 f"gets its event's value (docs/your-model.md, 'Per-event quantities')")
    else:
        line += f": set source.branches to the {kind} collection's branches"
    raise SourceError(line, first_entry=first_entry)


def check_event_values(arrays: ak.Array, names: Sequence[str], path: str, first_entry: int | None = None) -> None:
    """The branches a model's inputs declare per event (``per_event``, ``kind: event``) hold one number per
    event: a list per event (a jet's value, a vector) would give each jet a list, and has no one value to repeat."""
    for name in names:
        array = arrays[name]
        if array.ndim == 1 and _numeric(array):
            continue
        what = "a list of values per event" if array.ndim > 1 else f"{ak.type(array).content}, not a number"
        at = f" (entries from {first_entry})" if first_entry else ""
        raise SourceError(f"source: branch '{name}' holds {what}, in {path}{at}: it is declared per event (a jet-level "
                          f"input's per_event, or kind: event), which reads one number per event; a branch of one "
                          f"value per jet or per constituent is a feature of that collection, without per_event "
                          f"(docs/your-model.md, 'Per-event quantities')", first_entry=first_entry)


def _numeric(array: ak.Array) -> bool:
    """Whether a flat branch holds numbers (bool, integer or floating point) numpy can cast to float32."""
    try:
        return np.asarray(array).dtype.kind in "biuf"
    except (ValueError, TypeError):
        return False


def _check_depth(array: ak.Array, group: Collection, path: str) -> None:
    """The collection's reference branch has the levels of lists its layout needs."""
    if array.ndim == group.depth:
        return
    if group.depth == 3:
        raise SourceError(f"source: layout 'nested' needs per-jet constituent lists in '{group.ref}' "
                          f"(doubly jagged), got {array.ndim - 1} level(s) of nesting in {path}")
    raise SourceError(f"source: branch '{group.ref}' must hold one list of {group.kind} values per event, "
                      f"got {array.ndim - 1} level(s) of nesting in {path}")


def _refuse_misaligned(at: int | None, name: str, ref: str, kind: str, path: str, first_entry: int,
                       deep: bool) -> None:
    """One line naming both branches and the first entry (``at``, in the chunk) where they disagree."""
    if at is not None:
        raise SourceError(f"source: branches '{name}' and '{ref}' differ in length at entry {first_entry + at} "
                          f"of {path}: they must be one {kind} collection (as many values in every event"
                          f"{' and jet' if deep else ''})", first_entry=first_entry)


def check_links(arrays: ak.Array, b: JetBranches, path: str) -> None:
    """``jet_index``: the link branches are one collection, and one with the constituents unless
    ``cand_index`` says which constituent each link points to (ConfigError: the settings are wrong)."""
    links = np.asarray(ak.num(arrays[b.cand_jet_index], axis=1))
    if b.cand_index:
        if not np.array_equal(np.asarray(ak.num(arrays[b.cand_index], axis=1)), links):
            raise ConfigError(f"source.branches.cand_index: '{b.cand_index}' and '{b.cand_jet_index}' "
                              f"differ in length in {path}: they must be fields of one link collection")
    elif not np.array_equal(np.asarray(ak.num(arrays[b.cand_pt], axis=1)), links):
        raise ConfigError(f"source.branches.cand_index: missing: '{b.cand_jet_index}' and '{b.cand_pt}' "
                          f"are different collections in {path} (layout jet_index with indirection); "
                          f"set source.branches.cand_index to the link branch indexing '{b.cand_pt}'")


def list_counts(array: ak.Array, name: str, where: str) -> np.ndarray:
    """Per-event list lengths of a jagged branch, or a clear error if it is not a per-event list."""
    if array.ndim < 2:
        raise SourceError(f"source: branch '{name}' is not a per-event collection (one value per event) in {where}")
    return np.asarray(ak.num(array, axis=1), dtype=np.int64)
