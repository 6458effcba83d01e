"""Anomaly score filter: the cut is strict, empty events are counted, thresholds come with the scores
(the scorer's model's card, issue 10) or a clear error naming the module. Reductions:
test_output_and_cli.py; the scorer's card reading: test_robustness.py and test_bad_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.framework.context import ModuleContext, ProductInfo
from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.event import Event, EventID
from hltrun.framework.schema import build
from hltrun.modules.anomaly_filter import AnomalyFilterParameters, AnomalyScoreFilter
from hltrun.modules.products import JetScores


def make(**params) -> AnomalyScoreFilter:
    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, params, "modules.f"))
    f.begin_job(ModuleContext("f"))  # no scorer publishing its model: the first scores decide
    return f


def decide(f: AnomalyScoreFilter, scores, valid=None, n: int = 1, model: str | None = None,
           thresholds: dict | None = None) -> bool:
    event = Event(EventID(1, 1, n), 0, 0)
    event.put_as("vae", JetScores(np.asarray(scores, np.float32), None,
                                  None if valid is None else np.asarray(valid, bool), model, thresholds))
    return f.filter(event)


def test_cut_is_strict_and_invalid_jets_are_ignored():
    f = make(threshold=0.5)
    assert decide(f, [0.5]) is False  # equal is not above
    assert decide(f, [np.nextafter(np.float32(0.5), np.float32(1))]) is True
    assert decide(f, [2.0, 0.1], valid=[False, True]) is False  # the invalid jet's score is not used
    assert decide(f, [np.nan]) is False


def test_events_without_score_are_counted_and_summarised():
    f = make(threshold=0.5, reduce="sum")
    for n in range(3):
        assert decide(f, [], n=n) is False
    assert decide(f, [0.3], valid=[False]) is False
    assert f.summary() == {"threshold": 0.5, "model": None, "reduce": "sum", "events_without_score": 4,
                           "score_hist_of": "score", "score_hist_scale": "log",
                           "score_hist:no_score": 4}  # in the score histogram too


def test_threshold_from_the_scores_card():
    card = {"bkg_eff_1e-3": 1.25, "bkg_eff_1e-2": 0.75}
    f = make(background_efficiency="1e-3")
    assert decide(f, [1.25], model="m", thresholds=card) is False  # the 1e-3 cut, strict
    assert f.threshold == 1.25 and f.summary()["threshold"] == 1.25 and f.summary()["model"] == "m"
    assert decide(f, [1.3], n=2, model="m", thresholds=card) is True
    with pytest.raises(ModuleError, match=r"scores from model 'other'"):  # later scores of another model
        decide(f, [1.3], n=3, model="other", thresholds=card)
    with pytest.raises(ConfigError, match=r"^modules\.f\.model: 'other' but the scores in 'vae' come from model 'm'$"):
        decide(make(model="other"), [1.0], model="m", thresholds=card)
    with pytest.raises(ConfigError, match=r"^modules\.f: no threshold given and the scores in 'vae' carry no "
                                          r"bkg_eff_1e-2 cut \(set modules\.f\.threshold\)$"):
        decide(make(), [1.0], model="m", thresholds={"bkg_eff_1e-3": 1.25})


def test_any_background_efficiency_the_card_holds():
    """``hltcard --bkg-eff 5e-2`` writes a ``bkg_eff_5e-2`` cut, but background_efficiency took only 1e-2 or
    1e-3 ('expected one of'): the cut could be made and never selected. Any efficiency the card holds is
    taken, in either spelling; one outside (0, 1) is a configuration line; one the card lacks names those
    it holds."""
    card = {"bkg_eff_5e-2": 0.9, "bkg_eff_1e-2": 1.5}
    for efficiency in ("5e-2", 0.05, "0.05"):
        f = make(background_efficiency=efficiency)
        assert decide(f, [1.0], model="m", thresholds=card) is True and f.threshold == 0.9
    for bad in ("1.5", 0, "abc"):
        with pytest.raises(ConfigError, match=r"^modules\.f: background_efficiency: expected a number between 0 and 1"):
            make(background_efficiency=bad)
    from types import SimpleNamespace  # what check_config reads of the scorer's ProductInfo

    scorer = {"src": SimpleNamespace(label="vae", metadata={"model": "m", "thresholds": card, "card": "t.json"})}
    with pytest.raises(ConfigError, match=r"no threshold given and t\.json has no m\.bkg_eff_1e-3 cut \(set "
                                          r"modules\.f\.threshold, or a background_efficiency it holds: 5e-2, 1e-2;"):
        AnomalyScoreFilter.check_config("f", build(AnomalyFilterParameters, {"background_efficiency": "1e-3"},
                                                   "modules.f"), scorer)


@pytest.mark.parametrize("given, said", [("2", "2"), ("0", "0"), ("-1", "-1"), ("1.5", "1.5"), ("1", "1"),
                                         ("'2'", "'2'"), ("nan", "'nan'"), ("123456789", "123456789"),
                                         ("1.0000001", "1.0000001"), ("2.5e+20", "2.5e+20")])
def test_an_efficiency_outside_0_1_is_one_configuration_line_with_the_value_as_written(given, said, capfd):
    """``background_efficiency: 2`` (a rate in percent, say): the schema had made it 2.0 before the check,
    and the line said "got 2.0", a value the user never wrote. Exit 2, the key and the value as given."""
    from pathlib import Path

    from hltrun.framework.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    code = main([str(config), "-q", f"modules.anomalyFilter.background_efficiency={given}"])
    errors = [line for line in capfd.readouterr().err.splitlines() if "error" in line]
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith("hltrun: error: command line (override ")
    assert errors[0].endswith("): modules.anomalyFilter: background_efficiency: expected a number between 0 and 1 "
                              f"(exclusive) like 1e-2, got {said}")


@pytest.mark.parametrize("other_card", [False, True], ids=["no-card", "card-of-other-models"])
def test_a_model_without_cuts_is_sent_to_hltcard_not_to_a_card_that_is_not_there(other_card, tmp_path, capfd):
    """A user's first model, no cut made: the line said "<folder>/thresholds.json has no mine.bkg_eff_1e-2 cut (...
    a background_efficiency it holds: none; hltcard --bkg-eff makes others)", of a file that did not exist (or
    held other models' cuts only). It names what is missing and the command that makes the cuts."""
    import shutil
    from pathlib import Path

    from hltrun.framework.cli import main

    repo = Path(__file__).resolve().parents[1]
    model = tmp_path / "mine.onnx"
    shutil.copy(repo / "data" / "models" / "conv_vae.onnx", model)
    card = tmp_path / "thresholds.json"
    if other_card:
        card.write_text('{"theirs": {"bkg_eff_1e-2": 1.0}}')
    code = main([str(repo / "configs" / "path.yaml"), "-q", f"modules.vae.model={model}"])
    errors = [line for line in capfd.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1, errors
    lacking = f"{card} has none for it" if other_card else f"there is no {card}"
    assert errors[0].endswith(f"modules.anomalyFilter: no threshold given and model 'mine' has no cuts yet: {lacking} "
                              f"(set modules.anomalyFilter.threshold, or make its cuts once with hltcard MODEL "
                              f"--background QCD.root --bkg-eff 1e-2: docs/your-model.md)"), errors[0]


# ------------------------------------------------------------------ pT-dependent working point (issue 12)

EDGES = [600.0, 700.0, 850.0, 1000.0, 1300.0, 1600.0]
# cuts that go up and down, so an event judged in a neighbouring bin gets another decision
CUTS = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0]


