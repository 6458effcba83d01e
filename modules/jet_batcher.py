"""Jet batcher: the leading K jets of an event as the VAE's (n_jets, 100, 3) input."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from hltrun.framework.event import Event
from hltrun.framework.module import Producer
from hltrun.framework.schema import InputTag, limited

from .jets import InputSpec
from .products import JetBatch, JetCollection

if TYPE_CHECKING:
    from hltrun.framework.context import ModuleContext


@dataclass
class JetBatcherParameters:
    src: InputTag = InputTag("source")
    max_jets: int = limited(2, 0, 10_000, "0: all")  # leading jets per event sent to the model
    n_constituents: int = limited(100, 1, 10_000)
    relative: bool = True  # (eta, phi) relative to the jet axis, as the shipped models were trained
    min_jet_pt: float = 0.0


class JetBatcher(Producer):
    """Per-event batching: the source prepares, per chunk, the inputs this batcher declared at
    begin_job (the leading jets only, sorted, padded, jet-relative), so this only slices (the batch is
    a read-only view: consumers must not modify it in place). Jets with no constituent (all links
    invalid, or an empty collection) are left out: they are counted by the source, not scored as
    all-zero inputs. Jets with more constituents than ``n_constituents`` (or the source's
    ``max_constituents``) keep their leading ones and are counted (``jets_truncated``)."""

    Parameters = JetBatcherParameters
    concurrency = "global"  # stateless
    produces = {"": JetBatch}
    consumes = {"src": JetCollection}

    def __init__(self, label: str, params: JetBatcherParameters) -> None:
        super().__init__(label, params)
        self.spec = InputSpec(params.max_jets, params.n_constituents, params.relative, params.min_jet_pt)
        self._truncated = 0  # jets sent with their lowest-pT constituents left out (data quality)
        self._lock = threading.Lock()  # one instance serves every stream

    @classmethod
    def product_metadata(cls, params: JetBatcherParameters) -> Mapping[str, Any]:
        # a scorer's model must take n_constituents; max_jets is the typical batch ``auto`` times engines at
        return {"n_constituents": params.n_constituents, "max_jets": params.max_jets}

    def begin_job(self, ctx: "ModuleContext") -> None:
        ctx.request(self.params.src.label, self.spec)  # the source prepares exactly this, per chunk

    def produce(self, event: Event) -> None:
        jets: JetCollection = event.get(self.params.src)
        batch = jets.batch(self.spec)
        if batch.truncated:
            with self._lock:
                self._truncated += batch.truncated
        event.put(batch)

    def data_quality(self) -> dict[str, int]:
        return {"jets_truncated": self._truncated}
