"""Weighted statistics of the model evaluation (tools/physics/eval_stats.py): a weight-2 event must count as
two unit-weight events everywhere, and the pT bins must be the trigger filter's own."""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.tools.physics.eval_stats import (binned_pass_rates, effective_n, event_max, looser_cut_at_target,
                                             pass_rate, roc, weighted_cut)

rng = np.random.default_rng(3)


def test_weights_are_event_multiplicities():
    b, s = rng.normal(0, 1, 400), rng.normal(1, 1, 300)
    wb = rng.integers(1, 4, b.size).astype(float)
    fpr_w, tpr_w, auc_w = roc(b, s, wb)
    fpr_r, tpr_r, auc_r = roc(np.repeat(b, wb.astype(int)), s)
    assert auc_w == pytest.approx(auc_r, rel=1e-12)
    np.testing.assert_allclose(fpr_w, fpr_r)
    rep = np.repeat(b, wb.astype(int))
    for eff in (0.01, 0.1, 0.5):
        assert weighted_cut(b, wb, eff) == weighted_cut(rep, None, eff)
    assert pass_rate(b, wb, 0.3).rate == pytest.approx(np.mean(rep > 0.3))


def test_auc_and_ties():
    assert roc(np.array([0.0, 1.0]), np.array([2.0, 3.0]))[2] == 1.0
    assert roc(np.array([1.0, 1.0]), np.array([1.0]))[2] == 0.5
    assert roc(np.array([np.nan, 0.0]), np.array([-1.0]))[2] == 0.5  # NaN never passes: -inf


def test_cut_keeps_the_fraction_and_sits_between_scores():
    b = np.arange(1000, dtype=float)
    cut = weighted_cut(b, None, 0.01)
    assert cut == 989.5 and np.sum(b > cut) == 10
    assert weighted_cut(b[:5], None, 0.01) == 4.0  # too few events: nothing passes
    assert np.isnan(weighted_cut(np.zeros(0), None, 0.01))


def test_negative_weights_the_cut_holds_the_target_at_every_tighter_cut():
    """Scores 0..9, weights 1 except a -1 at score 7 (total 8): the fractions above 0..9 are 7/8, 6/8, 5/8,
    4/8, 3/8, 2/8, 1/8, 2/8, 1/8, 0. For a target of 1/8 the fraction reaches it above 6, rises to 2/8 above 7
    and falls to 1/8 above 8: the cut is 8.5 (it was 6.5, where raising the cut to 7.5 gives more rate), the
    looser 6.5 named."""
    s = np.arange(10, dtype=float)
    w = np.ones(10)
    w[7] = -1.0
    assert weighted_cut(s, w, 1 / 8) == 8.5
    assert looser_cut_at_target(s, w, 1 / 8) == 6.5
    for cut in (8.5, 9.0):
        assert w[s > cut].sum() / w.sum() <= 1 / 8
    assert w[s > 7.5].sum() / w.sum() > 1 / 8  # the next looser cut: above the target
    assert weighted_cut(s, w, 0.3) == 5.5 and looser_cut_at_target(s, w, 0.3) is None  # 2/8 from 5 on
    assert looser_cut_at_target(s, np.ones(10), 1 / 8) is None  # never with weights >= 0


@pytest.mark.parametrize("c", [0.7, 0.1, 1 / 3, 1e-7])
def test_equal_weights_give_the_unweighted_cut(c):
    """Weights all equal to c (a double: xsec x lumi / N) weigh every event alike: the cut is the unweighted one at
    every target, also where the target is a whole number of events (10,000 events, 1 %: 100 above). The float
    total minus a float running sum was a few ulps off there and the cut moved by an event (c = 0.7, 1e-7)."""
    s = np.random.default_rng(7).normal(size=10_000)
    for eff in (1e-3, 1e-2, 0.02, 0.05, 0.1, 0.25):
        cut = weighted_cut(s, None, eff)
        assert np.sum(s > cut) == round(eff * s.size)
        assert weighted_cut(s, np.full(s.size, c), eff) == cut, eff
        assert looser_cut_at_target(s, np.full(s.size, c), eff) is None


