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

Weighted samples (the source's ``weight`` product, NanoAOD's genWeight, as the TriggerRates service reads
it): every bin also holds sum w and sum w^2, of all events and of those passed, so the fraction above the
cut is the rates' weighted fraction and the ROOT histograms carry true Sumw2 variances. They are exact
fixed-point integers, the excess over the count (``framework/weights.py``): they merge as the counts do, to
the same bits in any order, an event of weight 1 (or without one) costs nothing, and a sample without
weights keeps exactly the counters and entries it had. The events of weight < 0 are counted too (all,
passed): where there are none on a side, the fraction's interval is clipped there, at 0 or 1, as the rate's.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Mapping

from .rates import rate, wilson_interval
from .weights import ONE as _ONE, ONE2 as _ONE2, excess as weight_excess, fraction_tallies

DECADE_BINS = 20  # bins per decade: ~12 % wide
LOG10_RANGE = (-6, 6)
EDGES: tuple[float, ...] = tuple(10.0 ** (k / DECADE_BINS)
                                 for k in range(LOG10_RANGE[0] * DECADE_BINS, LOG10_RANGE[1] * DECADE_BINS + 1))
OUTSIDE = ("underflow", "overflow", "nonpositive", "nan", "no_score", "cut_nonpositive")

COUNTS_PREFIX = "score_hist:"  # flat counters in a filter's summary(): <prefix><bin index or OUTSIDE name>
PASSED_PREFIX = "score_hist_passed:"
# weighted samples: sum (w - 1) and sum (w^2 - 1) per slot, in fixed point (module docstring), all and passed
SUMW_PREFIXES = ("score_hist_w:", "score_hist_w2:", "score_hist_passed_w:", "score_hist_passed_w2:")
# and the events of weight < 0, all and passed: whether the fraction's interval may be clipped to [0, 1], as the
# rates' (framework/rates.py); written with the sums, so their absence (an older summary) leaves it signed
NEGATIVE_KEYS = ("score_hist_negative:all", "score_hist_negative:passed")
QUANTITY_KEY = "score_hist_of"  # the summary's setting naming the histogrammed value
ROOT_FILE = "scores.root"  # the report folder's TH1Ds of every filter's histogram (report/root_histograms.py)
SCORE, RATIO = "score", "score / cut"

_N = len(EDGES)
# slots of the internal lists: bisect_right's 0 (underflow) .. _N (overflow), then the other OUTSIDE ones
_SLOTS = ("underflow", *(str(i) for i in range(_N - 1)), "overflow", *OUTSIDE[2:])
_NONPOSITIVE, _NAN, _NO_SCORE, _CUT_NONPOSITIVE = _N + 1, _N + 2, _N + 3, _N + 4


