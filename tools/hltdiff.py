"""hltdiff: compare hltrun outputs event by event, the way CMSSW's hltDiff compares TriggerResults.

Events are matched on (run, luminosityBlock, event); an id that repeats within one side is matched
occurrence by occurrence. For every HLT_* trigger the table counts, as hltDiff does, the events
compared, the events the old side accepted, and the accepts gained (+) and lost (-) by the new side.

hltrun specifics, next to hltDiff's own behaviour:

* Outputs written with ``select_events`` keep only accepted events. Such a side ("accepted-only":
  no row rejected by every trigger) counts an event it lacks as rejected, so the event becomes a
  gained or lost accept instead of a skipped one. ``--selected yes|no`` overrides the detection.
* ``Other`` (hltDiff: same decision, stopped at another module) counts events that the trigger
  accepted on both sides but whose kept products (e.g. ``vae_score``) differ beyond the tolerance:
  hltrun outputs record decisions, not the module that stopped a path.
* Kept products are compared on every common event, with ``--rtol``/``--atol`` (default: the
  project's agreement criterion between backends, 1e-4 relative).
* hltrun outputs list the lumi sections their job processed (the ``LuminosityBlocks`` tree, with
  ``eventsProcessed``). An event one side has and the other lacks, in a lumi section the other job did
  not read in full, was *not read* there: it is neither gained, lost nor skipped, and does not make
  the outputs differ (comparing a job on two samples with a reference on four is no difference). A
  side without that tree (an older output) is assumed to have read every event.

Exit codes (more useful to scripts than hltDiff's): 0 the outputs agree, 1 they differ, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import awkward as ak
import numpy as np

from hltrun.framework.atomic import write_text
from hltrun.framework.errors import HltError
from hltrun.modules.inference.base import AGREEMENT_RTOL
from hltrun.modules.root_output import LUMI_TREE  # what each job read, lumi section by lumi section

ID_BRANCHES = ("run", "luminosityBlock", "event")
TRIGGER_PREFIX = "HLT_"
# hltDiff's path states, in its order (edm::hlt::HLTState, then Prescaled and Invalid)
STATES = ("not run", "accepted", "rejected", "exception", "prescaled", "invalid")
PASS, FAIL = 1, 2


class InputError(Exception):
    """A file or tree that cannot be compared; the message names it."""


@dataclass
class TriggerDiff:
    """One row of hltDiff's table."""

    name: str
    accepted: int = 0  # accepted by the old side, among the compared events
    gained: int = 0
    lost: int = 0
    other: int = 0

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


@dataclass
class Difference:
    """What differs between two sides. ``examples`` lists a few event ids per differing branch."""

    only_in_old: int = 0  # events skipped: present in the old side only, new side keeps all events
    only_in_new: int = 0
    not_read_by_new: int = 0  # old-side events in lumi sections the new job did not read in full
    not_read_by_old: int = 0
    common: int = 0  # events present on both sides
    compared: int = 0  # events whose decisions were compared (common + implied rejections)
    selected_old: bool = False
    selected_new: bool = False
    triggers: list[TriggerDiff] = field(default_factory=list)
    branches: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    events: list[EventDiff] = field(default_factory=list)
    skipped_ids: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def affected(self) -> int:
        return len(self.events)

    @property
    def identical(self) -> bool:
        return not (self.only_in_old or self.only_in_new or any(self.branches.values())
                    or any(t.differs for t in self.triggers))


# ----------------------------------------------------------------------------------------- reading
def read_side(paths: Sequence[Path], tree: str) -> ak.Array:
    """All rows of ``tree`` in ``paths``, in file order; branches missing from a file are dropped."""
    import uproot

    parts = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"file not found: {path}")
        try:
            with uproot.open(path) as f:
                if tree not in f:
                    raise InputError(f"no tree '{tree}' in {path}")
                parts.append(f[tree].arrays(library="ak"))
        except InputError:
            raise
        except Exception as exc:  # uproot raises many kinds on a corrupt file
            raise InputError(f"cannot read tree '{tree}' from {path}: {exc}") from None
        missing = [b for b in ID_BRANCHES if b not in parts[-1].fields]
        if missing:
            raise InputError(f"{path}: tree '{tree}' has no {', '.join(missing)} branch")
    if len(parts) == 1:
        return parts[0]
    fields = [f for f in parts[0].fields if all(f in p.fields for p in parts[1:])]
    return ak.concatenate([p[fields] for p in parts])


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
            raise InputError(f"cannot read tree '{LUMI_TREE}' from {path}: {exc}") from None
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


