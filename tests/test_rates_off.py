"""A path its prescale column switches off (prescale 0) has a rate of 0 Hz by construction, not a measurement:
the RateReport, hltrun.json (paths, unique, total, per column, per lumi) and report.html say "off", not the
"< X Hz (68% CL)" of a path that ran and accepted nothing. Real jobs over the shipped QCD sample (lumis 1-10)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.cli import main
from hltrun.framework.rates import TriggerPatterns
from tests.menus import prescaled_menu


def _menu(tmp_path: Path, lumi_columns: str = "") -> Path:
    """A jet path, an HT path and a path no QCD event passes (each behind its prescaler), with columns c1 (all
    on, HT prescaled by 3), c2 (HT off, jet prescaled by 2) and c3 (every path off)."""
    return prescaled_menu(tmp_path / "menu.yaml", {"HLT_J": [1, 2, 0], "HLT_H": [3, 0, 0], "HLT_None": [1, 1, 0]},
                          lumi_columns)


def _run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict, str, str]:
    rep = config.parent / "rep"
    assert main([str(config), "-q", "--report-dir", str(rep), *args]) == 0
    text = capsys.readouterr().out
    rates = json.loads((rep / "hltrun.json").read_text())["services"]["TriggerRates"]
    return rates, text, (rep / "report.html").read_text()


def _row(text: str, name: str, where: str = "") -> str:
    """The RateReport's row of a path, in the job-wide table or in a column's (``where``: its header's text)."""
    block = text.split(where, 1)[1] if where else text
    return next(line for line in block.splitlines() if line.startswith("RateReport") and line.endswith(f"  {name}"))


def test_a_path_switched_off_reads_off_not_an_upper_limit(tmp_path, capsys, monkeypatch):
    """Column c2 switches HLT_H off: it read "< 45.6 Hz (68% CL)" with upper_limit true, as HLT_None, which
    ran and accepted nothing; its rate is 0 by construction, whatever the sample."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    drawn: dict[str, tuple[list[float], list[list[float]]]] = {}
    errorbar = Axes.errorbar

    def spy(self, x, y, *args, **kw):  # the per-lumi plot's points and bars, path by path
        drawn[kw.get("label")] = (list(y), np.asarray(kw["yerr"], dtype=float).tolist())
        return errorbar(self, x, y, *args, **kw)

    monkeypatch.setattr(Axes, "errorbar", spy)
    rates, text, page = _run(_menu(tmp_path), capsys, "--prescale", "c2")
    row = _row(text, "HLT_H")
    assert row.split()[1:] == ["0", "off", "(prescale", "0)", "off", "(prescale", "0)", "HLT_H"]
    assert "<" in _row(text, "HLT_None") and "(68% CL)" in _row(text, "HLT_None")
    paths = {p["name"]: p for p in rates["paths"]}
    off, empty = paths["HLT_H"], paths["HLT_None"]
    for figure in (off, off["unique"]):
        assert figure["off"] is True and figure["upper_limit"] is False
        assert figure["accepted"] == 0 and figure["rate_hz"] == 0.0 and figure["error_hz"] == 0.0
        assert figure["interval_hz"] == [0.0, 0.0]
    # a path that ran and accepted nothing keeps its upper limit from the sample
    assert empty["off"] is False and empty["upper_limit"] is True and empty["error_hz"] > 0
    assert paths["HLT_J"]["off"] is False and rates["total"]["off"] is False and rates["total"]["accepted"] > 0
    assert all(entry["off"] == ["HLT_H"] for entry in rates["per_lumi"])
    section = page.split("<h2>Rates</h2>", 1)[1].split("<h2>", 1)[0]
    cells = re.search(r'<tr><td class="l">HLT_H</td>(.*?)</tr>', section).group(1)
    assert re.findall(r"<td>([^<]*)</td>", cells) == ["0", "off", "prescale 0", "off", "prescale 0"]
    assert "&lt;" in re.search(r'<tr><td class="l">HLT_None</td>(.*?)</tr>', section).group(1)
    # per lumi: the path off draws no point (it drew 0 with a bar up to '< X'), the empty one its upper limit
    y, (below, above) = drawn["HLT_H"]
    assert all(math.isnan(v) for v in y) and not any(below) and not any(above)
    y, (below, above) = drawn["HLT_None"]
    for entry, v, low, high in zip(rates["per_lumi"], y, below, above):
        assert v == 0 and low == 0 and high == pytest.approx(1e5 * 1.1394 / entry["events"], rel=1e-3)


def test_every_path_switched_off_makes_the_menu_total_off(tmp_path, capsys):
    rates, text, page = _run(_menu(tmp_path), capsys, "--prescale", "c3")
    assert all(p["off"] for p in rates["paths"]) and rates["total"]["off"] is True
    assert rates["total"]["rate_hz"] == 0.0 and rates["total"]["upper_limit"] is False
    assert "off" in _row(text, "(menu total: any path)") and "<" not in _row(text, "(menu total: any path)")
    assert "Menu total off (prescale 0: every path)." in page


@pytest.mark.parametrize("streams", [1, 4])
def test_a_path_off_in_one_column_of_the_job_only(tmp_path, capsys, streams):
    """The column changes from c1 to c2 at lumi 6 (lumiColumns): HLT_H is prescaled by 3, then off. Its
    job-wide rate is its accepted events over all the job's (the rate monitoring's counts over the run's
    time) with a line saying where it was off; its c2 rate, and its rate in lumis 6-10, are off. One stream
    and four give the same."""
    rates, text, page = _run(_menu(tmp_path, "lumiColumns: [{run: 1, lumi: 6, column: c2}]"), capsys,
                             f"options.numberOfThreads={streams}")
    job = {p["name"]: p for p in rates["paths"]}["HLT_H"]
    by_column = {c["column"]: {p["name"]: p for p in c["paths"]} for c in rates["per_column"]}
    assert job["off"] is False and job["accepted"] == by_column["c1"]["HLT_H"]["accepted"] > 0
    assert job["rate_hz"] == pytest.approx(1e5 * job["accepted"] / rates["events"])
    assert by_column["c1"]["HLT_H"]["off"] is False and by_column["c2"]["HLT_H"]["off"] is True
    assert not by_column["c2"]["HLT_J"]["off"] and not by_column["c2"]["HLT_None"]["off"]
    assert [entry.get("off") for entry in rates["per_lumi"]] == [None] * 5 + [["HLT_H"]] * 5
    c2 = sum(entry["events"] for entry in rates["per_lumi"] if entry["lumi"] >= 6)
    assert (f"RateReport  HLT_H is off (prescale 0) in column c2 ({c2} of {rates['events']} events): its job-wide "
            f"rate counts its accepted events over all {rates['events']}") in text
    assert f"HLT_H is off (prescale 0) in column c2 ({c2} of {rates['events']} events)" in page.split("<h2>Rates", 1)[1]
    assert "off" in _row(text, "HLT_H", "Path rates in prescale column c2")
    assert "off" not in _row(text, "HLT_H", "Path rates in prescale column c1")


def _fixed(tmp_path: Path, entry: str) -> Path:
    config = tmp_path / "fixed.yaml"
    config.write_text(f"""
