"""report.html's timing plots show what was measured, for any job length: a job of no event, a job of one
event (a long job's folded histograms: tests/test_timing.py).

The figures are caught on their way to the page (``html.img``) and their data checked, never pixels."""

from __future__ import annotations

import re

from typing import Any

import numpy as np
import pytest

from hltrun.framework.report import html as report_html
from hltrun.framework.report.html import timing_sections
from tests.test_timing import _run

pytest.importorskip("matplotlib")


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every figure the page inlines, by its alt text (the page still gets its <img>)."""
    caught: dict[str, Any] = {}
    real_img = report_html.img

    def catch(fig: Any, alt: str) -> str:
        caught[alt] = fig
        return real_img(fig, alt)

    monkeypatch.setattr(report_html, "img", catch)
    return caught


DISTRIBUTION = "distribution of the time per event with the budget"
ALONG = "time per event along the job"


def test_a_job_of_no_event_gets_no_verdict_and_no_empty_plot(figures) -> None:
    # kills: "the mean event time 0.000 ms fits (0.00 % of the budget)", tables of 0.000 and empty frames
    _, summary, service = _run(events=0)
    sections = timing_sections(service.result(summary), service.per_event(summary))
    assert [title for title, _ in sections] == ["Budget"]
    assert "No event was processed" in sections[0][1] and "fits" not in sections[0][1]
    assert not figures


def test_a_single_events_time_along_the_job_has_whole_event_numbers(figures) -> None:
    # kills: the along-the-job axis of a one-event job running from event -0.04 to 0.04
    _, summary, service = _run(events=1)
    arrays = service.per_event(summary)
    timing_sections(service.result(summary), arrays)
    (ax,) = figures[ALONG].axes
    lo, hi = ax.get_xlim()
    assert lo < arrays["index"][0] < hi and hi - lo >= 1
    assert all(float(t).is_integer() for t in ax.get_xticks() if lo <= t <= hi)


NEVER_RUNS = """
process: NEVER
source: {type: TestCountingSource, n: 12}
modules:
  none: {type: TestModuloFilter, divisor: 100}
  sq: {type: TestSquare}
paths:
  p: [none, sq]
services: {Timing: {}, Memory: {}}
"""


def _rows(section: str, first_cell: str) -> list[list[str]]:
    """The cells of the table rows whose first cell is ``first_cell``."""
    import re

    rows = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", section, re.S)]
    return [r for r in rows if r and r[0] == first_cell]


def test_a_module_that_never_ran_has_no_per_call_figures(write_config) -> None:
    # kills: a module with 0 calls (behind a filter that passed nothing, after a failing module) shown with
    # "0.000" real ms/call, p99 and memory kB/call: figures for something never measured
    from tests.helpers import run_config

    summary, process = run_config(write_config(NEVER_RUNS))
    page = report_html.render(summary, process.services, "text")
    timing = page.split("<h2>Time per module</h2>", 1)[1].split("<h2>", 1)[0]
    memory = page.split("<h2>Memory</h2>", 1)[1].split("<h2>", 1)[0]
    dash = report_html.NOT_APPLICABLE
    (sq,) = _rows(timing, "sq")
    assert sq[2] == "0" and sq[5:7] == [dash, dash]  # calls, then real ms/call and p99: not measured
    (ran,) = _rows(timing, "none")
    assert ran[2] == "12" and dash not in ran[5:7]
    (sq,) = _rows(memory, "sq")
    assert sq[3] == "0" and sq[4:6] == [dash, dash]
    paths = page.split("<h2>Paths</h2>", 1)[1].split("<h2>", 1)[0]
    (p,) = _rows(paths, "p")
    assert p[1] == "12" and p[3] != dash  # the path ran: its time per run is a figure


def _legend_above_the_frame(fig: Any) -> None:
    """The figure's legend lies above its frame, over no data, line or bin."""
    (ax,) = fig.axes
    fig.canvas.draw()
    assert ax.get_legend() is None and len(fig.legends) == 1
    assert fig.legends[0].get_window_extent().y0 >= ax.get_window_extent().y1


def test_the_timing_legends_cover_no_line(figures) -> None:
    # kills: the legends inside the frames, where matplotlib's "best" place put "budget 100 ms" under the
    # budget line itself (the distribution) and the along-the-job legend over the budget line
    _, summary, service = _run(events=60)
    timing_sections(service.result(summary), service.per_event(summary))
    for alt in (DISTRIBUTION, ALONG):
        _legend_above_the_frame(figures[alt])


def test_the_score_plots_legend_covers_no_bin(figures) -> None:
    # kills: the score plot's legend inside the frame, over the cut line and the bins beside it (a menu's
    # gcnFilter, whose cut sits right of the distribution's peak)
    from hltrun.framework.score_histogram import ScoreHistogram, from_counters

    h = ScoreHistogram()
    for v in np.geomspace(0.05, 5.0, 400):
        h.fill(float(v), v > 0.5)
    hist = from_counters({"threshold": 0.5, "score_hist_of": "score", **h.counters()})
    report_html._score_sections({"gcnFilter": hist})
    _legend_above_the_frame(figures["gcnFilter: distribution of the score with the cut"])


def test_one_events_page_says_one_event(figures) -> None:
    # kills: "Only 1 events: p90 and p99 are interpolated between them"
    _, summary, service = _run(events=1)
    budget = dict(timing_sections(service.result(summary), service.per_event(summary)))["Budget"]
    assert "Only 1 event:" in budget and "Only 1 events" not in budget


def test_the_score_plots_smallest_bin_stands_clear_of_an_empty_one(figures) -> None:
    # kills: the log axis' foot a few percent under the smallest bin (matplotlib's margin), where an empty
    # bin's line ends too: on 500 fresh QCD events a bin of 2 events beside an empty one read as two empty bins
    from hltrun.framework.score_histogram import ScoreHistogram, from_counters

    h = ScoreHistogram()
    per_bin = {0.3: 2, 0.5: 40, 0.7: 90, 1.0: 20, 1.5: 2, 1.9: 0, 2.2: 4}  # scores in separate bins, 20 a decade
    for score, n in per_bin.items():
        for _ in range(n):
            h.fill(score, score > 1.6)
    hist = from_counters({"threshold": 1.6, "score_hist_of": "score", **h.counters()})
    report_html._score_sections({"anomalyFilter": hist})
    (ax,) = figures["anomalyFilter: distribution of the score with the cut"].axes
    smallest = min(n for n in per_bin.values() if n)
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] <= smallest / 2


def test_the_module_tables_p99_is_named_per_event_as_the_text_report_names_it(write_config) -> None:
    # kills: the header "real p99 ms" beside "real ms/call", read as a per-call tail; the figure is the p99 of
    # the per-event times, events a module skipped counting 0 (the shipped output module: p99 0.050 ms beside
    # 0.429 ms per call), as the text TimeReport's "p99/event" says
    from tests.helpers import run_config

    summary, process = run_config(write_config(NEVER_RUNS))
    timing = report_html.render(summary, process.services, "text").split("<h2>Time per module</h2>", 1)[1]
    headers = re.findall(r"<th[^>]*>(.*?)</th>", timing.split("</tr>", 1)[0])
    assert headers[5:7] == ["real ms/call", "real p99 ms/event"]
