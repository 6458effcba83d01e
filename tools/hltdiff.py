"""hltdiff: compare hltrun outputs event by event, the way CMSSW's hltDiff compares TriggerResults.

Events are matched on (run, luminosityBlock, event); an id that repeats within one side is matched
occurrence by occurrence. For every HLT_* trigger the table counts, as hltDiff does, the events
compared, the events the old side accepted, and the accepts gained (+) and lost (-) by the new side.

hltrun specifics, next to hltDiff's own behaviour:

* Outputs written with ``select_events`` keep only accepted events. Such a side ("accepted-only":
  no row rejected by every trigger; an empty output whose job processed events) counts an event it
  lacks as rejected, so the event becomes a gained or lost accept instead of a skipped one.
  ``--selected yes|no`` overrides the detection. For a path behind an HLTPrescaler that holds where its
  factor was 1; the side's ``Provenance`` (its job's prescale table, column and ``lumiColumns``) says the
  factor in each lumi section: where the path was off (0) a lacking event was prescaled, where it kept 1 in
  N it was prescaled or rejected, neither gained nor lost, and a note counts them (``hltdiff_prescales``).
* ``Other`` (hltDiff: same decision, stopped at another module) counts events that the trigger
  accepted on both sides but whose kept products (e.g. ``vae_score``) differ beyond the tolerance,
  and, with -p, events rejected on both sides by the prescaler on one and another module on the
  other: hltrun outputs record decisions and prescaler stops, not the module that stopped a path.
* Kept products are compared on every common event, with ``--rtol``/``--atol`` (default: the
  project's agreement criterion between backends, 1e-4 relative).
* hltrun outputs list the lumi sections their job processed (the ``LuminosityBlocks`` tree, with
  ``eventsProcessed``). An event one side has and the other lacks, in a lumi section the other job did
  not read in full, was *not read* there: it is neither gained, lost nor skipped, and does not make
  the outputs differ (comparing a job on two samples with a reference on four is no difference). A
  side without that tree (an older output) is assumed to have read every event.
* A file kept by a job that a graceful signal stopped (SIGUSR2, SIGINT) says so in its ``Provenance``
  (``stopped_by_signal``); hltdiff adds a note naming it: it holds only the events finished before the stop.

As hltDiff (HLTrigger/Tools/bin/hltDiff.cc) does: the first line is "Found N matching events, out of
which A have different HLT results[, S events were skipped]" (S: old events not in the new files); the
table lists only the triggers with a difference (-q: no table); -m N stops after N matched events of
the old side; -d prints a line per event missing from the other side; -j, -c and -r write the JSON,
the CSV files and the ROOT histograms, named by -F or one DQM-GUI name per run. hltrun outputs record
decisions (HLT_* bits, and HLTPrescaled_* for paths with an HLTPrescaler, so that -p works as
hltDiff's), not the module that stopped a path: the JSON's m/l/t fields are -1, the module CSV and
histograms are empty.

-O/--old-process and -N/--new-process name the process whose trigger results each side compares, as
hltDiff's do. An hltrun output holds one process's HLT_* bits and names that process (its ``Process``
string, the job's ``process:``): the option checks that every file of its side was written by that
process (a file written by another is an error, exit 2, as hltDiff's "the process X is not in the
Process History"; a file that names none, an older output, is compared with a note), and, as in
hltDiff, the names go into the JSON's "process" fields and the DQM file names
(DQM_V0001_R<run>__OLD_<old process>__NEW_<new process>_DQM); without them both are empty. hltDiff's
'-n -' (the new results from another process of the old files) has no hltrun counterpart: one process
per file.

Exit codes (hltDiff always exits 0; scripts want more): 0 the compared events agree (skipped events
do not count), 1 they differ, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import awkward as ak
import numpy as np

from hltrun.framework.atomic import write_text, writing
from hltrun.framework.destinations import printing, reading
from hltrun.framework.errors import HltError, one_line, printable
from hltrun.framework.resources import unreadable_reason, user_path
from hltrun.framework.stdio import entry_point
from hltrun.framework.provenance import differences, stopped_by
from hltrun.modules.inference.base import AGREEMENT_RTOL
from hltrun.modules.root_output import LUMI_TREE  # what each job read, lumi section by lumi section
from hltrun.modules.root_output import PRESCALED_PREFIX, PROCESS_KEY, PROVENANCE_KEY, prescaled_branch, read_process, \
    read_provenance
from hltrun.modules.source.hints import cmssw_file
from hltrun.modules.source.tree import cut_short
from hltrun.tools import hltdiff_changes as changes
from hltrun.tools.hltdiff_prescales import WAS_EITHER, WAS_PRESCALED, SideFactors, side_factors

ID_BRANCHES = ("run", "luminosityBlock", "event")
TRIGGER_PREFIX = "HLT_"
# hltDiff's path states, in its order (edm::hlt::HLTState, then Prescaled and Invalid)
STATES = ("not run", "accepted", "rejected", "exception", "prescaled", "invalid")
PASS, FAIL, PRESCALED = 1, 2, 4


class InputError(Exception):
    """A file or tree that cannot be compared; the message names it."""


@dataclass
class TriggerDiff:
    """One row of hltDiff's table."""

    name: str
    accepted: int = 0  # accepted by the old side, among the compared events
    accepted_new: int = 0  # accepted by the new side (hltDiff's trigger_passed_count 'n')
    gained: int = 0
    lost: int = 0
    other: int = 0
    # events one accepted-only side lacks, accepted on the other, whose prescaler there kept 1 in N: prescaled or
    # rejected, the file cannot say (hltdiff_prescales): neither gained nor lost
    not_compared: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.gained or self.lost or self.other)


@dataclass
class EventDiff:
    """One event whose decision (or accepted products) changed, for -v and the JSON output."""

    run: int
    lumi: int
    event: int
    old_accept: bool
    new_accept: bool
    triggers: list[tuple[int, int, int]] = field(default_factory=list)  # (trigger index, old, new state)
    products: list[tuple[str, str]] = field(default_factory=list)  # (branch, how it changed) beyond the tolerance


