"""Text and FastTimerService-JSON renderings of the Timing result (``services.Timing`` in hltrun.json).

* ``time_report``: cmsRun's TimeReport (wantSummary), line for line as Schedule.cc prints it.
* ``loop_report``: hltrun's extra event-loop figures (source, overhead, CPU per module), ``LoopReport``.
* ``budget_report``: the per-event budget against the event-time distribution, module shares.
* ``farm_report``: cores an HLT farm needs for this path at the input rate.
* ``fast_timer_json``: the ``resources.json`` FastTimerService writes with ``writeJSONSummary``.
"""

from __future__ import annotations

from typing import Any

_T = "TimeReport"
_C1, _C2, _C3 = 10, 12, 12  # CMSSW's kColumn1Size, kColumn2Size, kColumn3Size


def _s(ms: float) -> float:
    return ms * 1e-3


def _head2(second: str) -> str:
    return f"{_T} {'per event':>{_C1}} {second:>{_C2}}  Name"


def _row2(a_ms: float, b_ms: float, name: str) -> str:
    return f"{_T} {_s(a_ms):>{_C1}.6f} {_s(b_ms):>{_C2}.6f}  {name}"


def time_report(res: dict[str, Any]) -> str:
    """TimeReport exactly as FWCore/Framework/src/Schedule.cc prints it with wantSummary: the four
    event-summary lines, paths and end paths (``per exec`` = real time / times run), modules in each
    (``per visit``), one Real-time Module Summary, and ``T---Report end!``. hltrun's own figures
    (source, framework overhead, CPU per module) are in ``loop_report``, so a grep for TimeReport
    finds only what cmsRun prints — but for one block before the end line where an inference backend
    timed its device calls (``_device_split_rows``; cmsRun's GPU jobs have no such table)."""
    loop = res["loop"]

    def line(label: str, value: float) -> str:
        return f"{_T}{label:>27} = {value:.6f}"

    lines = [
        f"{_T} ---------- Event  Summary ---[sec]----",
        line("event loop CPU/event", _s(loop["cpu_per_event_ms"])),
        line("event loop Real/event", _s(loop["real_per_event_ms"])),
        line("sum Streams Real/event", _s(loop["sum_streams_real_per_event_ms"])),
        line("efficiency CPU/Real/thread", loop["efficiency_cpu_real_per_thread"]),
    ]
    paths = [p for p in res["paths"] if not p["endpath"]]
    endpaths = [p for p in res["paths"] if p["endpath"]]
    for title, table in (("---------- Path   Summary ---[Real sec]----", paths),
                         ("-------End-Path   Summary ---[Real sec]----", endpaths)):
        lines += ["", f"{_T} {title}", _head2("per exec")]
        lines += [_row2(p["real_per_event_ms"], p["real_ms"] / max(p["runs"], 1), p["name"]) for p in table]
        lines.append(_head2("per exec"))
    for title, table in (("---------- Modules in Path: ", paths), ("------ Modules in End-Path: ", endpaths)):
        for p in table:
            lines += ["", f"{_T} {title}{p['name']} ---[Real sec]----", _head2("per visit")]
            lines += [_row2(m["real_per_event_ms"], m["real_per_visit_ms"], m["label"]) for m in p["modules"]]
        if table:
            lines.append(_head2("per visit"))
    lines += ["", f"{_T} ---------- Module Summary ---[Real sec]----", *_module_rows(_T, res, "real"), "",
              *_device_split_rows(res.get("device_split") or {}), "T---Report end!", ""]
    return "\n".join(lines)


_SPLIT_HEAD = (f"{_T} {'H2D ms':>10} {'compute ms':>10} {'D2H ms':>10} {'copies %':>8} {'kB in/call':>10} "
               f"{'kB out/call':>11} {'padded jets %':>13} {'calls/event':>11} {'ms/event':>10}  Name")


def made_copies(split_row: dict[str, Any]) -> bool:
    """Whether a ``device_split`` row's engine copied to and from a device. An engine that runs on the host
    buffer (TFLite on the CPU) times its compute and counts no copy: its H2D / D2H figures are not measured,
    and the reports show them as not applicable rather than as zeros."""
    return bool(split_row["total_ms"]["h2d"] or split_row["total_ms"]["d2h"]
                or split_row["h2d_bytes_per_call"] or split_row["d2h_bytes_per_call"])


def _num(value: float | None, width: int, digits: int) -> str:
    """A right-aligned figure, or '-' where it has no value for the row."""
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}}"


