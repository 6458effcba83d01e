"""CMSSW-style TrigReport: events, paths, modules in paths, module summary."""

from __future__ import annotations

from ..provenance import imported_text, variants_line
from ..summary import JobSummary

_HEAD = "TrigReport"


def _bits(flag: int, bit: int) -> str:
    """Schedule.cc: ``setw(5) << flag << setw(5) << bit`` (flag 1 for paths, 0 for end paths)."""
    return f"{flag:>5}{bit:>5}"


def _columns(*values: int) -> str:
    return "".join(f" {v:>10}" for v in values)


def _header(*columns: str) -> str:
    return f"{_HEAD} " + " ".join(f"{c:>10}" for c in columns) + " Name"


def trig_report(summary: JobSummary) -> str:
    """The TrigReport, line for line as FWCore/Framework/src/Schedule.cc (sendFwkSummaryToMessageLogger)
    prints it with wantSummary: a blank line, event summary, path and end-path summaries, modules in each
    path and end path, and the module summary sorted by label (getTriggerReport's ``sort_all``), so that
    users' greps and diffs of cmsRun logs work on hltrun's."""
    s = summary
    passed = s.events_passed if s.paths else s.events_processed  # Schedule.cc: no trigger paths, all pass
    lines = ["", f"{_HEAD} ---------- Event  Summary ------------",
             f"{_HEAD} Events total = {s.events_processed} passed = {passed} failed = {s.events_processed - passed}",
             "", f"{_HEAD} ---------- Path   Summary ------------",
             _header("Trig Bit#", "Executed", "Passed", "Failed", "Error")]
    for bit, (name, c) in enumerate(s.paths.items()):
        lines.append(f"{_HEAD} {_bits(1, bit)}{_columns(c.executed, c.passed, c.failed, c.error)} {name}")
    lines += ["", f"{_HEAD} -------End-Path   Summary ------------",
              _header("Trig Bit#", "Executed", "Passed", "Failed", "Error")]
    for bit, (name, c) in enumerate(s.endpaths.items()):
        lines.append(f"{_HEAD} {_bits(0, bit)}{_columns(c.executed, c.passed, c.failed, c.error)} {name}")
    for name, c in s.paths.items():
        lines += ["", f"{_HEAD} ---------- Modules in Path: {name} ------------",
                  _header("Trig Bit#", "Visited", "Passed", "Failed", "Error")]
        # Schedule.cc prints ModuleInPathSummary::bitPosition, the module's place in its path (WorkerInPath's
        # placeInPath: 0, 1, 2, ...), not the path's bit (only CMSSW before ~2014 printed that)
        for position, (entry, m) in enumerate(zip(s.path_entries[name], c.modules)):
            columns = _columns(m.visited, m.passed, m.failed, m.error)
            lines.append(f"{_HEAD} {_bits(1, position)}{columns} {entry.lstrip('~-')}")
    for name, c in s.endpaths.items():
        lines += ["", f"{_HEAD} ------ Modules in End-Path: {name} ------------",
                  _header("Trig Bit#", "Visited", "Passed", "Failed", "Error")]
        for position, (entry, m) in enumerate(zip(s.path_entries[name], c.modules)):  # Schedule.cc: bitpos++
            lines.append(f"{_HEAD} {_bits(0, position)}{_columns(m.visited, m.passed, m.failed, m.error)} {entry.lstrip('~-')}")
    lines += ["", f"{_HEAD} ---------- Module Summary ------------",
              _header("Visited", "Executed", "Passed", "Failed", "Error")]
    for label, m in sorted(s.modules.items(), key=lambda item: item[0].encode()):  # std::string operator<
        lines.append(f"{_HEAD}{_columns(m.visited, m.executed, m.passed, m.failed, m.error)} {label}")
    return "\n".join(lines) + "\n"


