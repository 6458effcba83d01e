"""The pT-dependent working point's numbers: its derivation, its closure on an independent sample, and
whether a fixed cut's rate is flat in pT there.

Why a module of its own: a working point is only as good as its closure on events that played no
part in it. The test here is the one a user would make: per leading-jet pT bin, the weighted pass
rate on the independent sample against the target, with the error expected under the target
(binomial, effective events: robust where a bin passes nothing) combined with the cut's own
statistical error (tools/physics/pt_quantile_fit.py), and a chi-square over the bins with its p-value.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chi2 as chi2_dist

from hltrun.modules.working_point import bin_index
from hltrun.tools.physics.eval_stats import binned_pass_rates, effective_n, pass_rate
from hltrun.tools.physics.pt_quantile_fit import (QuantileFit, fit_events, fit_quantiles, fit_range,
                                                  rate_covariance)


def derive(scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray,
           effs: dict[str, float]) -> dict[str, QuantileFit]:
    """One smooth cut per efficiency, all over the same pT range (the sample's), fitted on the events with a
    score and a leading-jet pT (``fit_events``; none: no fits)."""
    keep = fit_events(scores, leading_pt)
    if not keep.any():
        return {}
    s, w, pt = (np.asarray(a)[keep] for a in (scores, weights, leading_pt))
    return fit_quantiles(s, w, pt, effs, fit_range(pt))


def _chi2(resid: np.ndarray, cov: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    """resid^T cov^-1 resid over the bins ``ok`` (those with events), with its p-value."""
    r, c = resid[ok], cov[np.ix_(ok, ok)]
    value = float(r @ np.linalg.solve(c, r)) if r.size else 0.0
    return {"chi2": value, "ndf": int(r.size), "p": float(chi2_dist.sf(value, r.size)) if r.size else 1.0}


def closure(fit: QuantileFit, derivation: tuple[np.ndarray, np.ndarray, np.ndarray],
            independent: tuple[np.ndarray, np.ndarray, np.ndarray], edges: list[float]) -> dict[str, Any]:
    """Per bin of ``edges``: the independent sample's pass rate under the fitted cut against the
    target, with the pull; chi-square with the independent sample's errors only and with the cut's
    covariance added. ``derivation`` / ``independent``: (event scores, weights, leading pT)."""
    eff, n_bins = fit.eff, len(edges)
    d_s, d_w, d_pt = derivation
    s, w, pt = independent
    d_idx = bin_index(edges, d_pt)
    cut_cov = rate_covariance(fit, d_s, d_w, d_pt, d_idx, n_bins)
    cuts = fit.cuts_at(pt)
    # a bin's cut known as if from ten times the whole fit sample means the score density at the cut
    # was not seen in that bin (too few events): no equivalent count is quoted then
    floor = eff * (1 - eff) / (10 * effective_n(d_w))
    rows, resid, stat_var = [], [], []
    for b, r in enumerate(binned_pass_rates(s, w, pt, edges, cuts)):
        d_sel = d_idx == b
        var_h0 = eff * (1 - eff) / r.n_effective if r.n_effective > 0 else 0.0  # binomial error at the target
        total = np.sqrt(var_h0 + cut_cov[b, b])
        cut_err = float(np.sqrt(cut_cov[b, b]))
        rows.append({**r.to_json(), "target": eff, "error_at_target": float(np.sqrt(var_h0)), "cut_error": cut_err,
                     "pull": float((r.rate - eff) / total) if total > 0 else None,
                     "derivation_events": int(d_sel.sum()), "derivation_n_effective": effective_n(d_w[d_sel]),
                     # how many events a cut from this bin alone would need for the fit's precision here
                     "equivalent_events": float(eff * (1 - eff) / cut_cov[b, b]) if cut_cov[b, b] >= floor else None})
        resid.append(r.rate - eff if r.n_events else 0.0)
        stat_var.append(var_h0)
    resid_a, stat, ok = np.asarray(resid), np.diag(stat_var), np.asarray(stat_var) > 0
    return {"bins": rows, "chi2_stat": _chi2(resid_a, stat, ok), "chi2": _chi2(resid_a, stat + cut_cov, ok),
            "inclusive": pass_rate(s, w, cuts).to_json()}


def flatness(scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray, edges: list[float],
             cut: float) -> dict[str, Any]:
    """Is a fixed cut's pass rate the same in every bin? Chi-square against the pooled rate (errors
    at the pooled rate, binomial with effective events; ndf = bins with events - 1). With events in one bin
    only (edges beyond the sample's pT: the shipped card's 600 ... 1600 GeV on a p̂T > 1450 GeV slice) there
    is nothing to compare: ndf 0 and p None, no test. It read "0.0/1, p = 1", flat."""
    pooled = pass_rate(scores, weights, cut).rate
    rates = binned_pass_rates(scores, weights, leading_pt, edges, cut)
    used = [r for r in rates if r.n_effective > 0]
    value = float(sum((r.rate - pooled) ** 2 / (pooled * (1 - pooled) / r.n_effective) for r in used)) \
        if 0 < pooled < 1 else 0.0
    ndf = len(used) - 1
    p = float(chi2_dist.sf(value, ndf)) if ndf >= 1 else None
    return {"rates": [r.to_json() for r in rates], "pooled": pooled,
            "chi2": {"chi2": value, "ndf": max(ndf, 0), "p": p}}
