"""The independent computations tests check hltrun against: written from the file layout
(data/README.md) and the definitions, never from hltrun's own code."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

KINEMATICS = ("pt", "eta", "phi")


def leading_jets(file: Path, cand: Sequence[str] = KINEMATICS, jet: Sequence[str] = ("pt", "eta", "phi", "mass"),
                 n_jets: int = 2) -> list[tuple[tuple[int, int, int], list[dict]]]:
    """Per event, its (run, lumi, event) and its ``n_jets`` leading jets that have constituents (by jet
    pT), each a dict of the ``jet`` values and ``c``: the ``cand`` values of its constituents sorted by
    decreasing pT, float64 (jet j's constituents are the slice after the counts of the jets before it)."""
    import uproot

    names = ["run", "luminosityBlock", "event", "FatJet_nConstituents", *{f"FatJet_{k}" for k in ("pt", *jet)},
             *{f"FatJetPFCand_{k}" for k in ("pt", *cand)}]
    with uproot.open(file) as f:
        a = f["Events"].arrays(names, library="np")
    events = []
    for i in range(len(a["event"])):
        counts = a["FatJet_nConstituents"][i].astype(int)
        starts = np.concatenate([[0], np.cumsum(counts)])
        jets: list[dict] = []
        for j in np.argsort(-a["FatJet_pt"][i], kind="stable"):
            if counts[j] == 0 or len(jets) == n_jets:
                continue
            sl = slice(starts[j], starts[j + 1])
            c = {k: a[f"FatJetPFCand_{k}"][i][sl].astype(np.float64) for k in dict.fromkeys(("pt", *cand))}
            order = np.argsort(-c["pt"], kind="stable")
            jets.append({k: float(a[f"FatJet_{k}"][i][j]) for k in jet} | {"c": {k: v[order] for k, v in c.items()}})
        events.append(((int(a["run"][i]), int(a["luminosityBlock"][i]), int(a["event"][i])), jets))
    return events


def longhand_cut(scores: np.ndarray, weights: np.ndarray, eff: float) -> float:
    """The lowest distinct score from which on every distinct score has at most ``eff`` of the weight strictly
    above it (negative weights: the fraction may dip to ``eff`` and rise again; with weights >= 0 simply the
    lowest with at most ``eff`` above), and the cut halfway to the next score up (tied scores pass or fail
    together)."""
    total = weights.sum()
    values = np.unique(scores)
    holds = [weights[scores > v].sum() <= eff * total * (1 + 1e-12) for v in values]
    for i, v in enumerate(values):
        if all(holds[i:]):
            return float(v if i == len(values) - 1 else (v + values[i + 1]) / 2)
    raise AssertionError("unreachable")
