"""CMSSW-style TrigReport: events, paths, modules in paths, module summary."""

from __future__ import annotations

from ..summary import JobSummary, ModuleCounters

_HEAD = "TrigReport"


def _module_rows(title: str, names: list[str], counters: list[ModuleCounters], bits: list[str]) -> list[str]:
    rows = [f"{_HEAD} {'-' * 10} {title} {'-' * 12}",
            f"{_HEAD}  Trig Bit#    Visited     Passed     Failed      Error Name"]
    for bit, name, c in zip(bits, names, counters):
        rows.append(f"{_HEAD} {bit:>10} {c.visited:>10} {c.passed:>10} {c.failed:>10} {c.error:>10} {name}")
    return rows


def trig_report(summary: JobSummary) -> str:
    """The TrigReport tables, in the order and with the columns cmsRun's wantSummary prints."""
    s = summary
    lines = [
        f"{_HEAD} {'-' * 10} Event  Summary {'-' * 12}",
        f"{_HEAD} Events total = {s.events_processed} passed = {s.events_passed} "
        f"failed = {s.events_failed} error = {s.events_error}",
        "",
        f"{_HEAD} {'-' * 10} Path   Summary {'-' * 12}",
        f"{_HEAD}  Trig Bit#   Executed     Passed     Failed      Error Name",
    ]
    for bit, (name, c) in enumerate(s.paths.items()):
        lines.append(f"{_HEAD} {1:>4}{bit:>6} {c.executed:>10} {c.passed:>10} {c.failed:>10} {c.error:>10} {name}")
    lines += ["", f"{_HEAD} {'-' * 9} End-Path   Summary {'-' * 9}",
              f"{_HEAD}  Trig Bit#   Executed     Passed     Failed      Error Name"]
    for bit, (name, c) in enumerate(s.endpaths.items()):
        lines.append(f"{_HEAD} {0:>4}{bit:>6} {c.executed:>10} {c.passed:>10} {c.failed:>10} {c.error:>10} {name}")
    for kind, table, flag in (("Path", s.paths, 1), ("EndPath", s.endpaths, 0)):
        for bit, (name, c) in enumerate(table.items()):
            entries = s.path_entries[name]
            lines += [""] + _module_rows(f"Modules in {kind}: {name}", entries, c.modules,
                                         [f"{flag:>4}{bit:>6}"] * len(entries))
    labels = list(s.modules)
    lines += [""] + _module_rows("Module Summary", labels, [s.modules[k] for k in labels], [""] * len(labels))
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
    lines += _executor_lines(s)
    lines += quality_lines(s)
    if s.failure:
        lines.append(f"JobReport  stopped by: {s.failure}")
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
    if s.events_duplicate:
        lines.append(f"JobReport  duplicate events skipped {s.events_duplicate} (same run, lumi, event as one "
                     f"read before; source.duplicateCheckMode)")
    for bad in s.bad_files:
        lines.append(f"JobReport  bad file skipped (skipBadFiles): {bad}")
    for module, kinds in s.errors.items():
        lines.append(f"JobReport  failed events in module '{module}': {_counts(kinds)}")
    for label, counts in s.data_quality.items():
        lines.append(f"JobReport  data quality '{label}': {_counts(counts)}")
    return lines
