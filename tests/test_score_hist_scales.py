"""The score histogram of networks whose score is not a positive reconstruction loss: a logit (scores of either
sign) on the default signed log scale, a classifier's probability (piled up next to 0 and 1) on
``score_scale: probability``. Until 2026-12-07 the bins were log bins of positive values only: a logit's scores
<= 0 were one ``nonpositive`` counter and not drawn, and a sigmoid's scores within 1e-3 of 1 fell in one or two
bins. The end-to-end checks bin the scores the output file holds with numpy, never with hltrun's code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hltrun.framework.results import add_stream_summary, merge_counters
from hltrun.framework import score_histogram
from hltrun.framework.score_histogram import ScoreHistogram, from_counters
from tests.test_score_histogram import check_against_output, event_scores, numpy_histogram, run_job

SETTINGS = {"threshold": 0.0, "score_hist_of": "score"}


def _entry(h: ScoreHistogram, threshold: float) -> dict:
    return from_counters({**SETTINGS, "threshold": threshold, **h.counters()})


def test_a_negative_score_is_counted_in_a_drawable_bin():
    pytest.importorskip("matplotlib")
    from hltrun.framework.report.html import _score_sections

    values = [-2.5, -0.3, -1e-3, 0.0, 0.7] * 20  # a logit's scores, the cut at 0
    h = ScoreHistogram()
    for v in values:
        h.fill(v, v > 0.0)
    entry = _entry(h, 0.0)
    assert entry["nonpositive"] == 0 and entry["underflow"] == 0 and sum(entry["counts"]) == len(values)
    edges = np.asarray(entry["edges"])
    for v in set(values):  # each in its own bin, where numpy places it
        i = int(np.searchsorted(edges, v, side="right")) - 1
        assert edges[i] <= v < edges[i + 1] and entry["counts"][i] == values.count(v)
    assert sum(entry["passed"]) == entry["events_passed"] == 20
    page = "\n".join(_score_sections({"f": entry}))
    assert '<img alt="f: distribution of the score with the cut"' in page and "not on the plot" not in page


def test_a_classifiers_scores_spread_over_many_bins():
    rng = np.random.default_rng(3)
    values = np.concatenate([1 - 10 ** rng.uniform(-7, -3, 2000), 10 ** rng.uniform(-6, -3, 500), [0.0, 1.0]])
    cut = 1 - 1e-5
    wide, fine = ScoreHistogram(), ScoreHistogram(score_histogram.BINNINGS["probability"])
    for v in values.tolist():
        wide.fill(v, v > cut)
        fine.fill(v, v > cut)
    log = _entry(wide, cut)
    near_one = np.count_nonzero(np.asarray(log["counts"])[np.asarray(log["edges"][:-1]) >= 0.9])  # 1 or 2 bins
    entry = _entry(fine, cut)
    assert entry["scale"] == "probability" and near_one <= 2
    assert np.count_nonzero(entry["counts"]) >= 120  # 20 bins per decade of 1 - p, and of p
    want = numpy_histogram(values, values > cut, entry["edges"])
    assert {k: entry[k] for k in want} == want
    assert entry["edges"][0] == 0.0 and entry["edges"][-1] == math.nextafter(1.0, 2.0)  # 0 and 1 in bins
    assert sum(entry["passed"]) == entry["events_passed"] == int(np.count_nonzero(values > cut))


def test_the_page_points_a_probability_on_the_log_scale_to_the_probability_scale():
    """Scores in [0, 1] crowding 1 on the default scale: the text names ``score_scale: probability``; a
    reconstruction loss around 1 (values above it too) and the probability scale itself do not get the hint."""
    pytest.importorskip("matplotlib")
    from hltrun.framework.report.html import _score_sections

    rng = np.random.default_rng(5)
    crowded = (1 - 10 ** rng.uniform(-6, -1, 300)).tolist() + [1.0] * 20 + rng.uniform(0, 0.5, 100).tolist()
    loss = (10 ** rng.normal(0, 0.3, 400)).tolist()
    pages = {}
    for name, values, binning in (("crowded", crowded, "log"), ("loss", loss, "log"),
                                  ("fine", crowded, "probability")):
        h = ScoreHistogram(score_histogram.BINNINGS[binning])
        for v in values:
            h.fill(v, v > 0.9)
        pages[name] = "\n".join(_score_sections({"f": _entry(h, 0.9)}))
    hint = "<code>score_scale: probability</code> bins them in log (1 − p)"
    assert hint in pages["crowded"] and hint not in pages["loss"] and hint not in pages["fine"]


@pytest.mark.parametrize("scale", ["log", "probability"])
def test_two_halves_merge_into_the_whole_bit_for_bit(scale):
    """Streams (add_stream_summary) and work units (merge_counters) add the new bins' counters, weighted sums
    included, to the whole's entry exactly (== on floats)."""
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.normal(0, 3, 400), 1 / (1 + np.exp(-rng.normal(0, 8, 400))),
                             [0.0, 1.0, -1e-7, 1e-7, -np.inf, np.inf, np.nan, 2e6, -2e6]]).tolist()
    weights = rng.uniform(-0.5, 3.0, len(values)).tolist()
    binning = score_histogram.BINNINGS[scale]
    whole, halves = ScoreHistogram(binning), [ScoreHistogram(binning), ScoreHistogram(binning)]
    for i, (v, w) in enumerate(zip(values, weights)):
        whole.fill(v, v > 0.5, w)
        halves[i % 2].fill(v, v > 0.5, w)
    whole.no_score(2.5)
    halves[1].no_score(2.5)
    want = _entry(whole, 0.5)
    merged: dict = {}
    add_stream_summary(merged, {**SETTINGS, "threshold": 0.5, **halves[0].counters()})
    got = from_counters(merge_counters(merged, {**SETTINGS, "threshold": 0.5, **halves[1].counters()}))
    assert got == want and got["scale"] == scale and "weights" in got
    assert got["events"] == len(values) + 1