def binned_card(**extra) -> dict:
    from hltrun.modules.working_point import parse_pt_binned

    card = {"bkg_eff_1e-2": 0.5, "bkg_eff_1e-3": 0.9,
            "vs_leading_jet_pt": parse_pt_binned({"edges_gev": EDGES, "bkg_eff_1e-2": CUTS,
                                                  "bkg_eff_1e-3": [c + 10 for c in CUTS]})}
    card.update(extra)
    return card


def decide_pt(f: AnomalyScoreFilter, scores, jet_pt, card=None, n: int = 1) -> bool:
    event = Event(EventID(1, 1, n), 0, 0)
    event.put_as("vae", JetScores(np.asarray(scores, np.float32), None, None, "m", card or binned_card(),
                                  None if jet_pt is None else np.asarray(jet_pt, np.float32)))
    return f.filter(event)


def test_pt_binned_cut_just_above_and_below_in_every_bin():
    f = make(working_point="vs_leading_jet_pt")
    for i, (lo, cut) in enumerate(zip(EDGES, CUTS)):
        pt = lo + 1.0
        assert decide_pt(f, [cut + 1e-3, 0.0], [pt, 250.0], n=2 * i) is True, (lo, cut)
        assert decide_pt(f, [cut - 1e-3, 0.0], [pt, 250.0], n=2 * i + 1) is False, (lo, cut)
        assert decide_pt(f, [np.float32(cut)], [pt]) is False  # strict, as the inclusive cut
    assert f.summary()["working_point"] == "vs_leading_jet_pt" and f.summary()["thresholds"] == CUTS
    assert f.summary()["edges_gev"] == EDGES


