"""The anomaly filter's score distribution with its cut (hltrun.json ``score_histograms``, report.html): fixed
bins that merge by addition, and an "above the cut" count equal to the filter's passed count. The end-to-end
checks bin the scores the output file holds (every event written) with numpy, never with hltrun's code."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.results import add_stream_summary, merge_counters
from hltrun.framework.score_histogram import EDGES, ScoreHistogram, from_counters

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "configs" / "path.yaml"
CARD = ROOT / "data" / "models" / "thresholds.json"


def numpy_histogram(values: np.ndarray, passed: np.ndarray, edges: list[float]) -> dict[str, object]:
    """The expected entry from values and decisions, with numpy (bins [a, b), flows, NaN; nothing is
    ``nonpositive`` since the bins cover both signs)."""
    e = np.asarray(edges)
    v = np.asarray(values, dtype=np.float64)
    inside = (v >= e[0]) & (v < e[-1])
    out: dict[str, object] = {
        "counts": np.histogram(v[inside], e)[0].tolist(),
        "passed": np.histogram(v[inside & passed], e)[0].tolist(),
        "underflow": int(np.count_nonzero(v < e[0])),
        "overflow": int(np.count_nonzero(v >= e[-1])),
        "nonpositive": 0,
        "nan": int(np.count_nonzero(np.isnan(v))),
        "events_passed": int(np.count_nonzero(passed)),
    }
    return out


def _subset(h: dict, keys) -> dict:  # noqa: ANN001
    return {k: h[k] for k in keys}


# ------------------------------------------------------------------------ the bins


def test_bins_are_numpys_and_merge_by_addition():
    rng = np.random.default_rng(7)
    values = np.concatenate([10 ** rng.uniform(-8, 8, 3000), [0.0, -1.0, -np.inf, np.inf, np.nan, 1e-6, 1.0, 10.0,
                                                              1e6, EDGES[57], np.nextafter(EDGES[57], 0)]])
    cut = 3.0
    passed = values > cut
    whole = ScoreHistogram()
    parts = [ScoreHistogram() for _ in range(3)]
    for i, (v, p) in enumerate(zip(values.tolist(), passed.tolist())):
        whole.fill(v, p)
        parts[i % 3].fill(v, p)
    whole.no_score()
    parts[1].no_score()
    summary = {"threshold": cut, "score_hist_of": "score"}
    h = from_counters({**summary, **whole.counters()})
    want = numpy_histogram(values, passed, h["edges"])
    assert _subset(h, want) == want
    assert h["no_score"] == 1 and h["events"] == len(values) + 1 and h["cut"] == cut
    # the signed log scale: 240 bins below 0 (mirrored), one around it, the 240 of before above it
    assert h["scale"] == "log" and h["edges"][241:] == list(EDGES) and h["edges"][:241] == [-e for e in EDGES[::-1]]
    # streams (add_stream_summary) then work units (merge_counters, as Dask's client): the same entry
    merged: dict = {}
    for part in parts[:2]:
        add_stream_summary(merged, {**summary, **part.counters()})
    unit = {**summary, **parts[2].counters()}
    assert from_counters(merge_counters(merged, unit)) == h


def test_score_over_cut_and_cuts_without_a_ratio():
    h = ScoreHistogram()
    h.fill_ratio(2.0, 1.0, True)  # 2
    h.fill_ratio(1.0, 2.0, False)  # 0.5
    h.fill_ratio(1.0, 0.0, True)  # a cut of 0 passes a positive score: no ratio, counted apart
    h.fill_ratio(-1.0, -2.0, True)
    h.fill_ratio(math.nan, 1.0, False)
    out = from_counters({"threshold": None, "score_hist_of": "score / cut", **h.counters()})
    assert out["quantity"] == "score / cut" and out["cut"] == 1.0
    assert out["cut_nonpositive"] == 2 and out["passed_cut_nonpositive"] == 2 and out["nan"] == 1
    want = numpy_histogram(np.array([2.0, 0.5]), np.array([True, False]), out["edges"])
    assert _subset(out, ["counts", "passed"]) == _subset(want, ["counts", "passed"])
    assert out["events"] == 5 and out["events_passed"] == 3


@pytest.mark.parametrize("working_point", ["inclusive", "vs_leading_jet_pt"])
def test_a_stream_that_saw_no_event_keeps_the_cut_and_the_quantity(working_point):
    """A filter fed by a producer that publishes no model takes its cut from the first scores: a stream
    instance that got no event (few events, a prescaled path) has none. Until 2026-12-07 the last stream's
    summary won: the histogram said ``cut: null`` (and ``quantity: "score"`` for score / cut values)."""
    from tests.test_anomaly_filter import binned_card, decide_pt, make

    busy, idle = make(working_point=working_point), make(working_point=working_point)
    assert decide_pt(busy, [1.5], [650.0]) is True  # the inclusive cut 0.5; the pT-binned one 1.0 (600-700 GeV)
    merged: dict = {}
    for stream in (busy, idle):  # the event loop's order: every instance of the label, the idle one last
        add_stream_summary(merged, stream.summary())
    h = from_counters(merged)
    ratio = working_point == "vs_leading_jet_pt"
    assert h["quantity"] == ("score / cut" if ratio else "score")
    assert h["cut"] == (1.0 if ratio else binned_card()["bkg_eff_1e-2"])
    assert merged["model"] == "m" and h["events"] == h["events_passed"] == 1


# ------------------------------------------------------------------------ end to end


def run_job(tmp_path: Path, *overrides: str, dask: int = 0) -> tuple[dict, dict[str, np.ndarray], str]:
    """The shipped path writing every event (scores kept): hltrun.json, the output's branches, report.html."""
    import uproot

    from hltrun.framework.cli import main

    out = tmp_path / "out.root"
    args = [str(PATH), "-q", "--report-dir", str(tmp_path / "r"), f"modules.out.file={out}",
            "modules.out.select_events=[]", "modules.vae.backend=onnxruntime", *overrides]
    if dask:
        args[1:1] = ["--dask", str(dask), "options.executor.eventsPerTask=1000"]
    assert main(args) == 0
    doc = json.loads((tmp_path / "r" / "hltrun.json").read_text())
    arrays = uproot.open(out)["Events"].arrays(["run", "luminosityBlock", "event", "vae_score", "vae_valid",
                                                 "HLT_AnomalyDetection"], library="np")
    return doc, arrays, (tmp_path / "r" / "report.html").read_text()


