"""Trigger rates from the paths' decisions: per path, unique (pure), overlaps, the menu total, per lumi.

The event loop records, per event, which paths accepted it as a bit pattern; what is kept is only
the count (and, for weighted samples, the sum of weights and of squared weights) per distinct
pattern — a handful of entries for any menu — so the bookkeeping costs one dictionary update per
event, and two stream's or two Dask workers' records merge exactly by adding them. The sums of weights
are exact fixed-point integers (``framework/weights.py``, as the score histograms' and the L1 turn-on's):
a float sum depended on the order streams and Dask units added up in (1 vs 4 streams could differ in the
last digits) and weights all c gave k/n a bit off (0.1 each: 130 of 1600 read 0.0812499999999998). Each
fraction is rounded once from the exact sums, so weights all equal give the unweighted rate to the bit, in
any order; an event of weight 1 adds nothing to them, so an unweighted sample's figures are the plain
counts' as ever.

A rate is the accepted fraction of the events read, times the rate those events arrive at
(``inputRateHz``: the L1 accept rate the sample stands for). Its error is binomial,
``R * sqrt(p (1 - p) / N)``; with weights, ``R * sqrt(sum w^2 (accepted) ...)`` as for any weighted
efficiency (Sumw2). A path with no accepted event has a 68 % upper limit of ``1.14 R / N`` (Poisson),
given instead of a zero error; a path that accepted every event (p (1 - p) = 0 too) has the mirror
figure, ``1.14 R / N`` (the rejected fraction's upper limit), as its error, not a rate known exactly.
With weights N is the effective count, (sum w)^2 / sum w^2. Neither figure exceeds R (from one event,
1.14 R / N would). Events whose weights sum to 0 or less (a weighted sample's negative generator weights,
in a lumi section or the whole job), and no event at all, have no rate: the Rate is ``undefined`` (NaN
figures, null in hltrun.json), never a measured 0 Hz.

The binomial error is a standard deviation: from a handful of events it is no interval (1 event of N:
``R/N ± R/N``, a rate that might be 0). Each rate also carries its 68.3 % central interval: the exact
Clopper-Pearson one (ROOT TEfficiency's default) for an unweighted sample, [0.17, 3.30] R/N for one
event of N (PDG's Poisson interval for 1), its sides within 10 % of each other from about 100 events
on; for a weighted sample the Sumw2 error either side, clipped as ROOT's TEfficiency clips its normal
interval for weights: at 0 where no accepted event weighs < 0 (a fraction of positive weights cannot be
negative; 40.1 ± 40.3 Hz from a few heavy events read [-0.14, 80.4] Hz), at the input rate where no
rejected one does. Where negative weights (NLO) are among them the interval stays signed: the estimate
itself can then be below 0 (or above the input rate), and so can its interval. The reports print it as
``+a/-b`` where its sides differ by more than 10 % (a clipped one too), the binomial ``±`` elsewhere.

A path its prescale column switches off (prescale 0) is no measurement: its rate is 0 Hz by construction, not
"< 1.14 R / N" from the sample, so ``menu_rates`` gives the paths off in every lumi section counted an exact 0
flagged ``off`` (and the menu total too, where every path is off). Which paths are off is the prescale table's
and the prescalers' business, not the counts': the TriggerRates service records it per lumi section with the
column (``TriggerPatterns.off``), so that it merges over streams and Dask units as the column does.

A prescaled path's error is conservative. The binomial error treats its count as if each event were kept at
random with probability 1/P; HLTPrescaler (modules/prescaler.py) keeps exactly one in P of the events reaching
it, a counter, so given how many reach it how many it keeps is fixed, and the count varies less. With f the
fraction of the events that reach the prescaler and q the fraction of those the path's later modules accept,
the accepted count n has variance n [(1 - q) + q (1 - f) / P], where the binomial says n (1 - f q / P): the
quoted error is about right where the modules after the prescaler are selective (q small: 1.05x on the shipped
menu's HLT_AnomalyConvVAE at P = 10), too large by sqrt(P) where the prescaler is in effect the path's last
decision on a rare selection (q = 1, f small: Var n = n / P, the unprescaled count's variance / P^2), and by
more where nearly every event passes the path before it (f q near 1: 2.9x for configs/menu.yaml's
``emergency`` HLT_PFHT1050, P = 2, which 94 % of the shipped events pass; each measured by resampling the 5500
shipped events, with the counter, 4000 times). It is never too small. The smallest error of a prescaled rate is
the unprescaled column's: run the path at prescale 1 and divide its rate and its error by P (as CMS rate tools
weigh unprescaled simulation by 1/P, whose Sumw2 error is the same), a variance below the prescaled run's by
n (1 - q) (1 - 1/P). A prescaled column's unique rates and menu total carry the same caveat for the events
its prescalers decide. The figures stay the binomial ones: the path's f and q are not the rates' to know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .weights import ExactTally, Tally, rate_tallies

LUMI_SECTION_S = 2**18 / 11245.5  # 23.31 s: 2^18 LHC orbits at the revolution frequency 11.2455 kHz
UPPER_68_ZERO = 1.1394  # Poisson 68 % CL upper limit on the mean for 0 observed events (one-sided)
CL_1_SIGMA = 0.682689492137086  # the central probability of +-1 sigma: the rates' intervals
ASYMMETRIC = 0.10  # an interval whose sides differ by more than this (relative) is printed +a/-b


@dataclass
class TriggerPatterns:
    """Per distinct pattern of path decisions (bit i: path i accepted), per lumi section."""

    paths: list[str]
    by_lumi: dict[tuple[int, int], dict[int, ExactTally]] = field(default_factory=dict)
    column: dict[tuple[int, int], str] = field(default_factory=dict)  # the prescale column of each lumi, if any
    off: dict[tuple[int, int], int] = field(default_factory=dict)  # the paths switched off in each lumi (bits), if any

    def record(self, run: int, lumi: int, pattern: int, weight: float = 1.0, column: str | None = None,
               off: int = 0) -> None:
        """One event's decisions; ``column`` and ``off`` (the paths its prescale column switches off, as bits)
        are the lumi section's, kept from its first event."""
        table = self.by_lumi.get((run, lumi))
        if table is None:
            table = self.by_lumi[(run, lumi)] = {}
            if column is not None:
                self.column[(run, lumi)] = column
            if off:
                self.off[(run, lumi)] = off
        tally = table.get(pattern)
        if tally is None:
            tally = table[pattern] = ExactTally()
        tally.add(weight)

    def merge(self, other: "TriggerPatterns") -> "TriggerPatterns":
        if other.paths != self.paths:
            raise ValueError(f"cannot merge trigger patterns of paths {other.paths} into {self.paths}")
        out = TriggerPatterns(list(self.paths), {k: {p: replace(t) for p, t in v.items()}
                                                 for k, v in self.by_lumi.items()}, {**self.column, **other.column},
                              {**self.off, **other.off})
        for key, table in other.by_lumi.items():
            mine = out.by_lumi.setdefault(key, {})
            for pattern, tally in table.items():
                mine.setdefault(pattern, ExactTally()).__iadd__(tally)
        return out

    def off_paths(self, lumis: Iterable[tuple[int, int]] | None = None) -> frozenset[str]:
        """The paths switched off in every one of these lumi sections (all recorded by default)."""
        keys = list(self.by_lumi if lumis is None else lumis)
        mask = (1 << len(self.paths)) - 1 if keys else 0
        for key in keys:
            mask &= self.off.get(key, 0)
        return frozenset(name for i, name in enumerate(self.paths) if mask >> i & 1)

    def totals(self, lumis: Iterable[tuple[int, int]] | None = None) -> dict[int, ExactTally]:
        out: dict[int, ExactTally] = {}
        for key in (self.by_lumi if lumis is None else lumis):
            for pattern, tally in self.by_lumi.get(key, {}).items():
                out.setdefault(pattern, ExactTally()).__iadd__(tally)
        return out


