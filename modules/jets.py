"""Vectorised per-chunk jet preparation shared by the source, the batcher and training tools.

Everything here works on whole chunks (thousands of events) with numpy, so the per-event work in the
event loop is only slicing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .contract import Contract, ModelInput, default_contract
from .features import ConstituentColumns, jet_column, wrap_phi
from .finite import vouch_finite

__all__ = ["wrap_phi"]  # re-exported: older callers import it from here


def pad_constituents(jet_of_cand: np.ndarray, eta: np.ndarray, phi: np.ndarray, pt: np.ndarray,
                     n_jets: int, max_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """Group flat constituents by jet, sort each jet's by decreasing pT, zero-pad/truncate.

    Returns the (n_jets, max_constituents, 3) float32 array of (eta, phi, pT) and the per-jet
    number of constituents before truncation.
    """
    order = _order_by_jet_then_pt(jet_of_cand, pt)
    jet_sorted = jet_of_cand[order]
    counts = np.bincount(jet_sorted, minlength=n_jets)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(order)) - np.repeat(starts, counts)
    keep = position < max_constituents
    out = np.zeros((n_jets, max_constituents, 3), dtype=np.float32)
    rows, cols, src = jet_sorted[keep], position[keep], order[keep]
    out[rows, cols, 0] = eta[src]
    out[rows, cols, 1] = phi[src]
    out[rows, cols, 2] = pt[src]
    return out, counts.astype(np.int32)


def _order_by_jet_then_pt(jet_of_cand: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """Permutation grouping constituents by jet with decreasing pT; cheap when already so ordered.

    NanoAOD-like files already store constituents jet by jet, sorted by pT: checking that costs two
    vectorised comparisons, where a full lexsort of a chunk's constituents costs most of the chunk.
    """
    order = _jet_pt_order(jet_of_cand, pt)
    return np.arange(len(pt)) if order is None else order


def _jet_pt_order(jet_of_cand: np.ndarray, pt: np.ndarray) -> np.ndarray | None:
    """``_order_by_jet_then_pt``, or None where the constituents are already so ordered."""
    same_jet = jet_of_cand[1:] == jet_of_cand[:-1]
    grouped = bool(np.all(jet_of_cand[1:] >= jet_of_cand[:-1]))
    if grouped and not np.any(same_jet & (pt[1:] > pt[:-1])):
        return None
    if pt.dtype != np.float32:  # the key holds float32 bits
        return np.lexsort((-pt, jet_of_cand))
    return np.argsort(_jet_pt_key(jet_of_cand, pt), kind="stable")


def _jet_pt_key(jet_of_cand: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """One uint64 per constituent that sorts as ``np.lexsort((-pt, jet_of_cand))`` does: the jet in
    the high 32 bits, -pT's float32 bits made monotonic in the low ones (-0.0 as 0.0, every NaN last,
    as numpy sorts them). One stable sort of it is 2-9x faster than the two-key lexsort."""
    negative = -pt + np.float32(0.0)  # -0.0 + 0.0 == +0.0
    bits = negative.view(np.uint32)
    low = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    low[np.isnan(negative)] = np.uint32(0xFFFFFFFF)
    return (jet_of_cand.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)


def to_jet_relative(constituents: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray) -> np.ndarray:
    """(eta, phi, pT) -> (eta - eta_jet, wrapped phi - phi_jet, pT); padded rows stay all zero."""
    out = constituents.copy()
    real = out[..., 2] > 0
    out[..., 0] = np.where(real, out[..., 0] - jet_eta[:, None], 0.0)
    out[..., 1] = np.where(real, wrap_phi(out[..., 1] - jet_phi[:, None]), 0.0)
    return out


def fit_length(constituents: np.ndarray, length: int) -> np.ndarray:
    """Truncate or zero-pad the constituent axis (axis 1) to ``length``."""
    n = constituents.shape[1]
    if n == length:
        return constituents
    if n > length:
        return constituents[:, :length]
    pad = np.zeros((constituents.shape[0], length - n, constituents.shape[2]), dtype=constituents.dtype)
    return np.concatenate([constituents, pad], axis=1)


@dataclass(frozen=True)
class InputSpec:
    """What a consumer reads of a jet collection: the model inputs of the leading jets.

    ``max_jets`` leading jets that have constituents (0: all), those with pT >= ``min_jet_pt`` when it
    is > 0; for each, the inputs ``contract`` declares (``modules/contract.py``: per input its features,
    constituent count, padding, order and layout). Without a contract: the shipped one, one
    (n, ``n_constituents``, 3) input of (Δη, Δφ, pT) (or (η, φ, pT) unless ``relative``). A consumer
    requests it at begin_job (``ModuleContext.request``) so the source prepares exactly that, per
    chunk, and nothing else.
    """

    max_jets: int
    n_constituents: int
    relative: bool
    min_jet_pt: float = 0.0
    contract: Contract | None = None

    def __post_init__(self) -> None:  # looked up in the chunk's cache once per event: hashed once
        object.__setattr__(self, "_hash", hash((self.max_jets, self.n_constituents, self.relative, self.min_jet_pt,
                                                self.contract)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined, no-any-return]

    @property
    def inputs(self) -> Contract:
        return self.contract if self.contract is not None else default_contract(self.n_constituents, self.relative)

    @property
    def width(self) -> int:
        """Constituent rows read per jet (truncation beyond them is counted)."""
        return self.contract.n_constituents if self.contract is not None else self.n_constituents


class ModelInputs:
    """One chunk's model inputs for one ``InputSpec``: events get read-only views (no per-event work).

    ``arrays``: one array per declared input, in the contract's order; ``inputs`` is the first (the
    only one of the shipped models). ``mask`` marks the rows of the first constituent input that hold a
    constituent. ``finite``: every value of every array is finite, checked here once for the whole
    chunk and vouched for by its memory (``finite.vouch_finite``), so that the scorer's backend can
    skip its per-event check on the events' views; False: some jet of the chunk is not (or the memory
    could not be vouched for), and every event's jets are checked one by one as before."""

    __slots__ = ("arrays", "inputs", "mask", "pt", "offsets", "finite", "truncated")

    def __init__(self, inputs: np.ndarray | tuple[np.ndarray, ...], mask: np.ndarray, pt: np.ndarray,
                 offsets: np.ndarray, truncated: np.ndarray | None = None) -> None:
        arrays = inputs if isinstance(inputs, tuple) else (inputs,)
        for shared in (*arrays, mask, pt):
            shared.flags.writeable = False
        self.arrays, self.inputs = arrays, arrays[0]
        self.mask, self.pt, self.offsets = mask, pt, offsets
        self.finite = all([vouch_finite(a) for a in arrays])
        self.truncated = truncated  # per event: selected jets with more constituents than the input holds

    def event(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.inputs[a:b], self.mask[a:b], self.pt[a:b]

    def event_arrays(self, i: int) -> tuple[np.ndarray, ...]:
        """Event ``i``'s part of every input array (views)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return tuple([x[a:b] for x in self.arrays])

    def truncated_in(self, i: int) -> int:
        return 0 if self.truncated is None else int(self.truncated[i])


def truncated_per_event(n_constituents: np.ndarray, offsets: np.ndarray, limit: int) -> np.ndarray | None:
    """Per event, the selected jets (``n_constituents`` of each, events' jets at ``offsets``) with
    more than ``limit`` constituents, whose lowest-pT ones the input leaves out; None if there is none."""
    over = n_constituents > limit
    if not over.any():
        return None
    cum = np.concatenate([[0], np.cumsum(over)])
    return cum[offsets[1:]] - cum[offsets[:-1]]


def select_jets(jet_offsets: np.ndarray, pt: np.ndarray, n_constituents: np.ndarray,
                spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The jets ``spec`` takes from each event, vectorised over a chunk of events.

    ``pt``/``n_constituents`` are per jet, events' jets contiguous (``jet_offsets``) and in decreasing
    pT. Per event: the jets with constituents and a finite pT (one whose pT is NaN or infinite cannot
    be ranked: it is left out and counted by the source, as a jet without constituents is), in order;
    the first ``max_jets`` (0: all) of them, and no more than the number of those with pT >=
    ``min_jet_pt`` (if > 0). Returns the selected jet indices (event by event, in order) and per-event
    offsets into them.
    """
    n_events = len(jet_offsets) - 1
    event = np.repeat(np.arange(n_events), np.diff(jet_offsets))
    real = (n_constituents > 0) & np.isfinite(pt)
    cum = np.cumsum(real)
    before = np.concatenate([[0], cum])[jet_offsets[:-1]]  # jets with constituents before each event
    rank = cum - 1 - before[event]  # position among its event's jets with constituents
    limit = np.bincount(event[real], minlength=n_events)
    if spec.max_jets:
        limit = np.minimum(limit, spec.max_jets)
    if spec.min_jet_pt > 0:
        limit = np.minimum(limit, np.bincount(event[real & (pt >= spec.min_jet_pt)], minlength=n_events))
    chosen = real & (rank < limit[event])
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(np.bincount(event[chosen], minlength=n_events), out=offsets[1:])
    return np.flatnonzero(chosen), offsets


def build_inputs(jets: np.ndarray, jet_of_cand: np.ndarray, n_jets: int, eta: np.ndarray, phi: np.ndarray,
                 pt: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray, max_constituents: int,
                 spec: InputSpec, jet_values: Callable[[str], np.ndarray] | None = None,
                 cand_branch: Callable[[str], np.ndarray] | None = None,
                 event_values: Callable[[str], np.ndarray] | None = None) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The inputs ``spec`` declares for the jets ``jets`` only, and the mask of the first constituent input.

    ``jet_of_cand`` maps each flat constituent to its jet (0..n_jets-1, any order); ``jet_eta`` and
    ``jet_phi`` are the axes of the selected jets (row by row), ``jet_values(name)`` any other per-jet
    value of them (pt, mass, ncons, a jet branch), ``cand_branch(name)`` a constituent branch, flat like
    ``pt``, ``event_values(name)`` a per-event branch's value of each selected jet's event (row by row).
    Only the constituents of the selected jets are sorted and scattered; the shipped input's values are
    those of ``pad_constituents`` + ``to_jet_relative`` + ``fit_length``, bit for bit (the same float32
    operations on the same values).
    """
    contract = spec.inputs
    n = len(jets)
    width = contract.n_constituents
    orders = {i.order for i in contract.inputs if i.kind == "constituents"}
    if len(orders) > 1:
        raise ValueError(f"inputs: constituent inputs of one model must share one order, got {sorted(orders)}")
    row, position, src = _rows(jets, jet_of_cand, n_jets, pt, min(max_constituents, width) if width else 0,
                               orders.pop() if orders else "pt")

    def take(values: np.ndarray) -> np.ndarray:
        return values if src is None else values[src]

    per_jet = {"eta": jet_eta, "phi": jet_phi}

    def jet_value(name: str) -> np.ndarray:
        if name not in per_jet:
            if jet_values is None:
                raise ValueError(f"jet value {name!r} is not available here")
            per_jet[name] = jet_values(name)
        return per_jet[name]

    def missing_branch(name: str) -> np.ndarray:
        raise ValueError(f"constituent branch {name!r} is not available here")

    def missing_event_value(name: str) -> np.ndarray:
        raise ValueError(f"per-event branch {name!r} is not available here")

    columns = ConstituentColumns(take(pt), take(eta), take(phi), lambda name: jet_value(name)[row],
                                 lambda name: take((cand_branch or missing_branch)(name)))
    arrays, mask = [], None
    for decl in contract.inputs:
        if decl.kind != "constituents":  # jet, event: one row per jet, a per-event value repeated for its jets
            out = np.empty((n, decl.width), np.float32)
            for k, name in enumerate(decl.features):
                out[:, k] = (event_values or missing_event_value)(name) if name in decl.per_event \
                    else jet_column(name, jet_value)
            arrays.append(out)
            continue
        out, occupied = _scatter(columns, row, position, n, decl, mask is None and not contract.is_shipped())
        if mask is None:
            mask = occupied
        arrays.append(out)
    if contract.is_shipped():  # as before the contract: a constituent with pT <= 0 counts as padding
        mask = arrays[0][..., 2] > 0
    elif mask is None:
        mask = np.ones((n, 0), bool)
    return tuple(arrays), mask


def _rows(jets: np.ndarray, jet_of_cand: np.ndarray, n_jets: int, pt: np.ndarray, limit: int,
          order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(row, position, src) of the constituents kept: per kept constituent its row (the selected jet),
    its position in that jet (pT order, or as stored) and its index in the flat arrays (None: all, as
    they are). Constituents past ``limit`` per jet are left out."""
    n = len(jets)
    row_of_jet = np.full(n_jets, -1, dtype=np.int64)
    row_of_jet[jets] = np.arange(n)
    row = row_of_jet[jet_of_cand]
    src = np.flatnonzero(row >= 0)
    if len(src) == len(row):
        src = None  # every constituent is read: index nothing
    else:
        row = row[src]
    if order == "pt":
        perm = _jet_pt_order(row, pt if src is None else pt[src])
    else:  # as stored: grouped by jet, a stable sort keeps the file's order within each jet
        perm = None if bool(np.all(row[1:] >= row[:-1])) else np.argsort(row, kind="stable")
    if perm is not None:
        row = row[perm]
        src = perm if src is None else src[perm]
    counts = np.bincount(row, minlength=n)
    position = np.arange(len(row)) - (np.cumsum(counts) - counts)[row]
    if counts.max(initial=0) > limit:
        keep = np.flatnonzero(position < limit)
        row, position = row[keep], position[keep]
        src = keep if src is None else src[keep]
    return row, position, src


def _scatter(columns: ConstituentColumns, row: np.ndarray, position: np.ndarray, n: int,
             decl: ModelInput, occupancy: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One constituent input: its features scattered into (n, C, F) (then (n, F, C) for ``NFC``), padded
    rows at ``pad_value`` (``mask`` at 0), and (if ``occupancy``) the (n, C) rows holding a constituent."""
    c, f = decl.n_constituents, decl.width
    if int(position.max(initial=-1)) >= c:  # an input holding fewer rows than another of the model
        keep = position < c
        row, position = row[keep], position[keep]
        select: Callable[[np.ndarray], np.ndarray] = lambda values: values[keep]
    else:
        select = lambda values: values
    if decl.pad_value == 0.0:
        out = np.zeros(n * c * f, dtype=np.float32)
    else:
        out = np.full(n * c * f, decl.pad_value, dtype=np.float32)
        if "mask" in decl.features:
            out.reshape(n, c, f)[..., decl.features.index("mask")] = 0.0
    at = (row * c + position) * f  # one flat index: 3x faster than out[row, col, k]
    for k, name in enumerate(decl.features):
        out[at + k] = select(columns(name))
    out = out.reshape(n, c, f)
    occupied = None
    if occupancy:
        occupied = np.zeros(n * c, dtype=bool)
        occupied[row * c + position] = True
        occupied = occupied.reshape(n, c)
    if decl.layout == "NFC":
        out = np.ascontiguousarray(out.transpose(0, 2, 1))
    return out, occupied


def requested_specs(requests: Iterable[Any]) -> list[InputSpec]:
    """The ``InputSpec`` behind each consumer request: an ``InputSpec`` itself, or a forwarding request
    (a batcher's: ``specs()`` gives its selection crossed with what its own consumers declared)."""
    out: list[InputSpec] = []
    for request in list(requests):
        out.extend([request] if isinstance(request, InputSpec) else request.specs())
    return list(dict.fromkeys(out))


def batch_key(contract: Contract, n_constituents: int, relative: bool) -> Contract | None:
    """How a batcher with these settings files ``contract``'s arrays in its ``JetBatch``: None when it
    is the shipped input the batcher makes by itself (its own ``InputSpec``), else the contract."""
    return None if contract == default_contract(n_constituents, relative) else contract
