"""N-subjettiness (tools/physics/substructure.py), the model card's tau21 baseline, against hand-computed jets.

tau_N = sum_i pT_i min_k dR_ik / (R0 sum_i pT_i), beta = 1, R0 = 0.8, exclusive-kT axes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("fastjet", reason="FastJet (extras 'test' and 'generate') not installed")

from hltrun.tools.physics.substructure import R0, nsubjettiness, tau21  # noqa: E402


def test_two_equal_hard_particles():
    """Axis of tau1 midway (the E-scheme sum of two equal massless particles at rapidity 0);
    each particle is its own tau2 axis."""
    d = 0.4
    tau = nsubjettiness([100.0, 100.0], [0.0, 0.0], [d / 2, -d / 2], [2])
    assert tau[0, 0] == pytest.approx(d / (2 * R0), rel=1e-9)
    assert tau[0, 1] == pytest.approx(0.0, abs=1e-12)


def test_unequal_particles_weight_the_axis_by_pt():
    """pT 300 and 100 at phi = +-0.3, rapidity 0: the tau1 axis is at phi_a = atan2((p1-p2) sin 0.3,
    (p1+p2) cos 0.3), rapidity 0; tau1 = (p1 |0.3 - phi_a| + p2 |0.3 + phi_a|) / (R0 (p1 + p2))."""
    p1, p2, h = 300.0, 100.0, 0.3
    phi_a = math.atan2((p1 - p2) * math.sin(h), (p1 + p2) * math.cos(h))
    want = (p1 * abs(h - phi_a) + p2 * abs(h + phi_a)) / (R0 * (p1 + p2))
    tau = nsubjettiness([p1, p2], [0.0, 0.0], [h, -h], [2])
    assert tau[0, 0] == pytest.approx(want, rel=1e-9)
    assert want != pytest.approx(2 * h / (2 * R0))  # the pT weighting matters here


def test_three_particles_tau2_from_the_kt_pair():
    """Two soft particles 0.1 apart are kT-merged first (axis between them), the hard one 0.5 away
    is the second axis: tau2 = 2 * 50 * 0.05 / (R0 * 130)."""
    tau = nsubjettiness([50.0, 50.0, 30.0], [0.0, 0.0, 0.0], [0.05, -0.05, 0.5], [3])
    assert tau[0, 1] == pytest.approx(2 * 50 * 0.05 / (R0 * 130), rel=1e-9)
    assert tau21([50.0, 50.0, 30.0], [0.0, 0.0, 0.0], [0.05, -0.05, 0.5], [3])[0] == pytest.approx(
        tau[0, 1] / tau[0, 0])


def test_phi_wraps_and_jets_are_independent():
    """A jet straddling phi = pi is as compact as one at phi = 0; jets of one call do not mix."""
    d = 0.4
    pt = [100.0, 100.0, 100.0, 100.0]
    eta = [0.0, 0.0, 1.0, 1.0]
    phi = [math.pi - d / 2, -math.pi + d / 2, d / 2, -d / 2]
    tau = nsubjettiness(pt, eta, phi, [2, 2])
    np.testing.assert_allclose(tau[:, 0], [d / (2 * R0)] * 2, rtol=1e-9)


def test_few_constituents_and_bad_counts():
    tau = nsubjettiness([10.0, 5.0, 5.0], [0.0, 0.3, 0.3], [0.0, 1.0, 1.2], [1, 2, 0])
    assert tau[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)  # one constituent: its own axis
    assert tau[1, 1] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(tau[2]).all()  # no constituent: undefined
    assert np.isnan(tau21([10.0], [0.0], [0.0], [1])[0])  # tau1 = 0: tau21 undefined
    with pytest.raises(ValueError, match="sum of counts"):
        nsubjettiness([1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3])


def test_distances_use_rapidity():
    """Equal pT at eta 0.8 and 1.2, same phi: the massive tau1 axis has rapidity exactly 1
    (0.5 ln[(e^1.2 + e^0.8) / (e^-1.2 + e^-0.8)]), so tau1 = 0.2 / R0; its pseudorapidity is not 1."""
    tau = nsubjettiness([100.0, 100.0], [0.8, 1.2], [0.5, 0.5], [2])
    assert tau[0, 0] == pytest.approx(0.2 / R0, rel=1e-9)
    assert math.asinh((math.sinh(1.2) + math.sinh(0.8)) / 2) != pytest.approx(1.0, abs=1e-3)


def test_axes_are_exclusive_kt_not_anti_kt():
    """Hard A (phi 0) and B (phi 0.3), soft s (pT 1, phi -0.5): kT merges s into A first (d = pT_s^2 dR^2),
    anti-kT would merge A with B. kT axes: A + s (phi_a = atan2(-sin 0.5, 100 + cos 0.5)) and B."""
    phi_a = math.atan2(-math.sin(0.5), 100 + math.cos(0.5))
    want = (1 * abs(-0.5 - phi_a) + 100 * abs(phi_a)) / (R0 * 201)
    tau = nsubjettiness([100.0, 100.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.3, -0.5], [3])
    assert tau[0, 1] == pytest.approx(want, rel=1e-9)
