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

The Source itself is here (opening the inputs, the event loop's ranges, duplicates, selections and the
accounting); its parts, one job each, are in ``modules/source/`` (see its ``__init__``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Iterator, Mapping

import awkward as ak

from hltrun.framework.context import SourceContext
from hltrun.framework.destinations import reading
from hltrun.framework.errors import ConfigError, HltError, SourceError
from hltrun.framework.event import EventID
from hltrun.framework.module import Source
from hltrun.framework.ranges import Selection

from .decompression import DECOMPRESSION_THREADS
from .duplicates import DuplicateChecker, PlannedDuplicates, Runs, duplicate_runs
from .products import NANOAOD_NAMES, JetCollection
from .read_ahead import ReadAhead
from .source.checks import FileChecks
from .source.chunk import make_chunk
from .source.event_ids import count_lumis, event_id_arrays, handed_out, id_keys, lumi_at, lumi_in
from .source.file_list import input_files, list_files
from .source.open_files import OpenFiles
from .source.parameters import JetBranches, RootJetSourceParameters
from .source.reading import LATE_WAIT_S, READ_AHEAD_THREADS, ChunkReading, read_ahead_depth
from .source.tree import FileState, file_state, has, open_tree

# imported from here by the registry (setup.cfg), tools/bench and the tests
__all__ = ["JetBranches", "RootJetSource", "RootJetSourceParameters", "make_chunk"]

log = logging.getLogger("hltrun")
WEIGHT = "weight"  # the source's product instance holding the event weight (files with a weight branch)


class RootJetSource(FileChecks, ChunkReading, Source):
    """Jets from one or more ROOT files (see the module docstring for the layouts)."""

    Parameters = RootJetSourceParameters
    produces = {"": JetCollection, WEIGHT: float}  # the weight: from files with the weight branch
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
                       "not_selected": 0,  # read, outside lumisToProcess / eventsToProcess / lumiMask
                       # listed files the job never opened (past skipEvents + maxEvents, never reached): their
                       # entries are unknown, so not in entries_in_files; none in a run without maxEvents
                       "files_not_opened": 0,
                       # whole files the file check read at begin_job and kept for the loop: their entries,
                       # the entries the loop went through, and the check's decompression-thread CPU for them
                       # (a short job charges its events only the share of that read it used)
                       "kept_entries": 0, "kept_entries_used": 0, "kept_decompression_cpu_ns": 0}
        self._selection: Selection = params.selection()
        self.bad_files: list[str] = []  # "path: what was skipped (reason)", for the reports
        self._bad_entries: dict[str, int] = {}  # bad file -> entries skipped in it (0: skipped whole at begin_job)
        self._files_read: dict[str, int] = {}  # events handed out per input file (FrameworkJobReport's EventsRead)
        self._lumis_read: dict[str, dict[str, int]] = {}  # file -> "run:lumi" -> events handed out (its <Runs>)
        self._cut_short: dict[str, int] = {}  # "run:lumi" -> 1: the lumi maxEvents stopped in, the file holding more of it
        self._next_entry = 0  # the entry after the last one a range went through (set when a range stops in a chunk)
        self._next_id: EventID | None = None  # that entry's id, where its chunk held it
        self._reading_kept: tuple[str, ak.Array | None] = ("", None)  # the file being read, as the check kept it whole
        self._duplicates = DuplicateChecker(params.duplicateCheckMode)
        self._named_duplicates = 0
        self._requests: set[Any] = set()  # what consumers requested (SourceContext.requests)
        # branches the consumers' input contracts read beyond the jet kinematics: per jet, per constituent, per event
        self._extra_jet: tuple[str, ...] = ()
        self._extra_cand: tuple[str, ...] = ()
        self._extra_event: tuple[str, ...] = ()
        self._weighted: bool | str | None = None  # whether the first file has the weight branch; "mixed": said
        self._weight_needed = False  # a module consumes the weight: every file must have it (begin_job)
        self._ctx = SourceContext(label)
        # files the check read whole (one basket per branch holds the file, so reading 50 entries
        # decompressed it all anyway), up to KEEP_BYTES in all: the loop reads them from here
        self._kept: dict[str, ak.Array] = {}
        self._kept_bytes = 0
        # each input as the job first opened it: a read failing after another process changed it says so
        self._first_opened: dict[str, FileState | None] = {}
        self._keep = True
        self._reading_configured()
        # the branch names of each checked file (one set per schema): the declared inputs' branches are
        # looked for there at consumers_known; the first good file, left open by its check until then
        self._names: dict[str, frozenset[str]] = {}
        self._name_sets: dict[frozenset[str], frozenset[str]] = {}
        self._held: tuple[str, Any] | None = None
        # files the job cannot need (past skipEvents + maxEvents): not opened at begin_job, opened and checked
        # only if the loop reaches them (duplicates, a selection); real path -> its listings not opened yet
        self._deferred: dict[str, list[str]] = {}
        # a Dask worker's work-unit files checked so far: real path -> why it is bad (None: good)
        self._unit_checks: dict[str, str | None] = {}
        self._open_files: OpenFiles | None = None  # a Dask worker's files kept open between its units
        self._read_ahead = read_ahead_depth(params.read_ahead)
        self._abandoned: list[ReadAhead] = []  # readers left at an early stop: their late CPU is counted
        self._count_lock = threading.Lock()  # a reader left behind counts its dropped chunks from its thread

    # -- setup ---------------------------------------------------------------------------------

    @classmethod
    def product_metadata(cls, params: RootJetSourceParameters) -> Mapping[str, Any]:
        """The weight's NanoAOD name, whatever the input's branch is called: an output that keeps it writes
        ``genWeight``, as NanoAOD does (coffea: ``events.genWeight``)."""
        return {NANOAOD_NAMES: {WEIGHT: "genWeight"}}

    def _branch_names(self) -> list[str]:
        b, layout = self.params.branches, self.params.layout
        names = [b.jet_pt, b.jet_eta, b.jet_phi, b.cand_pt, b.cand_eta, b.cand_phi]
        names += [n for n in (b.run, b.luminosityBlock, b.event, b.jet_mass) if n]
        if layout == "counts":
            names.append(b.jet_n_constituents)
        elif layout == "jet_index":
            names += [b.cand_jet_index] + ([b.cand_index] if b.cand_index else [])
        return list(dict.fromkeys(names + self._declared_branches()))

    def _declared_branches(self) -> list[str]:
        """The branches the consumers' input contracts read beyond the settings' (jet, constituent, event)."""
        return [*self._extra_jet, *self._extra_cand, *self._extra_event]

    def begin_job(self, ctx: SourceContext | None = None) -> None:
        """Expand globs, refuse a file listed twice, and open and check every file (tree, branches,
        layout, first and last entries) before the first event, so that a bad file among good ones
        fails (or, with ``skipBadFiles``, is skipped) now, not hours into the job. On a Dask worker
        (``ctx.units``) none is opened: the client checked them all, and the worker checks each work unit's
        file when it reaches it (``read_range``). ``ctx`` None: a source used on its own (every entry, no
        consumer requests)."""
        ctx = ctx if ctx is not None else SourceContext(self.label)
        self._ctx = ctx
        self._consumers(ctx.consumed)
        if self.params.lumi_mask is not None:
            ctx.record_lumi_mask(self.params.lumi_mask.record())
        self._requests = ctx.requests()  # live: filled by the modules' begin_job, read at each chunk
        self._reading_lists()
        if ctx.units:  # a Dask worker: each unit's file is checked when reached (``_unit_file``), no other
            self._list_inputs()
            self._open_files = OpenFiles()
        else:
            self._open_inputs(ctx.entries_needed, keep=True)

    def _reading_configured(self) -> None:
        """The files the configuration names are inputs of the job from the source's construction, before the
        services' job scopes begin: memray's capture file, claimed there, is compared with them before its old
        file is removed (a capture named as the input deleted the input). An entry that names no file is said
        by begin_job, in its place."""
        try:
            named = input_files(self.params.files)
        except HltError:
            named = []
        self._reading_lists()
        reading(named)

    def _reading_lists(self) -> None:
        """The lumiMask and the text lists of input files are inputs of the job: no output of it may replace
        them (destinations.reading; the files the lists name are compared once known, ``input_names``)."""
        mask = [self.params.lumi_mask.path] if self.params.lumi_mask is not None else []
        reading([*mask, *list_files(self.params.files)])

    def _consumers(self, consumed: frozenset[str]) -> None:
        """What the modules consume of the source: the weight makes every file need its branch."""
        self._weight_needed = WEIGHT in consumed
        if self._weight_needed and not self.params.branches.weight:
            raise ConfigError(f"source.branches.weight: null, but a module consumes '{self.label}:{WEIGHT}' (the "
                              "event weight, e.g. an output's keep): name the weight branch, or do not consume it")

    @classmethod
    def plan_inputs(cls, params: RootJetSourceParameters, entries_needed: int | None,
                    consumed: frozenset[str] = frozenset(), skipped: list[tuple[str, str]] | None = None
                    ) -> list[tuple[str, int | None]]:
        """The files and their entries, checked as begin_job checks them (bad ones skipped or refused, a
        consumed weight branch required), without keeping any array: what the Dask client splits into work
        units. A file a worker would refuse is refused here, before the cluster starts. Files past
        ``entries_needed`` are not opened, as a local job leaves them (entries None): a bad one there does
        not fail a job that never reaches it. ``skipped``: receives each bad file skipped (``skipBadFiles``)
        and its line, which a local run's reports give (the workers open no file but their units')."""
        if entries_needed is not None and params.selection():
            # units are entry ranges planned before any event is read: which entries hold the first
            # maxEvents selected events is unknown there (a local run reads on until it has them)
            raise NotImplementedError("source.lumisToProcess / eventsToProcess / lumiMask with options.maxEvents: "
                                      "units are planned by entries; use maxEvents: -1 or a local run")
        source = cls("source", params)
        source._consumers(consumed)
        source._reading_lists()
        try:
            source._open_inputs(entries_needed, keep=False, planning=True)
            if skipped is not None:  # each line starts with its file's name as listed ("path: whole file skipped")
                skipped.extend((max((p for p in source._bad_entries if line.startswith(p + ": ")), key=len), line)
                               for line in source.bad_files)
            return [(path, source.entries.get(path)) for path in source.files]
        finally:
            source.end_job()

    @classmethod
    def lumi_cut_short(cls, params: RootJetSourceParameters, path: str, stop: int) -> str | None:
        """``run:lumi`` where the Dask client's last unit, which maxEvents ended at entry ``stop`` of ``path``, stops
        inside a lumi section the file holds more of (the local run's ``_note_cut_short``); None otherwise."""
        tree = open_tree(path, params.tree)
        try:
            if not 0 < stop < tree.num_entries:
                return None
            last, after = (lumi_at(tree, params.branches, path, entry) for entry in (stop - 1, stop))
        finally:
            tree.file.close()
        return f"{last[0]}:{last[1]}" if last == after else None

    @classmethod
    def plan_duplicates(cls, params: RootJetSourceParameters, inputs: list[tuple[str, int]], skip: int,
                        limit: int | None) -> list[Runs]:
        """The job's duplicates as ``events`` finds them (``duplicateCheckMode``), reading only the id
        branches of the entries the job reads, file after file: what each Dask unit skips."""
        if params.duplicateCheckMode == "noDuplicateCheck":
            return [() for _ in inputs]
        starts, to_skip = [], skip
        for _, n in inputs:
            starts.append(min(to_skip, n))
            to_skip -= starts[-1]

        def keys_of(path: str, start: int, stop: int) -> Iterator[tuple[int, Any]]:
            try:
                tree = open_tree(path, params.tree)
                try:
                    yield from id_keys(tree, params.branches, path, start, stop, params.chunk_size)
                finally:
                    tree.file.close()
            except SourceError:  # FileOpenError too
                if not params.skipBadFiles:
                    raise
                # a bad file's unit fails (and is skipped) on its worker, as locally: its ids are never read

        return duplicate_runs(((start, keys_of(path, start, n)) for (path, n), start in zip(inputs, starts)),
                              params.duplicateCheckMode, limit)

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

    def next_run(self) -> None:
        """A Dask worker's next job of this configuration: its units' files are checked again when reached, and
        the bad files the last job named are that job's (a file mended since is read; one still bad is named
        again). Its entries given up stay counted: the worker reports counters as differences."""
        self._unit_checks.clear()
        self.bad_files = []
        self._bad_entries = {path: n for path, n in self._bad_entries.items() if n}  # skipped whole: no entry count

    def _read_names(self, tree: Any, path: str) -> list[str]:
        """The branches read from this file: the configured ones, and the weight where it has one."""
        weight = self.params.branches.weight
        weighted = bool(weight) and has(tree, weight)
        if self._weight_needed and not weighted:  # not a bad file (skipBadFiles): the job asks what it lacks
            raise ConfigError(f"source: {path} has no '{weight}' branch (source.branches.weight), but a module "
                              f"consumes '{self.label}:{WEIGHT}' (the event weight, e.g. an output's keep): give "
                              "weighted files only, or do not consume the weight")
        if weight and isinstance(self._weighted, bool) and weighted != self._weighted:
            self._weighted = "mixed"  # said once
            # which file's events count 1 said outright: "its events count 1" was said of the weighted file too
            # (a fresh generator sample, which has genWeight, read after a shipped one, which has none)
            said = (f"has a '{weight}' branch and an earlier file has none: the events of the files without it "
                    "count 1 each beside this file's weighted ones" if weighted else
                    f"lacks a '{weight}' branch and an earlier file has one: its events count 1 each beside the "
                    "weighted ones")
            log.warning("source: %s %s (rates mix the samples; set source.branches.weight: null to count every "
                        "event 1)", path, said, extra={"once": True})
        self._weighted = weighted if self._weighted is None else self._weighted
        return [*self._branch_names(), weight] if weighted else self._branch_names()

    def _open_tree(self, path: str) -> Any:
        self._first_opened.setdefault(os.path.realpath(path), file_state(path))  # the read-ahead thread too
        return open_tree(path, self.params.tree)

    # -- event iteration -----------------------------------------------------------------------

    def events(self, skip: int, limit: int | None) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """Yield (EventID, {"": JetCollection}) reading only the entries that will be used;
        duplicate event ids (``duplicateCheckMode``) are skipped and counted."""
        to_skip, left = skip, limit
        checking = self.params.duplicateCheckMode != "noDuplicateCheck"
        for path in list(self.files):  # a file reached and found bad leaves the list (skipBadFiles)
            if left is not None and left <= 0 and to_skip == 0:
                break  # done: the files after this one are not opened (as cmsRun with maxEvents)
            if self._stopping():
                return  # the files after this one are not opened: nothing of them would be processed
            try:
                self._reach(path)
            except SourceError as exc:
                if not self.params.skipBadFiles:
                    raise
                self._skip_reached(path, str(exc))
                continue
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
            entries = self._range(path, start, stop, self._duplicates)
            for item in entries:
                yield item
                if left is not None:
                    left -= 1
                    if left <= 0:
                        entries.close()  # its accounting now, and where it stopped (``_next_entry``)
                        self._note_cut_short(path, item[0])
                        return

    def _note_cut_short(self, path: str, last: EventID) -> None:
        """maxEvents stopped the job at ``last``: when the file's next entry is of the same lumi section, that
        lumi is cut short (``lumis_cut_short``), and its per-lumi rate is of its first events only, biased where
        the events are ordered (by time, by a generator's phase space). A lumi continued in the next file, never
        opened, is not seen; nor is the one skipEvents began in."""
        at = self._next_entry
        if at >= self.entries.get(path, 0):
            return
        kept_path, kept = self._reading_kept
        try:
            if self._next_id is not None:  # in the last chunk read (a read past the events handed out)
                run, lumi = self._next_id.run, self._next_id.luminosityBlock
            elif kept is not None and kept_path == os.path.realpath(path):  # read whole by the file check
                run, lumi = lumi_in(kept[at:], self.params.branches, path, at)
            else:  # one entry's id branches: the file opened once more (a job's one peek)
                tree = self._open_tree(path)
                try:
                    run, lumi = lumi_at(tree, self.params.branches, path, at)
                finally:
                    tree.file.close()
        except Exception as exc:  # a one-entry peek: the job's figures stand, only the flag is unknown
            log.debug("source: could not read the entry after maxEvents in %s: %s", path, exc)
            return
        if (run, lumi) == (last.run, last.luminosityBlock):
            self._cut_short[f"{run}:{lumi}"] = 1

    def end_job(self) -> None:
        self._kept.clear()  # files the job stopped before
        self._reading_kept = ("", None)
        if self._open_files is not None:
            self._open_files.close()
        if self._held is not None:  # begin_job failed before the consumers were known
            self._held[1].file.close()
            self._held = None
        # readers left at an early stop end at their next hand-over (the chunk they are reading):
        # wait for that, so the CPU they spend is in the report, but never long (nor after a failure
        # or an interrupt, which must not hang on a read); one still running is named
        failed = self._ctx.job_failed()
        deadline = time.perf_counter() + LATE_WAIT_S
        for ahead in self._abandoned:
            if failed or not ahead.join(max(0.0, deadline - time.perf_counter())):
                log.debug("source: a read-ahead thread was still reading at end_job: its last CPU is not counted")
        self._abandoned.clear()

    def input_names(self) -> list[str]:
        """The input files in reading order, without opening any (those past maxEvents stay unopened)."""
        return list(self.files)

    def inputs(self) -> list[tuple[str, int]]:
        """(file, entries) in reading order; a file begin_job did not open (past maxEvents) is counted now."""
        for path in self.files:
            if path not in self.entries:
                self.entries[path] = self._count_entries(path)
        return [(path, self.entries[path]) for path in self.files]

    def read_range(self, name: str, start: int, stop: int, duplicates: Runs = ()
                   ) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """One work unit. Its duplicates are those the client found over the whole job in input order
        (``plan_duplicates``), skipped and counted as ``events`` does: units run on different workers in
        any order, and a check within each unit alone kept an event whose first copy is in another
        unit. A unit that hits a bad file skips the rest of its range with ``skipBadFiles``, as
        ``events`` does for the rest of the file. The unit's file is checked when this worker first reaches
        it (``_unit_file``); a bad one is skipped whole with ``skipBadFiles``, as ``events`` skips a file it
        reaches."""
        if self._unit_file(name):
            yield from self._range(name, start, stop, PlannedDuplicates(duplicates, start))

    def _range(self, path: str, start: int, stop: int, checker: DuplicateChecker | PlannedDuplicates
               ) -> Iterator[tuple[EventID, dict[str, Any]]]:
        """Entries ``start``..``stop`` of ``path``: duplicates skipped and counted, every event
        yielded counted as ``read``; a read failure skips the rest of the range with skipBadFiles."""
        checking = self.params.duplicateCheckMode != "noDuplicateCheck"
        read_before = self._count["read"]
        lumis = self._lumis_read.setdefault(path, {})
        chunk, keep, selected, used = None, None, None, 0  # the chunk being handed out and how far: its lumis, counted per chunk
        first = start  # the entry number of the chunk's first event
        from_kept, passed = os.path.realpath(path) in self._kept, 0  # entries gone through, of a file kept at begin_job
        try:
            for chunk in self._chunks(path, start, stop):
                keep = checker.first_seen(chunk.keys) if checking and chunk.keys is not None else None
                selected = self._selection.mask(*event_id_arrays(chunk)) if self._selection else None
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
                count_lumis(lumis, chunk, used, handed_out(keep, selected, used))
                passed += used
                first += used
                chunk = None
                if self._stopping():
                    break  # not the next chunk: its events would be read and not processed
        except SourceError as exc:
            if not self.params.skipBadFiles:
                raise
            first_bad = exc.first_entry if exc.first_entry is not None else start
            self._skip_bad_file(path, str(exc), (first_bad, stop), self._count["read"] - read_before)
        finally:  # per range, not per event: the events of this range are the read counter's growth
            self._files_read[path] = self._files_read.get(path, 0) + self._count["read"] - read_before
            if chunk is not None:  # stopped inside a chunk (maxEvents, an error): its events handed out
                count_lumis(lumis, chunk, used, handed_out(keep, selected, used))
                passed += used
                self._next_entry = first + used
                self._next_id = chunk.ids[used] if used < len(chunk.ids) else None
            else:  # read through: the kept arrays are not needed for a peek (``_note_cut_short``)
                self._reading_kept = ("", None)
            if from_kept:
                with self._count_lock:
                    self._count["kept_entries_used"] += passed
            if not lumis:
                self._lumis_read.pop(path, None)

    def _stopping(self) -> bool:
        """The loop takes no new event (a signal, another stream's error): reading on would only read.
        Between events that is the loop's own check; this one is for a search that hands out none (a
        lumiMask, lumisToProcess or eventsToProcess selecting nothing further, duplicates, skipped bad
        files), which read every remaining file after a SIGTERM before the job could stop."""
        activity = self._ctx.activity
        return activity is not None and activity.draining()

    def _duplicate(self, event_id: EventID, path: str) -> None:
        self._count["duplicates"] += 1
        if self._named_duplicates < 5:
            self._named_duplicates += 1
            log.warning("source: duplicate event %s in %s skipped (duplicateCheckMode: %s)%s", event_id, path,
                        self.params.duplicateCheckMode, "; further duplicates are only counted"
                        if self._named_duplicates == 5 else "")

    def accounting(self) -> dict[str, Any]:
        """Counters of the whole job (or worker); ``files_read`` maps each input to the events read."""
        return {**self._count, "files_read": dict(self._files_read), "bad_entries_per_file": dict(self._bad_entries),
                "lumis_per_file": {path: dict(lumis) for path, lumis in self._lumis_read.items()},
                **({"lumis_cut_short": dict(self._cut_short)} if self._cut_short else {})}

    def data_quality(self) -> dict[str, int]:
        """What may be wrong with the input: ``invalid_links`` are links whose jet (or candidate) index
        is outside its collection; a jet index of -1 (``NO_JET``) is not among them (``accounting``'s
        ``links_to_no_jet``)."""
        c = self._count
        return {"invalid_links": c["invalid_links"], "jets_without_constituents": c["zero_constituent_jets"],
                "jets_with_nonfinite_pt": c["nonfinite_pt_jets"]}
