"""The pT-dependent working point: a score quantile fitted as a smooth function of the leading-jet pT.

Why a fit and not a cut per pT bin: a cut keeping 1% of the QCD of one bin rests on the few events of
that bin above it (about ten in the high-pT bins of a 20k-event sample), and such cuts did not hold
their 1% on independent QCD. A polynomial in ln pT fitted to ALL the background events (weighted
quantile regression) has a handful of parameters, so every pT's cut rests on thousands of events,
and the fit's covariance gives each bin's cut uncertainty as a pass-rate error.

The fit solves the quantile-regression estimating equations sum_i w_i x_i (1[s_i > cut(x_i)] - eff) = 0
(x = the basis of ``hltrun.modules.working_point.ln_pt_powers``): the weighted pass rate is ``eff`` overall
and uncorrelated with every power of ln pT. The step function is smoothed with a normal CDF of width
``h`` (convolution-smoothed quantile regression) so Newton's method converges in a few iterations;
``h`` is a tenth of the score distance between the ``eff`` and ``10 eff`` quantiles (wider only where
the sample is too small for that window to hold 20 events), small against the scale on which the
tail changes. A term of the polynomial needs ``MIN_EVENTS_PER_TERM`` effective events above the cut:
a small sample gets fewer terms (one: a constant cut). And a term must earn its place: while the
highest one is within ``SIGNIFICANCE`` sigma of zero the fit is repeated without it (a curvature the
sample cannot see only adds variance to every cut). Covariance: the sandwich J^-1 (sum w^2 x x^T eff (1 - eff)) J^-1 with
J = sum w x x^T phi(r/h)/h, the derivative of the equations.

Weights: the cut at a given pT is a CONDITIONAL quantile; it does not depend on how many events the
sample has at that pT, only on the relative weights of the events there. With the physical weights
of a flat-pTHat sample (genWeight ~ pTHat^-5) the 600 GeV events would outweigh the 1.5 TeV ones
thirty to one and the fit would follow the low-pT tail only (seen: 0.37 % instead of 1 % at 1.3-1.6
TeV in the fit sample itself). So the weights are renormalised in ``N_SLICES`` slices of leading pT
(equal event counts) to the slice's event count: relative weights within a slice are kept, every
event counts where its information is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from hltrun.modules.working_point import PtCutFunction, ln_pt_powers

N_TERMS = 3  # c0 + c1 x + c2 x^2: a curvature in ln pT, no more (checked by the closure test)
PT_REF_GEV = 1000.0  # x = 0 here: the coefficients' correlations stay small over 600 GeV - 2.5 TeV
RANGE_QUANTILES = (0.005, 0.995)  # the fit's pT range: where the background sample has events
N_SLICES = 50  # leading-pT slices (equal event counts) in which the fit's weights are renormalised
MIN_EVENTS_PER_TERM = 10  # effective events above the cut per polynomial term
SIGNIFICANCE = 2.0  # the highest term is kept only if it differs from zero by more than this many sigma
REFINE = np.array([1.0, 1 / 3, 1 / 9])  # fitting bandwidths, in units of h: see the module docstring


@dataclass(frozen=True)
class QuantileFit:
    """One fitted cut function with its covariance."""

    eff: float
    coefficients: np.ndarray
    covariance: np.ndarray
    pt_ref_gev: float
    pt_range_gev: tuple[float, float]
    bandwidth: float
    iterations: int

    def basis(self, leading_pt: np.ndarray) -> np.ndarray:
        return ln_pt_powers(leading_pt, self.pt_ref_gev, self.pt_range_gev, len(self.coefficients))

    def cuts_at(self, leading_pt: np.ndarray) -> np.ndarray:
        return self.basis(leading_pt) @ self.coefficients

    def to_json(self) -> dict:
        return {"eff": self.eff, "coefficients": self.coefficients.tolist(), "covariance": self.covariance.tolist(),
                "pt_ref_gev": self.pt_ref_gev, "pt_range_gev": list(self.pt_range_gev),
                "bandwidth": self.bandwidth, "iterations": self.iterations}


def information_weights(weights: np.ndarray, leading_pt: np.ndarray, n_slices: int = N_SLICES) -> np.ndarray:
    """The weights renormalised per leading-pT slice to the slice's event count (module docstring)."""
    w = np.asarray(weights, dtype=np.float64)
    inner = np.quantile(leading_pt, np.linspace(0, 1, n_slices + 1)[1:-1])
    slice_of = np.searchsorted(inner, leading_pt, side="right")
    total = np.bincount(slice_of, weights=w, minlength=n_slices)
    count = np.bincount(slice_of, minlength=n_slices)
    if not np.any(total > 0):  # every weight 0: the fit's weighted quantiles were 0/0 (NaN terms: 'cannot
        raise ValueError(_no_positive_slice(np.asarray(leading_pt), slice_of, total, count))  # convert NaN')
    return w * np.where(total > 0, count / np.where(total > 0, total, 1.0), 0.0)[slice_of]


