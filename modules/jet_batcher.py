"""Jet batcher: the leading K jets of an event, as the inputs its consumers' models declare."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from hltrun.framework.event import Event
from hltrun.framework.module import Producer
from hltrun.framework.schema import InputTag, limited

from .contract import Contract
from .jets import InputSpec, batch_key
from .products import JetBatch, JetCollection

if TYPE_CHECKING:
    from hltrun.framework.context import ModuleContext


@dataclass
class JetBatcherParameters:
    src: InputTag = InputTag("source")
    max_jets: int = limited(2, 0, 10_000, "0: all")  # leading jets per event sent to the model
    # the shipped input's constituents per jet, for a model that declares no inputs of its own
    n_constituents: int = limited(100, 1, 10_000)
    relative: bool = True  # (eta, phi) relative to the jet axis, as the shipped models were trained
    min_jet_pt: float = 0.0


class JetBatcher(Producer):
    """Per-event batching: the source prepares, per chunk, the inputs of the selected jets (the leading
    ``max_jets`` with constituents) that this batcher's consumers declared at begin_job (a scorer's
    model contract, ``modules/contract.py``; none declared: the shipped (n, ``n_constituents``, 3)
    input), so this only slices (the batch holds read-only views: consumers must not modify them in
    place). Jets with no constituent (all links invalid, or an empty collection) are left out: they
    are counted by the source, not scored as all-zero inputs. Jets with more constituents than the
    inputs hold (or the source's ``max_constituents``) keep their leading ones and are counted
    (``jets_truncated``)."""

    Parameters = JetBatcherParameters
    concurrency = "global"  # stateless
    produces = {"": JetBatch}
    consumes = {"src": JetCollection}

    def __init__(self, label: str, params: JetBatcherParameters) -> None:
        super().__init__(label, params)
        self.spec = InputSpec(params.max_jets, params.n_constituents, params.relative, params.min_jet_pt)
        self._requested: set[Any] = set()  # contracts the consumers requested (live until begin_job ends)
        self._specs: tuple[InputSpec, ...] | None = None  # settled at the first event
        self._first: InputSpec | None = None  # the batch's own spec, and the others' (one attribute read each)
        self._more: tuple[InputSpec, ...] = ()
        self._truncated = 0  # jets sent with their lowest-pT constituents left out (data quality)
        self._lock = threading.Lock()  # one instance serves every stream

    @classmethod
    def product_metadata(cls, params: JetBatcherParameters) -> Mapping[str, Any]:
        # n_constituents: the shipped input a model without declared inputs gets; max_jets: the typical
        # batch ``auto`` times engines at; with min_jet_pt and relative, the jets (and coordinates) a model's
        # card was made on, which the scorer compares with this batcher's (``vae_scorer.selection_mismatch``)
        return {"n_constituents": params.n_constituents, "relative": params.relative, "max_jets": params.max_jets,
                "min_jet_pt": params.min_jet_pt}

    def begin_job(self, ctx: "ModuleContext") -> None:
        self._requested = ctx.requests()
        ctx.request(self.params.src.label, _Forwarded(self))  # the source prepares exactly these, per chunk

    def specs(self) -> tuple[InputSpec, ...]:
        """The selection crossed with every contract requested of this batcher (none: the shipped
        input), the first being the batch's ``arrays``; in a fixed order, whatever the set's."""
        if self._specs is not None:
            return self._specs
        p = self.params
        keys = {batch_key(c, p.n_constituents, p.relative) for c in list(self._requested) if isinstance(c, Contract)}
        specs = [self.spec] if None in keys else []  # the shipped input first, then the others in a fixed order
        specs += [InputSpec(p.max_jets, c.n_constituents, p.relative, p.min_jet_pt, c)
                  for c in sorted((k for k in keys if k is not None), key=Contract.to_json)]
        return tuple(specs) or (self.spec,)

    def produce(self, event: Event) -> None:
        first = self._first
        if first is None:  # every begin_job has run: what was requested is final
            specs = self._specs = self.specs()
            first, self._more = specs[0], specs[1:]
            self._first = first
        jets: JetCollection = event.get(self.params.src)
        batch = jets.batch(first, self._more)
        if batch.truncated:
            with self._lock:
                self._truncated += batch.truncated
        event.put(batch)

    def data_quality(self) -> dict[str, int]:
        return {"jets_truncated": self._truncated}


class _Forwarded:
    """A batcher's request to its source: what ``JetBatcher.specs`` says when the source asks (per
    chunk, so the consumers' requests made after the batcher's begin_job are included)."""

    __slots__ = ("_batcher",)

    def __init__(self, batcher: JetBatcher) -> None:
        self._batcher = batcher

    def specs(self) -> tuple[InputSpec, ...]:
        return self._batcher.specs()