@dataclass
class Difference:
    """What differs between two sides. ``examples`` lists a few events per differing branch, with how
    its value changed (``hltdiff_changes``)."""

    only_in_old: int = 0  # events skipped: present in the old side only, new side keeps all events
    only_in_new: int = 0
    not_read_by_new: int = 0  # old-side events in lumi sections the new job did not read in full
    not_read_by_old: int = 0
    common: int = 0  # events present on both sides
    compared: int = 0  # events whose decisions were compared (common + implied rejections)
    selected_old: bool = False
    selected_new: bool = False
    ignore_prescales: bool = True  # hltDiff's default; -p compares prescaled paths too
    triggers: list[TriggerDiff] = field(default_factory=list)
    branches: dict[str, int] = field(default_factory=dict)
    # per differing branch: (run, lumi, event, how it changed), the largest relative change first
    examples: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    events: list[EventDiff] = field(default_factory=list)
    skipped_ids: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def affected(self) -> int:
        return len(self.events)

    @property
    def identical(self) -> bool:
        """No decision and no product differs on the compared events. Events found on one side only
        are skipped, as hltDiff skips them: they do not make agreeing outputs differ."""
        return not (any(self.branches.values()) or any(t.differs for t in self.triggers))


# ----------------------------------------------------------------------------------------- reading
def read_side(paths: Sequence[Path], tree: str) -> ak.Array:
    """All rows of ``tree`` in ``paths``, in file order; branches missing from a file are dropped. A file cut
    short (the source's check, modules/source/tree.py ``cut_short``) is an error: it read as whole, exit 0."""
    import uproot

    parts = []
    for path in paths:
        why = unreadable_reason(path)
        if why is not None:
            raise InputError(why)
        try:
            with uproot.open(path) as f:
                why = cut_short(str(path), f.file)  # read as whole, the events its lost end held were 'missing'
                if why is not None:
                    raise InputError(why)
                if tree not in f:
                    raise InputError(f"no tree '{tree}' in {path}")
                refuse_cmssw(f, tree, path)
                parts.append(f[tree].arrays(library="ak"))
        except InputError:
            raise
        except Exception as exc:  # uproot raises many kinds on a corrupt file
            raise InputError(f"cannot read tree '{tree}' from {path}: {one_line(exc)}") from None
        missing = [b for b in ID_BRANCHES if b not in parts[-1].fields]
        if missing:
            raise InputError(f"{path}: tree '{tree}' has no {', '.join(missing)} branch")
    if len(parts) == 1:
        return parts[0]
    fields = [f for f in parts[0].fields if all(f in p.fields for p in parts[1:])]
    return ak.concatenate([p[fields] for p in parts])


def refuse_cmssw(f: Any, tree: str, path: Path) -> None:
    """InputError for a file CMSSW wrote (NanoAOD, MiniAOD/AOD), given where an hltrun output belongs (the
    job's input, not its output): its CMS trigger bits were compared with the job's, hundreds of its branches
    listed as 'in one file only', exit 1. An hltrun output names its process or provenance; an older one
    that names neither has no CMSSW branch, and an HLT_* bit per path. A file with neither is a job's input
    (a sample like the shipped ones): its events matched the output's, the output's accepts were 'gained', and
    every jet branch was listed as 'in one file only', exit 1."""
    if PROCESS_KEY in f or PROVENANCE_KEY in f:
        return
    branches = f[tree].keys(recursive=False)
    what = cmssw_file(branches, f.keys(recursive=False))
    if what is None and not any(name.startswith(TRIGGER_PREFIX) for name in branches):
        what = "a job's input (it names no process and holds no HLT_* trigger bit)"
    if what is not None:
        raise InputError(f"{path} is {what}, not an hltrun output: hltdiff compares the outputs of two hltrun "
                         f"jobs; run hltrun on it (modules.out.file) and give hltdiff that job's output")


def check_process(paths: Sequence[Path], process: str, option: str) -> None:
    """-O/-N: every file of the side was written by ``process`` (a file that names none is compared,
    with a note on stderr); no option: nothing checked."""
    if not process:
        return
    for path in paths:
        try:
            written_by = read_process(path)
        except Exception as exc:  # uproot raises many kinds on a corrupt file
            raise InputError(f"cannot read {path}: {one_line(exc)}") from None
        if written_by is None:
            sys.stderr.write(f"hltdiff: note: {path} does not name the process that wrote it (an older output): "
                             f"taken as {option} {process}\n")
        elif written_by != process:
            raise InputError(f"{option} {process}: {path} holds the trigger results of process '{written_by}', "
                             f"not '{process}'")


def read_coverage(paths: Sequence[Path]) -> dict[tuple[int, int], int] | None:
    """(run, lumi) -> events the job processed in it, from the outputs' ``LuminosityBlocks`` trees;
    None when a file has none (an output that does not say what its job read)."""
    import uproot

    coverage: dict[tuple[int, int], int] = {}
    for path in paths:
        try:
            with uproot.open(path) as f:
                if LUMI_TREE not in f or "eventsProcessed" not in f[LUMI_TREE].keys():
                    return None
                cols = f[LUMI_TREE].arrays(["run", "luminosityBlock", "eventsProcessed"], library="np")
        except Exception as exc:  # uproot raises many kinds on a corrupt file
            raise InputError(f"cannot read tree '{LUMI_TREE}' from {path}: {one_line(exc)}") from None
        for run, lumi, n in zip(cols["run"].tolist(), cols["luminosityBlock"].tolist(), cols["eventsProcessed"].tolist()):
            coverage[(run, lumi)] = coverage.get((run, lumi), 0) + n
    return coverage


def _read_in_full(ids: np.ndarray, own: dict[tuple[int, int], int] | None, other: dict[tuple[int, int], int] | None,
                  own_ids: np.ndarray) -> np.ndarray:
    """Per id of one side: did the other side's job read every event of its lumi section? Yes when
    the other side does not say (no coverage); else its events processed there must reach this side's
    (its own coverage, or its rows when it has none)."""
    if other is None:
        return np.ones(len(ids), bool)
    if own is None:
        own = {}
        for run, lumi in zip(own_ids["run"].tolist(), own_ids["luminosityBlock"].tolist()):
            own[(run, lumi)] = own.get((run, lumi), 0) + 1
    full = {lumi for lumi, n in own.items() if other.get(lumi, 0) >= n}
    return np.fromiter(((int(r), int(lumi)) in full for r, lumi in zip(ids["run"], ids["luminosityBlock"])),
                       bool, len(ids))


