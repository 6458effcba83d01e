"""MemoryReport as CMSSW's SimpleMemoryCheck prints it: whole lines against text written from its format.

The expected lines were worked out by hand from SimpleMemoryCheck.cc (updateEventStats, postEndJob,
the SignificantEvent ``operator<<`` and edm::EventID's), not produced by the code under test.
"""

from __future__ import annotations

import gc
import re

import pytest

from hltrun.framework.errors import ConfigError
from hltrun.framework.services.memory_cmssw import (EndJobMemory, MemoryCheck, module_report_lines, read_smaps,
                                             report_lines)
from tests.helpers import run_config
from tests.test_memory import MemoryHog  # noqa: F401  (registers TestMemoryHog)

# (vsize MB, rss MB) after events 11..15 of run 1, lumi 2
SEQUENCE = [(100.0, 50.0), (110.0, 55.0), (105.0, 60.0), (130.0, 58.0), (131.123456, 70.0)]


def _feed(ignore_total: int) -> MemoryCheck:
    check = MemoryCheck(ignore_total)
    for i, (vsize, rss) in enumerate(SEQUENCE):
        check.post_event(vsize, rss, (1, 2, 11 + i))
    check.state.end = EndJobMemory(140.5, 71.25, None)
    return check


def test_memoryreport_lines_as_simplememorycheck_prints_them():
    lines = report_lines(_feed(1).state)
    assert lines == [
        # log << "MemoryReport> EndJob: virtual size " << current_->vsize << " Mbytes, RSS " << current_->rss << " Mbytes";
        "MemoryReport> EndJob: virtual size 140.5 Mbytes, RSS 71.25 Mbytes",
        # log << "MemoryReport> Peak virtual size " << eventT1_.vsize << " Mbytes (RSS " << eventT1_.rss << ")";
        "MemoryReport> Peak virtual size 131.123 Mbytes (RSS 70)",
        # log << "\n Key events increasing vsize: \n" << eventL2_ << "\n" << eventL1_ << "\n" << eventM_ << ...
        " Key events increasing vsize: ",
        "[1] run: 1 lumi: 2 event: 11  vsize = 100 deltaVsize = 0 rss = 50 delta = 0",  # L2
        "[2] run: 1 lumi: 2 event: 12  vsize = 110 deltaVsize = 10 rss = 55 delta = 5",  # L1
        "[4] run: 1 lumi: 2 event: 14  vsize = 130 deltaVsize = 20 rss = 58 delta = 3",  # M
        "[5] run: 1 lumi: 2 event: 15  vsize = 131.123 deltaVsize = 1.12346 rss = 70 delta = 12",  # R1
        "[0] run: 0 lumi: 0 event: 0  vsize = 0 deltaVsize = 0 rss = 0 delta = 0",  # R2 (never set)
        "[2] run: 1 lumi: 2 event: 12  vsize = 110 deltaVsize = 10 rss = 55 delta = 5",  # T3
        "[4] run: 1 lumi: 2 event: 14  vsize = 130 deltaVsize = 20 rss = 58 delta = 3",  # T2
        "[5] run: 1 lumi: 2 event: 15  vsize = 131.123 deltaVsize = 1.12346 rss = 70 delta = 12",  # T1
        # << "\nMemoryReport> Peak rss size " << eventRssT1_.rss << " Mbytes (VSIZE " << eventRssT1_.vsize << ")";
        "MemoryReport> Peak rss size 70 Mbytes (VSIZE 131.123)",
        " Key events increasing rss:",
        "[4] run: 1 lumi: 2 event: 14  vsize = 130 deltaVsize = 20 rss = 58 delta = -2",  # RssT3
        "[3] run: 1 lumi: 2 event: 13  vsize = 105 deltaVsize = -5 rss = 60 delta = 5",  # RssT2
        "[5] run: 1 lumi: 2 event: 15  vsize = 131.123 deltaVsize = 1.12346 rss = 70 delta = 10",  # RssT1
        "[3] run: 1 lumi: 2 event: 13  vsize = 105 deltaVsize = -5 rss = 60 delta = 5",  # DeltaRssT3
        "[2] run: 1 lumi: 2 event: 12  vsize = 110 deltaVsize = 10 rss = 55 delta = 5",  # DeltaRssT2
        "[5] run: 1 lumi: 2 event: 15  vsize = 131.123 deltaVsize = 1.12346 rss = 70 delta = 10",  # DeltaRssT1
    ]


