"""ROOT jet source: reads jets and their constituents with uproot, one chunk at a time.

Three on-disk layouts are understood (branch names always come from the configuration):

* ``counts``    - NanoAOD-like: a jet collection with a per-jet constituent count
  (``FatJet_nConstituents``) and a flat per-event constituent list, jet by jet;
* ``jet_index`` - PFNano-like: a flat constituent list with a per-constituent jet index
  (``FatJetPFCands_jetIdx``; -1: in no jet, skipped), optionally indirect through a candidate index
  (``FatJetPFCands_pFCandsIdx`` into ``PFCands_*``);
* ``nested``    - doubly-jagged per-jet constituent branches (``vector<vector<float>>``).

Each chunk is converted once, with numpy, into padded (n_jets, C, 3) arrays; events receive cheap
``JetCollection`` views into them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Iterator, Literal

import awkward as ak
import numpy as np

from hltrun.framework.context import SourceContext
from hltrun.framework.errors import ConfigError, FileOpenError, SourceError, one_line
from hltrun.framework.event import ID_MAX, EventID
from hltrun.framework.module import Source
from hltrun.framework.ranges import Selection
from hltrun.framework.schema import limited

from . import decompression
from .decompression import DECOMPRESSION_THREADS, TimedPool, threads_for
from .duplicates import DuplicateChecker, Mode, keys
from .jets import (InputSpec, ModelInputs, build_inputs, pad_constituents, requested_specs, select_jets,
                   to_jet_relative, truncated_per_event)
from .products import JetCollection
from .read_ahead import ReadAhead
from hltrun.framework.resources import glob_files, unreadable_reason

log = logging.getLogger("hltrun")
MISSING_FEATURE = "neither a derived feature nor a branch"  # a declared feature's branch absent from a file
READ_AHEAD_THREADS = "hltrun-read-ahead-"  # the read-ahead thread's name prefix (then the file's name)
WEIGHT = "weight"  # the source's product instance holding the event weight (files with a weight branch)
# NanoAOD's "no link": a jet index of -1 (a candidate in no jet). Skipped and counted as ``links_to_no_jet``
# in the source's accounting, not as an invalid link: it is a legitimate value, and a data-quality
# counter every PFNano file raised would hide the links that really point nowhere
NO_JET = -1


@dataclass
class JetBranches:
    """Branch names. Event-id branches may be ``null``: ids are then (1, 1, entry number + 1)."""

    run: str | None = "run"
    luminosityBlock: str | None = "luminosityBlock"
    event: str | None = "event"
    jet_pt: str = "FatJet_pt"
    jet_eta: str = "FatJet_eta"
    jet_phi: str = "FatJet_phi"
    jet_mass: str | None = "FatJet_mass"
    jet_n_constituents: str = "FatJet_nConstituents"  # layout: counts
    cand_pt: str = "FatJetPFCand_pt"
    cand_eta: str = "FatJetPFCand_eta"
    cand_phi: str = "FatJetPFCand_phi"
    cand_jet_index: str = "FatJetPFCands_jetIdx"  # layout: jet_index
    cand_index: str | None = None  # layout: jet_index, indirection into the cand_* collection
    # per-event weight (NanoAOD's generator weight), read from the files that have it (others: 1);
    # put as the source's ``weight`` product: the TriggerRates service weights the rates by it
    weight: str | None = "genWeight"


@dataclass
class RootJetSourceParameters:
    files: list[str]
    tree: str = "Events"
    layout: Literal["counts", "jet_index", "nested"] = "counts"
    branches: JetBranches = field(default_factory=JetBranches)
    chunk_size: int = limited(10_000, 1, 1_000_000)  # entries read and converted at once
    max_constituents: int = limited(100, 1, 10_000)
    # the same file twice is a mistake unless asked for (e.g. a memory benchmark reading it in a loop)
    allowDuplicateFiles: bool = False
    duplicateCheckMode: Mode = "checkAllFilesOpened"  # CMSSW's: checkEachFile, noDuplicateCheck
    skipBadFiles: bool = False  # CMSSW's: a file that cannot be read is named, counted and skipped
    # threads that decompress the branches' baskets in parallel (uproot's decompression_executor;
    # LZMA/ZSTD/ZLIB/LZ4 release the GIL): null = min(4, branches read) on 2 cores or more (serial on
    # one; modules/decompression.py says why more threads than cores), 0 or 1 = serial
    decompression_threads: int | None = limited(None, 0, 64, "null: auto, 0 or 1: serial")
    # chunks read, decompressed and converted ahead in a background thread while the streams process
    # the current one; 0 (default): each chunk is read in the pull. Off by default: the reader's
    # allocations land in the RSS deltas of whichever module runs meanwhile (MemoryReport per module).
    # Off (with a warning) where the process may run on one core only: the reader would preempt the
    # streams and its read would land in the events' real time
    read_ahead: int = limited(0, 0, 16, "chunks; 0: off")
    # PoolSource's selections (framework/ranges.py: CMSSW's syntax): events outside them are not
    # handed to the path, and counted as "not selected"; maxEvents counts selected events, skipEvents
    # entries (before the selection). PoolSource has no firstEvent (EmptySource's renumbering): none here
    lumisToProcess: list[str] = field(default_factory=list)  # e.g. ["1:1-1:5", "2:3-2:max"]
    eventsToProcess: list[str] = field(default_factory=list)  # e.g. ["1:5:100-1:7:max", "2:1-2:500"]

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("files: give at least one ROOT file (globs allowed)")
        Selection.parse(self.lumisToProcess, self.eventsToProcess)  # a malformed range: one line naming it


class _Chunk:
    """One chunk converted to flat numpy arrays; ``event(i)`` returns views only.

    Jets are sorted (decreasing pT within each event) at once; constituents stay flat as read. What
    consumers declared (``InputSpec``) is prepared eagerly for the selected jets only; the fully
    padded ``constituents``/``relative`` arrays of every jet are built the first time anyone asks.
    """

    __slots__ = ("jet_offsets", "pt", "eta", "phi", "mass", "ncons", "ids", "keys", "id_arrays", "_flat", "_order",
                 "_max_constituents", "_inputs", "_padded", "_lock", "jet_branches", "cand_branches", "weights")

    def __init__(self, jet_offsets, pt, eta, phi, mass, ncons, ids, keys, flat, order, max_constituents,
                 jet_branches=None, cand_branches=None) -> None:
        self.jet_offsets = jet_offsets
        self.pt, self.eta, self.phi, self.mass = pt, eta, phi, mass
        self.ncons = ncons
        self.ids = ids
        self.keys = keys  # (run, lumi, event) as sortable keys for the duplicate check; None: no ids
        self.id_arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # run, lumi, event (the source's)
        self._flat = flat  # (jet_of_cand, eta, phi, pt) of the constituents, jets numbered as read
        self._order = order  # sorted jet -> jet as read
        self._max_constituents = max_constituents
        self._inputs: dict[InputSpec, ModelInputs] = {}
        self._padded: dict[bool, np.ndarray] = {}
        self._lock = threading.Lock()
        # the extra branches the consumers' input contracts read: per jet (sorted like ``pt``), and per
        # constituent (flat, aligned with ``_flat``)
        self.jet_branches: dict[str, np.ndarray] = jet_branches or {}
        self.cand_branches: dict[str, np.ndarray] = cand_branches or {}
        self.weights: list[float] | None = None  # per event, when the file has the weight branch

    def prepare(self, spec: InputSpec) -> ModelInputs:
        """The model inputs ``spec`` selects, for every event of the chunk (cached)."""
        got = self._inputs.get(spec)
        if got is not None:
            return got
        with self._lock:
            if spec not in self._inputs:
                rows, offsets = select_jets(self.jet_offsets, self.pt, self.ncons, spec)
                jet_of_cand, ceta, cphi, cpt = self._flat
                per_jet = {"pt": self.pt, "mass": self.mass, "ncons": self.ncons, **self.jet_branches}
                inputs, mask = build_inputs(self._order[rows], jet_of_cand, len(self._order), ceta, cphi, cpt,
                                            self.eta[rows], self.phi[rows], self._max_constituents, spec,
                                            lambda name: per_jet[name][rows], self.cand_branches.__getitem__)
                truncated = truncated_per_event(self.ncons[rows], offsets, min(self._max_constituents, spec.width)) \
                    if spec.width else None  # jet-level inputs only: no constituent is left out
                self._inputs[spec] = ModelInputs(inputs, mask, self.pt[rows], offsets, truncated)
            return self._inputs[spec]

    def model_input(self, spec: InputSpec, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.prepare(spec).event(i)

    def padded(self, i: int, relative: bool) -> np.ndarray:
        """Event ``i``'s jets padded to ``max_constituents`` (absolute or jet-relative); the chunk's
        arrays are built on the first call (the straightforward full conversion)."""
        if relative not in self._padded:
            with self._lock:
                if False not in self._padded:
                    jet_of_cand, ceta, cphi, cpt = self._flat
                    padded, _ = pad_constituents(jet_of_cand, ceta, cphi, cpt, len(self._order), self._max_constituents)
                    padded = padded[self._order]
                    padded.flags.writeable = False  # events get views: nobody may write
                    self._padded[False] = padded
                if relative and True not in self._padded:
                    rel = to_jet_relative(self._padded[False], self.eta, self.phi)
                    rel.flags.writeable = False
                    self._padded[True] = rel
        a, b = self.jet_offsets[i], self.jet_offsets[i + 1]
        return self._padded[relative][a:b]

    def jet_slice(self, name: str, i: int) -> np.ndarray:
        """Event ``i``'s part of the per-jet array ``name`` (pt, eta, phi, mass, ncons): a view."""
        return getattr(self, name)[self.jet_offsets[i]:self.jet_offsets[i + 1]]

    def event(self, i: int) -> JetCollection:
        return JetCollection.view(self, i)