def is_accepted_only(arr: ak.Array) -> bool:
    """True when no row is rejected by every trigger: an output that kept accepted events only."""
    triggers = [f for f in arr.fields if f.startswith(TRIGGER_PREFIX)]
    if not triggers or len(arr) == 0:
        return False
    any_pass = np.zeros(len(arr), bool)
    for name in triggers:
        any_pass |= np.asarray(arr[name], dtype=bool)
    return bool(any_pass.all())


# -------------------------------------------------------------------------------------- comparison
def _keys(a: ak.Array) -> np.ndarray:
    """(run, lumi, event, n): n counts repeats of an id, so files that merge samples with overlapping
    ids still match the n-th occurrence with the n-th occurrence."""
    cols = [np.asarray(a[b], dtype=np.int64) for b in ID_BRANCHES]
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
            coverage_new: dict[tuple[int, int], int] | None = None) -> Difference:
    """Compare two sides' rows. ``selected_*`` None: detect accepted-only outputs (module docstring);
    ``coverage_*``: the lumi sections each side's job read (``read_coverage``; None: all)."""
    if max_events > 0:
        old = old[:max_events]
    sel_old = is_accepted_only(old) if selected_old is None else selected_old
    sel_new = is_accepted_only(new) if selected_new is None else selected_new
    k_old, k_new = _keys(old), _keys(new)
    common, i_old, i_new = np.intersect1d(k_old, k_new, return_indices=True)
    only_old = np.setdiff1d(np.arange(len(k_old)), i_old)
    only_new = np.setdiff1d(np.arange(len(k_new)), i_new)
    if max_events > 0 and sel_old:  # the old side's first N rows say nothing about later new rows
        only_new = only_new[:0]
    diff = Difference(common=len(common), selected_old=sel_old, selected_new=sel_new)
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
        """Decisions in the order of ``all_ids``: common rows, old-only rows, new-only rows."""
        col = np.asarray(arr[name], dtype=bool) if name in arr.fields else np.zeros(len(arr), bool)
        missing = np.zeros(n_other, bool)  # rows the side lacks: rejected (accepted-only side)
        own = col[rows_own]
        parts = [col[rows_common], own, missing] if own_first else [col[rows_common], missing, own]
        return np.concatenate(parts)

    names = [f for f in old.fields if f.startswith(TRIGGER_PREFIX)]
    names += [f for f in new.fields if f.startswith(TRIGGER_PREFIX) and f not in names]
    product_fields = [f for f in old.fields if f in new.fields and f not in ID_BRANCHES
                      and not f.startswith(TRIGGER_PREFIX)]
    product_bad = np.zeros(len(common), bool)
    for name in product_fields:
        bad = np.flatnonzero(_values_differ(old[name][i_old], new[name][i_new], rtol, atol))
        diff.branches[name] = len(bad)
        product_bad[bad] = True
        if len(bad):
            diff.examples[name] = [tuple(int(x) for x in common[i])[:3] for i in bad[:examples]]
    for name in sorted(set(old.fields) ^ set(new.fields)):
        if not name.startswith(TRIGGER_PREFIX):
            diff.branches[f"{name} (in one file only)"] = 1

    product_bad_all = np.concatenate([product_bad, np.zeros(diff.compared - len(common), bool)])
    old_dec = {n: decisions(old, i_old, use_old_only, len(use_new_only), True, n) for n in names}
    new_dec = {n: decisions(new, i_new, use_new_only, len(use_old_only), False, n) for n in names}
    old_any = np.zeros(diff.compared, bool)
    new_any = np.zeros(diff.compared, bool)
    changed: dict[int, list[tuple[int, int, int]]] = {}
    for t, name in enumerate(names):
        o, n = old_dec[name], new_dec[name]
        old_any |= o
        new_any |= n
        row = TriggerDiff(name, accepted=int(o.sum()), gained=int((~o & n).sum()), lost=int((o & ~n).sum()),
                          other=int((o & n & product_bad_all).sum()))
        diff.triggers.append(row)
        for i in np.flatnonzero((o != n) | (o & n & product_bad_all)):
            changed.setdefault(int(i), []).append((t, PASS if o[i] else FAIL, PASS if n[i] else FAIL))
    for i in sorted(changed):
        run, lumi, event = (int(x) for x in tuple(all_ids[i])[:3])
        diff.events.append(EventDiff(run, lumi, event, bool(old_any[i]), bool(new_any[i]), changed[i]))
    return diff


