"""Anomaly score filter: the cut is strict, empty events are counted, thresholds come from the card file
(or a clear error naming the module and the file). Reductions: test_output_and_cli.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.event import Event, EventID
from framework.schema import build
from modules.anomaly_filter import AnomalyFilterParameters, AnomalyScoreFilter
from modules.products import JetScores


def make(**params) -> AnomalyScoreFilter:
    f = AnomalyScoreFilter("f", build(AnomalyFilterParameters, params, "modules.f"))
    f.begin_job(None)
    return f


def decide(f: AnomalyScoreFilter, scores, valid=None, n: int = 1) -> bool:
    event = Event(EventID(1, 1, n), 0, 0)
    event.put_as("vae", JetScores(np.asarray(scores, np.float32), None,
                                  None if valid is None else np.asarray(valid, bool)))
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
    assert f.summary() == {"threshold": 0.5, "reduce": "sum", "events_without_score": 4}


def test_threshold_from_the_card_file(tmp_path):
    card = tmp_path / "thresholds.json"
    card.write_text(json.dumps({"m": {"bkg_eff_1e-3": 1.25, "bkg_eff_1e-2": 0.75}}))
    f = make(thresholds_file=str(card), model="m", background_efficiency="1e-3")
    assert f.threshold == 1.25 and f.summary()["threshold"] == 1.25
    with pytest.raises(ConfigError, match=rf"^modules\.f: {card} has no other\.bkg_eff_1e-2 threshold$"):
        make(thresholds_file=str(card), model="other")
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=rf"^modules\.f: no threshold given and thresholds file {missing} not found$"):
        make(thresholds_file=str(missing))
    card.write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^modules\.f: cannot read thresholds file {card}: "):
        make(thresholds_file=str(card))
