"""Turn per-jet constituent lists into the fixed (N, 100, 3) model input.

Pure numpy on purpose: the framework's jet batcher imports this module on every job, including
ONNX Runtime jobs that must never import TensorFlow, and training uses the same code so the model
sees exactly what the trigger path feeds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hltrun.modules.jets import pad_constituents, to_jet_relative

N_CONSTITUENTS = 100
N_FEATURES = 3  # (delta eta, delta phi, pT)


def jets_to_array(cand_pt: np.ndarray, cand_eta: np.ndarray, cand_phi: np.ndarray,
                  counts: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray,
                  max_constituents: int = N_CONSTITUENTS) -> np.ndarray:
    """Build the float32 (N, max_constituents, 3) array of (deta, dphi, pT) per constituent.

    ``cand_*`` are the flat constituents of N jets, jet after jet (the FatJetPFCand layout);
    ``counts[j]`` is the number of constituents of jet j, ``jet_eta``/``jet_phi`` its axis.
    Within each jet the constituents are sorted by pT (descending), truncated to
    ``max_constituents`` and zero-padded: padded rows are all zeros, so pT > 0 marks the real ones.
    This is the same code the ROOT source and the jet batcher run (modules/jets.py), so the models
    are trained on exactly what the trigger path feeds them.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    n_jets = counts.size
    pt = np.asarray(cand_pt, dtype=np.float32).reshape(-1)
    if pt.size != int(counts.sum()):
        raise ValueError(f"sum of counts ({int(counts.sum())}) != number of constituents ({pt.size})")
    padded, _ = pad_constituents(np.repeat(np.arange(n_jets), counts),
                                 np.asarray(cand_eta, dtype=np.float32).reshape(-1),
                                 np.asarray(cand_phi, dtype=np.float32).reshape(-1), pt, n_jets, max_constituents)
    return to_jet_relative(padded, np.asarray(jet_eta, dtype=np.float32), np.asarray(jet_phi, dtype=np.float32))


def load_jets(paths: str | Path | Sequence[str | Path], n_leading: int = 2,
              max_events: int | None = None, tree: str = "Events") -> tuple[np.ndarray, np.ndarray]:
    """Read the ``n_leading`` jets of every event from hltrun sample files (data/README.md layout).

    Returns ``(jets, event_index)``: the (N, 100, 3) model input and, per jet, the index of its event
    in the concatenated files (useful for event-level scores).
    """
    import awkward as ak
    import uproot

    if isinstance(paths, (str, Path)):
        paths = [paths]
    branches = ["FatJet_eta", "FatJet_phi", "FatJet_nConstituents",
                "FatJetPFCand_pt", "FatJetPFCand_eta", "FatJetPFCand_phi"]
    out, index, offset = [], [], 0
    for path in paths:
        with uproot.open(path) as fh:
            arr = fh[tree].arrays(branches, entry_stop=max_events)
        ncon = arr["FatJet_nConstituents"]
        njet = ak.num(ncon)
        # per-event mask of the constituents that belong to the leading n_leading jets
        take = ak.local_index(ncon) < n_leading
        n_keep = ak.sum(ak.where(take, ncon, 0), axis=1)
        cand_keep = ak.local_index(arr["FatJetPFCand_pt"]) < n_keep
        counts = ak.to_numpy(ak.flatten(ncon[take])).astype(np.int64)
        flat = {k: ak.to_numpy(ak.flatten(arr[f"FatJetPFCand_{k}"][cand_keep])) for k in ("pt", "eta", "phi")}
        out.append(jets_to_array(flat["pt"], flat["eta"], flat["phi"], counts,
                                 ak.to_numpy(ak.flatten(arr["FatJet_eta"][take])),
                                 ak.to_numpy(ak.flatten(arr["FatJet_phi"][take]))))
        index.append(offset + np.repeat(np.arange(len(arr)), ak.to_numpy(np.minimum(njet, n_leading))))
        offset += len(arr)
    return np.concatenate(out), np.concatenate(index)
