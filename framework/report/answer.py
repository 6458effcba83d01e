"""The answer report.html opens with: does the network fit the HLT, and what does it cost.

Why: a trigger physicist opens the page for five figures — fits the per-event budget or not (ms/event, p99,
events over it), the anomaly-detection module's ms/event and cores, the farm's cores, the memory, and the
rate the path adds (with its error and its unique part). They were on the page, but spread over four
sections below data-quality tables, and the rate was in none of them at the top. The figures are read from
the very dictionaries ``hltrun.json`` holds (``services.Timing.budget``/``farm``, ``services.Memory``,
``services.TriggerRates``), so the top of the page, the JSON and the console's tables give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..rates import rate_from_dict, rate_text


@dataclass(frozen=True)
class AnswerLine:
    """One line of the answer: ``good`` True (fits), False (does not fit, partial), None (a plain figure)."""

    topic: str  # budget, anomaly, farm, memory, rate, partial, none
    text: str
    good: bool | None = None


def answer_lines(job: Mapping[str, Any], parts: Mapping[str, Any]) -> list[AnswerLine]:
    """The answer from hltrun.json's ``job`` and ``services`` parts (service name -> its JSON part)."""
    out: list[AnswerLine] = []
    if job.get("failure"):
        out.append(AnswerLine("partial", f"Partial job ({job['failure']}): the figures are of the "
                                         f"{job.get('events_processed', 0):,} events processed before it.", False))
    if not job.get("events_processed"):
        return out + [AnswerLine("none", "No event was processed: nothing was timed and no rate was measured, "
                                         "so there is no verdict.", False)]
    if job.get("events_error"):  # a TryToContinue job: its figures are of events that stopped part-way
        where = "; ".join(f"{m}: {k} {n:,}" for m, kinds in (job.get("errors") or {}).items() for k, n in kinds.items())
        out.append(AnswerLine("errors", f"{job['events_error']:,} of {job['events_processed']:,} processed events "
                                        f"failed with an error ({where}): the figures include them as far as they "
                                        f"ran.", False))
    timing = parts.get("Timing")
    labels: list[str] = []
    if timing is None:
        out.append(AnswerLine("budget", "No Timing service in this job: no verdict on the per-event budget "
                                        "(add services.Timing).", None))
    else:
        out += _timing_lines(timing)
        labels = list(timing["farm"]["highlight"]["labels"])
    memory = parts.get("Memory")
    if memory is not None:
        out.append(_memory_line(memory, labels))
    out += _rate_lines(job, parts.get("TriggerRates"), labels)
    return out


def _timing_lines(t: Mapping[str, Any]) -> list[AnswerLine]:
    b, f = t["budget"], t["farm"]
    events, rate = t["events"], f["input_rate_hz"]
    mean = b["mean_share_of_budget"] * b["budget_ms"]  # the mean + amortised bulk I/O the verdict is taken on
    lines = [AnswerLine(
        "budget", f"{'Fits' if b['fits'] else 'Does not fit'} the {b['budget_ms']:g} ms per-event budget: "
                  f"{mean:.3f} ms/event on average ({100 * b['mean_share_of_budget']:.2f} % of it: "
                  f"{b['real']['mean']:.3f} ms in the event + {b.get('source_bulk_per_event_ms') or 0.0:.3f} ms of "
                  f"source bulk I/O, amortised), p99 {b['real']['p99']:.3f} ms, {b['over_budget_events']:,} of "
                  f"{events:,} events ({100 * b['over_budget_fraction']:.2f} %) over it.", bool(b["fits"]))]
    h = f["highlight"]
    if h["labels"]:
        lines.append(AnswerLine(
            "anomaly", f"Anomaly detection ({', '.join(h['labels'])}): {h['real_per_event_ms']:.3f} ms/event, "
                       f"{100 * h['share_of_event']:.2f} % of the event time, {h['cores']:,.1f} cores at "
                       f"{rate:,.0f} Hz."))
    lines.append(AnswerLine("farm", f"Farm: {f['cores_real']:,.1f} cores for the whole job at {rate:,.0f} Hz "
                                    f"input (real time per event; {f['cores_cpu']:,.1f} by CPU time)."))
    return lines


def _memory_line(m: Mapping[str, Any], labels: list[str]) -> AnswerLine:
    loaded = [(r["label"], r["begin_job_rss_mb"]) for r in m.get("modules") or () if r["label"] in labels]
    models = "; ".join(f"{label} took {mb:.1f} MiB at begin_job (its model loaded)" for label, mb in loaded)
    return AnswerLine("memory", f"Memory: peak RSS {m['peak_rss_mb']:.1f} MiB" + (f"; {models}" if models else "")
                      + ".")


def _rate_lines(job: Mapping[str, Any], rates: Mapping[str, Any] | None, labels: list[str]) -> list[AnswerLine]:
    """The rate of each path running an anomaly-detection module, and its unique rate (what it adds)."""
    entries = job.get("path_entries") or {}
    mine = [p for p in (rates or {}).get("paths", ()) if set(entries.get(p["name"], ())) & set(labels)]
    if rates is None:
        return [AnswerLine("rate", "Rate: not measured in this job (add services.TriggerRates for each path's rate "
                                   "in Hz at options.inputRateHz).")] if labels else []
    return [AnswerLine("rate", f"Rate of {p['name']}: {rate_text(rate_from_dict(p))} at {rates['input_rate_hz']:,.0f} "
                               f"Hz input, of which {rate_text(rate_from_dict(p['unique']))} unique (accepted by no "
                               f"other path: what it adds to the menu).") for p in mine]
