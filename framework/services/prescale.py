"""PrescaleService: the job's prescale table — named columns, one row of prescales per path.

The parameters are CMSSW's (``lvl1Labels``, ``lvl1DefaultLabel``, ``forceDefault``, ``prescaleTable``
with ``pathName`` and ``prescales``); the column a job starts with is ``lvl1DefaultLabel``. ``hltrun
--prescale COLUMN`` sets it and ``forceDefault``, as ``hltGetConfiguration --prescale`` does: the whole job
runs in that column, ``lumiColumns`` not applied (a warning says so). Each ``HLTPrescaler`` reads the factor of the one path it sits on (the
``Prescales`` module service) at begin_job; a wrong column, an unknown path or a prescaled path
without a prescaler is a configuration error before any event.

Column changes during a run: in CMSSW the HLTPrescaler reads, at the first event of each lumi
section, the prescale column index the L1 Global Trigger record carries (the column run control set),
and a new index re-initialises its counter; ``forceDefault: true`` ignores the GT's index. hltrun's
inputs have no GT record, so ``lumiColumns`` stands for it: ``[{run: 1, lumi: 3, column: 1p0E34}]``
means "from run 1, lumi section 3 on, the GT announces column 1p0E34" (until the next entry; before the
first, the default column). Without ``lumiColumns`` the default column holds all job long, as in
CMSSW without GT data.

Counting (CMSSW's HLTPrescaler is a stream module): every prescaler instance counts the events it sees
on its own. One local stream: one counter over the events in file order, the same events kept run
after run. Several streams: one counter per stream, so which events are kept depends on which stream
took which event. Dask: one counter per stream of each worker, over the work units that worker is
given, in the order it gets them. Either way each counter keeps one in N of its events, so a
prescaler's kept count differs from events / N by less than one per counter and per column change
it met: the PrescaleReport gives, per prescaler and factor, the events, the kept ones and events / N.
"""

from __future__ import annotations

import difflib
import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..schema import limited
from ..service import Service

if TYPE_CHECKING:
    from ..signals import ActivityRegistry
    from ..summary import JobSummary

log = logging.getLogger("hltrun")

EVENTS_AT = "events_at_prescale:"  # an HLTPrescaler's summary counters per factor: <prefix><N>
ACCEPTED_AT = "accepted_at_prescale:"


@dataclass
class PrescaleRow:
    pathName: str
    prescales: list[int] = field(default_factory=list)  # one per column of lvl1Labels; 0: path off


@dataclass
class LumiColumn:
    """From (``run``, ``lumi``) on, the prescale column the L1 GT record would carry."""

    run: int = limited(1, 0, 2**32 - 1)
    lumi: int = limited(1, 0, 2**32 - 1)
    column: str = ""


@dataclass
class PrescaleTable:
    """CMSSW's PrescaleService parameters: named columns and one row per prescaled path."""

    lvl1Labels: list[str] = field(default_factory=lambda: ["default"])
    lvl1DefaultLabel: str = "default"
    prescaleTable: list[PrescaleRow] = field(default_factory=list)
    forceDefault: bool = False  # CMSSW's: the default column always, whatever the (emulated) GT says
    lumiColumns: list[LumiColumn] = field(default_factory=list)  # the GT's column index per lumi (above)

    def __post_init__(self) -> None:
        if not self.lvl1Labels or len(set(self.lvl1Labels)) != len(self.lvl1Labels):
            raise ValueError(f"lvl1Labels must be distinct column names, got {self.lvl1Labels}")
        if self.lvl1DefaultLabel not in self.lvl1Labels:
            raise ValueError(f"lvl1DefaultLabel {self.lvl1DefaultLabel!r} is not one of lvl1Labels {self.lvl1Labels}")
        seen: set[str] = set()
        for row in self.prescaleTable:
            if row.pathName in seen:
                raise ValueError(f"prescaleTable: path {row.pathName!r} listed twice")
            seen.add(row.pathName)
            if len(row.prescales) != len(self.lvl1Labels):
                raise ValueError(f"prescaleTable: path {row.pathName!r} has {len(row.prescales)} prescale(s) for "
                                 f"{len(self.lvl1Labels)} column(s) {self.lvl1Labels}")
            if any(p < 0 for p in row.prescales):
                raise ValueError(f"prescaleTable: path {row.pathName!r} has a negative prescale {row.prescales}")
        for i, entry in enumerate(self.lumiColumns):
            if entry.column not in self.lvl1Labels:
                raise ValueError(f"lumiColumns[{i}].column {entry.column!r} is not one of lvl1Labels {self.lvl1Labels}")
        starts = [(e.run, e.lumi) for e in self.lumiColumns]
        if starts != sorted(set(starts)):
            raise ValueError(f"lumiColumns: entries must be in increasing (run, lumi) order, got {starts}")

    def column(self, label: str | None) -> int:
        name = label or self.lvl1DefaultLabel
        if name not in self.lvl1Labels:
            raise ValueError(f"prescale column {name!r} is not one of {self.lvl1Labels}")
        return self.lvl1Labels.index(name)

    def prescale(self, path: str, label: str | None = None) -> int:
        """The path's factor in that column; 1 for a path the table does not list (as CMSSW)."""
        return self.prescale_in(path, self.column(label))

    def prescale_in(self, path: str, index: int) -> int:
        """The path's factor in column ``index`` (CMSSW's ``getPrescale(set, path)``)."""
        return next((row.prescales[index] for row in self.prescaleTable if row.pathName == path), 1)

    def columns_in_use(self) -> list[str]:
        """The columns the job can run in, in the order it would meet them: the default, then those
        ``lumiColumns`` announce (none with ``forceDefault``), each once."""
        used = [self.lvl1DefaultLabel] + ([] if self.forceDefault else [c.column for c in self.lumiColumns])
        return list(dict.fromkeys(used))

    def column_at(self, run: int, lumi: int) -> int:
        """The column index in force in (run, lumi): the last ``lumiColumns`` entry at or before it,
        else the default; always the default with ``forceDefault``."""
        index = self.column(None)
        if self.forceDefault:
            return index
        for entry in self.lumiColumns:
            if (entry.run, entry.lumi) > (run, lumi):
                break
            index = self.lvl1Labels.index(entry.column)
        return index