options: {{wantSummary: false}}
source: {{type: TestCountingSource, n: 40}}
modules:
  pre: {{type: HLTPrescaler, prescale: 0}}
  odd: {{type: TestModuloFilter, divisor: 2}}
paths: {{HLT_P: [{entry}, odd]}}
services:
  TriggerRates: {{}}
""")
    return config


def test_a_fixed_prescale_of_zero_switches_the_path_off_and_an_inverted_one_does_not(tmp_path, capsys):
    """A prescaler's own ``prescale: 0`` (no PrescaleService) switches its path off too; inverted (``~pre``) it
    accepts every event and the path's rate is measured."""
    rates, _, _ = _run(_fixed(tmp_path, "pre"), capsys)
    assert rates["paths"][0]["off"] is True and rates["total"]["off"] is True
    rates, _, _ = _run(_fixed(tmp_path, "~pre"), capsys)
    assert rates["paths"][0]["off"] is False and rates["paths"][0]["accepted"] == 20


def test_the_paths_off_merge_with_the_patterns():
    """Dask units each record their lumis' paths off; the client's merge keeps them all."""
    first, second = TriggerPatterns(["A", "B"]), TriggerPatterns(["A", "B"])
    first.record(1, 1, 1, column="c1")
    second.record(1, 6, 1, column="c2", off=0b10)
    merged = first.merge(second)
    assert merged.off == {(1, 6): 0b10}
    assert merged.off_paths([(1, 6)]) == {"B"} and merged.off_paths() == frozenset()
