"""The reports agree with each other, with the files and with counts known from the configuration.

One job through the CLI (2 streams, two filters on two paths sharing a sleeping producer, a ROOT
output selecting one path) writes the text report, hltrun.json, resources.json, report.html and
the ROOT file. Pass counts are known from the event numbers (1..40: 20 even, 13 divisible by 3, 27
either); times are compared between the printed TimeReport, hltrun.json, resources.json and the
HTML tables, within each one's printed precision. Parsing lives in tests/reportparse.py only.
"""

from __future__ import annotations

import json

import pytest
import uproot

from tests.reportparse import html_number, html_pre, html_table, html_tables, parse_timereport, parse_trigreport

N = 40
SLEEP_MS = 1.0
CONFIG = """
process: AGREE
options: {{numberOfThreads: 2, budgetMs: 50}}
source: {{type: TestCountingSource, n: {n}}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  three: {{type: TestModuloFilter, divisor: 3}}
  sq: {{type: TestSquare, sleep_ms: {sleep}}}
  out: {{type: RootOutputModule, file: {file}, keep: [sq], select_events: [p_even]}}
paths:
  p_even: [even, sq]
  p_three: [three, sq]
endpaths:
  e: [out]
services:
  Timing: {{calibrate: false}}
"""


@pytest.fixture()  # per test, not per module: mutmut selects tests by the calls made inside each test
def job(tmp_path_factory) -> dict:
    pytest.importorskip("matplotlib")
    from hltrun.framework.cli import main

    d = tmp_path_factory.mktemp("agree")
    cfg = d / "job.yaml"
    cfg.write_text(CONFIG.format(n=N, sleep=SLEEP_MS, file=d / "out.root"))
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(cfg), "-q", "--report-dir", str(d / "reports")]) == 0
    text = buf.getvalue()
    return {"text": text, "trig": parse_trigreport(text), "time": parse_timereport(text),
            "json": json.loads((d / "reports" / "hltrun.json").read_text()),
            "fts": json.loads((d / "reports" / "resources.json").read_text()),
            "html": (d / "reports" / "report.html").read_text(),
            "root": uproot.open(d / "out.root")["Events"].arrays(library="np")}


def test_trigreport_counts_are_the_known_ones_and_match_the_json(job):
    trig, doc = job["trig"], job["json"]["job"]
    assert trig["events"] == {"total": N, "passed": 27, "failed": N - 27}
    assert (doc["events_processed"], doc["events_passed"], doc["events_failed"]) == (N, 27, N - 27)
    assert {k: (v["executed"], v["passed"]) for k, v in trig["paths"].items()} == {"p_even": (N, 20), "p_three": (N, 13)}
    # CMSSW's first column: 1 for a trigger path, 0 for an end path; bits count from 0 in each table
    assert [(v["trigger"], v["bit"]) for v in trig["paths"].values()] == [(1, 0), (1, 1)]
    assert [(v["trigger"], v["bit"]) for v in trig["endpaths"].values()] == [(0, 0)]
    assert trig["path_kind"] == {"p_even": "Path", "p_three": "Path", "e": "EndPath"}
    for kind in ("paths", "endpaths"):
        for name, row in trig[kind].items():
            j = doc[kind][name]
            assert (row["executed"], row["passed"], row["failed"], row["error"]) == (
                j["executed"], j["passed"], j["failed"], j["error"]), name
    assert set(trig["modules_in_path"]) == {"p_even", "p_three", "e"}
    for path, entries in trig["modules_in_path"].items():
        j = (doc["paths"] | doc["endpaths"])[path]["modules"]
        assert [(e["name"], e["visited"], e["passed"], e["failed"], e["error"]) for e in entries] == [
            (m["label"], m["visited"], m["passed"], m["failed"], m["error"]) for m in j], path
        assert all(set(m) == {"label", "visited", "passed", "failed", "error"} for m in j), j  # no hollow Executed
    assert trig["modules_in_path"]["p_even"][0] == {"name": "even", "trigger": 1, "bit": 0, "visited": N, "passed": 20,
                                                    "failed": 20, "error": 0}
    # the second column of a module row is its place in the path (Schedule.cc's ModuleInPathSummary::bitPosition)
    assert [(e["trigger"], e["bit"]) for e in trig["modules_in_path"]["p_three"]] == [(1, 0), (1, 1)]
    assert [(e["trigger"], e["bit"]) for e in trig["modules_in_path"]["e"]] == [(0, 0)]
    assert trig["modules"]["three"]["passed"] == 13
    for label, row in trig["modules"].items():
        assert (row["visited"], row["passed"]) == (doc["modules"][label]["visited"], doc["modules"][label]["passed"])


