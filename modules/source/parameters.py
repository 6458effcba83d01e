"""The ROOT jet source's configuration: branch names and the ``source:`` block's parameters.

Apart from the source so that every part of it (checks, conversion, hints) reads the one definition
without importing the Source, and a user looking for ``source.branches.*`` finds only that here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hltrun.framework.lumimask import LumiMask, read_lumi_mask
from hltrun.framework.ranges import Selection
from hltrun.framework.schema import limited

from ..duplicates import Mode


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
    files: list[str]  # names, globs, and text lists of files (.txt, .list): source/file_list.py
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
    # a CMS certification ("Golden") JSON, as CRAB's lumiMask (framework/lumimask.py): only its lumi sections
    # are processed; with lumisToProcess, those of both (the mask narrows the ranges)
    lumiMask: str | None = None

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("files: give at least one ROOT file (globs allowed)")
        # the mask as read and checked here, once: the source selects with what was validated (no field: no key)
        self._lumi_mask: LumiMask | None = read_lumi_mask(self.lumiMask) if self.lumiMask is not None else None
        if self._lumi_mask is not None:
            # the file as found, absolute: a Dask worker started in another folder validates this configuration
            # again and must read the same file (as the units carry the inputs' paths the client checked)
            self.lumiMask = self._lumi_mask.path
        self.selection()  # a malformed range: one line naming it

    @property
    def lumi_mask(self) -> LumiMask | None:
        """The ``lumiMask`` file as read at validation (its path, sha256 and ranges); None: no mask."""
        return self._lumi_mask

    def selection(self) -> Selection:
        """What lumisToProcess, eventsToProcess and lumiMask select (ValueError naming a malformed range)."""
        return Selection.parse(self.lumisToProcess, self.eventsToProcess,
                               self.lumi_mask.ranges if self.lumi_mask is not None else ())

