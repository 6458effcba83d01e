"""MessageLogger's FwkReport lines, golden against CMSSW: InputSource::issueReports' text and ordinal
suffixes, TimeOfDay's time stamp, and which records ELmap's CountAndLimit lets through."""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path

import pytest

from hltrun.framework.services.messagelogger import CountAndLimit, begin_processing, suffix

from .helpers import run_config

REPO = Path(__file__).resolve().parents[1]

# a line of a cmsRun job's log (CMSSW 10_6, 2019): what users grep
CMSSW_LINE = ("Begin processing the 1st record. Run 1, Event 78685, LumiSection 237 on stream 0 at "
              "04-Nov-2019 13:38:36.999 CET")


@pytest.fixture
def cet(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_line_is_cmsruns(cet):
    ns = calendar.timegm((2019, 11, 4, 12, 38, 36)) * 10**9 + 999_999_000  # milliseconds truncated, as TimeOfDay
    assert begin_processing(1, 1, 78685, 237, 0, ns) == CMSSW_LINE


def test_ordinal_suffixes_as_cmssw_spells_them():
    assert [f"{n}{suffix(n)}" for n in (1, 2, 3, 4, 10, 11, 12, 13, 14, 21, 22, 23, 24, 101, 102, 111, 112, 113,
                                         1001, 1011, 1021)] == \
        ["1st", "2nd", "3rd", "4th", "10th", "11th", "12th", "13th", "14th", "21st", "22nd", "23rd", "24th", "101st",
         "102nd", "111th", "112th", "113th", "1001st", "1011th", "1021st"]


@pytest.mark.parametrize("limit, every, shown", [
    (10_000_000, 1, list(range(1, 31))),
    (10_000_000, 10, [1, 11, 21]),  # the first, then every 10th after it
    (5, 1, [1, 2, 3, 4, 5, 10, 15, 25]),  # past the limit: at 2, 3, 5, 9 ... times the limit
    (-1, 7, [1, 8, 15, 22, 29]),
    (0, 1, []),
])
def test_which_records_are_printed(limit, every, shown):
    count = CountAndLimit(limit, every)
    assert [n for n in range(1, 31) if count.add()] == [n for n in shown if n <= 30]


def test_a_job_prints_every_nth_record_in_read_order(tmp_path, capsys):
    config = tmp_path / "ml.yaml"
    config.write_text(f"""
process: ML
options: {{maxEvents: 25, skipEvents: 3, numberOfThreads: 2, wantSummary: false}}
source: {{type: RootJetSource, files: [{REPO / 'data' / 'qcd_dijet.root'}], tree: Events, layout: counts}}
modules:
  l1: {{type: L1SeedFilter, expression: L1_SingleJet180}}
paths: {{P: [l1]}}
services:
  MessageLogger: {{cerr: {{FwkReport: {{reportEvery: 10}}}}}}
""")
    run_config(config)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Begin processing")]
    pattern = re.compile(r"^Begin processing the (\d+)(st|nd|rd|th) record\. Run 1, Event (\d+), LumiSection 1 "
                         r"on stream [01] at \d\d-[A-Z][a-z][a-z]-\d{4} \d\d:\d\d:\d\d\.\d{3} \S+$")
    got = [pattern.match(line) for line in lines]
    assert all(got), lines
    # records count the events read after skipEvents; the shipped QCD sample numbers its events from 1
    assert [(int(m[1]), m[2], int(m[3])) for m in got] == [(1, "st", 4), (11, "th", 14), (21, "st", 24)]
