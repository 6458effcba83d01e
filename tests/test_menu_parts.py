"""The menu's parts on their own: L1 seed emulation and expressions, CMSSW's prescale counting, the
prescale table, and rates/unique rates/overlaps against an independent computation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hltrun.framework.rates import LUMI_SECTION_S, Tally, TriggerPatterns, menu_rates, rate, rates_per_lumi
from hltrun.framework.services.prescale import PrescaleRow, PrescaleTable
from hltrun.modules.l1_seeds import (ExpressionError, L1SeedFilter, L1SeedParameters, Resolution, SeedDefinition,
                                     l1_value, parse_expression, seed_from_name, smear)
from hltrun.modules.prescaler import PRESCALE_SEED, PrescaleCounter


# ----------------------------------------------------------------------------- expressions and seeds
@pytest.mark.parametrize("text, fired, expected", [
    ("A OR B", {"A": False, "B": True}, True),
    ("A AND B", {"A": True, "B": False}, False),
    ("A OR B AND C", {"A": True, "B": False, "C": False}, True),  # AND binds tighter than OR
    ("(A OR B) AND C", {"A": True, "B": False, "C": False}, False),
    ("NOT A AND B", {"A": False, "B": True}, True),
    ("NOT (A OR B)", {"A": False, "B": False}, True),
    ("a or not b", {"a": False, "b": False}, True),  # keywords in any case
])
def test_expression_logic(text, fired, expected):
    evaluate, names = parse_expression(text)
    assert evaluate(fired.__getitem__) is expected
    assert set(names) == set(fired)


@pytest.mark.parametrize("text", ["", "A OR", "(A OR B", "A B", "A AND OR B", "A + B", ")"])
def test_bad_expressions_are_one_line(text):
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_seed_names_define_themselves():
    assert seed_from_name("L1_SingleJet180") == SeedDefinition(object="single_jet", threshold=180.0)
    assert seed_from_name("L1_HTT280p5") == SeedDefinition(object="htt", threshold=280.5)
    assert seed_from_name("L1_DoubleMu0") is None


def test_l1_objects_respect_eta_and_the_ht_jet_threshold():
    pt, eta = np.array([300.0, 200.0, 40.0, 20.0]), np.array([3.0, 1.0, -2.0, 0.1])
    assert l1_value(SeedDefinition("single_jet", eta_max=2.5), pt, eta) == 200.0  # the 300 GeV jet is outside
    assert l1_value(SeedDefinition("htt", eta_max=2.5, jet_pt_min=30.0), pt, eta) == 240.0
    assert l1_value(SeedDefinition("single_jet"), np.zeros(0), np.zeros(0)) == 0.0


def test_smearing_is_reproducible_per_event_and_seed_and_centred():
    res = Resolution(stochastic=1.0, constant=0.1)
    assert smear(200.0, res, b"1:2:3:L1_X") == smear(200.0, res, b"1:2:3:L1_X")
    draws = np.array([smear(200.0, res, b"1:1:%d:L1_X" % i) for i in range(4000)])
    width = math.hypot(1.0 / math.sqrt(200.0), 0.1)
    assert abs(draws.mean() / 200.0 - 1.0) < 4 * width / math.sqrt(len(draws))
    assert abs(draws.std() / 200.0 / width - 1.0) < 0.05
    assert smear(200.0, None, b"k") == 200.0


def test_the_filter_is_a_step_without_resolution_and_a_turn_on_with_it():
    step = L1SeedFilter("l1", L1SeedParameters(expression="L1_SingleJet180", resolution=None))
    assert not step.decide((1, 1, 1), np.array([179.9]), np.array([0.0]))[0]
    assert step.decide((1, 1, 1), np.array([180.0]), np.array([0.0]))[0]
    smooth = L1SeedFilter("l1", L1SeedParameters(expression="L1_SingleJet180"))
    eff = [np.mean([smooth.decide((1, 1, e), np.array([pt]), np.array([0.0]))[0] for e in range(400)])
           for pt in (120.0, 170.0, 190.0, 260.0)]
    assert eff[0] < 0.05 and 0.2 < eff[1] < 0.5 < eff[2] < 0.8 and eff[3] > 0.95, eff


def test_unknown_seed_names_are_a_configuration_error():
    with pytest.raises(ValueError, match=r"seed\(s\) \['L1_Mystery'\] are neither defined"):
        L1SeedParameters(expression="L1_SingleJet180 OR L1_Mystery")
    L1SeedParameters(expression="L1_Mystery", seeds={"L1_Mystery": SeedDefinition("htt", 500.0)})


# ----------------------------------------------------------------------------- prescales
def _cmssw(factor: int, offset_phase: int, numbers: list[int]) -> list[bool]:
    """HLTPrescaler::filter written out independently, for one stream's events in order."""
    offset = ((numbers[0] + offset_phase) * PRESCALE_SEED) % factor if factor else 0
    return [factor != 0 and (i + offset) % factor == 0 for i in range(len(numbers))]