def _device_split_rows(split: dict[str, Any]) -> list[str]:
    """hltrun's one block inside the TimeReport, only where an inference backend timed its device calls
    (timing_results.device_split): H2D, compute and D2H per device call, then device calls per event
    and the three together per event; kB are 10^3 bytes (scores come back in bytes, not MB). Nothing for
    engines that do not split (ONNX Runtime, TensorFlow): their TimeReport stays cmsRun's."""
    if not split:
        return []
    lines = [f"{_T} ---------- Inference device split ---[Real msec per device call; per event]----", _SPLIT_HEAD]
    for label, d in split.items():
        call = d["per_call_ms"]
        padded = d["padded_jets_share"]
        copied = made_copies(d)  # an engine on the host buffer: its copy columns are '-', not zeros
        h2d, d2h, share, kb_in, kb_out = ((call["h2d"], call["d2h"], 100 * d["copies_share"],
                                           d["h2d_bytes_per_call"] / 1e3, d["d2h_bytes_per_call"] / 1e3)
                                          if copied else (None,) * 5)
        lines.append(f"{_T} {_num(h2d, 10, 4)} {call['compute']:>10.4f} {_num(d2h, 10, 4)} {_num(share, 8, 2)} "
                     f"{_num(kb_in, 10, 2)} {_num(kb_out, 11, 2)} {_num(None if padded is None else 100 * padded, 13, 2)} "
                     f"{d['calls_per_event']:>11.2f} {d['device_per_event_ms']:>10.4f}  {label}")
    lines.append(_SPLIT_HEAD)
    warm = [f"{label} {d['warm_up_s']:.2f} s" for label, d in split.items() if d.get("warm_up_s") is not None]
    if warm:
        lines.append(f"{_T} warm-up at begin_job (compiling or capturing every batch bucket, the slowest stream's "
                     f"backend; charged to no event): {', '.join(warm)}")
    return [*lines, ""]


def _module_rows(head: str, res: dict[str, Any], key: str) -> list[str]:
    """Schedule.cc's Module Summary rows between its two header lines: per event, per exec (total over
    times run, the TrigReport's Executed: an output module runs for every event of its endpath though it is
    timed only when it writes), per visit (total over times visited). Sorted by label as cmsRun sorts them
    (SystemTimeKeeper::fillTriggerTimingReport's ``sort_all``, std::string's byte order), as the TrigReport's
    Module Summary is: in schedule order a CMS reader's eye looked for a module where it was not."""
    title = f"{head} {'per event':>{_C1}} {'per exec':>{_C2}} {'per visit':>{_C3}}  Name"
    rows = [title]
    for m in sorted(res["modules"], key=lambda m: m["label"].encode()):
        total = m[f"{key}_ms"]
        runs = m.get("runs", m["calls"])  # an older hltrun.json has no runs
        rows.append(f"{head} {_s(m[f'{key}_per_event_ms']):>{_C1}.6f} {_s(total / max(runs, 1)):>{_C2}.6f} "
                    f"{_s(total / max(m['visits'], 1)):>{_C3}.6f}  {m['label']}")
    return rows + [title]


_L = "LoopReport"


def loop_report(res: dict[str, Any]) -> str:
    """hltrun's figures that cmsRun's TimeReport has not: source and framework overhead per event, the
    source's bulk I/O, and the Module Summary in CPU time. Own prefix, so TimeReport stays CMSSW's."""

    def line(label: str, value: float) -> str:
        return f"{_L}{label:>27} = {value:.6f}"

    lines = [f"{_L} ---------- Event loop extras ---[sec]----",
             line("source Real/event", _s(res["source"]["real_per_event_ms"])),
             *([line("source bulk I/O Real/event", _s(res["source_bulk"]["real_per_event_ms"]))]
               if "source_bulk" in res else []),
             line("fwk overhead Real/event", _s(res["overhead"]["real_per_event_ms"])),
             *([line("transitions Real/event", _s(res["transitions"]["real_per_event_ms"]))]
               if "transitions" in res else []),
             *([line("unattributed CPU/event", _s(res["loop"]["unattributed_cpu_per_event_ms"]))]
               if res["loop"].get("unattributed_cpu_per_event_ms") is not None else []),
             "", f"{_L} ---------- Module Summary ---[CPU sec]----", *_module_rows(_L, res, "cpu"), ""]
    return "\n".join(lines)


_B = "BatchReport"  # hltrun only: not a TimeReport line


