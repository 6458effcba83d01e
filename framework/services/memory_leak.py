"""Leak check: how fast RSS grows per 1000 events once the job has warmed up.

CMSSW's SimpleMemoryCheck reports ``AverageGrowthRateRss`` = (RSS at the end - RSS after begin job) /
events. On a Python job that single difference is dominated by one-off steps (the first chunks read,
an allocator arena grown once, a new input file's buffers), so a short clean job would look like a
leak. hltrun takes the median, over every pair of RSS samples ``LAG_FRACTION`` of the series apart, of
the pair's growth per event: a one-off step lies between the samples of only that fraction of the
pairs, a warm-up ramp in the first fifth of the job in a fifth of them, and a steady leak in all. RSS
read while another stream holds a large temporary block is high at random samples; the median of the
differences does not move with it (a least-squares fit per window of five did: false leaks of
+800 MB / 1000 events with two streams, and on the shipped menu, whose RSS rose 2 MB over its first
1000 events and stepped at each new file). A leak that grows in rare large steps (fewer than one per
``LAG_FRACTION`` of the job) is under-estimated; the RSS at the end against the first sample after the
warm-up is shown next to the slope for that case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MIN_POINTS = 50  # RSS samples after the warm-up needed for a slope
LAG_FRACTION = 0.1  # the pairs' distance, as a share of the samples after the warm-up


@dataclass
class LeakCheck:
    warmup_events: int
    threshold_kb_per_1000: float
    slope_kb_per_1000: float | None = None  # None: not enough events after the warm-up
    growth_after_warmup_kb: float | None = None  # last RSS sample - first one after the warm-up
    events_used: int = 0
    flagged: bool = False
    reason: str | None = None  # why there is no slope
    worker: str | None = None  # the worker process whose slope this is (the steepest one's)
    # every worker's slope (kB / 1000 events; None: not measured) and events used, steepest first
    workers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def lagged_slope(x: np.ndarray, y: np.ndarray, fraction: float = LAG_FRACTION) -> float:
    """Median over the pairs of samples ``fraction`` of the series apart of their growth per unit of ``x``."""
    lag = max(1, int(len(x) * fraction))
    return float(np.median((y[lag:] - y[:-lag]) / (x[lag:] - x[:-lag]).astype(np.float64)))


def check_leak(index: np.ndarray, rss_bytes: np.ndarray, warmup: int, threshold_kb: float) -> LeakCheck:
    """RSS slope per 1000 events after ``warmup`` events (``index``: the process's event numbers, from 0)."""
    out = LeakCheck(warmup, threshold_kb)
    after = index >= warmup
    x, y = index[after], rss_bytes[after].astype(np.float64)
    out.events_used = int(x[-1] - x[0] + 1) if len(x) else 0
    if len(x) < MIN_POINTS:
        out.reason = f"{len(x)} events after the {warmup}-event warm-up (at least {MIN_POINTS} needed)"
        return out
    out.slope_kb_per_1000 = lagged_slope(x, y) * 1000 / 1024
    out.growth_after_warmup_kb = float(y[-1] - y[0]) / 1024
    out.flagged = out.slope_kb_per_1000 > threshold_kb
    return out


def check_workers(series: dict[str, tuple[np.ndarray, np.ndarray]], warmup: int, threshold_kb: float) -> LeakCheck:
    """One slope per worker process (``series``: worker -> its event numbers, in the order it measured them
    from any origin, and RSS), the steepest one reported with its worker's name; flagged if any is above
    the threshold. With no slope anywhere, the first worker's reason."""
    checks = {}
    for worker, (order, rss) in sorted(series.items()):
        sort = np.argsort(order, kind="stable")
        order, rss = order[sort], rss[sort]
        checks[worker] = check_leak(order - (order[0] if len(order) else 0), rss, warmup, threshold_kb)
    if not checks:
        return check_leak(np.zeros(0, np.int64), np.zeros(0, np.int64), warmup, threshold_kb)
    ranked = sorted(checks.items(), key=lambda kv: np.inf if kv[1].slope_kb_per_1000 is None
                    else -kv[1].slope_kb_per_1000)  # stable: equal slopes (and none) by worker name
    worker, out = ranked[0]
    out.worker = worker
    out.workers = [{"worker": w, "slope_kb_per_1000": c.slope_kb_per_1000, "events_used": c.events_used,
                    "flagged": c.flagged} for w, c in ranked]
    return out


def describe(leak: dict) -> str:
    """One line for the MemoryReport; with several worker processes, the steepest one's slope, named."""
    head = f"RSS slope after {leak['warmup_events']} warm-up events"
    workers = leak.get("workers") or []
    if len(workers) > 1:
        head += f" of each of {len(workers)} worker processes"
        if leak["slope_kb_per_1000"] is None:
            return f"{head}: not measured on any (worker {leak['worker']}: {leak['reason']})"
        head += f", steepest on worker {leak['worker']}"
    if leak["slope_kb_per_1000"] is None:
        return f"{head}: not measured ({leak['reason']})"
    verdict = ("POSSIBLE LEAK: above" if leak["flagged"] else "below") + \
        f" the {leak['threshold_kb_per_1000']:g} kB threshold"
    return (f"{head}: {leak['slope_kb_per_1000']:+.1f} kB / 1000 events over {leak['events_used']} events "
            f"(median over spans of {LAG_FRACTION:.0%} of them; end - start {leak['growth_after_warmup_kb']:+.0f} kB), "
            f"{verdict}")
