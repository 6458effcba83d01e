"""MessageLogger: CMSSW's "Begin processing the Nth record" lines (category ``FwkReport``), when asked.

Configured as in CMSSW (``process.MessageLogger.cerr.FwkReport.reportEvery = 100``)::

    services:
      MessageLogger:
        cerr:
          FwkReport: {reportEvery: 100}      # limit: 10000000 (CMSSW's MessageLogger_cfi default)

Each event the source reads gives, on stderr (CMSSW's ``cerr`` destination), as
``InputSource::issueReports`` writes it with ``TimeOfDay`` at a precision of 3::

    Begin processing the 1st record. Run 1, Event 78685, LumiSection 237 on stream 0 at 04-Nov-2019 13:38:36.999 CET

The record number counts the events this process read (after ``skipEvents``; on Dask, each
worker's own), with CMSSW's ordinal suffixes (1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 22nd
...). Which records are printed is the MessageLogger's ``CountAndLimit`` (FWCore/MessageLogger
ELmap.cc): the first, then every ``reportEvery``-th after it (1, 1+N, 1+2N, ...) while at most
``limit`` records were counted; past the limit only at 2**k times the limit; limit 0: never,
negative: no limit. The line is written when the event is read (inside the source's lock, as the
source's read is serialised in cmsRun), so the numbers come in order whatever the streams.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TextIO

from ..schema import limited
from ..service import Service

if TYPE_CHECKING:
    from ..signals import ActivityRegistry


@dataclass
class FwkReport:
    """``cerr.FwkReport``: CMSSW's per-category limits of the MessageLogger."""

    reportEvery: int = limited(1, 1, 2**31 - 1)
    limit: int = limited(10_000_000, -1, 2**31 - 1)  # -1: no limit, 0: never


@dataclass
class Destination:
    enable: bool = True
    FwkReport: FwkReport = field(default_factory=FwkReport)


@dataclass
class MessageLoggerParameters:
    cerr: Destination = field(default_factory=Destination)


def suffix(count: int) -> str:
    """The ordinal suffix, as InputSource.cc's ``suffix``: 1st 2nd 3rd 4th ... 11th 12th 13th ... 21st."""
    last = count % 10
    if last >= 4 or last == 0:
        return "th"
    if count % 100 - last == 10:  # 11, 12, 13 (and 111, 112, ...)
        return "th"
    return "st" if last == 1 else "nd" if last == 2 else "rd"


def time_of_day(ns: int) -> str:
    """``edm::TimeOfDay`` at precision 3: ``dd-Mon-yyyy hh:mm:ss.mmm TZ`` in local time."""
    seconds, rest = divmod(ns, 1_000_000_000)
    tm = time.localtime(seconds)
    return f"{time.strftime('%d-%b-%Y %H:%M:%S', tm)}.{rest // 1_000_000:03d} {time.strftime('%Z', tm)}"


def begin_processing(record: int, run: int, event: int, lumi: int, stream: int, ns: int) -> str:
    return (f"Begin processing the {record}{suffix(record)} record. Run {run}, Event {event}, "
            f"LumiSection {lumi} on stream {stream} at {time_of_day(ns)}")


class CountAndLimit:
    """ELmap.cc's ``CountAndLimit::add`` (without the timespan): whether the n-th message is shown."""

    __slots__ = ("n", "limit", "interval", "skipped")

    def __init__(self, limit: int, interval: int) -> None:
        self.n = 0
        self.limit, self.interval = limit, interval
        self.skipped = interval - 1  # so that the first of the prescaled messages emerges

    def add(self) -> bool:
        self.n += 1
        self.skipped += 1
        if self.skipped < self.interval or self.limit == 0:
            return False
        if self.limit < 0 or self.n <= self.limit:
            self.skipped = 0
            return True
        diff = self.n - self.limit  # past the limit: only at 2**k times the limit
        ratio, rest = divmod(diff, self.limit)
        if rest or ratio & (ratio - 1):
            return False
        self.skipped = 0
        return True


class MessageLogger(Service):
    """Writes the FwkReport lines on the source's reads (``post_source``)."""

    Parameters = MessageLoggerParameters

    def __init__(self, name: str, params: MessageLoggerParameters) -> None:
        super().__init__(name, params)
        report = params.cerr.FwkReport
        self._count = CountAndLimit(report.limit, report.reportEvery)
        self.stream: TextIO | None = None  # None: sys.stderr at the time of writing (tests capture it)
        self.clock: Callable[[], int] = time.time_ns

    def connect(self, signals: "ActivityRegistry", job: Any) -> None:
        if self.params.cerr.enable:
            signals.post_source.connect(self._post_source)

    def _post_source(self, stream: int, event_id: Any) -> None:
        if event_id is None or not self._count.add():  # the last, empty read is no record
            return
        line = begin_processing(self._count.n, event_id.run, event_id.event, event_id.luminosityBlock, stream,
                                self.clock())
        out = self.stream or sys.stderr
        out.write(line + "\n")
        out.flush()