def is_accepted_only(arr: ak.Array, coverage: dict[tuple[int, int], int] | None = None) -> bool:
    """True when no row is rejected by every trigger: an output that kept accepted events only. An output
    with no row is one when its job says it processed events (``coverage``): an output keeping every event
    would hold them. Why: a tighter cut that passes nothing wrote an empty file, which read as keeping
    every event, so the old side's accepts were 'skipped' and the outputs said to agree."""
    if len(arr) == 0:
        return coverage is not None and sum(coverage.values()) > 0
    triggers = [f for f in arr.fields if f.startswith(TRIGGER_PREFIX)]
    if not triggers:
        return False
    any_pass = np.zeros(len(arr), bool)
    for name in triggers:
        any_pass |= np.asarray(arr[name], dtype=bool)
    return bool(any_pass.all())


# -------------------------------------------------------------------------------------- comparison
def _keys(a: ak.Array) -> np.ndarray:
    """(run, lumi, event, n): n counts repeats of an id, so files that merge samples with overlapping
    ids still match the n-th occurrence with the n-th occurrence. The event number stays unsigned
    64-bit, as CMSSW's: as int64 the ids from 2^63 on were listed negative."""
    cols = [np.asarray(a[b], dtype=np.uint64 if b == "event" else np.int64) for b in ID_BRANCHES]
    ids = np.rec.fromarrays(cols, names=ID_BRANCHES)
    order = np.argsort(ids, kind="stable")
    first = np.r_[True, ids[order][1:] != ids[order][:-1]] if len(ids) else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0)) if len(ids) else first
    occurrence = np.empty(len(ids), np.int64)
    occurrence[order] = np.arange(len(ids)) - group_start
    return np.rec.fromarrays([*cols, occurrence], names=[*ID_BRANCHES, "n"])


