"""The rate figures a trigger physicist quotes, end to end and against independent numpy computations
from the output's HLT_* bits and weights: a sample with negative generator weights (NLO), and the
interval of a rate from a handful of events."""

from __future__ import annotations

import json
from types import SimpleNamespace
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.modules.rootio import write_nanoaod
from tests.menus import prescaled_menu

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"
CUT_GEV = 1100.0


def _sample(tmp_path: Path, n: int = 500, weigh=None) -> Path:
    """The shipped QCD sample's first ``n`` events (lumis 1 and 2) with a genWeight: +1, and -1 for the
    events with a jet above the cut, as an NLO sample's negative weights can make a small subset
    (``weigh(lumi, leading pT)`` gives others)."""
    with uproot.open(QCD) as f:
        a = f["Events"].arrays(entry_stop=n)
    lead = ak.to_numpy(ak.fill_none(ak.max(a["FatJet_pt"], axis=1), 0.0))
    weights = (np.where(lead > CUT_GEV, -1.0, 1.0) if weigh is None
               else weigh(ak.to_numpy(a["luminosityBlock"]), lead)).astype(np.float32)
    path = tmp_path / "nlo.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": weights,
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return path


def _job(tmp_path: Path, sample: Path, source: str = "", summary: str = "false"
         ) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out.root"
    config = tmp_path / "menu.yaml"
    config.write_text(f"""
options: {{inputRateHz: 100000}}
source: {{type: RootJetSource, files: [{sample}]{source}}}
modules:
  hard: {{type: JetPtFilter, min_pt: {CUT_GEV}, eta_max: 5.0}}
  soft: {{type: JetPtFilter, min_pt: 300.0, eta_max: 5.0}}
  out: {{type: RootOutputModule, file: {out}, keep: ["source:weight"]}}
paths:
  HLT_Hard: [hard]
  HLT_Soft: [soft]
endpaths:
  e: [out]
services:
  TriggerRates: {{}}
""")
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(config), "-q", "--report-dir", "rep",
                          f"options.wantSummary={summary}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return res, out


def _weighted_rate(w: np.ndarray, accepted: np.ndarray) -> tuple[float, float]:
    """Input rate x accepted weight / total weight and its Sumw2 error, written out independently."""
    total = w.sum()
    p = w[accepted].sum() / total
    var = ((1 - p) ** 2 * (w[accepted] ** 2).sum() + p ** 2 * (w[~accepted] ** 2).sum()) / total ** 2
    return 1e5 * p, 1e5 * np.sqrt(var)


