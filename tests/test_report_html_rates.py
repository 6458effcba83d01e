"""report.html's Rates section: the rate-per-lumi plot's legend covers no point, and the rates table gives
the RateReport's figures in its precision (a job on the shipped QCD sample, two lumi sections)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hltrun.framework.report import html as report_html
from hltrun.framework.services.rates import TriggerRates, cut_short
from tests.helpers import run_config

pytest.importorskip("matplotlib")
QCD = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"

MENU = f"""
process: RATES
options: {{inputRateHz: 100000, maxEvents: 600}}
source: {{type: RootJetSource, files: [{QCD}]}}
modules:
  hard: {{type: JetPtFilter, min_pt: 1100.0, eta_max: 5.0}}
  soft: {{type: JetPtFilter, min_pt: 300.0, eta_max: 5.0}}
paths:
  HLT_Hard: [hard]
  HLT_Soft: [soft]
services:
  TriggerRates: {{}}
"""


@pytest.fixture(scope="module")
def rates_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TriggerRates]:
    config = tmp_path_factory.mktemp("rates") / "menu.yaml"
    config.write_text(MENU)
    summary, process = run_config(config)
    (service,) = [s for s in process.services if isinstance(s, TriggerRates)]
    return summary, service


def test_the_rate_per_lumi_legend_is_beside_the_frame(rates_job, monkeypatch) -> None:
    # kills: the legend inside the frame ("best" place) drawn over a path's points: in the menu's emergency
    # column it hid HLT_AK8PFJet500's last lumi sections
    summary, service = rates_job
    caught: dict[str, Any] = {}
    real_img = report_html.img
    monkeypatch.setattr(report_html, "img", lambda fig, alt: caught.setdefault(alt, fig) and real_img(fig, alt))
    service.html_sections(summary)
    fig = caught["rate per lumi section"]
    (ax,) = fig.axes
    fig.canvas.draw()
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # right of the frame: over no point, whatever the rates
    assert legend.x1 <= fig.bbox.x1 + 1  # and inside the picture, not cut at its edge
    assert cut_short(summary) == {(1, 3)}  # maxEvents 600 of 250 per lumi: lumi 3's grey band is in the legend too
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cut short by maxEvents", "HLT_Hard", "HLT_Soft"]


def test_the_rates_table_has_the_rate_reports_precision(rates_job) -> None:
    # kills: "94,854.545 ± 297.893" in the table (the page's default 3 decimals) beside the menu total's and
    # the RateReport's "94854.5 ± 297.9": false precision, and two spellings of one figure
    summary, service = rates_job
    (_, section), = service.html_sections(summary)
    r = service.rates(summary)
    for name in ("HLT_Hard", "HLT_Soft"):
        row = re.search(rf"<tr><td class=\"l\">{name}</td>(.*?)</tr>", section).group(1)
        cells = re.findall(r"<td>(.*?)</td>", row)
        rate = r.path[name]
        assert cells[1] == f"{rate.hz:,.1f}", cells
        assert cells[2] in (f"{rate.error_hz:,.1f}", f"+{rate.high_hz - rate.hz:,.1f} / -{rate.hz - rate.low_hz:,.1f}")
        assert all(re.fullmatch(r"[\d,]+\.\d|\+[\d,.]+ / -[\d,.]+|&lt; [\d,.]+|68% CL", c) for c in cells[1:]), cells
