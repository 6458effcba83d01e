"""The derived features of the input contract (``modules/contract.py``), computed in one place.

Vectorised over the constituents of a chunk's selected jets (already grouped by jet, sorted and
truncated): each feature is one float32 column, computed on first use and shared by every input
that reads it. The relative coordinates are the shipped models' bit for bit (the same float32
operations as before the contract existed): a constituent with pT <= 0 gets Δη = Δφ = 0, as padding.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

F32 = np.float32


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Map an azimuthal difference into [-pi, pi); a NaN stays NaN, without numpy's warning (the
    scorer counts non-finite inputs itself)."""
    with np.errstate(invalid="ignore"):
        return (dphi + np.pi) % (2 * np.pi) - np.pi


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf: counted as non-finite by the scorer
        return np.log(x).astype(F32, copy=False)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):  # a jet of pT 0: inf/NaN, counted non-finite by the scorer
        return (a / b).astype(F32, copy=False)


def jet_energy(pt: np.ndarray, eta: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return np.sqrt(np.square(pt * np.cosh(eta)) + np.square(mass)).astype(F32, copy=False)


class ConstituentColumns:
    """The feature columns of a set of constituents (one row each), computed lazily.

    ``pt``/``eta``/``phi`` are the constituents' values; ``jet`` maps ``pt``/``eta``/``phi``/``mass`` to
    per-constituent views of its jet's (``jet_value[row]``); ``branch`` reads a file branch's column."""

    def __init__(self, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, jet: Callable[[str], np.ndarray],
                 branch: Callable[[str], np.ndarray]) -> None:
        self._base = {"pt": pt, "eta": eta, "phi": phi}
        self._jet, self._branch = jet, branch
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        got = self._cache.get(name)
        if got is None:
            got = self._cache[name] = self._compute(name)
        return got

    def _relative(self) -> tuple[np.ndarray, np.ndarray]:
        if "deta" not in self._cache:
            e, p, t = self._base["eta"], self._base["phi"], self._base["pt"]
            real = t > 0
            if real.all():  # np.where(real, x, 0.0) is x: skip the masks
                self._cache["deta"], self._cache["dphi"] = e - self._jet("eta"), wrap_phi(p - self._jet("phi"))
            else:
                self._cache["deta"] = np.where(real, e - self._jet("eta"), 0.0)
                self._cache["dphi"] = np.where(real, wrap_phi(p - self._jet("phi")), 0.0)
        return self._cache["deta"], self._cache["dphi"]

    def _compute(self, name: str) -> np.ndarray:
        if name in self._base:
            return self._base[name]
        if name in ("deta", "dphi"):
            return self._relative()[0 if name == "deta" else 1]
        compute = _DERIVED.get(name)
        if compute is not None:
            return np.asarray(compute(self), dtype=F32)
        return np.asarray(self._branch(name), dtype=F32)


_DERIVED: Mapping[str, Callable[[ConstituentColumns], np.ndarray]] = {
    "dr": lambda c: np.hypot(c("deta"), c("dphi")),
    "log_pt": lambda c: _log(c("pt")),
    "px": lambda c: c("pt") * np.cos(c("phi")),  # the Cartesian four-vector (px, py, pz, e): ParT's pf_vectors
    "py": lambda c: c("pt") * np.sin(c("phi")),
    "pz": lambda c: c("pt") * np.sinh(c("eta")),
    "e": lambda c: c("pt") * np.cosh(c("eta")),
    "log_e": lambda c: _log(c("e")),
    "pt_rel": lambda c: _ratio(c("pt"), c._jet("pt")),
    "log_pt_rel": lambda c: _log(c("pt_rel")),
    "e_rel": lambda c: _ratio(c("e"), jet_energy(c._jet("pt"), c._jet("eta"), c._jet("mass"))),
    "log_e_rel": lambda c: _log(c("e_rel")),
    "mask": lambda c: np.ones(len(c("pt")), F32),
}


def jet_column(name: str, jets: Callable[[str], np.ndarray]) -> np.ndarray:
    """One jet-level feature of the selected jets; ``jets(name)`` gives pt/eta/phi/mass/ncons or a branch."""
    if name in ("pt", "eta", "phi", "mass"):
        return np.asarray(jets(name), dtype=F32)
    if name == "n_constituents":
        return np.asarray(jets("ncons"), dtype=F32)
    if name == "log_pt":
        return _log(np.asarray(jets("pt"), dtype=F32))
    if name == "e":
        return jet_energy(jets("pt"), jets("eta"), jets("mass"))
    if name == "log_e":
        return _log(jet_energy(jets("pt"), jets("eta"), jets("mass")))
    return np.asarray(jets(name), dtype=F32)
