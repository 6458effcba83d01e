"""pT-dependent working points: a score cut that depends on the leading jet's pT, from the model card.

Why: an anomaly score that grows with jet pT turns an inclusive cut into a jet-pT trigger. A cut that
keeps the same fraction of QCD at every leading-jet pT keeps the rate flat in pT. Two card forms; the
trigger filter evaluates both through ``cut(key, leading_pt)`` below and ``tools/physics/evaluate_models.py``
derives them with the same functions, so derivation and use can never disagree.

**Smooth** (what ``tools/physics/evaluate_models.py`` writes: a quantile fit in ln pT over all the background
events, so no cut rests on the few events of one bin)::

    "vs_leading_jet_pt": {"pt_ref_gev": 1000, "pt_range_gev": [lo, hi],
                          "bkg_eff_1e-2": [c0, c1, c2], "bkg_eff_1e-3": [...]}

cut(pT) = sum_k c_k x^k with x = ln(min(max(pT, lo), hi) / pt_ref): outside the range the fit was
made on, the cut at its nearer end applies.

**Binned** (a user's own card; the card format of issue 12)::

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


def _as_written(value: float) -> str:
    """A number as the user wrote it, the schema's float undone: ``2`` not ``2.0``; every digit (``:g`` said
    123456789 as 1.23457e+08 and 1.0000001 as 1)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def efficiency_key(efficiency: str | float) -> str:
    """The card's key of a background efficiency: ``1e-2``, ``0.01`` -> ``bkg_eff_1e-2``; one spelling, so
    that the filter's ``background_efficiency`` finds every cut ``hltcard --bkg-eff`` wrote (ValueError: not
    a number strictly between 0 and 1)."""
    try:
        v = float(efficiency)
    except ValueError:
        v = math.nan
    if not 0 < v < 1:  # a number as the user wrote it (the schema made ``2`` a float: it said "got 2.0")
        given = _as_written(efficiency) if isinstance(efficiency, (int, float)) else repr(efficiency)
        raise ValueError(f"background_efficiency: expected a number between 0 and 1 (exclusive) like 1e-2, "
                         f"got {given}")
    mant, exp = f"{v:e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"bkg_eff_{mant}e-{abs(int(exp))}" if int(exp) < 0 else f"bkg_eff_{v:g}"


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

    def describe(self, key: str) -> dict[str, list[float]]:
        """What a filter's summary shows of the cuts it applies."""
        return {"edges_gev": list(self.edges_gev), "thresholds": list(self.cuts[key])}


def ln_pt_powers(pt: np.ndarray | float, pt_ref_gev: float, pt_range_gev: tuple[float, float],
                 n_terms: int) -> np.ndarray:
    """The smooth form's basis: x^0 .. x^(n_terms-1) per pT (rows), x = ln(clip(pT) / pt_ref)."""
    lo, hi = pt_range_gev
    x = np.log(np.clip(np.asarray(pt, dtype=np.float64), lo, hi) / pt_ref_gev)
    return np.power.outer(x, np.arange(n_terms))


@dataclass(frozen=True)
class PtCutFunction:
    """Score cut as a polynomial in ln(leading-jet pT) (see the module docstring)."""

    pt_ref_gev: float
    pt_range_gev: tuple[float, float]
    cuts: Mapping[str, tuple[float, ...]]  # "bkg_eff_1e-2" -> polynomial coefficients c0, c1, ...

    def cuts_at(self, key: str, leading_pt: np.ndarray | float) -> np.ndarray:
        """The cut at each leading-jet pT."""
        c = np.asarray(self.cuts[key], dtype=np.float64)
        return ln_pt_powers(leading_pt, self.pt_ref_gev, self.pt_range_gev, len(c)) @ c

    def cut(self, key: str, leading_pt: float) -> float:
        """The cut for an event whose leading jet has ``leading_pt`` GeV."""
        return float(self.cuts_at(key, leading_pt))

    def to_json(self) -> dict[str, Any]:
        return {"pt_ref_gev": self.pt_ref_gev, "pt_range_gev": list(self.pt_range_gev),
                **{k: list(v) for k, v in self.cuts.items()}}

    def describe(self, key: str) -> dict[str, Any]:
        """What a filter's summary shows of the cuts it applies."""
        return {"pt_ref_gev": self.pt_ref_gev, "pt_range_gev": list(self.pt_range_gev),
                "coefficients": list(self.cuts[key])}


PtCuts = PtBinnedCuts | PtCutFunction


def parse_pt_cuts(entry: Any) -> PtCuts:
    """Check a card's ``vs_leading_jet_pt`` entry in either form; ValueError saying what is wrong."""
    if isinstance(entry, dict) and "pt_ref_gev" in entry:
        return parse_pt_function(entry)
    if isinstance(entry, dict) and "edges_gev" not in entry:
        raise ValueError("expected pt_ref_gev (smooth form) or edges_gev (binned form)")
    return parse_pt_binned(entry)


def parse_pt_function(entry: dict) -> PtCutFunction:
    """Check the smooth form: a positive pt_ref_gev, a range 0 < lo < hi, finite coefficients."""
    ref, span = entry.get("pt_ref_gev"), entry.get("pt_range_gev")
    if not _finite(ref) or ref <= 0:
        raise ValueError(f"pt_ref_gev: expected a positive number, got {ref!r}")
    if (not isinstance(span, list) or len(span) != 2 or not all(_finite(v) for v in span)
            or not 0 < span[0] < span[1]):
        raise ValueError(f"pt_range_gev: expected [lo, hi] with 0 < lo < hi, got {span!r}")
    cuts = _cut_lists(entry, ("pt_ref_gev", "pt_range_gev"), None, "polynomial coefficients")
    return PtCutFunction(float(ref), (float(span[0]), float(span[1])), cuts)


def parse_pt_binned(entry: Any) -> PtBinnedCuts:
    """Check a card's ``vs_leading_jet_pt`` entry; ValueError saying what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected a mapping with edges_gev and bkg_eff_* lists, got {type(entry).__name__}")
    edges = entry.get("edges_gev")
    if not isinstance(edges, list) or not edges or not all(_finite(e) for e in edges):
        raise ValueError("edges_gev: expected a non-empty list of finite numbers")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges_gev: not strictly increasing: {edges}")
    cuts = _cut_lists(entry, ("edges_gev",), len(edges), "cuts (one per bin of edges_gev)")
    return PtBinnedCuts(tuple(float(e) for e in edges), cuts)


def _cut_lists(entry: dict, skip: tuple[str, ...], length: int | None, what: str) -> dict[str, tuple[float, ...]]:
    """The per-efficiency lists of an entry: each a non-empty list of finite numbers (``length`` long)."""
    cuts: dict[str, tuple[float, ...]] = {}
    for key, value in entry.items():
        if key in skip:
            continue
        if (not isinstance(value, list) or not value or (length is not None and len(value) != length)
                or not all(_finite(v) for v in value)):
            raise ValueError(f"{key}: expected {length or 'a list of'} finite {what}")
        cuts[str(key)] = tuple(float(v) for v in value)
    if not cuts:
        raise ValueError("no bkg_eff_* cuts")
    return cuts


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
