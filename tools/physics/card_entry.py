"""One model's ``thresholds.json`` entry from its background scores: the one function both
``hltcard`` (any model, tools/physics/card.py) and ``evaluate_models`` (the shipped models) call.

Why one function: the trigger filter reads these cuts; if the shipped models' cuts and a user's were
computed by two copies of the arithmetic, the two could drift apart (a different quantile rule, other
weights, another pT fit). Here is the only place that turns

    (event scores, event weights, leading-jet pT, jet scores, jet weights)

into ``{"bkg_eff_X": cut, "jet_bkg_eff_X": cut, "vs_leading_jet_pt": {...}}``:

* ``bkg_eff_X``: event-level cut (the filter's ``reduce`` of the scored jets' scores, ``max`` for the
  shipped path) keeping a weighted fraction X of the background above it
  (``eval_stats.weighted_cut``: halfway between the highest failing and the lowest passing score; with
  negative weights the loosest cut the target holds from on, for every tighter cut);
* ``jet_bkg_eff_X``: the same per jet, each jet carrying its event's weight;
* ``vs_leading_jet_pt``: the smooth pT-dependent cut (``pt_quantile_fit``, derived by
  ``eval_working_point.derive``) on ``pt_fit_sample`` (default: the same events).

What is *done* with too few events is policy, not arithmetic, and stays with the callers: every cut
comes with its statistics (``CutStat``: weighted pass rate on the sample it was derived from, its
binomial error, the effective number of events above it) and ``shortfalls`` lists the cuts resting on
fewer than a given number of effective events. Both tools refuse to write such a scalar cut by the
one rule here (``CardEntry.refusal``, ``--min-events-above``, checked by ``check_min_events_above``);
``hltcard`` omits a pT-dependent cut whose fit fails (saying why), and quotes no error for one with
fewer effective events above it than ``MIN_EFFECTIVE_ABOVE`` (``fit_above``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hltrun.framework.weights import ONE, exact_sum
from hltrun.tools.physics.eval_stats import CutScan, PassRate, effective_n, pass_rate

MIN_EFFECTIVE_ABOVE = 10.0  # effective background events above a cut: relative error on its rate ~ 1/sqrt(10) ~ 32 %


class CardRefused(Exception):
    """The card would hold a cut that cannot be trusted (hltcard's exit 2). Here, not in card.py, so that
    card_write (the read-back check) raises it without importing the command that imports it."""


@dataclass(frozen=True)
class CutStat:
    """A cut and what stands behind it on the sample it was derived from."""

    key: str  # "bkg_eff_1e-2", "jet_bkg_eff_1e-2"
    target: float  # the background efficiency asked for
    cut: float
    achieved: PassRate  # weighted fraction above the cut, its binomial error, events
    # how many unweighted events the weight above the cut is worth, (sum w)^2 / sum w^2 over the
    # events above it: the plain count above the cut for unit weights
    effective_above: float
    # negative weights: the loosest cut below ``cut`` where the fraction above also dips to the target before it
    # rises above it again (``eval_stats.looser_cut_at_target``); None where there is none
    looser_at_target: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "target": self.target, "cut": self.cut, **self.achieved.to_json(),
                "n_effective_above": self.effective_above, "looser_cut_at_target": self.looser_at_target}


@dataclass
class CardEntry:
    """A model's cuts (``scalar``, ``fits``) and their statistics (``stats``)."""

    scalar: dict[str, float]
    stats: dict[str, CutStat]
    fits: dict[str, Any] = field(default_factory=dict)  # eff key -> pt_quantile_fit.QuantileFit
    # eff key -> effective events above the fitted cut on the sample it was fitted on (its error means
    # nothing below MIN_EFFECTIVE_ABOVE: the covariance is a large-sample one)
    fit_above: dict[str, float] = field(default_factory=dict)

    def shortfalls(self, min_effective_above: float = MIN_EFFECTIVE_ABOVE) -> dict[str, str]:
        """Cut key -> why it cannot be trusted: not finite, or fewer than ``min_effective_above``
        effective background events above it."""
        out = {}
        for key, cut in self.scalar.items():
            st = self.stats[key]
            if not np.isfinite(cut):
                out[key] = f"the cut is {cut} (the background sample has no usable score)"
            elif st.effective_above < min_effective_above:
                out[key] = (f"the cut rests on {st.effective_above:.1f} effective background events above it "
                            f"({st.achieved.n_pass} of {st.achieved.n_events} events; at least "
                            f"{min_effective_above:g} needed)")
        return out

    def refusal(self, min_effective_above: float, remedy: str) -> str | None:
        """The one line a tool refuses to write this entry with (the first cut that cannot be trusted,
        and ``remedy``: what the user can do), or None when every scalar cut stands."""
        short = self.shortfalls(min_effective_above)
        if not short:
            return None
        key = next(iter(short))
        return f"{key}: {short[key]}; not written ({remedy})"

    def pt_entry(self, keys: list[str] | None = None) -> dict[str, Any] | None:
        """The ``vs_leading_jet_pt`` entry (smooth form) for ``keys`` (default: every fitted one)."""
        from hltrun.tools.physics.pt_quantile_fit import as_card_entry

        fits = {k: f for k, f in self.fits.items() if keys is None or k in keys}
        return as_card_entry(fits).to_json() if fits else None

    def to_json(self, scalar_keys: list[str] | None = None, pt_keys: list[str] | None = None) -> dict[str, Any]:
        """The thresholds.json entry (``scalar_keys``/``pt_keys``: only those; default all)."""
        return entry_json({k: v for k, v in self.scalar.items() if scalar_keys is None or k in scalar_keys},
                          self.pt_entry(pt_keys) if self.fits else None)


def entry_json(scalar: dict[str, float], pt_cuts: dict[str, Any] | None) -> dict[str, Any]:
    """thresholds.json's form of one model: the scalar cuts, then ``vs_leading_jet_pt`` when there is one."""
    return {**scalar, **({"vs_leading_jet_pt": pt_cuts} if pt_cuts is not None else {})}


def scalar_cuts(event_scores: np.ndarray, weights: np.ndarray | None, jet_scores: np.ndarray,
                jet_weights: np.ndarray | None, effs: dict[str, float]) -> tuple[dict[str, float], dict[str, CutStat]]:
    """Event-level ``bkg_eff_X`` then per-jet ``jet_bkg_eff_X`` cuts, with their statistics: one ``CutScan`` of
    the events and one of the jets serve every efficiency (its cut and the looser one)."""
    cuts: dict[str, float] = {}
    stats: dict[str, CutStat] = {}
    for prefix, scores, w in (("", event_scores, weights), ("jet_", jet_scores, jet_weights)):
        scan = CutScan(scores, w)
        for k, e in effs.items():
            key = prefix + k
            cuts[key] = scan.cut(e)
            stats[key] = CutStat(key, e, cuts[key], pass_rate(scores, w, cuts[key]),
                                 _effective_above(scores, w, cuts[key]), scan.looser_cut(e))
    return cuts, stats


def weight_sum_refusal(weights: np.ndarray | None, jet_weights: np.ndarray | None, branch: str) -> str | None:
    """Why no background efficiency is defined on a sample (its events', or its scored jets', weights sum to 0 or
    less: a fraction of a total that is not positive), in one line for both tools, or None. The sums are exact
    (``framework.weights``): a float sum of weights that cancel (+-1e100) lost the weights they absorbed."""
    for what, w in (("events", weights), ("scored jets", jet_weights)):
        total = exact_sum(w) if w is not None and len(w) else ONE
        if not total > 0:
            return (f"the {branch} weights of the background's {len(w)} {what} sum to {total / ONE:.6g}: no "
                    "background efficiency is defined for a sample whose weights sum to 0 or less (negative NLO "
                    "weights cancel only over enough events: give more events, or the complete sample)")
    return None


def check_min_events_above(value: float) -> str | None:
    """Why ``--min-events-above value`` is unusable (one line, both tools'), or None."""
    if np.isfinite(value) and value >= 0:
        return None
    return (f"--min-events-above {value:g}: expected a finite number, at least 0 (0 accepts every finite cut; "
            "an effective event count is never negative)")


def _effective_above(scores: np.ndarray, weights: np.ndarray | None, cut: float | np.ndarray) -> float:
    """(sum w)^2 / sum w^2 over the events above ``cut`` (a scalar, or one cut per event): ``effective_n``'s exact
    sums, as the cut's ``n_effective`` beside it (a float sum of weights +-1e100 said 0 where they cancel)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(s.size) if weights is None else np.asarray(weights, dtype=np.float64)
    above = w[s > cut]  # NaN scores never pass
    return effective_n(above) if np.any(above) else 0.0


def card_entry(event_scores: np.ndarray, weights: np.ndarray | None, leading_pt: np.ndarray,
               jet_scores: np.ndarray, jet_weights: np.ndarray | None, effs: dict[str, float],
               pt_fit_sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               fit_pt: bool = True) -> CardEntry:
    """The model's card entry from its background (module docstring). ``pt_fit_sample``: (event
    scores, weights, leading pT) the pT-dependent cut is fitted on (default: the events given);
    ``fit_pt=False``: scalar cuts only (``with_pt_fits`` adds the fits to them later). Event scores of
    events without a scored jet are -inf or NaN (never pass; they count in every denominator)."""
    cuts, stats = scalar_cuts(event_scores, weights, jet_scores, jet_weights, effs)
    entry = CardEntry(cuts, stats)
    return with_pt_fits(entry, event_scores, weights, leading_pt, effs, pt_fit_sample) if fit_pt else entry


def with_pt_fits(entry: CardEntry, event_scores: np.ndarray, weights: np.ndarray | None, leading_pt: np.ndarray,
                 effs: dict[str, float],
                 pt_fit_sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> CardEntry:
    """``entry`` (scalar cuts only) with its pT-dependent cuts fitted (``card_entry``'s arguments): a new entry,
    so that a fit that raises leaves ``entry`` as it was. Why apart: both tools check the scalar cuts before they
    fit (no fit on a sample that cannot hold the cuts), and computed those cuts a second time to get the fits."""
    from hltrun.tools.physics.eval_working_point import derive

    out = CardEntry(entry.scalar, entry.stats)
    s, w, pt = pt_fit_sample if pt_fit_sample is not None else (
        event_scores, np.ones(len(event_scores)) if weights is None else weights, leading_pt)
    if len(s):
        out.fits = derive(s, w, pt, effs)
        out.fit_above = {k: _effective_above(s, w, f.cuts_at(pt)) for k, f in out.fits.items()}
    return out