@dataclass
class Rate:
    events: int  # accepted events (unweighted count)
    fraction: float  # accepted weight / total weight
    hz: float
    error_hz: float
    upper_limit: bool = False  # no event accepted: error_hz is the 68 % upper limit
    low_hz: float = 0.0  # the 68.3 % interval [low_hz, high_hz] (Clopper-Pearson unweighted, hz ± error_hz weighted,
    # clipped to [0, input rate] where no negative weight is on that side: module docstring)
    high_hz: float = 0.0
    undefined: bool = False  # the events' weights sum to <= 0: no fraction, every figure NaN
    off: bool = False  # switched off (prescale 0) in every event counted: exactly 0 Hz, no measurement

    @property
    def asymmetric(self) -> bool:
        """Whether the interval's sides differ by more than ``ASYMMETRIC``: few events, where ± would mislead."""
        below, above = self.hz - self.low_hz, self.high_hz - self.hz
        return abs(above - below) > ASYMMETRIC * max(above, below)

    def __str__(self) -> str:
        if self.off:
            return "off (prescale 0)"
        if self.undefined:
            return "undefined (weights sum to <= 0)"
        if self.upper_limit:
            return f"< {self.error_hz:.3g} Hz (68% CL)"
        if self.asymmetric:
            return f"{self.hz:.3g} +{self.high_hz - self.hz:.2g}/-{self.hz - self.low_hz:.2g} Hz"
        return f"{self.hz:.3g} ± {self.error_hz:.2g} Hz"