def event_scores(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each event's reduced score (reduce: max over its valid jets) from the output file."""
    return np.array([float(np.max(s[v])) if v.any() else np.nan for s, v in zip(arrays["vae_score"], arrays["vae_valid"])])


def check_against_output(doc: dict, arrays: dict[str, np.ndarray], values: np.ndarray, cut: float) -> dict:
    h = doc["score_histograms"]["anomalyFilter"]
    trig = doc["job"]["modules"]["anomalyFilter"]
    passed = values > cut
    want = numpy_histogram(values, passed, h["edges"])
    assert _subset(h, want) == want
    # above the cut in the histogram == the filter's Passed (TrigReport) == the path's decision in the file
    above = sum(h["passed"]) + sum(h[f"passed_{k}"] for k in ("underflow", "overflow", "nonpositive", "cut_nonpositive"))
    assert above == h["events_passed"] == trig["passed"] == int(arrays["HLT_AnomalyDetection"].sum())
    assert h["events"] == trig["executed"] == len(values) == doc["job"]["events_processed"]
    assert h["fraction_passed"] == pytest.approx(trig["passed"] / trig["executed"])
    return h


@pytest.mark.slow
def test_shipped_path_histogram_is_the_output_scores(tmp_path):
    doc, arrays, page = run_job(tmp_path)
    cut = json.loads(CARD.read_text())["conv_vae"]["bkg_eff_1e-2"]
    h = check_against_output(doc, arrays, event_scores(arrays), cut)
    assert h["quantity"] == "score" and h["cut"] == cut and 0 < h["events_passed"] < h["events"]
    section = page[page.index("<h2>Anomaly score and cut</h2>"):]
    assert 'alt="anomalyFilter: distribution of the score with the cut"' in section
    k, n = h["events_passed"], h["events"]
    assert f"above the cut {k:,} / {n:,} = {100 * (k / n):.3g} %" in section and "too few" not in section


@pytest.mark.slow
@pytest.mark.parametrize("how", ["streams", "dask"])
def test_streams_and_dask_units_add_up_to_the_output_scores(tmp_path, how):
    if how == "dask":
        pytest.importorskip("distributed")
        doc, arrays, _ = run_job(tmp_path, dask=2)
        assert doc["job"]["executor"]["type"] == "dask" and doc["job"]["executor"]["units"] >= 4
    else:
        doc, arrays, _ = run_job(tmp_path, "options.numberOfThreads=4", "options.numberOfStreams=4")
        assert doc["job"]["streams"] == 4
    cut = json.loads(CARD.read_text())["conv_vae"]["bkg_eff_1e-2"]
    check_against_output(doc, arrays, event_scores(arrays), cut)


def leading_pt(files: list[Path]) -> dict[tuple[int, int, int], float]:
    """The leading jet's pT among jets with constituents (the scored ones: all finite in the samples), per event."""
    import awkward as ak
    import uproot

    out = {}
    for file in files:
        a = uproot.open(file)["Events"].arrays(["run", "luminosityBlock", "event", "FatJet_pt", "FatJet_nConstituents"])
        pt = ak.max(a["FatJet_pt"][a["FatJet_nConstituents"] > 0], axis=1)
        for key, value in zip(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()), pt.tolist()):
            out[key] = value
    return out


