"""Timing histograms as ROOT TH1D (``timing.root`` in the report folder), where DQM-minded users look;
the trigger filters' score distributions likewise (``scores.root``: ``<filter>/all`` and ``<filter>/passed``,
the sums of weights with their Sumw2 on a weighted sample).

The Timing service's JSON already holds every histogram as ``{edges_ms, counts, underflow,
overflow}`` (logarithmic bins); this writes the same numbers with uproot, flows included, so ROOT,
uproot or hist open them like FastTimerService's DQM plots:

* ``event_real``, ``event_cpu``: the whole event's real and CPU time [ms];
* ``overhead_real``: the framework's own time per event [ms];
* ``modules/<label>``: each module's real time per event [ms] (the source included).

A job a signal stopped adds, to each file, a string ``stopped_by_signal`` (a TObjString: the signal's name), as
hltrun.json's job and a kept output's ``Provenance`` say it: the file describes only the events before the stop.
A job an error ended (a corrupt basket part-way, an output that failed) adds a string ``failure``, hltrun.json's
one-line ``failure``: its histograms too are not a whole job's, which nothing else in the file says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import boost_histogram as bh
import numpy as np

from ..atomic import writing
from ..destinations import REPORT_FOLDER
from ..provenance import stop_marks
from ..score_histogram import ROOT_FILE

FILE_NAME = "timing.root"
SCORES_FILE = ROOT_FILE  # each trigger filter's score distribution (framework/score_histogram.py)
_TITLES = {"event_real": "real time per event", "event_cpu": "CPU time per event",
           "overhead_real": "framework overhead per event (real)"}


def th1d(name: str, title: str, hist: Mapping[str, Any]) -> bh.Histogram:
    """``hist`` as a boost-histogram with flows and unit-weight variances, which uproot's public
    writing API (``file[key] = histogram``) stores as a TH1D: uproot, not us, fills the ROOT sums."""
    edges = np.asarray(hist["edges_ms"], np.float64)
    counts = np.asarray(hist["counts"], np.float64)
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram {name}: {len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}")
    data = np.concatenate([[float(hist.get("underflow", 0))], counts, [float(hist.get("overflow", 0))]])
    return _histogram(edges, data, data, title, "time [ms]")  # one entry per event: sum of w^2 = counts


def _histogram(edges: np.ndarray, values: np.ndarray, variances: np.ndarray, title: str, xlabel: str) -> bh.Histogram:
    """A boost-histogram of ``values`` and ``variances`` (sum w, sum w^2 per bin, flows first and last)."""
    out = bh.Histogram(bh.axis.Variable(edges), storage=bh.storage.Weight())
    out.axes[0].label = xlabel
    out.title = title  # uproot's fTitle
    view = out.view(flow=True)
    view.value = values
    view.variance = variances
    return out


def score_th1ds(label: str, h: Mapping[str, Any]) -> dict[str, bh.Histogram]:
    """A filter's ``score_histograms`` entry as two histograms, all events and those passed: sum of weights
    per bin with their true Sumw2 for a weighted sample, counts (variance = count) otherwise; the entry's
    variable edges (its ``scale``: framework/score_histogram.py). The TH1 underflow holds ``underflow`` (below
    the first edge, -inf), the overflow ``overflow``; NaN, no scored jet, a cut <= 0 and an older summary's
    ``nonpositive`` (no size) are no value on the axis, so in neither (hltrun.json counts them)."""
    edges = np.asarray(h["edges"], np.float64)
    what = "score / cut" if h["quantity"] != "score" else "event score"
    weights = h.get("weights")
    out = {}
    for key, passed in (("all", False), ("passed", True)):
        p = "passed_" if passed else ""
        if weights is None:
            values = np.array([h[f"{p}underflow"], *h["passed" if passed else "counts"], h[f"{p}overflow"]],
                              np.float64)
            variances = values
        else:
            w, w2 = ("sumw_passed", "sumw2_passed") if passed else ("sumw", "sumw2")
            outside = weights["outside"]
            values = np.array([outside["underflow"][w], *weights[w], outside["overflow"][w]], np.float64)
            variances = np.array([outside["underflow"][w2], *weights[w2], outside["overflow"][w2]], np.float64)
        title = (f"{label}: {what}, {'events passed' if passed else 'all events'}"
                 + (" (sum of weights, Sumw2)" if weights is not None else ""))
        out[key] = _histogram(edges, values, variances, title, f"{what} ({h.get('scale', 'log')} scale)")
    return out


def write_score_root(report_dir: Path, histograms: Mapping[str, Mapping[str, Any]] | None,
                     stopped_by: str | None = None, failure: str | None = None) -> list[Path]:
    """Write ``scores.root`` (``<filter label>/all``, ``<filter label>/passed``) from hltrun.json's
    ``score_histograms``; nothing when there are none. ``stopped_by``: the signal that stopped the job;
    ``failure``: the one-line error that ended it."""
    if not histograms:
        return []
    import uproot

    with writing(Path(report_dir) / SCORES_FILE, REPORT_FOLDER) as staged:
        with uproot.recreate(staged.open()) as f:
            for label, h in histograms.items():
                for key, hist in score_th1ds(label, h).items():
                    f[f"{label}/{key}"] = _th1d(hist, entries_on_axis(h, passed=key == "passed"))
            _mark_stopped(f, stopped_by, failure)
    return [staged.dest.path]


def _mark_stopped(f: Any, stopped_by: str | None, failure: str | None) -> None:
    """``stopped_by_signal`` and ``failure`` in an open uproot file when a signal or an error ended the job: its
    histograms, read alone (rates from scores.root), are a partial job's, which nothing else in the file says.
    Nothing for a whole job."""
    for key, value in stop_marks(stopped_by, failure).items():
        f[key] = value  # uproot writes a str as a TObjString


def entries_on_axis(h: Mapping[str, Any], passed: bool) -> int:
    """The events a filter's histogram (``score_histograms`` entry) holds on its TH1's axis, flows included:
    ROOT's fEntries, the number of fills, whatever their weights (NaN, no score, a cut <= 0: not on it)."""
    p = "passed_" if passed else ""
    return sum(h["passed" if passed else "counts"]) + h[f"{p}underflow"] + h[f"{p}overflow"]


