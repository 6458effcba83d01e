"""Runs and lumi sections in the outputs: the ROOT output's Runs and LuminosityBlocks trees, the job
report's <Runs> of every input (lumis read) and output (lumis seen, NEvents written), and the job
report's PeakValueRss equal to the MemoryReport's peak."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import uproot

from hltrun.framework.cli import main

from .conftest import LUMI_LAYOUT

CFG = """
process: LUMI
options: {{numberOfThreads: {streams}, maxEvents: {max_events}}}
source: {{type: RootJetSource, files: ["{lumi_file}", "{lumi_file2}"]}}
modules:
  third: {{type: TestEventNumberFilter, divisor: 3}}
  out: {{type: RootOutputModule, file: "{out}", select_events: [p]}}
paths: {{p: [third]}}
endpaths: {{e: [out]}}
services: {{Memory: {{}}}}
"""


def _runs(el) -> dict[tuple[int, int], str | None]:
    return {(int(r.get("ID")), int(ls.get("ID"))): ls.get("NEvents") for r in el.find("Runs") for ls in r}


@pytest.mark.parametrize("streams,max_events", [(1, -1), (2, -1), (1, 30)])
def test_runs_trees_and_job_report_runs(write_config, tmp_path, lumi_file, streams, max_events):
    second = tmp_path / "second.root"  # the same events again: one lumi section spans both files
    second.write_bytes(lumi_file.read_bytes())
    out = tmp_path / "out.root"
    cfg = write_config(CFG.format(streams=streams, max_events=max_events, lumi_file=lumi_file,
                                  lumi_file2=second, out=out))
    assert main([str(cfg), "-q", "-j", str(tmp_path / "fjr.xml"), "--report-dir", str(tmp_path / "r"),
                 "source.duplicateCheckMode=noDuplicateCheck"]) == 0
    n = len(LUMI_LAYOUT)
    read = (LUMI_LAYOUT * 2)[:n * 2 if max_events < 0 else max_events]
    events = [1000 + i for i in range(n)] * 2
    processed = Counter(read)
    written = Counter(key for key, e in zip(read, events) if e % 3 == 0)

    f = uproot.open(out)
    lumis = f["LuminosityBlocks"].arrays(library="np")
    assert list(zip(lumis["run"].tolist(), lumis["luminosityBlock"].tolist(), lumis["eventsProcessed"].tolist())) \
        == [(r, lumi, processed[(r, lumi)]) for r, lumi in sorted(processed)]
    runs = f["Runs"].arrays(library="np")
    per_run = Counter()
    for (r, _), k in processed.items():
        per_run[r] += k
    assert list(zip(runs["run"].tolist(), runs["eventsProcessed"].tolist())) == sorted(per_run.items())
    assert str(f["Runs"]["run"].interpretation) == "AsDtype('>u4')"  # NanoAOD's UInt_t

    root = ET.parse(tmp_path / "fjr.xml").getroot()
    ins = root.findall("InputFile")
    first = Counter(read[:n])
    assert _runs(ins[0]) == {key: None for key in first}  # input: lumi sections, no NEvents (as CMSSW)
    if len(ins) > 1:
        assert _runs(ins[1]) == {key: None for key in Counter(read[n:])}
    (file_el,) = root.findall("File")
    assert _runs(file_el) == {key: str(written[key]) for key in processed}  # 0 for (1, 3): seen, none written
    assert written[(1, 3)] == 0 and (1, 3) in processed
    assert [c.tag for c in file_el][-2:] == ["Runs", "Inputs"]  # CMSSW's order
    assert [[int(r.get("ID")) for r in el.find("Runs")] for el in [*ins, file_el]][-1] == sorted(per_run)

    metrics = {(s.get("Metric"), m.get("Name")): m.get("Value") for s in root.find("PerformanceReport") for m in s}
    transitions = [k for i, k in enumerate(read) if i == 0 or read[i - 1] != k]  # lumi changes in input order
    assert int(metrics[("ProcessingSummary", "NumberBeginLumiCalls")]) == len(transitions)
    assert int(metrics[("ProcessingSummary", "NumberBeginRunCalls")]) == \
        len([k for i, k in enumerate(transitions) if i == 0 or transitions[i - 1][0] != k[0]])
    for summary in root.find("PerformanceReport"):  # sorted by name, as CMSSW's std::map
        names = [m.get("Name") for m in summary]
        assert names == sorted(names)
    report = json.loads((tmp_path / "r" / "hltrun.json").read_text())
    memory = report["services"]["Memory"]
    assert float(metrics[("ApplicationMemory", "PeakValueRss")]) == pytest.approx(memory["peak_rss_mb"], rel=1e-5)
    assert float(metrics[("ApplicationMemory", "PeakValueVsize")]) == pytest.approx(memory["peak_vsize_mb"], rel=1e-5)