def test_an_older_summary_reads_as_it_did():
    """A summary written before the signed scale (no score_hist_scale): its positive bins keep their place, its
    0 < v < 1e-6 lies in the bin around 0, its ``nonpositive`` (no size, no sign) stays outside the bins."""
    old = {"threshold": 3.0, "score_hist_of": "score", "score_hist:5": 2, "score_hist_passed:200": 1,
           "score_hist:200": 1, "score_hist:underflow": 4, "score_hist:nonpositive": 3, "score_hist:nan": 1}
    entry = from_counters(old)
    edges = entry["edges"]
    assert entry["scale"] == "log" and entry["counts"][241 + 5] == 2 and entry["counts"][241 + 200] == 1
    assert edges[240] == -1e-6 and edges[241] == 1e-6 and entry["counts"][240] == 4
    assert entry["nonpositive"] == 3 and entry["nan"] == 1 and entry["events"] == 11 and entry["events_passed"] == 1


@pytest.mark.parametrize("override, words", [
    ("modules.anomalyFilter.threshold=2.5", "threshold 2.5 is outside it"),
    ("modules.anomalyFilter.working_point=vs_leading_jet_pt", "which is no probability"),
    # two jets' probabilities summed lie in [0, 2]: a sigmoid network's 500 QCD events all fell past the last bin,
    # the plot empty, exit 0
    ("modules.anomalyFilter.reduce=sum", "up to one per jet, which is no probability")])
def test_probability_scale_refuses_what_is_no_probability(capsys, override, words):
    from hltrun.framework.cli import main

    from tests.test_score_histogram import PATH

    assert main([str(PATH), "-q", "modules.anomalyFilter.score_scale=probability", override, "--dump"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "modules.anomalyFilter: score_scale: probability" in err[0] and words in err[0]


# ------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_a_logit_networks_histogram_is_the_output_scores(tmp_path):
    """A network whose score is a logit, its cut at 0: the histogram is numpy's binning of the output file's
    scores, those below 0 in bins, and the page draws them with the cut; scores.root holds the same bins."""
    import uproot

    from tests.tiny_models import logit_mlp_onnx

    model = logit_mlp_onnx(tmp_path / "logit.onnx")
    doc, arrays, page = run_job(tmp_path, f"modules.vae.model={model}", "modules.anomalyFilter.threshold=0.0")
    values = event_scores(arrays)
    h = check_against_output(doc, arrays, values, 0.0)
    assert h["scale"] == "log" and (values < 0).sum() > 100 and 0 < h["events_passed"] < h["events"]
    assert sum(h["counts"]) == h["events"] and h["nonpositive"] == 0
    section = page[page.index("<h2>Anomaly score and cut</h2>"):]
    assert 'alt="anomalyFilter: distribution of the score with the cut"' in section
    assert "not on the plot" not in section and "signed log scale" in section
    with uproot.open(tmp_path / "r" / "scores.root") as f:
        th1 = f["anomalyFilter/all"]
        assert th1.axis().edges().tolist() == h["edges"]
        assert th1.values(flow=True).tolist() == [h["underflow"], *h["counts"], h["overflow"]]


@pytest.mark.slow
def test_a_classifiers_histogram_on_the_probability_scale_is_the_output_scores(tmp_path):
    """A sigmoid's probability piled up near 1 (sigmoid(8 (logit + 2.5))), its cut 0.999: on the probability
    scale the scores above 0.99 spread over tens of bins; above the cut is the filter's Passed."""
    from tests.tiny_models import logit_mlp_onnx

    model = logit_mlp_onnx(tmp_path / "p.onnx", bias=2.5, sigmoid_gain=8.0)
    doc, arrays, page = run_job(tmp_path, f"modules.vae.model={model}", "modules.anomalyFilter.threshold=0.999",
                                "modules.anomalyFilter.score_scale=probability")
    values = event_scores(arrays)
    h = check_against_output(doc, arrays, values, 0.999)
    counts, edges = np.asarray(h["counts"]), np.asarray(h["edges"])
    assert h["scale"] == "probability" and (values > 0.99).mean() > 0.5
    assert np.count_nonzero(counts[edges[:-1] >= 0.99]) >= 40
    section = page[page.index("<h2>Anomaly score and cut</h2>"):]
    assert "probability scale" in section and "not on the plot" not in section
