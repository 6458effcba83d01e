#!/usr/bin/env python3
"""Generate dijet samples with PYTHIA 8 + FastJet and write them as NanoAOD-like ROOT files.

Why this exists: hltrun must run on a fresh checkout with no download, so the project makes its own
LHC-like jets with the field's standard tools (see data/README.md for the layout and the cuts).

Reproducibility: events are produced in chunks of ``chunk_size`` accepted events; chunk ``k`` of a
process uses ``Random:seed = seed + seed_offset + k``.  The output therefore depends only on the
config file and ``--events``, not on ``--workers``.

Example::

    python tools/physics/generate_events.py --process qcd --events 4000 --workers 2
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.tools.catalogue import checkout, require_files, usage_error  # noqa: E402

PROG = "generate_events"

REPO = checkout()

from hltrun.framework.atomic import writing
from hltrun.framework.stdio import entry_point

DEFAULT_CONFIG = Path(__file__).resolve().with_name("generation.yaml")  # shipped beside this module
NEUTRINOS = (12, 14, 16)
MAX_SEED = 900_000_000
EVENT_BLOCK = 10**7  # event numbers of one seed (first_event): 9e8 seeds x 1e7 stay far inside uint64


@dataclass
class ChunkTask:
    """One unit of work: ``n_events`` accepted events of one process with one seed."""

    process: str
    process_id: int
    settings: list[str]
    seed: int
    chunk_index: int
    n_events: int
    selection: dict[str, float]


@dataclass
class ChunkResult:
    """Columnar output of one chunk (flat numpy arrays plus per-event counts)."""

    chunk_index: int
    n_tried: int
    seconds: float
    weight: list[float] = field(default_factory=list)
    pthat: list[float] = field(default_factory=list)
    mjj: list[float] = field(default_factory=list)
    n_jets: list[int] = field(default_factory=list)
    jet_pt: list[float] = field(default_factory=list)
    jet_eta: list[float] = field(default_factory=list)
    jet_phi: list[float] = field(default_factory=list)
    jet_mass: list[float] = field(default_factory=list)
    jet_ncon: list[int] = field(default_factory=list)
    n_cands: list[int] = field(default_factory=list)
    cand_pt: list[float] = field(default_factory=list)
    cand_eta: list[float] = field(default_factory=list)
    cand_phi: list[float] = field(default_factory=list)


def load_config(path: Path) -> dict[str, Any]:
    """Read the YAML generation config."""
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def make_pythia(settings: list[str], seed: int) -> Any:
    """Build and initialise a quiet Pythia instance with the given settings and seed."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)  # no banner
    for line in settings + ["Random:setSeed = on", f"Random:seed = {seed}", "Print:quiet = on"]:
        if not pythia.readString(line):
            raise ValueError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia initialisation failed for settings {settings}")
    return pythia


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Generate, cluster and select ``task.n_events`` events; runs in a worker process."""
    import fastjet

    t0 = time.perf_counter()
    sel = task.selection
    eta_max, pt_min = float(sel["eta_max"]), float(sel["jet_pt_min"])
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, float(sel["jet_R"]))
    pythia = make_pythia(task.settings, task.seed)
    out = ChunkResult(chunk_index=task.chunk_index, n_tried=0, seconds=0.0)
    accepted = 0
    while accepted < task.n_events:
        out.n_tried += 1
        if out.n_tried > 100 * task.n_events + 1000:
            raise RuntimeError(f"{task.process}: selection efficiency too low, gave up")
        if not pythia.next():
            continue
        particles = []
        for prt in pythia.event:
            if not prt.isFinal() or prt.idAbs() in NEUTRINOS:
                continue
            if prt.pT() <= 0.0 or abs(prt.eta()) >= eta_max:
                continue
            particles.append(fastjet.PseudoJet(prt.px(), prt.py(), prt.pz(), prt.e()))
        cs = fastjet.ClusterSequence(particles, jetdef)
        jets = [j for j in fastjet.sorted_by_pt(cs.inclusive_jets(pt_min)) if abs(j.eta()) < eta_max]
        if len(jets) < int(sel["min_jets"]):
            continue
        accepted += 1
        # 1 for an unbiased sample; with PhaseSpace:bias2Selection the inverse of the pTHat bias, so a
        # flat-pT sample still gives physical (weighted) rates
        out.weight.append(pythia.infoPython().weight())
        # the hard process's pTHat: what stitches samples generated in pTHat slices (tools/physics/qcd_slices.py)
        out.pthat.append(pythia.infoPython().pTHat())
        dijet = jets[0] + jets[1]
        out.mjj.append(dijet.m())
        out.n_jets.append(len(jets))
        ncands = 0
        for jet in jets:
            cons = fastjet.sorted_by_pt(jet.constituents())
            out.jet_pt.append(jet.pt())
            out.jet_eta.append(jet.eta())
            out.jet_phi.append(jet.phi_std())
            out.jet_mass.append(jet.m())
            out.jet_ncon.append(len(cons))
            ncands += len(cons)
            for c in cons:
                out.cand_pt.append(c.pt())
                out.cand_eta.append(c.eta())
                out.cand_phi.append(c.phi_std())
        out.n_cands.append(ncands)
    out.seconds = time.perf_counter() - t0
    return out


def build_tasks(cfg: dict[str, Any], process: str, n_events: int) -> list[ChunkTask]:
    """Split a request for ``n_events`` accepted events into seeded chunks."""
    pcfg = cfg["processes"][process]
    chunk = int(cfg.get("chunk_size", 250))
    settings = list(cfg.get("common", [])) + list(pcfg["settings"])
    tasks = []
    for k in range(math.ceil(n_events / chunk)):
        seed = int(cfg["seed"]) + int(pcfg.get("seed_offset", 0)) + k
        if not 0 < seed <= MAX_SEED:
            raise ValueError(f"seed {seed} outside Pythia's range (0, {MAX_SEED}]")
        tasks.append(ChunkTask(process, int(pcfg["id"]), settings, seed, k,
                               min(chunk, n_events - k * chunk), dict(cfg["selection"])))
    return tasks


def reproduces_shipped(cfg: dict[str, Any], process: str, n_events: int) -> bool:
    """Whether ``cfg`` makes the shipped config's events of ``process``: the same run number and the same chunks
    (settings, selection, seeds, sizes), whichever file or ``--seed`` says so."""
    shipped = load_config(DEFAULT_CONFIG)
    if process not in shipped["processes"] or int(cfg.get("run", 1)) != int(shipped.get("run", 1)):
        return False
    return build_tasks(cfg, process, n_events) == build_tasks(shipped, process, n_events)


def first_event(cfg: dict[str, Any], process: str, n_events: int) -> int:
    """The file's first event number: 1 for the shipped config's own events (the shipped files), ``seed`` x 10^7
    + 1 for any other sample. Why: the ids are the process (run), the chunk (lumi) and the event, so two
    independent samples of one process numbered 1 ... N alike shared every id, and a job reading both skipped the
    second whole as duplicates. Seeds a million apart (independent samples) are then 10^13 event numbers apart.
    Judged on the events, not on ``--seed``: a copy of generation.yaml with another ``seed:`` (no ``--seed``)
    was numbered 1 ... N like the shipped files."""
    return 1 if reproduces_shipped(cfg, process, n_events) else int(cfg["seed"]) * EVENT_BLOCK + 1


def to_arrays(results: list[ChunkResult], process_id: int, run: int, first: int = 1) -> dict[str, Any]:
    """Merge chunk results into the branch dictionary that uproot writes (see data/README.md); events are
    numbered from ``first`` (``first_event``)."""
    import awkward as ak

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.asarray([x for r in results for x in getattr(r, name)], dtype=dtype)

    n_jets, n_cands = cat("n_jets", np.int64), cat("n_cands", np.int64)
    n_ev = len(n_jets)
    lumi = np.concatenate([np.full(len(r.n_jets), r.chunk_index + 1, np.uint32) for r in results])
    fatjet = ak.zip({
        "pt": ak.unflatten(cat("jet_pt", np.float32), n_jets),
        "eta": ak.unflatten(cat("jet_eta", np.float32), n_jets),
        "phi": ak.unflatten(cat("jet_phi", np.float32), n_jets),
        "mass": ak.unflatten(cat("jet_mass", np.float32), n_jets),
        "nConstituents": ak.unflatten(cat("jet_ncon", np.int32), n_jets),
    })
    cands = ak.zip({
        "pt": ak.unflatten(cat("cand_pt", np.float32), n_cands),
        "eta": ak.unflatten(cat("cand_eta", np.float32), n_cands),
        "phi": ak.unflatten(cat("cand_phi", np.float32), n_cands),
    })
    return {
        "run": np.full(n_ev, run, np.uint32),
        "luminosityBlock": lumi,
        "event": np.arange(first, first + n_ev, dtype=np.uint64),
        "processId": np.full(n_ev, process_id, np.int32),
        "genWeight": cat("weight", np.float32),
        "Generator_binvar": cat("pthat", np.float32),
        "mjj": cat("mjj", np.float32),
        "FatJet": fatjet,
        "FatJetPFCand": cands,
    }


def write_root(path: Path, branches: dict[str, Any]) -> None:
    """Write the ``Events`` tree to a temporary name, then rename, so a crash leaves no half file."""
    import uproot

    from hltrun.modules.rootio import write_nanoaod

    # mktree + extend writes a TTree (assignment would write an RNTuple in uproot >= 5.7); records
    # become a counter "n<Name>" and branches "<Name>_<field>", as in NanoAOD.
    with writing(path, "generate_events") as staged:
        with uproot.recreate(staged.open(), compression=uproot.LZMA(9)) as fout:
            write_nanoaod(fout, "Events", branches)


def _ignore_ctrl_c() -> None:
    """A worker's SIGINT ignored: Ctrl-C reaches the whole process group, and every worker printed its own
    KeyboardInterrupt traceback; the main process stops (``main``), and leaving the pool ends the workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def generate(cfg: dict[str, Any], process: str, n_events: int, workers: int, out: Path,
             progress: bool = True, first: int = 1) -> dict[str, float]:
    """Generate one process into ``out``, events numbered from ``first``; returns timing numbers for the log."""
    from tqdm import tqdm

    tasks = build_tasks(cfg, process, n_events)
    t0 = time.perf_counter()
    results: list[ChunkResult] = []
    bar = tqdm(total=n_events, desc=process, unit="ev", disable=not progress, file=sys.stderr)
    if workers <= 1:
        for task in tasks:
            results.append(run_chunk(task))
            bar.update(task.n_events)
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_ignore_ctrl_c) as pool:
            for res in pool.imap(run_chunk, tasks):
                results.append(res)
                bar.update(len(res.n_jets))
    bar.close()
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: r.chunk_index)
    process_id = int(cfg["processes"][process]["id"])
    # one run number per process: samples merged in one job never share a (run, lumi, event) id
    branches = to_arrays(results, process_id, int(cfg.get("run", 1)) + process_id, first)
    write_root(out, branches)
    cpu = sum(r.seconds for r in results)
    tried = sum(r.n_tried for r in results)
    return {"events": n_events, "tried": tried, "efficiency": n_events / max(tried, 1),
            "wall_s": wall, "cpu_ms_per_event": 1e3 * cpu / n_events,
            "cpu_ms_per_generated_event": 1e3 * cpu / max(tried, 1),
            "size_MB": out.stat().st_size / 1e6}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        description="Generate PYTHIA 8 events at 13 TeV, cluster anti-kT R=0.8 jets with FastJet and "
                    "write a NanoAOD-like ROOT file (tree 'Events'; layout in data/README.md).")
    p.add_argument("--process", required=True,
                   help="process name from the config (tools/physics/generation.yaml): qcd, qcd_flat, rsg_ww_1p5TeV, rsg_ww_3p5TeV, "
                        "zprime_tt_2TeV, wprime_wz_3TeV")
    p.add_argument("--events", type=int, default=1000,
                   help="number of ACCEPTED events (>= 2 jets with pT > 200 GeV, |eta| < 2.5) to write")
    p.add_argument("--out", type=Path, default=None,
                   help="output ROOT file (default: the process's 'output' entry in the config)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                   help="worker processes; the output does not depend on this number")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="YAML file with seeds and generator settings (default: tools/physics/generation.yaml)")
    p.add_argument("--seed", type=int, default=None,
                   help="override the base seed of the config. Chunk k (250 events) uses seed + the process's "
                        "offset + k, so two samples of one process share events unless their seeds differ by at "
                        "least the number of chunks (--seed 70000001 is --seed 70000000's sample shifted by one chunk)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """The arguments' own errors, one line and exit 2 (``catalogue.usage_error``), before Pythia starts:
    they were ``SystemExit("msg")`` (exit 1) or a KeyError / FileNotFoundError traceback."""
    if args.events < 1:
        usage_error(PROG, f"--events must be at least 1, got {args.events}")
    if args.workers < 1:
        usage_error(PROG, f"--workers must be at least 1, got {args.workers}")
    require_files(PROG, config=args.config)


def check_seeds(cfg: dict[str, Any], process: str, n_events: int) -> None:
    """Every chunk's seed inside Pythia's range, one line and exit 2 before Pythia starts. Why here: the
    range is the base seed's plus the process's offset plus the chunk count, so ``--seed 900000000`` is fine
    for ``qcd`` and out of range for ``rsg_ww_3p5TeV``; ``build_tasks`` found it as a ValueError traceback."""
    offset = int(cfg["processes"][process].get("seed_offset", 0))
    chunks = math.ceil(n_events / int(cfg.get("chunk_size", 250)))
    high = MAX_SEED - offset - (chunks - 1)
    seed = int(cfg["seed"])
    if not 1 <= seed <= high:
        usage_error(PROG, f"--seed {seed}: {process} ({chunks} chunks, seed offset {offset}) needs a seed from 1 "
                          f"to {high}: chunk k uses seed + offset + k, and Pythia's seeds are 1 to {MAX_SEED}")


def missing_generator() -> str | None:
    """The line for a generator package that is not installed (looked up, not imported: the workers
    import it), before the progress bar starts; it was a ModuleNotFoundError traceback from the first chunk."""
    import importlib.util

    from hltrun.framework.extras import install_hint

    for module in ("pythia8mc", "fastjet"):
        if importlib.util.find_spec(module) is None:
            return f"{PROG} needs {module}, which is not installed: {install_hint(module)}"
    return None


def unwritable(out: Path) -> str | None:
    """``--out`` by hltrun's destination policy, before minutes of generation rather than after."""
    from hltrun.framework.destinations import check_file_destination
    from hltrun.framework.errors import ModuleError

    try:
        check_file_destination(out, f"{PROG} --out")
    except ModuleError as exc:
        return str(exc)
    return None


@entry_point("generate_events")
def main(argv: list[str] | None = None) -> int:
    """Entry point: generate one process and print the timing summary."""
    args = parse_args(argv)
    check_args(args)
    cfg = load_config(args.config)
    if args.process not in cfg["processes"]:
        usage_error(PROG, f"--process: unknown process {args.process!r} in {args.config}; choose from "
                          f"{', '.join(sorted(cfg['processes']))}")
    if args.seed is not None:
        cfg["seed"] = args.seed
    check_seeds(cfg, args.process, args.events)
    first = first_event(cfg, args.process, args.events)
    out = args.out or REPO / cfg["processes"][args.process]["output"]
    refused = unwritable(Path(out)) or missing_generator()
    if refused:
        print(refused, file=sys.stderr)
        return 4
    try:
        stats = generate(cfg, args.process, args.events, args.workers, Path(out), not args.no_progress, first)
    except KeyboardInterrupt:  # was a traceback from inside Pythia's or FastJet's loop; the output is written whole or not at all
        print(f"{PROG}: interrupted by the user (Ctrl-C); nothing written", file=sys.stderr)
        return 130
    print(f"{args.process}: wrote {stats['events']} events to {out} ({stats['size_MB']:.2f} MB); "
          f"selection efficiency {stats['efficiency']:.3f}; "
          f"{stats['cpu_ms_per_generated_event']:.1f} ms per generated event, "
          f"{stats['cpu_ms_per_event']:.1f} ms per accepted event (one core); wall {stats['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