def make_chunk(jet_offsets: np.ndarray, jet_pt: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray,
               jet_mass: np.ndarray, flat: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ids: Any, keys: Any,
               max_constituents: int, specs: Any = (), jet_branches: dict[str, np.ndarray] | None = None,
               cand_branches: dict[str, np.ndarray] | None = None) -> _Chunk:
    """A chunk from flat per-jet arrays (events' jets contiguous, in file order) and the flat
    constituents ``(jet_of_cand, eta, phi, pt)``, with the extra per-jet and per-constituent branches
    the input contracts read; the inputs of ``specs`` are prepared now."""
    ncons = np.bincount(flat[0], minlength=len(jet_pt)).astype(np.int32)
    # jets in decreasing pT within each event (NanoAOD already is; other ntuples may not be)
    event_of_jet = np.repeat(np.arange(len(jet_offsets) - 1), np.diff(jet_offsets))
    order = np.lexsort((-jet_pt, event_of_jet))
    chunk = _Chunk(jet_offsets, jet_pt[order], jet_eta[order], jet_phi[order], jet_mass[order], ncons[order],
                   ids, keys, flat, order, max_constituents,
                   {name: values[order] for name, values in (jet_branches or {}).items()}, cand_branches)
    for spec in specs:  # what the path reads, prepared with the chunk (bulk work, not per event)
        chunk.prepare(spec)
    return chunk