@pytest.mark.parametrize("factor, phase, first", [(1, 0, 1), (0, 0, 1), (5, 0, 1), (7, 3, 12), (100, 0, 4242)])
def test_prescale_counting_is_cmssws(factor, phase, first):
    numbers = list(range(first, first + 350))
    counter = PrescaleCounter(factor, phase)
    got = [counter.accept(n) for n in numbers]
    assert got == _cmssw(factor, phase, numbers)
    assert counter.count == 350 and counter.accepted == sum(got)
    if factor:
        assert abs(sum(got) - 350 / factor) <= 1


@pytest.mark.parametrize("factor, phase, first", [(1, 0, 1), (0, 0, 1), (5, 0, 1), (7, 3, 12), (100, 0, 4242)])
def test_the_prescaler_module_counts_as_hltprescaler(factor, phase, first):
    """The module's one-modulo filter and its accepted count (computed, not counted) are the counter's."""
    from hltrun.framework.event import Event, EventID
    from hltrun.modules.prescaler import HLTPrescaler, HLTPrescalerParameters

    numbers = list(range(first, first + 350))
    module = HLTPrescaler("pre", HLTPrescalerParameters(offset=phase, prescale=factor))
    got = []
    for i, n in enumerate(numbers):
        got.append(module.filter(Event(EventID(1, 1, n), i, 0)))
        assert module.events == i + 1 and module.accepted == sum(got)
    assert got == _cmssw(factor, phase, numbers)
    assert module.summary() == {"path": "", "prescale": str(factor), "events": 350, "accepted": sum(got),
                                f"events_at_prescale:{factor}": 350, f"accepted_at_prescale:{factor}": sum(got)}


def test_first_of_every_n_when_the_offset_is_zero():
    counter = PrescaleCounter(4)
    first = 4 * PRESCALE_SEED  # (event * 65537) % 4 == 0
    assert [counter.accept(first + i) for i in range(9)] == [True, False, False, False] * 2 + [True]


def test_prescale_table_columns_and_errors():
    table = PrescaleTable(lvl1Labels=["2e34", "1e34"], lvl1DefaultLabel="2e34",
                          prescaleTable=[PrescaleRow("HLT_Jet500", [1, 1]), PrescaleRow("HLT_HT", [10, 0])])
    assert table.prescale("HLT_HT") == 10 and table.prescale("HLT_HT", "1e34") == 0
    assert table.prescale("HLT_NotListed", "1e34") == 1
    with pytest.raises(ValueError, match="prescale column 'x' is not one of"):
        table.prescale("HLT_HT", "x")
    with pytest.raises(ValueError, match="has 1 prescale"):
        PrescaleTable(lvl1Labels=["a", "b"], lvl1DefaultLabel="a", prescaleTable=[PrescaleRow("P", [1])])
    with pytest.raises(ValueError, match="lvl1DefaultLabel 'c'"):
        PrescaleTable(lvl1Labels=["a", "b"], lvl1DefaultLabel="c")


# ----------------------------------------------------------------------------- rates
def _random_menu(seed: int, n: int = 5000, weights: bool = False):
    rng = np.random.default_rng(seed)
    bits = np.stack([rng.random(n) < 0.05, rng.random(n) < 0.02, rng.random(n) < 0.001], axis=1)
    bits[:, 1] |= bits[:, 0] & (rng.random(n) < 0.5)  # overlapping paths
    w = rng.uniform(0.5, 2.0, n) if weights else np.ones(n)
    lumi = rng.integers(1, 4, n)
    patterns = TriggerPatterns(["A", "B", "C"])
    for row, wi, li in zip(bits, w, lumi):
        patterns.record(1, int(li), int(sum(int(b) << i for i, b in enumerate(row))), float(wi))
    return bits, w, lumi, patterns