def job_accounting(summary: JobSummary) -> str:
    """Where every event went: read, skipped, processed, and the job's timing landmarks."""
    s = summary
    lines = [f"JobReport  events read {s.events_read}, skipped (skipEvents) {s.events_skipped}, "
             f"processed {s.events_processed} (passed {s.events_passed}, failed {s.events_failed}, "
             f"error {s.events_error}), read but not processed {s.events_not_processed}"]
    rate = s.events_processed / s.loop_s if s.loop_s > 0 else 0.0
    first = f"{s.time_to_first_event_s:.2f} s" if s.time_to_first_event_s is not None else "n/a"
    lines.append(f"JobReport  wall time {s.wall_s:.2f} s, event loop {s.loop_s:.2f} s at {rate:.1f} events/s, "
                 f"begin_job {s.begin_job_s:.2f} s, "
                 f"start to first event {first}, streams {s.streams}")
    for label, choice in (s.facts.get("accelerators") or {}).items():
        lines.append(f"JobReport  accelerator for '{label}': {choice.get('backend')} on {choice.get('device')} "
                     f"({choice.get('reason')}); model {choice.get('model')}")
        lines += [f"JobReport  accelerator for '{label}': caveat: {note}" for note in choice.get("caveats") or ()]
        origin = choice.get("imported_from")
        if origin:  # a TorchScript / ExportedProgram / SavedModel network, run as the ONNX file imported from it
            lines.append(f"JobReport  accelerator for '{label}': model {imported_text(origin)}")
    if s.facts.get("variants"):  # a distributed run whose units did not all run the same way
        lines.append(f"JobReport  the units did not all run the same way: {variants_line(s.facts['variants'])}")
    lines += _executor_lines(s)
    lines += quality_lines(s)
    if s.failure:  # a signal's failure already says "stopped by SIGxxx"
        said = s.failure if s.failure.startswith("stopped by ") else f"stopped by: {s.failure}"
        lines.append(f"JobReport  {said}")
    return "\n".join(lines) + "\n"


def _executor_lines(s: JobSummary) -> list[str]:
    """Distributed runs: units, dashboard, per-worker throughput and begin_job, retried units."""
    ex = s.executor
    if ex.get("type") != "dask":
        return []
    lines = [f"JobReport  Dask on {ex.get('address')}: {ex.get('units_done')}/{ex.get('units')} work units of at most "
             f"{ex.get('events_per_task')} events on {len(s.workers)} worker(s); dashboard {ex.get('dashboard')}"]
    capacity = 0.0
    threads = ex.get("threads") or {}
    for name, w in sorted(s.workers.items()):
        rate = w["events"] / w["busy_s"] if w.get("busy_s") else 0.0  # per busy thread
        n = threads.get(name, 1)
        capacity += rate * n
        per = f" per thread x {n} threads" if n > 1 else ""
        lines.append(f"JobReport  worker {name}: {int(w['units'])} units, {int(w['events'])} events in "
                     f"{w['busy_s']:.2f} s busy = {rate:.1f} events/s{per}; build + begin_job {w['begin_job_s']:.2f} s")
    if capacity > 0 and s.loop_s > 0:
        job_rate = s.events_processed / s.loop_s
        lines.append(f"JobReport  job throughput {job_rate:.1f} events/s = {100 * job_rate / capacity:.0f} % of what the "
                     f"workers did while busy, summed (scheduling, transfers and idle workers make the rest)")
    for r in s.retried_units:
        lines.append(f"JobReport  unit {r['unit']} ({r['file']} entries {r['start']}-{r['stop']}) was re-run "
                     f"{r['retries']} time(s): {r['reason']}")
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def quality_lines(s: JobSummary) -> list[str]:
    """Duplicates, bad files, failed events by module and kind, data-quality counters."""
    lines = []
    not_opened = (s.source or {}).get("files_not_opened", 0)
    if not_opened:  # their entries are unknown: neither read nor counted in the source's entries
        lines.append(f"JobReport  files not opened {not_opened} of {(s.source or {}).get('files', not_opened)} "
                     f"(past skipEvents + maxEvents: the job never reached them)")
    not_selected = (s.source or {}).get("not_selected", 0)
    if not_selected:
        lines.append(f"JobReport  events not selected {not_selected} (read, outside source.lumisToProcess / "
                     f"eventsToProcess / lumiMask; not processed)")
    mask = (s.facts or {}).get("lumi_mask")
    if mask:
        lines.append(f"JobReport  lumi mask {mask.get('file')} (sha256 {mask.get('sha256')})")
    if s.events_duplicate:
        lines.append(f"JobReport  duplicate events skipped {s.events_duplicate} (same run, lumi, event as one "
                     f"read before; source.duplicateCheckMode)")
    for bad in s.bad_files:
        lines.append(f"JobReport  bad file (skipBadFiles): {bad}")
    for module, kinds in s.errors.items():
        lines.append(f"JobReport  failed events in module '{module}': {_counts(kinds)}")
    for label, counts in s.data_quality.items():
        lines.append(f"JobReport  data quality '{label}': {_counts(counts)}")
    no_jet = (s.source or {}).get("links_to_no_jet", 0)
    if no_jet:  # legitimate in NanoAOD, so not with the invalid links; said so the constituents read add up
        lines.append(f"JobReport  links to no jet {no_jet} (source: a jet index of -1, NanoAOD's candidate in no "
                     f"jet; left out of every jet, not counted with the invalid links)")
    return lines