def _th1d(hist: bh.Histogram, entries: int) -> Any:
    """``hist`` as a TH1D with a weighted histogram's own statistics. uproot's conversion sets fEntries to the
    sum of weights and fTsumw2 to fTsumw, right for unit weights only: ROOT's GetEntries() said 1.3e23 for
    1,300 events of weight 1e20 (negative with negative weights), GetEffectiveEntries() the sum of weights.
    fEntries: the events filled (``entries``); fTsumw2: the in-range sum of w^2; the rest as uproot has them."""
    import uproot

    model = uproot.to_writable(hist)
    view = hist.view(flow=True)
    values, variances = np.asarray(view.value, np.float64), np.asarray(view.variance, np.float64)
    return uproot.writing.to_TH1x(None, model.member("fTitle"), values, float(entries), model.member("fTsumw"),
                                  float(variances[1:-1].sum()), model.member("fTsumwx"), model.member("fTsumwx2"),
                                  variances, model.member("fXaxis"))


def write_timing_root(report_dir: Path, timing_json: Mapping[str, Any] | None,
                      stopped_by: str | None = None, failure: str | None = None) -> list[Path]:
    """Write ``timing.root`` from the Timing service's JSON part; nothing when there is none.
    ``stopped_by``: the signal that stopped the job; ``failure``: the one-line error that ended it."""
    if not timing_json or not timing_json.get("histograms"):
        return []
    import uproot

    hists = timing_json["histograms"]
    with writing(Path(report_dir) / FILE_NAME, REPORT_FOLDER) as staged:
        with uproot.recreate(staged.open()) as f:
            for key, title in _TITLES.items():
                if key in hists:
                    f[key] = th1d(key, title, hists[key])
            for label, hist in (hists.get("modules_real") or {}).items():
                f[f"modules/{label}"] = th1d(label, f"real time per event of module {label}", hist)
            _mark_stopped(f, stopped_by, failure)
    return [staged.dest.path]
