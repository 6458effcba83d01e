"""The distribution of the value a trigger filter cuts on, in FIXED bins, with the events that passed.

Why fixed: the bins never depend on the sample, so one stream, N streams and N Dask work units fill
the same bins and merge by adding counters (flat integer keys in the filter's ``summary()``, as the
L1 seed's ``pt_all:``); a threshold that sits in a steep tail shows as such.

Why the passed events per bin: the cut rarely falls on an edge, and ``score > cut`` is the filter's
decision, not a bin's; counting the events it accepted per bin makes the histogram's "above the cut"
exactly the filter's passed count, the cut's own bin split by the decision.

Two fixed scales, chosen by the filter's ``score_scale`` setting (the config, known at begin_job: never the
events, so every stream and work unit of a job bins alike; the scale rides in the summary as ``score_hist_scale``):

* ``log`` (the default): a signed log scale, for a reconstruction loss and for a logit or signed discriminant.
  Edges ``10**(k / DECADE_BINS)`` from 1e-6 to 1e6 and their mirror from -1e6 to -1e-6 (20 per decade, ~12 %
  wide), and one bin ``zero``, [-1e-6, 1e-6), between them. Until 2026-12-07 the values <= 0 had one counter,
  ``nonpositive``, and no bin: a logit's scores, half of them below 0, were not drawn at all. The positive bins
  keep their names (``score_hist:0`` .. ``score_hist:239``), so a summary written before reads as it did: its
  ``underflow`` (0 < v < 1e-6) lies in the bin ``zero``, its ``nonpositive`` (no sign, no size) stays apart.
* ``probability``: for a classifier's output in [0, 1], which piles up within 1e-3 of 0 or of 1. On the log
  scale its scores near 1 fall in one or two bins; here the bins are log-spaced in p from 1e-6 up to 0.5 and in
  1 - p from 0.5 down to 1e-7 (20 per decade each side: symmetric under p -> 1 - p, as a logit axis), with
  [0, 1e-6) at the foot and [1 - 1e-7, 1] at the top (float32 holds nothing between 1 - 6e-8 and 1).

Outside the bins: ``below`` (v < the first edge, -inf), ``overflow`` (v >= the last edge, +inf), ``nan``,
``no_score`` (no scored jet), ``cut_nonpositive`` (score / cut histograms only: a cut <= 0 has no meaningful
ratio). Filling is one ``bisect`` on a tuple of floats and one or two list increments: no allocation per event.
A reader who bins values with ``numpy.searchsorted(edges, v, side="right")`` gets the same bins.

Weighted samples (the source's ``weight`` product, NanoAOD's genWeight, as the TriggerRates service reads
it): every bin also holds sum w and sum w^2, of all events and of those passed, so the fraction above the
cut is the rates' weighted fraction and the ROOT histograms carry true Sumw2 variances. They are exact
fixed-point integers, the excess over the count (``framework/weights.py``): they merge as the counts do, to
the same bits in any order, an event of weight 1 (or without one) costs nothing, and a sample without
weights keeps exactly the counters and entries it had. The events of weight < 0 are counted too (all,
passed): where there are none on a side, the fraction's interval is clipped there, at 0 or 1, as the rate's.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Mapping

from .rates import rate, wilson_interval
from .weights import ONE as _ONE, ONE2 as _ONE2, excess as weight_excess, fraction_tallies

DECADE_BINS = 20  # bins per decade: ~12 % wide
LOG10_RANGE = (-6, 6)
EDGES: tuple[float, ...] = tuple(10.0 ** (k / DECADE_BINS)
                                 for k in range(LOG10_RANGE[0] * DECADE_BINS, LOG10_RANGE[1] * DECADE_BINS + 1))
OUTSIDE = ("below", "overflow", "nan", "no_score", "cut_nonpositive")
# a summary written before 2026-12-07 (one log scale of positive values): read as the module docstring says
_LEGACY_ZERO, LEGACY_NONPOSITIVE = "underflow", "nonpositive"

COUNTS_PREFIX = "score_hist:"  # flat counters in a filter's summary(): <prefix><bin name or OUTSIDE name>
PASSED_PREFIX = "score_hist_passed:"
# weighted samples: sum (w - 1) and sum (w^2 - 1) per slot, in fixed point (module docstring), all and passed
SUMW_PREFIXES = ("score_hist_w:", "score_hist_w2:", "score_hist_passed_w:", "score_hist_passed_w2:")
# and the events of weight < 0, all and passed: whether the fraction's interval may be clipped to [0, 1], as the
# rates' (framework/rates.py); written with the sums, so their absence (an older summary) leaves it signed
NEGATIVE_KEYS = ("score_hist_negative:all", "score_hist_negative:passed")
QUANTITY_KEY = "score_hist_of"  # the summary's setting naming the histogrammed value
SCALE_KEY = "score_hist_scale"  # the summary's setting naming the bins (Binning.name); absent: an older summary, log
ROOT_FILE = "scores.root"  # the report folder's TH1Ds of every filter's histogram (report/root_histograms.py)
SCORE, RATIO = "score", "score / cut"


@dataclass(frozen=True)
class Binning:
    """One fixed scale: strictly increasing ``edges``, a counter name per bin, and the axis a reader sees."""

    name: str
    edges: tuple[float, ...]
    bins: tuple[str, ...]  # the counter name of bin i, [edges[i], edges[i + 1])
    description: str  # the report's words for the bins
    slots: tuple[str, ...] = field(init=False)  # bisect_right's 0 ("below") .. len(edges) ("overflow"), then the rest

    def __post_init__(self) -> None:
        if len(self.bins) != len(self.edges) - 1 or any(a >= b for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"binning {self.name}: {len(self.bins)} bins need {len(self.bins) + 1} increasing edges")
        object.__setattr__(self, "slots", ("below", *self.bins, *OUTSIDE[1:]))

    def position(self, value: float) -> float:
        """Where ``value`` sits on the report's x axis (``axis_value``): each bin about equally wide, log in |v|
        (log scale) or in p and 1 - p (probability), linear inside the bins around 0 and at the ends."""
        return _POSITION[self.name](value)


def _log_position(v: float) -> float:
    """log10|v| + 6 with v's sign, a decade a unit wide, the bin around 0 as wide as the others (linear
    in [-1e-6, 1e-6]): continuous and increasing."""
    low, half = EDGES[0], 0.5 / DECADE_BINS
    return half * v / low if abs(v) < low else math.copysign(math.log10(abs(v)) - LOG10_RANGE[0] + half, v)


_TOP = 1e-7  # the probability scale's smallest 1 - p edge


def _probability_position(v: float) -> float:
    """log10 p up to 0.5, then 2 log10 0.5 - log10(1 - p) (continuous at 0.5), as a logit axis; linear in the
    end bins [0, 1e-6) and [1 - 1e-7, 1], each as wide as the others."""
    low, half, width = EDGES[0], math.log10(0.5), 1 / DECADE_BINS
    if v < low:
        return LOG10_RANGE[0] - width + width * v / low
    if v <= 0.5:
        return math.log10(v)
    if v < 1 - _TOP:
        return 2 * half - math.log10(1 - v)
    return 2 * half - math.log10(_TOP) + width * (v - (1 - _TOP)) / _TOP


def _log_binning() -> Binning:
    n = len(EDGES) - 1
    return Binning("log", tuple(-e for e in reversed(EDGES)) + EDGES,
                   (*(f"n{i}" for i in reversed(range(n))), "zero", *(str(i) for i in range(n))),
                   f"a signed log scale ({DECADE_BINS} per decade from 1e-6 to 1e6 on each side of 0, one bin "
                   f"[-1e-6, 1e-6) at 0)")


def _probability_binning() -> Binning:
    half = DECADE_BINS * math.log10(2)  # 0.5 is 10**(-6.02 / 20): the edges of both sides stop short of it
    k_low = [k for k in range(LOG10_RANGE[0] * DECADE_BINS, 0) if -k > half]
    k_top = range(math.ceil(half), round(-math.log10(_TOP) * DECADE_BINS) + 1)
    edges = (0.0, *(10.0 ** (k / DECADE_BINS) for k in k_low), 0.5,
             *(1 - 10.0 ** (-k / DECADE_BINS) for k in k_top), math.nextafter(1.0, 2.0))
    return Binning("probability", edges, tuple(f"p{i}" for i in range(len(edges) - 1)),
                   f"a probability scale ({DECADE_BINS} per decade in p from 1e-6 to 0.5 and in 1 − p from 0.5 "
                   f"to 1e-7; [0, 1e-6) and [1 − 1e-7, 1] at the ends)")


LOG, PROBABILITY = _log_binning(), _probability_binning()
BINNINGS = {b.name: b for b in (LOG, PROBABILITY)}
_POSITION = {"log": _log_position, "probability": _probability_position}


class ScoreHistogram:
    """Counts of one filter's cut value (the event's reduced score, or score / cut), and of those passed."""

    __slots__ = ("binning", "counts", "passed", "excess", "negative", "_edges", "_nan", "_no_score", "_cut_np")

    def __init__(self, binning: Binning = LOG) -> None:
        self.binning = binning
        n = len(binning.slots)
        self.counts = [0] * n
        self.passed = [0] * n
        # sum (w - 1), sum (w^2 - 1) of all events, then of those passed (fixed point); None until a weight != 1
        self.excess: tuple[list[int], list[int], list[int], list[int]] | None = None
        self.negative = [0, 0]  # events of weight < 0, all and passed
        self._edges = binning.edges
        self._nan, self._no_score, self._cut_np = (binning.slots.index(k) for k in ("nan", "no_score",
                                                                                      "cut_nonpositive"))

    def fill(self, value: float, passed: bool, weight: float = 1.0) -> None:
        """One event's value (any float: NaN and the infinities have their own slots) and weight."""
        slot = bisect_right(self._edges, value) if value == value else self._nan
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
            self.counts[self._cut_np] += 1
            self.passed[self._cut_np] += passed
            if weight != 1.0:
                self._weigh(self._cut_np, passed, weight)

    def no_score(self, weight: float = 1.0) -> None:
        """An event without a scored jet (rejected)."""
        self.counts[self._no_score] += 1
        if weight != 1.0:
            self._weigh(self._no_score, False, weight)

    def _weigh(self, slot: int, passed: bool, weight: float) -> None:
        """The event's weight beyond the 1 its count stands for, in fixed point (exact integer sums)."""
        if self.excess is None:
            n = len(self.counts)
            self.excess = ([0] * n, [0] * n, [0] * n, [0] * n)
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

    def counters(self) -> dict[str, Any]:
        """The scale's name, then the non-zero counts as flat integer counters (they add up over streams and
        work units); for a weighted histogram the weight sums of every slot that counted an event, 0 included
        (a Dask worker's counters are cumulative and differenced per unit: a sum back at 0 must still be seen)."""
        slots = self.binning.slots
        out: dict[str, Any] = {SCALE_KEY: self.binning.name}
        out.update({COUNTS_PREFIX + name: n for name, n in zip(slots, self.counts) if n})
        out.update({PASSED_PREFIX + name: n for name, n in zip(slots, self.passed) if n})
        if self.excess is not None:
            for prefix, sums, counted in zip(SUMW_PREFIXES, self.excess, (self.counts, self.counts,
                                                                            self.passed, self.passed)):
                out.update({prefix + name: x for name, x, n in zip(slots, sums, counted) if n})
            out.update(zip(NEGATIVE_KEYS, self.negative))
        return out


