"""framework.weights' sums of a whole sample in numpy (``exact_sums``, ``whole_units``) against the event-by-event
reference (``fixed_point`` per weight, ``ExactTally``): bit for bit, on weights chosen to break a shortcut (+-1e100
that cancel, subnormals, the largest doubles, every sign and exponent at once), and hltcard's statistics on them.

Why: pass_rate and effective_n summed every weight through ``ExactTally.add`` in a Python loop (~3 us a weight);
hltcard takes some 130 such sums of its background (cuts, pT bins, flatness), so a 200,000-event weighted sample
cost tens of seconds more than its scoring. The numpy sums must be the same integers, or the cards change.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from hltrun.framework import weights as fw
from hltrun.framework.weights import W_BITS, ExactTally, exact_sum, exact_sums, fixed_point, whole_units
from hltrun.tools.physics import eval_stats
from hltrun.tools.physics.eval_stats import effective_n, pass_rate, weighted_cut

TINY = 5e-324  # the smallest subnormal, 2^-1074
BIG = 1.7976931348623157e308  # the largest double


def _adversarial() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(38)
    ordinary = rng.uniform(0.5, 2.0, 300)
    return {
        "empty": np.zeros(0),
        "1e100 cancelling": np.concatenate([[1e100, -1e100, 3e99, -3e99], ordinary]),
        "subnormals": np.array([TINY, -TINY, 3 * TINY, 1e-310, -2.2250738585072014e-308, 2.2250738585072014e-308,
                                1e-320, 0.0, -0.0]),
        "largest doubles": np.array([BIG, -BIG, BIG, 1.0, TINY, -1e308]),
        "every exponent, mixed signs": rng.normal(size=3000) * 10.0 ** rng.integers(-320, 300, 3000),
        "float32 NLO-like": ((rng.random(5000) - 0.1) * 40).astype(np.float32).astype(np.float64),
        "all one": np.ones(1000),
        "zeros": np.zeros(7),
    }


CASES = _adversarial()


def _reference(w: np.ndarray) -> tuple[int, int]:
    """(sum w, sum w^2) event by event, as the TriggerRates service records them."""
    tally = ExactTally()
    for x in w.tolist():
        tally.add(x)
    return tally.sums()


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_sums_are_the_event_by_event_integers(name):
    w = CASES[name]
    sw, sw2 = _reference(w)
    assert exact_sums(w) == (sw, sw2)
    assert exact_sum(w) == exact_sum(w.tolist()) == exact_sum(iter(w.tolist())) == sw
    assert sw == sum(fixed_point(x) for x in w.tolist())
    units, unit = whole_units(w)
    assert unit >= -W_BITS and [q << (unit + W_BITS) for q in units] == [fixed_point(x) for x in w.tolist()]


def test_a_non_finite_weight_is_still_the_one_value_error():
    for bad in (np.nan, np.inf, -np.inf):
        for f in (exact_sums, exact_sum, whole_units):
            with pytest.raises(ValueError, match="not a finite number"):
                f(np.array([1.0, bad, 2.0]))


def _fractions(scores: np.ndarray, w: np.ndarray, cut: float) -> tuple[float, float]:
    """(rate, effective events), each the exact value written in fractions, rounded once."""
    q = [Fraction(x) for x in w.tolist()]
    up = sum(x for x, s in zip(q, scores.tolist()) if s > cut)
    total = sum(q)
    return float(up / total), float(total * total / sum(x * x for x in q))


@pytest.mark.parametrize("name", ["1e100 cancelling", "subnormals", "float32 NLO-like"])
def test_pass_rate_effective_n_and_cut_on_adversarial_weights_are_the_exact_values(name):
    """hltcard's figures from the numpy sums: the exact value rounded once (Fraction arithmetic, independently of
    framework.weights), and the cut keeps at most the fraction asked for, to the event."""
    w = np.abs(CASES[name]) if name == "subnormals" else CASES[name]  # a positive total to take a fraction of
    w = w[w != 0]
    scores = np.linspace(0.0, 1.0, w.size)
    cut = 0.6
    r = pass_rate(scores, w, cut)
    assert (r.rate, r.n_effective) == _fractions(scores, w, cut)
    assert effective_n(w) == _fractions(scores, w, cut)[1]
    eff = 0.25
    c = weighted_cut(scores, w, eff)
    q = [Fraction(x) for x in w.tolist()]
    above = sum(x for x, s in zip(q, scores.tolist()) if s > c) / sum(q)
    assert above <= Fraction(eff) * (1 + Fraction(1, 10 ** 12)) or math.isnan(c)


def test_sums_of_a_sample_are_not_taken_event_by_event(monkeypatch):
    """pass_rate, effective_n, weighted_cut and exact_sum on 20,000 weights call ``fixed_point`` (the per-weight
    Python conversion, ~1-3 us each) for no weight: they called it for every weight of every sum, some fifty times
    per event of an hltcard background."""
    calls = [0]
    real = fw.fixed_point

    def counted(weight: float) -> int:
        calls[0] += 1
        return real(weight)

    monkeypatch.setattr(fw, "fixed_point", counted)
    monkeypatch.setattr(eval_stats, "fixed_point", counted, raising=False)
    rng = np.random.default_rng(5)
    scores, w = rng.random(20_000), rng.uniform(-0.2, 2.0, 20_000)
    pass_rate(scores, w, 0.5)
    effective_n(w)
    weighted_cut(scores, w, 1e-2)
    exact_sum(w)
    assert calls[0] == 0
