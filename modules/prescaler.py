"""HLTPrescaler and the prescale table: which fraction of the events reaching a path it keeps.

The counting is CMSSW's ``HLTPrescaler`` (HLTrigger/HLTcore), per module instance (in hltrun as in
CMSSW, one per stream): with prescale N (0: the path is off), the counter's offset is set at the
first event the instance sees — ``((event number + offset) * 65537) % N`` — and an event passes when
``(events counted so far + offset) % N == 0``, so the first of every N events reaching it passes when
the offset is 0. The factor comes from the job's prescale column (``PrescaleTable``), looked up by
the name of the one path the prescaler sits in.
"""

from __future__ import annotations

from dataclasses import dataclass

from hltrun.framework.context import ModuleContext
from hltrun.framework.errors import ConfigError
from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import limited

PRESCALE_SEED = 65537  # HLTPrescaler::prescaleSeed_


class PrescaleCounter:
    """One instance's counter: exactly HLTPrescaler::filter's arithmetic."""

    __slots__ = ("factor", "offset_phase", "count", "accepted", "_offset", "_started")

    def __init__(self, factor: int, offset_phase: int = 0) -> None:
        self.factor, self.offset_phase = int(factor), int(offset_phase)
        self.count = self.accepted = self._offset = 0
        self._started = False

    def accept(self, event_number: int) -> bool:
        if not self._started:
            self._started = True
            if self.factor != 0:
                self._offset = ((event_number + self.offset_phase) * PRESCALE_SEED) % self.factor
        result = self.factor != 0 and (self.count + self._offset) % self.factor == 0
        self.count += 1
        self.accepted += result
        return result


@dataclass
class HLTPrescalerParameters:
    offset: int = limited(0, 0, 2**31 - 1)  # HLTPrescaler's offset: shifts which events pass
    prescale: int | None = limited(None, 0, 2**31 - 1)  # set by the job from its column; a number here overrides the table


class HLTPrescaler(Filter):
    """Keeps one event in N of those reaching it (``prescale``, resolved per job from the prescale
    table and column); TrigReport counts it as any module."""

    Parameters = HLTPrescalerParameters
    produces = {}  # a decision only
    services = ("Prescales",)
    prescaler = True  # PrescaleService checks that every prescaled path has one

    def begin_job(self, ctx: ModuleContext) -> None:
        """The factor of the one path this prescaler sits on, in the job's column (a number in the
        module's own ``prescale`` wins, as a fixed prescale)."""
        paths = [p for p in ctx.on_paths if p in ctx.paths]
        if len(paths) != 1:
            raise ConfigError(f"modules.{self.label}: an HLTPrescaler sits on exactly one path, this one is on "
                              f"{paths or 'none'}")
        self.path = paths[0]
        if self.params.prescale is None:
            self.counter = PrescaleCounter(ctx.service("Prescales").prescale(self.path), self.params.offset)

    def __init__(self, label: str, params: HLTPrescalerParameters) -> None:
        super().__init__(label, params)
        self.counter = PrescaleCounter(1 if params.prescale is None else params.prescale, params.offset)

    def filter(self, event: Event) -> bool:
        return self.counter.accept(event.id.event)

    def summary(self) -> dict[str, object]:
        # the factor as text: integers in a summary are counters the framework adds over streams
        return {"path": getattr(self, "path", ""), "prescale": str(self.counter.factor),
                "events": self.counter.count, "accepted": self.counter.accepted}
