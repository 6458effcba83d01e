"""The file check: every input opened once and checked before the first event, and what the consumers read.

Apart from the loop's reads: a bad file among good ones must fail (or, with ``skipBadFiles``, be
skipped) at begin_job, not hours into the job; this is all of begin_job's per-file work. ``FileChecks``
is a part of ``RootJetSource``: it uses the source's parameters, counters and kept files, and the
decompression pools of ``ChunkReading``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Iterable

import awkward as ak

from hltrun.framework.errors import ConfigError, SourceError, one_line

from ..decompression import TimedPool
from ..jets import requested_specs
from .event_ids import id_columns, weight_values
from .file_list import input_files
from .hints import MISSING_FEATURE, refuse_foreign_links, refuse_missing, refuse_pooled_candidates
from .layout import (check_collections, check_event_values, check_links, collections_of, constituents_per_jet,
                     refuse_per_event, same_counts)
from .tree import branch_names, first_basket_end, has, link_names, read_columns, refuse_cut_short

if TYPE_CHECKING:
    from ..jets import InputSpec

log = logging.getLogger("hltrun")
KEEP_BYTES = 256 * 2**20  # uncompressed bytes the file check may keep in memory for the loop, in all


def nowhere(line: str) -> ConfigError:
    """A declared feature's missing-branch ``line`` (``refuse_missing``) when no input file has it: the
    feature's name is wrong, not the files."""
    them = "them" if "inputs: features " in line else "it"
    return ConfigError(line.replace("source: ", "", 1) + f"; no input file has {them}: fix the feature name, or read "
                       f"files that have {them} (derived features and branches: docs/your-model.md)")