def test_negative_generator_weights_give_the_signed_weighted_rate(tmp_path):
    """An NLO sample (negative genWeights) whose accepted events weigh less than zero: the rate is the signed
    weighted estimate, -xx ± yy Hz. hltrun.json failed its own schema (rate_hz below 0) and the job exited 1
    with 'a bug in hltrun'; the figures must be the independent weighted sums, in hltrun.json and per lumi."""
    res, out = _job(tmp_path, _sample(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "schema" not in res.stderr
    with uproot.open(out) as f:
        a = f["Events"].arrays(library="np")
    w = a["genWeight"].astype(np.float64)
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    hard = next(p for p in rates["paths"] if p["name"] == "HLT_Hard")
    accepted = a["HLT_Hard"].astype(bool)
    hz, err = _weighted_rate(w, accepted)
    assert hz < 0  # the sample is built so that it is
    assert hard["accepted"] == int(accepted.sum())
    assert hard["rate_hz"] == pytest.approx(hz, rel=1e-9)
    assert hard["error_hz"] == pytest.approx(err, rel=1e-9)
    assert hard["fraction"] == pytest.approx(hz / 1e5, rel=1e-9)
    for lumi in rates["per_lumi"]:
        mask = a["luminosityBlock"] == lumi["lumi"]
        assert lumi["rate_hz"]["HLT_Hard"] == pytest.approx(_weighted_rate(w[mask], accepted[mask])[0], rel=1e-9)
        assert lumi["error_hz"]["HLT_Hard"] == pytest.approx(_weighted_rate(w[mask], accepted[mask])[1], rel=1e-9)


def _binomial_hz(accepted: np.ndarray) -> float:
    """The binomial error of 1e5 x the accepted fraction, written out independently."""
    p = accepted.mean()
    return 1e5 * np.sqrt(p * (1 - p) / len(accepted))


def test_each_lumi_rate_in_hltrun_json_carries_its_error_and_says_where_it_is_a_limit(tmp_path):
    """A lumi section cut short (the sample's lumi 2 holds 6 events, as maxEvents leaves the last lumi): hltrun.json's
    per_lumi gave HLT_Hard 0.0 Hz there with no error and no flag, a measured 0 Hz to whoever reads the file, where
    the job-wide rate of a path without an accepted event is a 68 % CL upper limit. Each lumi's rate now has its
    error (binomial, Sumw2 weighted), and the paths that accepted nothing there are named with their upper limit."""
    res, out = _job(tmp_path, _sample(tmp_path, n=256, weigh=lambda lumi, lead: np.ones(len(lumi))))
    assert res.returncode == 0, res.stderr
    with uproot.open(out) as f:
        a = f["Events"].arrays(library="np")
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    by_lumi = {x["lumi"]: x for x in rates["per_lumi"]}
    lumi, hard, soft = a["luminosityBlock"], a["HLT_Hard"].astype(bool), a["HLT_Soft"].astype(bool)
    first, cut = lumi == 1, lumi == 2
    assert cut.sum() == 6 and not hard[cut].any() and 0 < hard[first].sum() < first.sum()  # as the sample is built
    assert by_lumi[1]["error_hz"]["HLT_Hard"] == pytest.approx(_binomial_hz(hard[first]), rel=1e-9)
    assert (hard | soft)[first].all()  # every event taken: the total's error is the rejected side's 68 % CL limit
    assert by_lumi[1]["total_error_hz"] == pytest.approx(1.1394e5 / first.sum(), rel=1e-3)
    assert "upper_limit" not in by_lumi[1]
    assert by_lumi[2]["rate_hz"]["HLT_Hard"] == 0.0 and by_lumi[2]["upper_limit"] == ["HLT_Hard"]
    assert by_lumi[2]["error_hz"]["HLT_Hard"] == pytest.approx(1.1394e5 / 6, rel=1e-3)  # 68 % CL, 0 of 6
    assert soft[cut].all() and by_lumi[2]["error_hz"]["HLT_Soft"] > 0  # 6 of 6 is no rate known exactly either


@pytest.mark.parametrize("job_defined", [True, False], ids=["lumi-2-negative", "all-negative"])
def test_weights_summing_to_zero_or_less_give_an_undefined_rate_not_zero_hz(tmp_path, job_defined):
    """Events whose genWeights sum to <= 0 (in a lumi, or in the whole job) have no rate: rates.rate() gave
    '0.0 0.0' with accepted 0 (499 events were accepted) and nothing said why. Now one warning line, the
    RateReport says 'undefined', hltrun.json has null figures with undefined: true and the true count."""
    def weigh(lumi, lead):  # lumi 2's weights negative (the job's sum positive), or every weight negative
        return np.where(lumi == 2, -1.0, 2.0) if job_defined else -np.ones(len(lumi))

    res, out = _job(tmp_path, _sample(tmp_path, weigh=weigh))
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "TriggerRates:" in line]
    assert len(warnings) == 1 and "sum to 0 or less" in warnings[0], res.stderr
    assert ("(1:2)" if job_defined else "(1:1, 1:2)") in warnings[0], warnings[0]
    assert ("the job's 500 events" in warnings[0]) != job_defined, warnings[0]
    with uproot.open(out) as f:
        a = f["Events"].arrays(library="np")
    w, lumi, soft = a["genWeight"].astype(np.float64), a["luminosityBlock"], a["HLT_Soft"].astype(bool)
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    path = next(p for p in rates["paths"] if p["name"] == "HLT_Soft")
    assert path["accepted"] == int(soft.sum()) > 0
    if job_defined:
        assert not path["undefined"] and path["rate_hz"] == pytest.approx(_weighted_rate(w, soft)[0], rel=1e-9)
    else:
        assert path["undefined"] and rates["total"]["undefined"], path
        assert [path[k] for k in ("fraction", "rate_hz", "error_hz")] == [None] * 3
        assert path["interval_hz"] == [None] * 2
    by_lumi = {x["lumi"]: x for x in rates["per_lumi"]}
    assert by_lumi[2]["rate_hz"]["HLT_Soft"] is None and by_lumi[2]["total_hz"] is None
    first = lumi == 1
    assert (by_lumi[1]["rate_hz"]["HLT_Soft"] is not None) == job_defined
    if job_defined:
        assert by_lumi[1]["rate_hz"]["HLT_Soft"] == pytest.approx(_weighted_rate(w[first], soft[first])[0], rel=1e-9)


def test_an_undefined_rate_reads_undefined_in_the_text_and_html_tables():
    from hltrun.framework.rates import Tally, rate
    from hltrun.framework.services.rates import _hz, _rate_cells, _total_text

    r = rate(Tally(3, -1.0, 3.0), Tally(5, -1.0, 5.0), 1e5)
    assert r.undefined and r.events == 3 and "undefined" in str(r)
    assert _hz(r).split()[0] == "undefined" and _rate_cells(r)[0] == "undefined"
    assert _total_text(r).startswith("undefined") and "Hz" not in _total_text(r)


def test_a_prescale_column_whose_weights_sum_to_zero_or_less_is_named_in_the_warning(caplog):
    """Column c2's events weigh -1 each, c1's +2 (the job's sum positive): c2's rates are undefined in the
    RateReport and hltrun.json, but the one warning line, which names the job and the lumi sections whose
    weights sum to <= 0, said nothing of a column (none was printed, per_lumi being off)."""
    from hltrun.framework.rates import TriggerPatterns
    from hltrun.framework.services.rates import TriggerRates, TriggerRatesParameters

    patterns = TriggerPatterns(["A"])
    for lumi, column, weight in ((1, "c1", 2.0), (2, "c2", -1.0)):
        for i in range(10):
            patterns.record(1, lumi, i % 2, weight, column)
    service = TriggerRates("TriggerRates", TriggerRatesParameters(per_lumi=False))
    service._paths, service._patterns = ["A"], patterns
    summary = SimpleNamespace(input_rate_hz=1e5)
    with caplog.at_level("WARNING", logger="hltrun"):
        doc = service.json_report(summary)
        service.text_report(summary)
    by_column = {c["column"]: c for c in doc["per_column"]}
    assert by_column["c2"]["total"]["undefined"] and not by_column["c1"]["total"]["undefined"]
    assert not doc["total"]["undefined"]
    warnings = [r.getMessage() for r in caplog.records if "TriggerRates:" in r.getMessage()]
    assert len(warnings) == 1 and "prescale column c2 sum to 0 or less" in warnings[0], warnings
    assert "c1" not in warnings[0] and "the job's" not in warnings[0], warnings


def _service_with(accepted: int, events: int):
    """The TriggerRates service after ``events`` events, path A taking the first ``accepted`` of them
    alone and path B the rest (B's count is large: a binomial ± suits it)."""
    from hltrun.framework.rates import TriggerPatterns
    from hltrun.framework.services.rates import TriggerRates, TriggerRatesParameters

    patterns = TriggerPatterns(["A", "B"])
    for i in range(events):
        patterns.record(1, 1, 0b01 if i < accepted else 0b10)
    service = TriggerRates("TriggerRates", TriggerRatesParameters())
    service._paths, service._patterns = ["A", "B"], patterns
    return service


def _clopper_pearson_hz(k: int, n: int, input_hz: float = 1e5) -> tuple[float, float]:
    """The exact 68.3 % central interval from scipy's beta quantiles (independent of hltrun's bisection)."""
    beta = pytest.importorskip("scipy.stats").beta
    tail = (1 - 0.682689492137086) / 2
    return (0.0 if k == 0 else beta.ppf(tail, k, n - k + 1)) * input_hz, \
           (1.0 if k == n else beta.ppf(1 - tail, k + 1, n - k)) * input_hz


@pytest.mark.parametrize("k", [1, 4, 22])
def test_a_rate_from_a_few_events_has_its_clopper_pearson_interval(k):
    """One event of 2500 at 100 kHz: the RateReport printed '40.0 40.0' (R/N ± R/N, sqrt(1) = 1), a rate that
    might be zero, and hltrun.json had only that ±. The 68.3 % interval of one event is [0.17, 3.30] R/N
    (PDG's Poisson interval for 1): +91.9/-33.1 Hz. The reports give the exact (Clopper-Pearson) interval,
    against scipy's beta quantiles: hltrun.json's interval_hz, the RateReport's and report.html's '+a/-b'."""

    from hltrun.framework.services.rates import _rate_cells

    n = 2500
    service = _service_with(k, n)
    summary = SimpleNamespace(input_rate_hz=1e5)
    low, high = _clopper_pearson_hz(k, n)
    hz = 1e5 * k / n
    doc = service.json_report(summary)
    a = doc["paths"][0]
    assert a["rate_hz"] == pytest.approx(hz)
    assert a["interval_hz"] == pytest.approx([low, high], rel=1e-7)
    assert a["error_hz"] == pytest.approx(1e5 * np.sqrt(k / n * (1 - k / n) / n))  # the binomial sd, as before
    line = next(x for x in service.text_report(summary).splitlines() if x.endswith("  A"))
    assert line.split()[1:5] == [str(k), f"{hz:.1f}", f"+{high - hz:.1f}/-{hz - low:.1f}", f"{hz:.1f}"]
    r = service.rates(summary).path["A"]
    assert _rate_cells(r)[1] == f"+{high - hz:,.1f} / -{hz - low:,.1f}"
    b = doc["paths"][1]
    assert b["interval_hz"] == pytest.approx(_clopper_pearson_hz(n - k, n), rel=1e-7)


@pytest.mark.parametrize("n", [1, 3, 2500])
def test_a_path_that_accepted_every_event_has_its_clopper_pearson_interval(n):
    """A path that took every one of 1 event (``hltrun configs/menu.yaml options.maxEvents=1``) printed
    '100000.0 +0.0/-113940.0': an interval reaching -13940 Hz, hz - 1.14 R / N, not the Clopper-Pearson one
    the docs promise, and the other path's '< 113940.0' (68% CL) above the 100 kHz input. The interval's foot
    is Clopper-Pearson's (scipy's beta quantile) and no limit exceeds the input rate."""
    service = _service_with(n, n)
    summary = SimpleNamespace(input_rate_hz=1e5)
    doc = service.json_report(summary)
    every, none = doc["paths"]
    assert every["interval_hz"] == pytest.approx(_clopper_pearson_hz(n, n), rel=1e-7)
    assert 0 < every["interval_hz"][0] < every["rate_hz"] == 1e5
    assert none["upper_limit"] and none["error_hz"] <= 1e5 and none["interval_hz"][1] <= 1e5
    line = next(x for x in service.text_report(summary).splitlines() if x.endswith("  A"))
    low = _clopper_pearson_hz(n, n)[0]
    assert line.split()[3] == f"+0.0/-{1e5 - low:.1f}", line


def test_a_rate_from_many_events_keeps_its_binomial_error():
    """Where the interval's sides agree within 10 % (hundreds of events either side) the RateReport keeps
    the ± of the binomial error; hltrun.json still gives the exact interval."""
    n, k = 2500, 800
    service = _service_with(k, n)
    summary = SimpleNamespace(input_rate_hz=1e5)
    err = 1e5 * np.sqrt(k / n * (1 - k / n) / n)
    line = next(x for x in service.text_report(summary).splitlines() if x.endswith("  A"))
    assert line.split()[1:4] == [str(k), f"{1e5 * k / n:.1f}", f"{err:.1f}"]
    assert service.json_report(summary)["paths"][0]["interval_hz"] == pytest.approx(_clopper_pearson_hz(k, n),
                                                                                    rel=1e-7)


@pytest.mark.parametrize("n", [1, 7, 250, 10_000, 3_000_000])
def test_clopper_pearson_matches_the_beta_quantiles(n):
    from hltrun.framework.rates import clopper_pearson

    for k in sorted({0, 1, 2, 5, n // 3, n - 1, n}):
        if 0 <= k <= n:
            assert clopper_pearson(k, n) == pytest.approx(tuple(x / 1e5 for x in _clopper_pearson_hz(k, n)),
                                                          rel=1e-7, abs=1e-300)


def _column_change_job(tmp_path: Path, *args: str) -> tuple[dict, dict[str, np.ndarray], str, str]:
    """The shipped QCD sample (lumis 1-10) through a jet and an HT path, each behind its prescaler, with the
    prescale column switching from c1 to c2 at lumi 6 (HLT_H off there, HLT_J prescaled by 2)."""
    out = tmp_path / "out.root"
    config = prescaled_menu(tmp_path / "menu.yaml", {"HLT_J": [1, 2], "HLT_H": [3, 0]},
                            "lumiColumns: [{run: 1, lumi: 6, column: c2}]", out)
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(config), "-q", "--report-dir", "rep",
                          *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    with uproot.open(out) as f:
        a = f["Events"].arrays(library="np")
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    return rates, a, res.stdout, (tmp_path / "rep" / "report.html").read_text()


def test_a_prescale_column_change_gives_the_rates_in_each_column(tmp_path):
    """A job whose column changes at lumi 6 (lumiColumns): HLT_H, prescaled by 3 then off, had one job-wide
    rate, 16.6 kHz, a mix of 33.2 kHz in c1 and nothing in c2 that no column of the menu gives, and neither
    the RateReport nor hltrun.json said which column a figure belongs to. Each column's rates are given
    (RateReport, hltrun.json per_column, report.html), against an independent count of the output's bits
    by lumi; per_lumi names its column, and report.html lists the paths c2 turns off."""
    rates, a, text, page = _column_change_job(tmp_path)
    in_c2 = a["luminosityBlock"] >= 6
    assert rates["columns"] == ["c1", "c2"]
    assert all(e["column"] == ("c2" if e["lumi"] >= 6 else "c1") for e in rates["per_lumi"])
    by_column = {c["column"]: c for c in rates["per_column"]}
    assert sorted(by_column) == ["c1", "c2"]
    bits = np.stack([a["HLT_J"], a["HLT_H"]], axis=1).astype(bool)
    for label, mask in (("c1", ~in_c2), ("c2", in_c2)):
        column, sub, n = by_column[label], bits[mask], int(mask.sum())
        assert column["events"] == n
        for i, path in enumerate(column["paths"]):
            k = int(sub[:, i].sum())
            assert path["accepted"] == k and path["rate_hz"] == pytest.approx(1e5 * k / n)
            assert path["unique"]["accepted"] == int((sub[:, i] & ~sub[:, 1 - i]).sum())
        assert column["total"]["accepted"] == int(sub.any(axis=1).sum())
        assert f"Path rates in prescale column {label} ({n} events" in text
    assert by_column["c2"]["paths"][1]["accepted"] == 0 and by_column["c1"]["paths"][1]["accepted"] > 0
    assert "prescale columns c1, c2 mixed" in text
    assert "Off in column c2 (prescale 0, they accept nothing): HLT_H." in page
    assert page.count("In prescale column <b>") == 2


def test_one_column_is_named_and_not_repeated(tmp_path):
    rates, _, text, _ = _column_change_job(tmp_path, "services.PrescaleService.forceDefault=true")
    assert rates["columns"] == ["c1"] and "per_column" not in rates
    assert "prescale column c1) ----" in text and "Path rates in prescale column" not in text


def test_the_columns_of_the_lumis_merge_with_the_patterns():
    """Dask units each record their lumis' columns; the client's merge keeps them all."""
    from hltrun.framework.rates import TriggerPatterns

    first, second = TriggerPatterns(["A"]), TriggerPatterns(["A"])
    first.record(1, 1, 1, column="c1")
    second.record(1, 6, 0, column="c2")
    assert first.merge(second).column == {(1, 1): "c1", (1, 6): "c2"}


def test_the_per_lumi_plot_bars_stay_inside_each_rates_interval(tmp_path, monkeypatch):
    # kills: a lumi with no accepted event drawn 0 ± its 68% CL upper limit, a bar reaching below 0 Hz;
    # a lumi where every event passed drawn above the input rate (a path off there is drawn nowhere: the bar
    # from 0 to the upper limit of a path that ran is checked in test_rates_off.py)
    pytest.importorskip("matplotlib")
    import math

    from matplotlib.axes import Axes

    from hltrun.framework.cli import main

    from .test_prescale_columns import FACTORS, factors_menu

    drawn: dict[str, tuple[list[float], list[list[float]]]] = {}
    errorbar = Axes.errorbar

    def spy(self, x, y, *args, **kw):
        if kw.get("label") in FACTORS:
            sides = np.asarray(kw["yerr"], dtype=float)  # one row: symmetric bars
            drawn[kw["label"]] = (list(y), [list(sides), list(sides)] if sides.ndim == 1 else sides.tolist())
        return errorbar(self, x, y, *args, **kw)

    monkeypatch.setattr(Axes, "errorbar", spy)
    assert main([str(factors_menu(tmp_path)), "-q", "--report-dir", str(tmp_path / "rep")]) == 0
    with uproot.open(tmp_path / "out1.root") as f:
        t = f["Events"]
        lumi = t["luminosityBlock"].array(library="np")
        bits = {p: t[p].array(library="np").astype(bool) for p in FACTORS}
    lumis, hz = np.unique(lumi), 100_000.0  # options.inputRateHz's default
    upper_zero = -math.log(1 - 0.68)  # Poisson: P(0 | mu) = 0.32
    assert set(drawn) == set(FACTORS)
    for path, (y, (below, above)) in drawn.items():
        assert len(y) == len(lumis)
        for i, l in enumerate(lumis):
            n, k = int((lumi == l).sum()), int(bits[path][lumi == l].sum())
            if path == "HLT_P" and l >= 5:  # off in column c2 (prescale 0): no point, not 0 Hz (test_rates_off.py)
                assert math.isnan(y[i]) and below[i] == above[i] == 0 and k == 0
                continue
            assert y[i] == pytest.approx(hz * k / n)
            assert y[i] - below[i] >= -1e-9 and y[i] + above[i] <= hz + 1e-9, (path, l)
            if k == 0:  # a bar from 0 to the upper limit
                assert below[i] == 0 and above[i] == pytest.approx(hz * upper_zero / n, rel=1e-3)
    assert sum(bits["HLT_P"][lumi >= 5]) == 0 and bits["HLT_Q"][lumi < 5].all()  # both cases were drawn


@pytest.mark.parametrize("lumis", [5, 840])
def test_the_per_lumi_plot_labels_a_readable_number_of_lumis(monkeypatch, lumis):
    """A job over a big file (840 lumi sections from make_large_sample's 210k events) drew one run:lumi
    tick label per lumi: a black band under the plot. Every lumi is still drawn; the labels are thinned
    to a readable number, in order, starting at the first lumi; a short job keeps one label per lumi."""
    pytest.importorskip("matplotlib")
    import hltrun.framework.report.html as report_html
    from hltrun.framework.rates import TriggerPatterns
    from hltrun.framework.services.rates import TriggerRates, TriggerRatesParameters

    patterns = TriggerPatterns(["A"])
    for lumi in range(1, lumis + 1):
        for i in range(4):
            patterns.record(7, lumi, i % 2)
    service = TriggerRates("TriggerRates", TriggerRatesParameters())
    service._paths, service._patterns = ["A"], patterns
    figures = {}

    def keep(fig, alt):
        figures[alt] = fig
        return ""

    monkeypatch.setattr(report_html, "img", keep)
    service.html_sections(SimpleNamespace(input_rate_hz=1e5, module_summaries={}))
    ax = figures["rate per lumi section"].axes[0]
    assert len(ax.lines[0].get_xdata()) == lumis  # every lumi drawn
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "7:1"
    assert len(labels) == lumis if lumis <= 40 else 20 <= len(labels) <= 40
    numbers = [int(label.split(":")[1]) for label in labels]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_a_job_of_no_event_has_no_rate_not_zero_hz(tmp_path):
    """lumisToProcess keeping none of the sample: no event, so no accepted fraction. The RateReport and
    report.html read '0.0 ± 0.0 Hz' (a rate measured exactly) for every path and the menu total, hltrun.json
    0.0 with an error of 0.0; now one line saying why there is no rate, and null figures, undefined."""
    res, _ = _job(tmp_path, _sample(tmp_path, n=50), source=', lumisToProcess: ["999:1"]', summary="true")
    assert res.returncode == 0, res.stderr
    report = res.stdout[res.stdout.index("RateReport"):]
    rate_lines = report[:report.index("\n\n")].splitlines() if "\n\n" in report else report.splitlines()
    assert len(rate_lines) == 2 and "no event was processed" in rate_lines[1], rate_lines
    assert "TriggerRates:" not in res.stderr  # no warning about weights: there is no event to weigh
    rates = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["TriggerRates"]
    assert rates["events"] == 0
    for figure in [rates["total"], *rates["paths"], *(p["unique"] for p in rates["paths"])]:
        assert figure["undefined"] and figure["rate_hz"] is None and figure["error_hz"] is None, figure
    page = (tmp_path / "rep" / "report.html").read_text()
    rates_section = page[page.index("<h2>Rates</h2>"):page.index("<h2>Text report</h2>")]
    assert "no event was processed" in rates_section.lower() and "<table" not in rates_section, rates_section