class RootJetSource(Source):
    """Jets from one or more ROOT files (see the module docstring for the layouts)."""

    Parameters = RootJetSourceParameters
    produces = {"": JetCollection}
    # what the decompression pool and the read-ahead thread allocate is the source's (memray attribution)
    helper_threads = (DECOMPRESSION_THREADS, READ_AHEAD_THREADS)

    def __init__(self, label: str, params: RootJetSourceParameters) -> None:
        super().__init__(label, params)
        self.files: list[str] = []
        self.entries: dict[str, int] = {}
        self._count = {"files": 0, "entries_in_files": 0, "skipped": 0, "read": 0, "chunks": 0,
                       "duplicates": 0, "bad_files": 0, "bad_entries": 0, "invalid_links": 0,
                       "links_to_no_jet": 0, "zero_constituent_jets": 0, "nonfinite_pt_jets": 0,
                       # CPU of the decompression threads and of the read-ahead thread (in the bulk I/O's CPU)
                       "decompression_cpu_ns": 0, "read_ahead_cpu_ns": 0,
                       "not_selected": 0,  # read, outside lumisToProcess / eventsToProcess
                       # whole files the file check read at begin_job and kept for the loop: their entries,
                       # the entries the loop went through, and the check's decompression-thread CPU for them
                       # (a short job charges its events only the share of that read it used)
                       "kept_entries": 0, "kept_entries_used": 0, "kept_decompression_cpu_ns": 0}
        self._selection = Selection.parse(params.lumisToProcess, params.eventsToProcess)
        self.bad_files: list[str] = []  # "path: what was skipped (reason)", for the reports
        self._bad_entries: dict[str, int] = {}  # bad file -> entries skipped in it (0: skipped whole at begin_job)
        self._files_read: dict[str, int] = {}  # events handed out per input file (FrameworkJobReport's EventsRead)
        self._lumis_read: dict[str, dict[str, int]] = {}  # file -> "run:lumi" -> events handed out (its <Runs>)
        self._duplicates = DuplicateChecker(params.duplicateCheckMode)
        self._named_duplicates = 0
        self._requests: set[Any] = set()  # what consumers requested (SourceContext.requests)
        # branches the consumers' input contracts read beyond the jet kinematics: per jet, per constituent
        self._extra_jet: tuple[str, ...] = ()
        self._extra_cand: tuple[str, ...] = ()
        self._weighted: bool | str | None = None  # whether the first file has the weight branch; "mixed": said
        self._ctx = SourceContext(label)
        # files the check read whole (one basket per branch holds the file, so reading 50 entries
        # decompressed it all anyway), up to _KEEP_BYTES in all: the loop reads them from here
        self._kept: dict[str, ak.Array] = {}
        self._kept_bytes = 0
        self._keep = True
        self._deferred: set[str] = set()  # files the job cannot need (past maxEvents): checked if reached
        self._read_ahead = _read_ahead_depth(params.read_ahead)
        self._abandoned: list[ReadAhead] = []  # readers left at an early stop: their late CPU is counted
        self._count_lock = threading.Lock()  # a reader left behind counts its dropped chunks from its thread

    # -- setup ---------------------------------------------------------------------------------

    def _branch_names(self) -> list[str]:
        b, layout = self.params.branches, self.params.layout
        names = [b.jet_pt, b.jet_eta, b.jet_phi, b.cand_pt, b.cand_eta, b.cand_phi]
        names += [n for n in (b.run, b.luminosityBlock, b.event, b.jet_mass) if n]
        if layout == "counts":
            names.append(b.jet_n_constituents)
        elif layout == "jet_index":
            names += [b.cand_jet_index] + ([b.cand_index] if b.cand_index else [])
        return list(dict.fromkeys(names + [*self._extra_jet, *self._extra_cand]))

    def begin_job(self, ctx: SourceContext | None = None) -> None:
        """Expand globs, refuse a file listed twice, and open and check every file (tree, branches,
        layout, first and last entries) before the first event, so that a bad file among good ones
        fails (or, with ``skipBadFiles``, is skipped) now, not hours into the job. ``ctx`` None: a
        source used on its own (every entry, no consumer requests)."""
        ctx = ctx if ctx is not None else SourceContext(self.label)
        self._ctx = ctx
        self._requests = ctx.requests()  # live: filled by the modules' begin_job, read at each chunk
        self._open_inputs(ctx.entries_needed, keep=not ctx.units)  # a Dask worker reads only some files

    def consumers_known(self) -> None:
        """The extra branches the consumers' input contracts read (a charge, a PUPPI weight, a jet's
        tau21) must exist in every file, in the collection they belong to: checked now, before the
        first event, with the line ``_check_tree`` gives a missing branch; files begin_job kept whole
        get those branches read now."""
        jet, cand = set(), set()
        for spec in requested_specs(self._requests):
            jet.update(spec.inputs.jet_branches())
            cand.update(spec.inputs.constituent_branches())
        self._extra_jet, self._extra_cand = tuple(sorted(jet)), tuple(sorted(cand))  # a kinematic one is read once
        extra = [*self._extra_jet, *self._extra_cand]
        if not extra:
            return
        bad: dict[str, str] = {}  # file -> why it cannot give the declared inputs
        checked = 0
        with self.bulk_io():
            for path in self.files:
                real = os.path.realpath(path)
                if real in self._deferred:
                    continue  # checked, with these branches, when the job reaches it
                checked += 1
                tree = self._open_tree(path)
                try:
                    self._missing(tree, extra, path)
                    try:
                        arrays = _columns(tree, tree.arrays(extra, entry_stop=min(50, int(tree.num_entries)),
                                                            library="ak"), extra)
                        self._check_layout(arrays, path, only=extra, reference=self._kept.get(real))
                        if real in self._kept:
                            whole = _columns(tree, tree.arrays(extra, library="ak"), extra)
                            kept = self._kept[real]
                            for name in extra:
                                kept[name] = whole[name]
                    except SourceError:
                        raise
                    except Exception as exc:
                        raise SourceError(f"source: cannot read the declared inputs' branches {extra} of {path}: "
                                          f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}") from exc
                except SourceError as exc:
                    bad[path] = str(exc)
                finally:
                    tree.file.close()
        if not bad:
            return
        if len(bad) == checked and all(MISSING_FEATURE in why for why in bad.values()):  # no file has it
            raise ConfigError(next(iter(bad.values())).replace("source: ", "", 1) + "; no input file has it: fix "
                              "the feature name (derived features and branches: docs/your-model.md)")
        if not self.params.skipBadFiles:
            raise SourceError(next(iter(bad.values())))
        for path, why in bad.items():  # as begin_job skips a bad file: named, counted, not read
            self._skip_bad_file(path, why)
            self._kept.pop(os.path.realpath(path), None)
            self.entries.pop(path, None)
        self.files = [f for f in self.files if f not in bad]
        self._count["files"] = len(self.files)
        self._count["entries_in_files"] = sum(self.entries.get(f, 0) for f in self.files)

    @classmethod
    def plan_inputs(cls, params: RootJetSourceParameters, entries_needed: int | None) -> list[tuple[str, int]]:
        """The files and their entries, checked as begin_job checks them (bad ones skipped or refused),
        without keeping any array: what the Dask client splits into work units."""
        if entries_needed is not None and (params.lumisToProcess or params.eventsToProcess):
            # units are entry ranges planned before any event is read: which entries hold the first
            # maxEvents selected events is unknown there (a local run reads on until it has them)
            raise NotImplementedError("source.lumisToProcess / eventsToProcess with options.maxEvents: "
                                      "units are planned by entries; use maxEvents: -1 or a local run")
        source = cls("source", params)
        try:
            source._open_inputs(entries_needed, keep=False)
            return source.inputs()
        finally:
            source.end_job()

    def _open_inputs(self, needed: int | None, keep: bool) -> None:
        """begin_job's work: ``needed`` entries (None: all) are checked, files past them only counted."""
        self._keep = keep
        listed: dict[str, str] = {}
        for pattern in self.params.files:
            matches = glob_files(pattern, "source: input file")
            if not matches:
                raise SourceError(f"source: no file matches {pattern!r}")
            for path in matches:
                real = os.path.realpath(path)
                if real in listed and not self.params.allowDuplicateFiles:
                    raise ConfigError(f"source.files: {path} is listed twice (also as {listed[real]}); "
                                      f"set source.allowDuplicateFiles: true to read it again")
                listed.setdefault(real, path)
                self.files.append(path)
        good = []
        checked: dict[str, int] = {}  # a file read again on purpose (allowDuplicateFiles) is checked once
        for path in self.files:
            try:
                real = os.path.realpath(path)
                if needed is not None and needed <= 0 and real not in checked:
                    self.entries[path] = self._count_entries(path)  # past what the job reads: open only
                    self._deferred.add(real)
                    good.append(path)
                    continue
                if real not in checked:
                    checked[real] = self._check_file(path, keep=self._keep)
                self.entries[path] = checked[real]
                if needed is not None:
                    needed -= checked[real]
            except SourceError as exc:
                if not self.params.skipBadFiles:
                    raise
                self._skip_bad_file(path, str(exc))
                continue
            good.append(path)
        self.files = good
        self._count["files"] = len(self.files)
        self._count["entries_in_files"] = sum(self.entries.values())
        log.debug("source: %d file(s), %d entries", len(self.files), self._count["entries_in_files"])

    def _skip_bad_file(self, path: str, reason: str, skipped: tuple[int, int] | None = None, used: int = 0) -> None:
        """Count and name a bad file (``skipBadFiles``). ``skipped``: the entries given up, when the
        file failed while being read; ``used``: the events of it read (and processed) before that."""
        if skipped is None:
            what = "whole file skipped"
        else:
            what = f"entries {skipped[0]}-{skipped[1]} skipped, {used} event(s) of it read before them"
            self._count["bad_entries"] += skipped[1] - skipped[0]
        self._bad_entries[path] = self._bad_entries.get(path, 0) + (skipped[1] - skipped[0] if skipped else 0)
        self.bad_files.append(f"{path}: {what} ({reason})")
        self._count["bad_files"] += 1
        log.warning("source: bad file (skipBadFiles): %s: %s (%s)", path, what, reason)

    def _count_entries(self, path: str) -> int:
        tree = self._open_tree(path)
        try:
            return int(tree.num_entries)
        finally:
            tree.file.close()

    def _check_file(self, path: str, keep: bool = False) -> int:
        """Open ``path``, check its tree, branches and layout, and read its first and last entries
        (``keep``: keep the arrays when that read the whole file anyway, for the loop's first chunks)."""
        tree = self._open_tree(path)
        pool, failed = self._pool(), True
        try:
            n = self._check_tree(tree, path, keep, pool)
            failed = False
            return n
        finally:
            if pool is not None:
                pool.close(failed)
            tree.file.close()  # no open file (and its memory map) per input until the loop reaches it

    def _pool(self) -> TimedPool | None:
        """A decompression pool for one file's reads (``decompression_threads``); None: serial.
        One per file, closed with it: no thread outlives a read, whatever happens to the job."""
        threads = threads_for(self.params.decompression_threads, len(self._branch_names()))
        return TimedPool(threads) if threads > 1 else None

    @contextlib.contextmanager
    def _pool_cpu(self, pool: TimedPool | None) -> Iterator[None]:
        """Count the decompression threads' CPU during the block (after a failure, what they did so
        far) in ``decompression_cpu_ns``: the file check's head and tail reads are background CPU too."""
        if pool is None:
            yield
            return
        before = pool.cpu_ns
        try:
            yield
            pool.settle()  # the tasks' last microseconds (and their CPU count), inside the block
        finally:
            with self._count_lock:
                self._count["decompression_cpu_ns"] += pool.cpu_ns - before

    @contextlib.contextmanager
    def _bulk(self, pool: TimedPool | None) -> Iterator[None]:
        """``bulk_io`` that also counts the decompression threads' CPU during the block (after a
        failure, what they did so far) in ``decompression_cpu_ns``. It stays out of ``bulk_pending``:
        that CPU is the pulling thread's own, taken out of its event's CPU; the Timing service reports
        the background CPU beside it (``source_bulk.background_cpu_ms``)."""
        with self.bulk_io(), self._pool_cpu(pool):
            yield

    def _missing(self, tree: Any, names: list[str], path: str) -> None:
        """One line naming the branches ``tree`` lacks (and the nearest names it has)."""
        missing = [n for n in names if n not in tree]
        if missing:
            import difflib

            known = _value_branches(tree.keys())
            b = self.params.branches
            cand_roles = {b.cand_pt, b.cand_eta, b.cand_phi, b.cand_jet_index, b.cand_index}
            linked = _linked_layout(known, b.jet_pt) if set(missing) & cand_roles else ""
            # standard NanoAOD keeps no constituents: the nearest name of a constituent branch is then the
            # jet's own (FatJet_pt for FatJetPFCand_pt), which sends the user the wrong way
            no_cands = not linked and bool(set(missing) & cand_roles) and not any("PFCand" in n for n in known)
            hints = [f"{m!r}" + (f" (did you mean {difflib.get_close_matches(m, known, n=1)[0]!r}?)"
                                 if not linked and not (no_cands and m in cand_roles)
                                 and difflib.get_close_matches(m, known, n=1) else "") for m in missing]
            if set(missing) <= {*self._extra_jet, *self._extra_cand}:  # a bad file, or (in every file) a bad feature
                raise SourceError(f"source: inputs: feature {', '.join(hints)} of a model's declared inputs is "
                                  f"{MISSING_FEATURE} of tree '{self.params.tree}' in {path}")
            process = _written_by_hltrun(path)
            if process is not None:  # a second job on the first's output: no name can fix it
                raise SourceError(f"source: {path} is an hltrun output (process '{process}': run, lumi and event "
                                  f"numbers, HLT_* bits and kept products, not the jets' constituents); give hltrun "
                                  f"the files that job read")
            edm = _edm_product(tree.keys())
            if edm is not None:  # no branch name can fix this: say what the file is and what to do
                raise SourceError(f"source: {path} is a CMSSW EDM file (MiniAOD/AOD/RECO: tree "
                                  f"'{self.params.tree}' holds C++ objects such as '{edm}'), which hltrun cannot read "
                                  f"column by column; make NanoAOD from it first (PFNano, or NanoAOD with jet "
                                  f"constituents, for a constituent-based model) and give hltrun that file")
            if no_cands:
                raise SourceError(f"source: branch {', '.join(hints)} not found in tree '{self.params.tree}' of {path}: "
                                  f"the file holds no jet constituents (no '*PFCand*' branch); NanoAOD keeps them only "
                                  f"with PFNano or a constituent table: give hltrun such a file, or set "
                                  f"source.branches.* to your names")
            raise SourceError(f"source: branch {', '.join(hints)} not found in tree "
                              f"'{self.params.tree}' of {path} (" + (linked or "set source.branches.* to your names")
                              + ")")

    def _read_names(self, tree: Any, path: str) -> list[str]:
        """The branches read from this file: the configured ones, and the weight where it has one."""
        weight = self.params.branches.weight
        has = bool(weight) and weight in tree
        if weight and isinstance(self._weighted, bool) and has != self._weighted:
            self._weighted = "mixed"  # said once
            log.warning("source: %s %s a '%s' branch and an earlier file %s: its events count 1 each beside "
                        "weighted ones (rates mix the samples; set source.branches.weight: null to count every "
                        "event 1)", path, "has" if has else "lacks", weight, "did not" if has else "did",
                        extra={"once": True})
        self._weighted = has if self._weighted is None else self._weighted
        return [*self._branch_names(), weight] if has else self._branch_names()

    def _check_tree(self, tree: Any, path: str, keep: bool = False, pool: TimedPool | None = None) -> int:
        self._missing(tree, self._branch_names(), path)
        if self.params.layout == "jet_index":
            _refuse_foreign_links(tree.keys(), self.params.branches, path)
        n = int(tree.num_entries)
        if n == 0:
            return 0
        head = min(n, 50)
        names = self._read_names(tree, path)
        # the last entry of a branch whose first basket holds every entry was decompressed with the
        # head already: reading it again would decompress the whole basket a second time
        tail = [name for name in names if _first_basket_end(tree[name]) < n]
        size = sum(tree[name].uncompressed_bytes for name in names) if keep and not tail else 0
        whole = keep and not tail and self._kept_bytes + size <= _KEEP_BYTES
        if whole:  # one basket per branch: the head read decompresses the whole file, keep it all
            head = n
        for start, stop, branches in ((0, head, names), (max(head, n - 1), n, tail)):
            if start >= stop or not branches:
                continue
            cpu_before = self._count["decompression_cpu_ns"]
            try:  # a whole file kept for the loop is the loop's read done early: bulk I/O
                with self._bulk(pool) if whole and start == 0 else self._pool_cpu(pool):
                    arrays = _columns(tree, tree.arrays(branches, entry_start=start, entry_stop=stop, library="ak",
                                                        decompression_executor=pool), branches)
            except Exception as exc:
                raise SourceError(f"source: cannot read entries {start}-{stop} of {path}: {type(exc).__name__}: "
                                  f"{one_line(exc, 'corrupt data')}") from exc
            self._id_columns(arrays, path, start)  # ids and weight: every entry read here (vectorised)
            weight = self.params.branches.weight
            if weight and weight in arrays.fields:
                _one_per_event(arrays[weight], weight, "weight", "source.branches.weight", path)
            if start == 0:
                self._check_layout(arrays[:50], path)
                if whole:
                    self._kept[os.path.realpath(path)] = arrays
                    self._kept_bytes += size
                    with self._count_lock:
                        self._count["kept_entries"] += n
                        self._count["kept_decompression_cpu_ns"] += self._count["decompression_cpu_ns"] - cpu_before
        return n

    def _check_layout(self, arrays: ak.Array, path: str, only: list[str] | None = None,
                      reference: ak.Array | None = None) -> None:
        """Branches that belong to one collection must have the same length in every event; a
        ``jet_index`` layout whose links index another collection needs ``cand_index``. ``only``: check
        just these (extra) branches against their collection's first branch, read from ``reference``
        or from the file again."""
        b, layout = self.params.branches, self.params.layout
        if only is not None:
            base = reference if reference is not None else self._head(path, [b.jet_pt, b.cand_pt], len(arrays))
            for name in only:
                ref = b.jet_pt if name in self._extra_jet else b.cand_pt
                kind = "jet" if ref == b.jet_pt else "constituent"
                got, want = arrays[name], base[ref][:len(arrays)]
                if got.ndim != want.ndim or not _same_counts(got, want):
                    raise SourceError(f"source: branch '{name}' (a {kind} feature of a model's declared inputs) is "
                                      f"not in the {kind} collection of '{ref}' in {path}: it differs in length")
            return
        if layout == "jet_index":  # first: a wrong setting, named as such before the lengths are compared
            self._check_links(arrays, path)
        _check_collections(arrays, self._collections(), path, 0)
        if layout == "counts":  # a file whose counts are wrong from the start fails before the job
            _constituents_per_jet(arrays, b, path, 0)

    def _collections(self) -> list[_Collection]:
        """This configuration's collections (``_collections``): the one list begin_job and every chunk check."""
        return _collections(self.params.branches, self.params.layout, self._extra_jet, self._extra_cand)

    def _check_links(self, arrays: ak.Array, path: str) -> None:
        """``jet_index``: the link branches are one collection, and one with the constituents unless
        ``cand_index`` says which constituent each link points to (ConfigError: the settings are wrong)."""
        b = self.params.branches
        links = np.asarray(ak.num(arrays[b.cand_jet_index], axis=1))
        if b.cand_index:
            if not np.array_equal(np.asarray(ak.num(arrays[b.cand_index], axis=1)), links):
                raise ConfigError(f"source.branches.cand_index: '{b.cand_index}' and '{b.cand_jet_index}' "
                                  f"differ in length in {path}: they must be fields of one link collection")
        elif not np.array_equal(np.asarray(ak.num(arrays[b.cand_pt], axis=1)), links):
            raise ConfigError(f"source.branches.cand_index: missing: '{b.cand_jet_index}' and '{b.cand_pt}' "
                              f"are different collections in {path} (layout jet_index with indirection); "
                              f"set source.branches.cand_index to the link branch indexing '{b.cand_pt}'")

    def _head(self, path: str, names: list[str], n: int) -> ak.Array:
        tree = self._open_tree(path)
        try:
            return _columns(tree, tree.arrays(names, entry_stop=n, library="ak"), names)
        finally:
            tree.file.close()

    def _open_tree(self, path: str):
        import uproot

        why = unreadable_reason(path, "input file")
        if why is not None:
            raise FileOpenError(f"source: {why}")
        try:
            handle = uproot.open(path)
        except Exception as exc:
            raise FileOpenError(f"source: cannot read {path} as a ROOT file ({type(exc).__name__}: "
                              f"{one_line(exc, 'corrupt header')})") from exc
        try:
            tree = handle[self.params.tree]
        except Exception as exc:
            if _has_key(handle, self.params.tree):  # there, but unreadable (a file cut short): say why
                kind = _classname(handle, self.params.tree)
                raise SourceError(f"source: cannot read {kind} '{self.params.tree}' of {path}: "
                                  f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}") from exc
            names = ", ".join(k.split(";")[0] for k in handle.keys(recursive=False)) or "none"
            raise SourceError(f"source: no tree '{self.params.tree}' in {path} (objects: {names})"
                              f"{_tree_elsewhere(handle, self.params.tree)}") from None
        if not hasattr(tree, "num_entries"):
            kind = _classname(handle, self.params.tree, type(tree).__name__)
            raise SourceError(f"source: '{self.params.tree}' in {path} is a {kind}, not a TTree"
                              f"{_tree_elsewhere(handle, self.params.tree)}")
        return tree

    # -- event iteration -----------------------------------------------------------------------

    def events(self, skip: int, limit: int | None) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """Yield (EventID, {"": JetCollection}) reading only the entries that will be used;
        duplicate event ids (``duplicateCheckMode``) are skipped and counted."""
        to_skip, left = skip, limit
        checking = self.params.duplicateCheckMode != "noDuplicateCheck"
        for path in self.files:
            n = self.entries[path]
            if to_skip >= n:
                self._kept.pop(os.path.realpath(path), None)
                to_skip -= n
                self._count["skipped"] += n
                continue
            start, to_skip = to_skip, 0
            self._count["skipped"] += start
            if left is not None and left <= 0:
                break
            # with duplicates or a selection, more entries than ``left`` may be needed: read on, stop early
            stop = n if left is None or checking or self._selection else min(n, start + left)
            self._duplicates.new_file()
            for item in self._range(path, start, stop, self._duplicates):
                yield item
                if left is not None:
                    left -= 1
                    if left <= 0:
                        return

    def end_job(self) -> None:
        self._kept.clear()  # files the job stopped before
        # readers left at an early stop end at their next hand-over (the chunk they are reading):
        # wait for that, so the CPU they spend is in the report, but never long (nor after a failure
        # or an interrupt, which must not hang on a read); one still running is named
        failed = self._ctx.job_failed()
        deadline = time.perf_counter() + _LATE_WAIT_S
        for ahead in self._abandoned:
            if failed or not ahead.join(max(0.0, deadline - time.perf_counter())):
                log.debug("source: a read-ahead thread was still reading at end_job: its last CPU is not counted")
        self._abandoned.clear()

    def inputs(self) -> list[tuple[str, int]]:
        return [(path, self.entries[path]) for path in self.files]

    def read_range(self, name: str, start: int, stop: int) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """One work unit. Duplicate ids are looked for within the unit only (a fresh checker each
        time): units run on different workers in any order, and a check across them would make the
        result depend on the scheduling. A unit that hits a bad file skips the rest of its range
        with ``skipBadFiles``, as ``events`` does for the rest of the file."""
        yield from self._range(name, start, stop, DuplicateChecker(self.params.duplicateCheckMode))

    def _range(self, path: str, start: int, stop: int, checker: DuplicateChecker
               ) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """Entries ``start``..``stop`` of ``path``: duplicates skipped and counted, every event
        yielded counted as ``read``; a read failure skips the rest of the range with skipBadFiles."""
        checking = self.params.duplicateCheckMode != "noDuplicateCheck"
        read_before = self._count["read"]
        lumis = self._lumis_read.setdefault(path, {})
        chunk, keep, selected, used = None, None, None, 0  # the chunk being handed out and how far: its lumis, counted per chunk
        from_kept, passed = os.path.realpath(path) in self._kept, 0  # entries gone through, of a file kept at begin_job
        try:
            for chunk in self._chunks(path, start, stop):
                keep = checker.first_seen(chunk.keys) if checking and chunk.keys is not None else None
                selected = self._selection.mask(*_id_arrays(chunk)) if self._selection else None
                used = 0
                for i in range(len(chunk.jet_offsets) - 1):
                    used = i + 1
                    if keep is not None and not keep[i]:
                        self._duplicate(chunk.ids[i], path)
                        continue
                    if selected is not None and not selected[i]:
                        self._count["not_selected"] += 1
                        continue
                    self._count["read"] += 1
                    yield chunk.ids[i], ({"": chunk.event(i)} if chunk.weights is None
                                         else {"": chunk.event(i), WEIGHT: chunk.weights[i]})
                _count_lumis(lumis, chunk, used, _both(keep, selected, used))
                passed += used
                chunk = None
        except SourceError as exc:
            if not self.params.skipBadFiles:
                raise
            first_bad = exc.first_entry if exc.first_entry is not None else start
            self._skip_bad_file(path, str(exc), (first_bad, stop), self._count["read"] - read_before)
        finally:  # per range, not per event: the events of this range are the read counter's growth
            self._files_read[path] = self._files_read.get(path, 0) + self._count["read"] - read_before
            if chunk is not None:  # stopped inside a chunk (maxEvents, an error): its events handed out
                _count_lumis(lumis, chunk, used, _both(keep, selected, used))
                passed += used
            if from_kept:
                with self._count_lock:
                    self._count["kept_entries_used"] += passed
            if not lumis:
                self._lumis_read.pop(path, None)

    def _duplicate(self, event_id: EventID, path: str) -> None:
        self._count["duplicates"] += 1
        if self._named_duplicates < 5:
            self._named_duplicates += 1
            log.warning("source: duplicate event %s in %s skipped (duplicateCheckMode: %s)%s", event_id, path,
                        self.params.duplicateCheckMode, "; further duplicates are only counted"
                        if self._named_duplicates == 5 else "")

    def _chunks(self, path: str, start: int, stop: int) -> Iterator[_Chunk]:
        """Chunks of ``path``; opening, reading, converting and closing are bulk I/O (``bulk_io``). With
        ``read_ahead`` they run in a background thread and the bulk I/O is the loop's wait for them."""
        real = os.path.realpath(path)
        arrays = self._kept.pop(real, None)  # used once (a file listed again is read again)
        if real in self._deferred:
            with self.bulk_io():
                self._deferred.discard(real)
                self._check_file(path)

        def produce() -> Iterator[tuple[_Chunk, dict[str, int]]]:  # a file the check kept: convert only
            return self._read_file(path, start, stop) if arrays is None else self._cut(arrays, path, start, stop)

        ahead = ReadAhead(produce, self._read_ahead, name=f"{READ_AHEAD_THREADS}{os.path.basename(path)}",
                          on_discard=self._discarded) if self._read_ahead else None
        items: Iterator[Any] = iter(ahead) if ahead is not None else produce()
        try:
            while True:
                with self.bulk_io():  # serial: the read itself; read-ahead: the loop's wait for it
                    try:
                        got = next(items)
                    except StopIteration:
                        if ahead is not None:  # the reader's closing of the file
                            self._background_cpu(ahead.tail_cpu_ns)
                        return
                    except BaseException:
                        if ahead is not None:
                            self._background_cpu(ahead.tail_cpu_ns)
                        raise
                    (chunk, counts), thread_cpu = got if ahead is not None else (got, 0)
                    with self._count_lock:  # an earlier file's reader may be counting a dropped chunk
                        for key, value in counts.items():  # counted when the loop takes the chunk
                            self._count[key] += value
                    self._background_cpu(thread_cpu)
                yield chunk
        finally:  # closed when the file is done, not whenever the garbage collector finds the cycle
            if ahead is not None:
                ahead.close()  # the reader closes its file itself; nothing waits for it
                if ahead.alive:  # end_job waits for it (briefly) to count the CPU it still spends
                    self._abandoned.append(ahead)
            else:
                with self.bulk_io():
                    items.close()  # type: ignore[attr-defined]

    def _discarded(self, item: tuple[_Chunk, dict[str, int]] | None, thread_ns: int) -> None:
        """A chunk read ahead but never taken (the job stopped first), or the reader's CPU after the
        loop left (``item`` None): its thread's and its pool's CPU are background CPU all the same.
        Its other counters (chunks, data quality) are not counted: no event of it was read."""
        with self._count_lock:
            self._count["read_ahead_cpu_ns"] += thread_ns
            if item is not None:
                self._count["decompression_cpu_ns"] += item[1].get("decompression_cpu_ns", 0)

    def _background_cpu(self, thread_ns: int) -> None:
        """The read-ahead thread's CPU for this pull (its pool's is in ``decompression_cpu_ns``): counted
        when the loop takes the chunk, reported beside the bulk I/O (not in the pulling thread's CPU)."""
        with self._count_lock:
            self._count["read_ahead_cpu_ns"] += thread_ns

    def _cut(self, arrays: ak.Array, path: str, start: int, stop: int) -> Iterator[tuple[_Chunk, dict[str, int]]]:
        """Chunks of a file the check read whole and kept: converted only (as ``_read_file`` yields them)."""
        for a in range(start, stop, self.params.chunk_size):
            counts = _chunk_counts()
            yield self._convert(arrays[a:min(stop, a + self.params.chunk_size)], path, a, counts), counts

    def _read_file(self, path: str, start: int, stop: int) -> Iterator[tuple[_Chunk, dict[str, int]]]:
        """Open ``path``, read entries ``start``..``stop`` chunk by chunk and convert each; yield
        (chunk, counter increments, the pool's CPU included). Runs in the loop's thread, or in the
        read-ahead thread: it touches no counter itself, the loop adds them when it takes the chunk."""
        tree = self._open_tree(path)
        pool, failed = self._pool(), True
        at = start  # the first entry of the chunk being read: a failure names that chunk, not the range
        try:
            names = self._read_names(tree, path)
            it = tree.iterate(names, step_size=self.params.chunk_size, entry_start=start,
                              entry_stop=stop, library="ak", report=True, decompression_executor=pool)
            while True:
                before = pool.cpu_ns if pool is not None else 0
                try:
                    arrays, report = next(it)
                except StopIteration:
                    failed = False
                    return
                except Exception as exc:
                    bad = min(stop, at + self.params.chunk_size)
                    raise SourceError(f"source: failed to read {path} entries {at}-{bad}: "
                                      f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}",
                                      first_entry=at) from exc
                at = report.tree_entry_start
                arrays = _columns(tree, arrays, names)
                counts = _chunk_counts()
                try:
                    chunk = self._convert(arrays, path, at, counts)
                except SourceError as exc:  # inconsistent branches in this chunk: it is the bad range
                    exc.first_entry = at if exc.first_entry is None else exc.first_entry
                    raise
                at = report.tree_entry_stop
                counts["decompression_cpu_ns"] = pool.settle() - before if pool is not None else 0
                yield chunk, counts
        finally:
            if pool is not None:  # a consumer that stops early (maxEvents) is no failure: failed
                pool.close(failed)  # only drops queued baskets nobody will read
            tree.file.close()

    def _convert(self, arrays: ak.Array, path: str, first_entry: int, counts: dict[str, int] | None = None) -> _Chunk:
        """One chunk from uproot's arrays; its data-quality counts go to ``counts`` (default: the source's)."""
        counts = self._count if counts is None else counts
        b, layout = self.params.branches, self.params.layout
        where = f"{path} entries {first_entry}-{first_entry + len(arrays)}"
        _check_collections(arrays, self._collections(), path, first_entry)  # every length below follows from it
        jet_counts = _counts(arrays[b.jet_pt], b.jet_pt, where)
        n_jets = int(jet_counts.sum())
        jet_offsets = np.zeros(len(jet_counts) + 1, dtype=np.int64)
        np.cumsum(jet_counts, out=jet_offsets[1:])

        def flat(name: str) -> np.ndarray:
            return np.asarray(ak.flatten(arrays[name], axis=None), dtype=np.float32)

        jet_pt, jet_eta, jet_phi = flat(b.jet_pt), flat(b.jet_eta), flat(b.jet_phi)
        jet_mass = flat(b.jet_mass) if b.jet_mass else np.zeros(n_jets, np.float32)

        take: np.ndarray | None = None  # jet_index: the constituents linked to a jet, in link order
        if layout == "counts":
            per_jet = _constituents_per_jet(arrays, b, path, first_entry)
            jet_of_cand = np.repeat(np.arange(n_jets), per_jet)
            cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)
        elif layout == "jet_index":
            link_counts = _counts(arrays[b.cand_jet_index], b.cand_jet_index, where)
            jet_idx = np.asarray(ak.flatten(arrays[b.cand_jet_index], axis=None), dtype=np.int64)
            event_of_link = np.repeat(np.arange(len(link_counts)), link_counts)
            valid = (jet_idx >= 0) & (jet_idx < jet_counts[event_of_link])
            no_jet = int(np.count_nonzero(jet_idx == NO_JET))
            counts["links_to_no_jet"] += no_jet
            counts["invalid_links"] += int(len(valid) - np.count_nonzero(valid)) - no_jet
            jet_of_cand = (jet_idx + jet_offsets[:-1][event_of_link])[valid]
            cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)
            if b.cand_index:
                cand_counts = _counts(arrays[b.cand_pt], b.cand_pt, where)
                cand_offsets = np.concatenate([[0], np.cumsum(cand_counts)])
                cidx = np.asarray(ak.flatten(arrays[b.cand_index], axis=None), dtype=np.int64)
                ok = (cidx >= 0) & (cidx < cand_counts[event_of_link])
                counts["invalid_links"] += int(np.count_nonzero(valid & ~ok))
                valid &= ok
                jet_of_cand = (jet_idx + jet_offsets[:-1][event_of_link])[valid]
                take = (cidx + cand_offsets[:-1][event_of_link])[valid]
            else:
                take = np.flatnonzero(valid)
            cpt, ceta, cphi = cpt[take], ceta[take], cphi[take]
        else:  # nested
            per_jet = np.asarray(ak.flatten(ak.num(arrays[b.cand_pt], axis=2)), dtype=np.int64)
            jet_of_cand = np.repeat(np.arange(n_jets), per_jet)
            cpt, ceta, cphi = flat(b.cand_pt), flat(b.cand_eta), flat(b.cand_phi)

        cand_extra = {name: flat(name) if take is None else flat(name)[take] for name in self._extra_cand}
        jet_extra = {name: flat(name) for name in self._extra_jet}
        ids, id_keys, id_arrays = self._ids(arrays, path, first_entry)
        chunk = make_chunk(jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, (jet_of_cand, ceta, cphi, cpt), ids,
                           id_keys, self.params.max_constituents, requested_specs(self._requests), jet_extra,
                           cand_extra)
        chunk.id_arrays = id_arrays  # lumis counted and selections made per chunk with numpy
        if b.weight and b.weight in arrays.fields:
            chunk.weights = np.asarray(arrays[b.weight], dtype=np.float64).tolist()
        counts["zero_constituent_jets"] += int(n_jets - np.count_nonzero(chunk.ncons))
        counts["nonfinite_pt_jets"] += int(n_jets - np.count_nonzero(np.isfinite(jet_pt)))
        return chunk

    def _ids(self, arrays: ak.Array, path: str, first_entry: int
             ) -> tuple[list[EventID], np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        b = self.params.branches
        n = len(arrays)
        columns = self._id_columns(arrays, path, first_entry)
        run = columns.get("run", np.ones(n, np.uint64))
        lumi = columns.get("luminosityBlock", np.ones(n, np.uint64))
        evt = columns.get("event", np.arange(first_entry + 1, first_entry + n + 1, dtype=np.uint64))
        ids = [EventID(r, l, e) for r, l, e in zip(run.tolist(), lumi.tolist(), evt.tolist())]
        return ids, (keys(run, lumi, evt) if b.event else None), (run, lumi, evt)  # entry numbers are no event ids

    def _id_columns(self, arrays: ak.Array, path: str, first_entry: int) -> dict[str, np.ndarray]:
        """The event-id branches among ``arrays``' fields (by role: run, luminosityBlock, event), checked
        (``_id_values``) and as uint64: at begin_job on the entries the file check reads, then per chunk."""
        b = self.params.branches
        return {role: _id_values(arrays[name], name, role, path, first_entry)
                for role, name in (("run", b.run), ("luminosityBlock", b.luminosityBlock), ("event", b.event))
                if name and name in arrays.fields}

    def accounting(self) -> dict[str, Any]:
        """Counters of the whole job (or worker); ``files_read`` maps each input to the events read."""
        return {**self._count, "files_read": dict(self._files_read), "bad_entries_per_file": dict(self._bad_entries),
                "lumis_per_file": {path: dict(lumis) for path, lumis in self._lumis_read.items()}}

    def data_quality(self) -> dict[str, int]:
        """What may be wrong with the input: ``invalid_links`` are links whose jet (or candidate) index
        is outside its collection; a jet index of -1 (``NO_JET``) is not among them (``accounting``'s
        ``links_to_no_jet``)."""
        c = self._count
        return {"invalid_links": c["invalid_links"], "jets_without_constituents": c["zero_constituent_jets"],
                "jets_with_nonfinite_pt": c["nonfinite_pt_jets"]}


_RUN, _LUMI, _EVENT = attrgetter("run"), attrgetter("luminosityBlock"), attrgetter("event")


def _same_counts(a: ak.Array, b: ak.Array) -> bool:
    """Do two (possibly doubly) jagged arrays hold the same number of items everywhere?"""
    return _first_mismatch(a, b) is None


def _constituents_per_jet(arrays: ak.Array, b: JetBranches, path: str, first_entry: int) -> np.ndarray:
    """layout counts: each jet's constituent count, once they are known to add up, event by event, to
    the constituents the event holds: each jet takes the next ``count`` of them, so one wrong count
    would give every later constituent of the event to the wrong jet."""
    stored = np.asarray(ak.flatten(arrays[b.jet_n_constituents], axis=None))
    per_jet = stored.astype(np.int64)
    jets = np.concatenate([[0], np.cumsum(_per_event(arrays[b.jet_pt]))])
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
class _Collection:
    """Branches read as one collection: each of ``members`` holds as many values as ``ref`` in every
    event (and jet); ``ref`` has ``depth`` levels (2: a list per event, 3: a list per jet per event)
    and, with ``jets_of``, one list per jet of that jet branch."""

    kind: str
    ref: str
    members: tuple[str, ...]
    depth: int = 2
    jets_of: str | None = None


def _collections(b: JetBranches, layout: str, extra_jet: tuple[str, ...] = (),
                 extra_cand: tuple[str, ...] = ()) -> list[_Collection]:
    """The collections of a layout, with the consumers' extra jet and constituent branches."""
    n_constituents = (b.jet_n_constituents,) if layout == "counts" else ()
    jets = tuple(n for n in (b.jet_eta, b.jet_phi, b.jet_mass, *extra_jet, *n_constituents) if n)
    direct = (b.cand_jet_index,) if layout == "jet_index" and not b.cand_index else ()  # a jet index per constituent
    nested = layout == "nested"
    groups = [_Collection("jet", b.jet_pt, jets),
              _Collection("constituent", b.cand_pt, (b.cand_eta, b.cand_phi, *extra_cand, *direct),
                          3 if nested else 2, b.jet_pt if nested else None)]
    if layout == "jet_index" and b.cand_index:
        groups.append(_Collection("link", b.cand_jet_index, (b.cand_index,)))
    return groups


def _check_collections(arrays: ak.Array, groups: list[_Collection], path: str, first_entry: int) -> None:
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
            at = _first_mismatch(arrays[name], arrays[g.ref])
            _refuse_misaligned(at, name, g.ref, g.kind, path, first_entry, deep=arrays[g.ref].ndim > 2)


# event-id numbers as CMSSW stores them: run and lumi are 32-bit, the event number 64-bit (unsigned)
_ID_LIMITS = {role: most + 1 for role, most in ID_MAX.items()}  # one past the largest: values must stay below
_ID_WORDS = {"run": "run", "luminosityBlock": "lumi", "event": "event"}
_FLOAT_EXACT = 2**53  # a float64 holds every whole number below it, and not every one above


def _one_per_event(array: ak.Array, name: str, role: str, setting: str, path: str) -> None:
    """A per-event branch (an event id, the weight) holds one number per event: a list per event
    (``event`` given a jagged branch) would be read as something else, or fail deep in numpy."""
    if array.ndim != 1:
        got = "a list per event" if array.ndim == 2 else f"{array.ndim - 1} levels of lists"
        raise SourceError(f"source: {role} branch '{name}' ({setting}) must hold one number per event, got "
                          f"{got} in {path}")


def _id_values(array: ak.Array, name: str, role: str, path: str, first_entry: int) -> np.ndarray:
    """An event-id branch's values as uint64, once they are known to be whole numbers in CMSSW's range
    (run, lumi: 0 to 2^32-1; event: 0 to 2^64-1). An integer branch is read as is; a float branch
    (some ntuples write ids as double) only where every value is a whole number below 2^53, which a
    double holds exactly: 0.1 must not become event 0, NaN must not become anything. Vectorised."""
    setting = f"source.branches.{role}"
    _one_per_event(array, name, "event-id", setting, path)
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


def _check_depth(array: ak.Array, group: _Collection, path: str) -> None:
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


def _id_arrays(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(run, lumi, event) arrays of a chunk's events (from its ids if it was built without them)."""
    if chunk.id_arrays is not None:
        return chunk.id_arrays
    n = len(chunk.ids)
    return tuple(np.fromiter(map(get, chunk.ids), np.uint64, n) for get in (_RUN, _LUMI, _EVENT))  # type: ignore[return-value]


def _count_lumis(lumis: dict[str, int], chunk: _Chunk, used: int, handed: np.ndarray | None) -> None:
    """Add the first ``used`` events of ``chunk`` (those ``handed`` marks, if given) to ``lumis``
    ("run:lumi" -> events): once per chunk with numpy, not per event."""
    run, lumi, _ = _id_arrays(chunk)
    key = (np.asarray(run[:used], np.uint64) << np.uint64(32)) | np.asarray(lumi[:used], np.uint64)
    if handed is not None:
        key = key[handed]
    values, counts = np.unique(key, return_counts=True)
    for k, n in zip(values.tolist(), counts.tolist()):
        name = f"{k >> 32}:{k & 0xFFFFFFFF}"
        lumis[name] = lumis.get(name, 0) + n


def _both(keep: np.ndarray | None, selected: np.ndarray | None, used: int) -> np.ndarray | None:
    """The events of a chunk's first ``used`` that were handed out: not duplicates, and selected."""
    if keep is None and selected is None:
        return None
    if keep is None:
        return selected[:used]
    return keep[:used] if selected is None else keep[:used] & selected[:used]


def _chunk_counts() -> dict[str, int]:
    """The counter increments one chunk brings, filled while it is read and converted and added to
    the source's counters when the loop takes the chunk (a chunk read ahead and dropped adds none)."""
    return {"chunks": 1, "invalid_links": 0, "links_to_no_jet": 0, "zero_constituent_jets": 0,
            "nonfinite_pt_jets": 0, "decompression_cpu_ns": 0}


_LATE_WAIT_S = 10.0  # how long end_job waits for read-ahead threads still finishing a discarded chunk


def _read_ahead_depth(setting: int, cores: int | None = None) -> int:
    """The ``read_ahead`` depth to use: 0 where the process may run on one core only (its affinity,
    as a batch slot sets it): there the reader thread would preempt the streams, moving the read
    into the events' real time instead of overlapping it. Said once, in one warning line."""
    if setting and (decompression.available_cores() if cores is None else cores) < 2:
        log.warning("source: read_ahead=%d ignored (read_ahead=0): this process may run on one core only, "
                    "where the reader thread would slow the events down instead of overlapping them", setting)
        return 0
    return setting


_KEEP_BYTES = 256 * 2**20  # uncompressed bytes the file check may keep in memory for the loop, in all


def _first_basket_end(branch: Any) -> int:
    """The entry where a branch's first basket ends (0 if the file does not say: then read the tail)."""
    try:
        offsets = branch.entry_offsets
        return int(offsets[1]) if len(offsets) > 1 else 0
    except Exception:  # pragma: no cover - a damaged basket table: let the tail read report it
        return 0


def _columns(tree: Any, arrays: ak.Array, names: "list[str]") -> ak.Array:
    """``arrays`` as read from ``tree``, one field per name asked for. A TTree's are already. An
    RNTuple's collection is one field holding records (NanoAOD as RNTuple: ``FatJet`` with ``pt``,
    ``eta``...): uproot reads ``FatJet.pt`` as the record ``FatJet`` with the sub-field ``pt``, and it
    becomes the column ``FatJet.pt`` here (a view, no copy), so a record's sub-fields are read like
    branches. Fields of one record share its lists: they are one collection by construction."""
    import uproot.behaviors.RNTuple

    if not isinstance(tree, uproot.behaviors.RNTuple.RNTuple) or all(name in arrays.fields for name in names):
        return arrays

    def field(name: str) -> ak.Array:
        if name in arrays.fields:
            return arrays[name]
        top, *inner = name.split(".")
        column = arrays[top]
        for part in inner:
            column = column[part]
        return column

    return ak.zip({name: field(name) for name in dict.fromkeys(names)}, depth_limit=1)


def _has_key(handle: Any, name: str) -> bool:
    """Whether the file's directory lists ``name`` (read from the key table, not the object itself)."""
    try:
        handle.key(name)
    except Exception:
        return False
    return True


def _classname(handle: Any, name: str, default: str = "object") -> str:
    """The class of the object ``name`` as its key records it (TTree, TH1D, ROOT::RNTuple...)."""
    try:
        return str(handle.classname_of(name))
    except Exception:  # pragma: no cover - the key was read, so it names its class; just in case
        return default


def _tree_elsewhere(handle: Any, name: str) -> str:
    """'; set source.tree: dir/Events' when the file has a tree of that name in a folder (a user's
    ntuple made with TFileService puts it under the analyzer's folder), or in another case ('events');
    '' otherwise."""
    base = name.strip("/").rsplit("/", 1)[-1].lower()
    try:
        found = [k.split(";")[0] for k in handle.keys(recursive=True, filter_classname=["TTree", "ROOT::RNTuple"])]
    except Exception:  # pragma: no cover - a damaged directory: the message without the hint
        return ""
    found = [k for k in dict.fromkeys(found) if k.rsplit("/", 1)[-1].lower() == base and k != name.strip("/")]
    return f"; it has {', '.join(found)}: set source.tree: {found[0]}" if found else ""


def _value_branches(names: "list[str]") -> list[str]:
    """The branches that may be meant for a kinematic one: NanoAOD counters (``nFatJet`` beside
    ``FatJet_pt``) never are, and "did you mean 'nFatJetPFCand'?" sends the user the wrong way."""
    counters = {"n" + name.split("_", 1)[0] for name in names if "_" in name}
    return [name for name in names if name not in counters]


def _link_settings(names: "list[str]", jet_pt: str) -> str:
    """``source.branches`` settings, ``{cand_jet_index: ..., cand_pt: ...}``, for a (PFNano-like) file whose
    constituents are linked to the jets of ``jet_pt`` by a ``<Jet>PFCand(s)_jetIdx`` table, directly or
    through an index into ``PFCand(s)_*``; '' for other files. Each producer spells them its own way
    (PFNano ``FatJetPFCands_pFCandsIdx``, JME/BTV NanoAOD ``FatJetPFCand_pfCandIdx``), so they are read
    from the file, not assumed."""
    jet = jet_pt.rsplit("_", 1)[0]
    link = next((n for n in names if n.startswith(jet + "PFCand") and n.endswith("_jetIdx")), None)
    if link is None:
        return ""
    table = link.rsplit("_", 1)[0]
    index = next((n for n in names if n.startswith(table + "_") and n.lower().endswith("idx") and n != link), None)
    cands = next((c for c in ("PFCands", "PFCand") if f"{c}_pt" in names), None) if index else table
    if cands is None or f"{cands}_pt" not in names:
        return ""
    settings = f"cand_jet_index: {link}" + (f", cand_index: {index}" if index else "")
    return f"{{{settings}, cand_pt: {cands}_pt, cand_eta: {cands}_eta, cand_phi: {cands}_phi}}"


def _linked_layout(names: "list[str]", jet_pt: str) -> str:
    """The settings (``_link_settings``) of a file whose constituents are linked to the jets by index, as a hint."""
    settings = _link_settings(names, jet_pt)
    return (f"the file links constituents to jets by index: set source.layout: jet_index and source.branches: "
            f"{settings}") if settings else ""


# a NanoAOD link table's jet index: <jets>PFCands_jetIdx (PFNano), <jets>PFCand_jetIdx (JME/BTV NanoAOD)
_LINK_TABLE = re.compile(r"^(?P<jets>.+?)PFCands?[._]jetIdx$")


def _refuse_foreign_links(names: "list[str]", b: JetBranches, path: str) -> None:
    """``jet_index``: a NanoAOD link table whose name says it indexes another jet collection of the file
    (AK4 ``Jet_pt`` with AK8 ``FatJetPFCands_jetIdx``, the user having changed the jet names only) is a
    configuration error. Its indices are the other collection's, mostly valid ones in this collection
    too, so every constituent would go to the wrong jet without an invalid link to show it."""
    found = _LINK_TABLE.match(b.cand_jet_index)
    jets = re.split(r"[._]", b.jet_pt)[0] if re.search(r"[._]", b.jet_pt) else b.jet_pt
    owner = found.group("jets") if found else None
    if owner is None or owner == jets or not {f"{owner}_pt", f"{owner}.pt"} & set(names):
        return
    settings = _link_settings(names, b.jet_pt)
    raise ConfigError(f"source.branches.cand_jet_index: '{b.cand_jet_index}' links constituents to the '{owner}' jets "
                      f"of {path}, not to '{jets}' (source.branches.jet_pt: {b.jet_pt}); "
                      + (f"set source.branches: {settings}" if settings else
                         f"set the link table of the '{jets}' jets, or jet_pt/eta/phi/mass to '{owner}_*'"))


# an EDM product branch: <friendly class>_<module label>_<instance>_<process>. (e.g. patJets_slimmedJetsAK8__PAT.)
_EDM_PRODUCT = re.compile(r"^[A-Za-z0-9]+_[A-Za-z0-9]+_[A-Za-z0-9]*_[A-Za-z0-9]+\.$")


def _edm_product(branches: "list[str]") -> str | None:
    """A branch that marks a CMSSW EDM (MiniAOD/AOD) tree, a jet collection's if there is one; None for a
    flat ntuple. Such a tree stores C++ objects per event that uproot cannot read as columns, so a
    user asking it for ``FatJet_pt`` must be told to make NanoAOD first, not to rename branches."""
    products = [name for name in branches if _EDM_PRODUCT.match(name)]
    if not products:
        return "EventAuxiliary" if "EventAuxiliary" in branches else None
    return next((name for name in products if "Jets_" in name), products[0])


def _written_by_hltrun(path: str) -> str | None:
    """The process of an hltrun output (its ``Process`` TObjString), None for any other file."""
    from .root_output import read_process

    try:
        return read_process(path)
    except Exception:  # pragma: no cover - the file opened a moment ago: then not an output we can name
        return None


def _counts(array: ak.Array, name: str, where: str) -> np.ndarray:
    """Per-event list lengths of a jagged branch, or a clear error if it is not a per-event list."""
    if array.ndim < 2:
        raise SourceError(f"source: branch '{name}' is not a per-event collection (one value per event) in {where}")
    return np.asarray(ak.num(array, axis=1), dtype=np.int64)