def test_pt_binned_cut_at_the_bin_edges_and_beyond_the_last():
    f = make(working_point="vs_leading_jet_pt")
    # an edge belongs to the bin it opens: 700 GeV is judged with the 700-850 cut (3.0), not 1.0
    assert decide_pt(f, [2.5], [700.0]) is False and decide_pt(f, [2.5], [np.nextafter(np.float32(700), 0)]) is True
    assert decide_pt(f, [4.5], [1300.0]) is True and decide_pt(f, [4.5], [1299.9]) is False
    # beyond the last edge the last (open) bin's cut applies, however hard the jet
    assert decide_pt(f, [5.9], [1600.0]) is False and decide_pt(f, [6.1], [5000.0]) is True
    # below the first edge the first bin's cut applies
    assert decide_pt(f, [1.1], [300.0]) is True and decide_pt(f, [0.9], [300.0]) is False


def test_pt_binned_cut_uses_the_leading_jet_of_the_event():
    """Second-jet or mis-binned lookups give the other decision here: the cut is 5.0 (1000-1300 GeV,
    the leading jet), not 1.0 (the 650 GeV jet), not 2.0 or 4.0 (the neighbouring bins)."""
    f = make(working_point="vs_leading_jet_pt")
    assert decide_pt(f, [4.5, 4.5], [650.0, 1100.0]) is False  # leading jet listed second: still 5.0
    assert decide_pt(f, [5.5, 0.1], [1100.0, 650.0]) is True
    assert decide_pt(f, [1.5, 0.1], [650.0, 640.0]) is True   # 600-700: 1.0
    assert decide_pt(f, [2.5, 0.1], [900.0, 640.0]) is True   # 850-1000: 2.0, not 700-850's 3.0
    assert decide_pt(f, [2.5, 0.1], [800.0, 640.0]) is False  # 700-850: 3.0


def test_pt_binned_cut_of_the_configured_efficiency():
    f = make(working_point="vs_leading_jet_pt", background_efficiency="1e-3")
    assert decide_pt(f, [10.5], [650.0]) is False and decide_pt(f, [11.5], [650.0]) is True


