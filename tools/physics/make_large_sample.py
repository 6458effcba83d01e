"""Make a bigger sample for scaling measurements by replicating the shipped files into one ROOT file.

    python -m hltrun.tools.physics.make_large_sample --events 24000            # -> data/large/replicated_24000.root

Copies are not new physics: the same events again, with ``luminosityBlock`` and ``event`` renumbered so
that every (run, lumi, event) stays unique: a copy k adds k*L to the lumi and k*E to the event, with L and E
the powers of ten above the inputs' largest lumi and event numbers (at least 1000 and 10^7: the shipped
files' copies keep their numbers), so inputs numbered like real data (lumis past 1000, events past 10^7)
never give a copy an original's id.
The branch layout (NanoAOD counters and collections) is kept, so the shipped configs read it unchanged.
Baskets hold 1000 entries (one ``extend`` per 1000 events), so work units of a multiple of 1000 events
never decompress a basket twice. ``data/large/`` is git-ignored.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hltrun.tools.catalogue import checkout  # noqa: E402

REPO = checkout()
DEFAULT_INPUTS = ["data/qcd_dijet.root", "data/rsg_ww_3p5TeV.root"]


def make(inputs: list[Path], events: int, out: Path, step: int = 1000) -> int:
    """Write ``events`` entries cycling over ``inputs`` into ``out`` (atomically); return the count."""
    import uproot
    from tqdm import tqdm

    from hltrun.framework.atomic import writing
    from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod

    lumi_step, event_step = id_steps(inputs)
    written, copy = 0, 0
    with writing(out, "make_large_sample") as staged, \
            uproot.recreate(staged.open(), compression=uproot.ZLIB(4)) as f, \
            tqdm(total=events, unit="evt", desc="copy") as bar:
        while written < events:
            for path in inputs:
                with _reading(path):
                    tree = uproot.open(path)["Events"]
                    layout = branch_groups(tree)
                if not tree.num_entries:  # would copy nothing, round after round, for ever
                    raise InputUnreadable(f"make_large_sample: {path}: no entries to replicate")
                for arrays in _chunks(path, tree, step, min(tree.num_entries, events - written)):
                    data = regroup(arrays, layout)
                    data["luminosityBlock"] = _shifted(data["luminosityBlock"], lumi_step * copy, np.uint32, path)
                    data["event"] = _shifted(data["event"], event_step * copy, np.uint64, path)
                    write_nanoaod(f, "Events", data)
                    written += len(arrays)
                    bar.update(len(arrays))
                if written >= events:
                    break
            copy += 1
    return written


MIN_LUMI_STEP, MIN_EVENT_STEP = 1000, 10_000_000


def id_steps(inputs: list[Path]) -> tuple[int, int]:
    """What a copy adds to the lumi and event numbers: the powers of ten above the largest of the inputs
    (at least MIN_LUMI_STEP, MIN_EVENT_STEP). Why not fixed: 1000 and 10^7 are above the shipped files'
    numbers only; a copy of a file with lumi 1001 or event 10^7 + 1 would repeat an original's id, and
    the job would skip it as a duplicate (fewer events than the sample claims)."""
    import uproot

    lumi, event = 0, 0
    for path in inputs:
        with _reading(path):
            tree = uproot.open(path)["Events"]
            ids = tree.arrays(["luminosityBlock", "event"], library="np")
        if len(ids["event"]):
            lumi, event = max(lumi, int(ids["luminosityBlock"].max())), max(event, int(ids["event"].max()))
    return max(MIN_LUMI_STEP, 10 ** len(str(lumi))), max(MIN_EVENT_STEP, 10 ** len(str(event)))


def _shifted(values: Any, offset: int, dtype: Any, path: Path) -> np.ndarray:
    """``values + offset`` in ``dtype``; past the type's range (a copy's id would wrap onto another's) the
    input's one line."""
    v = np.asarray(values).astype(np.uint64)
    if offset and int(v.max(initial=0)) > np.iinfo(dtype).max - offset:
        raise InputUnreadable(f"make_large_sample: {path}: its ids leave no room for another copy ("
                              f"{np.dtype(dtype).name} ends at {np.iinfo(dtype).max}); ask for fewer --events")
    return (v + np.uint64(offset)).astype(dtype)


def _chunks(path: Path, tree: Any, step: int, stop: int) -> Iterator[Any]:
    """``tree``'s entries up to ``stop`` in chunks of ``step``, read one at a time; a read error is the input's."""
    with _reading(path):
        yield from tree.iterate(step_size=step, entry_stop=stop, library="ak")


class InputUnreadable(Exception):
    """An input file uproot cannot read (corrupt, not ROOT, no Events tree): one line, exit 3."""


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """uproot's errors while reading ``path`` become its one line; inside the output's ``writing`` block an
    OSError naming no file would otherwise be taken for the output's own failure (a full disk)."""
    from uproot.deserialization import DeserializationError

    try:
        yield
    except (OSError, ValueError, KeyError, DeserializationError) as exc:
        raise InputUnreadable(f"make_large_sample: {path}: cannot read ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())})") from None


def main(argv: list[str] | None = None) -> int:
    """Exit 0; a bad input or output is one line: 3 (an input file), 4 (an output that cannot be written)."""
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    from hltrun.framework.destinations import check_file_destination
    from hltrun.framework.errors import HltError, printable
    from hltrun.framework.resources import local_output_path, unreadable_reason
    from hltrun.tools.bench.runner import positive_int

    ap = argparse.ArgumentParser(prog="python -m hltrun.tools.physics.make_large_sample", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--events", type=positive_int, default=24_000, help="entries to write (default 24000)")
    ap.add_argument("--inputs", nargs="+", type=Path, default=[REPO / p for p in DEFAULT_INPUTS],
                    help="files to replicate, in order (default: the shipped QCD and G* 3.5 TeV samples)")
    ap.add_argument("--out", type=local_output_path,
                    help="output file (default data/large/replicated_<events>.root)")
    args = ap.parse_args(argv)
    out = args.out or REPO / "data" / "large" / f"replicated_{args.events}.root"
    for path in args.inputs:  # named in one line, not uproot's traceback
        why = unreadable_reason(path, "input file")
        if why is not None:
            print(f"make_large_sample: {why}", file=sys.stderr)
            return 3
    try:
        check_file_destination(out, "make_large_sample --out")  # a folder or /dev/full: before any copy
        n = make(args.inputs, args.events, out)
    except HltError as exc:
        print(printable(str(exc)), file=sys.stderr)
        return exc.exit_code
    except InputUnreadable as exc:
        print(printable(str(exc)), file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("make_large_sample: interrupted by the user (Ctrl-C); nothing written", file=sys.stderr)
        return 130
    print(f"wrote {out} ({n} events, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