# --------------------------------------------------------------------------------------- rendering
def _signed(value: int, sign: str) -> str:
    return f"{sign}{value}" if value else "-"


def render_table(diff: Difference) -> str:
    """hltDiff's summary: 'Found A events out of N with differences' and its 12-wide columns."""
    if not diff.compared:
        line = "There are no common events between the old and new files"
        if diff.only_in_old or diff.only_in_new:
            line += f", {diff.only_in_old + diff.only_in_new} events were skipped"
        return line + "."
    head = f"Found {diff.affected} events out of {diff.compared} with differences"
    if diff.only_in_old or diff.only_in_new:
        head += f", {diff.only_in_old + diff.only_in_new} events were skipped"
    lines = [head + ":", "",
             f"{'Events':>12}{'Accepted':>12}{'Gained':>12}{'Lost':>12}{'Other':>12}  Trigger"]
    for t in diff.triggers:
        lines.append(f"{diff.compared:>12}{t.accepted:>12}{_signed(t.gained, '+'):>12}"
                     f"{_signed(t.lost, '-'):>12}{_signed(t.other, '~'):>12}  {t.name}")
    return "\n".join(lines)


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
        lines.append("")
    return "\n".join(lines)


def render_products(diff: Difference, rtol: float, atol: float) -> str:
    lines = [f"Products compared on {diff.common} common events (rtol {rtol:g}, atol {atol:g}):"]
    for name, n in diff.branches.items():
        lines.append(f"  {name:<40} {'differs' if n else 'same':>8} {n:>8} events")
        for run, lumi, event in diff.examples.get(name, []):
            lines.append(f"      e.g. run {run}, lumi {lumi}, event {event}")
    return "\n".join(lines)


