"""Prescale columns that change at lumi boundaries, as CMSSW's HLTPrescaler follows the L1 GT's
prescale index (here the PrescaleService's ``lumiColumns``; ``forceDefault`` ignores them): checked
event by event against HLTPrescaler::filter written out independently."""

from __future__ import annotations

import json
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


MENU = """
process: FACTORS
options: {{maxEvents: 2000, wantSummary: false, numberOfThreads: {streams}}}
source: {{type: RootJetSource, files: [{data}], tree: Events, layout: counts, chunk_size: 100}}
modules:
  preP: {{type: HLTPrescaler}}
  preQ: {{type: HLTPrescaler, offset: 2}}
  preR: {{type: HLTPrescaler}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{HLT_P: [preP], HLT_Q: [preQ], HLT_R: [preR]}}
endpaths: {{o: [out]}}
services:
  PrescaleService:
    lvl1Labels: [c1, c2]
    lvl1DefaultLabel: c1
    lumiColumns: [{{run: 1, lumi: 5, column: c2}}]
    prescaleTable:
      - {{pathName: HLT_P, prescales: [3, 0]}}
      - {{pathName: HLT_Q, prescales: [1, 2]}}
      - {{pathName: HLT_R, prescales: [4, 4]}}
  TriggerRates: {{}}
"""
FACTORS = {"HLT_P": (3, 0), "HLT_Q": (1, 2), "HLT_R": (4, 4)}  # (c1, c2): c2 from lumi 5 on


def factors_menu(tmp_path: Path, streams: int = 1) -> Path:
    config = tmp_path / f"menu{streams}.yaml"
    config.write_text(MENU.format(streams=streams, data=REPO / "data" / "qcd_dijet.root",
                                  out=tmp_path / f"out{streams}.root"))
    return config


def counts_per_factor(output: Path) -> dict[str, dict[int, tuple[int, int]]]:
    """From the output file's trigger bits, with numpy: per path, per factor it had, (events, accepted)
    (every event reaches the prescaler, the path's only module)."""
    with uproot.open(output) as f:
        t = f["Events"]
        lumi = t["luminosityBlock"].array(library="np")
        bits = {p: t[p].array(library="np").astype(bool) for p in FACTORS}
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for path, (first, second) in FACTORS.items():
        per: dict[int, list[int]] = {}
        for factor, mask in ((first, lumi < 5), (second, lumi >= 5)):
            counts = per.setdefault(factor, [0, 0])
            counts[0] += int(mask.sum())
            counts[1] += int(bits[path][mask].sum())
        out[path] = {factor: (e, a) for factor, (e, a) in per.items()}
    return out


def summary_per_factor(module: dict) -> dict[int, tuple[int, int]]:
    return {int(k.split(":")[1]): (v, module[f"accepted_at_prescale:{k.split(':')[1]}"])
            for k, v in module.items() if k.startswith("events_at_prescale:")}


@pytest.mark.parametrize("streams", [1, 4])
def test_the_prescaler_summary_names_every_factor_it_ran_with(tmp_path, streams):
    # kills: a summary with only the last factor ('prescale: 0' beside 'accepted: 417', of the factor 3),
    # the events of one factor counted under another, counters per factor not added over streams
    summary, _ = run_config(factors_menu(tmp_path, streams))
    expected = counts_per_factor(tmp_path / f"out{streams}.root")
    assert expected["HLT_P"][3][0] == 1000 and expected["HLT_P"][0] == (1000, 0)  # lumis 1-4, then 5-8
    for label, path in (("preP", "HLT_P"), ("preQ", "HLT_Q"), ("preR", "HLT_R")):
        module = summary.module_summaries[label]
        assert summary_per_factor(module) == expected[path], label
        assert module["events"] == 2000 and module["accepted"] == sum(a for _, a in expected[path].values())
    assert summary.module_summaries["preP"]["prescale"] == "3 in c1, 0 in c2"
    assert summary.module_summaries["preR"]["prescale"] == "4"  # one factor in both columns


