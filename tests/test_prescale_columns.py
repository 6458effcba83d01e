"""Prescale columns that change at lumi boundaries, as CMSSW's HLTPrescaler follows the L1 GT's
prescale index (here the PrescaleService's ``lumiColumns``; ``forceDefault`` ignores them): checked
event by event against HLTPrescaler::filter written out independently."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import uproot

from hltrun.framework.services.prescale import LumiColumn, PrescaleRow, PrescaleTable

from .helpers import run_config

REPO = Path(__file__).resolve().parents[1]
SEED = 65537


def _table(**kw) -> PrescaleTable:
    return PrescaleTable(lvl1Labels=["a", "b", "off"], lvl1DefaultLabel="a",
                         prescaleTable=[PrescaleRow("HLT_P", [1, 4, 0]), PrescaleRow("HLT_Q", [3, 3, 7])], **kw)


def test_the_column_in_force_per_lumi():
    table = _table(lumiColumns=[LumiColumn(1, 3, "b"), LumiColumn(1, 6, "off"), LumiColumn(2, 1, "a")])
    assert [table.column_at(1, lumi) for lumi in range(1, 8)] == [0, 0, 1, 1, 1, 2, 2]
    assert table.column_at(2, 5) == 0 and table.column_at(3, 1) == 0
    assert _table(lumiColumns=[LumiColumn(1, 3, "b")], forceDefault=True).column_at(1, 9) == 0
    with pytest.raises(ValueError, match="lumiColumns\\[0\\].column 'x' is not one of"):
        _table(lumiColumns=[LumiColumn(1, 3, "x")])
    with pytest.raises(ValueError, match="increasing"):
        _table(lumiColumns=[LumiColumn(1, 5, "b"), LumiColumn(1, 3, "a")])


def _cmssw(ids: list[tuple[int, int, int]], table: PrescaleTable, path: str, phase: int = 0) -> list[bool]:
    """HLTPrescaler::filter and beginLuminosityBlock (CMSSW 14), for one stream's events in order; the
    GT's prescale index per lumi is the table's column_at."""
    prescale_set, factor, count, offset, new_lumi, lumi_of_last = 0, 1, 0, 0, True, None
    out = []
    for run, lumi, event in ids:
        if (run, lumi) != lumi_of_last:  # beginLuminosityBlock
            lumi_of_last, new_lumi = (run, lumi), True
        if new_lumi:
            new_lumi = False
            needs_init = count == 0
            old_set = prescale_set
            prescale_set = table.column_at(run, lumi)
            factor = table.prescale_in(path, prescale_set)
            if prescale_set != old_set:
                needs_init = True
            if needs_init and factor != 0:
                offset = ((event + phase) * SEED) % factor
        out.append(factor != 0 and (count + offset) % factor == 0)
        count += 1
    return out


@pytest.mark.parametrize("columns, force", [
    ([{"run": 1, "lumi": 3, "column": "b"}, {"run": 1, "lumi": 6, "column": "off"}, {"run": 1, "lumi": 8, "column": "a"}],
     False),
    ([{"run": 1, "lumi": 1, "column": "b"}, {"run": 1, "lumi": 4, "column": "a"}], False),
    ([{"run": 1, "lumi": 3, "column": "b"}], True),  # forceDefault: the default column all job long
])
def test_a_column_switch_mid_run_is_cmssws(tmp_path, columns, force):
    config = tmp_path / "c.yaml"
    config.write_text(f"""
process: COLUMNS
options: {{maxEvents: 2000, wantSummary: false}}
source: {{type: RootJetSource, files: [{REPO / 'data' / 'qcd_dijet.root'}], tree: Events, layout: counts}}
modules:
  preP: {{type: HLTPrescaler}}
  preQ: {{type: HLTPrescaler, offset: 5}}
  out: {{type: RootOutputModule, file: {tmp_path / 'out.root'}}}
paths: {{HLT_P: [preP], HLT_Q: [preQ]}}
endpaths: {{o: [out]}}
services:
  PrescaleService:
    lvl1Labels: [a, b, "off"]
    lvl1DefaultLabel: a
    forceDefault: {str(force).lower()}
    lumiColumns: {columns}
    prescaleTable:
      - {{pathName: HLT_P, prescales: [1, 4, 0]}}
      - {{pathName: HLT_Q, prescales: [3, 3, 7]}}
""")
    summary, process = run_config(config)
    with uproot.open(tmp_path / "out.root") as f:
        t = f["Events"]
        ids = list(zip(*(t[b].array(library="np").tolist() for b in ("run", "luminosityBlock", "event"))))
        bits = {p: t[p].array(library="np").astype(bool).tolist() for p in ("HLT_P", "HLT_Q")}
    table = process.config.services["PrescaleService"].params
    assert len(ids) == 2000
    assert bits["HLT_P"] == _cmssw(ids, table, "HLT_P")
    assert bits["HLT_Q"] == _cmssw(ids, table, "HLT_Q", phase=5)
    for label, path in (("preP", "HLT_P"), ("preQ", "HLT_Q")):
        module = process.instances[label][0].summary()
        assert module["events"] == 2000 and module["accepted"] == sum(bits[path])
    if force:
        assert all(bits["HLT_P"])
    else:
        assert 0 < sum(bits["HLT_P"]) < 2000


def test_report_html_shows_the_column_in_force_and_the_paths_it_turns_off(tmp_path):
    # kills: report.html without the prescale table (a path at 0 read as a measured '< X Hz'): the service
    # measured nothing, so the CLI's report services (executors.report_services) left it out of the page
    pytest.importorskip("matplotlib")
    from hltrun.framework.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("""
process: PRESCALED
options: {wantSummary: false}
source: {type: TestCountingSource, n: 20}
modules:
  preP: {type: HLTPrescaler}
  preQ: {type: HLTPrescaler}
paths: {HLT_P: [preP], HLT_Q: [preQ]}
services:
  PrescaleService:
    lvl1Labels: [high, emergency]
    lvl1DefaultLabel: high
    prescaleTable:
      - {pathName: HLT_P, prescales: [1, 0]}
      - {pathName: HLT_Q, prescales: [3, 2]}
  TriggerRates: {}
""")
    assert main([str(config), "-q", "--prescale", "emergency", "--report-dir", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    section = page.split("<h2>Prescales</h2>", 1)[1].split("<h2>", 1)[0]
    assert "Prescale column <b>emergency</b>" in section and "emergency (this job)" in section
    assert "Off in this column (prescale 0, they accept nothing): HLT_P." in section
    rows = re.findall(r'<tr><td class="l">(\w+)</td><td>(\w+)</td><td>(\w+)</td></tr>', section)
    assert rows == [("HLT_P", "1", "off"), ("HLT_Q", "3", "2")]
    assert page.index("<h2>Prescales</h2>") < page.index("<h2>Rates</h2>")


def test_the_column_merges_over_dask_units():
    # kills: a snapshot with no merge (a plain string) stopping a Dask job at the units' merge
    from hltrun.framework.results import JobResult
    from hltrun.framework.services.prescale import ColumnInForce
    from hltrun.framework.summary import JobSummary

    a = JobResult(JobSummary("P", streams=1), {"PrescaleService": ColumnInForce("emergency")})
    b = JobResult(JobSummary("P", streams=1), {"PrescaleService": ColumnInForce("emergency")})
    assert a.merge(b).services["PrescaleService"] == ColumnInForce("emergency")