@pytest.mark.parametrize("weights", [np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, -2.0, 0.5, 0.0])])
def test_weights_summing_to_zero_or_less_have_no_cut(weights):
    with pytest.raises(ValueError, match=r"the weights of the 4 events sum to -?[0-9.]+, not a positive number"):
        weighted_cut(np.arange(4.0), weights, 0.1)


def test_pass_rate_error_is_binomial_for_unit_weights():
    r = pass_rate(np.arange(100, dtype=float), None, 89.5)
    assert (r.rate, r.n_pass, r.n_events) == (0.1, 10, 100)
    assert r.error == pytest.approx(np.sqrt(0.1 * 0.9 / 100))
    assert r.n_effective == pytest.approx(100)


def test_pt_bins_are_the_filters():
    edges = [600.0, 700.0, 850.0]
    pt = np.array([500.0, 650.0, 700.0, 800.0, 850.0, 3000.0])
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    rates = binned_pass_rates(scores, None, pt, edges, np.array([1.5, 1.5, 3.5, 3.5, 5.5, 5.5]))
    assert [r.n_events for r in rates] == [2, 2, 2]  # 500 in the first bin, 700 opens the second, 3000 in the last
    assert [r.n_pass for r in rates] == [1, 1, 1]


def test_event_max():
    assert event_max(np.array([1.0, 3.0, np.nan, 2.0]), np.array([0, 0, 1, 1])).tolist() == [3.0, 2.0]


def test_max_min_ratio_over_the_bins_inside_600_to_1600():
    from hltrun.tools.physics.evaluate_models import max_min_ratio

    def r(rate, err):
        return {"rate": rate, "error": err, "n_events": 100}

    rates = [r(0.01, 0.001), r(0.02, 0.002), r(0.01, 0.001), r(0.04, 0.004), r(0.01, 0.001), r(0.5, 0.1)]
    got = max_min_ratio(rates)  # the open > 1600 GeV bin (0.5) is outside the range
    assert got["ratio"] == pytest.approx(4.0) and got["error"] == pytest.approx(4.0 * np.hypot(0.1, 0.1))
    rates[2] = r(0.0, 0.0)
    assert max_min_ratio(rates) == {"ratio": None, "error": None, "why": "a bin passes nothing"}


def test_auc_error_hanley_mcneil():
    from hltrun.tools.physics.eval_stats import auc_error, effective_n

    # A = 0.5, 100 + 100 events: Q1 = Q2 = 1/3, SE^2 = (0.25 + 2 * 99 / 12) / 1e4
    assert auc_error(0.5, 100, 100) == pytest.approx(np.sqrt((0.25 + 2 * 99 / 12) / 1e4))
    assert auc_error(0.9, 400, 400) < auc_error(0.9, 100, 100)
    assert effective_n(np.ones(10)) == 10 and effective_n(np.array([1.0, 0.0])) == 1


def test_effective_events_above_a_cut_from_a_pass_rate():
    """(sum w)^2 / sum w^2 over the events above a cut, recovered from what a PassRate keeps (rate, error and the
    sample's effective count): the model card's figure for metrics.json files that do not store it."""
    from hltrun.tools.physics.eval_stats import effective_above

    s, w = rng.normal(0, 1, 5000), rng.exponential(1.0, 5000)
    for cut in (1.0, 2.5, 3.2):
        above = w[s > cut]
        want = above.sum() ** 2 / np.sum(above ** 2)
        assert effective_above(pass_rate(s, w, cut).to_json()) == pytest.approx(want, rel=1e-9)
    assert effective_above(pass_rate(s, None, 2.0).to_json()) == pytest.approx(np.sum(s > 2.0), rel=1e-9)
    assert effective_above(pass_rate(s, w, 99.0).to_json()) == 0.0


