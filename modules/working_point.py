"""pT-dependent working points: score cuts per leading-jet pT bin, from the model card.

Why: an anomaly score that grows with jet pT turns an inclusive cut into a jet-pT trigger. A cut per
leading-jet pT bin, each keeping the same fraction of QCD in its bin, keeps the rate flat in pT.
``tools/evaluate_models.py`` derives the cuts and the trigger filter applies them with the one bin
lookup below, so derivation and use can never disagree on which bin an event falls in.

Card format (``thresholds.json``, per model, beside the scalar cuts)::

    "vs_leading_jet_pt": {"edges_gev": [600, 700, 850, 1000, 1300, 1600],
                          "bkg_eff_1e-2": [c0, c1, c2, c3, c4, c5], "bkg_eff_1e-3": [...]}

``edges_gev`` are the bins' LOWER edges, strictly increasing; bin i is [edges[i], edges[i+1]) and the
last bin has no upper edge. A leading jet below the first edge uses the first bin's cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

PT_BINNED_KEY = "vs_leading_jet_pt"
EFFICIENCY_KEYS = ("bkg_eff_1e-2", "bkg_eff_1e-3")


def bin_index(edges_gev: np.ndarray | list[float], pt: np.ndarray | float) -> np.ndarray:
    """Bin of each leading-jet pT: i with edges[i] <= pt < edges[i+1]; below the first edge -> 0,
    at or beyond the last edge -> the last bin."""
    edges = np.asarray(edges_gev, dtype=np.float64)
    # side="right": an edge opens its bin; the result is at most len(edges) - 1 (the open last bin)
    return np.maximum(np.searchsorted(edges, np.asarray(pt, dtype=np.float64), side="right") - 1, 0)


@dataclass(frozen=True)
class PtBinnedCuts:
    """Score cuts per leading-jet pT bin (see the module docstring for the bins)."""

    edges_gev: tuple[float, ...]
    cuts: Mapping[str, tuple[float, ...]]  # "bkg_eff_1e-2" -> one cut per bin

    def cut(self, key: str, leading_pt: float) -> float:
        """The cut for an event whose leading jet has ``leading_pt`` GeV."""
        return self.cuts[key][int(bin_index(self.edges_gev, leading_pt))]

    def to_json(self) -> dict[str, list[float]]:
        return {"edges_gev": list(self.edges_gev), **{k: list(v) for k, v in self.cuts.items()}}


def parse_pt_binned(entry: Any) -> PtBinnedCuts:
    """Check a card's ``vs_leading_jet_pt`` entry; ValueError saying what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected a mapping with edges_gev and bkg_eff_* lists, got {type(entry).__name__}")
    edges = entry.get("edges_gev")
    if not isinstance(edges, list) or not edges or not all(_finite(e) for e in edges):
        raise ValueError("edges_gev: expected a non-empty list of finite numbers")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges_gev: not strictly increasing: {edges}")
    cuts: dict[str, tuple[float, ...]] = {}
    for key, value in entry.items():
        if key == "edges_gev":
            continue
        if not isinstance(value, list) or len(value) != len(edges) or not all(_finite(v) for v in value):
            raise ValueError(f"{key}: expected {len(edges)} finite cuts (one per bin of edges_gev)")
        cuts[str(key)] = tuple(float(v) for v in value)
    if not cuts:
        raise ValueError("no bkg_eff_* cuts")
    return PtBinnedCuts(tuple(float(e) for e in edges), cuts)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
