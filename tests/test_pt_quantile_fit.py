"""The smooth pT-dependent cut (tools/physics/pt_quantile_fit.py) on samples whose true quantile is known:
score = a(pT) * E with E ~ Exp(1), so P(score > c) = exp(-c / a) and the cut keeping ``eff`` is
a(pT) ln(1/eff); with a quadratic in ln pT the fit's form holds exactly. The fit must find it, weight events as
multiplicities, drop terms the sample cannot see, and its covariance must describe how far a fitted
cut's true rate strays."""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.modules.working_point import bin_index
from hltrun.tools.physics.pt_quantile_fit import fit_quantile, information_weights, rate_covariance

EDGES = [600.0, 700.0, 850.0, 1000.0, 1300.0, 1600.0]
SPAN = (600.0, 2500.0)
A = np.array([0.5, 0.3, 0.5])  # a(x) = 0.5 + 0.3 x + 0.5 x^2, x = ln(pT / 1 TeV): every term visible


def scale(pt: np.ndarray, a: np.ndarray = A) -> np.ndarray:
    x = np.log(pt / 1000.0)
    return a[0] + a[1] * x + a[2] * x * x


def sample(rng: np.random.Generator, n: int, a: np.ndarray = A) -> tuple[np.ndarray, np.ndarray]:
    pt = np.exp(rng.uniform(np.log(600.0), np.log(2500.0), n))
    return scale(pt, a) * rng.exponential(1.0, n), pt


def true_rate(cut: np.ndarray, pt: np.ndarray) -> np.ndarray:
    return np.exp(-cut / scale(pt))


@pytest.mark.parametrize("eff", [1e-2, 1e-3])
def test_fit_finds_the_true_quantile(eff):
    rng = np.random.default_rng(11)
    s, pt = sample(rng, 200_000)
    fit = fit_quantile(s, np.ones_like(s), pt, eff, SPAN)
    truth = A * np.log(1.0 / eff)
    err = np.sqrt(np.diag(fit.covariance))
    assert len(fit.coefficients) == 3
    assert np.all(np.abs(fit.coefficients - truth) < 4 * err), (fit.coefficients, truth, err)
    # and the cut keeps the target in every pT bin (the true rate, not a count), within its error
    cov = rate_covariance(fit, s, np.ones_like(s), pt, bin_index(EDGES, pt), len(EDGES))
    rate = true_rate(fit.cuts_at(pt), pt)
    for b in range(len(EDGES)):
        assert abs(rate[bin_index(EDGES, pt) == b].mean() - eff) < 4 * np.sqrt(cov[b, b]), b


def test_weights_are_event_multiplicities():
    rng = np.random.default_rng(5)
    s, pt = sample(rng, 60_000)
    w = rng.integers(1, 4, s.size)
    weighted = fit_quantile(s, w.astype(float), pt, 1e-2, SPAN)
    repeated = fit_quantile(np.repeat(s, w), np.ones(w.sum()), np.repeat(pt, w), 1e-2, SPAN)
    err = np.sqrt(np.diag(weighted.covariance))
    # the same cut (the pT slices of the weight renormalisation differ a little), well inside its error
    assert np.all(np.abs(weighted.coefficients - repeated.coefficients) < 0.1 * err)
    # a weighted sample is worth fewer events than its repeated twin: a larger covariance
    assert np.all(np.diag(weighted.covariance) > np.diag(repeated.covariance))


def test_the_weights_count_where_the_events_are():
    """Physical weights falling like pT^-5 (a flat-pTHat sample) must not hand the fit to the
    low-pT events: the cut at 2 TeV is known about as well as with unit weights, not 5x worse."""
    rng = np.random.default_rng(8)
    s, pt = sample(rng, 100_000)
    physical = fit_quantile(s, (pt / 600.0) ** -5, pt, 1e-2, SPAN)
    unit = fit_quantile(s, np.ones_like(s), pt, 1e-2, SPAN)
    top = physical.basis(np.array([2000.0]))[0]
    assert top @ physical.covariance @ top < 1.5 ** 2 * (top @ unit.covariance @ top)
    w = information_weights((pt / 600.0) ** -5, pt)
    assert w.sum() == pytest.approx(pt.size)  # every slice weighs as many as its events


