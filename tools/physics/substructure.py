"""N-subjettiness of jets from their constituents: the model card's tau21 baseline.

Why: an anomaly score is only worth a trigger if it beats the simple observables a physicist would
cut on first; tau21 = tau2 / tau1 (small for two-prong W/Z/G* jets) is the standard one.

Definition (Thaler & Van Tilburg, arXiv:1011.2268; fastjet-contrib ``Nsubjettiness`` with
``NormalizedMeasure(beta, R0)`` and ``ExclusiveKT_Axes``)::

    tau_N = sum_i pT_i * min_k dR(i, axis_k)^beta  /  sum_i pT_i * R0^beta

with beta = 1, R0 = 0.8 (the jets' anti-kT radius) and the N axes the exclusive-kT subjets of the
jet's constituents: the constituents are reclustered with the kT algorithm (E scheme, R at FastJet's
``max_allowable_R`` so that nothing merges with the beam, as the contrib's ``ExclusiveKT_Axes``
does) until N subjets remain. dR uses rapidity and azimuth (constituents are massless: rapidity =
pseudorapidity; the subjet axes are massive). A jet with fewer than N constituents has tau_N = 0
(every constituent is its own axis); a jet with none has NaN.

Everything is vectorised over jets with FastJet's awkward interface (one ClusterSequence for all
jets, each jet's constituents as one "event").
"""
from __future__ import annotations

import warnings

import numpy as np

BETA = 1.0
R0 = 0.8


def _four_vectors(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, counts: np.ndarray):
    """Massless (px, py, pz, E) records, one list per jet."""
    import awkward as ak

    pt, eta, phi = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (pt, eta, phi))
    flat = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                   "E": pt * np.cosh(eta)}, with_name="Momentum4D")
    return ak.unflatten(flat, np.asarray(counts, dtype=np.int64))


def exclusive_kt_axes(particles, n: int):
    """(rapidity, phi) of the ``n`` exclusive-kT subjets of each jet (fewer when a jet has fewer
    constituents), as jagged awkward arrays."""
    import awkward as ak
    import fastjet

    jet_def = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    with warnings.catch_warnings():
        # fastjet's Python wrapper compares the JetDefinition with the algorithm enum and so warns
        # "exclusive jets for jet-finders other than kt ..." for kt itself; nothing to act on
        warnings.filterwarnings("ignore", message="dcut and exclusive jets")
        axes = fastjet.ClusterSequence(particles, jet_def).exclusive_jets_up_to(n)
    px, py, pz, e = (ak.Array(axes[k]) for k in ("px", "py", "pz", "E"))
    return 0.5 * np.log((e + pz) / (e - pz)), np.arctan2(py, px)


def _axes_table(values, n: int) -> np.ndarray:
    """Jagged per-jet axis values -> (n_jets, n) numpy; a jet with fewer than n axes (fewer
    constituents) repeats its first axis, which leaves the minimum distance unchanged."""
    import awkward as ak

    table = ak.to_numpy(ak.fill_none(ak.pad_none(values, n, axis=1, clip=True), np.nan)).astype(np.float64)
    missing = np.isnan(table)
    table[missing] = np.broadcast_to(table[:, :1], table.shape)[missing]
    return table


def nsubjettiness(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, counts: np.ndarray,
                  n_max: int = 2, beta: float = BETA, r0: float = R0) -> np.ndarray:
    """tau_1 ... tau_{n_max} per jet: float64 (n_jets, n_max).

    ``pt, eta, phi`` are the flat constituents of all jets, jet after jet (the FatJetPFCand layout),
    ``counts[j]`` the number of constituents of jet j.
    """
    import awkward as ak

    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if int(counts.sum()) != np.asarray(pt).size:
        raise ValueError(f"sum of counts ({int(counts.sum())}) != number of constituents ({np.asarray(pt).size})")
    out = np.full((counts.size, n_max), np.nan)
    if counts.size == 0:
        return out
    c_pt = ak.unflatten(np.asarray(pt, dtype=np.float64).reshape(-1), counts)
    c_rap = ak.unflatten(np.asarray(eta, dtype=np.float64).reshape(-1), counts)
    c_phi = ak.unflatten(np.asarray(phi, dtype=np.float64).reshape(-1), counts)
    norm = ak.to_numpy(ak.sum(c_pt, axis=1)) * r0 ** beta
    particles = _four_vectors(pt, eta, phi, counts)
    for n in range(1, n_max + 1):
        rap, ax_phi = exclusive_kt_axes(particles, n)
        rap, ax_phi = _axes_table(rap, n), _axes_table(ax_phi, n)
        nearest = None
        for k in range(n):
            dphi = (c_phi - ax_phi[:, k] + np.pi) % (2 * np.pi) - np.pi
            dist = np.sqrt((c_rap - rap[:, k]) ** 2 + dphi ** 2) ** beta
            nearest = dist if nearest is None else np.minimum(nearest, dist)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, n - 1] = ak.to_numpy(ak.sum(c_pt * nearest, axis=1)) / norm
    return out


def tau21(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """tau2 / tau1 per jet (NaN where tau1 is 0 or undefined)."""
    tau = nsubjettiness(pt, eta, phi, counts, n_max=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tau[:, 0] > 0, tau[:, 1] / tau[:, 0], np.nan)
