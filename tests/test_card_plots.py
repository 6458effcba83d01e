"""hltcard's plots: the cut labels do not print over each other, a pT bin where nothing (or everything)
passed gets an error bar, and the legend covers no point. A synthetic card result; the figures are caught
before they are rendered (``card_write._finish``), their artists checked, never pixels."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hltrun.tools.physics import card_write
from hltrun.tools.physics.eval_stats import pass_rate

pytest.importorskip("matplotlib")


def _result() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    bkg = SimpleNamespace(event_score=rng.lognormal(0.0, 0.4, 400), weight=np.ones(400))
    sig = SimpleNamespace(event_score=rng.lognormal(0.8, 0.6, 200), weight=np.ones(200))
    cuts = {"bkg_eff_1e-1": 1.60, "bkg_eff_1e-2": 1.65}  # two cuts close together: their labels side by side
    scores = np.array([0.5] * 30 + [2.0] * 3)  # a bin with passes, and one bin where nothing passed
    rows = {k: {"inclusive": [pass_rate(scores, None, c).to_json(), pass_rate(scores[:30], None, c).to_json()]}
            for k, c in cuts.items()}
    return {"background": bkg, "signals": [("sig.root", sig)], "effs": {k: 0.1 for k in cuts},
            "entry": SimpleNamespace(scalar=cuts), "plan": SimpleNamespace(reduce="max"),
            "pt_edges_gev": [0.0, 600.0], "pt_rates": rows}


@pytest.fixture
def figures(monkeypatch) -> dict[str, Any]:
    caught: dict[str, Any] = {}
    real_finish = card_write._finish

    def catch(fig, ax, xlabel, ylabel, title):
        png = real_finish(fig, ax, xlabel, ylabel, title)  # labelled and laid out as rendered, then measured
        caught[title] = SimpleNamespace(fig=fig, ax=ax, texts=[t.get_window_extent() for t in ax.texts],
                                        legend=ax.get_legend().get_window_extent(), frame=ax.get_window_extent())
        return png

    monkeypatch.setattr(card_write, "_finish", catch)
    card_write.plots(_result(), "m")
    return caught


def test_the_cut_labels_do_not_overlap(figures) -> None:
    # kills: every cut's label at the same height, two close cuts' names printed over each other
    boxes = figures["m: score distributions and cuts"].texts
    assert len(boxes) == 2 and not boxes[0].overlaps(boxes[1])


def test_a_bin_where_nothing_passed_has_an_error_bar(figures) -> None:
    # kills: "0 ± 0" drawn for a bin where no event passed (the binomial error is zero wide there), a rate
    # known exactly from 30 events, beside the card table's "0 (0 of 30)"
    ax = figures["m: background pass rate vs leading-jet pT"].ax
    assert len(ax.containers) == 2
    for container in ax.containers:
        (bars,) = container.lines[2]  # the vertical error bars, one segment per bin
        (x_zero, y_zero), (_, y_top) = bars.get_segments()[1]
        assert y_zero == 0.0 and y_top > 1.0  # 0 passed of 30: the 68 % upper limit is several %


def test_the_legends_are_beside_the_frames(figures) -> None:
    # kills: the legend inside the frame, over the highest pT bin's points
    for f in figures.values():
        assert f.legend.x0 >= f.frame.x1 and f.legend.x1 <= f.fig.bbox.x1 + 1


def test_a_far_signal_tail_leaves_the_background_its_bins(monkeypatch) -> None:
    # kills: 60 linear bins from the lowest to the highest score of all samples: a signal event scoring 100x
    # the background's top (a fresh G* sample's tail reached 8x) left the whole background, and its cuts,
    # in one or two bins of the score plot
    caught: dict[str, Any] = {}
    real_finish = card_write._finish

    def catch(fig, ax, xlabel, ylabel, title):
        caught[title] = ax
        return real_finish(fig, ax, xlabel, ylabel, title)

    monkeypatch.setattr(card_write, "_finish", catch)
    r = _result()
    bkg = r["background"].event_score
    signal = r["signals"][0][1]
    signal.event_score = np.append(signal.event_score, 100 * bkg.max())
    signal.weight = np.append(signal.weight, 1.0)
    card_write.plots(r, "m")
    ax = caught["m: score distributions and cuts"]
    background = ax.patches[0]  # the background's filled histogram: its outline runs along the bin edges
    edges = np.unique(background.get_xy()[:, 0])
    assert np.count_nonzero((edges > bkg.min()) & (edges < bkg.max())) >= 10