def _exact(scores: np.ndarray, weights: np.ndarray, cut: float) -> tuple[float, float, float]:
    """(rate, error, effective events) written out in fractions: each the exact value, rounded once."""
    import math
    from fractions import Fraction

    w = [Fraction(x) for x in weights.tolist()]
    up = [x for x, s in zip(w, scores.tolist()) if s > cut]
    down = [x for x, s in zip(w, scores.tolist()) if not s > cut]
    total, q = sum(w), sum(x * x for x in w)
    p = sum(up) / total
    err2 = (sum(x * x for x in up) * (1 - p) ** 2 + sum(x * x for x in down) * p ** 2) / total ** 2
    return float(p), math.sqrt(float(err2)), float(total * total / q)


@pytest.mark.parametrize("heavy", [[1e100, -1e100], [1e100, -1e100, 3e99, -3e99]], ids=["1e100", "1e100-3e99"])
def test_pass_rate_and_effective_events_sum_weights_exactly(heavy):
    """Weights +-1e100 that cancel, below the cut, among ordinary weights: the float sums lost the ordinary
    weights the heavy ones absorbed, so the rate, its error and the effective events were wrong (the total came
    out 0: NaN; or a fraction of another total). Each is now the exact value rounded once, as the cut's."""
    rng = np.random.default_rng(7)
    scores = np.concatenate([np.full(len(heavy), -5.0), rng.random(200)])
    weights = np.concatenate([heavy, rng.uniform(0.5, 2.0, 200)])
    r = pass_rate(scores, weights, 0.9)
    p, err, n_eff = _exact(scores, weights, 0.9)
    assert r.rate == p and r.n_effective == n_eff
    assert r.error == pytest.approx(err, rel=1e-15)  # one sqrt of the rounded square
    assert effective_n(weights) == n_eff
    assert effective_n(weights[len(heavy):]) == _exact(scores[len(heavy):], weights[len(heavy):], 0.9)[2]
    pt = np.concatenate([np.full(len(heavy), 300.0), np.tile([300.0, 900.0], 100)])  # the heavy ones in bin 0
    binned = binned_pass_rates(scores, weights, pt, [0.0, 600.0], 0.9)
    for r, sel in zip(binned, (pt < 600, pt >= 600)):
        assert (r.rate, r.n_effective) == _exact(scores[sel], weights[sel], 0.9)[::2]


def test_every_effective_count_of_the_card_and_the_metrics_is_effective_n():
    """The card's effective events above a cut (card_entry) and a sample's in metrics.json (eval_samples) were
    float copies of ``effective_n``'s formula: with +1e100, 3 and -1e100 above the cut, the card said 5e-201 (the
    float sum lost the 3) where the exact figure is 16 / 2e200 = 8e-200. Tiny either way (an effective count is
    ~0 wherever a float sum of weights cancels), but not the formula of the cut's ``n_effective`` beside it. Now
    each is ``effective_n``'s, exact."""
    from pathlib import Path

    from hltrun.tools.physics.card_entry import card_entry
    from hltrun.tools.physics.eval_samples import Sample

    scores = np.concatenate([[50.0, 51.0, 52.0], np.linspace(0.0, 1.0, 400)])
    weights = np.concatenate([[1e100, 3.0, -1e100], np.full(400, 1.0)])
    entry = card_entry(scores, weights, np.full(403, 700.0), scores, weights, {"bkg_eff_1e-2": 1e-2}, fit_pt=False)
    stat = entry.stats["bkg_eff_1e-2"]
    from fractions import Fraction

    above = [Fraction(w) for w in weights[scores > stat.cut].tolist()]
    assert len(above) > 3 and stat.effective_above == float(sum(above) ** 2 / sum(w * w for w in above)) > 0
    assert stat.achieved.n_effective == effective_n(weights) == _exact(scores, weights, 0.5)[2]
    empty = np.zeros(0)
    sample = Sample("k", "l", Path("x.root"), False, empty, np.zeros(0, int), weights, True, np.full(403, 700.0),
                    empty, empty, empty)
    assert sample.describe(Path(".")).get("n_effective") == effective_n(weights) > 0
