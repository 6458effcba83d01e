"""The working point's closure test and flatness test (tools/physics/eval_working_point.py) on samples with a
known truth: a right cut closes on an independent sample, a wrong one is caught; a rate that grows
with pT is called not flat. Scores: a(pT) * Exp(1), so the cut keeping eff is a(pT) ln(1/eff)."""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.tools.physics.eval_working_point import closure, flatness
from hltrun.tools.physics.pt_quantile_fit import fit_quantile

EDGES = [600.0, 700.0, 850.0, 1000.0, 1300.0, 1600.0]
SPAN = (600.0, 2500.0)


def sample(rng: np.random.Generator, n: int, slope: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.exp(rng.uniform(np.log(600.0), np.log(2500.0), n))
    return (0.5 + slope * np.log(pt / 1000.0)) * rng.exponential(1.0, n), np.ones(n), pt


def test_a_fitted_cut_closes_on_an_independent_sample():
    rng = np.random.default_rng(21)
    derivation, independent = sample(rng, 60_000, 0.2), sample(rng, 60_000, 0.2)
    fit = fit_quantile(*derivation, 1e-2, SPAN)
    c = closure(fit, derivation, independent, EDGES)
    assert c["chi2"]["ndf"] == len(EDGES) and c["chi2"]["p"] > 0.05
    assert all(abs(b["pull"]) < 3 for b in c["bins"])
    # the cut's own error enters: the chi-square with it is smaller than with the sample's errors alone
    assert c["chi2"]["chi2"] < c["chi2_stat"]["chi2"]
    for b in c["bins"]:
        assert b["target"] == 1e-2 and b["cut_error"] > 0 and b["derivation_events"] > 0
        # a pull counts both errors: the sample's (at the target) and the cut's
        assert b["pull"] == pytest.approx((b["rate"] - 1e-2) / np.hypot(b["error_at_target"], b["cut_error"]))
        # each bin's cut rests on more than the events of that bin: the fit pools them all
        assert b["equivalent_events"] > b["derivation_events"]


def test_a_cut_that_ignores_the_pt_dependence_fails_the_closure():
    rng = np.random.default_rng(22)
    derivation, independent = sample(rng, 60_000, 0.2), sample(rng, 60_000, 0.2)
    constant = fit_quantile(*derivation, 1e-2, SPAN, n_terms=1)
    c = closure(constant, derivation, independent, EDGES)
    assert c["chi2"]["p"] < 1e-3
    assert c["bins"][0]["pull"] < -3 and c["bins"][-1]["pull"] > 3  # too tight at low pT, too loose at high


def test_flatness_of_a_fixed_cut():
    rng = np.random.default_rng(23)
    flat = sample(rng, 60_000, 0.0)
    f = flatness(*flat, EDGES, 0.5 * np.log(100.0))
    assert f["chi2"]["ndf"] == len(EDGES) - 1 and f["chi2"]["p"] > 0.05
    assert abs(f["pooled"] - 1e-2) < 2e-3
    rising = sample(rng, 60_000, 0.2)
    r = flatness(*rising, EDGES, 0.5 * np.log(100.0))
    assert r["chi2"]["p"] < 1e-6 and r["rates"][-1]["rate"] > 2 * r["rates"][0]["rate"]


def test_flatness_of_events_in_one_bin_is_no_test():
    # kills: ndf held at 1 with every event in one bin (edges above the sample's pT: the first bin takes the
    # events below it), a chi-square of nothing that read "0.0/1, p = 1": flat
    rng = np.random.default_rng(24)
    rising = sample(rng, 20_000, 0.2)  # leading pT 600-2500 GeV, a cut that is not flat in it
    f = flatness(*rising, [3000.0, 4000.0, 5000.0], 0.5 * np.log(100.0))
    assert [r["n_events"] for r in f["rates"]] == [20_000, 0, 0]
    assert f["chi2"] == {"chi2": 0.0, "ndf": 0, "p": None}