def _values_differ(a: ak.Array, b: ak.Array, rtol: float, atol: float) -> np.ndarray:
    """Per row: do ``a`` and ``b`` differ (lengths for jagged columns, then values)?"""
    if a.ndim > 1 or b.ndim > 1:
        same_len = np.asarray(ak.num(a, axis=1)) == np.asarray(ak.num(b, axis=1))
        ok = same_len.copy()
        flat_a = ak.to_numpy(ak.flatten(a[same_len]))
        flat_b = ak.to_numpy(ak.flatten(b[same_len]))
        if flat_a.dtype.kind in "biu":
            close = flat_a == flat_b
        else:
            close = np.isclose(flat_a, flat_b, rtol=rtol, atol=atol, equal_nan=True)
        bad_rows = np.repeat(np.arange(int(same_len.sum())), np.asarray(ak.num(a[same_len], axis=1)))[~close]
        ok[np.flatnonzero(same_len)[np.unique(bad_rows)]] = False
        return ~ok
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a != b
    return ~np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def compare(old: ak.Array, new: ak.Array, rtol: float = AGREEMENT_RTOL, atol: float = 0.0, examples: int = 5,
            max_events: int = 0, selected_old: bool | None = None, selected_new: bool | None = None,
            coverage_old: dict[tuple[int, int], int] | None = None,
            coverage_new: dict[tuple[int, int], int] | None = None, ignore_prescales: bool = True,
            factors_old: SideFactors | None = None, factors_new: SideFactors | None = None) -> Difference:
    """Compare two sides' rows. ``selected_*`` None: detect accepted-only outputs (module docstring);
    ``coverage_*``: the lumi sections each side's job read (``read_coverage``; None: all);
    ``ignore_prescales``: as hltDiff without -p, a trigger an HLTPrescaler stopped on either side
    (``HLTPrescaled_X``) is no difference; ``factors_*``: each side's prescale factors (``side_factors``), which
    say whether an event an accepted-only side lacks was rejected, prescaled or either (None: rejected)."""
    sel_old = is_accepted_only(old, coverage_old) if selected_old is None else selected_old
    sel_new = is_accepted_only(new, coverage_new) if selected_new is None else selected_new
    k_old, k_new = _keys(old), _keys(new)
    if max_events > 0:  # hltDiff -m: the old side's events in order, until N of them were matched
        matched = np.zeros(len(k_old), bool)
        matched[np.intersect1d(k_old, k_new, return_indices=True)[1]] = True
        if sel_new:  # an old event the accepted-only new side lacks is compared (rejected there)
            matched |= _read_in_full(k_old, coverage_old, coverage_new, k_old)
        nth = np.flatnonzero(matched)
        if len(nth) > max_events:
            old, k_old = old[: nth[max_events - 1] + 1], k_old[: nth[max_events - 1] + 1]
    common, i_old, i_new = np.intersect1d(k_old, k_new, return_indices=True)
    only_old = np.setdiff1d(np.arange(len(k_old)), i_old)
    only_new = np.setdiff1d(np.arange(len(k_new)), i_new)
    if max_events > 0:  # hltDiff walks the old side only: with -m, events only in the new files are not looked at
        only_new = only_new[:0]
    diff = Difference(common=len(common), selected_old=sel_old, selected_new=sel_new,
                      ignore_prescales=ignore_prescales)
    # one-sided events the other job never read (its lumi section not read in full): not compared
    seen_by_new = _read_in_full(k_old[only_old], coverage_old, coverage_new, k_old)
    seen_by_old = _read_in_full(k_new[only_new], coverage_new, coverage_old, k_new)
    diff.not_read_by_new, diff.not_read_by_old = int((~seen_by_new).sum()), int((~seen_by_old).sum())
    only_old, only_new = only_old[seen_by_new], only_new[seen_by_old]

    # rows compared for decisions: common ones, plus one-sided ones where the other side is accepted-only
    ids = [k_old[i_old]]
    use_old_only = only_old if sel_new else only_old[:0]
    use_new_only = only_new if sel_old else only_new[:0]
    ids += [k_old[use_old_only], k_new[use_new_only]]
    diff.only_in_old = len(only_old) - len(use_old_only)
    diff.only_in_new = len(only_new) - len(use_new_only)
    diff.skipped_ids = [tuple(int(x) for x in k)[:3] for k in k_old[np.setdiff1d(only_old, use_old_only)]]
    diff.skipped_ids += [tuple(int(x) for x in k)[:3] for k in k_new[np.setdiff1d(only_new, use_new_only)]]
    diff.compared = sum(len(x) for x in ids)
    all_ids = np.concatenate(ids) if diff.compared else k_old[:0]

    def decisions(arr: ak.Array, rows_common: np.ndarray, rows_own: np.ndarray, n_other: int,
                  own_first: bool, name: str) -> np.ndarray:
        """Decisions (or prescaler stops) in the order of ``all_ids``: common, old-only, new-only rows."""
        col = np.asarray(arr[name], dtype=bool) if name in arr.fields else np.zeros(len(arr), bool)
        missing = np.zeros(n_other, bool)  # rows the side lacks: rejected (accepted-only side)
        own = col[rows_own]
        parts = [col[rows_common], own, missing] if own_first else [col[rows_common], missing, own]
        return np.concatenate(parts)

    names = [f for f in old.fields if f.startswith(TRIGGER_PREFIX)]
    names += [f for f in new.fields if f.startswith(TRIGGER_PREFIX) and f not in names]
    product_fields = [f for f in old.fields if f in new.fields and f not in ID_BRANCHES
                      and not f.startswith((TRIGGER_PREFIX, PRESCALED_PREFIX))]
    product_bad = np.zeros(len(common), bool)
    bad_rows: dict[str, set[int]] = {}  # per branch, the common rows whose values differ (for -v)
    for name in product_fields:
        a, b = old[name][i_old], new[name][i_new]
        bad = np.flatnonzero(_values_differ(a, b, rtol, atol))
        bad_rows[name] = set(bad.tolist())
        diff.branches[name] = len(bad)
        product_bad[bad] = True
        if len(bad) and examples > 0:  # the row that moved most first, then the first others, each by how much
            top = int(bad[int(np.argmax(changes.row_changes(a[bad], b[bad])))])
            rows = [top, *[int(i) for i in bad[:examples] if i != top]][:examples]
            diff.examples[name] = [(*(int(x) for x in tuple(common[i])[:3]),
                                    changes.describe(ak.to_list(a[[i]])[0], ak.to_list(b[[i]])[0])) for i in rows]
    for name in sorted(set(old.fields) ^ set(new.fields)):
        if not name.startswith((TRIGGER_PREFIX, PRESCALED_PREFIX)):
            diff.branches[f"{name} (in one file only)"] = 1

    product_bad_all = np.concatenate([product_bad, np.zeros(diff.compared - len(common), bool)])
    old_dec = {n: decisions(old, i_old, use_old_only, len(use_new_only), True, n) for n in names}
    new_dec = {n: decisions(new, i_new, use_new_only, len(use_old_only), False, n) for n in names}
    old_any = np.zeros(diff.compared, bool)
    new_any = np.zeros(diff.compared, bool)
    changed: dict[int, list[tuple[int, int, int]]] = {}
    # the rows each side lacks (after the common ones: old-only rows, lacking on the new side, then new-only ones)
    lacking = ((factors_new, slice(len(common), len(common) + len(use_old_only)), k_old[use_old_only]),
               (factors_old, slice(len(common) + len(use_old_only), diff.compared), k_new[use_new_only]))
    for t, name in enumerate(names):
        o, n = old_dec[name], new_dec[name]
        ps = prescaled_branch(name)
        po = decisions(old, i_old, use_old_only, len(use_new_only), True, ps)
        pn = decisions(new, i_new, use_new_only, len(use_old_only), False, ps)
        unknown = np.zeros(diff.compared, bool)
        for factors, rows, keys, stopped in ((*lacking[0], pn), (*lacking[1], po)):
            if factors is not None and len(keys):
                state = factors.states(name, np.asarray(keys["run"]), np.asarray(keys["luminosityBlock"]))
                stopped[rows] |= state == WAS_PRESCALED
                unknown[rows] = state == WAS_EITHER
        old_any |= o
        new_any |= n
        counted = (~(po | pn) if ignore_prescales else np.ones(diff.compared, bool)) & ~unknown
        # 'Other': accepted on both sides with other products, or (-p) rejected on both sides, by the
        # prescaler on one and by another module on the other (hltDiff: stopped at another module)
        other = (o & n & product_bad_all) | (~o & ~n & (po != pn) & counted)
        row = TriggerDiff(name, accepted=int(o.sum()), accepted_new=int(n.sum()),
                          gained=int((~o & n & counted).sum()), lost=int((o & ~n & counted).sum()),
                          other=int(other.sum()), not_compared=int((unknown & (o | n)).sum()))
        diff.triggers.append(row)
        for i in np.flatnonzero(((o != n) & counted) | other):
            states = (PASS if o[i] else PRESCALED if po[i] else FAIL, PASS if n[i] else PRESCALED if pn[i] else FAIL)
            changed.setdefault(int(i), []).append((t, *states))
    # rows before len(common) are the common events, in order: their products, by how much each moved
    moved = _moved_products(old, new, i_old, i_new, bad_rows, [i for i in sorted(changed) if i < len(common)])
    for i in sorted(changed):
        run, lumi, event = (int(x) for x in tuple(all_ids[i])[:3])
        diff.events.append(EventDiff(run, lumi, event, bool(old_any[i]), bool(new_any[i]), changed[i],
                                     moved.get(i, [])))
    return diff