def batching_report(res: dict[str, Any]) -> str:
    """Modules batching across events: the module's time per event (it includes the wait) split into
    queue time and inference time, and how the batches were sent. Empty without batching."""
    table = res.get("batching") or {}
    if not table:
        return ""
    head = (f"{_B} {'per event':>{_C1}} {'queue':>{_C2}} {'inference':>{_C2}} {'queue p99':>{_C2}} "
            f"{'batches':>9} {'events/b':>9} {'jets/b':>8}  Name")
    lines = [f"{_B} ---------- Batching Summary (cross-event batches) ---[Real sec]----", head]
    for label, b in table.items():
        q, i = b["queue_ms"], b["inference_ms"]
        lines.append(f"{_B} {_s(b['module_real_per_event_ms']):>{_C1}.6f} {_s(q['per_event']):>{_C2}.6f} "
                     f"{_s(i['per_event']):>{_C2}.6f} {_s(q['p99']):>{_C2}.6f} {b['batches']:>9d} "
                     f"{b['events_per_batch']:>9.2f} {b['jets_per_batch']:>8.2f}  {label}")
    lines.append(head)
    for label, b in table.items():
        sent = b["sent"]
        lines.append(f"{_B} {label}: {b['settings']}; batches sent "
                     f"full {sent['full']}, every stream's event queued {sent['all_present']}, "
                     f"on the delay {sent['delay']}; failed {b['failed_batches']}; largest {b['largest_batch_jets']} jets")
    lines.append("")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:7.2f} %"


def budget_report(res: dict[str, Any]) -> str:
    """The event-time distribution against ``options.budgetMs`` and each module's share of it."""
    b = res["budget"]
    ev, cpu = res["event"]["real"], res["event"]["cpu"]
    h = "BudgetReport"
    if not res["events"]:  # "0.000 ms fits" and rows of zeros would read as a measurement
        return (f"{h} ---------- Event time vs budget ---[ms]----\n"
                f"{h}  budget per event {b['budget_ms']:.3f} ms: no event was processed, so nothing was timed "
                f"and there is no verdict\n")
    verdict = "fits" if b["fits"] else "DOES NOT FIT"
    lines = [
        f"{h} ---------- Event time vs budget ---[ms]----",
        f"{h}  budget per event {b['budget_ms']:.3f} ms, {res['events']} events on "
        f"{res.get('streams_side_by_side', res['streams'])} stream(s): "
        f"mean{' + source bulk I/O' if b.get('source_bulk_per_event_ms') else ''} {verdict} "
        f"({100 * b['mean_share_of_budget']:.2f} % of the budget)",
        f"{h}  {'':5} {'mean':>10} {'median':>10} {'p90':>10} {'p99':>10} {'max':>10}",
        *(f"{h}  {name:5}" + "".join(f" {st[k]:>10.3f}" for k in ("mean", "median", "p90", "p99", "max"))
          for name, st in (("real", ev), ("cpu", cpu))),
        f"{h}  over budget: {b['over_budget_events']} events ({100 * b['over_budget_fraction']:.2f} %)",
        f"{h}  throughput: {b['throughput_hz']:.1f} events/s",
        "",
        f"{h} ---------- Share of the budget ---[ms]----",
        f"{h}  {'mean/event':>10} {'p99/event':>10} {'of budget':>9} {'of event':>9}  Name",
    ]
    s = res["source"]
    rows = [(s["real_per_event_ms"], s["real_p99_ms"], s["share_of_budget"], s["share_of_event"], "[source]")]
    rows += [(m["real_per_event_ms"], m["real_p99_ms"], m["share_of_budget"], m["share_of_event"],
              m["label"] + (" *" if m["highlight"] else "")) for m in res["modules"]]
    o = res["overhead"]
    rows.append((o["real_per_event_ms"], float("nan"), o["share_of_budget"], o["share_of_event"],
                 "[framework overhead]"))
    bulk = res.get("source_bulk")
    if bulk:
        rows.append((bulk["real_per_event_ms"], float("nan"), bulk["share_of_budget"], float("nan"),
                     "[source bulk I/O, amortised] +"))
    for mean, p99, sb, se, name in rows:
        p99s = f"{p99:>10.3f}" if p99 == p99 else f"{'-':>10}"
        ses = _pct(se) if se == se else "-"
        lines.append(f"{h}  {mean:>10.3f} {p99s} {_pct(sb):>9} {ses:>9}  {name}")
    if bulk:
        early = bulk.get("at_begin_job_real_ms", 0.0)
        lines.append(f"{h}  + file open, chunk read and conversion: {bulk['real_ms']:.1f} ms in {bulk['pulls']} pulls"
                     + (f" (of it {early:.1f} ms read by the file check at begin_job and kept for the loop"
                        f"{_share_charged(bulk)})" if early else "")
                     + (f", and {bulk['background_cpu_ms']:.1f} ms CPU in background threads (decompression, "
                        f"read-ahead)" if bulk.get("background_cpu_ms") else "")
                     + ", spread over the events (in the mean and the farm projection, not in the per-event "
                     "distribution, the max or the over-budget count)")
    if any(m["highlight"] for m in res["modules"]):
        lines.append(f"{h}  * anomaly-detection module (services.Timing.highlight)")
    cost = res.get("self_cost")
    if cost:
        lines.append(f"{h}  Timing service's own cost: {cost['per_module_call_ns'] / 1e3:.2f} us per module call, "
                     f"{cost['per_event_with_modules_ns'] / 1e3:.1f} us per event "
                     f"({100 * cost['share_of_event']:.2f} % of the mean event time)")
    lines.append("")
    return "\n".join(lines)