def test_rates_unique_rates_and_overlaps_match_an_independent_count():
    bits, _, _, patterns = _random_menu(1)
    r = menu_rates(patterns, 100_000.0)
    n = len(bits)
    for i, name in enumerate("ABC"):
        k = int(bits[:, i].sum())
        assert r.path[name].events == k
        assert r.path[name].hz == pytest.approx(k / n * 1e5)
        only = bits[:, i] & ~np.delete(bits, i, axis=1).any(axis=1)
        assert r.unique[name].events == int(only.sum())
        for j in range(3):
            assert r.overlap_events[i][j] == int((bits[:, i] & bits[:, j]).sum())
    p = bits[:, 0].mean()
    assert r.path["A"].error_hz == pytest.approx(1e5 * math.sqrt(p * (1 - p) / n))
    assert r.total.events == int(bits.any(axis=1).sum())


def test_weighted_rates_and_their_error():
    bits, w, _, patterns = _random_menu(2, weights=True)
    r = menu_rates(patterns, 1000.0)
    acc = bits[:, 1]
    p = w[acc].sum() / w.sum()
    assert r.path["B"].hz == pytest.approx(1000.0 * p)
    var = ((1 - p) ** 2 * (w[acc] ** 2).sum() + p ** 2 * (w[~acc] ** 2).sum()) / w.sum() ** 2
    assert r.path["B"].error_hz == pytest.approx(1000.0 * math.sqrt(var))


def test_patterns_merge_exactly_and_per_lumi_rates_add_up():
    _, _, lumi, whole = _random_menu(3)
    parts = [TriggerPatterns(["A", "B", "C"]) for _ in range(2)]
    for (key, table), part in zip(sorted(whole.by_lumi.items()), [parts[0], parts[1], parts[0]]):
        for pattern, tally in table.items():
            part.by_lumi.setdefault(key, {})[pattern] = dataclasses.replace(tally)
    merged = parts[0].merge(parts[1])
    assert menu_rates(merged, 1e5) == menu_rates(whole, 1e5)
    per_lumi = rates_per_lumi(whole, 1e5)
    assert sorted(per_lumi) == [(1, 1), (1, 2), (1, 3)]
    assert sum(r.path["A"].events for r in per_lumi.values()) == menu_rates(whole, 1e5).path["A"].events
    assert LUMI_SECTION_S == pytest.approx(23.31, abs=0.005)


def test_a_path_that_accepts_nothing_has_an_upper_limit():
    r = rate(Tally(), Tally(1000, 1000.0, 1000.0), 100_000.0)
    assert r.upper_limit and r.hz == 0.0 and r.error_hz == pytest.approx(113.94, rel=1e-3)
    assert str(r).startswith("< 114 Hz")


@pytest.mark.parametrize("weighted", [False, True])
def test_a_path_that_accepts_every_event_has_a_non_zero_error(weighted):
    """10 events, all accepted: the RateReport said '100000.0 ± 0.0' (the binomial p(1 - p) is 0), a rate
    known exactly from 10 events. Nothing rejected is the mirror of nothing accepted: the rejected
    fraction's 68 % CL upper limit, 1.14 / N, is the rate's error (downwards), as for a path that took nothing."""
    total = Tally(10, 20.0, 40.0) if weighted else Tally(10, 10.0, 10.0)
    r = rate(Tally(total.n, total.w, total.w2), total, 100_000.0)
    assert r.hz == pytest.approx(100_000.0) and not r.upper_limit
    assert r.error_hz == pytest.approx(11_394.0, rel=1e-3)
    big = rate(Tally(5500, 5500.0, 5500.0), Tally(5500, 5500.0, 5500.0), 100_000.0)
    assert big.error_hz == pytest.approx(100_000.0 * 1.1394 / 5500)


def test_the_html_rate_table_marks_an_upper_limit_as_the_console_does():
    """A path no event took alone: the RateReport prints '< 57.0 (68% CL)', report.html printed 0.000 and
    57.000 in the rate and ± columns, a measured 0 ± 57 Hz. The page says '< 57.0' and '68% CL' instead; the
    menu total is printed as the table's figures, not as '9.68e+04 ± 2.4e+02 Hz'."""
    from hltrun.framework.services.rates import _rate_cells, _total_text

    limit = rate(Tally(0, 0.0, 0.0), Tally(2000, 2000.0, 2000.0), 100_000.0)
    assert limit.upper_limit
    assert _rate_cells(limit) == ["< 57.0", "68% CL"]
    measured = rate(Tally(700, 700.0, 700.0), Tally(2000, 2000.0, 2000.0), 100_000.0)
    assert _rate_cells(measured) == [f"{measured.hz:,.1f}", f"{measured.error_hz:,.1f}"]  # the RateReport's digits
    # its interval: tests/test_rate_figures.py
    few = rate(Tally(22, 22.0, 22.0), Tally(2000, 2000.0, 2000.0), 100_000.0)
    assert _rate_cells(few) == [f"{few.hz:,.1f}", f"+{few.high_hz - few.hz:,.1f} / -{few.hz - few.low_hz:,.1f}"]
    total = rate(Tally(5323, 5323.0, 5323.0), Tally(5500, 5500.0, 5500.0), 100_000.0)
    assert _total_text(total) == "96,781.8 ± 238.0 Hz"


