"""Non-finite jet inputs are caught however the jets arrive (issue 8.7's lean path must not lose them).

The source checks each chunk's model inputs once and vouches for their memory (``ModelInputs.finite``,
``finite.vouch_finite``) so that the backend can skip its per-event check on read-only views of
it (``known_finite``); a chunk holding a NaN, a batch built by hand, a collection built by hand, a batch
a user module rebuilt from the source's (``dataclasses.replace``) and a batch the backend had to convert
are all still checked jet by jet, with the same products and counters as before. The all-valid shortcut (``is_all_valid``)
must never hide an invalid jet from the scorer's counter or the filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.config import load
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.process import Process
from hltrun.modules.anomaly_filter import REDUCERS
from hltrun.modules.inference import create_backend
from hltrun.modules.finite import all_finite, known_finite, vouch_finite
from hltrun.modules.jets import InputSpec
from hltrun.modules.products import JetCollection, all_valid, is_all_valid
from tests.conftest import make_events, write_counts
from tests.test_anomaly_filter import decide, make

MODEL = Path(__file__).resolve().parents[1] / "data" / "models" / "conv_vae.onnx"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_all_finite_is_exact_also_when_the_fast_check_overflows():
    x = np.ones((3, 100, 3), np.float32)
    assert all_finite(x) and all_finite(np.zeros((0, 100, 3), np.float32))
    x[1, 2, 0] = 1e30  # finite, but its square overflows the dot product: the exact check decides
    assert all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 99, 1] = bad
        assert not all_finite(y)


def _path_products(tmp_path: Path, write_config, events: list[dict], name: str):
    """(JetBatch, JetScores) per event index and the job summary: the default path's modules on
    ``events``, chunks of 10 events."""
    root = write_counts(tmp_path / f"{name}.root", events)
    cfg = write_config(f"""
        process: FINITE
        source: {{type: RootJetSource, files: ["{root}"], chunk_size: 10}}
        modules:
          batcher: {{type: JetBatcher, src: source, max_jets: 2}}
          vae: {{type: VAEAnomalyScorer, src: batcher, backend: onnxruntime, model: "{MODEL}"}}
          anomalyFilter: {{type: AnomalyScoreFilter, src: vae}}
        paths: {{HLT: [batcher, vae, anomalyFilter]}}
        """, f"{name}.yaml")
    process = Process(load(cfg, []))
    seen: dict[int, tuple] = {}
    process.signals.post_event.connect(
        lambda ev, status: seen.__setitem__(ev.index, (ev.get("batcher"), ev.get("vae"), ev.trigger_results["HLT"])))
    summary = EventProcessor(process).run()
    return seen, summary


def test_a_chunk_with_a_nan_is_checked_jet_by_jet(tmp_path, write_config):
    events = make_events(30, seed=7)
    clean, clean_summary = _path_products(tmp_path, write_config, events, "clean")
    target = next(i for i in range(20, 30) if events[i]["jets"])  # in the third chunk
    jet = max(events[target]["jets"], key=lambda j: j["pt"])  # the leading jet: row 0 of the batch
    jet["c_eta"] = jet["c_eta"].copy()
    jet["c_eta"][int(np.argmax(jet["c_pt"]))] = np.nan  # its hardest constituent: never truncated
    dirty, summary = _path_products(tmp_path, write_config, events, "nan")
    assert sorted(dirty) == list(range(30))
    for i, (batch, scores, fired) in dirty.items():
        assert known_finite(batch.inputs) is (i < 20), i  # only the chunk holding the NaN is not
        assert known_finite(clean[i][0].inputs) is True
        if i == target:
            assert scores.valid.tolist()[0] is False and np.isnan(scores.score[0])
            assert not is_all_valid(scores.valid)
            ok = scores.valid
            np.testing.assert_allclose(scores.score[ok], clean[i][1].score[ok], rtol=1e-6)
            continue
        assert scores.valid.all(), i
        np.testing.assert_array_equal(scores.score, clean[i][1].score)
        assert fired == clean[i][2]
    assert summary.module_summaries["vae"]["nonfinite_jets"] == 1
    assert clean_summary.module_summaries["vae"]["nonfinite_jets"] == 0
    assert summary.module_summaries["vae"]["jets"] == clean_summary.module_summaries["vae"]["jets"]


def test_jets_built_by_hand_are_checked_by_the_backend():
    """A collection built by hand (no source chunk) cannot claim finite inputs: its NaN jet is found."""
    rng = np.random.default_rng(3)
    cons = np.zeros((2, 100, 3), np.float32)
    cons[:, :20] = rng.uniform(0.1, 1.0, (2, 20, 3))
    cons[1, 0, 0] = np.nan
    jets = JetCollection(np.array([900.0, 700.0], np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                         np.zeros(2, np.float32), np.array([20, 20]), cons)
    batch = jets.batch(InputSpec(2, 100, True))
    assert known_finite(batch.inputs) is False
    backend = create_backend("onnxruntime", MODEL).load()
    out = backend.run(batch.inputs)
    assert out["valid"].tolist() == [True, False] and np.isnan(out["score"][1])
    assert backend.counters["nonfinite_jets"] == 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_batch_the_backend_converts_is_checked():
    """float64 -> float32 can overflow to inf: the converted copy is checked, vouched memory or not."""
    backend = create_backend("onnxruntime", MODEL).load()
    x = np.zeros((2, 100, 3), np.float64)
    x[:, :10, 2] = 5.0
    x[0, 0, 0] = 1e39  # finite in float64, inf in float32
    vouch_finite(x)
    out = backend.run(x)
    assert out["valid"].tolist() == [False, True] and np.isnan(out["score"][0])
    assert backend.counters["nonfinite_jets"] == 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_batch_rebuilt_from_a_vouched_one_is_checked_again(tmp_path, write_config):
    """A user module that replaces the source's batch (``dataclasses.replace(b, inputs=b.inputs * k)``)
    makes new memory: nothing vouches for it, so its overflowed jets are flagged (a copied ``finite``
    flag once let 400 such jets through unflagged)."""
    import dataclasses

    seen, _ = _path_products(tmp_path, write_config, make_events(12, seed=5), "vouched")
    batch = next(b for b, _, _ in seen.values() if len(b))
    assert known_finite(batch.inputs)
    scaled = dataclasses.replace(batch, inputs=batch.inputs * np.float32(1e38))
    assert not known_finite(scaled.inputs)
    assert not known_finite(np.array(batch.inputs))  # a writeable copy: new memory too
    backend = create_backend("onnxruntime", MODEL).load()
    out = backend.run(scaled.inputs)
    assert not out["valid"].any() and backend.counters["nonfinite_jets"] == len(batch)


def test_only_whole_read_only_buffers_are_vouched_for():
    buffer = np.ones((4, 100, 3), np.float32)
    part = buffer[:2]
    assert not vouch_finite(part) and not known_finite(part)  # the rest of the buffer was not checked
    whole = np.ones((2, 100, 3), np.float32)
    assert vouch_finite(whole) and known_finite(whole[1:]) and not whole.flags.writeable
    nan = np.ones((2, 100, 3), np.float32)
    nan[1, 5, 2] = np.nan
    assert not vouch_finite(nan) and not known_finite(nan)


def test_only_the_shared_masks_count_as_all_valid():
    assert is_all_valid(all_valid(3)) and all_valid(3) is all_valid(3)
    assert not is_all_valid(np.ones(3, bool))  # all True, but not the shared one: says nothing
    assert not is_all_valid(all_valid(2000))  # too long to be kept: never assumed
    with pytest.raises(ValueError):
        all_valid(3)[0] = False  # shared: read-only


@pytest.mark.parametrize("reduce", ["max", "min", "leading"])
def test_filter_decides_the_same_with_the_shared_mask(reduce):
    for scores in ([0.2, 0.9], [0.9, np.nan], [np.nan, 0.9], [0.6], [0.4]):
        f = make(threshold=0.5, reduce=reduce)
        want = decide(f, scores)
        assert decide(f, scores, valid=all_valid(len(scores))) is want
        value = float(REDUCERS[reduce](np.asarray(scores, np.float32)))
        assert want is (not np.isnan(value) and value > 0.5)
