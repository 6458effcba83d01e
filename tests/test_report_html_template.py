"""report.html's skeleton and style come from a template shipped as package data; every user-provided
string in it is still HTML-escaped."""

from __future__ import annotations

from string import Template

import pytest

from hltrun.framework.report import html as report_html
from hltrun.framework.report import text_report
from tests.helpers import run_config

CFG = """
source: {type: TestCountingSource, n: 12}
modules:
  sq: {type: TestSquare}
paths:
  p: [sq]
"""


@pytest.fixture
def job(write_config):
    summary, process = run_config(write_config(CFG))
    return summary, process.services


def test_the_page_is_the_shipped_template_filled_in(job, monkeypatch):
    # kills: the skeleton built by string concatenation again (the template not used)
    summary, services = job
    skeleton = report_html._page().template
    assert "$process" in skeleton and "$body" in skeleton and "<style>" in skeleton
    page = report_html.render(summary, services, "text")
    head, _, tail = skeleton.partition("$process")
    assert page.startswith(head) and page.endswith(skeleton.rpartition("$body")[2])
    monkeypatch.setattr(report_html, "_page", lambda: Template("<p>$process</p>$body"))
    page = report_html.render(summary, services, "text")
    assert page.startswith(f"<p>{summary.process}</p><div class=\"answer\">")  # the answer first (answer.py)


def test_user_strings_are_escaped_and_not_template_syntax(job):
    # kills: a user string put into the page unescaped, or substituted again ($body in a process name)
    summary, services = job
    summary.process = "<script>alert(1)</script> $body ${process}"
    summary.failure = "a <b>bad</b> & 'odd' stop"
    summary.bad_files = ["<evil>.root"]
    page = report_html.render(summary, services, text_report(summary, services) + "<pre>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; $body ${process}" in page
    assert "<b>bad</b>" not in page and "a &lt;b&gt;bad&lt;/b&gt; &amp; &#x27;odd&#x27; stop" in page
    assert "&lt;evil&gt;.root" in page and page.count("<pre>") == 1


def test_the_page_names_each_engine_its_network_digest_caveats_and_cuts(job):
    # kills: report.html without the engine chosen and why, the model's sha256, the caveats on its scores
    # (an int8 model's) or the cut applied: they were only in the text report's JobReport lines, the digest nowhere
    summary, services = job
    digest = "cd456cd4eb75222692e1335ff8c7d26f2b55836c2d198635dd0ef052eedd0be7"
    summary.facts = {
        "accelerators": {"vae": {
            "backend": "onnxruntime", "device": "cpu", "reason": "auto: fastest of 2 <agreeing> engines",
            "model": "data/models/conv_vae_int8.onnx", "model_id": "conv_vae", "model_sha256": digest,
            "timings": [{"backend": "onnxruntime", "us_per_jet": 80.5, "max_rel_diff": 0.0, "agrees": True, "note": ""},
                        {"backend": "tflite", "us_per_jet": 120.0, "max_rel_diff": 6.1e-07, "agrees": True, "note": ""}],
            "caveats": ["model conv_vae_int8.onnx quantises its activations per call & so on"]}},
        "cuts": {"anomalyFilter": {"model": "conv_vae", "reduce": "max", "working_point": "inclusive",
                                   "threshold": 1.603308379650116}}}
    page = report_html.render(summary, services, "text")
    section = page.split("<h2>Inference engines and cuts</h2>", 1)[1].split("<h2>", 1)[0]
    for expected in ("onnxruntime", "data/models/conv_vae_int8.onnx", digest, "auto: fastest of 2 &lt;agreeing&gt; engines",
                     "Caveat (vae): model conv_vae_int8.onnx quantises its activations per call &amp; so on",
                     "Why onnxruntime for vae", "anomalyFilter", "1.603308379650116", "inclusive", "6.1e-07"):
        assert expected in section, expected


def test_a_job_without_scorers_has_no_engine_section(job):
    summary, services = job
    assert "Inference engines" not in report_html.render(summary, services, "text")


def test_every_table_scrolls_in_its_own_box(job):
    # kills: tables wider than a half-screen laptop window (Time per module's 10 columns, the sha256 column)
    # running off the page's right edge, so the whole page scrolled sideways, the text with it
    from html.parser import HTMLParser

    summary, services = job

    class Parents(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[tuple[str, str]] = []
            self.table_parents: list[tuple[str, str]] = []

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.table_parents.append(self.stack[-1])
            if tag not in ("img", "br", "meta"):
                self.stack.append((tag, dict(attrs).get("class") or ""))

        def handle_endtag(self, tag):
            while self.stack and self.stack.pop()[0] != tag:
                pass

    parser = Parents()
    parser.feed(report_html.render(summary, services, text_report(summary, services)))
    assert len(parser.table_parents) >= 2  # the job facts, the events
    assert set(parser.table_parents) == {("div", "scroll")}
    css = report_html._page().template
    assert ".scroll{overflow-x:auto" in css and "max-width:72em;padding:0 1em" in css  # text off the window's edge


def test_failed_events_are_said_at_the_top(job):
    # kills: a TryToContinue job whose every event failed in the scorer read "passed 0" and "fits" at the top,
    # the failures only in the Events table further down
    summary, services = job
    summary.events_error = 12
    summary.errors = {"vae": {"ModuleError": 12}}
    page = report_html.render(summary, services, "text")
    top = page.split("<h2>", 1)[0]
    assert '<p class="bad">12 of 12 processed events failed with an error (vae: ModuleError 12)' in top
    summary.events_error, summary.errors = 0, {}
    assert "failed with an error (" not in report_html.render(summary, services, "text")
