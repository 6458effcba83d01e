"""Weighted statistics of the model evaluation: ROC/AUC, score cuts at a background efficiency,
pass rates with their errors, per leading-jet pT bin.

Why weighted: the QCD test sample may be generated flat in pTHat (``genWeight`` = the physical
weight), so every background number is a weighted one; with unit weights all of them reduce to the
plain counts. A NaN score (undefined baseline, non-finite input) counts as -inf: it never passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hltrun.framework.weights import ONE, W_BITS, exact_sums, whole_units
from hltrun.modules.working_point import bin_index


def _clean(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(s), -np.inf, s)


def _weights(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if w is None else np.asarray(w, dtype=np.float64)


def event_max(scores: np.ndarray, event_index: np.ndarray, n_events: int | None = None) -> np.ndarray:
    """Per-event maximum of the jet scores (the event fires if any leading jet is anomalous)."""
    n = int(event_index.max() + 1) if n_events is None else n_events
    out = np.full(n, -np.inf)
    np.maximum.at(out, event_index, _clean(scores))
    return out


def _cumulative(scores: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(scores, kind="stable")
    return scores[order], np.concatenate([[0.0], np.cumsum(w[order])])


def roc(bkg: np.ndarray, sig: np.ndarray, w_bkg: np.ndarray | None = None,
        w_sig: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted ROC (background eff, signal eff) for 'score > cut' at every distinct score, and the
    AUC = P(score_sig > score_bkg) + P(equal) / 2, each event counted with its weight."""
    b, s = _clean(bkg), _clean(sig)
    wb, ws = _weights(w_bkg, len(b)), _weights(w_sig, len(s))
    b_sorted, cwb = _cumulative(b, wb)
    s_sorted, cws = _cumulative(s, ws)
    tot_b, tot_s = cwb[-1], cws[-1]
    cuts = np.unique(np.concatenate([b, s]))[::-1]
    fpr = (tot_b - cwb[np.searchsorted(b_sorted, cuts, side="right")]) / tot_b
    tpr = (tot_s - cws[np.searchsorted(s_sorted, cuts, side="right")]) / tot_s
    below = cwb[np.searchsorted(b_sorted, s, side="left")]
    equal = cwb[np.searchsorted(b_sorted, s, side="right")] - below
    auc = float(np.sum(ws * (below + 0.5 * equal)) / (tot_s * tot_b))
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), auc


def auc_error(auc: float, n_sig: float, n_bkg: float) -> float:
    """Statistical error of an AUC (Hanley & McNeil 1982), with effective event counts for weighted
    samples: SE^2 = [A(1-A) + (n_s - 1)(Q1 - A^2) + (n_b - 1)(Q2 - A^2)] / (n_s n_b),
    Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A)."""
    if n_sig <= 0 or n_bkg <= 0:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_sig - 1) * (q1 - auc ** 2) + (n_bkg - 1) * (q2 - auc ** 2)) / (n_sig * n_bkg)
    return float(np.sqrt(max(var, 0.0)))


def _exact_sums(weights: np.ndarray) -> tuple[int, int]:
    """(sum w, sum w^2) of ``weights`` in fixed point, exactly (``framework.weights``, as the rates are summed):
    a float sum of weights that cancel (+-1e100 among weights of order 1) lost the weights they absorbed. In numpy
    (``exact_sums``): hltcard takes some 130 such sums of its background, an event loop's ~3 us a weight each."""
    return exact_sums(weights)


