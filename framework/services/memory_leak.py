"""Leak check: how fast RSS grows per 1000 events once the job has warmed up.

CMSSW's SimpleMemoryCheck reports ``AverageGrowthRateRss`` = (RSS at the end - RSS after begin job) /
events. On a Python job that single difference is dominated by one-off steps (the first chunks read,
an allocator arena grown once, ONNX Runtime's first arena extension), so a short clean job would look
like a leak. hltrun cuts the RSS series after ``leak_warmup`` events into ``WINDOWS`` consecutive windows
of equal length, fits a straight line in each, and reports the median of the window slopes: one or two
one-off steps change one or two windows and leave the median alone, a steady leak raises every window.
A leak that grows in rare large steps (fewer windows than half) is under-estimated; the RSS at the end
against the first sample after the warm-up is shown next to the slope for that case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_POINTS = 50  # RSS samples after the warm-up needed for a slope
WINDOWS = 5  # odd: the median is one window's slope


@dataclass
class LeakCheck:
    warmup_events: int
    threshold_kb_per_1000: float
    slope_kb_per_1000: float | None = None  # None: not enough events after the warm-up, or several processes
    growth_after_warmup_kb: float | None = None  # last RSS sample - first one after the warm-up
    events_used: int = 0
    flagged: bool = False
    reason: str | None = None  # why there is no slope

    def to_dict(self) -> dict:
        return asdict(self)


def window_slope(x: np.ndarray, y: np.ndarray, windows: int = WINDOWS) -> float:
    """Median over ``windows`` consecutive equal spans of ``x`` of the least-squares slope in each."""
    edges = np.linspace(x[0], x[-1] + 1, windows + 1)
    slopes = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (x >= lo) & (x < hi)
        if inside.sum() >= 2 and np.ptp(x[inside]) > 0:
            slopes.append(np.polyfit(x[inside].astype(np.float64), y[inside], 1)[0])
    return float(np.median(slopes))


def check_leak(index: np.ndarray, rss_bytes: np.ndarray, warmup: int, threshold_kb: float,
               processes: int = 1) -> LeakCheck:
    """RSS slope per 1000 events after ``warmup`` events (``index``: the job's event numbers)."""
    out = LeakCheck(warmup, threshold_kb)
    if processes > 1:
        out.reason = f"RSS of {processes} worker processes: one slope per process is not measured"
        return out
    after = index >= warmup
    x, y = index[after], rss_bytes[after].astype(np.float64)
    out.events_used = int(x[-1] - x[0] + 1) if len(x) else 0
    if len(x) < MIN_POINTS:
        out.reason = f"{len(x)} events after the {warmup}-event warm-up (at least {MIN_POINTS} needed)"
        return out
    out.slope_kb_per_1000 = window_slope(x, y) * 1000 / 1024
    out.growth_after_warmup_kb = float(y[-1] - y[0]) / 1024
    out.flagged = out.slope_kb_per_1000 > threshold_kb
    return out


def describe(leak: dict) -> str:
    """One line for the MemoryReport."""
    head = f"RSS slope after {leak['warmup_events']} warm-up events"
    if leak["slope_kb_per_1000"] is None:
        return f"{head}: not measured ({leak['reason']})"
    verdict = ("POSSIBLE LEAK: above" if leak["flagged"] else "below") + \
        f" the {leak['threshold_kb_per_1000']:g} kB threshold"
    return (f"{head}: {leak['slope_kb_per_1000']:+.1f} kB / 1000 events over {leak['events_used']} events "
            f"(median of {WINDOWS} windows; end - start {leak['growth_after_warmup_kb']:+.0f} kB), {verdict}")