@dataclass(frozen=True)
class ColumnInForce:
    """The PrescaleService's "measurement": the column the job started in, the same in every unit, and
    the columns its lumi sections ran in (``ran``, in the order met; merged over units as a union)."""

    label: str
    ran: tuple[str, ...] = ()

    def merge(self, other: "ColumnInForce") -> "ColumnInForce":
        return ColumnInForce(self.label, tuple(dict.fromkeys(self.ran + other.ran)))


@dataclass(frozen=True)
class PrescalerCount:
    """One prescaler's events and kept events at one factor (from its summary counters)."""

    label: str
    path: str
    factor: int
    events: int
    accepted: int

    @property
    def expected(self) -> float:
        """events / N: what a kept count is to be compared with (0 for a path that is off)."""
        return self.events / self.factor if self.factor else 0.0


def prescaler_counts(summary: "JobSummary") -> list[PrescalerCount]:
    """Every prescaler's counts per factor, by label then factor, from ``summary.module_summaries``."""
    out = []
    for label, info in sorted(summary.module_summaries.items()):
        for key, events in info.items():
            if key.startswith(EVENTS_AT):
                factor = key[len(EVENTS_AT):]
                out.append(PrescalerCount(label, str(info.get("path", "")), int(factor), int(events),
                                          int(info.get(ACCEPTED_AT + factor, 0))))
    return sorted(out, key=lambda c: (c.label, c.factor))


def counting_rule(summary: "JobSummary") -> tuple[str, bool]:
    """How the job's prescalers counted (module docstring), and whether another run (other streams, other
    work units) would keep other events."""
    executor = summary.executor or {}
    if executor.get("type") == "dask":
        return ("each stream of each Dask worker counts on its own, over the work units it was given in the "
                "order it got them", True)
    if summary.streams > 1:
        return f"each of the {summary.streams} streams counts on its own (CMSSW's HLTPrescaler, one per stream)", True
    return "one counter over the events in file order", False


def _counting_text(summary: "JobSummary") -> str:
    rule, varies = counting_rule(summary)
    if not varies:
        return f"Counting: {rule}."
    return (f"Counting: {rule}, so which events are kept depends on how the events were shared out, and a kept "
            f"count differs from events / N by less than one per counter and per column change it met: compare "
            f"the kept fraction with 1/N, not the kept events with another run's.")


