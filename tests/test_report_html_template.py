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
    assert report_html.render(summary, services, "text").startswith(f"<p>{summary.process}</p><table>")


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
