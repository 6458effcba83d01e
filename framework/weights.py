"""Per-event weights (a weighted sample's genWeight) summed exactly, for the rates and the distributions beside them.

Why integers: a float sum depends on the order of the events, and streams, Dask units and workers add their
parts in no fixed order. A weight is kept in fixed point, w in units of 2^-W_BITS and w^2 as that integer
squared (units of 2^-2 W_BITS), so sums add up exactly, in any order, through the framework's integer-counter
merging (``framework/results.py``: streams, units, a worker's cumulative counters differenced per unit).
W_BITS = 1074: every finite double (float32 genWeights included) is a whole number of 2^-1074 units, so each
weight is held exactly, whatever its size: with units of 2^-64, a sample of weights 1e-20 (a cross section in
pb over millions of events) summed to 0 and its fraction above the cut was "undefined", and a weight of 1e-18
was 2.4 % off. Python's integers hold the ~2300-bit sums; an event costs ~1 us more, only where w != 1.

Counters hold the EXCESS over the event count (sum of w - 1, sum of w^2 - 1): an event of weight 1, or without
a weight, adds nothing, so a sample without weights keeps exactly the counters it had.

The TriggerRates service records the same sums per lumi and pattern (``ExactTally``). ``Tally``, the float
figures ``rates.rate`` takes, lives here beside it and their conversion, so ``rates`` imports this module and
not the other way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .config import WEIGHT_TAG
from .errors import ModuleError

W_BITS = 1074  # 2^-1074: the smallest double (subnormal); every finite double is a multiple of it
ONE = 1 << W_BITS  # a weight of 1
ONE2 = 1 << (2 * W_BITS)  # a squared weight of 1


@dataclass
class Tally:
    """Events, sum of weights, sum of squared weights: the figures ``rates.rate`` takes, as floats.
    ``negative``: how many of the events weigh < 0, where counted (None: not known); it decides whether a
    rate's interval may be clipped at 0 and at the input rate (``rates.rate``)."""

    n: int = 0
    w: float = 0.0
    w2: float = 0.0
    negative: int | None = None


@dataclass
class ExactTally:
    """Events and their weights summed exactly, as the TriggerRates service records them per lumi and pattern:
    ``w`` and ``w2`` are sum (w - 1) and sum (w^2 - 1) in fixed point (the excess over the count, as the modules'
    counters), ``negative`` the events of weight < 0. All integers, so streams, Dask units and lumis add up to
    the same bits in any order; an event of weight 1 (or without a weight) costs one comparison."""

    n: int = 0
    w: int = 0
    w2: int = 0
    negative: int = 0

    def add(self, weight: float = 1.0) -> None:
        self.n += 1
        if weight != 1.0:
            dw, dw2 = excess(weight)
            self.w += dw
            self.w2 += dw2
            if weight < 0:
                self.negative += 1

    def __iadd__(self, other: "ExactTally") -> "ExactTally":
        self.n += other.n
        self.w += other.w
        self.w2 += other.w2
        self.negative += other.negative
        return self

    @property
    def weighted(self) -> bool:
        """Whether any event weighed other than 1 (sum w = n and sum w^2 = n hold only for weights all 1)."""
        return bool(self.w or self.w2)

    def sums(self) -> tuple[int, int]:
        """(sum w, sum w^2) in fixed point, exactly."""
        return self.n * ONE + self.w, self.n * ONE2 + self.w2


def rate_tallies(accepted: ExactTally, every: ExactTally) -> tuple[Tally, Tally]:
    """(accepted, total) for ``rates.rate``: plain counts where no event weighed other than 1 (the unweighted
    rate and its Clopper-Pearson interval, bit for bit as ever), else ``fraction_tallies`` (the fraction rounded
    once from the exact sums: the score histogram's, the same in any order of streams and units), with the
    negative weights counted."""
    if not every.weighted:
        return (Tally(accepted.n, float(accepted.n), float(accepted.n), 0),
                Tally(every.n, float(every.n), float(every.n), 0))
    passed, total_ = fraction_tallies(accepted.n, every.n, accepted.sums(), every.sums())
    passed.negative, total_.negative = accepted.negative, every.negative
    return passed, total_


