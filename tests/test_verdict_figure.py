"""hltbench verdict's page: the per-event plot draws each engine's figures as points on its log axis.

A synthetic verdict document (no engine runs); the figure is caught on its way to the page."""

from __future__ import annotations

from typing import Any

import pytest

from hltrun.framework.report import html as report_html
from hltrun.tools.bench.verdict import figure_html

Rectangle = pytest.importorskip("matplotlib.patches").Rectangle

DOC = {"cells": [], "model_name": "m", "budget_ms": 100.0,
       "engines": [{"engine": "onnxruntime", "real_per_event_ms": 0.375, "scorer_real_per_event_ms": 0.208},
                   {"engine": "tflite", "real_per_event_ms": 0.299, "scorer_real_per_event_ms": 0.115}]}


def test_the_per_event_plot_has_points_not_bars_on_its_log_axis(monkeypatch) -> None:
    # kills: bars on the log axis, whose lengths start at the axis' arbitrary left end: tflite's scorer
    # (0.115 of a 0.299 ms path) was drawn a fifth of the path's bar
    caught: list[Any] = []
    real_img = report_html.img
    monkeypatch.setattr(report_html, "img", lambda fig, alt: caught.append(fig) or real_img(fig, alt))
    assert "<img" in figure_html(DOC)
    (fig,) = caught
    right = fig.axes[1]
    assert right.get_xscale() == "log"
    assert not [p for p in right.patches if isinstance(p, Rectangle)]  # no bar
    drawn = {line.get_label(): sorted(line.get_xdata()) for line in right.get_lines()}
    assert drawn["path, mean real per event"] == sorted(e["real_per_event_ms"] for e in DOC["engines"])
    assert drawn["of it the scorer"] == sorted(e["scorer_real_per_event_ms"] for e in DOC["engines"])
    labels = ("path, mean real per event", "of it the scorer")
    points = [line for line in right.get_lines() if line.get_label() in labels]
    lo, hi = right.get_ylim()  # every engine's points inside the frame
    assert all(lo < y < hi for line in points for y in line.get_ydata())
