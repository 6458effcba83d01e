"""A weighted sample (NanoAOD genWeight, NLO-like: spread over two decades, some negative) counts one way
everywhere: the filter's score histogram holds sum w and sum w^2 per bin as the rates do, its fraction above
the cut is the RateReport's, scores.root carries the true Sumw2, and merging over streams and Dask units stays
exact. The expected figures come from the input files' weights (uproot) and the output's scores (numpy)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.executors.worker import _delta
from hltrun.framework.report.html import _score_sections
from hltrun.framework.report.validate import schema_problem
from hltrun.framework.results import add_stream_summary, merge_counters
from hltrun.framework.rates import Tally, rate
from hltrun.framework.score_histogram import EDGES, ScoreHistogram, from_counters
from hltrun.framework.services.rates import WEIGHTED_NOTE
from hltrun.modules.rootio import write_nanoaod

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "configs" / "path.yaml"
SETTINGS = {"threshold": 3.0, "score_hist_of": "score"}


def score_schema() -> "jsonschema.Validator":
    """The published schema's ``score_histogram`` definition."""
    import jsonschema

    from hltrun.framework.report.validate import SCHEMA_FILE

    schema = json.loads((ROOT / "framework" / "report" / SCHEMA_FILE).read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/score_histogram", "$defs": schema["$defs"]})


def weighted_copy(src: Path, dst: Path, n: int, seed: int, replace: dict[int, float] | None = None,
                  negative: float = 0.12) -> Path:
    """The first ``n`` events of ``src`` with a float32 genWeight: log-normal (a factor ~3 either way), a
    fraction ``negative`` of them negative; ``replace``: entry -> weight written instead (a NaN, an inf)."""
    with uproot.open(src) as f:
        a = f["Events"].arrays(entry_stop=n)
    rng = np.random.default_rng(seed)
    w = (np.exp(rng.normal(0.0, 1.2, len(a))) * np.where(rng.random(len(a)) < negative, -1.0, 1.0)).astype(np.float32)
    for entry, value in (replace or {}).items():
        w[entry] = value
    with uproot.recreate(dst) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": w,
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return dst


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("weighted")
    return [weighted_copy(ROOT / "data" / "qcd_dijet.root", d / "qcd_w.root", 1200, 11),
            weighted_copy(ROOT / "data" / "rsg_ww_3p5TeV.root", d / "rsg_w.root", 400, 12)]


def run_job(tmp_path: Path, files: list[Path], *overrides: str, dask: int = 0) -> tuple[dict, str, Path]:
    """The shipped path on ``files`` with the TriggerRates service, every event written with its scores."""
    from hltrun.framework.cli import main

    rep = tmp_path / "r"
    args = [str(PATH), "-q", "--report-dir", str(rep), f"source.files=[{','.join(map(str, files))}]",
            f"modules.out.file={tmp_path / 'out.root'}", "modules.out.select_events=[]",
            "modules.vae.backend=onnxruntime", "services.TriggerRates={per_lumi: false}", *overrides]
    if dask:
        args[1:1] = ["--dask", str(dask), "options.executor.eventsPerTask=500"]
    assert main(args) == 0
    return json.loads((rep / "hltrun.json").read_text()), (rep / "report.html").read_text(), rep


def input_weights(files: list[Path]) -> dict[tuple[int, int, int], float]:
    out = {}
    for file in files:
        a = uproot.open(file)["Events"].arrays(["run", "luminosityBlock", "event", "genWeight"], library="np")
        out.update({k: float(w) for k, w in zip(zip(a["run"].tolist(), a["luminosityBlock"].tolist(),
                                                    a["event"].tolist()), a["genWeight"])})
    return out


# ------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_fraction_above_the_cut_is_the_rate_reports(tmp_path, sample):
    doc, page, _ = run_job(tmp_path, sample)
    h = doc["score_histograms"]["anomalyFilter"]
    rates = doc["services"]["TriggerRates"]
    path = rates["paths"][0]
    fraction = path["rate_hz"] / rates["input_rate_hz"]
    assert h["events_passed"] == path["accepted"] and h["events"] == rates["events"]
    assert h["fraction_passed"] == pytest.approx(fraction, rel=1e-12)
    assert h["events_passed"] / h["events"] != pytest.approx(fraction, rel=1e-3)  # the weights did matter
    lo, hi = (x / rates["input_rate_hz"] for x in path["interval_hz"])
    assert h["fraction_interval_68"] == pytest.approx([lo, hi], rel=1e-9)
    # the page's figure is the rate's, the counts beside it said to be counts
    section = page[page.index("<h2>Anomaly score and cut</h2>"):page.index("<h2>", page.index("score and cut") + 20)]
    assert f"= {100 * fraction:.3g} % (±" in section
    assert f"{h['events_passed']:,} of {h['events']:,} events (unweighted count)" in section
    assert html.escape(WEIGHTED_NOTE) in page  # the rates' table says its 'accepted' column counts events
    assert schema_problem(doc) is None


def test_a_nan_or_inf_genweight_is_one_line_naming_file_entry_and_value_not_nan_rates(tmp_path, capfd):
    """A path no weight-reading module is on (no filter, no L1 seed): the rates were NaN in the RateReport and
    report.html, null in hltrun.json, exit 0 and no word. The source refuses the file (exit 3) with its entry
    and value; with skipBadFiles it is skipped, counted, and the rates are those of the good file."""
    from hltrun.framework.cli import main

    bad = weighted_copy(ROOT / "data" / "qcd_dijet.root", tmp_path / "bad_w.root", 300, 13, {7: np.nan, 120: np.inf})
    good = weighted_copy(ROOT / "data" / "rsg_ww_3p5TeV.root", tmp_path / "good_w.root", 200, 14)
    rep = tmp_path / "r"
    args = [str(PATH), "-q", "--report-dir", str(rep), f"source.files=[{bad},{good}]",
            f"modules.out.file={tmp_path / 'out.root'}", "modules.out.select_events=[]",
            "modules.vae.backend=onnxruntime", "services.TriggerRates={}", "paths={HLT_Vae: [batcher, vae]}"]
    capfd.readouterr()
    assert main(args) == 3
    err = capfd.readouterr().err
    assert f"error: source: weight branch 'genWeight' (source.branches.weight) holds nan at entry 7 of {bad} (and 1 " \
           "more of entries 0-300): an event weight must be a finite number" in err and "Traceback" not in err
    assert main([*args, "source.skipBadFiles=true"]) == 0
    doc = json.loads((rep / "hltrun.json").read_text())
    rates = doc["services"]["TriggerRates"]
    assert rates["events"] == 200 and not rates["total"]["undefined"]
    assert all(math.isfinite(r["rate_hz"]) for r in (*rates["paths"], rates["total"]))
    assert all(math.isfinite(v) for lumi in rates["per_lumi"] for v in lumi["rate_hz"].values())
    page = (rep / "report.html").read_text()
    total = re.search(r"Menu total ([^ ]+) [±+]", page)  # a NaN rate read "Menu total nan ± 379.8 Hz", cells ">nan<"
    assert total and math.isfinite(float(total.group(1).replace(",", ""))) and ">nan<" not in page


@pytest.mark.slow
def test_root_sumw2_is_the_input_files_sum_of_squared_weights(tmp_path, sample):
    doc, _, rep = run_job(tmp_path, sample)
    weight = input_weights(sample)
    a = uproot.open(tmp_path / "out.root")["Events"].arrays(
        ["run", "luminosityBlock", "event", "vae_score", "vae_valid", "HLT_AnomalyDetection"], library="np")
    w = np.array([weight[k] for k in zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist())])
    score = np.array([float(np.max(s[v])) if v.any() else np.nan for s, v in zip(a["vae_score"], a["vae_valid"])])
    scored = score > 0  # the samples' scores are all positive and finite: TH1 bins 0 (underflow) .. n+1
    assert scored.sum() == len(score) - doc["score_histograms"]["anomalyFilter"]["no_score"]
    edges = np.concatenate([-np.asarray(EDGES)[::-1], EDGES])  # the signed log scale: mirrored below 0
    idx = np.searchsorted(edges, score[scored], side="right")  # TH1's flow-included index
    passed = a["HLT_AnomalyDetection"][scored].astype(bool)
    with uproot.open(rep / "scores.root") as f:
        for key, sel in (("all", np.ones(len(idx), bool)), ("passed", passed)):
            th1 = f[f"anomalyFilter/{key}"]
            assert th1.classname == "TH1D"
            n = len(edges) + 1
            sumw = np.bincount(idx[sel], weights=w[scored][sel], minlength=n)
            sumw2 = np.bincount(idx[sel], weights=w[scored][sel] ** 2, minlength=n)
            np.testing.assert_allclose(np.asarray(th1.member("fSumw2")), sumw2, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(th1.values(flow=True), sumw, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(th1.axis().edges(), edges)
    assert (sumw2 != np.bincount(idx[passed], minlength=len(edges) + 1)).any()  # not unit-weight variances


@pytest.mark.slow
@pytest.mark.parametrize("how", ["streams", "dask"])
def test_weighted_histogram_is_the_same_over_streams_and_dask_units(tmp_path, sample, how):
    one, _, _ = run_job(tmp_path / "one", sample)
    if how == "dask":
        pytest.importorskip("distributed")
        many, _, _ = run_job(tmp_path / "many", sample, dask=2)
        assert many["job"]["executor"]["units"] >= 3
    else:
        many, _, _ = run_job(tmp_path / "many", sample, "options.numberOfThreads=3", "options.numberOfStreams=3")
    # exact: fixed-point sums add up in any order, so not approx
    assert many["score_histograms"] == one["score_histograms"]


L1_CONFIG = """
process: L1W
options: {{inputRateHz: 100000, numberOfThreads: {threads}}}
source: {{type: RootJetSource, files: [{files}], tree: Events, layout: counts, chunk_size: 300}}
modules:
  seed: {{type: L1SeedFilter, expression: L1_SingleJet700}}
  out: {{type: RootOutputModule, file: {out}, keep: []}}
paths:
  HLT_L1: [seed]
endpaths:
  e: [out]
services:
  TriggerRates: {{per_lumi: false}}
"""


def leading_bins(files: list[Path]) -> dict[tuple[int, int, int], int]:
    """The turn-on bin (25 GeV, lower edge) of each event's largest finite jet pT (0 without jets)."""
    out = {}
    for file in files:
        a = uproot.open(file)["Events"].arrays(["run", "luminosityBlock", "event", "FatJet_pt"])
        pt = ak.fill_none(ak.max(a["FatJet_pt"][np.isfinite(a["FatJet_pt"])], axis=1), 0.0)
        for key, lead in zip(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()), pt.tolist()):
            out[key] = int(lead // 25 * 25)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_l1_turn_on_is_weighted_as_the_rates(tmp_path, sample, threads):
    """Per leading-jet pT bin the seed's sum of weights, fired and all, against the input files' weights and
    the path's decisions in the output; the bins together give the RateReport's fraction."""
    from hltrun.framework.cli import main
    from hltrun.framework.services.rates import _weighted_turn_on
    from hltrun.framework.weights import total

    config = tmp_path / "l1.yaml"
    config.write_text(L1_CONFIG.format(threads=threads, files=", ".join(map(str, sample)), out=tmp_path / "o.root"))
    assert main([str(config), "-q", "--report-dir", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "hltrun.json").read_text())
    shown = doc["job"]["module_summaries"]["seed"]
    c = as_fixed_point(shown)  # hltrun.json shows the sums as floats; the report's functions take the integers
    assert all(isinstance(v, float) for k, v in shown.items() if k.startswith(("pt_all_w", "pt_fired_w")))
    a = uproot.open(tmp_path / "o.root")["Events"].arrays(["run", "luminosityBlock", "event", "HLT_L1"], library="np")
    keys = list(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()))
    weight, edge = input_weights(sample), leading_bins(sample)
    w = np.array([weight[k] for k in keys])
    e = np.array([edge[k] for k in keys])
    fired = a["HLT_L1"].astype(bool)
    edges = sorted(set(e.tolist()))
    for b in edges:
        sel = e == b
        assert c[f"pt_all:{b}"] == sel.sum()
        assert total(int(sel.sum()), c[f"pt_all_w:{b}"], c[f"pt_all_w2:{b}"]) == pytest.approx(
            (w[sel].sum(), (w[sel] ** 2).sum()), rel=1e-12, abs=1e-12)
        k = int((sel & fired).sum())
        got = total(k, c.get(f"pt_fired_w:L1_SingleJet700:{b}", 0), c.get(f"pt_fired_w2:L1_SingleJet700:{b}", 0))
        assert got == pytest.approx((w[sel & fired].sum(), (w[sel & fired] ** 2).sum()), rel=1e-12, abs=1e-12)
    n = [c[f"pt_all:{b}"] for b in edges]
    k = [c.get(f"pt_fired:L1_SingleJet700:{b}", 0) for b in edges]
    eff, _ = _weighted_turn_on(c, "L1_SingleJet700", edges, n, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = [w[(e == b) & fired].sum() / w[e == b].sum() if w[e == b].sum() > 0 else math.nan for b in edges]
    np.testing.assert_allclose(eff, want, rtol=1e-12)
    assert 0 < fired.sum() < len(fired) and any(0.05 < x < 0.95 for x in eff)  # a turn-on, not a constant
    for b in edges:  # the events of weight < 0 per bin, all and fired: what decides the intervals' clipping
        sel = e == b
        assert c[f"pt_all_negative:{b}"] == (w[sel] < 0).sum()
        assert c.get(f"pt_fired_negative:L1_SingleJet700:{b}", 0) == (w[sel & fired] < 0).sum()
    rates = doc["services"]["TriggerRates"]
    assert rates["paths"][0]["fraction"] == pytest.approx(w[fired].sum() / w.sum(), rel=1e-12)


@pytest.mark.slow
def test_l1_turn_on_interval_is_clipped_where_no_weight_is_negative(tmp_path):
    """All weights positive, one event of weight 1e5 per turn-on bin (rejected below the threshold, fired
    above): the Sumw2 interval either side of the efficiency reached below 0 or above 1 (a bar below 0 with
    no negative weight). Clipped to [0, 1] as the rates' are, from the seed module's negative-weight counts."""
    from hltrun.framework.cli import main
    from hltrun.framework.services.rates import _weighted_turn_on

    src = ROOT / "data" / "qcd_dijet.root"
    pt = ak.fill_none(ak.max(uproot.open(src)["Events"]["FatJet_pt"].array(entry_stop=1200), axis=1), 0.0)
    pt = ak.to_numpy(pt)
    heavy = {}
    for b in (600, 625, 650, 675, 775, 800):
        idx = np.flatnonzero(pt // 25 * 25 == b)
        heavy[int(idx[np.argmin(pt[idx])] if b < 700 else idx[np.argmax(pt[idx])])] = 1e5
    files = [weighted_copy(src, tmp_path / "heavy_w.root", 1200, 21, heavy, negative=0.0)]
    config = tmp_path / "l1.yaml"
    config.write_text(L1_CONFIG.format(threads=1, files=files[0], out=tmp_path / "o.root"))
    assert main([str(config), "-q", "--report-dir", str(tmp_path / "r")]) == 0
    c = as_fixed_point(json.loads((tmp_path / "r" / "hltrun.json").read_text())["job"]["module_summaries"]["seed"])
    a = uproot.open(tmp_path / "o.root")["Events"].arrays(["run", "luminosityBlock", "event", "HLT_L1"], library="np")
    keys = list(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()))
    weight, edge = input_weights(files), leading_bins(files)
    w, e = np.array([weight[k] for k in keys]), np.array([edge[k] for k in keys])
    fired = a["HLT_L1"].astype(bool)
    edges = sorted(set(e.tolist()))
    n = [c[f"pt_all:{b}"] for b in edges]
    k = [c.get(f"pt_fired:L1_SingleJet700:{b}", 0) for b in edges]
    eff, bounds = _weighted_turn_on(c, "L1_SingleJet700", edges, n, k)
    below = above = 0
    for b, p, (lo, hi) in zip(edges, eff, bounds):
        sel = e == b
        if not 0 < (sel & fired).sum() < sel.sum():
            continue  # none fired (an upper limit) or all: no Sumw2 error either side
        sw = w[sel].sum()  # the Sumw2 error from the input's weights, as framework/rates.py takes it
        err = math.sqrt((1 - p) ** 2 * (w[sel & fired] ** 2).sum() + p ** 2 * (w[sel & ~fired] ** 2).sum()) / sw
        below += p - err < 0
        above += p + err > 1
        assert (lo, hi) == pytest.approx((max(p - err, 0.0), min(p + err, 1.0)), rel=1e-9, abs=1e-15)
    assert below and above  # the heavy events did put the symmetric interval outside [0, 1]
    assert all(0.0 <= lo <= hi <= 1.0 for lo, hi in bounds)


def as_fixed_point(counters: dict) -> dict:
    """hltrun.json's readable weight sums (floats in weight units) back as the modules' fixed-point integers."""
    from fractions import Fraction

    from hltrun.framework.weights import ONE, ONE2, is_fixed_point

    return {k: round(Fraction(v) * (ONE2 if k.split(":", 1)[0].endswith("_w2") else ONE)) if is_fixed_point(k)
            else v for k, v in counters.items()}


@pytest.mark.slow
def test_hltrun_json_shows_weight_sums_as_plain_numbers(tmp_path, sample):
    """The modules' fixed-point sums (w in units of 2^-64, w^2 of 2^-128) were written to hltrun.json as
    integers of up to 40 digits, which JSON readers holding numbers as doubles (JavaScript, jq 1.6, pandas)
    read wrong: every number in the file is now one a double holds, and each sum is the input's, in weights."""
    doc, _, _ = run_job(tmp_path, sample)

    def numbers(o):
        if isinstance(o, dict):
            for v in o.values():
                yield from numbers(v)
        elif isinstance(o, list):
            for v in o:
                yield from numbers(v)
        elif isinstance(o, int) and not isinstance(o, bool):
            yield o

    assert max(abs(n) for n in numbers(doc)) < 2 ** 53
    c = doc["job"]["module_summaries"]["anomalyFilter"]
    w = np.array(list(input_weights(sample).values()))
    slots = [k.split(":", 1)[1] for k in c if k.startswith("score_hist_w:")]
    n = sum(c.get(f"score_hist:{s}", 0) for s in slots)
    assert n + sum(c[f"score_hist_w:{s}"] for s in slots) == pytest.approx(w.sum(), rel=1e-9)
    assert n + sum(c[f"score_hist_w2:{s}"] for s in slots) == pytest.approx((w ** 2).sum(), rel=1e-9)


# ------------------------------------------------------------------------ the histogram itself


def _fill(h: ScoreHistogram, values: list[float], weights: list[float]) -> None:
    for v, w in zip(values, weights):
        h.fill(v, v > SETTINGS["threshold"], w)


def test_weight_sums_merge_exactly_in_any_order_and_over_cumulative_units():
    rng = np.random.default_rng(3)
    values = (10 ** rng.uniform(-1, 2, 600)).tolist()
    weights = (rng.lognormal(0, 2, 600) * rng.choice([-1, 1], 600)).astype(np.float32).tolist()
    whole = ScoreHistogram()
    _fill(whole, values, weights)
    want = from_counters({**SETTINGS, **whole.counters()})
    # any order, any split: streams added, then units merged (integers: no rounding order)
    order = rng.permutation(600)
    parts = [ScoreHistogram() for _ in range(3)]
    for j, i in enumerate(order):
        _fill(parts[j % 3], [values[i]], [weights[i]])
    merged: dict = {}
    for part in parts[:2]:
        add_stream_summary(merged, {**SETTINGS, **part.counters()})
    assert from_counters(merge_counters(merged, {**SETTINGS, **parts[2].counters()})) == want
    w = np.asarray(weights, np.float64)
    total = want["weights"]["total"]
    assert total["sumw"] == math.fsum(w) and total["sumw2"] == math.fsum(w * w)  # correctly rounded sums


def test_a_dask_workers_weight_sum_back_at_zero_is_still_differenced():
    """A worker's counters are cumulative and differenced per unit: the slot's sum of (w - 1) is +1 after the
    first unit and 0 after the second; the second unit's -1 must reach the client."""
    worker, seen = ScoreHistogram(), {}
    worker.fill(5.0, True, 2.0)
    first = _delta({**SETTINGS, **worker.counters()}, seen)
    worker.fill(5.0, True, 0.0)
    second = _delta({**SETTINGS, **worker.counters()}, seen)
    h = from_counters(merge_counters(first, second))
    assert h["weights"]["total"]["sumw"] == 2.0 and h["weights"]["total"]["sumw2"] == 4.0 and h["events"] == 2


def test_unit_weights_keep_the_unweighted_counters():
    plain, unit = ScoreHistogram(), ScoreHistogram()
    values = [0.5, 4.0, 7.0, math.nan, -1.0]
    for v in values:
        plain.fill(v, v > 3.0)
        unit.fill(v, v > 3.0, 1.0)
    plain.no_score()
    unit.no_score(1.0)
    assert unit.counters() == plain.counters() and unit.excess is None
    assert "weights" not in from_counters({**SETTINGS, **plain.counters()})


def test_negative_weights_negative_bins_and_a_negative_total_are_drawn_and_said():
    h = ScoreHistogram()
    _fill(h, [0.5, 0.5, 0.6, 4.0, 4.0, 9.0] * 20, [2.0, -3.0, 0.5, -2.5, 0.5, 3.0] * 20)
    entry = from_counters({**SETTINGS, **h.counters()})
    sumw = entry["weights"]["sumw"]
    assert min(sumw) < 0 < max(sumw)
    t = entry["weights"]["total"]
    assert entry["fraction_passed"] == pytest.approx(t["sumw_passed"] / t["sumw"])
    page = "\n".join(_score_sections({"f": entry}))
    assert "<img" in page and "sum of weights" in page and "events (unweighted count)" in page
    assert entry["fraction_passed"] > 1  # negative weights rejected: no fraction of events, and the schema says so
    score_schema().validate(entry)

    # every weight negative: no fraction (as the rates: undefined), said so, and still drawn
    neg = ScoreHistogram()
    _fill(neg, [0.5, 4.0, 9.0] * 30, [-1.0, -2.0, 0.5] * 30)
    entry = from_counters({**SETTINGS, **neg.counters()})
    assert entry["fraction_passed"] is None and entry["fraction_interval_68"] is None
    page = "\n".join(_score_sections({"f": entry}))
    assert "<img" in page and "undefined: the weights sum to" in page


def test_nonfinite_weight_is_refused_by_name():
    with pytest.raises(ValueError, match="event weight nan"):
        ScoreHistogram().fill(1.0, False, math.nan)


def test_an_event_weight_that_is_no_number_fails_the_event_by_name():
    from hltrun.framework.config import WEIGHT_TAG
    from hltrun.framework.errors import ModuleError
    from hltrun.framework.event import Event, EventID
    from hltrun.framework.weights import event_weight

    event = Event(EventID(1, 2, 3), 0, 0)
    assert event_weight(event, "f") == 1.0  # a file without the weight branch: every event weighs 1
    event.put_as("source", 2.5, "weight")
    assert event.has(WEIGHT_TAG) and event_weight(event, "f") == 2.5
    event.put_as("source", math.inf, "weight")
    with pytest.raises(ModuleError, match=r"module 'f': event weight 'source:weight' is inf \(run 1, lumi 2, event 3"):
        event_weight(event, "f")


# ------------------------------------------------------------------------ weights of any size, held exactly


def _filled(k: int, n: int, weight: float) -> dict:
    """A histogram of ``n`` events of one ``weight``, ``k`` of them above the cut, as hltrun.json's entry."""
    h = ScoreHistogram()
    _fill(h, [5.0] * k + [0.5] * (n - k), [weight] * n)
    return from_counters({**SETTINGS, **h.counters()})


@pytest.mark.parametrize("weight", [0.1, 0.7, 1e30, 1e-20, 1e20, 2.5e-3, float(np.float32(0.1))])
def test_weights_all_equal_give_the_unweighted_fraction_to_the_bit(weight):
    """Every event of weight c: sum w passed / sum w is k / n exactly. Dividing the two sums, each rounded to
    a float first, was one bit off for c = 0.1 (7 of 1300) and c = 1e30 (10 of 1000: 0.009999999999999998)."""
    for k, n in ((7, 1300), (10, 1000), (1, 3), (96, 1300), (0, 5), (5, 5)):
        entry = _filled(k, n, weight)
        assert entry["fraction_passed"] == k / n, (weight, k, n)
        assert entry["weights"]["total"]["sumw"] == pytest.approx(n * weight, rel=1e-15)
        assert entry["weights"]["total"]["sumw2"] == pytest.approx(n * weight * weight, rel=1e-15)


@pytest.mark.parametrize("weight", [1e-20, 1e-18, 5e-324, 1e-200])
def test_tiny_weights_are_held_exactly(weight):
    """Weights in units of 2^-64 made 1e-20 a 0 (sum of weights 0: the fraction "undefined") and 1e-18 an 18
    (2.4 % off): every double is now a whole number of units."""
    entry = _filled(3, 8, weight)
    t = entry["weights"]["total"]
    assert t["sumw"] == 8 * weight and t["sumw_passed"] == 3 * weight
    assert entry["fraction_passed"] == 3 / 8
    lo, hi = entry["fraction_interval_68"]
    assert lo < 3 / 8 < hi  # a real interval: sum w^2 (1e-400 for 1e-200) scaled, not a float that underflows
    want = rate(Tally(3, 3.0, 3.0), Tally(8, 8.0, 8.0), 1.0, interval=False)  # the same fraction, weights 1
    assert entry["fraction_interval_68"] == pytest.approx([want.low_hz, want.high_hz], rel=1e-12)


def test_l1_turn_on_with_tiny_weights_is_the_unweighted_one():
    """The turn-on's bins with every weight 1e-20: sum w fired / sum w per bin is k / n (it was NaN: the
    fixed-point sums were 0)."""
    from hltrun.framework.services.rates import _weighted_turn_on
    from hltrun.framework.weights import excess

    dw, dw2 = excess(1e-20)
    n, k = [40, 30, 9], [0, 12, 9]
    counters = {}
    for edge, ni, ki in zip((100, 125, 150), n, k):
        counters.update({f"pt_all_w:{edge}": ni * dw, f"pt_all_w2:{edge}": ni * dw2,
                         f"pt_fired_w:S:{edge}": ki * dw, f"pt_fired_w2:S:{edge}": ki * dw2})
    eff, bounds = _weighted_turn_on(counters, "S", [100, 125, 150], n, k)
    assert eff == [0.0, 0.4, 1.0]
    assert all(lo <= e <= hi and hi > lo for e, (lo, hi) in zip(eff, bounds))


def test_scores_root_global_statistics_are_a_weighted_histograms(tmp_path):
    """uproot's own conversion wrote fEntries as the sum of weights and fTsumw2 as fTsumw: ROOT's GetEntries()
    said 1.3e23 for 1,300 events of weight 1e20 and GetEffectiveEntries() (fTsumw^2 / fTsumw2) the sum of
    weights. Now fEntries counts the events filled and fTsumw2 is the in-range sum of w^2; bins unchanged."""
    from hltrun.framework.report.root_histograms import write_score_root

    h = ScoreHistogram()
    values, weights = [0.5, 4.0, 9.0, 2e6, -1.0] * 4 + [math.nan], [1e20, -3e20, 2e20, 5e19, 1e20] * 4 + [7e20]
    _fill(h, values, weights)
    h.no_score(4e20)
    entry = from_counters({**SETTINGS, **h.counters()})
    write_score_root(tmp_path, {"f": entry})
    with uproot.open(tmp_path / "scores.root") as f:
        for key, sel in (("all", [True] * 20), ("passed", [v > SETTINGS["threshold"] for v in values[:20]])):
            th1 = f[f"f/{key}"]
            w = np.array([x for x, s in zip(weights[:20], sel) if s])
            v = np.array([x for x, s in zip(values[:20], sel) if s])
            inside = (v >= entry["edges"][0]) & (v < entry["edges"][-1])  # fTsumw, fTsumw2: in range, as ROOT's
            assert th1.member("fEntries") == len(w)  # NaN and no score are on no axis
            assert th1.member("fTsumw") == pytest.approx(w[inside].sum(), rel=1e-12)
            assert th1.member("fTsumw2") == pytest.approx((w[inside] ** 2).sum(), rel=1e-12)
            np.testing.assert_allclose(th1.values(flow=True).sum(), w.sum(), rtol=1e-12)
            np.testing.assert_allclose(th1.variances(flow=True).sum(), (w ** 2).sum(), rtol=1e-12)
            boost = th1.to_boost()  # boost-histogram reads it back: the same sums
            assert boost.sum(flow=True).value == pytest.approx(w.sum(), rel=1e-12)