class FileChecks:
    """begin_job's checks of every input file, and of the consumers' extra branches (``consumers_known``)."""

    def consumers_known(self) -> None:
        """The extra branches the consumers' input contracts read (a charge, a PUPPI weight, a jet's
        tau21) must exist in every file, in the collection they belong to: checked now, before the
        first event, with the line ``_check_tree`` gives a missing branch, and without opening the files
        again (each was opened two or three times at begin_job; an open costs 10-100 ms on EOS): their
        presence from the branch names the file check recorded, their lengths on the first file (held
        open since its check) and on every chunk the loop reads. A file begin_job kept whole gets them
        read when the loop reaches it (the first one now, from its open handle)."""
        held, self._held = self._held, None
        try:
            self._check_declared_inputs(held)
        finally:
            if held is not None:
                held[1].file.close()

    def _check_declared_inputs(self, held: tuple[str, Any] | None) -> None:
        jet, cand, event = set(), set(), set()
        specs = requested_specs(self._requests)
        for spec in specs:
            jet.update(spec.inputs.jet_branches())
            cand.update(spec.inputs.constituent_branches())
            event.update(spec.inputs.event_branches())
        self._refuse_narrower_than(specs)
        self._refuse_no_jet_mass(specs)
        self._extra_jet, self._extra_cand = tuple(sorted(jet)), tuple(sorted(cand))  # a kinematic one is read once
        self._extra_event = tuple(sorted(event))
        extra = self._declared_branches()
        if not extra:
            return
        # per listing, as begin_job counts (a file listed twice, allowDuplicateFiles, is two files of the job):
        # listing index -> why it cannot give the declared inputs; a file is opened once for all its listings
        bad: dict[int, str] = {}
        found: dict[str, str | None] = {}  # real path -> why (None: it gives them)
        checked = 0
        with self.bulk_io():
            for index, path in enumerate(self.files):
                real = os.path.realpath(path)
                if real not in self._names:  # past maxEvents, or a Dask worker's: checked, with them, when reached
                    continue
                checked += 1
                if real not in found:
                    found[real] = self._declared_problem(path, real, held, extra)
                if found[real] is not None:
                    bad[index] = found[real]
        if not bad:
            return
        if len(bad) == checked and all(MISSING_FEATURE in why for why in bad.values()):  # no file has it
            raise nowhere(next(iter(bad.values())))
        if not self.params.skipBadFiles:
            raise SourceError(next(iter(bad.values())))
        for index, why in bad.items():  # as begin_job skips a bad file: each listing named, counted, not read
            path = self.files[index]
            self._skip_bad_file(path, why)
            self._kept.pop(os.path.realpath(path), None)
            self.entries.pop(path, None)
        self.files = [f for index, f in enumerate(self.files) if index not in bad]
        self._count["files"] = len(self.files)
        self._count["entries_in_files"] = sum(self.entries.get(f, 0) for f in self.files)

    def _declared_problem(self, path: str, real: str, held: tuple[str, Any] | None, extra: list[str]) -> str | None:
        """Why the file at ``path`` cannot give the declared inputs' branches ``extra`` (None: it can)."""
        names = self._names.get(real)
        try:
            if held is not None and real == held[0]:
                self._check_declared(held[1], path, extra)
            elif names is None or not all(name in names for name in extra):
                tree = self._open_tree(path)  # one lacks them: the tree's own line says which
                try:
                    self._check_declared(tree, path, extra)
                finally:
                    tree.file.close()
        except SourceError as exc:
            return str(exc)
        return None

    def _check_declared(self, tree: Any, path: str, extra: list[str]) -> None:
        """The declared branches ``extra`` in the open ``tree``: there, and in their collections over the
        first 50 entries; a file kept whole gets them read whole, once, for the loop."""
        refuse_missing(tree, extra, path, self.params, extra)
        kept = self._kept.get(os.path.realpath(path))
        try:
            # a file kept whole is one basket per branch: its first 50 entries cost the whole
            # basket's decompression, so the branches are read whole once (it was read twice)
            stop = None if kept is not None else min(50, int(tree.num_entries))
            arrays = read_columns(tree, extra, stop=stop)
            b = self.params.branches
            reference = kept if kept is not None else read_columns(tree, [b.jet_pt, b.cand_pt],
                                                                   stop=min(50, len(arrays)))
            self._check_declared_layout(arrays[:50], extra, path, reference)
            if kept is not None:
                for name in extra:
                    kept[name] = arrays[name]
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"source: cannot read the declared inputs' branches {extra} of {path}: "
                              f"{type(exc).__name__}: {one_line(exc, 'corrupt data')}") from exc

    def _refuse_no_jet_mass(self, specs: "Iterable[InputSpec]") -> None:
        """``jet_mass: null`` (a file without one, as the source allows) reads every jet mass as 0: a model
        declaring the jet mass, or an energy computed from it, got those zeros, exit 0, without a word."""
        if self.params.branches.jet_mass:
            return
        read = list(dict.fromkeys(f for spec in specs for f in spec.inputs.jet_mass_features()))
        if read:
            raise ConfigError(f"source.branches.jet_mass: null, but a model's declared inputs read "
                              f"{', '.join(read)}, which need the jet mass (0 for every jet without it): set it to "
                              f"the file's jet-mass branch, or declare features that do not need it "
                              f"(docs/your-model.md)")

    def _refuse_narrower_than(self, specs: "Iterable[InputSpec]") -> None:
        """A consumer's input wider than ``max_constituents``: the source keeps at most that many
        constituents per jet, so the rows past it would be zero padding where the model expects the
        jet's softer constituents (a 128-wide model got 100 and 28 rows of zeros, without a word)."""
        widest = max((spec.width for spec in specs), default=0)
        limit = self.params.max_constituents
        if widest > limit:
            raise ConfigError(f"source.max_constituents: {limit}, but a consumer's input holds {widest} constituents "
                              f"per jet (a model's declared input or modules.<batcher>.n_constituents); the rows past "
                              f"{limit} would be padding, not the jet's constituents: set "
                              f"source.max_constituents={widest}")

    def _open_inputs(self, needed: int | None, keep: bool, planning: bool = False) -> None:
        """begin_job's work: ``needed`` entries (None: all) are checked; files past them are not opened, as
        cmsRun opens no file that maxEvents does not reach (on EOS an open costs 10-100 ms; a bad file
        there failed a job that never needed it): the loop opens and checks one if it reaches it.
        ``planning``: the Dask client's plan (``plan_inputs``), which holds no file open for the consumers."""
        self._keep = keep
        self._list_inputs()
        good = []
        checked: dict[str, int] = {}  # a file read again on purpose (allowDuplicateFiles) is checked once
        for path in self.files:
            try:
                real = os.path.realpath(path)
                if needed is not None and needed <= 0 and real not in checked:
                    self._deferred.setdefault(real, []).append(path)
                    good.append(path)
                    continue
                if real not in checked:  # the first good file stays open until the consumers are known
                    checked[real] = self._check_file(path, keep=self._keep, hold=self._held is None and not planning)
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
        # per listing: a file listed twice (allowDuplicateFiles) is read twice, so its entries count twice, as
        # events read does and a Dask plan does (keyed by path, they counted once: 500 in files, 1000 read)
        self._count["entries_in_files"] = sum(self.entries.get(f, 0) for f in self.files)
        self._count["files_not_opened"] = sum(f not in self.entries for f in self.files)
        log.debug("source: %d file(s), %d entries, %d file(s) past maxEvents not opened", len(self.files),
                  self._count["entries_in_files"], self._count["files_not_opened"])

    def _list_inputs(self) -> None:
        """The input files as listed (globs expanded, text lists read), none opened; a file listed twice
        refused unless ``allowDuplicateFiles``."""
        listed: dict[str, str] = {}
        for path in input_files(self.params.files):
            real = os.path.realpath(path)
            if real in listed and not self.params.allowDuplicateFiles:
                raise ConfigError(f"source.files: {path} is listed twice (also as {listed[real]}); "
                                  f"set source.allowDuplicateFiles: true to read it again")
            listed.setdefault(real, path)
            self.files.append(path)

    def _unit_file(self, path: str) -> bool:
        """A Dask worker's check of a work unit's file, when it first reaches it (the client checked every
        input when it planned the units; begin_job on a worker opens none: each of N workers opened every
        file of the job, N x files opens before the first event, where it reads only its units' files).
        Checked as begin_job checks a file, the consumers' branches included; False: it is bad and was
        skipped whole (``skipBadFiles``), as were its other units on this worker; else SourceError (or
        ConfigError: a declared feature no input file has, as ``consumers_known`` says it locally)."""
        real = os.path.realpath(path)
        if real not in self._unit_checks:
            try:
                with self.bulk_io():
                    self._check_file(path)
                self._unit_checks[real] = None
            except SourceError as exc:
                self._unit_checks[real] = str(exc)
                if MISSING_FEATURE in str(exc) and not self._declared_somewhere(real):
                    raise nowhere(str(exc)) from None
                if not self.params.skipBadFiles:
                    raise
                self._skip_bad_file(self._listing(real, path), str(exc))
        return self._unit_checks[real] is None

    def _declared_somewhere(self, bad: str) -> bool:
        """Whether an input other than ``bad`` (a real path) has the consumers' declared branches: a file
        this worker checked, or else the first of the listed files found with them (opened one by one, only
        here: a declared feature that the first file reached lacks)."""
        if any(why is None for why in self._unit_checks.values()):
            return True
        extra = self._declared_branches()
        for path in self.files:
            real = os.path.realpath(path)
            if real == bad or real in self._unit_checks:
                continue
            try:
                tree = self._open_tree(path)
            except SourceError:
                continue
            try:
                if all(has(tree, name) for name in extra):
                    return True
            finally:
                tree.file.close()
        return False

    def _listing(self, real: str, path: str) -> str:
        """The input as listed (the name the reports give it) that is the file at ``real``; else ``path``."""
        return next((f for f in self.files if os.path.realpath(f) == real), path)

    def _reach(self, path: str) -> None:
        """The loop reaches ``path``: a file begin_job did not open (past maxEvents) is opened and checked
        now as begin_job checks the others, the consumers' branches included (bulk I/O); SourceError if it
        is bad. Its entries are then known (``entries``) and count in ``entries_in_files``."""
        real = os.path.realpath(path)
        if real not in self._deferred:
            return
        try:
            with self.bulk_io():
                n = self._check_file(path)
        except SourceError:  # reached and bad: no longer "not opened" (a job it stops must not say so)
            listings = self._deferred[real]
            if path in listings:  # a listing of it not reached yet is checked when reached
                listings.remove(path)
                self._count["files_not_opened"] -= 1
            if not listings:
                del self._deferred[real]
            raise
        listings = self._deferred.pop(real)  # every listing of the file (allowDuplicateFiles): now known
        for listed in listings:
            if listed not in self.entries:
                self.entries[listed] = n
        self._count["entries_in_files"] += n * len(listings)
        self._count["files_not_opened"] -= len(listings)

    def _skip_reached(self, path: str, reason: str) -> None:
        """A file past maxEvents, reached and found bad (``skipBadFiles``): skipped whole, as begin_job
        skips a bad file (its entries were never known), and no longer among the job's files."""
        self._skip_bad_file(path, reason)  # ``_reach`` took it out of the files not opened
        self.files.remove(path)
        self._count["files"] = len(self.files)

    def _count_entries(self, path: str) -> int:
        tree = self._open_tree(path)
        try:
            return int(tree.num_entries)
        finally:
            tree.file.close()

    def _check_file(self, path: str, keep: bool = False, hold: bool = False) -> int:
        """Open ``path``, check its tree, branches and layout, and read its first and last entries
        (``keep``: keep the arrays when that read the whole file anyway, for the loop's first chunks).
        Its branch names are recorded for ``consumers_known``; ``hold``: leave it open for that (``_held``)."""
        tree = self._open_tree(path)
        pool, failed = self._pool(), True
        try:
            n = self._check_tree(tree, path, keep, pool)
            names = branch_names(tree)
            self._names[os.path.realpath(path)] = self._name_sets.setdefault(names, names)  # one per schema
            failed = False
            return n
        finally:
            if pool is not None:
                pool.close(failed)
            if hold and not failed:
                self._held = (os.path.realpath(path), tree)
            elif self._open_files is not None and not failed:  # a Dask worker's unit file: its read is next
                self._open_files.give(os.path.realpath(path), tree)
            else:
                tree.file.close()  # no open file (and its memory map) per input until the loop reaches it

    def _check_tree(self, tree: Any, path: str, keep: bool = False, pool: TimedPool | None = None) -> int:
        refuse_cut_short(tree, path)  # before any read: a file cut in its last bytes reads whole, and is not
        extra = tuple(self._declared_branches())  # the declared ones apart: their line is consumers_known's
        earlier = {p: names for p, names in self._names.items() if p != os.path.realpath(path)}
        refuse_missing(tree, [name for name in self._branch_names() if name not in extra], path, self.params, extra,
                       earlier)
        refuse_missing(tree, list(extra), path, self.params, extra)
        if self.params.layout == "jet_index":
            refuse_foreign_links(lambda: link_names(tree), self.params.branches, path)
        elif self.params.layout == "counts":
            refuse_pooled_candidates(link_names(tree), self.params.branches, path)
        n = int(tree.num_entries)
        if n == 0:
            return 0
        head = min(n, 50)
        names = self._read_names(tree, path)
        # the last entry of a branch whose first basket holds every entry was decompressed with the
        # head already: reading it again would decompress the whole basket a second time
        tail = [name for name in names if first_basket_end(tree[name]) < n]
        size = sum(tree[name].uncompressed_bytes for name in names) if keep and not tail else 0
        whole = keep and not tail and self._kept_bytes + size <= KEEP_BYTES
        if whole:  # one basket per branch: the head read decompresses the whole file, keep it all
            head = n
        for start, stop, branches in ((0, head, names), (max(head, n - 1), n, tail)):
            if start >= stop or not branches:
                continue
            cpu_before = self._count["decompression_cpu_ns"]
            try:  # a whole file kept for the loop is the loop's read done early: bulk I/O
                with self._bulk(pool) if whole and start == 0 else self._pool_cpu(pool):
                    arrays = read_columns(tree, branches, start, stop, pool)
            except Exception as exc:
                raise SourceError(f"source: cannot read entries {start}-{stop} of {path}: {type(exc).__name__}: "
                                  f"{one_line(exc, 'corrupt data')}") from exc
            id_columns(arrays, self.params.branches, path, start)  # ids and weight: every entry read here (vectorised)
            weight = self.params.branches.weight
            if weight and weight in arrays.fields:
                weight_values(arrays[weight], weight, path, start)
            if start == 0:
                self._check_layout(arrays[:50], path)
                if whole:
                    self._kept[os.path.realpath(path)] = arrays
                    self._kept_bytes += size
                    with self._count_lock:
                        self._count["kept_entries"] += n
                        self._count["kept_decompression_cpu_ns"] += self._count["decompression_cpu_ns"] - cpu_before
        return n

    def _check_layout(self, arrays: ak.Array, path: str) -> None:
        """Branches that belong to one collection must have the same length in every event; a
        ``jet_index`` layout whose links index another collection needs ``cand_index``."""
        b, layout = self.params.branches, self.params.layout
        if layout == "jet_index":  # first: a wrong setting, named as such before the lengths are compared
            check_links(arrays, b, path)
        check_collections(arrays, collections_of(b, layout, self._extra_jet, self._extra_cand), path, 0)
        check_event_values(arrays, self._extra_event, path, 0)
        if layout == "counts":  # a file whose counts are wrong from the start fails before the job
            constituents_per_jet(arrays, b, path, 0)

    def _check_declared_layout(self, arrays: ak.Array, names: list[str], path: str, reference: ak.Array) -> None:
        """Each declared branch ``names`` of ``arrays`` against its collection's first branch in ``reference``
        (the same file's first entries, at least as many)."""
        b = self.params.branches
        check_event_values(arrays, [name for name in names if name in self._extra_event], path)
        for name in names:
            if name in self._extra_event:
                continue
            ref = b.jet_pt if name in self._extra_jet else b.cand_pt
            kind = "jet" if ref == b.jet_pt else "constituent"
            got, want = arrays[name], reference[ref][:len(arrays)]
            refuse_per_event(got, name, kind, ref, path, declared=True)
            if got.ndim != want.ndim or not same_counts(got, want):
                raise SourceError(f"source: branch '{name}' (a {kind} feature of a model's declared inputs) is "
                                  f"not in the {kind} collection of '{ref}' in {path}: it differs in length")