def fixed_point(weight: float) -> int:
    """``weight`` in units of 2^-W_BITS, exactly (no rounding); a non-finite one is a ValueError."""
    if not math.isfinite(weight):
        raise ValueError(f"event weight {weight}: not a finite number")
    numerator, denominator = float(weight).as_integer_ratio()  # denominator: a power of 2, at most 2^1074
    return numerator * (ONE // denominator)


def exact_sum(weights: Iterable[float]) -> int:
    """sum w of ``weights`` (floats, or a numpy array) in fixed point, exactly: the same in any order, and
    cancelling weights cancel (a float sum of weights +-1e100 among ones of order 1 lost the ones it absorbed);
    a non-finite weight is a ValueError."""
    return exact_sums(weights, squares=False)[0]


_CHUNK = 1 << 24  # events per pass: an int64 sum of 2^24 limbs of < 2^38 cannot overflow
_LIMB = 18  # |mantissa| < 2^53 in three limbs of 18 bits: a limb's square or double product < 2^38


def exact_sums(weights: Iterable[float], squares: bool = True) -> tuple[int, int]:
    """(sum w, sum w^2) of ``weights`` in fixed point, exactly: what ``fixed_point`` summed event by event gives,
    bit for bit, in numpy instead of a Python loop (~3 us an event: hltcard sums a sample some fifty times).
    Each weight is m 2^e with an integer |m| < 2^53; m is cut into 18-bit limbs whose sums (and, for w^2, the
    sums of their products) per exponent e are exact in int64, and only those few dozen sums become Python
    integers. ``squares=False``: sum w^2 is not computed (0). A non-finite weight is a ValueError."""
    w = _finite(weights if hasattr(weights, "__len__") else list(weights))
    sw = sw2 = 0
    for start in range(0, w.size, _CHUNK):
        mantissa, exponent = _mantissas(w[start:start + _CHUNK])
        base = int(exponent.min())
        group = exponent - base
        span = int(group.max()) + 1
        used = np.flatnonzero(np.bincount(group, minlength=span))

        def by_exponent(values: np.ndarray) -> list[int]:
            out = np.zeros(span, np.int64)
            np.add.at(out, group, values)
            return out[used].tolist()

        mask = (1 << _LIMB) - 1
        sums = [by_exponent(mantissa & mask), by_exponent(mantissa >> _LIMB)]  # m = lo + hi 2^18 (hi signed)
        if squares:  # m^2 = (a 2^36 + b 2^18 + c)^2 with |m|'s limbs, by the power of 2^18 each product lands on
            m = np.abs(mantissa)
            a, b, c = m >> 2 * _LIMB, (m >> _LIMB) & mask, m & mask
            square_sums = [by_exponent(x) for x in (c * c, 2 * b * c, b * b + 2 * a * c, 2 * a * b, a * a)]
        for k, e in enumerate((used + base + W_BITS).tolist()):  # the unit 2^e in units of 2^-W_BITS, e >= 0
            sw += (sums[0][k] + (sums[1][k] << _LIMB)) << e
            if squares:
                sw2 += sum(part[k] << (_LIMB * j) for j, part in enumerate(square_sums)) << (2 * e)
    return sw, sw2


def whole_units(weights: np.ndarray) -> tuple[list[int], int]:
    """(each weight as a whole number of 2^unit, unit): exactly ``fixed_point``'s integers divided by
    2^(unit + W_BITS), unit the smallest exponent among the weights' mantissas (>= -W_BITS). Why: ratios and
    comparisons of their sums are those of the fixed-point sums, but the integers have the bits of the weights'
    range (some 60 to 130), not ~1100, so a Python loop over them costs a fraction of ``fixed_point``'s.
    A non-finite weight is a ValueError."""
    w = _finite(weights)
    if not w.size:
        return [], -W_BITS
    mantissa, exponent = _mantissas(w)
    nonzero = exponent[mantissa != 0]  # a zero's exponent (frexp's 0) is no unit of it
    unit = int(nonzero.min()) if nonzero.size else -W_BITS
    return [m << e for m, e in zip(mantissa.tolist(), np.maximum(exponent - unit, 0).tolist())], unit


def _finite(weights: Any) -> np.ndarray:
    """``weights`` as a flat float64 array; a non-finite one is ``fixed_point``'s ValueError, as event by event."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(w)
    if bad.any():
        fixed_point(float(w[bad][0]))
    return w


def _mantissas(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, e) with w = m 2^e exactly: int64 |m| < 2^53 and e >= -W_BITS (a subnormal's mantissa has its low zero
    bits shifted out, exactly, so that every unit 2^e is a whole number of 2^-W_BITS)."""
    fraction, exponent = np.frexp(w)  # w = fraction 2^exponent, 0.5 <= |fraction| < 1 (0 for 0)
    mantissa = (fraction * 2.0 ** 53).astype(np.int64)
    exponent = exponent.astype(np.int64) - 53
    shift = np.maximum(-W_BITS - exponent, 0)
    return mantissa >> shift, exponent + shift


def weight_sum(weights: Iterable[float]) -> float:
    """sum w of ``weights``, the exact sum (``exact_sum``) correctly rounded once."""
    return exact_sum(weights) / ONE


def excess(weight: float) -> tuple[int, int]:
    """(w - 1, w^2 - 1) in fixed point: what an event of ``weight`` adds beyond its count."""
    q = fixed_point(weight)
    return q - ONE, q * q - ONE2


def total(count: int, excess_w: int, excess_w2: int) -> tuple[float, float]:
    """(sum w, sum w^2) of ``count`` events from their recorded excesses, each correctly rounded."""
    return (count * ONE + excess_w) / ONE, (count * ONE2 + excess_w2) / ONE2


def fraction_tallies(k: int, n: int, passed: tuple[int, int], every: tuple[int, int]) -> tuple[Tally, Tally]:
    """(accepted, total) for ``rates.rate`` of a weighted fraction: ``k`` of ``n`` events, ``passed`` and
    ``every`` their exact fixed-point (sum w, sum w^2), not excesses. Scaled so the total's sum of weights is 1,
    each figure one correctly rounded ratio of exact integers: the fraction is rounded once (weights all c give
    k / n to the bit; dividing the two sums, each rounded to a float, was a bit off for c = 0.1 or 1e30), and no
    figure leaves a double's range (sum w^2 of weights 1e-200 is 0.0 as a float, of 1e200 too large). A total
    of 0 or less gives ``rate`` its "undefined"."""
    sw, sw2 = every
    if sw <= 0:
        return Tally(k, 0.0, 0.0), Tally(n, 0.0, 0.0)
    scale2 = sw * sw  # sum w^2 is in units of 2^-2 W_BITS: the square of sum w's unit
    return Tally(k, passed[0] / sw, passed[1] / scale2), Tally(n, 1.0, sw2 / scale2)


def is_fixed_point(key: str) -> bool:
    """Whether a module's summary counter ``key`` is a fixed-point weight sum: by the naming every module
    uses for them, ``<name>_w:<bin>`` (sum of w - 1) and ``<name>_w2:<bin>`` (sum of w^2 - 1)."""
    return key.split(":", 1)[0].endswith(("_w", "_w2"))


def readable(counters: dict[str, Any]) -> dict[str, Any]:
    """``counters`` as hltrun.json shows them: each fixed-point weight sum as a float in units of weight
    (``_w``) or squared weight (``_w2``), rounded once. The integers are for merging only: hundreds of digits (w^2
    in units of 2^-2148), which JSON readers that hold numbers as doubles (JavaScript, jq 1.6, pandas) read
    wrong or refuse."""
    return {key: (value / (ONE2 if key.split(":", 1)[0].endswith("_w2") else ONE))
            if isinstance(value, int) and not isinstance(value, bool) and is_fixed_point(key) else value
            for key, value in counters.items()}


def event_weight(event: Any, label: str) -> float:
    """The event's generator weight (the source's, from files that carry one), else 1: what the TriggerRates
    service counts it with. Read, not consumed (consuming it makes every input file need the branch); a
    non-finite one fails the event with one line naming module ``label`` and the event."""
    if not event.has(WEIGHT_TAG):
        return 1.0
    weight = event.get(WEIGHT_TAG)
    if not math.isfinite(weight):
        raise ModuleError(f"module '{label}': event weight '{WEIGHT_TAG}' is {weight} ({event.id}): no weighted "
                          "distribution can hold it")
    return weight