def to_json(diff: Difference, old_files: Sequence[str], new_files: Sequence[str]) -> dict:
    """hltDiff's JSON layout (configuration, vars, events keyed 'run:lumi:event'), plus hltrun's
    'summary' and 'products'. Module fields are -1: hltrun outputs do not record them."""
    def block(files: Sequence[str]) -> dict:
        base = os.path.commonprefix(list(files)) if len(files) > 1 else ""
        return {"file_base": base, "files": [f[len(base):] for f in files], "process": ""}

    return {
        "configuration": {"o": block(old_files), "n": block(new_files), "prescales": True},
        "vars": {"state": list(STATES[:5]), "trigger": [t.name for t in diff.triggers], "label": [], "type": []},
        "events": {f"{e.run}:{e.lumi}:{e.event}": [
            {"tr": t, "o": {"s": o, "m": -1, "l": -1, "t": -1}, "n": {"s": n, "m": -1, "l": -1, "t": -1}}
            for t, o, n in e.triggers] for e in diff.events},
        "summary": {"compared": diff.compared, "affected": diff.affected, "common": diff.common,
                    "skipped_old_only": diff.only_in_old, "skipped_new_only": diff.only_in_new,
                    "not_read_by_new": diff.not_read_by_new, "not_read_by_old": diff.not_read_by_old,
                    "accepted_only": {"old": diff.selected_old, "new": diff.selected_new},
                    "triggers": [t.__dict__ for t in diff.triggers], "identical": diff.identical},
        "products": {"differing_events": diff.branches, "examples": diff.examples},
    }


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hltdiff", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
        description="Compare hltrun outputs event by event (CMSSW hltDiff's table, -o/-n, -j, -q, -v, -m).",
        usage="hltdiff OLD.root NEW.root [options]\n       hltdiff -o OLD1.root [OLD2.root ...] -n NEW1.root [...] [options]")
    ap.add_argument("files", nargs="*", type=Path, help="OLD and NEW output (one file per side)")
    ap.add_argument("-o", "--old-files", nargs="+", type=Path, metavar="FILE", help="old (reference) output file(s)")
    ap.add_argument("-n", "--new-files", nargs="+", type=Path, metavar="FILE", help="new output file(s)")
    ap.add_argument("-m", "--max-events", type=int, default=0, metavar="N",
                    help="compare only the first N events of the old side (default: all)")
    ap.add_argument("-j", "--json-output", nargs="?", const="hltDiff_output.json", default=None, metavar="FILE",
                    help="also write the comparison as JSON (default name hltDiff_output.json)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no messages about events missing from one side")
    ap.add_argument("-v", "--verbose", nargs="?", type=int, const=1, default=0, metavar="LEVEL",
                    help="list every event with differences (hltDiff's event-by-event output)")
    ap.add_argument("--selected", choices=("auto", "yes", "no"), default="auto",
                    help="do the outputs keep accepted events only? auto: detect per side (default)")
    ap.add_argument("--tree", default="Events", help="tree name (default Events)")
    ap.add_argument("--rtol", type=float, default=AGREEMENT_RTOL,
                    help=f"relative tolerance for products (default {AGREEMENT_RTOL:g}: the project's agreement "
                         f"criterion between backends)")
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for products (default 0)")
    ap.add_argument("--examples", type=int, default=5, help="event ids listed per differing product (default 5)")
    return ap


def main(argv: list[str] | None = None) -> int:
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
    if args.max_events < 0:
        ap.error("--max-events must be >= 0")
    selected = {"auto": None, "yes": True, "no": False}[args.selected]
    try:
        old, new = read_side(old_files, args.tree), read_side(new_files, args.tree)
        coverage_old, coverage_new = read_coverage(old_files), read_coverage(new_files)
    except InputError as exc:
        sys.stderr.write(f"hltdiff: error: {exc}\n")
        return 2
    diff = compare(old, new, args.rtol, args.atol, args.examples, args.max_events, selected, selected,
                   coverage_old, coverage_new)
    if not args.quiet and diff.skipped_ids:
        shown = diff.skipped_ids if args.verbose else diff.skipped_ids[:10]
        for run, lumi, event in shown:
            sys.stderr.write(f"run {run}, lumi {lumi}, event {event}: not found in the other side's files, skipping.\n")
        if len(shown) < len(diff.skipped_ids):
            sys.stderr.write(f"... and {len(diff.skipped_ids) - len(shown)} more events found on one side only (-v lists all)\n")
    if args.verbose:
        print(render_events(diff))
    print(render_table(diff))
    print()
    print(render_products(diff, args.rtol, args.atol))
    for side, flag in (("old", diff.selected_old), ("new", diff.selected_new)):
        if flag:
            print(f"note: the {side} side keeps accepted events only; an event it lacks counts as rejected")
    for n, side, other in ((diff.not_read_by_new, "old", "new"), (diff.not_read_by_old, "new", "old")):
        if n:
            print(f"note: {n} event(s) of the {side} side lie in lumi sections the {other} job did not read "
                  f"(in full): not compared, and no difference")
    print("outputs agree" if diff.identical else "outputs DIFFER")
    if args.json_output:
        payload = to_json(diff, [str(p) for p in old_files], [str(p) for p in new_files])
        try:
            write_text(args.json_output, json.dumps(payload, indent=1) + "\n", "--json-output")
        except HltError as exc:
            sys.stderr.write(f"hltdiff: error: {exc}\n")
            return 2
    return 0 if diff.identical else 1


if __name__ == "__main__":
    sys.exit(main())
