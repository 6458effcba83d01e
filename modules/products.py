"""Event products exchanged between the built-in modules (the data formats, in CMSSW terms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class JetCollection:
    """One event's jets as cheap views into its chunk's padded arrays (no copy per event).

    ``constituents`` is (n_jets, C, 3) float32 of (eta, phi, pT), each jet's constituents sorted by
    decreasing pT and zero-padded to C; ``n_constituents`` the real count before truncation to C.
    ``relative`` is the same with (eta - eta_jet, wrapped phi - phi_jet, pT): computed per chunk by
    the source, so no per-event work is needed for the models' input. Jets are in decreasing pT order.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    n_constituents: np.ndarray
    constituents: np.ndarray
    relative: np.ndarray

    def __len__(self) -> int:
        return len(self.pt)


@dataclass(frozen=True)
class JetBatch:
    """The model input for one event: (n_jets, 100, 3) float32 (eta, phi, pT) and its mask.

    With ``relative`` the first two features are (eta - eta_jet, wrapped phi - phi_jet).
    Padded rows are all zeros and ``mask`` is False there.
    """

    inputs: np.ndarray
    mask: np.ndarray
    jet_pt: np.ndarray
    relative: bool

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class JetScores:
    """Per-jet anomaly scores from a VAE: ``score`` (reconstruction distance) and ``kl`` (beta*KL).

    ``valid`` is False for jets whose input was not finite (their score is the documented fill value).
    ``model`` names the model that made the scores and ``thresholds`` are that model's cuts from its
    card (``bkg_eff_1e-2`` -> score, and ``vs_leading_jet_pt`` -> the card's pT-binned cuts as a
    ``modules.working_point.PtBinnedCuts``): thresholds travel with the scores, so a filter can never
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

    def __len__(self) -> int:
        return len(self.score)
