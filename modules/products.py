"""Event products exchanged between the built-in modules (the data formats, in CMSSW terms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from .contract import Contract
    from .jets import InputSpec

# a producer's ``product_metadata`` key: {instance: the branch name NanoAOD gives it}, which an output
# writes it as when kept (the source's weight: {"weight": "genWeight"}); other kept products are <label>_*
NANOAOD_NAMES = "nanoaod_names"


class JetCollection:
    """One event's jets as cheap views into its chunk's arrays (no copy per event).

    ``pt``, ``eta``, ``phi``, ``mass``, ``n_constituents`` are per jet, in decreasing pT order.
    ``constituents`` is (n_jets, C, 3) float32 of (eta, phi, pT), each jet's constituents sorted by
    decreasing pT and zero-padded to C; ``n_constituents`` the real count before truncation to C.
    ``relative`` is the same with (eta - eta_jet, wrapped phi - phi_jet, pT).

    From the source, ``constituents`` and ``relative`` are padded for the whole chunk the first time
    any event asks (most paths never do); ``model_input`` returns what a consumer declared at
    begin_job (``hltrun.modules.jets.InputSpec``), prepared by the source per chunk for the selected jets
    only. A collection built by hand (tests, user code) carries its padded arrays itself.
    """

    __slots__ = ("_pt", "_eta", "_phi", "_mass", "_ncons", "_constituents", "_relative", "_chunk", "_index")
    COLUMNS = ("pt", "eta", "phi", "mass", "n_constituents")  # per-jet values an output module writes

    def __init__(self, pt: np.ndarray | None, eta: np.ndarray | None, phi: np.ndarray | None,
                 mass: np.ndarray | None, n_constituents: np.ndarray | None, constituents: np.ndarray | None = None,
                 relative: np.ndarray | None = None, *, chunk: Any = None, index: int = -1) -> None:
        self._pt, self._eta, self._phi, self._mass, self._ncons = pt, eta, phi, mass, n_constituents
        self._constituents, self._relative = constituents, relative
        self._chunk, self._index = chunk, index  # the source's chunk and this event's position in it

    @classmethod
    def view(cls, chunk: Any, index: int) -> "JetCollection":
        """Event ``index`` of a source chunk: per-jet arrays are sliced when first read (a path that
        only reads ``model_input`` never slices them). Made once per event, so it sets the slots
        itself rather than through ``__init__``'s keyword handling (0.36 -> 0.15 us)."""
        view = cls.__new__(cls)
        view._pt = view._eta = view._phi = view._mass = view._ncons = None
        view._constituents = view._relative = None
        view._chunk, view._index = chunk, index
        return view

    def _jets(self, name: str) -> np.ndarray:
        return self._chunk.jet_slice(name, self._index)

    @property
    def pt(self) -> np.ndarray:
        if self._pt is None:
            self._pt = self._jets("pt")
        return self._pt

    @property
    def eta(self) -> np.ndarray:
        if self._eta is None:
            self._eta = self._jets("eta")
        return self._eta

    @property
    def phi(self) -> np.ndarray:
        if self._phi is None:
            self._phi = self._jets("phi")
        return self._phi

    @property
    def mass(self) -> np.ndarray:
        if self._mass is None:
            self._mass = self._jets("mass")
        return self._mass

    @property
    def n_constituents(self) -> np.ndarray:
        if self._ncons is None:
            self._ncons = self._jets("ncons")
        return self._ncons

    @property
    def constituents(self) -> np.ndarray:
        if self._constituents is None:
            self._constituents = self._chunk.padded(self._index, relative=False)
        return self._constituents

    @property
    def relative(self) -> np.ndarray:
        if self._relative is None:
            if self._chunk is not None:
                self._relative = self._chunk.padded(self._index, relative=True)
            else:  # built by hand with constituents only: derive the jet-relative ones, as the source does
                from .jets import to_jet_relative

                self._relative = to_jet_relative(self.constituents, self.eta, self.phi)
        return self._relative

    def batch(self, spec: "InputSpec", more: Sequence["InputSpec"] = ()) -> "JetBatch":
        """The ``JetBatch`` of the jets ``spec`` selects (what the batcher puts): from the source, views
        of the chunk's prepared inputs (which the scorer's backend knows to be finite when the source
        vouched for them, ``hltrun.modules.finite.known_finite``). ``more``: other contracts over the
        same selection (two models on one batcher), carried by the batch beside the first."""
        if self._chunk is not None:
            prepared = self._chunk.prepare(spec)
            i = self._index
            inputs, mask, pt = prepared.event(i)
            truncated = prepared.truncated_in(i)
            if spec.contract is None and not more:  # the shipped input: as before
                return JetBatch(inputs, mask, pt, spec.relative, truncated)
            arrays = () if len(prepared.arrays) == 1 else prepared.event_arrays(i)
            others = {s.contract: self._chunk.prepare(s).event_arrays(i) for s in more} if more else None
            return DeclaredJetBatch(inputs, mask, pt, spec.relative, truncated, arrays, spec.contract, others)
        if spec.contract is not None or more:
            raise ValueError("a JetCollection built by hand holds the shipped input only; declared inputs "
                             "(input contracts) are prepared by the source")
        inputs, mask, pt = self.model_input(spec)
        rows = self._selected(spec)
        width = min(spec.n_constituents, (self.relative if spec.relative else self.constituents).shape[1])
        truncated = int(np.count_nonzero(np.asarray(self.n_constituents)[rows] > width))
        return JetBatch(inputs, mask, pt, spec.relative, truncated)

    def _selected(self, spec: "InputSpec") -> np.ndarray:
        """The rows ``spec`` selects of a collection built by hand."""
        from .jets import select_jets

        return select_jets(np.array([0, len(self.pt)]), self.pt, np.asarray(self.n_constituents), spec)[0]

    def model_input(self, spec: "InputSpec") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs (n, L, 3), mask (n, L), jet pT (n,)) of the jets ``spec`` selects: read-only views."""
        if self._chunk is not None:
            return self._chunk.model_input(spec, self._index)
        from .jets import fit_length

        rows = self._selected(spec)
        source = self.relative if spec.relative else self.constituents
        inputs = fit_length(source[rows], spec.n_constituents)
        return inputs, inputs[..., 2] > 0, self.pt[rows]

    def __len__(self) -> int:
        return len(self.pt)


@dataclass(frozen=True)
class JetBatch:
    """The model inputs for one event's selected jets.

    ``inputs`` is the first declared input: for the shipped models the only one, (n_jets, 100, 3)
    float32 (eta, phi, pT) — with ``relative`` the first two features are (eta - eta_jet, wrapped
    phi - phi_jet) — whose padded rows are all zeros and ``False`` in ``mask``. ``arrays`` holds every
    input the batcher's ``contract`` declares (``modules/contract.py``; None: the shipped one), in the
    model's input order; ``more`` the arrays of other contracts requested of the same batcher.
    """

    inputs: np.ndarray
    mask: np.ndarray
    jet_pt: np.ndarray
    relative: bool
    truncated: int = 0  # jets with more constituents than the input holds: their lowest-pT ones are left out
    # the shipped input's batch has no more (``DeclaredJetBatch`` has): class attributes, not fields, as
    # every field costs ~0.15 us per event to set in a frozen dataclass
    arrays: ClassVar[tuple[np.ndarray, ...]] = ()
    contract: ClassVar["Contract | None"] = None
    more: ClassVar["Mapping[Contract | None, tuple[np.ndarray, ...]] | None"] = None

    def __len__(self) -> int:
        return len(self.inputs)

    def arrays_for(self, contract: "Contract | None") -> tuple[np.ndarray, ...]:
        """The arrays of ``contract`` (None: the shipped input the batcher makes by itself)."""
        if contract is self.contract or contract == self.contract:
            return self.arrays or (self.inputs,)
        if self.more is not None and contract in self.more:
            return self.more[contract]
        raise KeyError(f"this batch holds no inputs for {contract}")


@dataclass(frozen=True)
class DeclaredJetBatch(JetBatch):
    """A ``JetBatch`` of declared inputs (``modules/contract.py``): ``arrays`` holds every input of its
    ``contract`` (empty: the one ``inputs``), ``more`` those of other contracts of the same batcher."""

    arrays: tuple[np.ndarray, ...] = field(default=(), metadata={"output": False})  # type: ignore[misc]
    contract: "Contract | None" = field(default=None, metadata={"output": False})  # type: ignore[misc]
    more: "Mapping[Contract | None, tuple[np.ndarray, ...]] | None" = field(  # type: ignore[misc]
        default=None, metadata={"output": False})


def all_valid(n: int) -> np.ndarray:
    """A read-only all-True mask of length n, for ``JetScores.valid`` when every jet is valid: made
    once per batch size (not once per event), so that ``is_all_valid`` can recognise it."""
    mask = _ALL_VALID.get(n)
    if mask is None:
        mask = np.ones(n, bool)
        mask.flags.writeable = False
        if n <= 1024:
            _ALL_VALID[n] = mask
    return mask


def is_all_valid(mask: np.ndarray) -> bool:
    """True if ``mask`` is one of ``all_valid``'s shared all-True masks: then no jet needs counting or
    removing, and consumers skip that per-event work. Any other mask (even all True) says nothing."""
    return _ALL_VALID.get(len(mask)) is mask


_ALL_VALID: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class JetScores:
    """Per-jet anomaly scores from a VAE: ``score`` (reconstruction distance) and ``kl`` (beta*KL).

    ``valid`` is False for jets whose input was not finite (their score is the documented fill value).
    ``model`` names the model that made the scores and ``thresholds`` are that model's cuts from its
    card (``bkg_eff_1e-2`` -> score, and ``vs_leading_jet_pt`` -> the card's pT-dependent cuts as a
    ``hltrun.modules.working_point.PtCuts``): thresholds travel with the scores, so a filter can never
    cut on another model's scale. Both are shared references, not per-event copies.
    ``jet_pt`` is the pT [GeV] of each scored jet (a view of the batch's), so a pT-dependent working
    point uses the kinematics of exactly the jets that were scored; it is not written to outputs
    (``output: False``: it is the source's jet pT, not something the scorer computed).
    """

    score: np.ndarray
    kl: np.ndarray | None = None
    valid: np.ndarray | None = None
    model: str | None = None
    thresholds: Mapping[str, Any] | None = None
    jet_pt: np.ndarray | None = field(default=None, metadata={"output": False})
    extras: ClassVar[Mapping[str, np.ndarray] | None] = None  # ``JetScoresWithExtras`` has them

    def __len__(self) -> int:
        return len(self.score)


@dataclass(frozen=True)
class JetScoresWithExtras(JetScores):
    """``JetScores`` plus the model's other outputs the scorer's ``outputs`` mapping names (role -> per-jet
    values), each written as its own column, ``<label>_<role>``."""

    extras: Mapping[str, np.ndarray] | None = field(default=None, metadata={"expand": True})  # type: ignore[misc]