class ScoreHistogram:
    """Counts of one filter's cut value (the event's reduced score, or score / cut), and of those passed."""

    __slots__ = ("counts", "passed", "excess", "negative")

    def __init__(self) -> None:
        self.counts = [0] * len(_SLOTS)
        self.passed = [0] * len(_SLOTS)
        # sum (w - 1), sum (w^2 - 1) of all events, then of those passed (fixed point); None until a weight != 1
        self.excess: tuple[list[int], list[int], list[int], list[int]] | None = None
        self.negative = [0, 0]  # events of weight < 0, all and passed

    def fill(self, value: float, passed: bool, weight: float = 1.0) -> None:
        """One event's value (any float: NaN, inf and values <= 0 have their own slots) and weight."""
        slot = bisect_right(EDGES, value) if value > 0 else (_NONPOSITIVE if value <= 0 else _NAN)
        self.counts[slot] += 1
        if passed:
            self.passed[slot] += 1
        if weight != 1.0:
            self._weigh(slot, passed, weight)

    def fill_ratio(self, value: float, cut: float, passed: bool, weight: float = 1.0) -> None:
        """One event's value / cut (a pT-dependent cut); a cut <= 0 (or NaN) in ``cut_nonpositive``."""
        if cut > 0:
            self.fill(value / cut, passed, weight)
        else:
            self.counts[_CUT_NONPOSITIVE] += 1
            self.passed[_CUT_NONPOSITIVE] += passed
            if weight != 1.0:
                self._weigh(_CUT_NONPOSITIVE, passed, weight)

    def no_score(self, weight: float = 1.0) -> None:
        """An event without a scored jet (rejected)."""
        self.counts[_NO_SCORE] += 1
        if weight != 1.0:
            self._weigh(_NO_SCORE, False, weight)

    def _weigh(self, slot: int, passed: bool, weight: float) -> None:
        """The event's weight beyond the 1 its count stands for, in fixed point (exact integer sums)."""
        if self.excess is None:
            self.excess = ([0] * len(_SLOTS), [0] * len(_SLOTS), [0] * len(_SLOTS), [0] * len(_SLOTS))
        dw, dw2 = weight_excess(weight)
        w, w2, pw, pw2 = self.excess
        w[slot] += dw
        w2[slot] += dw2
        if passed:
            pw[slot] += dw
            pw2[slot] += dw2
        if weight < 0:
            self.negative[0] += 1
            if passed:
                self.negative[1] += 1

    def counters(self) -> dict[str, int]:
        """The non-zero counts as flat integer counters (they add up over streams and work units); for a
        weighted histogram the weight sums of every slot that counted an event, 0 included (a Dask worker's
        counters are cumulative and differenced per unit: a sum back at 0 must still be seen)."""
        out = {COUNTS_PREFIX + name: n for name, n in zip(_SLOTS, self.counts) if n}
        out.update({PASSED_PREFIX + name: n for name, n in zip(_SLOTS, self.passed) if n})
        if self.excess is not None:
            for prefix, sums, counted in zip(SUMW_PREFIXES, self.excess, (self.counts, self.counts,
                                                                            self.passed, self.passed)):
                out.update({prefix + name: x for name, x, n in zip(_SLOTS, sums, counted) if n})
            out.update(zip(NEGATIVE_KEYS, self.negative))
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
    sums = _weight_sums(counters, counts, passed)
    if sums is None:
        # the fraction above the cut and its binomial 68 % interval (Wilson: not zero wide at 0 or 1)
        out["fraction_passed"] = k / n if n else None
        out["fraction_interval_68"] = list(wilson_interval(k, n)) if n else None
        return out
    out["weights"] = _weights_entry(sums)
    # the weighted fraction and its Sumw2 interval: the TriggerRates service's figure for the same events,
    # from the exact sums (rounded once: weights all equal give the unweighted fraction to the bit)
    sw, sw2, swp, sw2p = (sum(s) for s in sums)
    passed_tally, total_tally = fraction_tallies(k, n, (swp, sw2p), (sw, sw2))
    total_tally.negative, passed_tally.negative = (counters.get(key) for key in NEGATIVE_KEYS)
    frac = rate(passed_tally, total_tally, 1.0, interval=False)
    out["fraction_passed"] = None if frac.undefined else frac.fraction
    out["fraction_interval_68"] = None if frac.undefined else [frac.low_hz, frac.high_hz]
    return out


def _weight_sums(counters: Mapping[str, Any], counts: list[int], passed: list[int]) -> list[list[int]] | None:
    """Per slot, fixed-point sum w, sum w^2, sum w passed, sum w^2 passed (the counts' 1 each plus the
    recorded excess); None for a histogram no event of weight != 1 filled (an unweighted sample)."""
    if not any(key.startswith(SUMW_PREFIXES) for key in counters):
        return None
    out = []
    for prefix, n, one in zip(SUMW_PREFIXES, (counts, counts, passed, passed), (_ONE, _ONE2, _ONE, _ONE2)):
        out.append([c * one + int(counters.get(prefix + name, 0)) for name, c in zip(_SLOTS, n)])
    return out


def _weights_entry(sums: list[list[int]]) -> dict[str, Any]:
    """hltrun.json's ``weights`` of a weighted histogram: per bin, per outside slot and in total, as floats
    (each the correctly rounded value of the exact fixed-point sum)."""
    names = ("sumw", "sumw2", "sumw_passed", "sumw2_passed")
    scales = (_ONE, _ONE2, _ONE, _ONE2)
    out: dict[str, Any] = {name: [x / one for x in s[1:_N]] for name, s, one in zip(names, sums, scales)}
    out["outside"] = {slot: {name: s[_SLOTS.index(slot)] / one for name, s, one in zip(names, sums, scales)}
                      for slot in OUTSIDE}
    out["total"] = {name: sum(s) / one for name, s, one in zip(names, sums, scales)}
    return out


def score_histograms(module_summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every filter's histogram, by module label (those whose summary holds one)."""
    return {label: h for label, counters in module_summaries.items() if (h := from_counters(counters))}