def test_output_file_holds_the_selected_path_exactly(job):
    root, trig = job["root"], job["trig"]
    assert len(root["event"]) == trig["paths"]["p_even"]["passed"] == 20
    assert sorted(root["event"].tolist()) == list(range(2, N + 1, 2))
    assert trig["endpaths"]["e"]["executed"] == N


def test_timereport_matches_json_resources_and_html(job):
    t, timing, fts = job["time"], job["json"]["services"]["Timing"], job["fts"]
    mods = {m["label"]: m for m in timing["modules"]}
    assert mods["sq"]["calls"] == 27  # an event passing either filter runs sq once
    assert mods["out"]["calls"] < mods["out"]["runs"] == job["json"]["job"]["events_processed"]  # every event, timed when it writes
    assert set(t["modules_real"]) == set(mods)
    events = job["json"]["job"]["events_processed"]
    fts_mods = {m["label"]: m for m in fts["modules"]}
    html_mods = {r[0]: r for r in html_table(job["html"], "module")["rows"]}
    for label, m in mods.items():
        per_event_s, per_exec_s, _ = t["modules_real"][label]
        assert per_event_s == pytest.approx(m["real_per_event_ms"] * 1e-3, abs=6e-7), label  # printed to 1 us
        assert per_exec_s == pytest.approx(m["real_ms"] / max(m["runs"], 1) * 1e-3, abs=6e-7), label
        assert m["runs"] == job["json"]["job"]["modules"][label]["executed"], label  # the TrigReport's Executed
        assert t["modules_cpu"][label][0] == pytest.approx(m["cpu_per_event_ms"] * 1e-3, abs=6e-7), label
        assert fts_mods[label]["time_real"] / events == pytest.approx(m["real_per_event_ms"], rel=1e-9, abs=1e-9)
        assert fts_mods[label]["events"] == m["calls"]
        assert html_number(html_mods[label][3]) == pytest.approx(m["real_per_event_ms"], abs=6e-4), label
        assert int(html_number(html_mods[label][2])) == m["calls"]
    # the sleeping module: at least its sleep in every report
    assert t["modules_real"]["sq"][1] >= SLEEP_MS * 1e-3
    paths = {p["name"]: p for p in timing["paths"]}
    assert set(t["paths"] | t["endpaths"]) == set(t["modules_in_path"]) == set(paths) == {"p_even", "p_three", "e"}
    for name, (per_event_s, per_exec_s) in (t["paths"] | t["endpaths"]).items():
        assert per_event_s == pytest.approx(paths[name]["real_per_event_ms"] * 1e-3, abs=6e-7), name
    for name, rows in t["modules_in_path"].items():
        for m in paths[name]["modules"]:
            assert rows[m["label"]][0] == pytest.approx(m["real_per_event_ms"] * 1e-3, abs=6e-7), (name, m["label"])
    assert t["event"]["event loop Real/event"] == pytest.approx(timing["loop"]["real_per_event_ms"] * 1e-3, abs=6e-7)
    assert t["event"]["fwk overhead Real/event"] == pytest.approx(timing["overhead"]["real_per_event_ms"] * 1e-3,
                                                                  abs=6e-7)


def test_html_page_agrees_with_the_text_and_the_json(job):
    page, doc = job["html"], job["json"]["job"]
    facts = {r[0]: r[1] for r in html_tables(page)[0]["rows"]}
    assert int(html_number(facts["events processed"])) == doc["events_processed"] == N
    assert int(html_number(facts["passed"])) == doc["events_passed"] == 27
    embedded = html_pre(page)
    assert parse_trigreport(embedded) == job["trig"]
    assert parse_timereport(embedded)["modules_real"] == job["time"]["modules_real"]
    paths = {r[0]: r for r in html_table(page, "path")["rows"]}
    for p in job["json"]["services"]["Timing"]["paths"]:
        row = paths[p["name"] + (" (endpath)" if p["endpath"] else "")]
        assert int(html_number(row[1])) == p["runs"]
        assert html_number(row[2]) == pytest.approx(p["real_per_event_ms"], abs=6e-4)


def test_parsers_reject_what_they_cannot_read():
    with pytest.raises(ValueError, match="no TrigReport"):
        parse_trigreport("nothing here")
    assert parse_timereport("nothing here")["modules_real"] == {}
    with pytest.raises(ValueError, match="no HTML table"):
        html_table("<table><tr><th>x</th></tr></table>", "module")