def rate(accepted: Tally, total: Tally, input_rate_hz: float, interval: bool = True) -> Rate:
    """Rate of ``accepted`` out of ``total`` events arriving at ``input_rate_hz``; ``interval=False`` leaves
    the Clopper-Pearson interval out (the per-lumi view: thousands of rates nobody reads the interval of)."""
    # no fraction of a total of <= 0 (negative generator weights outweigh, or no event at all): not 0 Hz (a job of
    # no event read "0.0 ± 0.0 Hz", a rate measured exactly)
    if total.w <= 0:
        nan = math.nan
        return Rate(accepted.n, nan, nan, nan, low_hz=nan, high_hz=nan, undefined=True)
    p = accepted.w / total.w
    hz = p * input_rate_hz
    unweighted = total.n == total.w and total.w2 == total.n
    # a weighted sample's events count as fewer (N itself when unweighted): a limit from N would be too tight;
    # a fraction is at most 1 (from one event 1.14 / N would put the limit above the input rate)
    limit_hz = input_rate_hz * min(UPPER_68_ZERO / (total.w ** 2 / total.w2 if total.w2 > 0 else total.n), 1.0)
    if accepted.n == 0:
        return Rate(0, 0.0, 0.0, limit_hz, upper_limit=True, low_hz=0.0, high_hz=limit_hz)
    if accepted.n == total.n:  # nothing rejected: the binomial error would be 0, however few the events
        # the interval's foot: Clopper-Pearson's where unweighted (hz - limit_hz reaches below 0 from one event)
        low = clopper_pearson(total.n, total.n)[0] * input_rate_hz if unweighted and interval else hz - limit_hz
        return Rate(accepted.n, p, hz, limit_hz, low_hz=low, high_hz=hz)
    if unweighted:  # binomial
        err = math.sqrt(max(p * (1.0 - p), 0.0) / total.n) * input_rate_hz
        if interval:
            low, high = clopper_pearson(accepted.n, total.n)
            return Rate(accepted.n, p, hz, err, low_hz=low * input_rate_hz, high_hz=high * input_rate_hz)
    else:  # weighted efficiency: variance of sum_acc w / sum w (Sumw2)
        rejected_w2 = total.w2 - accepted.w2
        err = math.sqrt(max(((1 - p) ** 2 * accepted.w2 + p ** 2 * rejected_w2), 0.0)) / total.w * input_rate_hz
        return Rate(accepted.n, p, hz, err, low_hz=_floor(hz - err, accepted, total, input_rate_hz),
                    high_hz=_ceiling(hz + err, accepted, total, input_rate_hz))
    return Rate(accepted.n, p, hz, err, low_hz=hz - err, high_hz=hz + err)


UNDEFINED = "(Σw <= 0)"  # why a rate is undefined, in its ± column
OFF = "prescale 0"  # why a path's rate is 0 by construction, in its ± column


def pm_text(r: Rate, spec: str, sep: str = "/") -> str:
    """A measured rate's uncertainty: ``+a/-b`` (its 68 % interval's sides) where they differ by more than
    ``ASYMMETRIC`` (few events: a binomial ± would reach below 0 or short of the interval's top), else the ±."""
    if r.asymmetric:
        return f"+{format(r.high_hz - r.hz, spec)}{sep}-{format(r.hz - r.low_hz, spec)}"
    return format(r.error_hz, spec)


def rate_text(r: Rate, off: str = f"off ({OFF})") -> str:
    """A rate in the RateReport's units and precision, as a phrase (the menu total's line, report.html's answer)."""
    if r.off:
        return off
    if r.undefined:
        return f"undefined ({UNDEFINED})"
    if r.upper_limit:
        return f"< {r.error_hz:,.1f} Hz (68% CL)"
    return f"{r.hz:,.1f} {'' if r.asymmetric else '± '}{pm_text(r, ',.1f', '/')} Hz"


def rate_from_dict(d: dict) -> Rate:
    """A rate as hltrun.json holds it (the TriggerRates service's ``rate_hz``/``interval_hz``... objects; null: NaN)."""
    num = lambda v: math.nan if v is None else float(v)  # noqa: E731
    low, high = d.get("interval_hz") or (None, None)
    return Rate(int(d["accepted"]), num(d.get("fraction")), num(d.get("rate_hz")), num(d.get("error_hz")),
                upper_limit=bool(d.get("upper_limit")), low_hz=num(low), high_hz=num(high),
                undefined=bool(d.get("undefined")), off=bool(d.get("off")))


