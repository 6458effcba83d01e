"""Offline-like jet cuts for the reference paths of a menu: a single-jet pT cut (HLT_AK8PFJet500's
``hltSinglePFJet500``) and a scalar-HT cut (HLT_PFHT1050's ``hltPFHT1050``), on the event's jets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import InputTag, limited

from .products import JetCollection


@dataclass
class JetPtFilterParameters:
    src: InputTag = InputTag("source")  # a JetCollection
    min_pt: float = limited(500.0, 0.0, 1e6)  # GeV
    eta_max: float = limited(2.5, 0.0, 10.0)
    min_n: int = limited(1, 1, 100)  # at least this many jets pass the cuts


class JetPtFilter(Filter):
    """At least ``min_n`` jets with pT >= ``min_pt`` inside ``eta_max``."""

    Parameters = JetPtFilterParameters
    consumes = {"src": JetCollection}
    produces = {}

    def filter(self, event: Event) -> bool:
        jets = event.get(self.params.src)
        p = self.params
        return int(np.count_nonzero((np.asarray(jets.pt) >= p.min_pt) & (np.abs(np.asarray(jets.eta)) < p.eta_max))) >= p.min_n


@dataclass
class HTFilterParameters:
    src: InputTag = InputTag("source")  # a JetCollection
    min_ht: float = limited(1050.0, 0.0, 1e7)  # GeV
    jet_pt_min: float = limited(30.0, 0.0, 1e6)  # jets counted in the sum
    eta_max: float = limited(2.5, 0.0, 10.0)


class HTFilter(Filter):
    """Scalar sum of the pT of jets above ``jet_pt_min`` inside ``eta_max`` is at least ``min_ht``."""

    Parameters = HTFilterParameters
    consumes = {"src": JetCollection}
    produces = {}

    def filter(self, event: Event) -> bool:
        jets = event.get(self.params.src)
        p = self.params
        pt = np.asarray(jets.pt)
        return float(pt[(pt > p.jet_pt_min) & (np.abs(np.asarray(jets.eta)) < p.eta_max)].sum()) >= p.min_ht