def _share_charged(bulk: dict[str, Any]) -> str:
    """', the share of its 318.1 ms for the 200 of 2500 entries the job used' when a short job used part of
    the whole files the check read; '' when it used them all."""
    entries = bulk.get("at_begin_job_entries") or {}
    kept, used = entries.get("kept", 0), entries.get("used", 0)
    if not kept or used >= kept:
        return ""
    return (f": the share of its {bulk.get('at_begin_job_paid_real_ms', 0.0):.1f} ms for the {used:,} of {kept:,} "
            f"entries the job used")


_OTHER_CPU_NOTE = 0.25  # the farm report names the unattributed CPU above this share of the events' CPU


def farm_report(res: dict[str, Any]) -> str:
    """Cores needed = input rate x mean time per event, for the job, each path and each module."""
    f = res["farm"]
    h = "FarmReport"
    rate = f["input_rate_hz"]
    if not res["events"]:  # cores from no event (begin_job's CPU over "1 event") would be a made-up figure
        return (f"{h} ---------- Farm projection at {rate:,.0f} Hz input rate ----\n"
                f"{h}  no event was processed: no time per event to project\n")
    hl = f["highlight"]
    lines = [
        f"{h} ---------- Farm projection at {rate:,.0f} Hz input rate ----",
        f"{h}  cores needed (per-event real time) = {rate:,.0f} Hz x {f['real_per_event_ms']:.3f} ms = {f['cores_real']:,.1f}",
        f"{h}  cores needed (per-event CPU time)  = {rate:,.0f} Hz x {f['cpu_per_event_ms']:.3f} ms = {f['cores_cpu']:,.1f}",
    ]
    background = (res.get("source_bulk") or {}).get("background_cpu_ms", 0.0)
    if background:
        lines.append(f"{h}  (the CPU figure includes the source's background threads, {background:.1f} ms; the real-time "
                     f"figure assumes the cores they ran on were free)")
    other = res["loop"].get("unattributed_cpu_per_event_ms")
    if other is not None and other > _OTHER_CPU_NOTE * res["event"]["cpu"]["mean"]:
        lines.append(f"{h}  (the CPU figure includes {other:.3f} ms/event of CPU on threads no stream runs: modules' "
                     f"thread pools (BLAS, intra-op threads; on Dask the worker's own threads too), which the "
                     f"module CPU times, the stream's thread's only, leave out)")
    t = f.get("throughput")
    if t and t.get("cores"):
        lines.append(f"{h}  cores needed (measured throughput) = {rate:,.0f} Hz / ({t['events_per_s']:,.1f} events/s / "
                     f"{t['cores_used']:g} cores) = {t['cores']:,.1f}")
        begin_read = (res.get("source_bulk") or {}).get("at_begin_job_real_ms", 0.0)
        if begin_read:  # in the per-event figures (amortised), outside the loop whose events/s this is
            lines.append(f"{h}  (the {begin_read:.1f} ms the file check read at begin_job for the loop is in the "
                         f"per-event figures, not in the measured throughput)")
        if not t["fully_loaded"]:
            lines.append(f"{h}  (not a loaded machine: {t['cores_used']:g} of {t['machine_cores']} cores busy; CMS sizes "
                         f"the farm from streams = cores, e.g. options.numberOfThreads={t['machine_cores']})")
    if hl["labels"]:
        lines.append(f"{h}  anomaly detection ({', '.join(hl['labels'])}): {hl['real_per_event_ms']:.3f} ms/event, "
                     f"{hl['cores']:,.1f} cores, {100 * hl['share_of_event']:.2f} % of the event time, "
                     f"{100 * hl['share_of_budget']:.2f} % of the budget")
    else:
        lines.append(f"{h}  anomaly detection: no module selected (no producer of a *Scorer type; "
                     "set services.Timing.highlight)")
    lines += ["", f"{h} ---------- per path ----",
              f"{h}  {'ms/event':>10} {'cores':>10} {'alone ms':>10} {'alone cores':>11}  Name"]
    for p in res["paths"]:
        lines.append(f"{h}  {p['real_per_event_ms']:>10.3f} {p['cores']:>10.1f} "
                     f"{p['standalone_real_per_event_ms']:>10.3f} {p['standalone_cores']:>11.1f}  "
                     f"{p['name']}{' (endpath)' if p['endpath'] else ''}")
    lines += ["", f"{h} ---------- per module ----", f"{h}  {'ms/event':>10} {'cores':>10} {'of event':>9}  Name"]
    s = res["source"]
    lines.append(f"{h}  {s['real_per_event_ms']:>10.3f} {s['cores']:>10.1f} {_pct(s['share_of_event']):>9}  [source]")
    bulk = res.get("source_bulk")
    if bulk:
        lines.append(f"{h}  {bulk['real_per_event_ms']:>10.3f} {bulk['cores']:>10.1f} {'-':>9}  [source bulk I/O, amortised]")
    for m in res["modules"]:
        lines.append(f"{h}  {m['real_per_event_ms']:>10.3f} {m['cores']:>10.1f} {_pct(m['share_of_event']):>9}  "
                     f"{m['label']}{' *' if m['highlight'] else ''}")
    lines.append("")
    return "\n".join(lines)