def switched_off() -> Rate:
    """The rate of a path its prescale switched off: 0 Hz exactly, with no error and no limit (nothing was
    measured: the sample says nothing of what the path would accept if it ran)."""
    return Rate(0, 0.0, 0.0, 0.0, off=True)


def _floor(low_hz: float, accepted: Tally, total: Tally, input_rate_hz: float) -> float:
    """A weighted rate's interval foot: at least 0 where no accepted event weighs < 0 (the fraction cannot be
    negative: ROOT's TEfficiency clips its normal interval at 0), signed where negative weights were counted
    among the accepted ones, or not counted (a rate below 0 is then what the sample measures)."""
    return max(low_hz, 0.0) if accepted.negative == 0 else low_hz


def _ceiling(high_hz: float, accepted: Tally, total: Tally, input_rate_hz: float) -> float:
    """The top, the mirror of ``_floor``: at most the input rate where no rejected event weighs < 0."""
    if accepted.negative is None or total.negative is None or total.negative - accepted.negative:
        return high_hz
    return min(high_hz, input_rate_hz)


@dataclass
class MenuRates:
    paths: list[str]
    events: int
    input_rate_hz: float
    path: dict[str, Rate]
    unique: dict[str, Rate]
    overlap_events: list[list[int]]  # events accepted by both paths i and j (diagonal: by path i)
    total: Rate

    def overlap_fraction(self, i: int, j: int) -> float | None:
        """Of path i's accepted events, the fraction path j accepted too; None (0/0) when path i accepted none."""
        own = self.overlap_events[i][i]
        return self.overlap_events[i][j] / own if own else None


def menu_rates(patterns: TriggerPatterns, input_rate_hz: float, lumis: Sequence[tuple[int, int]] | None = None,
               interval: bool = True) -> MenuRates:
    """Every path's rate, unique rate, the overlaps and the total, from the recorded patterns; a path off
    (prescale 0) in every lumi counted gets ``switched_off()``, as does the total if they all are."""
    table = patterns.totals(lumis)
    off = patterns.off_paths(lumis)
    total = ExactTally()
    for tally in table.values():
        total += tally
    paths = patterns.paths
    per_path, unique = {}, {}
    overlap = [[0] * len(paths) for _ in paths]
    for i, name in enumerate(paths):
        bit = 1 << i
        accepted, alone = ExactTally(), ExactTally()
        for pattern, tally in table.items():
            if pattern & bit:
                accepted += tally
                if pattern == bit:
                    alone += tally
                for j in range(len(paths)):
                    if pattern & (1 << j):
                        overlap[i][j] += tally.n
        if name in off:  # it accepted nothing by construction (a 0 prescale rejects every event)
            per_path[name] = unique[name] = switched_off()
            continue
        per_path[name] = rate(*rate_tallies(accepted, total), input_rate_hz, interval)
        unique[name] = rate(*rate_tallies(alone, total), input_rate_hz, interval)
    any_path = ExactTally()
    for pattern, tally in table.items():
        if pattern:
            any_path += tally
    every_off = bool(paths) and all(name in off for name in paths)
    return MenuRates(list(paths), total.n, input_rate_hz, per_path, unique, overlap,
                     switched_off() if every_off else rate(*rate_tallies(any_path, total), input_rate_hz, interval))


def rates_per_lumi(patterns: TriggerPatterns, input_rate_hz: float) -> dict[tuple[int, int], MenuRates]:
    """The menu's rates lumi section by lumi section (the rate-monitoring view)."""
    return {key: menu_rates(patterns, input_rate_hz, [key], interval=False) for key in sorted(patterns.by_lumi)}


def clopper_pearson(k: int, n: int, cl: float = CL_1_SIGMA) -> tuple[float, float]:
    """The exact (Clopper-Pearson) central interval of an efficiency k/n: the beta quantiles, by bisection
    on the regularized incomplete beta function (no scipy for the report). Never narrower than its
    probability asks, and not zero wide at 0 or n; (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    tail = (1.0 - cl) / 2.0
    low = 0.0 if k <= 0 else _beta_quantile(tail, k, n - k + 1)
    high = 1.0 if k >= n else _beta_quantile(1.0 - tail, k + 1, n - k)
    return low, high


def _beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q, to double precision (the CDF rises monotonically from 0 to 1 on [0, 1])."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _incomplete_beta(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz), on
    the side of the mean where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def wilson_interval(k: int, n: int, z: float = 1.0) -> tuple[float, float]:
    """The Wilson score interval of an efficiency k/n (z = 1: 68.3 %). Not the binomial sqrt(p(1-p)/n), which
    is zero wide at 0 and 1 (an efficiency known exactly from any number of events); closed form, so no
    scipy for the report. (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return min(max(centre - half, 0.0), p), max(min(centre + half, 1.0), p)  # it holds p: rounding cannot move it out