def test_a_constant_cut_is_the_samples_own_quantile():
    """With one term the fit is the weighted quantile of the whole sample: the smoothing that makes
    Newton's method converge must not move it (unrefined, a falling tail smeared by the kernel
    passes more and the cut lands ~0.8 of its error too high)."""
    from hltrun.tools.physics.eval_stats import weighted_cut

    rng = np.random.default_rng(4)
    s, pt = sample(rng, 100_000, np.array([0.5, 0.0, 0.0]))
    fit = fit_quantile(s, np.ones_like(s), pt, 1e-2, SPAN, n_terms=1)
    assert abs(fit.coefficients[0] - weighted_cut(s, None, 1e-2)) < 0.3 * np.sqrt(fit.covariance[0, 0])


def test_few_events_or_an_invisible_term_give_fewer_terms():
    rng = np.random.default_rng(2)
    s, pt = sample(rng, 15_000)  # 15 events above a 0.1% cut: one term
    assert len(fit_quantile(s, np.ones_like(s), pt, 1e-3, SPAN).coefficients) == 1
    assert len(fit_quantile(s, np.ones_like(s), pt, 1e-2, SPAN).coefficients) == 3
    flat, pt = sample(rng, 100_000, np.array([0.5, 0.0, 0.0]))  # no pT dependence: a constant cut
    fit = fit_quantile(flat, np.ones_like(flat), pt, 1e-2, SPAN)
    assert len(fit.coefficients) == 1
    assert fit.coefficients[0] == pytest.approx(0.5 * np.log(100.0), abs=4 * np.sqrt(fit.covariance[0, 0]))


def test_covariance_describes_the_spread_of_the_true_rate_per_bin():
    """40 independent fits: the true pass rate of each bin under each fitted cut strays from the
    target as much as rate_covariance predicts (pull spread near 1, neither under- nor over-stated)."""
    rng = np.random.default_rng(7)
    grid_pt = np.exp(rng.uniform(np.log(600.0), np.log(2500.0), 200_000))
    grid_bin = bin_index(EDGES, grid_pt)
    pulls = []
    for _ in range(40):
        s, pt = sample(rng, 10_000)
        fit = fit_quantile(s, np.ones_like(s), pt, 1e-2, SPAN)
        cov = rate_covariance(fit, s, np.ones_like(s), pt, bin_index(EDGES, pt), len(EDGES))
        rate = true_rate(fit.cuts_at(grid_pt), grid_pt)
        for b in range(len(EDGES)):
            pulls.append((rate[grid_bin == b].mean() - 1e-2) / np.sqrt(cov[b, b]))
    pulls = np.asarray(pulls)
    assert abs(pulls.mean()) < 0.35 and 0.75 < pulls.std() < 1.3, (pulls.mean(), pulls.std())


def test_several_efficiencies_in_one_go_are_the_fits_one_at_a_time():
    """``fit_quantiles`` shares the information weights, the scores' order and the basis between efficiencies
    (hltcard's and evaluate_models' ``derive``): the fits must be those of ``fit_quantile``, to the bit, a term
    dropped included (1e-3 on 15,000 events: one term)."""
    from hltrun.tools.physics.pt_quantile_fit import fit_quantiles

    rng = np.random.default_rng(12)
    s, pt = sample(rng, 15_000)
    w = rng.lognormal(0.0, 0.5, s.size)
    effs = {"a": 1e-2, "b": 1e-3, "c": 5e-2}
    together = fit_quantiles(s, w, pt, effs, SPAN)
    for k, eff in effs.items():
        alone = fit_quantile(s, w, pt, eff, SPAN)
        assert together[k].to_json() == alone.to_json(), k
    assert len(together["b"].coefficients) == 1


def test_newton_takes_the_loss_once_at_each_point(monkeypatch):
    """Each smoothed loss is a pass over the whole sample (two normal functions of a million events for
    hltcard): the line search's loss at the step taken is the next iteration's starting loss, not taken
    again at the same coefficients and width."""
    from hltrun.tools.physics import pt_quantile_fit as fit_module

    seen: list[tuple[bytes, float]] = []
    real = fit_module._loss

    def recorded(beta, s, w, x, eff, h):  # noqa: ANN001, ANN202 - the function's own signature
        seen.append((np.asarray(beta).tobytes(), h))
        return real(beta, s, w, x, eff, h)

    monkeypatch.setattr(fit_module, "_loss", recorded)
    rng = np.random.default_rng(13)
    s, pt = sample(rng, 20_000)
    fit_quantile(s, np.ones_like(s), pt, 1e-2, SPAN)
    assert len(seen) > 10 and len(set(seen)) == len(seen)


