"""Jet batcher: the leading K jets of an event as the VAE's (n_jets, 100, 3) input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.event import Event
from framework.module import Producer
from framework.registry import register_module
from framework.schema import InputTag

from .jets import fit_length
from .products import JetBatch, JetCollection


@dataclass
class JetBatcherParameters:
    src: InputTag = InputTag("source")
    max_jets: int = 2  # leading jets per event sent to the model (0: all)
    n_constituents: int = 100
    relative: bool = True  # (eta, phi) relative to the jet axis, as the shipped models were trained
    min_jet_pt: float = 0.0

    def __post_init__(self) -> None:
        if self.max_jets < 0:
            raise ValueError(f"max_jets must be >= 0, got {self.max_jets}")
        if self.n_constituents < 1:
            raise ValueError(f"n_constituents must be >= 1, got {self.n_constituents}")


@register_module("JetBatcher")
class JetBatcher(Producer):
    """Per-event batching: the source already sorted, padded and made jet-relative per chunk, so this
    only slices (the batch is a read-only view: consumers must not modify it in place). Jets with no
    constituent (all links invalid, or an empty collection) are left out: they are counted by the
    source, not scored as all-zero inputs."""

    Parameters = JetBatcherParameters
    concurrency = "global"  # stateless

    def produce(self, event: Event) -> None:
        p: JetBatcherParameters = self.params
        jets: JetCollection = event.get(p.src)
        source = jets.relative if p.relative else jets.constituents
        pt = jets.pt
        if not jets.n_constituents.all():  # a jet without constituents is no input for a model
            real = np.flatnonzero(jets.n_constituents)
            source, pt = source[real], pt[real]
        n = len(pt) if p.max_jets == 0 else min(len(pt), p.max_jets)
        if p.min_jet_pt > 0:
            n = min(n, int(np.count_nonzero(pt >= p.min_jet_pt)))
        constituents = fit_length(source[:n], p.n_constituents)  # a view when the lengths agree
        event.put(JetBatch(constituents, constituents[..., 2] > 0, pt[:n], p.relative))