def test_the_overlap_row_of_a_path_that_accepted_nothing_has_no_fractions():
    """Of a path's accepted events, the fraction another path took: with none accepted it is 0/0, and the
    RateReport printed 0.000 in the row, its own diagonal included (a path that takes none of its own events)."""
    from types import SimpleNamespace

    from hltrun.framework.services.rates import TriggerRates, TriggerRatesParameters

    patterns = TriggerPatterns(["A", "B"])
    for _ in range(10):
        patterns.record(1, 1, 0b01)
    service = TriggerRates("TriggerRates", TriggerRatesParameters())
    service._paths, service._patterns = ["A", "B"], patterns
    text = service.text_report(SimpleNamespace(input_rate_hz=100_000.0))
    row_a = next(line for line in text.splitlines() if line.endswith("[0] A"))
    row_b = next(line for line in text.splitlines() if line.endswith("[1] B"))
    assert row_a.split()[1:3] == ["1.000", "0.000"]
    assert row_b.split()[1:3] == ["-", "-"]


def test_limits_on_a_weighted_sample_rest_on_its_effective_events():
    """Nothing (or everything) accepted in a weighted sample: the 68 % CL figure was 1.14 R / N with N the
    raw count, though a flat-pT sample's 2500 events weigh as ~700 (genWeight): a limit 3.5 times too
    tight. It is 1.14 R / N_eff, N_eff = (sum w)^2 / sum w^2 (N itself when unweighted)."""
    w = np.array([1.0] * 5 + [10.0] * 5)
    total = Tally(len(w), float(w.sum()), float((w ** 2).sum()))
    n_eff = w.sum() ** 2 / (w ** 2).sum()
    none = rate(Tally(), total, 100_000.0)
    assert none.upper_limit and none.error_hz == pytest.approx(100_000.0 * 1.1394 / n_eff)
    every = rate(Tally(total.n, total.w, total.w2), total, 100_000.0)
    assert every.error_hz == pytest.approx(100_000.0 * 1.1394 / n_eff)


def test_turn_on_error_bars_are_not_zero_where_the_efficiency_is_0_or_1(monkeypatch):
    """report.html's L1 turn-on: a bin with efficiency exactly 0 or 1 drew a zero error bar (binomial
    sqrt(p(1-p)/n)), an efficiency known exactly from 10 events. The 68 % Wilson score interval instead
    (ROOT's TEfficiency also draws a non-zero-width one there): 0 of 10 -> [0, 0.0909], 10 of 10 -> [0.909, 1]."""
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    import matplotlib.axes

    from hltrun.framework.services.rates import _turn_on_plots

    drawn = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, yerr=None, **kw: drawn.append((list(y), np.asarray(yerr)))
                        or real(self, x, y, yerr=yerr, **kw))
    counters = {"pt_all:100": 10, "pt_all:200": 10, "pt_all:300": 40, "pt_fired:L1_X:100": 0,
                "pt_fired:L1_X:200": 10, "pt_fired:L1_X:300": 20, "expression": "L1_X"}
    assert len(_turn_on_plots(SimpleNamespace(module_summaries={"seed": counters}))) == 1
    (eff, err), = drawn
    assert eff == [0.0, 1.0, 0.5]
    lo, hi = err  # below and above each point
    assert lo[0] == 0.0 and hi[0] == pytest.approx(1 / 11) and lo[1] == pytest.approx(1 / 11) and hi[1] == 0.0
    z = 1.0  # the middle bin: Wilson's centre is 0.5, half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    half = z * math.sqrt(0.25 / 40 + z ** 2 / (4 * 40 ** 2)) / (1 + z ** 2 / 40)
    assert lo[2] == pytest.approx(half) and hi[2] == pytest.approx(half)