class PrescaleService(Service):
    """The table, as a service (``services: {PrescaleService: {...}}``), like CMSSW's. Prescalers read
    their path's factor in the job's column through the ``Prescales`` module service."""

    Parameters = PrescaleTable

    def __init__(self, name: str, params: PrescaleTable) -> None:
        super().__init__(name, params)
        self._ran: dict[str, None] = {}  # the columns the job's lumi sections ran in, in the order met

    def connect(self, signals: "ActivityRegistry", job: object) -> None:
        signals.post_begin_lumi.connect(self._begin_lumi)

    def _begin_lumi(self, run: int, lumi: int) -> None:
        self._ran[self.params.lvl1Labels[self.params.column_at(run, lumi)]] = None

    @classmethod
    def check_config(cls, name: str, params: PrescaleTable, paths: Mapping[str, list[str]],
                     module_types: Mapping[str, type]) -> None:
        for i, row in enumerate(params.prescaleTable):
            if row.pathName not in paths:
                close = difflib.get_close_matches(row.pathName, list(paths), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f" (paths: {', '.join(paths)})"
                raise ConfigError(f"services.{name}.prescaleTable[{i}].pathName: '{row.pathName}' is not a path of "
                                  f"this job{hint}")
        for path, labels in paths.items():
            prescalers = [m for m in labels if getattr(module_types.get(m), "prescaler", False)]
            # every column the job can run in: one lumiColumns announces too (a path without a prescaler ran
            # unprescaled there, its '0' silently ignored, where --prescale of that column was refused)
            for column in params.columns_in_use():
                if params.prescale(path, column) != 1 and not prescalers:
                    raise ConfigError(f"services.{name}: path '{path}' has prescale {params.prescale(path, column)} "
                                      f"in column '{column}' but no HLTPrescaler on it")
        if params.forceDefault and params.lumiColumns:  # both given: say which wins, once, before any event
            log.warning("services.%s: forceDefault (--prescale sets it) holds column %s all job long: the %d "
                        "lumiColumns change(s) are not applied (to start in %s and follow them, set "
                        "services.%s.lvl1DefaultLabel=%s instead)", name, params.lvl1DefaultLabel,
                        len(params.lumiColumns), params.lvl1DefaultLabel, name, params.lvl1DefaultLabel)

    def snapshot(self) -> "ColumnInForce":
        """Never None, so that the report's services (executors.report_services keeps those that measured
        something) include the table for report.html."""
        return ColumnInForce(self.params.lvl1DefaultLabel, tuple(self._ran))

    def reset(self) -> None:
        self._ran = {}

    def load(self, data: "ColumnInForce") -> None:
        self._ran = dict.fromkeys(data.ran)

    def columns_ran(self) -> list[str]:
        """The columns the job ran in, in the table's order; the default one where no lumi began."""
        ran = self._ran or {self.params.lvl1DefaultLabel: None}
        return [label for label in self.params.lvl1Labels if label in ran]

    def text_report(self, summary: "JobSummary") -> str:
        """The PrescaleReport, where a prescaler ran with a factor other than 1: per prescaler and factor, the
        events, the kept ones and events / N, and how the job counted (module docstring)."""
        counts = prescaler_counts(summary)
        if all(c.factor == 1 for c in counts):
            return ""
        head = "PrescaleReport"
        lines = [f"{head} ---------- Prescalers: events kept per factor, against events / N ----",
                 f"{head} {'Prescale':>10} {'Events':>10} {'Kept':>10} {'Events/N':>10} Name"]
        lines += [f"{head} {c.factor:>10} {c.events:>10} {c.accepted:>10} {c.expected:>10.1f} {c.label} ({c.path})"
                  for c in counts]
        lines.append(f"{head} {_counting_text(summary)}")
        return "\n".join(lines) + "\n"

    def json_report(self, summary: "JobSummary") -> dict[str, object]:
        rule, varies = counting_rule(summary)
        return {"default_column": self.params.lvl1DefaultLabel, "columns_ran": self.columns_ran(),
                "counting": rule, "events_vary_between_runs": varies,
                "prescalers": [{"label": c.label, "path": c.path, "prescale": c.factor, "events": c.events,
                                "accepted": c.accepted, "expected": c.expected} for c in prescaler_counts(summary)]}

    def html_sections(self, summary: "JobSummary") -> list[tuple[str, str]]:
        """The table and the column in force, for report.html: the rates that follow are after these
        prescales, and a path at 0 is off (the rates say so: 0 Hz by construction, no measurement)."""
        from ..report.html import table

        p, ran = self.params, self.columns_ran()
        switches = "" if p.forceDefault or not p.lumiColumns else " until the L1 GT announces another: " + ", ".join(
            f"from run {c.run} lumi {c.lumi} on, {c.column}" for c in p.lumiColumns)
        off = {label: [row.pathName for row in p.prescaleTable if row.prescales[p.column(label)] == 0]
               for label in p.columns_in_use()}  # every column the job can run in, not the first one only
        notes = [f"Off in {'this column' if len(off) == 1 else 'column ' + label} (prescale 0, they accept nothing): "
                 f"{', '.join(paths)}." for label, paths in off.items() if paths]
        text = (f"<p>Prescale column <b>{html.escape(p.lvl1DefaultLabel)}</b>{html.escape(switches)}. A prescale "
                f"of N keeps one in N of the events the path's L1 seed accepted; a path not in the table has 1."
                + "".join(f' <span class="bad">{html.escape(n)}</span>' for n in notes) + "</p>")
        rows = [[row.pathName, *("off" if n == 0 else n for n in row.prescales)] for row in p.prescaleTable]
        headers = ["path", *(f"{label} (this job)" if label in ran else label for label in p.lvl1Labels)]
        if len(ran) > 1:
            text += (f"<p>This job ran in columns {html.escape(', '.join(ran))}: the rates below are given per column "
                     f"too.</p>")
        sections = text + table(headers, rows)
        counts = prescaler_counts(summary)
        if any(c.factor != 1 for c in counts):
            sections += (f"<p>Events each prescaler kept, per factor, against events / N. "
                         f"{html.escape(_counting_text(summary))}</p>"
                         + table(["prescaler", "path", "prescale", "events", "kept", "events / N"],
                                 [[c.label, c.path, c.factor, c.events, c.accepted, f"{c.expected:,.1f}"]
                                  for c in counts], left=2))
        return [("Prescales", sections)]
