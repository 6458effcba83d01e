"""The RateReport's weighted figures are exact and physical: the sums of weights are fixed-point integers (as the
score histograms'), so weights all equal give the unweighted rate to the bit and 1 stream, 4 streams and Dask
units give the same bits; a weighted rate's 68 % interval stays within [0, input rate] where no negative weight
could take the fraction outside it, and stays signed where one could."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.rates import Tally, TriggerPatterns, menu_rates, rate, rates_per_lumi
from hltrun.modules.rootio import write_nanoaod
from tests.test_weighted_scores import ROOT, run_job

INPUT_HZ = 100_000.0


def _record(events: list[tuple[int, float]], paths: tuple[str, ...] = ("A", "B"), lumis: int = 1) -> TriggerPatterns:
    """(pattern, weight) per event, spread round-robin over ``lumis`` lumi sections."""
    patterns = TriggerPatterns(list(paths))
    for i, (pattern, weight) in enumerate(events):
        patterns.record(1, 1 + i % lumis, pattern, weight)
    return patterns


# ----------------------------------------------------------------------------- exact sums


@pytest.mark.parametrize("weight", [0.1, 0.7, 1e30, 1e-20, 2.5e-3, float(np.float32(0.1))])
def test_weights_all_equal_give_the_unweighted_rates_to_the_bit(weight):
    """Every event of weight c: each fraction is k / n and each rate the unweighted one, exactly. Float sums
    gave 0.009999999999999704 for 16 of 1600 at c = 0.7, and 0.0812499999999998 for 130 of 1600 at 0.1."""
    for k, n in ((16, 1600), (10, 1000), (7, 1300), (130, 1600), (1, 3)):
        events = [(0b01 if i < k else 0b10, weight) for i in range(n)]
        weighted = menu_rates(_record(events, lumis=3), INPUT_HZ)
        plain = menu_rates(_record([(p, 1.0) for p, _ in events], lumis=3), INPUT_HZ)
        for got, want in ((weighted.path["A"], plain.path["A"]), (weighted.unique["B"], plain.unique["B"]),
                          (weighted.total, plain.total)):
            assert got.fraction == want.fraction and got.hz == want.hz, (weight, k, n)
            assert got.error_hz == pytest.approx(want.error_hz, rel=1e-12)  # Sumw2 of equal weights: binomial
        assert weighted.path["A"].fraction == k / n
        for key, lumi in rates_per_lumi(_record(events, lumis=3), INPUT_HZ).items():
            assert lumi.path["A"].hz == rates_per_lumi(_record([(p, 1.0) for p, _ in events], lumis=3),
                                                       INPUT_HZ)[key].path["A"].hz


def test_unit_weights_record_nothing_but_the_counts():
    """A sample without weights (or of weights 1) keeps plain counts: no fixed-point work, the figures of
    before (the unweighted rate and its Clopper-Pearson interval)."""
    from hltrun.framework.weights import ExactTally, rate_tallies

    patterns = _record([(0b01, 1.0)] * 30 + [(0b10, 1.0)] * 70)
    assert all(t.w == 0 and t.w2 == 0 and t.negative == 0 and not t.weighted
               for table in patterns.by_lumi.values() for t in table.values())
    accepted, total = rate_tallies(ExactTally(30), ExactTally(100))
    assert (accepted.n, accepted.w, accepted.w2, total.n, total.w, total.w2) == (30, 30.0, 30.0, 100, 100.0, 100.0)
    r = menu_rates(patterns, INPUT_HZ).path["A"]
    assert r.hz == 0.3 * INPUT_HZ and r.low_hz < r.hz - r.error_hz  # Clopper-Pearson, not hz ± error


def test_weighted_rates_are_the_same_bits_in_any_order_and_split():
    """Weights over six decades, some negative: recorded in any order, split over streams and merged in any
    order, the rates are the same bits (float sums differed in the last digits with the order)."""
    rng = np.random.default_rng(7)
    n = 3000
    w = np.exp(rng.normal(0.0, 3.0, n)) * np.where(rng.random(n) < 0.1, -1.0, 1.0)
    bits = (rng.random(n) < 0.2).astype(int) | (rng.random(n) < 0.4).astype(int) << 1
    events = list(zip(bits.tolist(), w.tolist()))
    want = menu_rates(_record(events, lumis=4), INPUT_HZ)
    want_lumi = rates_per_lumi(_record(events, lumis=4), INPUT_HZ)
    for seed in range(4):
        order = np.random.default_rng(seed).permutation(n)
        parts = [TriggerPatterns(["A", "B"]) for _ in range(3)]
        for j, i in enumerate(order):
            parts[j % 3].record(1, 1 + int(i) % 4, *events[i])
        merged = parts[2].merge(parts[0]).merge(parts[1]) if seed % 2 else parts[0].merge(parts[1].merge(parts[2]))
        assert menu_rates(merged, INPUT_HZ) == want
        assert rates_per_lumi(merged, INPUT_HZ) == want_lumi


# ----------------------------------------------------------------------------- the interval


def test_a_weighted_interval_stays_physical_with_positive_weights():
    """One accepted event of weight 1 beside a rejected one of 30: 2.44 ± 2.98 kHz, whose interval read from
    below 0; every weight positive, so the fraction cannot be negative: the interval starts at 0. The mirror
    (every event but a light one accepted) stops at the input rate. ``error_hz`` stays the Sumw2 figure."""
    few = menu_rates(_record([(0b01, 1.0), (0b10, 30.0)] + [(0b10, 1.0)] * 10), INPUT_HZ).path["A"]
    assert few.hz - few.error_hz < 0 and few.low_hz == 0.0 and few.high_hz == few.hz + few.error_hz
    assert few.asymmetric and str(few).startswith(f"{few.hz:.3g} +")
    most = menu_rates(_record([(0b01, 1.0)] * 10 + [(0b01, 30.0), (0b10, 1.0)]), INPUT_HZ).path["A"]
    assert most.hz + most.error_hz > INPUT_HZ and most.high_hz == INPUT_HZ and most.low_hz == most.hz - most.error_hz


def test_a_weighted_interval_stays_signed_where_negative_weights_allow_it():
    """A negative weight among the accepted events: the estimate itself may be below 0, so its interval is
    the signed hz ± error; one among the rejected events: the rate may exceed the input rate, likewise."""
    signed = menu_rates(_record([(0b01, 1.0), (0b01, -0.5), (0b10, 30.0)] + [(0b10, 1.0)] * 10), INPUT_HZ)
    r = signed.path["A"]
    assert r.low_hz == r.hz - r.error_hz < 0
    below = menu_rates(_record([(0b01, -1.0), (0b10, 30.0)] + [(0b10, 1.0)] * 10), INPUT_HZ).path["A"]
    assert below.hz < 0 and below.low_hz == below.hz - below.error_hz
    above = menu_rates(_record([(0b01, 1.0)] * 10 + [(0b01, 30.0), (0b10, -1.0), (0b10, 1.0)]), INPUT_HZ).path["A"]
    assert above.high_hz == above.hz + above.error_hz > INPUT_HZ
    # path B took no negative weight (its foot may be clipped), rejected one (its top is not)
    b = signed.path["B"]
    assert b.low_hz == max(b.hz - b.error_hz, 0.0) and b.high_hz == b.hz + b.error_hz


def test_tallies_without_a_negative_count_keep_the_signed_interval():
    """``rate`` on figures whose negative weights were not counted (a score histogram's, the turn-on's) keeps
    the signed interval: clipping needs to know that no weight was negative."""
    r = rate(Tally(1, 1.0, 1.0), Tally(12, 41.0, 910.0), INPUT_HZ)
    assert r.low_hz == r.hz - r.error_hz < 0


def test_the_score_histograms_interval_is_clipped_as_the_rates():
    """The filter's fraction above the cut is the rate's fraction: its interval is clipped the same way (its
    summary counts the events of negative weight), and stays signed with a negative weight passed."""
    from hltrun.framework.score_histogram import ScoreHistogram, from_counters

    settings = {"threshold": 3.0, "score_hist_of": "score"}
    for weights in ([1.0, 30.0] + [1.0] * 10, [-0.5, 1.0, 30.0] + [1.0] * 10):
        h = ScoreHistogram()
        for i, w in enumerate(weights):
            h.fill(5.0 if i < len(weights) - 11 else 0.5, i < len(weights) - 11, w)
        entry = from_counters({**settings, **h.counters()})
        bits = [0b01 if i < len(weights) - 11 else 0b10 for i in range(len(weights))]
        r = menu_rates(_record(list(zip(bits, weights))), 1.0).path["A"]
        assert entry["fraction_passed"] == r.fraction
        assert entry["fraction_interval_68"] == pytest.approx([r.low_hz, r.high_hz], rel=1e-12, abs=1e-300)
        assert (entry["fraction_interval_68"][0] == 0.0) == (min(weights) > 0)


# ----------------------------------------------------------------------------- end to end


def _weighted(src: Path, dst: Path, n: int, weights: "np.ndarray") -> Path:
    """The first ``n`` events of ``src`` with ``weights`` as genWeight (doubles: their sums round in floats)."""
    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n)
    with uproot.recreate(dst) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": weights[:len(a)],
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return dst


def _files(d: Path, weights: "Callable[[int, int], np.ndarray]") -> list[Path]:
    """The shipped QCD and signal samples' first 1200 and 400 events, weighed ``weights(n, file index)``."""
    return [_weighted(ROOT / "data" / "qcd_dijet.root", d / "qcd_w.root", 1200, weights(1200, 0)),
            _weighted(ROOT / "data" / "rsg_ww_3p5TeV.root", d / "rsg_w.root", 400, weights(400, 1))]


