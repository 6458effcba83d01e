"""report.html opens with the answer (framework/report/answer.py): fits the budget or not, the anomaly module's
ms/event and cores, the farm's cores, the memory and the rate the path adds, with the figures hltrun.json
holds (a job on the shipped QCD sample: a jet-pT path standing for the anomaly-detection one)."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hltrun.framework.report import html as report_html
from hltrun.framework.report.answer import answer_lines
from hltrun.framework.report.files import write_all
from tests.helpers import run_config

pytest.importorskip("matplotlib")
QCD = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"

MENU = f"""
process: ANSWER
options: {{inputRateHz: 100000, maxEvents: 300, budgetMs: 100}}
source: {{type: RootJetSource, files: [{QCD}]}}
modules:
  ad: {{type: JetPtFilter, min_pt: 900.0, eta_max: 5.0}}
  ref: {{type: JetPtFilter, min_pt: 300.0, eta_max: 0.5}}
paths:
  HLT_AD: [ad]
  HLT_Ref: [ref]
services:
  Timing: {{highlight: [ad]}}
  Memory: {{}}
  TriggerRates: {{}}
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    folder = tmp_path_factory.mktemp("answer")
    (folder / "menu.yaml").write_text(MENU)
    summary, process = run_config(folder / "menu.yaml")
    write_all(folder / "report", summary, process.services)
    return summary, process.services, folder / "report"


def _answer(page: str) -> list[str]:
    box = page.split('<div class="answer">', 1)[1].split("</div>", 1)[0]
    return [html.unescape(li) for li in re.findall(r"<li[^>]*>(.*?)</li>", box)]


def test_the_answer_opens_the_page_with_hltrun_json_figures(job) -> None:
    # kills: the verdict, the cores and the rate only far down the page (Budget, Farm projection, Rates
    # sections below the data-quality tables), and no rate at all near the top
    _, _, folder = job
    page = (folder / "report.html").read_text()
    assert page.index('<div class="answer">') < page.index("<table") < page.index("<h2>Events and data quality")
    doc = json.loads((folder / "hltrun.json").read_text())
    t, m, r = (doc["services"][k] for k in ("Timing", "Memory", "TriggerRates"))
    b, f = t["budget"], t["farm"]
    budget, anomaly, farm, memory, rate = _answer(page)
    assert budget.startswith("Fits the 100 ms per-event budget: "
                             f"{b['mean_share_of_budget'] * b['budget_ms']:.3f} ms/event on average")
    assert f"p99 {b['real']['p99']:.3f} ms, 0 of 300 events" in budget
    assert f"{b['real']['mean']:.3f} ms in the event + {b['source_bulk_per_event_ms']:.3f} ms of source bulk" in budget
    assert anomaly.startswith(f"Anomaly detection (ad): {f['highlight']['real_per_event_ms']:.3f} ms/event")
    assert f"{f['highlight']['cores']:,.1f} cores at 100,000 Hz" in anomaly
    assert farm.startswith(f"Farm: {f['cores_real']:,.1f} cores") and f"{f['cores_cpu']:,.1f} by CPU" in farm
    assert memory.startswith(f"Memory: peak RSS {m['peak_rss_mb']:.1f} MiB")
    ad = next(p for p in r["paths"] if p["name"] == "HLT_AD")
    assert ad["accepted"] > 0 and ad["unique"]["accepted"] > 0  # a measured rate, not a limit
    assert rate.startswith(f"Rate of HLT_AD: {ad['rate_hz']:,.1f} ") and " Hz at 100,000 Hz input" in rate
    assert f"of which {ad['unique']['rate_hz']:,.1f} " in rate
    assert "HLT_Ref" not in page.split('<div class="answer">', 1)[1].split("</div>", 1)[0]  # not an AD path


def test_a_job_over_budget_says_so_in_red(job) -> None:
    # kills: a "fits" line whatever the budget says (the verdict not taken from hltrun.json's budget.fits)
    summary, services, _ = job
    parts = {s.name: s.json_report(summary) for s in services}
    parts["Timing"] = {**parts["Timing"], "budget": {**parts["Timing"]["budget"], "fits": False}}
    page = report_html.render(summary, services, "text", parts)
    assert re.search(r'<li data-topic="budget" class="bad">Does not fit the 100 ms', page)


def test_a_partial_job_and_a_job_without_events_are_said_first(job) -> None:
    # kills: figures of a job stopped by Ctrl-C read as a whole job's, and "0.000 ms fits" for no event
    summary, services, _ = job
    stopped = dataclasses.replace(summary, failure="interrupted by the user (Ctrl-C, SIGINT)")
    lines = answer_lines(stopped.to_dict(), {s.name: s.json_report(stopped) for s in services})
    assert lines[0].topic == "partial" and lines[0].good is False and "300 events processed" in lines[0].text
    empty = {**summary.to_dict(), "events_processed": 0}
    assert [(a.topic, a.good) for a in answer_lines(empty, {})] == [("none", False)]


def test_failed_events_are_in_the_answer(job) -> None:
    # kills: a TryToContinue job whose every event failed in the scorer answered "fits" with nothing beside it
    summary, services, _ = job
    failed = dataclasses.replace(summary, events_error=300, errors={"ad": {"ModuleError": 300}})
    lines = answer_lines(failed.to_dict(), {s.name: s.json_report(failed) for s in services})
    (errors,) = [a for a in lines if a.topic == "errors"]
    assert errors.good is False and errors.text.startswith("300 of 300 processed events failed with an error (ad: "
                                                           "ModuleError 300)")


def test_a_job_without_the_rates_service_says_the_rate_is_not_measured(job) -> None:
    summary, services, _ = job
    parts = {s.name: s.json_report(summary) for s in services if s.name != "TriggerRates"}
    (rate,) = [a for a in answer_lines(summary.to_dict(), parts) if a.topic == "rate"]
    assert "not measured" in rate.text and "services.TriggerRates" in rate.text


def test_every_log_axis_of_the_page_says_so(job, monkeypatch) -> None:
    # kills: "events" and "time per event [ms]" on log axes (the event-time distribution, the time along the
    # job, the time-per-module bars): read as linear, a p99 ten times the mean looked like twice it
    summary, services, _ = job
    drawn: list[Any] = []
    real_render = report_html._render_png
    monkeypatch.setattr(report_html, "_render_png", lambda fig: drawn.append(fig) or real_render(fig))
    report_html.render(summary, services, "text")
    logs = [(axis.get_scale(), label) for fig in drawn for ax in fig.axes
            for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel()))
            if axis.get_scale() in ("log", "symlog")]
    assert len(logs) >= 4  # the distribution's two axes, the time along the job, the module bars
    assert all("log scale" in label for _, label in logs), logs


def test_a_malformed_service_part_leaves_the_page_with_a_line_not_a_crash(job) -> None:
    # kills: report.html (and with it the whole report set) lost to a plugin's JSON part that fails the schema,
    # which write_all reports after writing the set (tests/test_report_schema_at_write.py)
    summary, services, _ = job
    parts = {s.name: s.json_report(summary) for s in services}
    parts["Timing"] = {**parts["Timing"], "budget": {**parts["Timing"]["budget"], "budget_ms": [1]}}
    page = report_html.render(summary, services, "text", parts)
    assert _answer(page) == ["No answer: hltrun.json's service parts are not as its schema says (the job's error "
                             "line says where); the sections below still hold the figures."]