def test_pt_binned_working_point_needs_the_cards_key_and_the_jet_pt():
    card = {"bkg_eff_1e-2": 0.5}
    with pytest.raises(ConfigError, match=r"^modules\.f\.working_point: vs_leading_jet_pt but the scores in 'vae' "
                                          r"carry no\.vs_leading_jet_pt cuts \(regenerate the card"):
        decide_pt(make(working_point="vs_leading_jet_pt"), [1.0], [700.0], card=card)
    with pytest.raises(ModuleError, match=r"needs the jet pT of the scored jets"):
        decide_pt(make(working_point="vs_leading_jet_pt"), [1.0], None)
    with pytest.raises(ConfigError, match=r"^modules\.f: threshold: a fixed threshold \(0\.5\) and working_point "
                                          r"vs_leading_jet_pt exclude each other"):
        make(threshold=0.5, working_point="vs_leading_jet_pt")
    with pytest.raises(ConfigError, match=r"expected one of 'inclusive' \| 'vs_leading_jet_pt'"):
        make(working_point="per_jet")
    # the inclusive working point ignores the pT-binned cuts
    f = make()
    assert decide_pt(f, [0.6], [1700.0]) is True and f.threshold == 0.5


def _scorer_config(tmp_path, card: dict):
    """The context of a filter reading a scorer whose model file is in tmp_path, with the card
    tmp_path/thresholds.json: what the scorer publishes of its scores (its model, thresholds)."""
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters

    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "thresholds.json").write_text(__import__("json").dumps({"m": card}))
    params = build(VAEAnomalyScorerParameters, {"model": str(tmp_path / "m.onnx")}, "modules.vae")
    from hltrun.modules.vae_scorer import VAEAnomalyScorer

    return ModuleContext("f", inputs={"src": ProductInfo("vae", "VAEAnomalyScorer", JetScores, VAEAnomalyScorer, params)})


def test_card_without_or_with_a_broken_pt_binned_entry_is_one_config_error(tmp_path):
    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, {"working_point": "vs_leading_jet_pt"}, "modules.f"))
    with pytest.raises(ConfigError, match=r"^modules\.f\.working_point: vs_leading_jet_pt but \S+thresholds\.json "
                                          r"has no m\.vs_leading_jet_pt cuts \(regenerate"):
        f.begin_job(_scorer_config(tmp_path, {"bkg_eff_1e-2": 0.5}))
    with pytest.raises(ConfigError, match=r"^modules\.f\.working_point: vs_leading_jet_pt but \S+ has no "
                                          r"m\.vs_leading_jet_pt\.bkg_eff_1e-2 cuts"):
        f.begin_job(_scorer_config(tmp_path, {"vs_leading_jet_pt": {"edges_gev": [600], "bkg_eff_1e-3": [1.0]}}))
    for broken, why in (({"edges_gev": [700, 600], "bkg_eff_1e-2": [1, 2]}, "not strictly increasing"),
                        ({"edges_gev": [600, 700], "bkg_eff_1e-2": [1]}, "expected 2 finite cuts"),
                        ({"edges_gev": [], "bkg_eff_1e-2": []}, "non-empty list"),
                        ([1, 2], "expected a mapping"),
                        ({"pt_ref_gev": 1000, "pt_range_gev": [2000, 600], "bkg_eff_1e-2": [1]},
                         r"pt_range_gev: expected \[lo, hi\] with 0 < lo < hi")):
        with pytest.raises(ConfigError, match=rf"^modules\.vae: thresholds card \S+thresholds\.json: m\.vs_leading_jet_pt: .*{why}"):
            f.begin_job(_scorer_config(tmp_path, {"bkg_eff_1e-2": 0.5, "vs_leading_jet_pt": broken}))
    ok = {"bkg_eff_1e-2": 0.5, "vs_leading_jet_pt": {"edges_gev": EDGES, "bkg_eff_1e-2": CUTS}}
    f.begin_job(_scorer_config(tmp_path, ok))
    assert f.binned is not None and f.binned.cuts["bkg_eff_1e-2"] == tuple(CUTS) and f.model_id == "m"
    # the smooth form, read from the card file as the trigger reads it
    f.begin_job(_scorer_config(tmp_path, {"bkg_eff_1e-2": 0.5, "vs_leading_jet_pt": {
        "pt_ref_gev": 1000.0, "pt_range_gev": [600.0, 2000.0], "bkg_eff_1e-2": [0.5, 0.1]}}))
    assert f.binned.cut("bkg_eff_1e-2", 1000.0) == 0.5


