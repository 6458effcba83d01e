"""Anomaly score filter: the cut is strict, empty events are counted, thresholds come with the scores
(the scorer's model's card, issue 10) or a clear error naming the module. Reductions:
test_output_and_cli.py; the scorer's card reading: test_robustness.py and test_bad_inputs.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from framework.errors import ConfigError, ModuleError
from framework.event import Event, EventID
from framework.schema import build
from modules.anomaly_filter import AnomalyFilterParameters, AnomalyScoreFilter
from modules.products import JetScores


def make(**params) -> AnomalyScoreFilter:
    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, params, "modules.f"))
    f.begin_job(SimpleNamespace(config=SimpleNamespace(modules={})))  # no scorer to ask: first scores decide
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
    assert f.summary() == {"threshold": 0.5, "model": None, "reduce": "sum", "events_without_score": 4}


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
