"""data/models/pass_rate_vs_pt.png: one legend (the first panel's) for every panel, so each series keeps its
colour in every panel. Drawn from the shipped metrics.json; the figure is caught before it is saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hltrun.tools.physics import eval_plots

METRICS = Path(__file__).resolve().parents[1] / "data" / "models" / "metrics.json"


def test_each_series_has_one_colour_in_every_panel(monkeypatch, tmp_path) -> None:
    # kills: the baselines' panels (no pT-dependent cut) drew their 0.1 % inclusive cut in the colour the
    # legend gives the models' "pT-dependent cut, independent sample, 1.0%"
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.colors import to_hex

    caught: list[Any] = []
    monkeypatch.setattr(eval_plots, "_save", lambda plt, fig, path: caught.append(fig))
    eval_plots.pass_rate_plot(plt, json.loads(METRICS.read_text()), tmp_path)
    (fig,) = caught
    colours: dict[str, set[str]] = {}
    for ax in fig.axes:
        for container in ax.containers:
            colours.setdefault(container.get_label(), set()).add(to_hex(container.lines[0].get_color()))
    plt.close(fig)
    assert len(fig.axes) >= 3 and len(colours) >= 3
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour per series, in every panel
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)  # and no two series share one