def _reader(counters: Mapping[str, Any]) -> tuple[Binning, Any]:
    """The summary's binning and a ``get(prefix, slot name) -> int`` that reads an older summary's names too."""
    binning = BINNINGS[counters.get(SCALE_KEY) or LOG.name]

    def get(prefix: str, name: str) -> int:
        value = int(counters.get(prefix + name, 0))
        if binning is LOG and name == "zero":  # an older summary's 0 < v < 1e-6
            value += int(counters.get(prefix + _LEGACY_ZERO, 0))
        return value

    return binning, get


# hltrun.json's names of the slots outside the bins (OUTSIDE, and an older summary's nonpositive)
ENTRY_OUTSIDE = {"below": "underflow", "overflow": "overflow", LEGACY_NONPOSITIVE: LEGACY_NONPOSITIVE, "nan": "nan",
                 "no_score": "no_score", "cut_nonpositive": "cut_nonpositive"}


def from_counters(counters: Mapping[str, Any]) -> dict[str, Any] | None:
    """A filter's merged summary as hltrun.json's ``score_histograms`` entry (docs/report-schema.md);
    None when it holds no histogram."""
    if QUANTITY_KEY not in counters:
        return None
    binning, get = _reader(counters)
    slots = (*binning.slots, LEGACY_NONPOSITIVE)
    counts = [get(COUNTS_PREFIX, name) for name in slots]
    passed = [get(PASSED_PREFIX, name) for name in slots]
    n_bins = len(binning.bins)
    ratio = counters[QUANTITY_KEY] == RATIO
    out: dict[str, Any] = {
        "quantity": counters[QUANTITY_KEY],
        "cut": 1.0 if ratio else counters.get("threshold"),
        "passes": "value > cut",
        "scale": binning.name,
        "edges": list(binning.edges),
        "counts": counts[1:n_bins + 1],
        "passed": passed[1:n_bins + 1],
    }
    for slot, name in ENTRY_OUTSIDE.items():
        i = slots.index(slot)
        out[name] = counts[i]
        out[f"passed_{name}"] = passed[i]
    n, k = sum(counts), sum(passed)
    out["events"], out["events_passed"] = n, k
    sums = _weight_sums(counters, slots, get, counts, passed)
    if sums is None:
        # the fraction above the cut and its binomial 68 % interval (Wilson: not zero wide at 0 or 1)
        out["fraction_passed"] = k / n if n else None
        out["fraction_interval_68"] = list(wilson_interval(k, n)) if n else None
        return out
    out["weights"] = _weights_entry(sums, slots, n_bins)
    # the weighted fraction and its Sumw2 interval: the TriggerRates service's figure for the same events,
    # from the exact sums (rounded once: weights all equal give the unweighted fraction to the bit)
    sw, sw2, swp, sw2p = (sum(s) for s in sums)
    passed_tally, total_tally = fraction_tallies(k, n, (swp, sw2p), (sw, sw2))
    total_tally.negative, passed_tally.negative = (counters.get(key) for key in NEGATIVE_KEYS)
    frac = rate(passed_tally, total_tally, 1.0, interval=False)
    out["fraction_passed"] = None if frac.undefined else frac.fraction
    out["fraction_interval_68"] = None if frac.undefined else [frac.low_hz, frac.high_hz]
    return out


