"""Vectorised per-chunk jet preparation shared by the source, the batcher and training tools.

Everything here works on whole chunks (thousands of events) with numpy, so the per-event work in the
event loop is only slicing.
"""

from __future__ import annotations

import numpy as np


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
    same_jet = jet_of_cand[1:] == jet_of_cand[:-1]
    grouped = bool(np.all(jet_of_cand[1:] >= jet_of_cand[:-1]))
    if grouped and not np.any(same_jet & (pt[1:] > pt[:-1])):
        return np.arange(len(pt))
    return np.lexsort((-pt, jet_of_cand))


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Map an azimuthal difference into [-pi, pi)."""
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