def _rates(doc: dict) -> dict:
    return doc["services"]["TriggerRates"]


@pytest.mark.slow
def test_constant_weights_give_the_unweighted_rate_in_a_job(tmp_path):
    """Every event of weight 0.1: the RateReport's fraction read 0.0812499999999998 for 130 of 1600 events
    (the score histogram beside it 0.08125); now it is accepted / events, as the histogram's."""
    files = _files(tmp_path, lambda n, _: np.full(n, 0.1))
    doc, _, _ = run_job(tmp_path, files, "services.TriggerRates.per_lumi=true")
    rates = _rates(doc)
    for r in (*rates["paths"], rates["total"]):
        assert 0 < r["accepted"] < rates["events"]
        assert r["fraction"] == r["accepted"] / rates["events"]
        assert r["rate_hz"] == r["accepted"] / rates["events"] * rates["input_rate_hz"]
    assert doc["score_histograms"]["anomalyFilter"]["fraction_passed"] == rates["paths"][0]["fraction"]


@pytest.mark.slow
def test_weighted_rates_are_the_same_bits_over_streams_and_dask(tmp_path):
    """Log-normal double weights (six decades, 10 % negative): 1 stream, 4 streams and 2 Dask workers gave
    31414.91575214101 against 31414.915752141016 Hz; the whole rates entry, per lumi included, is now equal."""
    pytest.importorskip("distributed")
    rng = np.random.default_rng(5)
    files = _files(tmp_path, lambda n, _: np.exp(rng.normal(0.0, 3.0, n)) * np.where(rng.random(n) < 0.1, -1.0, 1.0))
    one, _, _ = run_job(tmp_path / "one", files, "services.TriggerRates.per_lumi=true")
    four, _, _ = run_job(tmp_path / "four", files, "services.TriggerRates.per_lumi=true", "options.numberOfThreads=4",
                         "options.numberOfStreams=4")
    dask, _, _ = run_job(tmp_path / "dask", files, "services.TriggerRates.per_lumi=true", dask=2)
    assert dask["job"]["executor"]["units"] >= 3
    assert _rates(one)["per_lumi"] and _rates(one)["events"] == 1600
    assert _rates(four) == _rates(one) and _rates(dask) == _rates(one)


