"""The distribution of the value a trigger filter cuts on, in FIXED bins, with the events that passed.

Why fixed: the bins never depend on the sample, so one stream, N streams and N Dask work units fill
the same bins and merge by adding counters (flat integer keys in the filter's ``summary()``, as the
L1 seed's ``pt_all:``); a threshold that sits in a steep tail shows as such.

Why the passed events per bin: the cut rarely falls on an edge, and ``score > cut`` is the filter's
decision, not a bin's; counting the events it accepted per bin makes the histogram's "above the cut"
exactly the filter's passed count, the cut's own bin split by the decision.

Bins: log-spaced edges ``10**(k / DECADE_BINS)`` from 1e-6 to 1e6; ``underflow`` (0 < v < 1e-6),
``overflow`` (v >= 1e6, +inf), ``nonpositive`` (v <= 0, -inf), ``nan``, ``no_score`` (no scored jet),
``cut_nonpositive`` (score / cut histograms only: a cut <= 0 has no meaningful ratio). Filling is one
``bisect`` on a tuple of floats and one or two list increments: no allocation per event. A reader who
bins values with ``numpy.searchsorted(edges, v, side="right")`` gets the same bins.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Mapping

from .rates import wilson_interval

DECADE_BINS = 20  # bins per decade: ~12 % wide
LOG10_RANGE = (-6, 6)
EDGES: tuple[float, ...] = tuple(10.0 ** (k / DECADE_BINS)
                                 for k in range(LOG10_RANGE[0] * DECADE_BINS, LOG10_RANGE[1] * DECADE_BINS + 1))
OUTSIDE = ("underflow", "overflow", "nonpositive", "nan", "no_score", "cut_nonpositive")

COUNTS_PREFIX = "score_hist:"  # flat counters in a filter's summary(): <prefix><bin index or OUTSIDE name>
PASSED_PREFIX = "score_hist_passed:"
QUANTITY_KEY = "score_hist_of"  # the summary's setting naming the histogrammed value
SCORE, RATIO = "score", "score / cut"

_N = len(EDGES)
# slots of the internal lists: bisect_right's 0 (underflow) .. _N (overflow), then the other OUTSIDE ones
_SLOTS = ("underflow", *(str(i) for i in range(_N - 1)), "overflow", *OUTSIDE[2:])
_NONPOSITIVE, _NAN, _NO_SCORE, _CUT_NONPOSITIVE = _N + 1, _N + 2, _N + 3, _N + 4


class ScoreHistogram:
    """Counts of one filter's cut value (the event's reduced score, or score / cut), and of those passed."""

    __slots__ = ("counts", "passed")

    def __init__(self) -> None:
        self.counts = [0] * len(_SLOTS)
        self.passed = [0] * len(_SLOTS)

    def fill(self, value: float, passed: bool) -> None:
        """One event's value (any float: NaN, inf and values <= 0 have their own slots)."""
        slot = bisect_right(EDGES, value) if value > 0 else (_NONPOSITIVE if value <= 0 else _NAN)
        self.counts[slot] += 1
        if passed:
            self.passed[slot] += 1

    def fill_ratio(self, value: float, cut: float, passed: bool) -> None:
        """One event's value / cut (a pT-dependent cut); a cut <= 0 (or NaN) in ``cut_nonpositive``."""
        if cut > 0:
            self.fill(value / cut, passed)
        else:
            self.counts[_CUT_NONPOSITIVE] += 1
            self.passed[_CUT_NONPOSITIVE] += passed

    def no_score(self) -> None:
        """An event without a scored jet (rejected)."""
        self.counts[_NO_SCORE] += 1

    def counters(self) -> dict[str, int]:
        """The non-zero counts as flat integer counters (they add up over streams and work units)."""
        out = {COUNTS_PREFIX + name: n for name, n in zip(_SLOTS, self.counts) if n}
        out.update({PASSED_PREFIX + name: n for name, n in zip(_SLOTS, self.passed) if n})
        return out


def from_counters(counters: Mapping[str, Any]) -> dict[str, Any] | None:
    """A filter's merged summary as hltrun.json's ``score_histograms`` entry (docs/report-schema.md);
    None when it holds no histogram."""
    if QUANTITY_KEY not in counters:
        return None
    counts = [int(counters.get(COUNTS_PREFIX + name, 0)) for name in _SLOTS]
    passed = [int(counters.get(PASSED_PREFIX + name, 0)) for name in _SLOTS]
    ratio = counters[QUANTITY_KEY] == RATIO
    out: dict[str, Any] = {
        "quantity": counters[QUANTITY_KEY],
        "cut": 1.0 if ratio else counters.get("threshold"),
        "passes": "value > cut",
        "edges": list(EDGES),
        "counts": counts[1:_N],
        "passed": passed[1:_N],
    }
    for name in OUTSIDE:
        i = _SLOTS.index(name)
        out[name] = counts[i]
        out[f"passed_{name}"] = passed[i]
    n, k = sum(counts), sum(passed)
    out["events"], out["events_passed"] = n, k
    # the fraction above the cut and its binomial 68 % interval (Wilson: not zero wide at 0 or 1)
    out["fraction_passed"] = k / n if n else None
    out["fraction_interval_68"] = list(wilson_interval(k, n)) if n else None
    return out


def score_histograms(module_summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every filter's histogram, by module label (those whose summary holds one)."""
    return {label: h for label, counters in module_summaries.items() if (h := from_counters(counters))}
