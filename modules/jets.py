"""Vectorised per-chunk jet preparation shared by the source, the batcher and training tools.

Everything here works on whole chunks (thousands of events) with numpy, so the per-event work in the
event loop is only slicing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .finite import vouch_finite


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


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Map an azimuthal difference into [-pi, pi); a NaN stays NaN, without numpy's warning (the
    scorer counts non-finite inputs itself)."""
    with np.errstate(invalid="ignore"):
        return (dphi + np.pi) % (2 * np.pi) - np.pi


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
    """What a consumer reads of a jet collection: the model input of the leading jets.

    ``max_jets`` leading jets that have constituents (0: all), those with pT >= ``min_jet_pt`` when it
    is > 0; ``n_constituents`` rows each (pT-ordered, truncated at the source's ``max_constituents``
    and zero-padded); (eta, phi) relative to the jet axis when ``relative``. A consumer requests it at
    begin_job (``ModuleContext.request``) so the source prepares exactly that, per chunk, and nothing else.
    """

    max_jets: int
    n_constituents: int
    relative: bool
    min_jet_pt: float = 0.0


class ModelInputs:
    """One chunk's model inputs for one ``InputSpec``: events get read-only views (no per-event work).

    ``finite``: every value of ``inputs`` is finite, checked here once for the whole chunk and vouched
    for by its memory (``finite.vouch_finite``), so that the scorer's backend can skip its
    per-event check on the events' views; False: some jet of the chunk is not (or the memory could not
    be vouched for), and every event's jets are checked one by one as before."""

    __slots__ = ("inputs", "mask", "pt", "offsets", "finite", "truncated")

    def __init__(self, inputs: np.ndarray, mask: np.ndarray, pt: np.ndarray, offsets: np.ndarray,
                 truncated: np.ndarray | None = None) -> None:
        for shared in (inputs, mask, pt):
            shared.flags.writeable = False
        self.inputs, self.mask, self.pt, self.offsets = inputs, mask, pt, offsets
        self.finite = vouch_finite(inputs)
        self.truncated = truncated  # per event: selected jets with more constituents than the input holds

    def event(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.inputs[a:b], self.mask[a:b], self.pt[a:b]

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
                 spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Padded (len(jets), n_constituents, 3) inputs and their mask for the jets ``jets`` only.

    ``jet_of_cand`` maps each flat constituent to its jet (0..n_jets-1, any order); ``jet_eta`` and
    ``jet_phi`` are the axes of the selected jets (row by row). Only the constituents of the selected
    jets are sorted and scattered; the values are those of ``pad_constituents`` + ``to_jet_relative``
    + ``fit_length``, bit for bit (the same float32 operations on the same values).
    """
    n, width = len(jets), spec.n_constituents
    row_of_jet = np.full(n_jets, -1, dtype=np.int64)
    row_of_jet[jets] = np.arange(n)
    row = row_of_jet[jet_of_cand]
    src = np.flatnonzero(row >= 0)
    if len(src) == len(row):
        src = None  # every constituent is read: index nothing
    else:
        row = row[src]
    order = _jet_pt_order(row, pt if src is None else pt[src])
    if order is not None:
        row = row[order]
        src = order if src is None else src[order]
    counts = np.bincount(row, minlength=n)
    position = np.arange(len(row)) - (np.cumsum(counts) - counts)[row]
    limit = min(max_constituents, width)
    if counts.max(initial=0) > limit:
        keep = np.flatnonzero(position < limit)
        row, position = row[keep], position[keep]
        src = keep if src is None else src[keep]
    e, p, t = (eta, phi, pt) if src is None else (eta[src], phi[src], pt[src])
    if spec.relative:
        real = t > 0
        if real.all():  # np.where(real, x, 0.0) is x: skip the masks
            e, p = e - jet_eta[row], wrap_phi(p - jet_phi[row])
        else:
            e = np.where(real, e - jet_eta[row], 0.0)
            p = np.where(real, wrap_phi(p - jet_phi[row]), 0.0)
    out = np.zeros(n * width * 3, dtype=np.float32)
    at = (row * width + position) * 3  # one flat index: 3x faster than out[row, col, k]
    out[at] = e
    out[at + 1] = p
    out[at + 2] = t
    out = out.reshape(n, width, 3)
    return out, out[..., 2] > 0