def _no_positive_slice(leading_pt: np.ndarray, slice_of: np.ndarray, total: np.ndarray, count: np.ndarray) -> str:
    """Why ``information_weights`` has nothing to weight, naming the pT slice (the only one, or the one of lowest
    weight sum: the negative weights there) and its weight sum: a slice whose weights sum to 0 or less drops out of
    the fit, and here every slice does."""
    used = np.flatnonzero(count)
    low = used[np.argmin(total[used])]
    pt = leading_pt[slice_of == low]
    where = f"{pt.min():.0f}–{pt.max():.0f} GeV: {count[low]} events, weight sum {total[low]:.6g}"
    if used.size == 1:
        head = f"the {count[low]} events fitted lie in one leading-jet pT slice ({where})"
    else:
        head = (f"none of the {used.size} leading-jet pT slices of the {int(count.sum())} events fitted has a "
                f"positive weight sum ({int(np.count_nonzero(total[used] == 0))} sum to 0; the lowest, {where})")
    return (f"{head}: the fit weights each slice's events by their own sum, and a slice whose weights sum to 0 or "
            "less has none (negative generator weights cancel only over enough events)")


def fit_events(scores: np.ndarray, leading_pt: np.ndarray) -> np.ndarray:
    """The events a pT fit can use (a boolean mask): a finite score and a leading-jet pT above 0. Why not the
    others: an event without a scored jet (score -inf, leading pT 0) or with a NaN score passes no cut, and has
    no pT at which it could say where the cut lies. Kept, such an event sat at the fit's lowest pT (its 0 held
    there) and lowered the cut of the events really there; its -inf score made the smoothed loss +inf at every
    point, so the line search's safeguard never fired; and above 0.5 % of the sample its pT of 0 became the fit
    range's lower end (ln 0: the fit failed in LAPACK)."""
    s = np.asarray(scores, dtype=np.float64)
    pt = np.asarray(leading_pt, dtype=np.float64)
    return np.isfinite(s) & np.isfinite(pt) & (pt > 0)


def fit_range(leading_pt: np.ndarray) -> tuple[float, float]:
    """The pT range the fit covers (beyond it the cut is held constant): where the sample has events."""
    lo, hi = np.quantile(leading_pt, RANGE_QUANTILES)
    return float(lo), float(hi)


def fit_quantile(scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray, eff: float,
                 pt_range_gev: tuple[float, float], n_terms: int = N_TERMS,
                 pt_ref_gev: float = PT_REF_GEV, max_iter: int = 100) -> QuantileFit:
    """Fit cut(ln pT) keeping a weighted fraction ``eff`` of the events above it at every pT, with
    at most ``n_terms`` terms (fewer: MIN_EVENTS_PER_TERM, SIGNIFICANCE; weights: information_weights)."""
    return fit_quantiles(scores, weights, leading_pt, {"": eff}, pt_range_gev, n_terms, pt_ref_gev, max_iter)[""]


def fit_quantiles(scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray, effs: dict[str, float],
                  pt_range_gev: tuple[float, float], n_terms: int = N_TERMS,
                  pt_ref_gev: float = PT_REF_GEV, max_iter: int = 100) -> dict[str, QuantileFit]:
    """``fit_quantile`` at each efficiency of ``effs`` (key -> eff), the same fits: what does not depend on the
    efficiency (the information weights, the scores' weighted order, the basis) is computed once for all."""
    sample = _FitSample(scores, weights, leading_pt, pt_range_gev, pt_ref_gev)
    return {k: sample.fit(eff, n_terms, max_iter) for k, eff in effs.items()}


