"""The in-memory chunk: one chunk's jets and constituents as flat numpy arrays, events as views into them.

Apart from the reading and the conversion: this is what events and the batcher see (``JetCollection``
views, model inputs prepared once per chunk), whatever the file's layout was; tools and tests build
chunks directly with ``make_chunk``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..jets import (InputSpec, ModelInputs, build_inputs, pad_constituents, select_jets, to_jet_relative,
                    truncated_per_event)
from ..products import JetCollection


class Chunk:
    """One chunk converted to flat numpy arrays; ``event(i)`` returns views only.

    Jets are sorted (decreasing pT within each event) at once; constituents stay flat as read. What
    consumers declared (``InputSpec``) is prepared eagerly for the selected jets only; the fully
    padded ``constituents``/``relative`` arrays of every jet are built the first time anyone asks.
    """

    __slots__ = ("jet_offsets", "pt", "eta", "phi", "mass", "ncons", "ids", "keys", "id_arrays", "_flat", "_order",
                 "_max_constituents", "_inputs", "_padded", "_lock", "jet_branches", "cand_branches", "event_branches",
                 "weights")

    def __init__(self, jet_offsets, pt, eta, phi, mass, ncons, ids, keys, flat, order, max_constituents,
                 jet_branches=None, cand_branches=None, event_branches=None) -> None:
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
        # and per event (one value each, in the chunk's event order), repeated for each selected jet of the event
        self.event_branches: dict[str, np.ndarray] = event_branches or {}
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
                event_of_row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
                inputs, mask = build_inputs(self._order[rows], jet_of_cand, len(self._order), ceta, cphi, cpt,
                                            self.eta[rows], self.phi[rows], self._max_constituents, spec,
                                            lambda name: per_jet[name][rows], self.cand_branches.__getitem__,
                                            lambda name: self.event_branches[name][event_of_row])
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
               cand_branches: dict[str, np.ndarray] | None = None,
               event_branches: dict[str, np.ndarray] | None = None) -> Chunk:
    """A chunk from flat per-jet arrays (events' jets contiguous, in file order) and the flat
    constituents ``(jet_of_cand, eta, phi, pt)``, with the extra per-jet, per-constituent and per-event
    branches the input contracts read; the inputs of ``specs`` are prepared now."""
    ncons = np.bincount(flat[0], minlength=len(jet_pt)).astype(np.int32)
    # jets in decreasing pT within each event (NanoAOD already is; other ntuples may not be)
    event_of_jet = np.repeat(np.arange(len(jet_offsets) - 1), np.diff(jet_offsets))
    order = np.lexsort((-jet_pt, event_of_jet))
    chunk = Chunk(jet_offsets, jet_pt[order], jet_eta[order], jet_phi[order], jet_mass[order], ncons[order],
                   ids, keys, flat, order, max_constituents,
                   {name: values[order] for name, values in (jet_branches or {}).items()}, cand_branches,
                   event_branches)
    for spec in specs:  # what the path reads, prepared with the chunk (bulk work, not per event)
        chunk.prepare(spec)
    return chunk


def chunk_counts() -> dict[str, int]:
    """The counter increments one chunk brings, filled while it is read and converted and added to
    the source's counters when the loop takes the chunk (a chunk read ahead and dropped adds none)."""
    return {"chunks": 1, "invalid_links": 0, "links_to_no_jet": 0, "zero_constituent_jets": 0,
            "nonfinite_pt_jets": 0, "decompression_cpu_ns": 0}