def test_ignore_total_skips_the_first_events():
    """ignoreTotal = 2: event 11 is not looked at, event 12 is the baseline (count == num_to_skip_)."""
    lines = report_lines(_feed(2).state)
    assert not any("event: 11 " in line for line in lines)
    assert "[2] run: 1 lumi: 2 event: 12  vsize = 110 deltaVsize = 0 rss = 55 delta = 0" in lines
    # 130 - 110 against the new baseline; the RSS increase of event 13 is now the largest one before 15
    assert "[4] run: 1 lumi: 2 event: 14  vsize = 130 deltaVsize = 20 rss = 58 delta = 3" in lines
    assert lines[-1] == "[5] run: 1 lumi: 2 event: 15  vsize = 131.123 deltaVsize = 1.12346 rss = 70 delta = 10"


def test_module_memory_report_lines():
    check = MemoryCheck(1)
    check.module_call("b", 2.0, (1, 2, 11))  # count 0 < ignoreTotal: early
    check.module_call("a", 0.0, (1, 2, 11))  # no change at all: not printed, as in CMSSW
    check.post_event(100.0, 50.0, (1, 2, 11))
    check.module_call("b", 1.5, (1, 2, 12))
    check.module_call("c", 0.25, (1, 2, 12))
    check.post_event(101.5, 50.0, (1, 2, 12))
    check.module_call("b", 3.0, (1, 2, 13))
    assert module_report_lines(check.state) == [
        "ModuleMemoryReport> Each line has module label and: ",
        "  (after early ignored events) ",
        "    count of times module executed; average increase in vsize ",
        "    maximum increase in vsize; event on which maximum occurred ",
        "  (during early ignored events) ",
        "    total and maximum vsize increases ",
        " ",
        # mmr << label << ": " << "n = " << n << " avg = " << total / n << " max = " << max << " " << eventMaxDeltaV
        #     << " early total: " << totalEarly << " max: " << maxEarly;
        "b: n = 2 avg = 2.25 max = 3 run: 1 lumi: 2 event: 13 early total: 2 max: 2",
        "c: n = 1 avg = 0.25 max = 0.25 run: 1 lumi: 2 event: 12",
    ]


SMAPS = """\
00400000-00500000 r-xp 00000000 fe:00 11 /usr/lib/libfoo.so.1
Size:               1024 kB
Rss:                 512 kB
Pss:                 256 kB
Private_Clean:       128 kB
Private_Dirty:        64 kB
AnonHugePages:         0 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                2048 kB
Pss:                2048 kB
Private_Dirty:      2048 kB
AnonHugePages:      2048 kB
7f0000200000-7f0000300000 r--p 00000000 fe:00 12 /data/modules.pcm
Size:                 10 kB
Rss:                   5 kB
7f0000300000-7f0000400000 r--p 00000000 fe:00 13 /data/model.onnx
Size:                100 kB
Rss:                  50 kB
7ffd00000000-7ffd00100000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  32 kB
Pss:                  32 kB
VmFlags: rd wr mr mw me gd ac
"""


def test_endjob_smaps_lines(tmp_path):
    path = tmp_path / "smaps"
    path.write_text(SMAPS)
    smaps = read_smaps(str(path))
    lines = report_lines(_state_with_end(EndJobMemory(400.0, 120.0, smaps)))
    assert lines[:7] == [
        "MemoryReport> EndJob: virtual size 400 Mbytes, RSS 120 Mbytes, PSS 2.28125 MBytes, Private 2.1875",
        " AnonHugePages 2 Mbytes",
        " mmapped memory pages 2 Mbytes (VSize), 2 MBytes (RSS)",
        " mmapped file pages 1.10742 Mbytes (VSize), 0.553711 MBytes (RSS)",
        "  of which .so's 1 Mbytes (VSize), 0.5 MBytes (RSS)",
        "  of which PCM's 0.00976562 Mbytes (VSize), 0.00488281 MBytes (RSS)",
        "  of which other 0.0976562 Mbytes (VSize), 0.0488281 MBytes (RSS)",
    ]