class _FitSample:
    """One sample's fit inputs that every efficiency shares (``fit_quantiles``)."""

    def __init__(self, scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray,
                 pt_range_gev: tuple[float, float], pt_ref_gev: float) -> None:
        self.s = np.asarray(scores, dtype=np.float64)
        w = information_weights(weights, leading_pt)
        self.w = w / w.sum()
        self.n_eff = 1.0 / np.sum(self.w ** 2)
        order = np.argsort(self.s)
        self.sorted, self.cum = self.s[order], np.cumsum(self.w[order])
        self.pt, self.pt_range_gev, self.pt_ref_gev = leading_pt, pt_range_gev, pt_ref_gev
        self._bases: dict[int, np.ndarray] = {}

    def basis(self, terms: int) -> np.ndarray:
        """The fit's basis with ``terms`` terms (``ln_pt_powers``), computed once."""
        if terms not in self._bases:
            self._bases[terms] = ln_pt_powers(self.pt, self.pt_ref_gev, self.pt_range_gev, terms)
        return self._bases[terms]

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """The weighted quantiles ``qs`` of the scores (the lowest score whose cumulative weight reaches q)."""
        last = len(self.sorted) - 1
        return [float(self.sorted[min(np.searchsorted(self.cum, q * self.cum[-1]), last)]) for q in qs]

    def fit(self, eff: float, n_terms: int, max_iter: int) -> QuantileFit:
        """``fit_quantile``'s fit at ``eff`` (module docstring: terms, bandwidth)."""
        s, w, n_eff = self.s, self.w, self.n_eff
        terms = int(np.clip(n_eff * eff // MIN_EVENTS_PER_TERM, 1, n_terms))
        q_lo, q_hi = self.quantiles((1 - min(max(10 * eff, 20 / n_eff), 0.5), 1 - eff))
        h = max(0.1 * (q_hi - q_lo), 1e-9)
        while True:
            fit = _fit(s, w, self.basis(terms), eff, h, q_hi, max_iter)
            top = fit[0][-1] / np.sqrt(fit[1][-1, -1]) if fit[1][-1, -1] > 0 else 0.0
            if terms == 1 or abs(top) > SIGNIFICANCE:
                return QuantileFit(eff, fit[0], fit[1], self.pt_ref_gev, self.pt_range_gev, h, fit[2])
            terms -= 1


def _fit(s: np.ndarray, w: np.ndarray, x: np.ndarray, eff: float, h: float, start: float,
         max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(coefficients, covariance, Newton iterations) of one fit with the basis ``x``."""
    beta = np.zeros(x.shape[1])
    beta[0] = start
    iterations = 0
    for width in h * REFINE:
        beta, it = _newton(beta, s, w, x, eff, width, max_iter)
        iterations += it
    _, jac = _equations(beta, s, w, x, eff, h)
    inv = np.linalg.pinv(jac)
    meat = (x * (w ** 2 * eff * (1 - eff))[:, None]).T @ x
    return beta, inv @ meat @ inv.T, iterations


def _newton(beta: np.ndarray, s: np.ndarray, w: np.ndarray, x: np.ndarray, eff: float, h: float,
            max_iter: int) -> tuple[np.ndarray, int]:
    """Newton's method on the smoothed equations, each step shortened until the (convex) smoothed
    check loss falls; stops when the steps vanish or no step lowers the loss any more. The loss at the
    step taken is the next iteration's starting loss (each is a pass over the sample: not taken twice)."""
    loss = _loss(beta, s, w, x, eff, h)
    for it in range(1, max_iter + 1):
        g, jac = _equations(beta, s, w, x, eff, h)
        step = np.linalg.lstsq(jac, g, rcond=None)[0]  # the equations fall as beta rises
        t = 1.0
        while (trial := _loss(beta + t * step, s, w, x, eff, h)) > loss:
            t *= 0.5
            if t < 1e-6:
                return beta, it
        beta, loss = beta + t * step, trial
        if np.max(np.abs(t * step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            return beta, it
    raise RuntimeError(f"quantile fit at eff {eff} did not converge in {max_iter} iterations")


def _equations(beta: np.ndarray, s: np.ndarray, w: np.ndarray, x: np.ndarray, eff: float,
               h: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed estimating equations sum w x (P(pass) - eff) and their Jacobian in beta."""
    r = (s - x @ beta) / h
    g = x.T @ (w * (normal_cdf(r) - eff))
    jac = (x * (w * normal_pdf(r) / h)[:, None]).T @ x
    return g, jac


def _loss(beta: np.ndarray, s: np.ndarray, w: np.ndarray, x: np.ndarray, eff: float, h: float) -> float:
    """The smoothed check loss whose gradient is minus the equations: sum w [u (tau - Phi(-u/h)) +
    h phi(u/h)], u = s - cut, tau = 1 - eff."""
    u = s - x @ beta
    return float(w @ (u * ((1 - eff) - normal_cdf(-u / h)) + h * normal_pdf(u / h)))


_PDF_C = np.sqrt(2 * np.pi)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF: scipy.stats' ``norm.cdf`` values (its ``ndtr``; +-inf and NaN too) without the
    argument checks and masking around it, which cost more than the function itself on a million events."""
    return ndtr(x)


def normal_pdf(x: np.ndarray) -> np.ndarray:
    """The standard normal density: scipy.stats' ``norm.pdf`` formula and values (0 at +-inf, NaN for NaN),
    without its argument checks and masking."""
    return np.exp(-x ** 2 / 2.0) / _PDF_C


def rate_covariance(fit: QuantileFit, scores: np.ndarray, weights: np.ndarray, leading_pt: np.ndarray,
                    bin_of_event: np.ndarray, n_bins: int) -> np.ndarray:
    """Covariance of the pass rates per bin that the fit's own uncertainty causes: G Cov(beta) G^T,
    with G the derivative of each bin's pass rate with respect to the coefficients (the score density
    at the cut, estimated on the sample given with the fit's smoothing width)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    x = fit.basis(leading_pt)
    dens = w * normal_pdf((s - x @ fit.coefficients) / fit.bandwidth) / fit.bandwidth
    grad = np.zeros((n_bins, x.shape[1]))
    for b in range(n_bins):
        sel = bin_of_event == b
        if w[sel].sum() > 0:
            grad[b] = -(dens[sel] @ x[sel]) / w[sel].sum()
    return grad @ fit.covariance @ grad.T


def as_card_entry(fits: dict[str, QuantileFit]) -> PtCutFunction:
    """The fits of every efficiency as the card's smooth ``vs_leading_jet_pt`` entry."""
    first = next(iter(fits.values()))
    return PtCutFunction(first.pt_ref_gev, first.pt_range_gev,
                         {k: tuple(float(c) for c in f.coefficients) for k, f in fits.items()})
