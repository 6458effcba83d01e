"""HLTPrescaler and the prescale table: which fraction of the events reaching a path it keeps.

The counting is CMSSW's ``HLTPrescaler`` (HLTrigger/HLTcore), per module instance (in hltrun as in
CMSSW, one per stream): with prescale N (0: the path is off), the counter's offset is set at the
first event the instance sees — ``((event number + offset) * 65537) % N`` — and an event passes when
``(events counted so far + offset) % N == 0``, so the first of every N events reaching it passes when
the offset is 0. The factor comes from the job's prescale column (``PrescaleTable``), looked up by
the name of the one path the prescaler sits in.

Its ``summary()`` counts the events and the accepted ones per factor it ran with
(``events_at_prescale:<N>``, ``accepted_at_prescale:<N>``: integers, so they add over streams and Dask
units as the totals do), and ``prescale`` names the path's factor in each column the job can run in
(``3 in c1, 0 in c2``; one number where they all agree), from the configuration, so that every stream
and unit says the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from hltrun.framework.context import ModuleContext
from hltrun.framework.errors import ConfigError
from hltrun.framework.event import Event
from hltrun.framework.module import Filter
from hltrun.framework.schema import limited
from hltrun.framework.services.prescale import ACCEPTED_AT, EVENTS_AT, PrescaleTable

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
    table and column); TrigReport counts it as any module.

    ``PrescaleCounter``'s arithmetic, kept in a few plain attributes so that an event costs one
    modulo: the accepted count is not incremented per event but computed from the events counted
    (the events ``k`` with ``(k + offset) % N == 0``, segment by segment of constant factor).

    At each lumi section (``begin_lumi``) it reads the column in force, as CMSSW's HLTPrescaler reads
    the L1 GT's prescale index at a lumi's first event (the ``PrescaleService``'s ``lumiColumns`` stand
    for the GT, ``forceDefault`` ignores them): a new column sets the path's factor from it and
    re-initialises the offset from the next event's number; the event count goes on."""

    Parameters = HLTPrescalerParameters
    produces = {}  # a decision only
    services = ("Prescales",)
    prescaler = True  # PrescaleService checks that every prescaled path has one

    def __init__(self, label: str, params: HLTPrescalerParameters) -> None:
        super().__init__(label, params)
        self.path = ""
        self._n = 0  # events counted
        self._pending = True  # the offset is set at the next event (the first, or after a new column)
        self._offset = 0
        self._prescales = None  # the Prescales service, when the table gives the factor
        self._column = -2  # the column index in force (-2: none read yet)
        self._before = 0  # events accepted before the current factor's segment
        self._segment_start = 0  # the event count where it began
        self._closed: dict[int, list[int]] = {}  # factor -> [events, accepted] of the segments before
        self._set_factor(1 if params.prescale is None else params.prescale)
        self._setting = str(self.factor)  # the summary's ``prescale``: the factor(s) the configuration gives

    @staticmethod
    def factor_in(params: HLTPrescalerParameters, table: PrescaleTable | None, path: str,
                  column: str | None) -> int:
        """The factor an instance on ``path`` runs with in ``column`` (None: the default one) of ``table``, from
        the configuration alone, as ``begin_job``/``begin_lumi`` set it: the rates tell a path switched off
        (0) from one that accepted nothing by it."""
        if params.prescale is not None:
            return params.prescale
        return table.prescale(path, column) if table is not None else 1

    def _set_factor(self, factor: int) -> None:
        self.factor = int(factor)
        # an event passes when (n + offset) % mod == hit: never for a factor 0 (x % 1 is never 1)
        self._mod, self._hit = (self.factor, 0) if self.factor else (1, 1)

    def begin_job(self, ctx: ModuleContext) -> None:
        """The factor of the one path this prescaler sits on, in the job's column (a number in the
        module's own ``prescale`` wins, as a fixed prescale)."""
        paths = [p for p in ctx.on_paths if p in ctx.paths]
        if len(paths) != 1:
            raise ConfigError(f"modules.{self.label}: an HLTPrescaler sits on exactly one path, this one is on "
                              f"{paths or 'none'}")
        self.path = paths[0]
        if self.params.prescale is None:
            self._prescales = ctx.service("Prescales")
            self._set_factor(self._prescales.prescale(self.path))
            factors = self._prescales.factors(self.path)
            self._setting = (str(self.factor) if len({n for _, n in factors}) < 2
                             else ", ".join(f"{n} in {label}" for label, n in factors))

    def begin_lumi(self, run: int, lumi: int) -> None:
        if self._prescales is None:
            return
        column = self._prescales.column_at(run, lumi)
        if column == self._column:
            return
        first = self._column == -2
        self._column = column
        factor = self._prescales.prescale_in(self.path, column)
        if first and factor == self.factor:
            return  # the job's column, as set at begin_job
        self._close_segment()
        self._set_factor(factor)
        self._pending = True  # CMSSW: a new prescale set re-initialises the counter (offset)

    def _close_segment(self) -> None:
        """The current factor's events and accepted ones into ``_closed``; a new segment starts here."""
        accepted = self.accepted
        closed = self._closed.setdefault(self.factor, [0, 0])
        closed[0] += self._n - self._segment_start
        closed[1] += accepted - self._before
        self._before, self._segment_start = accepted, self._n

    def filter(self, event: Event) -> bool:
        if self._pending:
            self._start(event.id.event)
        n = self._n
        self._n = n + 1
        return (n + self._offset) % self._mod == self._hit

    def _start(self, event_number: int) -> None:
        """HLTPrescaler's offset, from this event's number (a factor 0 keeps the old one)."""
        self._pending = False
        if self.factor:
            self._offset = ((event_number + self.params.offset) * PRESCALE_SEED) % self.factor

    @property
    def events(self) -> int:
        return self._n

    @property
    def accepted(self) -> int:
        """Events k in [segment start, events) with (k + offset) % factor == 0, plus those before."""
        if not self.factor:
            return self._before
        o, f = self._offset, self.factor
        count = (lambda m: (m + o - 1) // f - (o - 1) // f)  # noqa: E731 - k in [0, m)
        return self._before + count(self._n) - count(self._segment_start)

    def by_factor(self) -> dict[int, tuple[int, int]]:
        """Events and accepted events per factor this instance ran with (a factor of no event left out)."""
        out = {factor: (events, accepted) for factor, (events, accepted) in self._closed.items()}
        events, accepted = out.get(self.factor, (0, 0))
        out[self.factor] = (events + self._n - self._segment_start, accepted + self.accepted - self._before)
        return {factor: counts for factor, counts in out.items() if counts[0]}

    def summary(self) -> dict[str, object]:
        # the factors as text: integers in a summary are counters the framework adds over streams
        out: dict[str, object] = {"path": self.path, "prescale": self._setting, "events": self.events,
                                  "accepted": self.accepted}
        for factor, (events, accepted) in sorted(self.by_factor().items()):
            out[f"{EVENTS_AT}{factor}"], out[f"{ACCEPTED_AT}{factor}"] = events, accepted
        return out
