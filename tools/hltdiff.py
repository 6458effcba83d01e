"""hltdiff: compare two hltrun output files event by event (CMSSW's hltDiff for hltrun outputs).

Events are matched on (run, luminosityBlock, event). Reported: events present in only one file, for
every ``HLT_*`` path the events whose decision differs, and for every other numeric branch the events
whose values differ beyond the tolerance. Exit code 0 when the files agree, 1 when they differ,
2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

ID_BRANCHES = ("run", "luminosityBlock", "event")


@dataclass
class Difference:
    """What differs between the two files, per branch; ``examples`` lists a few event ids."""

    only_in_old: int = 0
    only_in_new: int = 0
    common: int = 0
    branches: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not (self.only_in_old or self.only_in_new or any(self.branches.values()))


def _read(path: Path, tree: str) -> ak.Array:
    import uproot

    if not path.exists():
        raise SystemExit(f"hltdiff: error: file not found: {path}")
    try:
        return uproot.open(path)[tree].arrays(library="ak")
    except Exception as exc:
        raise SystemExit(f"hltdiff: error: cannot read tree '{tree}' from {path}: {exc}") from None


def compare(old: ak.Array, new: ak.Array, rtol: float = 1e-5, atol: float = 0.0, examples: int = 5) -> Difference:
    def keys(a: ak.Array) -> np.ndarray:
        """(run, lumi, event, n): n counts repeats of an id, so files that merge samples with
        overlapping ids still match the n-th occurrence with the n-th occurrence."""
        cols = [np.asarray(a[b], dtype=np.int64) for b in ID_BRANCHES]
        ids = np.rec.fromarrays(cols, names=ID_BRANCHES)
        order = np.argsort(ids, kind="stable")
        first = np.r_[True, ids[order][1:] != ids[order][:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0))
        occurrence = np.empty(len(ids), np.int64)
        occurrence[order] = np.arange(len(ids)) - group_start
        return np.rec.fromarrays([*cols, occurrence], names=[*ID_BRANCHES, "n"])

    k_old, k_new = keys(old), keys(new)
    common, i_old, i_new = np.intersect1d(k_old, k_new, return_indices=True)
    diff = Difference(only_in_old=len(k_old) - len(common), only_in_new=len(k_new) - len(common), common=len(common))
    fields = [f for f in old.fields if f in new.fields and f not in ID_BRANCHES]
    for name in fields:
        a, b = old[name][i_old], new[name][i_new]
        if a.ndim > 1 or b.ndim > 1:  # per-jet values: compare lengths then values
            same_len = np.asarray(ak.num(a, axis=1)) == np.asarray(ak.num(b, axis=1))
            ok = same_len.copy()
            flat_a = ak.to_numpy(ak.flatten(a[same_len]))
            flat_b = ak.to_numpy(ak.flatten(b[same_len]))
            close = np.isclose(flat_a, flat_b, rtol=rtol, atol=atol, equal_nan=True)
            bad_rows = np.repeat(np.arange(int(same_len.sum())), np.asarray(ak.num(a[same_len], axis=1)))[~close]
            ok[np.flatnonzero(same_len)[np.unique(bad_rows)]] = False
        else:
            a, b = np.asarray(a), np.asarray(b)
            ok = a == b if a.dtype == bool or np.issubdtype(a.dtype, np.integer) else np.isclose(
                a, b, rtol=rtol, atol=atol, equal_nan=True)
        bad = np.flatnonzero(~ok)
        diff.branches[name] = len(bad)
        if len(bad):
            diff.examples[name] = [tuple(int(x) for x in common[i])[:3] for i in bad[:examples]]
    for name in sorted(set(old.fields) ^ set(new.fields)):
        diff.branches[f"{name} (in one file only)"] = 1
    return diff


def render(diff: Difference, old: str, new: str) -> str:
    lines = [f"hltdiff {old} {new}",
             f"  events in both: {diff.common}, only in old: {diff.only_in_old}, only in new: {diff.only_in_new}"]
    for name, n in diff.branches.items():
        mark = "differs" if n else "same"
        lines.append(f"  {name:<40} {mark:>8} {n:>8} events")
        for run, lumi, event in diff.examples.get(name, []):
            lines.append(f"      e.g. run {run}, lumi {lumi}, event {event}")
    lines.append("  files agree" if diff.identical else "  files DIFFER")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hltdiff", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("old", type=Path, help="reference hltrun output ROOT file")
    ap.add_argument("new", type=Path, help="hltrun output ROOT file to compare")
    ap.add_argument("--tree", default="Events", help="tree name (default Events)")
    ap.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance for scores (default 1e-5)")
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for scores (default 0)")
    ap.add_argument("--examples", type=int, default=5, help="event ids listed per differing branch (default 5)")
    args = ap.parse_args(argv)
    try:
        diff = compare(_read(args.old, args.tree), _read(args.new, args.tree), args.rtol, args.atol, args.examples)
    except SystemExit as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    print(render(diff, str(args.old), str(args.new)))
    return 0 if diff.identical else 1


if __name__ == "__main__":
    sys.exit(main())
