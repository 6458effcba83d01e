"""TriggerRates service: each trigger path's rate in Hz, its unique rate, the overlaps, the menu total
and the rates per lumi section — what a trigger physicist is asked before the cost of a path.

It watches ``post_event``: the event's path decisions become one bit pattern (bit i: the i-th path
of ``paths:``, end paths excluded), counted per (run, lumi) and pattern (``framework/rates.py``).
That is one dictionary update per event and merges exactly across streams and Dask workers. The
rates are the accepted fractions times ``options.inputRateHz`` (the L1 accept rate the events stand
for). Printed after the TrigReport, in ``hltrun.json`` (``rates``) and in ``report.html``.

With a ``PrescaleService`` each lumi's prescale column is recorded with its patterns (looked up once
per lumi, as the prescalers do): the reports name the column, and a job that ran in several columns
also gets each column's rates, since a prescaled path's job-wide rate mixes them. A path its column
switches off (prescale 0) reads "off (prescale 0)" there, an exact 0 flagged ``off`` in hltrun.json, not the
"< X Hz (68% CL)" of a path that ran and accepted nothing: which paths are off comes from the configuration
(each path's prescalers and the column of each lumi, as the prescalers look it up), not from the counts, and is
recorded with each lumi's column. A path off in some of the job's columns only keeps its job-wide rate, its
accepted events over all the job's (the rate monitoring's counts over the run's time), with a line saying
where it was off.
"""

from __future__ import annotations

import html
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..rates import (LUMI_SECTION_S, OFF, UNDEFINED, MenuRates, Rate, TriggerPatterns, menu_rates, rate,
                     rate_text, rates_per_lumi, wilson_interval)
from ..rates import pm_text as _pm
from ..config import WEIGHT_TAG
from ..service import Service
from ..weights import ONE, ONE2, fraction_tallies

log = logging.getLogger("hltrun")
# said beside the rates of a weighted sample: which figures weigh events and which count them (as CMSSW does)
WEIGHTED_NOTE = ("weighted sample: rates, errors and the per-lumi rates are sums of the events' weights (Sumw2); "
                 "'accepted' and the overlaps count events")

if TYPE_CHECKING:
    from ..signals import ActivityRegistry
    from ..summary import JobSummary


@dataclass
class TriggerRatesParameters:
    per_lumi: bool = True  # also the rate of every path per lumi section (table and plot)