def _moved_products(old: ak.Array, new: ak.Array, i_old: np.ndarray, i_new: np.ndarray,
                    bad_rows: dict[str, set[int]], rows: list[int]) -> dict[int, list[tuple[str, str]]]:
    """Per common row of ``rows`` (the events ``i_old`` and ``i_new``), (branch, how it changed) for each
    product that differs there (``bad_rows``' branches, in order). One slice per branch, not per event:
    sliced per event and branch, 10 000 changed decisions took 35 s, the rest of the comparison 1.4 s."""
    out: dict[int, list[tuple[str, str]]] = {}
    for name, bad in bad_rows.items():
        picked = [i for i in rows if i in bad]
        if not picked:
            continue
        a_rows, b_rows = ak.to_list(old[name][i_old[picked]]), ak.to_list(new[name][i_new[picked]])
        for i, a, b in zip(picked, a_rows, b_rows):
            out.setdefault(i, []).append((name, changes.describe(a, b)))
    return out


# --------------------------------------------------------------------------------------- rendering
def _signed(value: int, sign: str) -> str:
    return f"{sign}{value}" if value else "-"


def render_header(diff: Difference) -> str:
    """hltDiff's first line: matched events, those with different results, old events skipped."""
    skipped = f", {diff.only_in_old} events were skipped" if diff.only_in_old else ""
    if not diff.compared:
        return f"There are no common events between the old and new files{skipped}."
    return f"Found {diff.compared} matching events, out of which {diff.affected} have different HLT results{skipped}\n"


def render_table(diff: Difference) -> str:
    """hltDiff's summary table: only the triggers with a difference, 12-wide columns; '' when none."""
    rows = [f"{diff.compared:>12}{t.accepted:>12}{_signed(t.gained, '+'):>12}{_signed(t.lost, '-'):>12}"
            f"{_signed(t.other, '~'):>12}  {t.name}" for t in diff.triggers if t.differs]
    if not rows:
        return ""
    return "\n".join([f"{'Events':>12}{'Accepted':>12}{'Gained':>12}{'Lost':>12}{'Other':>12}  Trigger", *rows])


def render_events(diff: Difference, limit: int = 0) -> str:
    """hltDiff -v: every affected event, its overall result and each changed trigger's state."""
    lines = []
    for ev in diff.events[: limit or None]:
        lines.append(f"run {ev.run}, lumi {ev.lumi}, event {ev.event}: "
                     f"old result is '{'accepted' if ev.old_accept else 'rejected'}', "
                     f"new result is '{'accepted' if ev.new_accept else 'rejected'}'")
        for t, o, n in ev.triggers:
            lines.append(f"    Path {diff.triggers[t].name}:\n"
                         f"        old state is '{STATES[o]}',\n        new state is '{STATES[n]}'")
        lines += [f"    {name}: {change}" for name, change in ev.products]
        lines.append("")
    return "\n".join(lines)


def render_products(diff: Difference, rtol: float, atol: float) -> str:
    lines = [f"Products compared on {diff.common} common events (rtol {rtol:g}, atol {atol:g}):"]
    for name, n in diff.branches.items():
        lines.append(f"  {name:<40} {'differs' if n else 'same':>8} {n:>8} events")
        for k, (run, lumi, event, change) in enumerate(diff.examples.get(name, [])):
            lines.append(f"      {'largest' if k == 0 else 'e.g.'} run {run}, lumi {lumi}, event {event}: {change}")
    return "\n".join(lines)


# ----------------------------------------------------------------------- output files (-j, -c, -r, -F)
def output_base(run: int, output_file: str | None, old_process: str = "", new_process: str = "") -> str:
    """hltDiff's file name without suffix: -F's name for all runs, else one DQM-GUI name per run with
    the -O/-N process names (empty without them, as hltDiff's)."""
    if output_file:
        return output_file
    return f"DQM_V0001_R{run:09d}__OLD_{old_process}__NEW_{new_process}_DQM"


def runs_of(diff: Difference, output_file: str | None) -> dict[int, list[EventDiff]]:
    """Affected events by run, as hltDiff's JSON producer keeps them: one group (the first run's)
    with -F, one per run without; with no affected event, one group 'run 0' (the configuration only)."""
    groups: dict[int, list[EventDiff]] = {}
    for ev in diff.events:
        key = next(iter(groups), ev.run) if output_file else ev.run
        groups.setdefault(key, []).append(ev)
    return groups or {0: []}


def _s(value: str) -> str:
    return json.dumps(value)


def _list(values: Sequence[str]) -> str:
    return "[" + ",".join(_s(v) for v in values) + "]"


def _file_block(files: Sequence[str], process: str = "") -> str:
    """One side's configuration: file_base (the characters every file name shares), the rest of each
    name, the process (-O/-N; empty without, as hltDiff's) and skipped_triggers (empty: hltdiff
    compares a trigger one side lacks as rejected there)."""
    base = os.path.commonprefix(list(files))
    return (f'\n"file_base":{_s(base)},\n"files":{_list([f[len(base):] for f in files])},'
            f'\n"process":{_s(process)},\n"skipped_triggers":[]')


def _state(code: int) -> str:
    """hltDiff's JsonEventState: only 's' when accepted; module index, label and type ids otherwise
    (-1: hltrun outputs record decisions, not the module that stopped a path)."""
    return f'"s":{code}' if code == PASS else f'"s":{code},"m":-1,"l":-1,"t":-1'


def to_json_text(diff: Difference, events: Sequence[EventDiff], old_files: Sequence[str],
                 new_files: Sequence[str], old_process: str = "", new_process: str = "") -> str:
    """One JSON file as hltDiff's JsonOutputProducer writes it, line for line: configuration (o, n,
    prescales, events), vars (state, trigger, trigger_passed_count, label, type), events [{r, l, e, t}]."""
    conf = ('\n"configuration":{\n"o":{' + _file_block(old_files, old_process) + '\n},'
            + '\n"n":{' + _file_block(new_files, new_process) + '\n},'
            + f'\n"prescales":{"true" if diff.ignore_prescales else "false"},\n"events":{diff.compared}\n}}')
    counts = ",".join(f'{{"o":{t.accepted},"n":{t.accepted_new}}}' for t in diff.triggers)
    names = [t.name for t in diff.triggers]
    vars_ = (f'\n"vars":{{\n"state":{_list(STATES[:5])},\n"trigger":{_list(names)},'
             f'\n"trigger_passed_count":[{counts}],\n"label":[],\n"type":[]\n}}')
    blocks = []
    for ev in events:
        states = ",".join(f'{{\n"t":{t},\n"o":{{{_state(o)}}},\n"n":{{{_state(n)}}}\n}}' for t, o, n in ev.triggers)
        blocks.append(f'\n{{"r":{ev.run},"l":{ev.lumi},"e":{ev.event},"t":[{states}\n]}}')
    return "{" + conf + "," + vars_ + ',\n"events":[' + ",".join(blocks) + "\n]\n}"


