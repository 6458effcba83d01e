"""``report.html``: one self-contained page (plots inlined as base64 PNG) people would rather look at.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), in the
mplhep CMS style when mplhep is installed. Services contribute sections through an optional
``html_sections(summary) -> [(title, html)]`` method; the page adds the job facts and the text report.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import logging
import math
from contextlib import nullcontext
from contextvars import ContextVar
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..binning import log_edges
from ..extras import install_hint
from ..provenance import imported_text, variants_line
from ..score_histogram import BINNINGS, DECADE_BINS, EDGES, Binning, score_histograms
from .answer import AnswerLine, answer_lines
from .text import text_report
from .timereport import made_copies
from .writing import atomic_write_text

if TYPE_CHECKING:
    from ..service import Service
    from ..summary import JobSummary

log = logging.getLogger("hltrun")

_HIGHLIGHT, _NORMAL, _CPU, _BUDGET = "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c"
FEW_EVENTS = 50  # below this the event-time plot marks each event: a histogram of so few draws no distribution
TEMPLATE = "templates/report.html"  # the page skeleton and its CSS (string.Template: $process, $body)


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend where the plot has labelled artists (matplotlib warns on stderr for an empty one: a plot of
    a job whose histogram is empty and has no cut would print it in the middle of the user's job)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _legend_above(ax: Any) -> None:
    """The legend above the frame, in one row (constrained layout makes room): inside it, matplotlib's "best"
    place still covered lines that cross the whole frame (a cut, the budget) and the bins beside them."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.figure.legend(handles, labels, loc="outside upper center", ncols=min(len(handles), 5), fontsize="small",
                         frameon=False)


def _style():
    """The mplhep CMS style as a context, or nothing when mplhep is not installed."""
    try:
        import mplhep
        from matplotlib import style

        # the CMS style is sized for 10x10-inch figures; the report's are wide and short
        return style.context([mplhep.style.CMS, {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12,
                                                 "legend.fontsize": 10, "xtick.labelsize": 10,
                                                 "ytick.labelsize": 10}])
    except Exception:  # optional: plain matplotlib is fine
        return nullcontext()