def _weight_sums(counters: Mapping[str, Any], slots: tuple[str, ...], get: Any, counts: list[int],
                 passed: list[int]) -> list[list[int]] | None:
    """Per slot, fixed-point sum w, sum w^2, sum w passed, sum w^2 passed (the counts' 1 each plus the
    recorded excess); None for a histogram no event of weight != 1 filled (an unweighted sample)."""
    if not any(key.startswith(SUMW_PREFIXES) for key in counters):
        return None
    out = []
    for prefix, n, one in zip(SUMW_PREFIXES, (counts, counts, passed, passed), (_ONE, _ONE2, _ONE, _ONE2)):
        out.append([c * one + get(prefix, name) for name, c in zip(slots, n)])
    return out


def _weights_entry(sums: list[list[int]], slots: tuple[str, ...], n_bins: int) -> dict[str, Any]:
    """hltrun.json's ``weights`` of a weighted histogram: per bin, per outside slot and in total, as floats
    (each the correctly rounded value of the exact fixed-point sum)."""
    names = ("sumw", "sumw2", "sumw_passed", "sumw2_passed")
    scales = (_ONE, _ONE2, _ONE, _ONE2)
    out: dict[str, Any] = {name: [x / one for x in s[1:n_bins + 1]] for name, s, one in zip(names, sums, scales)}
    out["outside"] = {entry: {name: s[slots.index(slot)] / one for name, s, one in zip(names, sums, scales)}
                      for slot, entry in ENTRY_OUTSIDE.items()}
    out["total"] = {name: sum(s) / one for name, s, one in zip(names, sums, scales)}
    return out


def score_histograms(module_summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every filter's histogram, by module label (those whose summary holds one)."""
    return {label: h for label, counters in module_summaries.items() if (h := from_counters(counters))}