def _fraction(n: int, total: int) -> tuple[float, float]:
    """hltDiff's Pair for a count over a total: value and sqrt(total)/total (1e-10 guards 0)."""
    return n / (total + 1e-10), math.sqrt(total) / (total + 1e-10)


def trigger_summaries(diff: Difference, events: Sequence[EventDiff]) -> list[dict]:
    """Per trigger for one file's events: accepted old/new (whole comparison), gained, lost, changed."""
    rows = [{"name": t.name, "accepted_o": t.accepted, "accepted_n": t.accepted_new, "gained": 0, "lost": 0,
             "changed": 0} for t in diff.triggers]
    for ev in events:
        for t, o, n in ev.triggers:
            key = "gained" if (o, n) == (FAIL, PASS) else "lost" if (o, n) == (PASS, FAIL) else "changed"
            rows[t][key] += 1
    return rows


def to_csv_trigger(diff: Difference, events: Sequence[EventDiff]) -> str:
    """hltDiff's <base>_trigger.csv: its header and printf formats, one row per trigger."""
    lines = ["Total,Accepted OLD,Accepted NEW,Gained,Lost,|G|/A_N + |L|/AO,sigma(AN)+sigma(AO),Changed,C/(T-AO),"
             "sigma(T-AO),trigger"]
    for r in trigger_summaries(diff, events):
        g, ge = _fraction(r["gained"], r["accepted_n"])
        lo, le = _fraction(r["lost"], r["accepted_o"])
        c, ce = _fraction(r["changed"], diff.compared - r["accepted_o"])
        lines.append(f"{diff.compared},{r['accepted_o']},{r['accepted_n']},{float(r['gained']):+.0f},"
                     f"{-1.0 * r['lost']:+.0f},{(g + lo) * 100:.2f}%,{(ge + le) * 100:.2f}%,~{r['changed']:.0f},"
                     f"~{c * 100:.2f}%,{ce * 100:.2f}%,{r['name']}")
    return "\n".join(lines) + "\n"


def to_csv_module() -> str:
    """hltDiff's <base>_module.csv: a row per module that stopped a path; hltrun outputs do not say
    which module did, so the file has the header only."""
    return "Total,Gained,Lost,Changed,module\n"


def write_root(path: str, run: int, diff: Difference, events: Sequence[EventDiff]) -> None:
    """hltDiff -r: its summary histograms (TH1F, one labelled bin per trigger) in the DQM folder
    'DQMData/Run N/HLT/Run summary/EventByEvent/'. Module histograms are empty (see to_csv_module)."""
    import uproot
    from uproot.writing.identify import to_TAxis, to_TH1x, to_THashList, to_TObjString

    rows = trigger_summaries(diff, events)
    accepted = [r for r in rows if r["accepted_o"] > 0]
    gl = [r for r in rows if r["gained"] or r["lost"]]
    ch = [r for r in rows if r["changed"]]

    def hist(name: str, title: str, chosen: list[dict], value, error=None):  # noqa: ANN001, ANN202
        n = max(1, len(chosen))
        vals = np.zeros(n + 2)
        errs = np.zeros(n + 2)
        for b, r in enumerate(chosen, 1):
            vals[b] = value(r)
            errs[b] = error(r) if error else 0.0
        sumw2 = errs ** 2 if error else vals ** 2
        labels = to_THashList([to_TObjString(r["name"]) for r in chosen]) if chosen else None
        axis = to_TAxis("xaxis", "", n, 0.0, float(n), fLabels=labels)
        return to_TH1x(name, title, vals.astype(">f4"), float(vals[1:-1].sum()), 0.0, float(sumw2[1:-1].sum()),
                       0.0, 0.0, sumw2, axis)

    frac = lambda k, total: (lambda r: _fraction(r[k], r[total])[0])  # noqa: E731
    frac_e = lambda total: (lambda r: _fraction(0, r[total])[1])  # noqa: E731
    changed_total = lambda r: diff.compared - r["accepted_o"]  # noqa: E731
    histos = {
        "trigger_accepted": hist("trigger_accepted", ";;Events accepted^{OLD}", accepted, lambda r: r["accepted_o"]),
        "trigger_gained": hist("trigger_gained", ";;Events gained", gl, lambda r: r["gained"]),
        "trigger_lost": hist("trigger_lost", ";;Events lost", gl, lambda r: -r["lost"]),
        "trigger_changed": hist("trigger_changed", ";;Events changed", ch, lambda r: r["changed"]),
        "trigger_gained_frac": hist("trigger_gained_frac", ";;#frac{gained}{accepted}", gl,
                                    frac("gained", "accepted_n"), frac_e("accepted_n")),
        "trigger_lost_frac": hist("trigger_lost_frac", ";;#frac{lost}{accepted}", gl,
                                  lambda r: -frac("lost", "accepted_o")(r), frac_e("accepted_o")),
        "trigger_changed_frac": hist("trigger_changed_frac", ";;#frac{changed}{all - accepted}", ch,
                                     lambda r: _fraction(r["changed"], changed_total(r))[0],
                                     lambda r: _fraction(0, changed_total(r))[1]),
        "module_changed": hist("module_changed", ";;Events changed", [], lambda r: 0),
        "module_gained": hist("module_gained", ";;Events gained", [], lambda r: 0),
        "module_lost": hist("module_lost", ";;Events lost", [], lambda r: 0),
    }
    folder = f"DQMData/Run {run}/HLT/Run summary/EventByEvent"
    with writing(path, "--root-output") as staged, uproot.recreate(staged.open()) as f:  # whole or not at all
        for name, h in histos.items():
            f[f"{folder}/{name}"] = h


