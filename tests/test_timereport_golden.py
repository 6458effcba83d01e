"""Golden test: the TimeReport, whole lines, as FWCore/Framework/src/Schedule.cc writes them.

The expected text was written from Schedule.cc's stream statements (``"TimeReport" << setprecision(6)
<< fixed << "       event loop CPU/event = "``, ``setw(kColumn1Size=10)``, ``setw(kColumn2Size=12)``, per
exec = real time / max(1, timesRun), per visit = real time / max(1, timesVisited), one Real-time Module
Summary sorted by label (SystemTimeKeeper.cc's ``sort_all(rep.workerSummaries)``),
``"\\nT---Report end!\\n\\n"``), not from hltrun's output. hltrun's own figures (source, framework
overhead, bulk I/O, CPU per module) are LoopReport lines: no other line starts with TimeReport.
"""

from __future__ import annotations

from hltrun.framework.report.timereport import fast_timer_json, loop_report, time_report


def _module(label: str, real_ms: float, cpu_ms: float, calls: int, visits: int, events: int) -> dict:
    return {"label": label, "real_ms": real_ms, "cpu_ms": cpu_ms, "calls": calls, "visits": visits,
            "real_per_event_ms": real_ms / events, "cpu_per_event_ms": cpu_ms / events}


def _result() -> dict:
    n = 1000
    mods = [_module("vae", 2000.0, 1500.0, 1000, 1000, n), _module("anomalyFilter", 30.0, 28.0, 1000, 2000, n),
            _module("out", 500.0, 400.0, 250, 1000, n)]
    in_path = lambda label, ms, v: {"label": label, "real_per_event_ms": ms / n, "real_per_visit_ms": ms / v}
    return {
        "events": n,
        "loop": {"cpu_per_event_ms": 2.1, "real_per_event_ms": 2.6, "sum_streams_real_per_event_ms": 2.55,
                 "efficiency_cpu_real_per_thread": 0.8076923},
        "source": {"real_per_event_ms": 0.012},
        "source_bulk": {"real_per_event_ms": 0.25},
        "overhead": {"real_per_event_ms": 0.0034},
        "paths": [
            # ran on 800 of the 1000 events: per exec is real time / 800, not / events
            {"name": "HLT_AD", "endpath": False, "runs": 800, "real_ms": 2040.0, "real_per_event_ms": 2.04,
             "real_per_exec_ms": 999.0,  # a wrong precomputed figure: the report must divide itself
             "modules": [in_path("vae", 2000.0, 1000), in_path("anomalyFilter", 15.0, 1000)]},
            {"name": "HLT_Inv", "endpath": False, "runs": 1000, "real_ms": 15.0, "real_per_event_ms": 0.015,
             "real_per_exec_ms": 999.0, "modules": [in_path("anomalyFilter", 15.0, 1000)]},
            {"name": "outputPath", "endpath": True, "runs": 1000, "real_ms": 500.0, "real_per_event_ms": 0.5,
             "real_per_exec_ms": 999.0, "modules": [in_path("out", 500.0, 1000)]},
        ],
        "modules": mods,
    }


EXPECTED = """\
TimeReport ---------- Event  Summary ---[sec]----
TimeReport       event loop CPU/event = 0.002100
TimeReport      event loop Real/event = 0.002600
TimeReport     sum Streams Real/event = 0.002550
TimeReport efficiency CPU/Real/thread = 0.807692

TimeReport ---------- Path   Summary ---[Real sec]----
TimeReport  per event     per exec  Name
TimeReport   0.002040     0.002550  HLT_AD
TimeReport   0.000015     0.000015  HLT_Inv
TimeReport  per event     per exec  Name

TimeReport -------End-Path   Summary ---[Real sec]----
TimeReport  per event     per exec  Name
TimeReport   0.000500     0.000500  outputPath
TimeReport  per event     per exec  Name

TimeReport ---------- Modules in Path: HLT_AD ---[Real sec]----
TimeReport  per event    per visit  Name
TimeReport   0.002000     0.002000  vae
TimeReport   0.000015     0.000015  anomalyFilter

TimeReport ---------- Modules in Path: HLT_Inv ---[Real sec]----
TimeReport  per event    per visit  Name
TimeReport   0.000015     0.000015  anomalyFilter
TimeReport  per event    per visit  Name

TimeReport ------ Modules in End-Path: outputPath ---[Real sec]----
TimeReport  per event    per visit  Name
TimeReport   0.000500     0.000500  out
TimeReport  per event    per visit  Name

TimeReport ---------- Module Summary ---[Real sec]----
TimeReport  per event     per exec    per visit  Name
TimeReport   0.000030     0.000030     0.000015  anomalyFilter
TimeReport   0.000500     0.002000     0.000500  out
TimeReport   0.002000     0.002000     0.002000  vae
TimeReport  per event     per exec    per visit  Name

T---Report end!
"""


def test_timereport_matches_schedule_cc_line_for_line():
    got = time_report(_result()).splitlines()
    want = EXPECTED.splitlines()
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {i + 1}:\n got  {g!r}\n want {w!r}"
    assert len(got) == len(want)


def test_hltrun_figures_are_outside_the_timereport():
    """Source, bulk I/O, overhead and the CPU Module Summary: LoopReport lines, none with TimeReport."""
    text = loop_report(_result())
    assert "TimeReport" not in text
    assert "LoopReport          source Real/event = 0.000012" in text.splitlines()
    assert "LoopReport source bulk I/O Real/event = 0.000250" in text.splitlines()
    assert "LoopReport    fwk overhead Real/event = 0.000003" in text.splitlines()
    assert "LoopReport   0.001500     0.001500     0.001500  vae" in text.splitlines()  # CPU seconds
    assert text.count("Module Summary") == 1


def test_resources_json_memory_is_kb_rounded_down():
    """FastTimerService.cc: ``kB(bytes) = bytes / 1024`` in integers, for every entry and for the job
    total (converted from the job's bytes, not summed from rounded entries)."""
    res = _result()
    res.update(source={"type": "RootSource", "label": "source", "calls": 1000, "cpu_ms": 1.0, "real_ms": 2.0},
               overhead={"cpu_ms": 0.5, "real_ms": 0.7}, loop={**res["loop"], "idle_real_ms": 0.0})
    for m in res["modules"]:
        m["type"] = "T"
    del res["source_bulk"]
    alloc = {"vae": {"allocated": 2047, "freed": 1023}, "anomalyFilter": {"allocated": 1023, "freed": 0},
             "out": {"allocated": 1024 * 1024 + 1023, "freed": 1025}}
    doc = fast_timer_json(res, "HLTX", alloc)
    mem = {m["label"]: (m["mem_alloc"], m["mem_free"]) for m in doc["modules"]}
    assert mem["vae"] == (1, 0) and mem["anomalyFilter"] == (0, 0) and mem["out"] == (1024, 1)
    assert (doc["total"]["mem_alloc"], doc["total"]["mem_free"]) == ((2047 + 1023 + 1024 * 1024 + 1023) // 1024,
                                                                   (1023 + 1025) // 1024)
    assert doc["total"]["mem_alloc"] == 1027 != sum(m["mem_alloc"] for m in doc["modules"])  # 1025