def kB(n_bytes: int) -> int:
    """FastTimerService.cc's ``kB()``: bytes to kilobytes, rounded down (integer division by 1024)."""
    return int(n_bytes) // 1024


def _fts_entry(type_: str, label: str, events: int, thread_ms: float, real_ms: float,
               mem: dict[str, int] | None = None) -> dict[str, Any]:
    mem = mem or {}
    return {"type": type_, "label": label, "events": events, "time_thread": thread_ms, "time_real": real_ms,
            "mem_alloc": kB(mem.get("allocated", 0)), "mem_free": kB(mem.get("freed", 0))}


def fast_timer_json(res: dict[str, Any], process: str,
                    allocations: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """FastTimerService's ``resources.json`` (writeSummaryJSON): times in ms, memory in kB rounded down.

    ``mem_alloc`` / ``mem_free`` come from the Memory service's memray capture (bytes allocated by
    each module, and bytes of those released, over the job; allocations outside modules under
    ``other``); without a capture they are 0. The framework overhead is FastTimerService's ``other``,
    and ``idle`` is stream time between events.
    """
    s, o, n = res["source"], res["overhead"], res["events"]
    mem = allocations or {}
    modules = [_fts_entry(s["type"], s["label"], s["calls"], s["cpu_ms"], s["real_ms"], mem.get(s["label"]))]
    modules += [_fts_entry(m["type"], m["label"], m["calls"], m["cpu_ms"], m["real_ms"], mem.get(m["label"]))
                for m in res["modules"]]
    bulk = res.get("source_bulk")
    if bulk:  # file open, chunk read and conversion: outside every event, still part of the job
        modules.append(_fts_entry("source bulk I/O", "source bulk I/O", bulk["pulls"], bulk["cpu_ms"], bulk["real_ms"]))
    modules.append(_fts_entry("other", "other", n, o["cpu_ms"], o["real_ms"], mem.get("other")))
    modules.append(_fts_entry("eventsetup", "eventsetup", n, 0.0, 0.0))
    modules.append(_fts_entry("idle", "idle", n, 0.0, res["loop"]["idle_real_ms"]))
    total_thread = sum(m["time_thread"] for m in modules)
    total_real = sum(m["time_real"] for m in modules)
    # the job's bytes, then kB() once, as FastTimerService converts its own total (not a sum of rounded kB)
    total = _fts_entry("Job", process, n, total_thread, total_real,
                       {k: sum(int(a.get(k, 0)) for a in mem.values()) for k in ("allocated", "freed")})
    return {
        "resources": [{"time_real": "real time"}, {"time_thread": "cpu time"},
                      {"mem_alloc": "allocated memory"}, {"mem_free": "deallocated memory"}],
        "total": total,
        "modules": modules,
    }