def write_outputs(diff: Difference, old_files: Sequence[str], new_files: Sequence[str], *, json_out: bool,
                  csv_out: bool, root_out: bool, output_file: str | None, old_process: str = "",
                  new_process: str = "") -> tuple[list[str], list[str]]:
    """The files hltDiff's -j, -c and -r write, named by -F or per run: (JSON files, summary files)."""
    json_files: list[str] = []
    summary_files: list[str] = []
    for run, events in runs_of(diff, output_file).items():
        base = output_base(run, output_file, old_process, new_process)
        if json_out:
            write_text(base + ".json", to_json_text(diff, events, old_files, new_files, old_process, new_process),
                       "--json-output")
            json_files.append(base + ".json")
        if root_out:
            try:
                write_root(base + ".root", run, diff, events)
            except OSError as exc:
                raise HltError(f"--root-output: cannot write {base}.root: {exc.strerror or exc}") from None
            summary_files.append(base + ".root")
        if csv_out:
            write_text(base + "_trigger.csv", to_csv_trigger(diff, events), "--csv-output")
            write_text(base + "_module.csv", to_csv_module(), "--csv-output")
            summary_files += [base + "_trigger.csv", base + "_module.csv"]
    return json_files, summary_files


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hltdiff", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
        description="Compare hltrun outputs event by event (CMSSW hltDiff: -o/-n, -O/-N, -m, -p, -j, -c, -r, -F, -d, -q, -v).",
        usage="hltdiff OLD.root NEW.root [options]\n       hltdiff -o OLD1.root [OLD2.root ...] -n NEW1.root [...] [options]")
    ap.add_argument("files", nargs="*", type=user_path, help="OLD and NEW output (one file per side)")
    ap.add_argument("-o", "--old-files", nargs="+", type=user_path, metavar="FILE", help="old (reference) output file(s)")
    ap.add_argument("-n", "--new-files", nargs="+", type=user_path, metavar="FILE", help="new output file(s)")
    ap.add_argument("-O", "--old-process", default="", metavar="PROCESS",
                    help="process of the old trigger results: every old file must have been written by it "
                         "(its 'process:'); named in the JSON and DQM file names")
    ap.add_argument("-N", "--new-process", default="", metavar="PROCESS",
                    help="process of the new trigger results, as -O for the new files")
    ap.add_argument("-m", "--max-events", type=int, default=0, metavar="N",
                    help="stop after N matched events, walking the old side in order (default: all)")
    ap.add_argument("-p", "--prescales", action="store_true",
                    help="do not ignore differences caused by HLTPrescaler modules (HLTPrescaled_* branches)")
    ap.add_argument("-j", "--json-output", action="store_true",
                    help="write the comparison as JSON (hltDiff's layout): FILE_NAME.json with -F, else one "
                         "DQM_V0001_R<run>__OLD_<process>__NEW_<process>_DQM.json per run")
    ap.add_argument("-c", "--csv-output", action="store_true",
                    help="write <name>_trigger.csv and <name>_module.csv (hltDiff's columns)")
    ap.add_argument("-r", "--root-output", action="store_true",
                    help="write hltDiff's summary histograms to <name>.root (DQMData/Run N/HLT/Run summary/EventByEvent)")
    ap.add_argument("-F", "--output-file", metavar="FILE_NAME",
                    help="one set of output files for all runs: FILE_NAME.json, FILE_NAME.root, FILE_NAME_*.csv")
    ap.add_argument("-d", "--debug", action="store_true", help="print a line for every event missing from one side")
    ap.add_argument("-q", "--quiet", action="store_true", help="no summary table of the affected triggers")
    # hltDiff's -v takes no value (a LEVEL here swallowed the file after it: 'hltdiff -v OLD NEW' was an error)
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="list every event with differences (hltDiff's event-by-event output); hltDiff's -vv and "
                         "-vvv add trigger candidates, which hltrun outputs do not hold: they list the same")
    ap.add_argument("--selected", choices=("auto", "yes", "no"), default="auto",
                    help="do the outputs keep accepted events only? auto: detect per side (default)")
    ap.add_argument("--tree", default="Events", help="tree name (default Events)")
    ap.add_argument("--rtol", type=float, default=AGREEMENT_RTOL,
                    help=f"relative tolerance for products (default {AGREEMENT_RTOL:g}: the project's agreement "
                         f"criterion between backends)")
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for products (default 0)")
    ap.add_argument("--examples", type=int, default=5,
                    help="events listed per differing product, each with its old -> new value: the largest relative "
                         "change first, then the first others (default 5)")
    return ap


def provenance_notes(old_files: Sequence[Path], new_files: Sequence[Path]) -> list[str]:
    """What differs between what made the two sides' bits (their first files' ``Provenance``): a
    network, an engine, a cut, hltrun's version; nothing where either side does not say (older outputs)."""
    try:
        old, new = read_provenance(old_files[0]), read_provenance(new_files[0])
    except Exception as exc:  # uproot raises many kinds on a corrupt file
        raise InputError(f"cannot read {old_files[0]} or {new_files[0]}: {one_line(exc)}") from None
    return differences(old, new) if old is not None and new is not None else []


def prescale_factors(files: Sequence[Path]) -> SideFactors | None:
    """One side's prescale factors per path and lumi section, from its files' ``Provenance``
    (``hltdiff_prescales``); None for older outputs, which say nothing of them."""
    provenances = []
    for path in files:
        try:
            provenances.append(read_provenance(path))
        except Exception as exc:  # uproot raises many kinds on a corrupt file
            raise InputError(f"cannot read {path}: {one_line(exc)}") from None
    return side_factors(provenances)


def stopped_notes(old_files: Sequence[Path], new_files: Sequence[Path]) -> list[str]:
    """One line per file kept by a job that a graceful signal stopped (SIGUSR2, SIGINT; its ``Provenance``
    says which): it holds the events finished before the stop, not its whole input, which "outputs agree"
    alone would let a user believe."""
    lines = []
    for side, files in (("old", old_files), ("new", new_files)):
        for path in files:
            try:
                signame = stopped_by(read_provenance(path))
            except Exception as exc:  # uproot raises many kinds on a corrupt file
                raise InputError(f"cannot read {path}: {one_line(exc)}") from None
            if signame:
                lines.append(f"the {side} side's {path} was kept by a job stopped by {printable(signame)}: it holds only "
                             f"the events finished before the stop, not the job's whole input")
    return lines


