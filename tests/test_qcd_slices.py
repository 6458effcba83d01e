"""Stitching pTHat slices into one physical QCD sample (tools/physics/qcd_slices.py): with pTHat drawn from a
known spectrum, the stitched slices must reproduce it in every region, near the slice thresholds
included, with the cross-section ratios measured from the slices' overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hltrun.tools.physics.qcd_slices import pthat_min_by_process, stitch_weights

POWER = 5.0  # dN/dpTHat ~ pTHat^-(POWER + 1): P(pTHat > t) ~ t^-POWER


def draw(rng: np.random.Generator, threshold: float, n: int) -> np.ndarray:
    return threshold * rng.random(n) ** (-1.0 / POWER)


def fraction(lo: float, hi: float) -> float:
    """P(lo <= pTHat < hi | pTHat > 600) of the spectrum."""
    return (lo / 600.0) ** -POWER - (hi / 600.0) ** -POWER


def test_stitched_slices_give_the_physical_spectrum():
    rng = np.random.default_rng(1)
    thresholds = [600.0, 850.0, 1150.0, 1450.0]
    pthat = [draw(rng, t, n) for t, n in zip(thresholds, (12_000, 12_000, 10_000, 10_000))]
    weights, sigma = stitch_weights(pthat, [np.ones(len(p)) for p in pthat], thresholds)
    # S_s / S_0 measured from the overlap, against the spectrum's own (t_s / 600)^-5
    for t, s in zip(thresholds, sigma):
        assert s == pytest.approx((t / 600.0) ** -POWER, rel=0.06)
    p, w = np.concatenate(pthat), np.concatenate(weights)
    for lo, hi in [(600, 700), (800, 900), (1100, 1200), (1400, 1500), (1500, 2000), (2000, 1e9)]:
        got = w[(p >= lo) & (p < hi)].sum() / w.sum()
        assert got == pytest.approx(fraction(lo, hi), rel=0.1), (lo, hi)
    # unstitched (every event weight 1) the high regions would be ~30x too populated
    assert np.mean(p >= 1450.0) > 10 * fraction(1450.0, 1e12)


def test_generator_weights_are_kept_within_a_slice():
    rng = np.random.default_rng(2)
    p0, p1 = draw(rng, 600.0, 20_000), draw(rng, 900.0, 20_000)
    g0 = np.where(p0 > 700.0, 2.0, 1.0)  # a slice whose generator weights vary
    weights, _ = stitch_weights([p0, p1], [g0, np.ones_like(p1)], [600.0, 900.0])
    below = p0 < 900.0
    np.testing.assert_allclose(weights[0][below] / g0[below], weights[0][below][0] / g0[below][0])


@pytest.mark.parametrize("thresholds, message", [
    ([850.0, 600.0], "distinct and increasing"),
    ([600.0, 600.0], "distinct and increasing"),
])
def test_bad_slices_are_refused(thresholds, message):
    p = [np.array([900.0, 1000.0]), np.array([900.0, 1000.0])]
    with pytest.raises(ValueError, match=message):
        stitch_weights(p, [np.ones(2), np.ones(2)], thresholds)


def test_a_slice_below_its_threshold_or_without_overlap_is_refused():
    with pytest.raises(ValueError, match="holds events below its threshold"):
        stitch_weights([np.array([700.0]), np.array([800.0])], [np.ones(1), np.ones(1)], [600.0, 850.0])
    with pytest.raises(ValueError, match="cannot be stitched"):
        stitch_weights([np.array([700.0]), np.array([900.0])], [np.ones(1), np.ones(1)], [600.0, 850.0])


def test_thresholds_come_from_the_generation_config():
    from hltrun.tools.physics.generate_events import load_config

    table = pthat_min_by_process(load_config(Path(__file__).resolve().parents[1] / "tools/physics/generation.yaml"))
    assert table[0] == 600.0 and table[6] == 850.0 and table[7] == 1150.0 and table[8] == 1450.0
    assert table[1] == 0.0  # a signal process has no pTHat threshold
