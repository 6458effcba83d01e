"""Make a bigger sample for scaling measurements by replicating the shipped files into one ROOT file.

    python -m hltrun.tools.physics.make_large_sample --events 24000            # -> data/large/replicated_24000.root

Copies are not new physics: the same events again, with ``luminosityBlock`` and ``event`` renumbered so
that every (run, lumi, event) stays unique (a copy k adds 1000*k to the lumi and 10^7*k to the event).
The branch layout (NanoAOD counters and collections) is kept, so the shipped configs read it unchanged.
Baskets hold 1000 entries (one ``extend`` per 1000 events), so work units of a multiple of 1000 events
never decompress a basket twice. ``data/large/`` is git-ignored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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

    written, copy = 0, 0
    with writing(out, "make_large_sample") as staged, \
            uproot.recreate(staged.open(), compression=uproot.ZLIB(4)) as f, \
            tqdm(total=events, unit="evt", desc="copy") as bar:
        while written < events:
            for path in inputs:
                tree = uproot.open(path)["Events"]
                layout = branch_groups(tree)
                stop = min(tree.num_entries, events - written)
                for arrays in tree.iterate(step_size=step, entry_stop=stop, library="ak"):
                    data = regroup(arrays, layout)
                    data["luminosityBlock"] = np.asarray(data["luminosityBlock"]) + np.uint32(1000 * copy)
                    data["event"] = np.asarray(data["event"]) + np.uint64(10_000_000 * copy)
                    write_nanoaod(f, "Events", data)
                    written += len(arrays)
                    bar.update(len(arrays))
                if written >= events:
                    break
            copy += 1
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hltrun.tools.physics.make_large_sample", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--events", type=int, default=24_000, help="entries to write (default 24000)")
    ap.add_argument("--inputs", nargs="+", type=Path, default=[REPO / p for p in DEFAULT_INPUTS],
                    help="files to replicate, in order (default: the shipped QCD and G* 3.5 TeV samples)")
    ap.add_argument("--out", type=Path, help="output file (default data/large/replicated_<events>.root)")
    args = ap.parse_args(argv)
    out = args.out or REPO / "data" / "large" / f"replicated_{args.events}.root"
    n = make(args.inputs, args.events, out)
    print(f"wrote {out} ({n} events, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