def _print_comparison(diff: Difference, args: argparse.Namespace, made_by: Sequence[str] = (),
                      stopped: Sequence[str] = ()) -> None:
    """The printed comparison: events (-v), header, trigger table, products, notes, verdict."""
    if args.verbose:
        print(render_events(diff))
    print(render_header(diff))
    table = "" if args.quiet else render_table(diff)
    if table:
        print(table)
    print()
    print(render_products(diff, args.rtol, args.atol))
    for side, flag in (("old", diff.selected_old), ("new", diff.selected_new)):
        if flag:
            print(f"note: the {side} side keeps accepted events only; an event it lacks counts as rejected")
    for t in diff.triggers:
        if t.not_compared:
            print(f"note: {t.not_compared} event(s) accepted by {t.name} on one side and lacking on the other, "
                  "whose prescaler there kept 1 in N: prescaled or rejected, its accepted-only file cannot say; "
                  "not counted as gained or lost (compare outputs that keep every event)")
    if diff.only_in_new:
        print(f"note: {diff.only_in_new} event(s) of the new side are not in the old side's files: skipped")
    for n, side, other in ((diff.not_read_by_new, "old", "new"), (diff.not_read_by_old, "new", "old")):
        if n:
            print(f"note: {n} event(s) of the {side} side lie in lumi sections the {other} job did not read "
                  f"(in full): not compared, and no difference")
    for line in made_by:
        print(f"note: what made them differs: {line}")
    for line in stopped:
        print(f"note: {line}")
    print("outputs agree" if diff.identical else "outputs DIFFER")


@entry_point("hltdiff", stdout_exit=2)  # stderr closed, or its reader gone: the exit code still says the answer
def main(argv: list[str] | None = None) -> int:
    """hltdiff's exit code (module docstring); Ctrl-C or a signal: one line, 128 + signal, no file half-written."""
    from hltrun.framework.destinations import one_job
    from hltrun.framework.interrupt import exit_code_of, handle_signals, remove_temporaries

    try:  # one_job: no file of -j, -c, -r may replace a compared file (-F old with -r wrote old.root)
        with handle_signals(), one_job():  # SIGTERM / SIGHUP stop it like Ctrl-C, as they stop hltrun
            return _main(argv)
    except KeyboardInterrupt as exc:
        remove_temporaries()
        sys.stderr.write(f"hltdiff: {str(exc) or 'interrupted by the user (Ctrl-C)'}\n")
        return exit_code_of(exc)


def _main(argv: list[str] | None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.files and (args.old_files or args.new_files):
        ap.error("give either OLD NEW or -o/-n, not both")
    if args.files:
        if len(args.files) != 2:
            ap.error("give exactly two files, OLD and NEW, or use -o/-n for several files per side")
        old_files, new_files = [args.files[0]], [args.files[1]]
    else:
        if not args.old_files or not args.new_files:
            ap.error("please specify the 'old' (-o) and 'new' (-n) file(s)")
        old_files, new_files = args.old_files, args.new_files
    if [str(p) for p in new_files] == ["-"]:
        ap.error("'-n -' (hltDiff: the new results from another process of the old files): an hltrun output "
                 "holds one process's trigger bits; give the new job's output file(s)")
    if args.max_events < 0:
        ap.error("--max-events must be >= 0")
    for option, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if not (math.isfinite(value) and value >= 0):  # nan made every product differ, a negative one too
            ap.error(f"{option} {value:g}: expected a finite number, at least 0")
    if args.examples < 0:
        ap.error("--examples must be >= 0")
    if args.output_file and not (args.json_output or args.csv_output or args.root_output):
        ap.error("-F/--output-file names the files of -j, -c or -r: give one of them")
    selected = {"auto": None, "yes": True, "no": False}[args.selected]
    reading([*old_files, *new_files])
    try:
        old, new = read_side(old_files, args.tree), read_side(new_files, args.tree)
        coverage_old, coverage_new = read_coverage(old_files), read_coverage(new_files)
        for files, process, option in ((old_files, args.old_process, "-O"), (new_files, args.new_process, "-N")):
            check_process(files, process, option)
        made_by = provenance_notes(old_files, new_files)
        stopped = stopped_notes(old_files, new_files)
        factors_old, factors_new = prescale_factors(old_files), prescale_factors(new_files)
    except InputError as exc:
        sys.stderr.write(f"hltdiff: error: {printable(str(exc))}\n")
        return 2
    diff = compare(old, new, args.rtol, args.atol, args.examples, args.max_events, selected, selected,
                   coverage_old, coverage_new, ignore_prescales=not args.prescales, factors_old=factors_old,
                   factors_new=factors_new)
    if args.debug:  # hltDiff -d: every event not found on the other side
        n_old = diff.only_in_old
        for i, (run, lumi, event) in enumerate(diff.skipped_ids):
            side = "new" if i < n_old else "old"
            sys.stderr.write(f"run {run}, lumi {lumi}, event {event}: not found in the '{side}' files, skipping.\n")
    try:
        with printing("the comparison", required=False):
            _print_comparison(diff, args, made_by, stopped)
    except HltError as exc:
        sys.stderr.write(f"hltdiff: error: {printable(str(exc))}\n")
        return 2
    if args.json_output or args.csv_output or args.root_output:
        try:
            json_files, summary_files = write_outputs(
                diff, [str(p) for p in old_files], [str(p) for p in new_files], json_out=args.json_output,
                csv_out=args.csv_output, root_out=args.root_output, output_file=args.output_file,
                old_process=args.old_process, new_process=args.new_process)
        except HltError as exc:
            sys.stderr.write(f"hltdiff: error: {printable(str(exc))}\n")
            return 2
        for kind, names in (("JSON", json_files), ("summary", summary_files)):
            if names:
                print(f"Created the following {kind} files:")
                print("\n".join(f" {name}" for name in names))
    return 0 if diff.identical else 1


if __name__ == "__main__":
    sys.exit(main())