@pytest.mark.slow
def test_pt_dependent_cut_histograms_score_over_cut(tmp_path):
    doc, arrays, page = run_job(tmp_path, "modules.anomalyFilter.working_point=vs_leading_jet_pt")
    card = json.loads(CARD.read_text())["conv_vae"]["vs_leading_jet_pt"]
    lo, hi = card["pt_range_gev"]
    pts = leading_pt([ROOT / "data" / "qcd_dijet.root", ROOT / "data" / "rsg_ww_3p5TeV.root"])
    keys = zip(arrays["run"].tolist(), arrays["luminosityBlock"].tolist(), arrays["event"].tolist())
    x = np.log(np.clip(np.array([pts[k] for k in keys]), lo, hi) / card["pt_ref_gev"])
    cuts = sum(c * x ** i for i, c in enumerate(card["bkg_eff_1e-2"]))  # the card's polynomial, longhand
    values = event_scores(arrays)
    assert (cuts > 0).all()
    h = doc["score_histograms"]["anomalyFilter"]
    want = numpy_histogram(values / cuts, values > cuts, h["edges"])
    assert _subset(h, want) == want
    assert h["quantity"] == "score / cut" and h["cut"] == 1.0
    assert h["events_passed"] == doc["job"]["modules"]["anomalyFilter"]["passed"] == int((values > cuts).sum())
    section = page[page.index("<h2>Anomaly score and cut</h2>"):]
    assert "divided by its own cut" in section and 'alt="anomalyFilter: distribution of the score / cut' in section


@pytest.mark.slow
def test_few_events_are_not_drawn_as_a_distribution(tmp_path):
    doc, arrays, page = run_job(tmp_path, "-n", "20")
    cut = json.loads(CARD.read_text())["conv_vae"]["bkg_eff_1e-2"]
    check_against_output(doc, arrays, event_scores(arrays), cut)
    section = page[page.index("<h2>Anomaly score and cut</h2>"):]
    assert re.search(r"only 20 events: too few for a distribution", section)


def test_page_says_no_events_and_a_cut_off_the_axis():
    pytest.importorskip("matplotlib")
    from hltrun.framework.report.html import _score_sections

    empty = from_counters({"threshold": None, "score_hist_of": "score"})
    assert empty["events"] == 0 and empty["fraction_passed"] is None
    h = ScoreHistogram()
    for v in (0.5, 2.0, -1.0):
        h.fill(v, v > -2e6)
    far = from_counters({"threshold": -2e6, "score_hist_of": "score", **h.counters()})
    page = "\n".join(_score_sections({"f": empty, "g": far}))
    assert "f: ran on no events." in page
    assert "g: the cut (-2000000.0) is not on the plot's axis (-1e+06 to 1e+06)" in page
    assert "g: only 3 events: too few for a distribution" in page and "3 / 3 = 100 %" in page


def test_no_empty_plot_when_no_score_falls_in_the_bins():
    """A network whose scores are all NaN with a pass-all cut: nothing lies in the bins, so no plot is drawn
    (it was an empty frame, and matplotlib warned on the job's stderr about its legend); the text says where
    the events are."""
    pytest.importorskip("matplotlib")
    import warnings

    from hltrun.framework.report.html import _score_sections

    h = ScoreHistogram()
    for i in range(80):
        h.fill(math.nan, False)
    nan = from_counters({"threshold": -1e30, "score_hist_of": "score", **h.counters()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = "\n".join(_score_sections({"f": nan}))
    assert "<img" not in page and "NaN: 80" in page and "0 / 80 = 0 %" in page
