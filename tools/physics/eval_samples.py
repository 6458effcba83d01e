"""Samples of the model evaluation: the two leading jets of every event, with what the card needs.

Why one loader: the models' input (``hltrun.modules.models.preprocess.load_jets``, the same array the
trigger path builds), the event weights, the leading-jet pT and the baselines' jet mass and tau21
must describe the same jets in the same order; they are all read here, once per file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hltrun.tools.physics.eval_stats import effective_n

N_LEADING = 2  # jets per event the trigger path scores (JetBatcher max_jets: 2)


@dataclass
class Sample:
    """One file's events. Per event: ``weight``, ``leading_pt``; per jet (two leading jets of each
    event, event after event): ``jets`` (model input), ``event_of_jet``, ``jet_pt``, ``jet_mass``,
    ``jet_tau21``."""

    key: str
    label: str
    path: Path
    held_out: bool
    jets: np.ndarray
    event_of_jet: np.ndarray
    weight: np.ndarray
    has_gen_weight: bool
    leading_pt: np.ndarray
    jet_pt: np.ndarray
    jet_mass: np.ndarray
    jet_tau21: np.ndarray
    pthat: np.ndarray | None = None  # per event, from Generator_binvar (None when the file has none)
    process_id: np.ndarray | None = None  # per event (None when the file has no processId)
    files: list[Path] = field(default_factory=list)  # every file behind the sample (concat)

    @property
    def n_events(self) -> int:
        return len(self.weight)

    @property
    def jet_weight(self) -> np.ndarray:
        """Each jet carries its event's weight."""
        return self.weight[self.event_of_jet]

    def subset(self, events: np.ndarray) -> "Sample":
        """The events where ``events`` (bool per event) is True, renumbered."""
        keep_jet = events[self.event_of_jet]
        new_index = np.cumsum(events) - 1
        return Sample(self.key, self.label, self.path, self.held_out, self.jets[keep_jet],
                      new_index[self.event_of_jet[keep_jet]], self.weight[events], self.has_gen_weight,
                      self.leading_pt[events], self.jet_pt[keep_jet], self.jet_mass[keep_jet],
                      self.jet_tau21[keep_jet], _take(self.pthat, events), _take(self.process_id, events),
                      files=list(self.files))

    @staticmethod
    def concat(parts: list["Sample"], key: str, label: str, weights: list[np.ndarray] | None = None) -> "Sample":
        """One sample of several files' events, in order (``weights``: replace each part's)."""
        offsets = np.cumsum([0] + [p.n_events for p in parts[:-1]])

        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        first = parts[0]
        return Sample(key, label, first.path, first.held_out, cat("jets"),
                      np.concatenate([p.event_of_jet + o for p, o in zip(parts, offsets)]),
                      np.concatenate(weights) if weights is not None else cat("weight"),
                      any(p.has_gen_weight for p in parts) or weights is not None, cat("leading_pt"),
                      cat("jet_pt"), cat("jet_mass"), cat("jet_tau21"), cat("pthat"), cat("process_id"),
                      files=[f for p in parts for f in p.files])

    def describe(self, root: Path) -> dict:
        """What the card and metrics.json say about the sample."""
        w = self.weight
        return {"key": self.key, "label": self.label, "file": ", ".join(relative(f, root) for f in self.files or [self.path]),
                "held_out": self.held_out,
                "n_events": self.n_events, "n_jets": int(len(self.jet_pt)), "gen_weight": self.has_gen_weight,
                "n_effective": effective_n(w)}  # exact sums, as the pass rates' (eval_stats)


def _take(values: np.ndarray | None, events: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[events]


def relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def load_sample(path: Path, key: str, label: str, held_out: bool = False, max_events: int | None = None,
                substructure: bool = True) -> Sample:
    """Read ``path`` (data/README.md layout). Events without a ``genWeight`` branch weigh 1.
    ``substructure=False`` skips tau21 (NaN; it costs more than the rest of the reading), for samples
    only the models are evaluated on."""
    import awkward as ak
    import uproot

    from hltrun.modules.models.preprocess import load_jets
    from hltrun.tools.physics.substructure import tau21

    jets, event_of_jet = load_jets(str(path), n_leading=N_LEADING, max_events=max_events)
    with uproot.open(path) as fh:
        tree = fh["Events"]
        present = set(tree.keys())
        has_weight = "genWeight" in present
        names = (["FatJet_pt", "FatJet_mass", "FatJet_nConstituents", "FatJetPFCand_pt", "FatJetPFCand_eta",
                  "FatJetPFCand_phi"] + [b for b in ("genWeight", "Generator_binvar", "processId") if b in present])
        arr = tree.arrays(names, entry_stop=max_events)
    ncon = arr["FatJet_nConstituents"]
    take = ak.local_index(ncon) < N_LEADING  # the same jets, in the same order, as load_jets
    n_keep = ak.sum(ak.where(take, ncon, 0), axis=1)
    cand = ak.local_index(arr["FatJetPFCand_pt"]) < n_keep
    flat = {k: ak.to_numpy(ak.flatten(arr[f"FatJetPFCand_{k}"][cand])) for k in ("pt", "eta", "phi")}
    jet_pt = ak.to_numpy(ak.flatten(arr["FatJet_pt"][take])).astype(np.float64)
    if len(jet_pt) != len(jets):
        raise ValueError(f"{path}: {len(jet_pt)} leading jets but {len(jets)} model inputs")
    weight = (ak.to_numpy(arr["genWeight"]).astype(np.float64) if has_weight else np.ones(len(arr)))
    optional = {b: ak.to_numpy(arr[b]) if b in arr.fields else None for b in ("Generator_binvar", "processId")}
    tau = (tau21(flat["pt"], flat["eta"], flat["phi"], ak.to_numpy(ak.flatten(ncon[take]))) if substructure
           else np.full(len(jet_pt), np.nan))
    return Sample(key=key, label=label, path=Path(path), held_out=held_out, jets=jets, event_of_jet=event_of_jet,
                  weight=weight, has_gen_weight=has_weight,
                  leading_pt=ak.to_numpy(ak.fill_none(ak.firsts(arr["FatJet_pt"]), 0.0)).astype(np.float64),
                  jet_pt=jet_pt, jet_mass=ak.to_numpy(ak.flatten(arr["FatJet_mass"][take])).astype(np.float64),
                  jet_tau21=tau,
                  pthat=None if optional["Generator_binvar"] is None else optional["Generator_binvar"].astype(np.float64),
                  process_id=None if optional["processId"] is None else optional["processId"].astype(np.int64),
                  files=[Path(path)])
