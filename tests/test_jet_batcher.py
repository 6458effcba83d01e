"""Jet batcher options on a hand-made jet collection whose every number is known here.

Three jets, pT 300 / 200 / 100 GeV (the source's order), each with its own constituents: jet j has
4 + j real constituents whose pT is 10*(j+1) + 0.5*k, so the batch shows which jet went where.
(The leading-jet choice on real events is pinned in test_shipped_path.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.framework.errors import ConfigError
from hltrun.framework.event import Event, EventID
from hltrun.framework.schema import build
from hltrun.modules.jet_batcher import JetBatcher, JetBatcherParameters
from hltrun.modules.jets import to_jet_relative
from hltrun.modules.products import JetCollection

PT = np.array([300.0, 200.0, 100.0], np.float32)


def collection() -> JetCollection:
    c = np.zeros((3, 120, 3), np.float32)
    for j in range(3):
        k = np.arange(4 + j)
        c[j, k, 0] = 0.1 * (j + 1)  # eta
        c[j, k, 1] = -3.0  # phi
        c[j, k, 2] = 10.0 * (j + 1) + 0.5 * k[::-1]  # pT, descending within the jet
    c[2, 6, 2] = 0.25  # a soft real constituent: still real (pT > 0)
    eta, phi = np.full(3, 0.5, np.float32), np.full(3, 3.0, np.float32)
    return JetCollection(PT, eta, phi, np.zeros(3, np.float32), np.array([4, 5, 7]), c, to_jet_relative(c, eta, phi))


def batch(**params):
    event = Event(EventID(1, 1, 1), 0, 0)
    event.put_as("source", collection())
    event.current_module = "batcher"
    JetBatcher("batcher", build(JetBatcherParameters, params, "modules.batcher")).produce(event)
    return event.get("batcher")


def test_default_two_leading_jets_relative():
    b = batch()
    np.testing.assert_array_equal(b.jet_pt, PT[:2])
    assert b.inputs.shape == (2, 100, 3) and b.relative is True
    np.testing.assert_allclose(b.inputs[:, 0, 2], [10.0 + 1.5, 20.0 + 2.0])  # each jet's own hardest constituent
    np.testing.assert_allclose(b.inputs[0, :4, 0], 0.1 - 0.5, rtol=1e-6)  # eta relative to the jet axis
    np.testing.assert_allclose(b.inputs[0, :4, 1], -3.0 - 3.0 + 2 * np.pi, rtol=1e-6)  # wrapped dphi
    assert b.mask.sum(axis=1).tolist() == [4, 5]


def test_a_collection_built_without_relative_coordinates_derives_them():
    """User code may build a JetCollection with absolute constituents only: a relative batcher then
    gets the same input as from a collection that carries them (it raised AttributeError before)."""
    full = collection()
    bare = JetCollection(full.pt, full.eta, full.phi, full.mass, full.n_constituents, full.constituents)
    np.testing.assert_array_equal(bare.relative, full.relative)
    spec_inputs = bare.model_input(JetBatcher("b", build(JetBatcherParameters, {}, "modules.b")).spec)[0]
    np.testing.assert_array_equal(spec_inputs, batch().inputs)


def test_all_jets_absolute_and_the_soft_constituent_is_real():
    b = batch(max_jets=0, relative=False)
    np.testing.assert_array_equal(b.jet_pt, PT)
    assert b.relative is False
    np.testing.assert_allclose(b.inputs[2, :6, 0], 0.3)  # absolute eta
    np.testing.assert_allclose(b.inputs[2, :6, 1], -3.0)
    assert b.mask.sum(axis=1).tolist() == [4, 5, 7]  # pT 0.25 > 0 counts as real


def test_min_jet_pt_and_short_padding():
    b = batch(max_jets=3, min_jet_pt=200.0)  # >= 200 GeV: the first two
    np.testing.assert_array_equal(b.jet_pt, PT[:2])
    assert len(batch(max_jets=3, min_jet_pt=250.0)) == 1
    assert len(batch(min_jet_pt=500.0)) == 0
    short = batch(n_constituents=5, max_jets=3)
    assert short.inputs.shape == (3, 5, 3) and short.mask.sum(axis=1).tolist() == [4, 5, 5]


@pytest.mark.parametrize("params,ok", [({"max_jets": 0}, True), ({"max_jets": -1}, False),
                                       ({"n_constituents": 1}, True), ({"n_constituents": 0}, False)])
def test_parameter_limits(params, ok):
    if ok:
        build(JetBatcherParameters, params, "modules.batcher")
    else:
        key = next(iter(params))
        with pytest.raises(ConfigError, match=rf"modules.batcher.*{key} must be >= {0 if key == 'max_jets' else 1}, "
                                              rf"got {params[key]}"):
            build(JetBatcherParameters, params, "modules.batcher")