def _section(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


@pytest.mark.parametrize("streams", [1, 4])
def test_the_reports_mark_every_column_the_job_ran_in_and_what_each_prescaler_kept(tmp_path, streams):
    # kills: only the default column marked '(this job)' in a job that ran in two; a column the job never
    # reached marked; no per-factor kept counts against events / N; no word that 4 streams count apart
    pytest.importorskip("matplotlib")
    from hltrun.framework.cli import main

    config = factors_menu(tmp_path, streams)
    assert main([str(config), "-q", "--report-dir", str(tmp_path / "rep")]) == 0
    expected = counts_per_factor(tmp_path / f"out{streams}.root")
    page = (tmp_path / "rep" / "report.html").read_text()
    section = _section(page, "Prescales")
    assert re.findall(r"<th>(c\d[^<]*)</th>", section) == ["c1 (this job)", "c2 (this job)"]
    rows = re.findall(r'<tr><td class="l">(pre\w)</td><td class="l">(HLT_\w)</td><td>(\d+)</td><td>([\d,]+)</td>'
                      r'<td>([\d,]+)</td><td>([\d.,]+)</td></tr>', section.replace(",", ""))
    want = sorted((f"pre{path[-1]}", path, factor, events, accepted)
                  for path, per in expected.items() for factor, (events, accepted) in per.items())
    assert sorted((a, b, int(c), int(d), int(e)) for a, b, c, d, e, _ in rows) == want
    for _, _, factor, events, _, over_n in rows:
        assert float(over_n) == pytest.approx(int(events) / int(factor) if int(factor) else 0.0, abs=0.05)
    report = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["PrescaleService"]
    assert report["columns_ran"] == ["c1", "c2"] and report["events_vary_between_runs"] == (streams > 1)
    assert ("compare the kept fraction with 1/N" in section) == (streams > 1)
    if streams > 1:
        assert f"each of the {streams} streams counts on its own" in report["counting"]

    # the same job stopped in lumi 4: it never reached c2, which stays unmarked
    assert main([str(config), "-q", "-n", "1000", "--report-dir", str(tmp_path / "rep2")]) == 0
    section = _section((tmp_path / "rep2" / "report.html").read_text(), "Prescales")
    assert re.findall(r"<th>(c\d[^<]*)</th>", section) == ["c1 (this job)", "c2"]


def test_overlaps_per_column_where_the_job_ran_in_several(tmp_path, capsys):
    # kills: one job-wide overlap matrix mixing a column where HLT_P kept 1 in 3 with one where it was off,
    # given as the menu's overlaps with no word of it
    from hltrun.framework.cli import main

    assert main([str(factors_menu(tmp_path)), "options.wantSummary=true", "--report-dir", str(tmp_path / "rep")]) == 0
    text = capsys.readouterr().out
    with uproot.open(tmp_path / "out1.root") as f:
        t = f["Events"]
        lumi = t["luminosityBlock"].array(library="np")
        bits = [t[p].array(library="np").astype(bool) for p in FACTORS]
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    for column, mask in (("c1", lumi < 5), ("c2", lumi >= 5)):
        entry = next(c for c in rates["per_column"] if c["column"] == column)
        assert entry["overlap_events"] == [[int((a & b & mask).sum()) for b in bits] for a in bits]
        block = text.split(f"Overlaps in prescale column {column}:", 1)[1].split("\n\n", 1)[0]
        row_p = next(line for line in block.splitlines() if line.endswith("[0] HLT_P")).split()[1:4]
        if column == "c2":  # HLT_P off: 0/0, no fraction
            assert row_p == ["-", "-", "-"]
        else:
            own = int((bits[0] & mask).sum())
            assert [float(v) for v in row_p] == [round(int((bits[0] & b & mask).sum()) / own, 3) for b in bits]
    assert "Overlaps (prescale columns c1, c2 mixed: each column's below)" in text


@pytest.mark.parametrize("lumi_columns, column", [("[{run: 1, lumi: 3, column: c2}]", "c2"), ("[]", None)])
def test_a_path_prescaled_in_a_column_lumi_columns_announce_needs_a_prescaler(tmp_path, capsys, lumi_columns, column):
    """HLT_P has no prescaler and prescale 0 in c2: '--prescale c2' was refused, but a job that lumiColumns
    switched to c2 ran HLT_P unprescaled there, its 0 silently ignored (1227 of 1250 QCD events accepted in
    the column that turns it off). Every column the job can run in is checked."""
    from hltrun.framework.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"""
options: {{wantSummary: false}}
source: {{type: TestCountingSource, n: 10}}
modules:
  preQ: {{type: HLTPrescaler}}
  odd: {{type: TestModuloFilter, divisor: 2}}
paths: {{HLT_P: [odd], HLT_Q: [preQ]}}
services:
  PrescaleService:
    lvl1Labels: [c1, c2]
    lvl1DefaultLabel: c1
    prescaleTable:
      - {{pathName: HLT_P, prescales: [1, 0]}}
      - {{pathName: HLT_Q, prescales: [1, 2]}}
    lumiColumns: {lumi_columns}
""")
    code = main([str(config), "-q"])
    err = capsys.readouterr().err
    if column is None:  # c2 is never in force: nothing to refuse
        assert code == 0, err
        return
    assert code == 2
    assert err.strip().splitlines() == [f"hltrun: error: {config}: services.PrescaleService: path 'HLT_P' has "
                                        f"prescale 0 in column 'c2' but no HLTPrescaler on it"]


def test_the_prescale_option_holds_its_column_all_job_whatever_lumi_columns_say(tmp_path, capsys):
    """``--prescale c1`` on a menu whose lumiColumns switch to c2 at lumi 5: the job ran c1 for lumis 1-4 only,
    then c2 (HLT_P off) with no word, where hltGetConfiguration's ``--prescale`` sets ``forceDefault`` too."""
    from hltrun.framework.cli import main

    config = factors_menu(tmp_path)
    assert main([str(config), "-n", "1500", "--prescale", "c1", "--report-dir", str(tmp_path / "rep")]) == 0
    report = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["PrescaleService"]
    assert report["columns_ran"] == ["c1"]
    with uproot.open(tmp_path / "out1.root") as f:
        lumi = f["Events"]["luminosityBlock"].array(library="np")
        kept = f["Events"]["HLT_P"].array(library="np").astype(bool)
    assert lumi.max() >= 5 and kept[lumi >= 5].sum() > 0  # c1's 1 in 3 after lumi 5 too, not c2's 0
    err = capsys.readouterr().err
    assert err.count("forceDefault (--prescale sets it) holds column c1 all job long: the 1 lumiColumns change(s) "
                     "are not applied") == 1
    # the column to start in, the lumiColumns followed: lvl1DefaultLabel alone, no warning
    assert main([str(config), "-q", "-n", "1500", "services.PrescaleService.lvl1DefaultLabel=c1",
                 "--report-dir", str(tmp_path / "rep2")]) == 0
    assert json.loads((tmp_path / "rep2" / "hltrun.json").read_text())["services"]["PrescaleService"][
        "columns_ran"] == ["c1", "c2"]
    assert "forceDefault" not in capsys.readouterr().err