class TriggerRates(Service):
    Parameters = TriggerRatesParameters

    def __init__(self, name: str, params: TriggerRatesParameters) -> None:
        super().__init__(name, params)
        self._paths: list[str] = []
        self._bits: dict[str, int] = {}
        self._patterns: TriggerPatterns | None = None
        self._table: Any = None  # the PrescaleService's table, where the job has one: the column of each lumi
        self._prescalers: dict[str, list[Any]] = {}  # per path, the configs of the prescalers deciding it
        self._off_by_column: dict[str | None, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._warned = False  # the one line on rates without a positive total weight

    def connect(self, signals: "ActivityRegistry", job: Any) -> None:
        self._paths = list(job.config.paths)
        self._bits = {p: 1 << i for i, p in enumerate(self._paths)}
        self._patterns = TriggerPatterns(list(self._paths))
        prescales = job.config.services.get("PrescaleService")
        self._table = prescales.params if prescales is not None else None
        # an inverted (~) or ignored (-) prescaler's 0 switches nothing off
        self._prescalers = {path: [job.config.modules[e.label] for e in entries if e.mode == "normal"
                                   and getattr(job.config.modules[e.label].cls, "prescaler", False)]
                            for path, entries in job.config.paths.items()}
        signals.post_event.connect(self._post_event)

    def _post_event(self, event: Any, status: str) -> None:
        results = event.trigger_results
        pattern = 0
        for path, bit in self._bits.items():
            if results.get(path, False):
                pattern |= bit
        eid = event.id
        weight = event.get(WEIGHT_TAG) if event.has(WEIGHT_TAG) else 1.0  # a weighted sample's genWeight
        key = (eid.run, eid.luminosityBlock)
        column, off = None, 0
        if key not in self._patterns.by_lumi:  # the prescale column the prescalers take in this lumi (once per lumi)
            column = self._table.lvl1Labels[self._table.column_at(*key)] if self._table is not None else None
            off = sum(self._bits[path] for path in self._off_in_column(column))
        with self._lock:  # streams fire post_event from their own threads
            self._patterns.record(key[0], key[1], pattern, weight, column, off)

    # ------------------------------------------------------------------ distributed runs
    def snapshot(self) -> TriggerPatterns | None:
        return self._patterns

    def reset(self) -> None:
        if self._patterns is not None:
            self._patterns = TriggerPatterns(list(self._paths))

    def load(self, data: TriggerPatterns | None) -> None:
        if data is not None:
            self._patterns = data

    # ------------------------------------------------------------------ reports
    def rates(self, summary: "JobSummary") -> MenuRates | None:
        """From the recorded (or loaded, merged) patterns; the input rate is the job's option."""
        if self._patterns is None or not self._patterns.paths:
            return None
        r = menu_rates(self._patterns, float(summary.input_rate_hz))
        self._warn_undefined(r)
        return r

    def _warn_undefined(self, r: MenuRates) -> None:
        """One line where the weights of the job's events (or of a prescale column's, or, in the per-lumi view,
        of a lumi's) sum to <= 0: the reports mark those rates undefined, which a reader skimming the figures
        could take for 0 Hz."""
        by_lumi = self._patterns.by_lumi

        def weight(keys: Any) -> int:  # exact (fixed point): its sign is the rates' undefined, in any order
            return sum(t.sums()[0] for key in keys for t in by_lumi.get(key, {}).values())

        lumis = [key for key in sorted(by_lumi) if weight([key]) <= 0] if self.params.per_lumi else []
        in_force = self.columns()
        columns = [label for label, keys in in_force.items() if weight(keys) <= 0] if len(in_force) > 1 else []
        if self._warned or not r.events or not (r.total.undefined or lumis or columns):  # no event: no weight
            return
        self._warned = True
        where = [f"the job's {r.events} events"] if r.total.undefined else []
        where += [f"prescale column {label}" for label in columns]
        if lumis:
            shown = ", ".join(f"{run}:{lumi}" for run, lumi in lumis[:5]) + (", ..." if len(lumis) > 5 else "")
            where.append(f"{len(lumis)} of {len(self._patterns.by_lumi)} lumi section(s) ({shown})")
        log.warning("TriggerRates: the generator weights of %s sum to 0 or less: no rate there, reported as "
                    "undefined (null in hltrun.json), not 0 Hz", " and of ".join(where))

    def weighted(self) -> bool:
        """Whether any event weighed other than 1 (the reports then say which figures are sums of weights)."""
        return self._patterns is not None and any(
            t.weighted for table in self._patterns.by_lumi.values() for t in table.values())

    def _off_in_column(self, column: str | None) -> frozenset[str]:
        """The paths a prescaler of factor 0 switches off in ``column`` (None: the default, or no table)."""
        if column not in self._off_by_column:
            self._off_by_column[column] = frozenset(
                path for path, prescalers in self._prescalers.items()
                if any(m.cls.factor_in(m.params, self._table, path, column) == 0 for m in prescalers))
        return self._off_by_column[column]

    @staticmethod
    def _partly_off(r: MenuRates, per_column: dict[str, MenuRates]) -> list[str]:
        """One line per path off in some of the columns the job ran in only: its job-wide rate averages over
        all the job's events, the off ones included, as the rate monitoring's counts over the run's time do."""
        lines = []
        for name in r.paths if per_column else []:
            where = [label for label, cr in per_column.items() if cr.path[name].off]
            if where and len(where) < len(per_column):
                events = sum(per_column[label].events for label in where)
                lines.append(f"{name} is off (prescale 0) in column {', '.join(where)} ({events} of {r.events} "
                             f"events): its job-wide rate counts its accepted events over all {r.events}, as the "
                             f"rate monitoring's counts over the run's time; its rate in each column is below")
        return lines

    def columns(self) -> dict[str, list[tuple[int, int]]]:
        """The recorded lumi sections by the prescale column in force in them (the prescalers' own lookup,
        ``PrescaleTable.column_at``, recorded with the patterns), in order; empty without a prescale table."""
        out: dict[str, list[tuple[int, int]]] = {}
        if self._patterns is not None:
            for key in sorted(self._patterns.column):
                out.setdefault(self._patterns.column[key], []).append(key)
        return out

    def per_column(self, summary: "JobSummary") -> dict[str, MenuRates]:
        """The rates in each prescale column, where the job ran in more than one (``lumiColumns``): the
        job-wide rate of a path whose prescale changed is a mix of its rates in both, no menu's figure."""
        columns = self.columns()
        if len(columns) < 2:
            return {}
        input_hz = float(summary.input_rate_hz)
        return {label: menu_rates(self._patterns, input_hz, keys) for label, keys in columns.items()}

    def text_report(self, summary: "JobSummary") -> str:
        r = self.rates(summary)
        if r is None:
            return ""
        if not r.events:  # rows of 'undefined' would say nothing more
            return (f"RateReport ---------- Path rates at {r.input_rate_hz:,.0f} Hz input (0 events) ----\n"
                    f"RateReport  {NO_EVENT}\n")
        columns, per_column = self.columns(), self.per_column(summary)
        lines = [f"RateReport ---------- Path rates at {r.input_rate_hz:,.0f} Hz input ({r.events} events"
                 f"{_column_note(columns)}) ----", *([f"RateReport  {WEIGHTED_NOTE}"] if self.weighted() else []),
                 *_rate_lines(r), *(f"RateReport  {line}" for line in self._partly_off(r, per_column))]
        if self.params.per_lumi and cut_short(summary):  # the per-lumi rates are in hltrun.json and report.html only
            line = _cut_short_line(summary, rates_per_lumi(self._patterns, r.input_rate_hz))
            lines += [f"RateReport  {line[0].upper()}{line[1:]}."] if line else []
        for label, cr in per_column.items():
            (run0, lumi0), (run1, lumi1) = columns[label][0], columns[label][-1]
            lines += ["", f"RateReport ---------- Path rates in prescale column {label} ({cr.events} events, "
                          f"{len(columns[label])} lumi section(s) from {run0}:{lumi0} to {run1}:{lumi1}) ----",
                      *_rate_lines(cr)]
        mixed = f" (prescale columns {', '.join(columns)} mixed: each column's below)" if per_column else ""
        lines += _overlap_lines(r, mixed)
        for label, cr in per_column.items():
            lines += _overlap_lines(cr, f" in prescale column {label}")
        return "\n".join(lines) + "\n"

    def json_report(self, summary: "JobSummary") -> dict[str, Any] | None:
        r = self.rates(summary)
        if r is None:
            return None
        out: dict[str, Any] = {
            "input_rate_hz": r.input_rate_hz, "events": r.events, "lumi_section_s": LUMI_SECTION_S,
            "paths": [{"name": n, **_rate_dict(r.path[n]), "unique": _rate_dict(r.unique[n])} for n in r.paths],
            "total": _rate_dict(r.total),
            "overlap_events": r.overlap_events,
        }
        columns = self.columns()
        if columns:
            out["columns"] = list(columns)
        per_column = self.per_column(summary)
        if per_column:
            out["per_column"] = [{"column": label, "events": cr.events,
                                  "paths": [{"name": n, **_rate_dict(cr.path[n]), "unique": _rate_dict(cr.unique[n])}
                                            for n in cr.paths],
                                  "total": _rate_dict(cr.total), "overlap_events": cr.overlap_events}
                                 for label, cr in per_column.items()]
        if self.params.per_lumi:
            column_of = {key: label for label, keys in columns.items() for key in keys}
            short = cut_short(summary)
            out["per_lumi"] = [_lumi_dict(run, lumi, lr, column_of.get((run, lumi)) if columns else None,
                                          (run, lumi) in short)
                               for (run, lumi), lr in rates_per_lumi(self._patterns, r.input_rate_hz).items()]
        return out

    def html_sections(self, summary: "JobSummary") -> list[tuple[str, str]]:
        from ..report.html import _figure, img, table

        r = self.rates(summary)
        if r is None:
            return []
        if not r.events:
            return [("Rates", f"<p>{NO_EVENT[0].upper()}{NO_EVENT[1:]}.</p>")]
        headers = ["path", "accepted", "rate [Hz]", "± [Hz]", "unique [Hz]", "± [Hz]"]
        per_column = self.per_column(summary)
        parts = [f"<p>Rates at {r.input_rate_hz:,.0f} Hz input rate from {r.events} events"
                 f"{html.escape(_column_note(self.columns()))}; unique = accepted by "
                 f"this path and no other; '&lt; X' with '68% CL' where no event was accepted; 'off' where the "
                 f"prescale column switches the path off (prescale 0: 0 Hz by construction, no measurement); "
                 f"'+a / -b' the 68% Clopper-Pearson interval where it is asymmetric (few events). Menu total "
                 f"{html.escape(_total_text(r.total))}."
                 + (f" A {html.escape(WEIGHTED_NOTE)}." if self.weighted() else "")
                 + "".join(f" {html.escape(line)}." for line in self._partly_off(r, per_column))
                 + "</p>",
                 table(headers, _rate_rows(r), left=1)]
        for label, cr in per_column.items():
            parts += [f"<p>In prescale column <b>{html.escape(label)}</b> ({cr.events} events): menu total "
                      f"{html.escape(_total_text(cr.total))}.</p>", table(headers, _rate_rows(cr), left=1)]
        if self.params.per_lumi and len(self._patterns.by_lumi) > 1:
            per = rates_per_lumi(self._patterns, r.input_rate_hz)
            fig = _figure(9.0, 3.5)
            ax = fig.subplots()
            x = range(len(per))
            for name in r.paths:
                rates = [lr.path[name] for lr in per.values()]  # off: no point (nothing measured), not 0 Hz
                ax.errorbar(x, [math.nan if q.off else q.hz for q in rates], yerr=_interval_sides(rates), marker="o",
                            ms=3, lw=1, label=name)
            short = [i for i, key in enumerate(per) if key in cut_short(summary)]
            if short:  # a band behind the lumi cut short: its points are of its first events only
                for i in short:
                    ax.axvspan(i - 0.5, i + 0.5, color="0.85", zorder=0, label="cut short by maxEvents"
                               if i == short[0] else None)
            ax.set_xticks(*_lumi_ticks(list(per)), rotation=90, fontsize=6)
            ax.set_xlabel("run:lumi section")
            ax.set_ylabel("rate [Hz]")
            ax.set_title("rate per lumi section (no event accepted: a bar from 0 to the 68% CL upper limit; "
                         "a path off, prescale 0: no point)", fontsize=9)
            # beside the frame: inside it, "best" still covered a path's points (the emergency column's)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
            parts.append(img(fig, "rate per lumi section"))
            line = _cut_short_line(summary, per)
            if line:
                parts.append(f'<p class="bad">{html.escape(line[0].upper() + line[1:])} (the grey band).</p>')
        parts += _turn_on_plots(summary)
        return [("Rates", "\n".join(parts))]


def _turn_on_plots(summary: "JobSummary") -> list[str]:
    """Each L1 seed's efficiency vs the offline leading-jet pT, from the seed modules' counters
    (``pt_all:<GeV>``, ``pt_fired:<seed>:<GeV>``): the turn-on a trigger physicist checks first."""
    from ..report.html import _figure, img

    out = []
    for label, counters in summary.module_summaries.items():
        all_ = {float(k.split(":", 1)[1]): v for k, v in counters.items() if k.startswith("pt_all:")}
        if not all_:
            continue
        edges = sorted(all_)
        fig = _figure(7.0, 3.5)
        ax = fig.subplots()
        seeds = sorted({k.split(":")[1] for k in counters if k.startswith("pt_fired:")} |
                       {k.split(":", 1)[1] for k in counters if k.startswith("fired:")})
        weighted = any(k.startswith("pt_all_w:") for k in counters)
        for seed in seeds:
            n = [all_[e] for e in edges]
            k = [counters.get(f"pt_fired:{seed}:{int(e)}", 0) for e in edges]
            if weighted:  # the rates' weighted fraction and Sumw2 interval, bin by bin
                eff, bounds = _weighted_turn_on(counters, seed, [int(e) for e in edges], n, k)
            else:
                eff = [ki / ni if ni else math.nan for ki, ni in zip(k, n)]
                bounds = [wilson_interval(ki, ni) for ki, ni in zip(k, n)]
            err = [[p - lo for p, (lo, _) in zip(eff, bounds)], [hi - p for p, (_, hi) in zip(eff, bounds)]]
            ax.errorbar(edges, eff, yerr=err, marker="o", ms=3, lw=1, drawstyle="steps-mid", label=seed)
        ax.set_xlabel("offline leading-jet pT [GeV] (bin lower edge)")
        ax.set_ylabel("L1 efficiency (sum of weights)" if weighted else "L1 efficiency")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title(f"{label}: {html.escape(str(counters.get('expression', '')))}")
        ax.legend(fontsize=7)
        out.append(img(fig, f"{label} turn-on"))
    return out


def _weighted_turn_on(counters: Any, seed: str, edges: list[int], n: list[int],
                      k: list[int]) -> tuple[list[float], list[tuple[float, float]]]:
    """A weighted sample's efficiency per pT bin (sum w fired / sum w) and its Sumw2 68 % interval, from the
    seed module's fixed-point counters (``pt_all_w:``, ``pt_fired_w:<seed>:``; framework/weights.py); NaN
    where the bin's weights sum to <= 0. The interval is clipped to [0, 1] as a rate's is, on a side where the
    seed module counted no event of weight < 0 (``pt_all_negative:``, ``pt_fired_negative:<seed>:``; counters
    without them, from an older hltrun.json, stay signed)."""
    eff, bounds = [], []
    for e, ni, ki in zip(edges, n, k):
        every = (ni * ONE + counters.get(f"pt_all_w:{e}", 0), ni * ONE2 + counters.get(f"pt_all_w2:{e}", 0))
        fired = (ki * ONE + counters.get(f"pt_fired_w:{seed}:{e}", 0),
                 ki * ONE2 + counters.get(f"pt_fired_w2:{seed}:{e}", 0))
        passed, total = fraction_tallies(ki, ni, fired, every)
        total.negative = counters.get(f"pt_all_negative:{e}")
        # a bin no event fired in has no fired counter: none of weight < 0 among them, where the bin's are counted
        passed.negative = counters.get(f"pt_fired_negative:{seed}:{e}", None if total.negative is None else 0)
        r = rate(passed, total, 1.0, interval=False)
        eff.append(r.fraction)
        bounds.append((r.low_hz, r.high_hz))
    return eff, bounds


MAX_LUMI_LABELS = 40  # tick labels the per-lumi plot's 9-inch axis holds readably at fontsize 6


def _lumi_ticks(keys: list[tuple[int, int]], most: int = MAX_LUMI_LABELS) -> tuple[list[int], list[str]]:
    """Positions and ``run:lumi`` labels of the per-lumi plot's ticks: every lumi where they fit, else every
    k-th (the first included), at most ``most``. A job over a big file has hundreds of lumis: one label
    each drew them on top of each other, a black band where the axis should be."""
    step = max(1, math.ceil(len(keys) / most))
    shown = range(0, len(keys), step)
    return list(shown), [f"{keys[i][0]}:{keys[i][1]}" for i in shown]


def _interval_sides(rates: list[Rate]) -> list[list[float]]:
    """The error bars' lengths below and above each rate, from its interval: none accepted draws 0 to the
    68 % CL upper limit (a symmetric ± that limit reached below 0), all accepted stops at the input rate."""
    return [[q.hz - q.low_hz for q in rates], [q.high_hz - q.hz for q in rates]]


def _column_note(columns: dict[str, list[tuple[int, int]]]) -> str:
    """Which prescale column(s) the job-wide rates were taken in: more than one mixes them."""
    if not columns:
        return ""
    if len(columns) == 1:
        return f", prescale column {next(iter(columns))}"
    return f", prescale columns {', '.join(columns)} mixed: each column's rates below"


def _overlap_lines(r: MenuRates, where: str) -> list[str]:
    """The RateReport's overlap matrix; ``where`` says which events it counts (the job's, or a column's)."""
    lines = ["", f"RateReport ---------- Overlaps{where}: of the row path's events, the fraction the column path took "
                 f"----", "RateReport " + " ".join(f"{i:>7d}" for i in range(len(r.paths))) + "  Name"]
    for i, name in enumerate(r.paths):
        lines.append("RateReport " + " ".join(_fraction(r.overlap_fraction(i, j)) for j in range(len(r.paths)))
                     + f"  [{i}] {name}")
    return lines


def _rate_lines(r: MenuRates) -> list[str]:
    """The RateReport's table: per path its rate and unique rate, then the menu total."""
    lines = [f"RateReport {'accepted':>9} {'rate [Hz]':>12} {'± [Hz]':>{PM}} {'unique [Hz]':>12} "
             f"{'± [Hz]':>{PM}}  Name"]
    for name in r.paths:
        lines.append(f"RateReport {r.path[name].events:9d} {_hz(r.path[name])} {_hz(r.unique[name])}  {name}")
    lines.append(f"RateReport {r.total.events:9d} {_hz(r.total)} {'':>12} {'':>{PM}}  (menu total: any path)")
    return lines


def _rate_rows(r: MenuRates) -> list[list[Any]]:
    """report.html's rows of the same table."""
    return [[n, r.path[n].events, *_rate_cells(r.path[n]), *_rate_cells(r.unique[n])] for n in r.paths]


def _rate_cells(r: Rate) -> list[Any]:
    """The rate and ± cells of report.html's table: the figures, or for no accepted event the 68 % CL upper
    limit as the RateReport prints it (0 and the limit in the ± column would read as a measured 0 ± X Hz),
    or for few events the asymmetric interval as the RateReport prints it; in its precision throughout."""
    if r.off:
        return ["off", OFF]
    if r.undefined:
        return ["undefined", UNDEFINED]
    if r.upper_limit:
        return [f"< {r.error_hz:.1f}", "68% CL"]
    hz = f"{r.hz:,.1f}"  # the RateReport's and the menu total's precision (the table's default has 3 decimals)
    return [hz, _pm(r, ",.1f", " / ")]


def _total_text(r: Rate) -> str:
    """The menu total in the table's units and precision (``str(Rate)`` gives three digits, 9.68e+04)."""
    return rate_text(r, off=f"off ({OFF}: every path)")


PM = 15  # the RateReport's ± columns: room for +1234.5/-1234.5
NO_EVENT = "no event was processed: no accepted fraction, so no rate (hltrun.json: undefined, null figures)"


def _fraction(f: float | None) -> str:
    """An overlap fraction in the table's 7 columns; '-' for a path that accepted nothing (0/0, not 0.000)."""
    return f"{'-':>7}" if f is None else f"{f:7.3f}"


def _hz(r: Rate) -> str:
    if r.off:
        return f"{'off':>12} {'(' + OFF + ')':>{PM}}"
    if r.undefined:
        return f"{'undefined':>12} {UNDEFINED:>{PM}}"
    if r.upper_limit:
        return f"{'< ' + format(r.error_hz, '.1f'):>12} {'(68% CL)':>{PM}}"
    return f"{r.hz:12.1f} {_pm(r, '.1f'):>{PM}}"


def _rate_dict(r: Rate) -> dict[str, Any]:
    return {"accepted": r.events, "fraction": _number(r.fraction), "rate_hz": _number(r.hz),
            "error_hz": _number(r.error_hz), "upper_limit": r.upper_limit, "undefined": r.undefined, "off": r.off,
            "interval_hz": [_number(r.low_hz), _number(r.high_hz)]}


def cut_short(summary: "JobSummary") -> set[tuple[int, int]]:
    """The lumi sections maxEvents stopped the job in, the file holding more of them (the source's
    ``lumis_cut_short``): their per-lumi rates are of their first events only."""
    keys = (getattr(summary, "source", None) or {}).get("lumis_cut_short") or {}  # none in a summary without source
    return {(int(run), int(lumi)) for run, lumi in (key.split(":") for key in keys)}


def _cut_short_line(summary: "JobSummary", per: Mapping[tuple[int, int], MenuRates]) -> str:
    """One sentence naming the lumi sections cut short that the per-lumi rates list, or ''."""
    short = [key for key in per if key in cut_short(summary)]
    if not short:
        return ""
    named = ", ".join(f"{run}:{lumi} ({per[(run, lumi)].events} events)" for run, lumi in short)
    return (f"lumi section {named} cut short by maxEvents (the file holds more of it): its per-lumi rate is of its "
            f"first events only, biased where the events are ordered; cut_short in hltrun.json's per_lumi")


def _lumi_dict(run: int, lumi: int, lr: MenuRates, column: str | None, short: bool = False) -> dict[str, Any]:
    """One lumi section's rates for hltrun.json, each with its error: a lumi holds few events (a few hundred in
    the shipped files, a handful where maxEvents cut it), so a bare figure misleads (0 Hz from 10 events read as
    a measured 0, where the error says < 11 kHz). ``upper_limit`` names the paths that accepted no event there,
    whose ``error_hz`` is the 68 % CL upper limit, as the job-wide rates' ``upper_limit`` flag says."""
    limits = [n for n in lr.paths if lr.path[n].upper_limit]
    return {"run": run, "lumi": lumi, "events": lr.events,
            "rate_hz": {n: _number(lr.path[n].hz) for n in lr.paths},
            "error_hz": {n: _number(lr.path[n].error_hz) for n in lr.paths},
            "total_hz": _number(lr.total.hz), "total_error_hz": _number(lr.total.error_hz),
            **({"upper_limit": limits} if limits else {}),
            **({"total_upper_limit": True} if lr.total.upper_limit else {}),
            **({"column": column} if column is not None else {}),
            **({"off": [n for n in lr.paths if lr.path[n].off]} if any(lr.path[n].off for n in lr.paths) else {}),
            **({"cut_short": True} if short else {})}


def _number(x: float) -> float | None:
    """A figure for hltrun.json: null where the rate is undefined (NaN, which JSON has no word for)."""
    return None if math.isnan(x) else x