def test_the_normal_functions_are_scipys():
    """The fit's normal CDF and density (without scipy.stats' argument checks) give scipy.stats.norm's values
    bit for bit, infinities, signed zeros and subnormal tails included (NaN for NaN): the cards do not change."""
    from scipy.stats import norm

    from hltrun.tools.physics.pt_quantile_fit import normal_cdf, normal_pdf

    rng = np.random.default_rng(14)
    x = np.concatenate([rng.normal(0, 3, 50_000), rng.uniform(-45, 45, 50_000), np.linspace(-40, 40, 8001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e300, 37.5, -37.5, 38.6, -38.6]])
    with np.errstate(over="ignore"):  # the density's square of 1e300, as scipy's
        for mine, theirs in ((normal_cdf, norm.cdf), (normal_pdf, norm.pdf)):
            got, want = mine(x), theirs(x)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # a NaN's sign bit aside
            np.testing.assert_array_equal(got[~np.isnan(got)].view(np.int64), want[~np.isnan(want)].view(np.int64))


@pytest.mark.parametrize("share", [0.002, 0.02])
def test_events_without_a_scored_jet_are_left_out_of_the_fit(share):
    """hltcard's events without a scored jet (a jet-pT selection in the batcher: score -inf, leading pT 0) and
    with a NaN score pass no cut at any pT: the fit (``derive``, hltcard's and evaluate_models') is the fit of the
    other events. Kept, they made the smoothed loss +inf at every point (the line search never shortened a step)
    and pulled the lowest-pT cut down (0.2 %: other coefficients); above 0.5 % of the sample their pT of 0 was the
    fit range's lower end, ln 0, and the fit failed in LAPACK (2 %: hltcard omitted the pT cut)."""
    from hltrun.tools.physics.eval_working_point import derive

    rng = np.random.default_rng(14)
    s, pt = sample(rng, 20_000)
    w = rng.lognormal(0.0, 0.5, s.size)
    effs = {"a": 1e-2, "b": 5e-2}
    n = int(share * s.size)
    with_none = (np.concatenate([s, np.full(n, -np.inf), [np.nan]]), np.concatenate([w, np.ones(n + 1)]),
                 np.concatenate([pt, np.zeros(n), [800.0]]))
    want, got = derive(s, w, pt, effs), derive(*with_none, effs)
    for k in effs:
        assert got[k].to_json() == want[k].to_json(), k
    assert derive(np.full(3, -np.inf), np.ones(3), np.zeros(3), effs) == {}  # nothing to fit: no fits


def test_a_sample_with_no_positive_weight_in_any_pt_slice_says_which_slice():
    """Weights 0 but in one pT range, negative there (and the events without a jet, left out of the fit, weighing
    1: the sample's sum is positive): every slice the fit renormalises the weights in sums to 0 or less, its
    weights were 0/0 and the fit failed with 'cannot convert float NaN to integer'. It names the slice and its
    weight sum."""
    from hltrun.tools.physics.eval_working_point import derive

    rng = np.random.default_rng(5)
    s, pt = sample(rng, 5_000)
    negative = (pt > 1200) & (pt < 1300)
    w = np.where(negative, -rng.uniform(0.5, 2.0, s.size), 0.0)
    n_none = 3000
    args = (np.concatenate([s, np.full(n_none, -np.inf)]), np.concatenate([w, np.ones(n_none)]),
            np.concatenate([pt, np.zeros(n_none)]))
    assert args[1].sum() > 0
    with pytest.raises(ValueError, match="none of the 50 leading-jet pT slices of the 5000 events fitted") as err:
        derive(*args, {"a": 1e-2})
    chunks = np.array_split(np.argsort(pt), 50)  # 5000 distinct pTs: the 50 slices of equal events, 100 each
    sums = np.array([w[c].sum() for c in chunks])
    low = chunks[int(np.argmin(sums))]
    want = (f"({np.count_nonzero(sums == 0)} sum to 0; the lowest, {pt[low].min():.0f}–{pt[low].max():.0f} GeV: "
            f"100 events, weight sum {sums.min():.6g})")
    assert want in str(err.value) and 1200 < pt[low].min() < pt[low].max() < 1300
    one = (s, -np.ones(s.size), np.full(s.size, 800.0))  # every event at one pT: one slice
    with pytest.raises(ValueError) as err:
        derive(*one, {"a": 1e-2})
    assert "lie in one leading-jet pT slice (800–800 GeV: 5000 events, weight sum -5000)" in str(err.value)
