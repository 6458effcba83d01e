"""hltcard's cuts from one scan of each sample (tools/physics/eval_stats.py ``CutScan``, card_entry.py): the
event and the jet scores are each sorted and their weights summed exactly once, whatever the number of
efficiencies, and the cuts are the ones each efficiency's own scan gives. A generated weighted background
(log-normal weights, 10 % negative) stands in for the path's scores, so no model runs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hltrun.tools.physics import card_run, eval_stats
from hltrun.tools.physics.card import build_parser, compute
from hltrun.tools.physics.card_entry import card_entry
from hltrun.tools.physics.card_run import PathPlan, ScoredFile
from hltrun.tools.physics.eval_stats import looser_cut_at_target, weighted_cut

EFFS = {"bkg_eff_1e-2": 1e-2, "bkg_eff_5e-2": 5e-2}


def background(n: int = 4000, seed: int = 39) -> ScoredFile:
    """Two scored jets an event, scores rounded (ties), weights log-normal with a tenth negative."""
    rng = np.random.default_rng(seed)
    pt = np.exp(rng.uniform(np.log(500.0), np.log(2500.0), (n, 2)))
    jets = np.round(rng.exponential(1.0, (n, 2)) * (pt / 1000.0), 2)
    w = rng.lognormal(0.0, 1.0, n) * np.where(rng.random(n) < 0.1, -1.0, 1.0)
    return ScoredFile(Path("bkg.root"), jets.max(axis=1), pt.max(axis=1), w, True, jets.reshape(-1),
                      np.repeat(np.arange(n), 2), np.zeros((n, 3), np.uint64))


def exact_cuts(scores: np.ndarray, weights: np.ndarray, eff: float) -> tuple[float, float | None]:
    """(cut, looser cut) by their definitions, with exact fractions: the lowest distinct score from which every
    distinct score has at most eff of the weight above it, halfway to the next; the lowest before it that also
    has at most eff above, or None."""
    values = np.unique(scores)
    total = sum(Fraction(x) for x in weights)
    limit = Fraction(eff * (1 + 1e-12))
    holds = [sum((Fraction(x) for x in weights[scores > v]), Fraction(0)) / total <= limit for v in values]
    first = next(i for i in range(len(values)) if all(holds[i:]))
    mid = [float(v if i == len(values) - 1 else 0.5 * (v + values[i + 1])) for i, v in enumerate(values)]
    looser = next((mid[i] for i in range(first) if holds[i]), None)
    return mid[first], looser


def test_one_scan_gives_every_efficiency_its_cuts():
    from hltrun.tools.physics.eval_stats import CutScan

    b = background(600)
    scan = CutScan(b.event_score, b.weight)
    for eff in (1e-2, 3e-2, 5e-2, 0.2, 0.5):
        cut, looser = exact_cuts(b.event_score, b.weight, eff)
        assert scan.cut(eff) == cut == weighted_cut(b.event_score, b.weight, eff), eff
        assert scan.looser_cut(eff) == looser == looser_cut_at_target(b.event_score, b.weight, eff), eff
    empty = CutScan(np.zeros(0), np.zeros(0))
    assert np.isnan(empty.cut(0.01)) and empty.looser_cut(0.01) is None
    with pytest.raises(ValueError, match="not a positive number"):
        CutScan(np.arange(3.0), np.array([1.0, -2.0, 0.5]))


@pytest.fixture
def scans(monkeypatch) -> list[int]:
    """How many times a sample is scanned (sorted and its weights summed exactly)."""
    calls: list[int] = []
    real = eval_stats._above_by_score

    def counted(scores, *rest):  # noqa: ANN001, ANN202 - any signature it had
        calls.append(len(scores))
        return real(scores, *rest)

    monkeypatch.setattr(eval_stats, "_above_by_score", counted)
    return calls


def test_hltcard_scans_the_events_and_the_jets_once(monkeypatch, scans):
    """Two efficiencies: one scan of the events and one of the jets (there were 16: a cut and a looser cut per
    efficiency, events and jets, and every scalar cut computed again with the pT fit), and the cuts, their
    looser cuts and their statistics are those each computed on its own."""
    b = background()
    plan = PathPlan("configs/path.yaml", "p", ["vae"], "vae", "max", [], "auto")
    monkeypatch.setattr(card_run, "score_files", lambda *a, **k: (b, plan))
    args = build_parser().parse_args(["m.onnx", "--background", "bkg.root", "--bkg-eff", "1e-2", "5e-2",
                                      "--input-rate-hz", "1000", "--min-events-above", "0"])
    entry = compute(args)["entry"]
    assert sorted(scans) == [b.n_events, len(b.jet_score)]
    for prefix, s, w in (("", b.event_score, b.weight), ("jet_", b.jet_score, b.jet_weight)):
        for k, eff in EFFS.items():
            st = entry.stats[prefix + k]
            assert entry.scalar[prefix + k] == st.cut == weighted_cut(s, w, eff)
            assert st.looser_at_target == looser_cut_at_target(s, w, eff)
            assert st.achieved == eval_stats.pass_rate(s, w, st.cut)
    assert set(entry.fits) == set(EFFS)


def test_fits_added_later_are_the_entry_in_one_go():
    """``with_pt_fits`` on the scalar entry is ``card_entry`` with the fit; a fit that fails leaves the scalar
    entry as it was (hltcard then writes the scalar cuts alone)."""
    from hltrun.tools.physics.card_entry import with_pt_fits

    b = background()
    sample = (b.event_score, b.weight, b.leading_pt, b.jet_score, b.jet_weight, EFFS)
    scalar = card_entry(*sample, fit_pt=False)
    later, whole = with_pt_fits(scalar, *sample[:3], EFFS), card_entry(*sample)
    assert later.scalar == whole.scalar and later.stats == whole.stats and later.fit_above == whole.fit_above
    assert later.to_json() == whole.to_json() and not scalar.fits
    with pytest.raises(ValueError), np.errstate(invalid="ignore"):  # weights of 0: no fraction to fit
        with_pt_fits(scalar, sample[0], np.zeros(b.n_events), sample[2], EFFS)
    # no event with a leading-jet pT (pt_quantile_fit.fit_events): nothing fitted, the scalar entry as it was
    assert not with_pt_fits(scalar, *sample[:2], np.full(b.n_events, np.nan), EFFS).fits
    assert not scalar.fits and not scalar.fit_above