def _state_with_end(end: EndJobMemory):
    check = _feed(1)
    check.state.end = end
    return check.state


CFG = """
source: {type: TestCountingSource, n: 6}
modules:
  hog: {type: TestMemoryHog, begin_mb: 4, per_event_mb: 8}
  sq: {type: TestSquare}
paths:
  p: [hog, sq]
services:
  Memory: {moduleMemorySummary: true}
"""

NUMBER = r"-?[0-9.e+-]+"


def test_job_prints_the_greppable_lines_first(write_config):
    gc.collect()  # garbage of earlier tests freed now, not inside a hog call (a VSIZE drop there)
    gc.disable()
    try:
        summary, process = run_config(write_config(CFG))
    finally:
        gc.enable()
    (memory,) = process.services
    text = memory.text_report(summary).splitlines()
    assert re.fullmatch(rf"MemoryReport> EndJob: virtual size {NUMBER} Mbytes, RSS {NUMBER} Mbytes(, PSS .*)?", text[0])
    peak = next(i for i, line in enumerate(text) if line.startswith("MemoryReport> Peak virtual size"))
    assert re.fullmatch(rf"MemoryReport> Peak virtual size {NUMBER} Mbytes \(RSS {NUMBER}\)", text[peak])
    assert any(re.fullmatch(rf"MemoryReport> Peak rss size {NUMBER} Mbytes \(VSIZE {NUMBER}\)", t) for t in text)
    # the hog maps 8 MB more on every event: VSIZE +8 per call, the first call during the ignored event
    hog = next(t for t in text if t.startswith("hog: "))
    m = re.fullmatch(rf"hog: n = 5 avg = ({NUMBER}) max = ({NUMBER}) run: 1 lumi: 1 event: \d early total: "
                     rf"({NUMBER}) max: {NUMBER}", hog)
    assert m, hog
    # (the 8 MB temporary bytes the hog writes from may grow malloc's heap once: avg can exceed 8)
    assert 7.9 <= float(m.group(1)) <= 12 and float(m.group(2)) >= 7.9 and float(m.group(3)) >= 7.9, hog
    # hltrun's own tables come after the CMSSW lines
    assert text.index("MemoryReport ---------- Memory  Summary ---[MiB]----") > text.index(hog)
    # peak VSIZE of the job = the last event's (the hog never frees)
    assert float(text[peak].split()[4]) == pytest.approx(memory.results()["peak_vsize_mb"], rel=1e-5)  # %g: 6 digits


def test_own_lines_name_the_unit_they_print_mib(write_config):
    """hltrun's own MemoryReport lines and the page print bytes / 1024² (SimpleMemoryCheck's "Mbytes", which
    cmsRun's lines keep) and named it "MB", while the device memory lines of the same report name the same unit
    "MiB": 139.4 "MB" of RSS is 146.1 MB. Each figure is checked against the CMSSW line's, as the page's."""
    summary, process = run_config(write_config(CFG))
    (memory,) = process.services
    r = memory.results()
    text = memory.text_report(summary).splitlines()
    own = [t for t in text if t.startswith("MemoryReport  ") or t.startswith("MemoryReport ----")]
    assert own and not [t for t in own if re.search(r"\bMB\b", t)], own
    peak_rss = next(t for t in text if t.startswith("MemoryReport> Peak rss size"))
    assert f"peak RSS {float(peak_rss.split()[4]):.1f} MiB" in "\n".join(own)  # the same bytes / 1024²
    page = re.sub(r"data:[^\"']+", "", "".join(body for _, body in memory.html_sections(summary)))  # no base64 plots
    assert f"Peak RSS <b>{r['peak_rss_mb']:.1f} MiB</b>" in page and not re.search(r"\bMB\b", page)


def test_ignore_total_is_validated(write_config):
    with pytest.raises(ConfigError, match=r"services.Memory.*ignoreTotal must be >= 0"):
        run_config(write_config(CFG), "services.Memory.ignoreTotal=-1")