def effective_n(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: how many unweighted events a weighted sample is worth; one correctly rounded ratio
    of exact sums (0 for no event, NaN where every weight is 0)."""
    if not np.size(weights):
        return 0.0
    sw, sw2 = _exact_sums(weights)
    return _ratio(sw * sw, sw2) if sw2 else float("nan")  # both in units of 2^-2 W_BITS


class CutScan:
    """One sample's weighted fraction above every distinct score, computed once: the cuts at any number of
    efficiencies (``cut``, ``looser_cut``) are then a search each. Why: the scan sorts the sample and sums its
    weights exactly (Python integers per event), which is what a cut costs; hltcard and evaluate_models ask one
    sample for two cuts at each of several efficiencies, and made a scan for each (16 scans of 1,000,000 events
    for two efficiencies, ~2 s each, where the event and jet scores need one each).

    Tied scores pass or fail together. Each fraction is one correctly rounded ratio of exact sums (weights in
    fixed point, ``framework.weights``): weights all equal to c give the unweighted k / n to the bit, where the
    float total minus a float running sum was a few ulps off and moved the cut by an event when the target was
    exactly a whole number of events (double weights 0.7, 10,000 events: 99 above a 1 % cut, not 100). A sample
    whose weights sum to 0 or less has no fraction of its total: a ValueError (negative NLO weights cancel only
    over enough events)."""

    def __init__(self, scores: np.ndarray, weights: np.ndarray | None) -> None:
        self.values, self.above = _above_by_score(scores, weights)

    def cut(self, eff: float) -> float:
        """``weighted_cut``'s cut at ``eff`` (its docstring): NaN for an empty sample."""
        if not self.values.size:
            return float("nan")
        return _cut_at(self.values, _first_holding(self.above, _limit(eff)))

    def looser_cut(self, eff: float) -> float | None:
        """``looser_cut_at_target``'s cut at ``eff`` (its docstring), or None."""
        if not self.values.size:
            return None
        limit = _limit(eff)
        earlier = np.flatnonzero(self.above[:_first_holding(self.above, limit)] <= limit)
        return _cut_at(self.values, int(earlier[0])) if earlier.size else None


def _limit(eff: float) -> float:
    """The largest fraction ``eff`` allows above a cut (a relative 1e-12 for the rounding of the fractions)."""
    return eff * (1 + 1e-12)


def _above_by_score(scores: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct scores ascending, the fraction of the sample's weight strictly above each): ``CutScan``'s."""
    s = _clean(scores)
    if not s.size:
        return s, s
    values, inverse = np.unique(s, return_inverse=True)
    inverse = inverse.reshape(-1)
    if weights is None:  # counts: exact in int64, each fraction one rounded division
        below = np.cumsum(np.bincount(inverse, minlength=values.size))
        return values, (s.size - below) / s.size
    order = np.argsort(inverse, kind="stable")
    exact, unit = whole_units(np.asarray(weights, np.float64).reshape(-1)[order])  # fixed point / 2^(unit + W_BITS)
    below = np.cumsum(np.add.reduceat(np.array(exact, dtype=object),
                                      np.searchsorted(inverse[order], np.arange(values.size))))
    total = below[-1]
    if not total > 0:
        raise ValueError(f"the weights of the {s.size} events sum to {(total << (unit + W_BITS)) / ONE:.6g}, not a "
                         "positive number: no fraction of the sample is defined")
    return values, np.array([(total - b) / total for b in below.tolist()], np.float64)


def weighted_cut(scores: np.ndarray, weights: np.ndarray | None, eff: float) -> float:
    """Score cut keeping a weighted fraction of at most ``eff`` above it, at this cut and at every tighter one.

    With negative weights (NLO) the weight above a cut does not fall monotonically as the cut rises: it may reach
    the target, then rise above it again at a tighter cut, so several cuts (or score ranges) "give" ``eff``. The
    cut is the loosest one the target holds from on, for every tighter cut: a rate budget is an upper bound, and
    a trigger whose threshold is raised must not gain rate. A looser cut where the fraction only dips to the
    target is a fluctuation of the negative weights (``looser_cut_at_target`` finds it, for the card to say).
    With weights >= 0 this is the lowest cut with at most ``eff`` above it, as ever.

    The cut lies halfway between the highest failing and the lowest passing score, so float32/64
    round trips of the scores do not move events across it. NaN for an empty sample; the largest
    score (nothing passes) when even the top event weighs more than ``eff`` of the sample; a ValueError
    when the weights sum to 0 or less. Several cuts of one sample: ``CutScan`` (one scan for all)."""
    return CutScan(scores, weights).cut(eff)


def looser_cut_at_target(scores: np.ndarray, weights: np.ndarray | None, eff: float) -> float | None:
    """The loosest cut below ``weighted_cut``'s at which the weighted fraction above is also at most ``eff``
    (it rises above ``eff`` again at a tighter cut: negative weights), or None where there is none (always
    with weights >= 0)."""
    return CutScan(scores, weights).looser_cut(eff)


def _first_holding(above: np.ndarray, limit: float) -> int:
    """The first index from which ``above <= limit`` holds to the end (the last always: nothing above)."""
    over = np.flatnonzero(above > limit)
    return int(over[-1]) + 1 if over.size else 0


def _cut_at(values: np.ndarray, k: int) -> float:
    """Halfway between distinct score ``k`` (the highest failing) and the next (the lowest passing)."""
    return float(values[k] if k == values.size - 1 else 0.5 * (values[k] + values[k + 1]))


@dataclass
class PassRate:
    """Weighted fraction of events above a cut and its statistical error.

    error^2 = [sum_pass w^2 (1 - p)^2 + sum_fail w^2 p^2] / W^2, the binomial error with weights."""

    rate: float
    error: float
    n_events: int
    n_pass: int
    n_effective: float  # (sum w)^2 / sum w^2: how many unweighted events the bin is worth

    def to_json(self) -> dict[str, float]:
        return self.__dict__.copy()


def pass_rate(scores: np.ndarray, weights: np.ndarray | None, cut: float | np.ndarray) -> PassRate:
    """Weighted fraction of ``scores`` above ``cut`` (a scalar, or one cut per event). The rate, its error and
    the effective events are each one correctly rounded ratio of exact sums (``_exact_sums``), as the cut was
    found (``weighted_cut``): with weights +-1e100 that cancel, float sums gave a rate of 1.9 % at a cut made for
    1 % (the total lost the other weights), or NaN where the float total came out 0."""
    s = _clean(scores)
    passed = s > cut
    if weights is None:  # counts: (sum w, sum w^2) = (k, k), exact as integers
        k, n = int(passed.sum()), int(s.size)
        (pw, pw2), (fw, fw2) = (k, k), (n - k, n - k)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        (pw, pw2), (fw, fw2) = _exact_sums(w[passed]), _exact_sums(w[~passed])
    tot = pw + fw
    if s.size == 0 or tot <= 0:
        return PassRate(float("nan"), float("nan"), int(s.size), 0, 0.0)
    # error^2 = [sum_pass w^2 (1 - p)^2 + sum_fail w^2 p^2] / W^2 with p = pw / W, 1 - p = fw / W: one ratio
    err2 = _ratio(pw2 * fw * fw + fw2 * pw * pw, tot ** 4)
    return PassRate(_ratio(pw, tot), float(np.sqrt(err2)), int(s.size), int(passed.sum()),
                    _ratio(tot * tot, pw2 + fw2))


def _ratio(num: int, den: int) -> float:
    """``num / den`` (den > 0) correctly rounded, or +-inf past a double's range (weights of 1e100 cancelling
    to a total of 1e-300), as the float arithmetic it replaces gave, not an OverflowError."""
    try:
        return num / den
    except OverflowError:
        return float("inf") if num > 0 else float("-inf")


def percent_text(r: Mapping[str, Any], fmt: str = ".3g", err: bool = True, unit: str = "") -> str:
    """A pass rate (``PassRate.to_json()``) in percent with its error. Where nothing or everything passed,
    the binomial error is 0 and '0 ± 0' would read as a rate known exactly, however few the events: the
    count it rests on instead ('0 (0 of 105)'), as the model card has always said for a bin passing nothing."""
    n, k = int(r["n_events"]), int(r["n_pass"])
    if n == 0:
        return "no events"
    if k in (0, n):
        return f"{100 if k else 0}{unit} ({k} of {n})"
    return format(100 * r["rate"], fmt) + (f" ± {format(100 * r['error'], fmt)}" if err else "") + unit


def effective_above(r: Mapping[str, Any]) -> float:
    """The effective events above the cut, (sum_pass w)^2 / sum_pass w^2, from a ``PassRate.to_json()`` alone:
    its error^2 W^2 = sum_pass w^2 (1 - p)^2 + sum_fail w^2 p^2 and sum w^2 = W^2 / n_effective give
    sum_pass w^2 / W^2 = (error^2 - p^2 / n_effective) / (1 - 2p), exactly, except at p = 1/2 where the
    error does not determine it (NaN). The plain count above the cut for unit weights. For metrics written
    before the count was stored beside each cut."""
    p, err, n_eff = r["rate"], r["error"], r["n_effective"]
    if not r["n_pass"]:
        return 0.0
    denominator = err * err - p * p / n_eff
    return float(p * p * (1 - 2 * p) / denominator) if denominator else float("nan")


def sample_pt_edges(leading_pt: np.ndarray, n_bins: int = 6) -> list[float]:
    """Lower edges of ``n_bins`` leading-jet pT bins holding about equal shares of the sample's events
    (unweighted: a bin's statistics are its events), at two significant figures; fewer where the rounded
    quantiles coincide. Why from the sample: bins made for one sample (600-1600 GeV) put every event of a
    softer or harder one into one bin, where a chi-square of the bins against one rate tests nothing and
    reads "flat". Events without a finite positive pT (no jet) are left out of the quantiles."""
    pt = np.asarray(leading_pt, dtype=np.float64)
    pt = pt[np.isfinite(pt) & (pt > 0)]
    if not pt.size:
        return [0.0]
    return sorted({_two_figures(float(q)) for q in np.quantile(pt, np.arange(n_bins) / n_bins)})


def _two_figures(v: float) -> float:
    """``v`` rounded to two significant figures (653.2 -> 650, 1234 -> 1200): edges a reader can quote."""
    step = 10.0 ** (np.floor(np.log10(v)) - 1)
    return float(np.round(v / step) * step)


def binned_pass_rates(scores: np.ndarray, weights: np.ndarray | None, leading_pt: np.ndarray,
                      edges: list[float], cut: float | np.ndarray) -> list[PassRate]:
    """Pass rate in each leading-jet pT bin (hltrun.modules.working_point.bin_index: the trigger's own bins;
    the first bin also takes events below its lower edge, the last has no upper edge). ``cut`` is a
    scalar or one cut per event (a pT-dependent cut evaluated at each event's leading jet)."""
    s, w, idx = _clean(scores), _weights(weights, len(scores)), bin_index(edges, leading_pt)
    cuts = np.broadcast_to(np.asarray(cut, dtype=np.float64), s.shape)
    return [pass_rate(s[idx == i], w[idx == i], cuts[idx == i]) for i in range(len(edges))]
