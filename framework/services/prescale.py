"""PrescaleService: the job's prescale table — named columns, one row of prescales per path.

The parameters are CMSSW's (``lvl1Labels``, ``lvl1DefaultLabel``, ``forceDefault``, ``prescaleTable``
with ``pathName`` and ``prescales``); the column a job starts with is ``lvl1DefaultLabel`` (``hltrun
--prescale COLUMN`` sets it). Each ``HLTPrescaler`` reads the factor of the one path it sits on (the
``Prescales`` module service) at begin_job; a wrong column, an unknown path or a prescaled path
without a prescaler is a configuration error before any event.

Column changes during a run: in CMSSW the HLTPrescaler reads, at the first event of each lumi
section, the prescale column index the L1 Global Trigger record carries (the column run control set),
and a new index re-initialises its counter; ``forceDefault: true`` ignores the GT's index. hltrun's
inputs have no GT record, so ``lumiColumns`` stands for it: ``[{run: 1, lumi: 3, column: 1p0E34}]``
means "from run 1, lumi section 3 on, the GT announces column 1p0E34" (until the next entry; before the
first, the default column). Without ``lumiColumns`` the default column holds all job long, as in
CMSSW without GT data.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..schema import limited
from ..service import Service

if TYPE_CHECKING:
    from ..summary import JobSummary


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
    """The PrescaleService's "measurement": the column the job started in, the same in every unit."""

    label: str

    def merge(self, other: "ColumnInForce") -> "ColumnInForce":
        return self


class PrescaleService(Service):
    """The table, as a service (``services: {PrescaleService: {...}}``), like CMSSW's. Prescalers read
    their path's factor in the job's column through the ``Prescales`` module service."""

    Parameters = PrescaleTable

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
            if params.prescale(path) != 1 and not prescalers:
                raise ConfigError(f"services.{name}: path '{path}' has prescale {params.prescale(path)} in column "
                                  f"'{params.lvl1DefaultLabel}' but no HLTPrescaler on it")

    def snapshot(self) -> "ColumnInForce":
        """Not None, so that the report's services (executors.report_services keeps those that measured
        something) include the table for report.html."""
        return ColumnInForce(self.params.lvl1DefaultLabel)

    def html_sections(self, summary: "JobSummary") -> list[tuple[str, str]]:
        """The table and the column in force, for report.html: the rates that follow are after these
        prescales, and a path at 0 is off (its '< X Hz' is no measurement of it)."""
        from ..report.html import table

        p, in_force = self.params, self.params.column(None)
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
        headers = ["path", *(f"{label} (this job)" if i == in_force else label for i, label in enumerate(p.lvl1Labels))]
        return [("Prescales", text + table(headers, rows))]
