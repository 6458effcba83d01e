"""Timing histograms as ROOT TH1D (``timing.root`` in the report folder), where DQM-minded users look.

The Timing service's JSON already holds every histogram as ``{edges_ms, counts, underflow,
overflow}`` (logarithmic bins); this writes the same numbers with uproot, flows included, so ROOT,
uproot or hist open them like FastTimerService's DQM plots:

* ``event_real``, ``event_cpu``: the whole event's real and CPU time [ms];
* ``overhead_real``: the framework's own time per event [ms];
* ``modules/<label>``: each module's real time per event [ms] (the source included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import boost_histogram as bh
import numpy as np

from ..atomic import writing
from ..destinations import REPORT_FOLDER

FILE_NAME = "timing.root"
_TITLES = {"event_real": "real time per event", "event_cpu": "CPU time per event",
           "overhead_real": "framework overhead per event (real)"}


def th1d(name: str, title: str, hist: Mapping[str, Any]) -> bh.Histogram:
    """``hist`` as a boost-histogram with flows and unit-weight variances, which uproot's public
    writing API (``file[key] = histogram``) stores as a TH1D: uproot, not us, fills the ROOT sums."""
    edges = np.asarray(hist["edges_ms"], np.float64)
    counts = np.asarray(hist["counts"], np.float64)
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram {name}: {len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}")
    out = bh.Histogram(bh.axis.Variable(edges), storage=bh.storage.Weight())
    out.axes[0].label = "time [ms]"
    out.title = title  # uproot's fTitle
    data = np.concatenate([[float(hist.get("underflow", 0))], counts, [float(hist.get("overflow", 0))]])
    view = out.view(flow=True)
    view.value = data
    view.variance = data  # one entry per event: sum of squared weights = counts
    return out


def write_timing_root(report_dir: Path, timing_json: Mapping[str, Any] | None) -> list[Path]:
    """Write ``timing.root`` from the Timing service's JSON part; nothing when there is none."""
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
    return [staged.dest.path]