def _figure(width: float = 9.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# Why the figures of the page being rendered are not drawn (None: they are): see ``write_html``.
_UNDRAWN: ContextVar[str | None] = ContextVar("hltrun_report_undrawn", default=None)

# The signals a batch system sends before its SIGKILL (Slurm, HTCondor: SIGTERM; LSF: SIGUSR2), a grace of
# seconds to tens of seconds, where drawing the page's figures took 4 s on an idle 2-core machine and 40-60 s on a
# loaded one (2026-12-07): the report set is written as one, so a SIGKILL while drawing lost hltrun.json too.
BATCH_STOP_SIGNALS = ("SIGTERM", "SIGUSR2")


def img(fig: Any, alt: str) -> str:
    """A figure as an inline ``<img>`` (base64 PNG), or a line saying why it was not drawn (``write_html``)."""
    undrawn = _UNDRAWN.get()
    if undrawn is not None:
        return f'<p class="note">Figure not drawn ({html.escape(alt)}): {html.escape(undrawn)}.</p>'
    say_log_scales(fig)
    data = base64.b64encode(_render_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_LOG_WORDS = {"log": "log scale", "symlog": "log scale, linear near 0"}


def say_log_scales(fig: Any) -> None:
    """Append the scale to every axis label of a log or symmetric-log axis that does not say it already.

    Why: the event-time distribution (both axes), the time along the job, the score plot's counts and the
    time-per-module bars were log axes labelled "events", "[ms]": read as linear, a p99 ten times the mean
    looks like twice it, and the bars' lengths are not ratios. Done here, where every figure of the page
    (services' too) is drawn, so a new plot cannot forget it."""
    for ax in fig.axes:
        for axis, label, set_label in ((ax.xaxis, ax.get_xlabel(), ax.set_xlabel),
                                       (ax.yaxis, ax.get_ylabel(), ax.set_ylabel)):
            words = _LOG_WORDS.get(axis.get_scale())
            if words and "log" not in label:
                set_label(f"{label} ({words})" if label else words)


def _render_png(fig: Any) -> bytes:
    """The figure drawn as PNG: most of the page's time (the layout and the rasterising happen here)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1,
          highlight: Sequence[bool] | None = None) -> str:
    """An HTML table; the first ``left`` columns are text (left-aligned), the rest numbers. It scrolls in its
    own box (``div.scroll``) when wider than the page: on a half-screen laptop window the Time-per-module
    table and the sha256 column ran off the page's right edge, taking the whole page's width with them."""
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(v if isinstance(v, str) else _fmt(v))}</{tag}>"

    out = ['<div class="scroll"><table><tr>' + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"]
    for r, row in enumerate(rows):
        hl = ' class="hl"' if highlight and highlight[r] else ""
        out.append(f"<tr{hl}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return "\n".join(out) + "</table></div>"


NOT_APPLICABLE = "–"  # a cell with no meaning for its row (the p99 of the amortised bulk I/O)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return NOT_APPLICABLE
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


# ------------------------------------------------------------------------ Timing plots

def module_bar_entries(res: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(name, real, CPU ms per event, highlighted) for each bar of the time-per-module plot: the rows of the
    "Time per module" table, the amortised source bulk I/O included (the shipped path's largest share)."""
    entries = [("[source]", res["source"]["real_per_event_ms"], res["source"]["cpu_per_event_ms"], False)]
    entries += [(m["label"], m["real_per_event_ms"], m["cpu_per_event_ms"], m["highlight"]) for m in res["modules"]]
    entries.append(("[overhead]", res["overhead"]["real_per_event_ms"], res["overhead"]["cpu_per_event_ms"], False))
    bulk = res.get("source_bulk")
    if bulk and bulk.get("real_per_event_ms"):
        entries.append(("[source bulk I/O, amortised]", bulk["real_per_event_ms"], bulk["cpu_per_event_ms"], False))
    return entries


def _module_bars(res: dict[str, Any]) -> str:
    entries = module_bar_entries(res)
    with _style():
        fig = _figure(9, 1.2 + 0.45 * len(entries))
        ax = fig.add_subplot()
        y = np.arange(len(entries))[::-1]
        real = [e[1] for e in entries]
        ax.barh(y + 0.2, real, height=0.4, color=[_HIGHLIGHT if e[3] else _NORMAL for e in entries], label="real")
        ax.barh(y - 0.2, [e[2] for e in entries], height=0.4, color=_CPU, label="CPU")
        ax.set_yticks(y, [e[0] + (" *" if e[3] else "") for e in entries])
        ax.set_xlabel("mean time per event [ms]")
        if max(real, default=0) > 0:
            ax.set_xscale("symlog", linthresh=max(min(r for r in real if r > 0), 1e-3))
            ax.set_xlim(0, 1.5 * max(max(real), *(e[2] for e in entries)))  # the longest bar short of the frame
        ax.set_ylim(y.min() - 0.6, y.max() + 1.6)  # a free row on top for the legend: never over a bar
        _legend(ax, loc="upper right", ncol=2)
        ax.set_title("time per module (red: anomaly detection)")
        return img(fig, "mean time per event of each module")


def _event_distribution(res: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    real, cpu = arrays["real_ms"], arrays["cpu_ms"]
    budget = res["budget"]["budget_ms"]
    with _style():
        fig = _figure()
        ax = fig.add_subplot()
        few = 0 < len(real) < FEW_EVENTS
        if few:  # a 60-bin histogram of a handful of events draws a shape that is not there: one mark each
            ax.plot(real, np.ones(len(real)), "|", ms=30, mew=2, color=_NORMAL, label="real (one mark per event)")
            ax.plot(cpu, np.zeros(len(cpu)), "|", ms=30, mew=2, color=_CPU, label="CPU (one mark per event)")
            ax.set_yticks([0, 1], ["CPU", "real"])
            ax.set_ylim(-0.8, 2.2)
            ax.set_xscale("log")
        elif len(real):
            edges = log_edges(np.concatenate([real, cpu]), 60, budget)
            ax.hist(real, bins=edges, histtype="step", lw=1.5, color=_NORMAL, label="real")
            ax.hist(cpu, bins=edges, histtype="step", lw=1.2, color=_CPU, label="CPU")
        elif _folded(res):  # a long job keeps no rows: its histograms of every event (the axes were empty)
            for key, lw, color, label in (("event_real", 1.5, _NORMAL, "real"), ("event_cpu", 1.2, _CPU, "CPU")):
                h = res["histograms"][key]
                edges = np.asarray(h["edges_ms"])
                ax.hist(edges[:-1], bins=edges, weights=h["counts"], histtype="step", lw=lw, color=color, label=label)
        if not few and (len(real) or _folded(res)):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylabel("events")
        if len(real) or _folded(res):
            ev = res["event"]["real"]  # no p99 line for a few events: it is their maximum, interpolated
            for key, ls in (("mean", "-"),) if few else (("mean", "-"), ("p99", ":")):
                ax.axvline(ev[key], color="grey", ls=ls, lw=1, label=f"{key} {ev[key]:.3g} ms")
        ax.axvline(budget, color=_BUDGET, lw=2.5, label=f"budget {budget:g} ms")
        ax.set_xlabel("time per event [ms]")
        _legend_above(ax)
        over = f"{100 * res['budget']['over_budget_fraction']:.2f} % over budget"
        if few:
            ax.set_title(f"time of each of the {len(real)} events (too few for a distribution), {over}")
            return img(fig, f"time of each of the {len(real)} events with the budget (too few for a distribution)")
        ax.set_title(f"event time distribution, {over}")
        return img(fig, "distribution of the time per event with the budget")


def _folded(res: dict[str, Any]) -> bool:
    """Whether the job's event times are histograms only: past ``rows.per_stream`` events per stream
    (or ``options.executor.maxTimingRows`` in all; a Dask job's merged units as many as one Process's streams
    keep) no per-event row is kept, so memory stays flat."""
    return bool(res["events"]) and res.get("rows", {}).get("histogram", False)


def _along_the_job(res: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    real, index, stream = arrays["real_ms"], arrays["index"], arrays["stream"]
    budget = res["budget"]["budget_ms"]
    if not len(real) and _folded(res):  # no row to draw: say why, not an empty frame with the budget line
        return (f"<p>No plot of the time per event along the job: past {res['rows']['per_stream']:,} events "
                "per stream (or "
                "<code>options.executor.maxTimingRows</code> in all) the Timing service keeps histograms of the "
                "event times, not one row per event, so that memory stays flat; the distribution above and the "
                "figures are over every event.</p>")
    with _style():
        fig = _figure()
        ax = fig.add_subplot()
        if len(real):
            for s in np.unique(stream):
                sel = stream == s
                label = f"stream {s}" if res["streams"] > 1 else "event"
                ax.plot(index[sel], real[sel], ".", ms=3 if len(real) >= FEW_EVENTS else 8, alpha=0.6, label=label)
            if len(real) >= 40:  # median of consecutive groups: the warm-up trend without the noise
                groups = np.array_split(np.arange(len(real)), min(200, len(real) // 10))
                ax.plot([index[g].mean() for g in groups], [np.median(real[g]) for g in groups], "-",
                        color="black", lw=1.2, label=f"median of {len(groups[0])} events")
            if real.min() > 0 and max(real.max(), budget) / real.min() > 20:
                ax.set_yscale("log")
            if len(real) < FEW_EVENTS:  # a lone event spans no range: the axis ran from -0.04 to 0.04
                ax.set_xlim(index.min() - 0.5, index.max() + 0.5)
        ax.axhline(budget, color=_BUDGET, lw=2, label=f"budget {budget:g} ms")
        ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)  # event numbers: no tick at 0.5
        ax.set_xlabel("event number in the job")
        ax.set_ylabel("real time per event [ms]")
        _legend_above(ax)
        ax.set_title("time per event along the job (warm-up on the left)")
        return img(fig, "time per event along the job")


def per_call(calls: int, *figures: float) -> list[float | None]:
    """Figures per call (or per run) of something called ``calls`` times: none for a module that never ran
    (a 0.000 ms/call or p99 would read as measured: a failing upstream module, an empty selection)."""
    return list(figures) if calls else [None] * len(figures)


def timing_sections(res: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """The Timing service's part of report.html: budget, modules, paths, farm projection."""
    b, ev, f = res["budget"], res["event"]["real"], res["farm"]
    if not res["events"]:  # "0.000 ms fits", tables of zeros and empty frames would read as a measurement
        return [("Budget", f"<p>No event was processed: nothing was timed, so there is no event time to compare "
                           f"with the {b['budget_ms']:g} ms budget, no time per module and no farm projection.</p>")]
    verdict = ('<span class="verdict good">fits</span>' if b["fits"]
               else '<span class="verdict bad">does not fit</span>')
    budget_html = (
        f"<p>Per-event budget {b['budget_ms']:g} ms: the mean event time {ev['mean']:.3f} ms"
        + (f" + {b['source_bulk_per_event_ms']:.3f} ms of source bulk I/O (file open, chunk read; amortised, "
           f"not in the distribution below)" if b.get("source_bulk_per_event_ms") else "") + f" {verdict} "
        f"({100 * b['mean_share_of_budget']:.2f} % of the budget); {b['over_budget_events']} of {res['events']} "
        f"events ({100 * b['over_budget_fraction']:.2f} %) are over budget. Throughput "
        f"{b['throughput_hz']:.1f} events/s on {res.get('streams_side_by_side', res['streams'])} stream(s).</p>"
        + table(["", "mean", "median", "p90", "p99", "max"],
                [[k, *(res["event"][k][s] for s in ("mean", "median", "p90", "p99", "max"))] for k in ("real", "cpu")])
        + (("<p>Only 1 event: p90 and p99 are its own time, not a measured tail; " if res["events"] == 1 else
            f"<p>Only {res['events']} events: p90 and p99 are interpolated between them, not a measured tail; ")
           + "the plot below marks each event.</p>" if 0 < len(arrays["real_ms"]) < FEW_EVENTS else "")
        + _event_distribution(res, arrays) + _along_the_job(res, arrays))
    src = res["source"]
    rows = [["[source]", src["type"], src["calls"], src["real_per_event_ms"], src["cpu_per_event_ms"],
             *per_call(src["calls"], src["real_per_call_ms"], src["real_p99_ms"]),
             100 * src["share_of_event"], 100 * src["share_of_budget"], src["cores"]]]
    rows += [[m["label"], m["type"], m["calls"], m["real_per_event_ms"], m["cpu_per_event_ms"],
              *per_call(m["calls"], m["real_per_call_ms"], m["real_p99_ms"]),
              100 * m["share_of_event"], 100 * m["share_of_budget"], m["cores"]]
             for m in res["modules"]]
    o = res["overhead"]
    rows.append(["[framework overhead]", "", res["events"], o["real_per_event_ms"], o["cpu_per_event_ms"],
                 o["real_per_event_ms"], None, 100 * o["share_of_event"], 100 * o["share_of_budget"],
                 f["input_rate_hz"] * o["real_per_event_ms"] * 1e-3])
    bulk = res.get("source_bulk")
    if bulk:
        rows.append(["[source bulk I/O, amortised]", "file open, chunk read", bulk["pulls"], bulk["real_per_event_ms"],
                     bulk["cpu_per_event_ms"], bulk["real_ms"] / max(bulk["pulls"], 1), None, None,
                     100 * bulk["share_of_budget"], bulk["cores"]])
    hl = [False] + [m["highlight"] for m in res["modules"]] + [False] * (2 if bulk else 1)
    modules_html = _module_bars(res) + table(
        ["module", "type", "calls", "real ms/event", "CPU ms/event", "real ms/call", "real p99 ms/event",
         "% of event", "% of budget", "cores"], rows, left=2, highlight=hl)
    paths_html = table(
        ["path", "runs", "real ms/event", "real ms/exec", "standalone ms/event"],
        [[p["name"] + (" (endpath)" if p["endpath"] else ""), p["runs"], p["real_per_event_ms"],
          *per_call(p["runs"], p["real_per_exec_ms"]), p["standalone_real_per_event_ms"]] for p in res["paths"]])
    h = f["highlight"]
    anomaly = (f"<p>Anomaly detection ({html.escape(', '.join(h['labels']))}): "
               f"{h['real_per_event_ms']:.3f} ms per event, "
               f"<b>{h['cores']:,.1f} cores</b>, {100 * h['share_of_event']:.2f} % of the event time.</p>"
               if h["labels"] else "<p>No anomaly-detection module selected (services.Timing.highlight).</p>")
    t = f.get("throughput") or {}
    measured = (f"; {t['cores']:,.1f} by the measured throughput, {t['events_per_s']:,.1f} events/s on "
                f"{t['cores_used']:g} core(s){'' if t['fully_loaded'] else ', not a loaded machine'}"
                if t.get("cores") else "")
    farm_html = (
        f"<p>At {f['input_rate_hz']:,.0f} Hz input rate the job needs <b>{f['cores_real']:,.1f} cores</b> "
        f"(real time; {f['cores_cpu']:,.1f} by CPU time{measured}).</p>" + anomaly
        + table(["path", "cores", "standalone cores"],
                [[p["name"], p["cores"], p["standalone_cores"]] for p in res["paths"]]))
    cost = res.get("self_cost")
    if cost:
        farm_html += (f"<p>The Timing service's own cost: {cost['per_module_call_ns'] / 1e3:.2f} µs per module call, "
                      f"{cost['per_event_with_modules_ns'] / 1e3:.1f} µs per event "
                      f"({100 * cost['share_of_event']:.2f} % of the mean event time).</p>")
    sections = [("Budget", budget_html), ("Time per module", modules_html), ("Paths", paths_html),
                ("Farm projection", farm_html)]
    if res.get("batching"):
        sections.insert(2, ("Cross-event batching", _batching_html(res["batching"])))
    if res.get("device_split"):
        sections.insert(2, ("Inference on the device", _device_split_html(res["device_split"])))
    return sections


def _device_split_html(split: dict[str, Any]) -> str:
    """Each scorer's device calls split into H2D copy, compute and D2H copy (timing_results.device_split)."""
    rows = []
    for label, d in split.items():
        copies = [d["per_call_ms"]["h2d"], d["per_call_ms"]["d2h"], 100 * d["copies_share"],
                  d["h2d_bytes_per_call"] / 1e3, d["d2h_bytes_per_call"] / 1e3]
        h2d, d2h, share, kb_in, kb_out = copies if made_copies(d) else [None] * 5  # host buffer: no copy made
        rows.append([label, h2d, d["per_call_ms"]["compute"], d2h, share, kb_in, kb_out,
                     None if d["padded_jets_share"] is None else 100 * d["padded_jets_share"],
                     d["calls_per_event"], d["device_per_event_ms"]])
    return ("<p>Times per device call (one host-to-device copy, one launch, one copy back), as the backend "
            "timed them; the last column is the three together per event the module ran on. An engine that "
            "runs on the host buffer (TFLite on the CPU) makes no copy: its copy columns are &ndash;.</p>"
            + table(["module", "H2D ms", "compute ms", "D2H ms", "copies %", "kB in/call", "kB out/call",
                     "padded jets %", "calls/event", "device ms/event"], rows))


def _batching_html(batching: dict[str, Any]) -> str:
    """Each batching module's wait per event, split into queue and inference time (ms)."""
    rows = [[label, b["module_real_per_event_ms"], b["queue_ms"]["per_event"], b["queue_ms"]["p50"],
             b["queue_ms"]["p99"], b["inference_ms"]["per_event"], b["batches"], b["events_per_batch"],
             b["jets_per_batch"], b["sent"]["full"], b["sent"]["all_present"], b["sent"]["delay"],
             b["failed_batches"]] for label, b in batching.items()]
    return ("<p>The module's time per event includes the wait for its batch: queue time (until the "
            "event's scores are back, less the backend call) and inference time (the call its jets were in).</p>"
            + table(["module", "real ms/event", "queue ms/event", "queue p50", "queue p99", "inference ms/event",
                     "batches", "events/batch", "jets/batch", "sent full", "sent all queued", "sent on delay",
                     "failed"], rows))


# ------------------------------------------------------------------------ the anomaly score and its cut
# Why: rates alone do not say how much margin a cut has; a cut in the steep tail of the distribution moves
# the rate with a small change of the score (another engine, a retrained model). Rendered from hltrun.json's
# ``score_histograms`` entries (framework/score_histogram.py).
_OUTSIDE_TEXT = {"underflow": {"log": "below −1e6", "probability": "below 0"},
                 "overflow": {"log": "at or above 1e6", "probability": "above 1"},
                 "nonpositive": "≤ 0 (a summary from before 2026-12-07: no size)", "nan": "NaN",
                 "no_score": "no scored jet", "cut_nonpositive": "cut ≤ 0"}
_SCALE_TEXT = {"log": "signed log scale", "probability": "probability scale: log p below 0.5, log (1 − p) above"}


def _outside_text(key: str, scale: str) -> str:
    text = _OUTSIDE_TEXT[key]
    return text[scale] if isinstance(text, dict) else text


def _on_axis(cut: Any, edges: Sequence[float]) -> bool:
    """Whether a cut can be drawn on the histogram's axis (a number within its edges)."""
    return isinstance(cut, (int, float)) and not isinstance(cut, bool) and edges[0] <= cut < edges[-1]


def _score_ticks(binning: Binning, lo: float, hi: float) -> tuple[list[float], list[str], list[float]]:
    """Tick positions and labels between axis positions ``lo`` and ``hi``: 0 and the decades (±10^k) on the
    signed log scale, 0, 10^-k, 0.5, 1 − 10^-k and 1 on the probability scale (every 2nd or 3rd decade when
    many are in view); and the minor ticks, 2..9 times each decade (in 1 − p above 0.5), as a log axis has."""
    if binning.name == "log":
        # ±1e-6 are the edges of the bin around 0, a bin from 0's tick: 0 stands for the three
        values = [0.0] + [sign * 10.0 ** k for k in range(-5, 7) for sign in (1, -1)]
        labels = ["0"] + [("−" if sign < 0 else "") + f"$10^{{{k}}}$" for k in range(-5, 7) for sign in (1, -1)]
        minor = [sign * m * 10.0 ** k for k in range(-6, 6) for m in range(2, 10) for sign in (1, -1)]
    else:  # 1e-6 and 1 - 1e-7 likewise a bin from 0's and 1's ticks
        values = [0.0, *(10.0 ** k for k in range(-5, 0)), 0.5, *(1 - 10.0 ** k for k in range(-1, -7, -1)), 1.0]
        labels = ["0", *(f"$10^{{{k}}}$" for k in range(-5, 0)), "0.5",
                  *(f"$1 - 10^{{{k}}}$" for k in range(-1, -7, -1)), "1"]
        below = [m * 10.0 ** k for k in range(-6, -1) for m in range(2, 10)] + [0.2, 0.3, 0.4]
        minor = below + [1 - v for v in below if v > 1e-7]
    ticks = sorted((binning.position(v), label) for v, label in zip(values, labels)
                   if lo <= binning.position(v) <= hi)
    step = max(1, math.ceil(len(ticks) / 12))  # at most ~12 labels across the frame
    ticks = [t for i, t in enumerate(ticks) if i % step == 0 or t[1] in ("0", "0.5", "1")]
    return ([t[0] for t in ticks], [t[1] for t in ticks],
            [x for x in map(binning.position, minor) if lo <= x <= hi] if step == 1 else [])


def _fraction_text(h: dict[str, Any]) -> str:
    """``k / n = f % (+hi −lo %)``: the fraction above the cut with its binomial (Wilson, 68 %) interval; for
    a weighted sample the weighted fraction with its Sumw2 interval (the RateReport's figure), and the
    event counts said to be counts."""
    k, n, f = h["events_passed"], h["events"], h["fraction_passed"]
    if not n:
        return "no events"
    weights = h.get("weights")
    if weights is None:
        lo, hi = h["fraction_interval_68"]
        return f"{k:,} / {n:,} = {100 * f:.3g} % (+{100 * (hi - f):.2g} −{100 * (f - lo):.2g} %, 68 % CL)"
    t = weights["total"]
    counts = f"{k:,} of {n:,} events (unweighted count)"
    if f is None:
        return f"undefined: the weights sum to {t['sumw']:.4g} (≤ 0); {counts}"
    lo, hi = h["fraction_interval_68"]
    return (f"{t['sumw_passed']:.4g} / {t['sumw']:.4g} (sum of weights) = {100 * f:.3g} % "
            f"(±{100 * (hi - f):.2g} %, Sumw2); {counts}")


def _y_scale(ax: Any, drawn: np.ndarray) -> None:
    """Log y for counts, its foot half the smallest bin drawn: matplotlib's margin put it a few percent
    below that bin, where an empty bin's line ends too, so a bin of 2 events (500 fresh QCD events) read as
    empty. A weighted sample's sums may be negative (NLO weights): symmetric log then, linear down to the
    smallest magnitude drawn (a log axis cannot show a bin below 0)."""
    if (drawn >= 0).all():
        ax.set_yscale("log")
        if (drawn > 0).any():
            ax.set_ylim(bottom=0.5 * float(drawn[drawn > 0].min()))
        return
    nonzero = np.abs(drawn[drawn != 0])
    ax.set_yscale("symlog", linthresh=float(nonzero.min()))
    ax.axhline(0.0, color="0.5", lw=0.8)


def _score_plot(label: str, h: dict[str, Any], few: bool) -> str:
    """The histogram on its scale's axis (each bin about equally wide: ``Binning.position``), zoomed to the
    filled bins and the cut, two bins of margin each side."""
    binning = BINNINGS[h.get("scale", "log")]
    edges = np.asarray(h["edges"])
    x = np.array([binning.position(e) for e in h["edges"]])
    counts, passed = np.asarray(h["counts"]), np.asarray(h["passed"])
    weights = h.get("weights")
    if weights is not None:
        sumw, sumw_passed = np.asarray(weights["sumw"]), np.asarray(weights["sumw_passed"])
    ratio = h["quantity"] != "score"
    cut = h.get("cut")
    filled = np.flatnonzero(counts)
    with _style():
        fig = _figure(9.0, 4.2)
        ax = fig.add_subplot()
        if len(filled):
            lo, hi = max(filled[0] - 2, 0), min(filled[-1] + 3, len(counts))
            if _on_axis(cut, edges):  # the cut in view even far from every event
                c = int(np.searchsorted(edges, cut, side="right")) - 1
                lo, hi = min(lo, max(c - 2, 0)), max(hi, min(c + 3, len(counts)))
            e = x[lo:hi + 1]
            if few:  # a handful of events draws no shape: one mark per filled bin, its count
                centres = 0.5 * (e[:-1] + e[1:])
                sel = counts[lo:hi] > 0
                ax.plot(centres[sel], counts[lo:hi][sel], "o", color=_NORMAL, label="events (count per bin)")
                won = passed[lo:hi] > 0
                if won.any():
                    ax.plot(centres[won], passed[lo:hi][won], "x", ms=9, color=_HIGHLIGHT, label="passed (count per bin)")
                ax.set_ylim(0, counts.max() + 1)
                ax.yaxis.get_major_locator().set_params(integer=True)  # counts of a few events
            else:  # a weighted sample's sum of weights per bin, as the rates count its events
                total, won = (counts, passed) if weights is None else (sumw, sumw_passed)
                ax.stairs(total[lo:hi], e, color=_NORMAL, lw=1.5, label="all events")
                f = h["fraction_passed"]
                share = (f"passed: {_fraction_text(h)}" if weights is None else
                         "passed" + ("" if f is None else f": {100 * f:.3g} % of the sum of weights"))
                ax.stairs(won[lo:hi], e, color=_HIGHLIGHT, fill=True, alpha=0.35, label=share)
                _y_scale(ax, np.concatenate([total[lo:hi], won[lo:hi]]))
            end = 1 / DECADE_BINS  # a bin's width of margin past the scale's own ends (no bins there)
            ax.set_xlim(e[0] - end * (lo == 0), e[-1] + end * (hi == len(counts)))
            major, labels, minor = _score_ticks(binning, e[0], e[-1])
            ax.set_xticks(major, labels)
            ax.set_xticks(minor, minor=True)  # not the style's automatic ones: evenly spaced between uneven labels
        if _on_axis(cut, edges):
            ax.axvline(binning.position(cut), color=_BUDGET, lw=2.5,
                       label=("cut (score = cut)" if ratio else f"cut {cut:.6g}"))
        what_x = "event score / its pT-dependent cut" if ratio else "event score (reduced over its jets)"
        ax.set_xlabel(f"{what_x}, {_SCALE_TEXT[binning.name]}")
        weighted = weights is not None and not few
        ax.set_ylabel("sum of weights per bin" if weighted else "events per bin")
        _legend_above(ax)
        what = "score / cut" if ratio else "score"
        if few:
            ax.set_title(f"{label}: {what} of the {h['events']} events (too few for a distribution); "
                         f"passed {h['events_passed']}" + (" (unweighted counts)" if weights is not None else ""))
        elif weighted:
            ax.set_title(f"{label}: weighted {what} distribution, {h['events']:,} events "
                         f"(sum of weights {weights['total']['sumw']:.4g})")
        else:
            ax.set_title(f"{label}: {what} distribution, {h['events']:,} events")
        return img(fig, f"{label}: distribution of the {what} with the cut")


def _piled_below_one(h: dict[str, Any]) -> bool:
    """Whether a log-scale histogram looks like a probability crowding 1: every value in [0, 1] and a quarter
    of them in the two bins beside 1 (a hint in the text; the bins themselves never depend on the events)."""
    if h.get("scale", "log") != "log" or h["quantity"] != "score" or h["underflow"] or h["overflow"]:
        return False
    edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"])
    one = int(np.searchsorted(edges, 1.0, side="right")) - 1  # the bin [1, 1.12): a saturated sigmoid's 1.0
    inside = (edges[:-1] >= -EDGES[0]) & (np.arange(len(counts)) <= one)
    total = int(counts.sum())
    return total > 0 and int(counts[inside].sum()) == total and counts[one - 1:one + 1].sum() >= 0.25 * total


def _score_sections(histograms: dict[str, dict[str, Any]]) -> list[str]:
    """The section's HTML parts (nothing when no filter histogrammed its cut value)."""
    if not histograms:
        return []
    out = ["<h2>Anomaly score and cut</h2>",
           "<p>The value each trigger filter cuts on, per event, in fixed bins: a signed log scale (20 bins per "
           "decade from 1e-6 to 1e6, the same below 0, one bin around 0) or, with the filter's "
           "<code>score_scale: probability</code>, 20 per decade in p up to 0.5 and in 1 − p above it. An event "
           "passes when it is above the cut (strictly). Shaded: the events the filter accepted, so the cut's "
           "own bin is split as the filter decided. A cut in a steep part of the distribution moves the "
           "rate with small changes of the score.</p>"]
    for label, h in histograms.items():
        n = h["events"]
        few = 0 < n < FEW_EVENTS
        scored = n - h["no_score"]
        if h["quantity"] != "score":
            out.append(f"<p>{html.escape(label)}: the cut depends on the leading jet's pT, so the plot shows each "
                       f"event's score divided by its own cut; the cut is at 1.</p>")
        if h.get("weights") is not None:
            out.append(f"<p>{html.escape(label)}: a weighted sample (the source's per-event weight): the "
                       f"distribution and the fraction above the cut are sums of weights, as the rates are; the "
                       f"event counts beside them are unweighted, as in the TrigReport.</p>")
        if few:
            out.append(f'<p class="bad">{html.escape(label)}: only {n} events: too few for a distribution '
                       f"(fewer than {FEW_EVENTS}); each filled bin is marked with its count.</p>")
        if n == 0:
            out.append(f"<p>{html.escape(label)}: ran on no events.</p>")
            continue
        if sum(h["counts"]) > 0:  # scores outside the bins only (all NaN, say): no empty frame, the text says
            out.append(_score_plot(label, h, few))
        scale = h.get("scale", "log")
        if scale == "probability":
            out.append(f"<p>{html.escape(label)}: on the probability scale (<code>score_scale: probability</code>): "
                       f"20 bins per decade in p up to 0.5 and in 1 − p above it, down to 1e-7; 0 and 1 in the end "
                       f"bins.</p>")
        if _piled_below_one(h):
            out.append(f"<p>{html.escape(label)}: its scores lie in [0, 1] and pile up next to 1, where the log "
                       f"scale's bins are 12 % wide: a classifier's probability? The filter's "
                       f"<code>score_scale: probability</code> bins them in log (1 − p) down to 1e-7.</p>")
        cut = h.get("cut")
        if not _on_axis(cut, h["edges"]):
            out.append(f"<p>{html.escape(label)}: the cut ({cut}) is not on the plot's axis "
                       f"({h['edges'][0]:g} to {h['edges'][-1]:g}).</p>")
        outside = [f"{_outside_text(k, scale)}: {h[k]:,}" + (" events" if h.get("weights") else "")
                   for k in _OUTSIDE_TEXT if h.get(k)]
        out.append(f"<p>{html.escape(label)}: above the cut {html.escape(_fraction_text(h))} "
                   f"of the events it ran on" + (f"; outside the bins: {html.escape(', '.join(outside))}" if outside
                                               else "") + ".</p>")
    return out


# ------------------------------------------------------------------------ the page

def _quality_sections(s: "JobSummary") -> list[str]:
    """Events accounted for, duplicates, bad files, failed events per module and kind, data quality."""
    rows = [["read", s.events_read], ["processed", s.events_processed], ["failed with an error", s.events_error],
            ["read but not processed", s.events_not_processed], ["duplicates skipped", s.events_duplicate],
            ["skipped (skipEvents)", s.events_skipped], ["bad files skipped", len(s.bad_files)]]
    out = ["<h2>Events and data quality</h2>", table(["events", "count"], rows)]
    if s.bad_files:
        out.append("<p>Bad files skipped:</p><ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in s.bad_files) + "</ul>")
    if s.errors:
        out.append(table(["module", "error kind", "failed events"],
                         [[m, k, n] for m, kinds in s.errors.items() for k, n in kinds.items()], left=2))
    if s.data_quality:
        out.append(table(["module", "counter", "count"],
                         [[m, k.replace("_", " "), n] for m, c in s.data_quality.items() for k, n in c.items()],
                         left=2))
    return out


def _inference_section(s: "JobSummary") -> list[str]:
    """Each scorer's engine and why, the network that ran (path and sha256), the caveats on its scores,
    auto's timings, and each filter's cut: which network and cut made these decisions, months later.
    The text report's JobReport lines say the engine; the page had none of it outside the text."""
    choices, cuts = s.facts.get("accelerators") or {}, s.facts.get("cuts") or {}
    if not choices and not cuts:
        return []
    out = ["<h2>Inference engines and cuts</h2>"]
    if choices:
        out.append(table(["module", "engine", "device", "model", "sha256"],
                         [[label, c.get("backend", ""), c.get("device", ""), c.get("model", ""),
                           c.get("model_sha256") or "not recorded"] for label, c in choices.items()], left=5))
    for label, c in choices.items():
        out.append(f"<p>Why {html.escape(str(c.get('backend')))} for {html.escape(label)}: "
                   f"{html.escape(str(c.get('reason', '')))}</p>")
        out += [f'<p class="bad">Caveat ({html.escape(label)}): {html.escape(note)}</p>' for note in c.get("caveats") or ()]
        if c.get("imported_from"):  # the table's file and sha256 are the cached import's, not the network given
            out.append(f"<p>Model of {html.escape(label)} {html.escape(imported_text(c['imported_from']))}; the table "
                       f"gives the imported ONNX file that ran and its sha256.</p>")
    for label, c in choices.items():
        if c.get("timings"):
            out.append(f"<p>Engines timed for {html.escape(label)} (backend: auto):</p>" + table(
                ["engine", "µs/jet", "diff of largest", "rel. diff beyond rounding", "agrees", "note"],
                [[t.get("backend", ""), t.get("us_per_jet"), _sci(t.get("diff_of_largest")), _sci(t.get("max_rel_diff")),
                  t.get("agrees"), t.get("note", "")]
                 for t in c["timings"]], highlight=[t.get("backend") == c.get("backend") for t in c["timings"]]))
    if cuts:
        keys = sorted({k for cut in cuts.values() for k in cut})
        out.append(table(["filter", *(k.replace("_", " ") for k in keys)],
                         [[label, *(_cut_cell(cut.get(k)) for k in keys)] for label, cut in cuts.items()],
                         left=1 + len(keys)))
    if s.facts.get("variants"):
        out.append(f'<p class="bad">The work units did not all run the same way: '
                   f"{html.escape(variants_line(s.facts['variants']))}</p>")
    return out


def _sci(v: Any) -> str:
    """A relative difference (6e-07: "0.000" in the tables' fixed format would read as exact agreement)."""
    return f"{v:.1e}" if isinstance(v, (int, float)) and math.isfinite(v) else NOT_APPLICABLE


def _cut_cell(v: Any) -> Any:
    """A cut's value as the table shows it: a threshold with all its digits (rounded to 3 it is not the cut)."""
    return repr(v) if isinstance(v, float) else ("" if v is None else v if isinstance(v, (int, str)) else str(v))


@functools.cache
def _page() -> Template:
    """The page's skeleton and style (templates/report.html, shipped as package data): ``$process``
    and ``$body`` are filled in, already HTML-escaped; the sections stay Python (they loop over rows)."""
    return Template(files("hltrun.framework.report").joinpath(TEMPLATE).read_text(encoding="utf-8"))


def _answer_box(summary: "JobSummary", services: Sequence["Service"], parts: Mapping[str, Any] | None) -> str:
    """The answer at the top of the page (framework/report/answer.py), from hltrun.json's service parts."""
    if parts is None:  # a page rendered alone (tests, tools): the parts the JSON would hold
        parts = {sv.name: part for sv in services if (part := sv.json_report(summary)) is not None}
    cls = {True: ' class="good"', False: ' class="bad"', None: ""}
    try:
        lines = answer_lines(summary.to_dict(), parts)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        # a service part not as the schema says (a plugin's bug): write_all still writes the set and then says
        # where hltrun.json fails its schema; the page keeps its sections, which read the services themselves
        log.debug("report.html: no answer from hltrun.json's parts: %r", err)
        lines = [AnswerLine("unreadable", "No answer: hltrun.json's service parts are not as its schema says "
                                          "(the job's error line says where); the sections below still hold the "
                                          "figures.", False)]
    items = "".join(f'<li data-topic="{line.topic}"{cls[line.good]}>{html.escape(line.text)}</li>'
                    for line in lines)
    return f'<div class="answer"><p class="title">The answer</p><ul>{items}</ul></div>' if items else ""


def render(summary: "JobSummary", services: Sequence["Service"], text: str,
           parts: Mapping[str, Any] | None = None) -> str:
    """The page; ``parts`` are hltrun.json's ``services`` (service name -> part), computed here when not given."""
    s = summary
    facts = table(["", ""], [
        ["process", s.process], ["events processed", s.events_processed], ["passed", s.events_passed],
        ["streams", s.streams], ["wall time [s]", s.wall_s], ["budget per event [ms]", s.budget_ms],
        ["input rate [Hz]", s.input_rate_hz]], left=2)
    body = [_answer_box(s, services, parts), facts]
    if s.failure:
        body.append(f'<p class="bad">Stopped by: {html.escape(s.failure)}</p>')
    if s.events_error:  # the page's figures go on (fits, rates, cores) as if every event had run its path
        where = "; ".join(f"{m}: {k} {n:,}" for m, kinds in s.errors.items() for k, n in kinds.items())
        body.append(f'<p class="bad">{s.events_error:,} of {s.events_processed:,} processed events failed with an '
                    f"error ({html.escape(where)}): the timing figures below include them as far as they "
                    f"ran.</p>")
    if s.executor.get("type") == "dask":
        ex = s.executor
        body.append(f"<h2>Dask</h2>\n<p>{ex.get('units_done')}/{ex.get('units')} work units of at most "
                    f"{ex.get('events_per_task')} events on {html.escape(str(ex.get('address')))}; dashboard "
                    f"<code>{html.escape(str(ex.get('dashboard')))}</code>.</p>" + table(
                        ["worker", "units", "events", "busy s", "events/s", "build + begin_job s"],
                        [[name, int(w["units"]), int(w["events"]), w["busy_s"],
                          w["events"] / w["busy_s"] if w["busy_s"] else 0.0, w["begin_job_s"]]
                         for name, w in sorted(s.workers.items())]))
        for r in s.retried_units:
            body.append(f"<p>Unit {r['unit']} ({html.escape(r['file'])} entries {r['start']}-{r['stop']}) "
                        f"was re-run: {html.escape(r['reason'])}</p>")
    body += _quality_sections(s)
    body += _inference_section(s)
    body += _score_sections(score_histograms(s.module_summaries))
    for service in services:
        sections = getattr(service, "html_sections", None)
        if sections is None:
            continue
        for title, part in sections(summary):
            body.append(f"<h2>{html.escape(title)}</h2>\n{part}")
    body.append(f"<h2>Text report</h2>\n<pre>{html.escape(text)}</pre>")
    return _page().substitute(process=html.escape(s.process), body="\n".join(body))


def write_html(report_dir: Path, summary: "JobSummary", services: Sequence["Service"],
               parts: Mapping[str, Any] | None = None) -> Path | None:
    """Write report.html atomically; None (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("report.html not written: matplotlib is not installed (%s)", install_hint("matplotlib"))
        return None
    undrawn = None
    if summary.stopped_by_signal in BATCH_STOP_SIGNALS:
        undrawn = (f"the job was stopped by {summary.stopped_by_signal}, a batch system's signal before its SIGKILL, so "
                   f"the report files are written without the page's figures (their numbers are in hltrun.json)")
    token = _UNDRAWN.set(undrawn)
    try:
        page = render(summary, services, text_report(summary, services), parts)
    finally:
        _UNDRAWN.reset(token)
    return atomic_write_text(report_dir / "report.html", page)