@pytest.mark.slow
def test_a_heavy_event_keeps_every_interval_within_zero_and_the_input_rate(tmp_path):
    """All weights positive, one event 10^7 times heavier than the rest: each rate is ~0 or ~the input rate
    with a Sumw2 error larger than the way to the edge; the interval read below 0 Hz or above the input rate."""
    def weights(n: int, file: int) -> np.ndarray:
        w = np.ones(n)
        w[0] = 1e7 if file == 0 else 1.0
        return w

    doc, _, _ = run_job(tmp_path, _files(tmp_path, weights), "services.TriggerRates.per_lumi=true")
    rates = _rates(doc)
    figures = [*rates["paths"], *(p["unique"] for p in rates["paths"]), rates["total"]]
    measured = [r for r in figures if not r["upper_limit"]]
    assert measured
    for r in measured:
        low, high = r["interval_hz"]
        assert 0.0 <= low <= r["rate_hz"] <= high <= rates["input_rate_hz"]
    # the clipping did something: an edge within one Sumw2 error of a rate
    assert any(min(r["rate_hz"], rates["input_rate_hz"] - r["rate_hz"]) < r["error_hz"] for r in measured)
    assert all(math.isfinite(r["error_hz"]) for r in measured)
    # the score histogram's fraction beside it (report.html's score section): the same interval
    path = rates["paths"][0]
    h = doc["score_histograms"]["anomalyFilter"]
    assert h["fraction_interval_68"] == pytest.approx([x / rates["input_rate_hz"] for x in path["interval_hz"]],
                                                      rel=1e-12, abs=1e-300)
    assert json.dumps(rates)  # plain numbers only