# ------------------------------------------------------------------ smooth pT-dependent working point (issue 23)

SMOOTH = {"pt_ref_gev": 1000.0, "pt_range_gev": [600.0, 2000.0], "bkg_eff_1e-2": [2.0, 1.0, 1.0],
          "bkg_eff_1e-3": [5.0]}


def smooth_card() -> dict:
    from hltrun.modules.working_point import parse_pt_cuts

    return {"bkg_eff_1e-2": 0.5, "bkg_eff_1e-3": 0.9, "vs_leading_jet_pt": parse_pt_cuts(SMOOTH)}


def test_smooth_cut_at_the_leading_jets_pt():
    """cut = 2 + x + x^2, x = ln(pT / 1 TeV), pT held in [600, 2000]: an event is judged with the cut
    at ITS leading jet's pT, so a second-jet lookup or an unclamped pT gives the other decision."""
    f = make(working_point="vs_leading_jet_pt")
    card = smooth_card()
    n = iter(range(1000))
    for pt in (600.0, 800.0, 1000.0, 1500.0, 2000.0):
        x = np.log(pt / 1000.0)
        cut = 2.0 + x + x * x
        assert decide_pt(f, [cut + 1e-3, 0.0], [pt, 250.0], card=card, n=next(n)) is True, pt
        assert decide_pt(f, [cut - 1e-3, 0.0], [pt, 250.0], card=card, n=next(n)) is False, pt
    # the leading jet listed second: cut at 2000 GeV (3.174), not at 640 GeV (1.753)
    assert decide_pt(f, [2.0, 2.0], [640.0, 2000.0], card=card, n=next(n)) is False
    # beyond the range: the cut at its ends, 3.174 and 1.750 (unclamped: 6.20 at 5 TeV, 2.246 at 300 GeV)
    assert decide_pt(f, [3.3], [5000.0], card=card, n=next(n)) is True
    assert decide_pt(f, [2.0], [300.0], card=card, n=next(n)) is True
    summary = f.summary()
    assert summary["working_point"] == "vs_leading_jet_pt" and summary["coefficients"] == [2.0, 1.0, 1.0]
    assert summary["pt_range_gev"] == [600.0, 2000.0]


def test_smooth_cut_of_the_configured_efficiency():
    f = make(working_point="vs_leading_jet_pt", background_efficiency="1e-3")
    assert decide_pt(f, [4.9], [700.0], card=smooth_card()) is False
    assert decide_pt(f, [5.1], [700.0], card=smooth_card(), n=2) is True


@pytest.mark.parametrize("kind", ["a character device", "a FIFO"])
def test_a_thresholds_card_that_is_no_regular_file_is_one_config_error(kind, tmp_path):
    """thresholds.json beside the model as a link to /dev/zero was read until memory ran out (MemoryError, or the
    kernel killing the job), and as a FIFO without a writer the job waited for ever: refused before it is read.
    /dev/null stands for the devices here: the same check, no memory at stake."""
    import os

    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters, card_table
    from tests.helpers import beside_a_fifo

    (tmp_path / "m.onnx").write_bytes(b"")
    card = tmp_path / "thresholds.json"
    if kind == "a FIFO":
        os.mkfifo(card)
    else:
        card.symlink_to(os.devnull)
    params = build(VAEAnomalyScorerParameters, {"model": str(tmp_path / "m.onnx")}, "modules.vae")
    raised = beside_a_fifo(card, lambda: card_table(params))
    assert isinstance(raised, ConfigError)
    assert str(raised) == (f"thresholds card {card} is {kind}, not a regular file (it is read whole: a device may "
                           "never end, a FIFO may never be written: copy it into a file first)")
