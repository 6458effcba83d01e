"""L1 seeds decided per source chunk with numpy are, bit for bit, the per-event reference
(``L1SeedFilter.decide``: ``l1_value`` + ``smear``), whatever the chunking, the streams or the seeds;
and their counters (accepted, fired per seed, turn-on bins) are the per-event ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml

from hltrun.framework.event import Event, EventID
from hltrun.modules.l1_seeds import (L1SeedFilter, L1SeedParameters, Resolution, SeedDefinition, l1_values,
                                     l1_value, smeared_fired, smear)
from hltrun.modules.products import JetCollection
from hltrun.modules.root_source import make_chunk

from .helpers import run_config

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "data").glob("*.root"))
# thresholds inside the samples' jet pT range, so that the smearing decides many events
EXPRESSIONS = {
    "sj": "L1_SingleJet600",
    "ht": "L1_HTT1300",
    "mix": "L1_SingleJet300 AND NOT L1_HTT900 OR L1_HTT1800",
    "menu": "L1_SingleJet180 OR L1_HTT360",
}


def _params(expression: str, **kw) -> L1SeedParameters:
    return L1SeedParameters(expression=expression, **kw)


def _reference(module: L1SeedFilter, ids, jets) -> tuple[list[bool], dict]:
    """Per event with the reference functions (the code the chunked path replaced)."""
    ref = L1SeedFilter(module.label, module.params)
    decisions = []
    for i, (eid, (pt, eta)) in enumerate(zip(ids, jets)):
        event = Event(eid, i, 0)
        event.put_as("source", JetCollection(np.asarray(pt, np.float32), np.asarray(eta, np.float32), None, None,
                                             None))
        decisions.append(ref.filter(event))  # a hand-built collection: the per-event path
    return decisions, ref.summary()


def _synthetic(n: int, seed: int):
    """Events of 0..12 jets spread over the thresholds, some outside |eta| < 2.5, a few NaN pT."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 13, n)
    pt = rng.uniform(10, 900, counts.sum()).astype(np.float32)
    eta = rng.uniform(-3.5, 3.5, counts.sum()).astype(np.float32)
    pt[rng.random(len(pt)) < 0.002] = np.nan
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids = [EventID(1, 1 + i // 100, 1000 + i) for i in range(n)]
    return offsets, pt, eta, ids


def _chunks(offsets, pt, eta, ids, size):
    """Source chunks of ``size`` events (make_chunk sorts jets by decreasing pT, as the source does)."""
    for a in range(0, len(ids), size):
        b = min(a + size, len(ids))
        o = offsets[a:b + 1] - offsets[a]
        sl = slice(offsets[a], offsets[b])
        n_jets = offsets[b] - offsets[a]
        zeros = np.zeros(n_jets, np.float32)
        flat = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
        yield make_chunk(o, pt[sl], eta[sl], zeros, zeros, flat, ids[a:b], None, 4)


@pytest.mark.parametrize("expression", list(EXPRESSIONS.values()))
@pytest.mark.parametrize("size", [1000, 37])
@pytest.mark.parametrize("resolution", [Resolution(), Resolution(stochastic=3.0, constant=0.02), None])
def test_chunk_decisions_are_the_per_event_ones(expression, size, resolution):
    offsets, pt, eta, ids = _synthetic(1000, 7)
    module = L1SeedFilter("l1", _params(expression, resolution=resolution))
    got, jets, event_ids = [], [], []
    for chunk in _chunks(offsets, pt, eta, ids, size):
        for i in range(len(chunk.ids)):
            event = Event(chunk.ids[i], len(got), 0)
            view = chunk.event(i)
            event.put_as("source", view)
            got.append(module.filter(event))
            jets.append((view.pt.copy(), view.eta.copy()))
            event_ids.append(chunk.ids[i])
    module.end_job()
    want, want_summary = _reference(module, event_ids, jets)
    assert got == want
    assert module.summary() == want_summary
    assert 0 < sum(got) < len(got) or expression == EXPRESSIONS["menu"]


def test_vector_functions_match_the_scalar_ones_on_many_jets():
    """HTT sums of up to 12 float64 jets (a pairwise or compensated sum rounds otherwise: float32 pT
    add exactly), single-jet maxima inside |eta|, and the smeared decisions."""
    offsets, pt, eta, ids = _synthetic(3000, 11)
    pt = np.where(np.isfinite(pt), pt, 50.0) * (1.0 + np.random.default_rng(3).random(len(pt)) * 1e-7)  # float64
    for seed in (SeedDefinition("htt", 900.0, 2.5, 30.0), SeedDefinition("single_jet", 400.0, 2.4)):
        values = l1_values(seed, offsets, pt, eta)
        ref = [l1_value(seed, pt[a:b].tolist(), eta[a:b].tolist()) for a, b in zip(offsets[:-1], offsets[1:])]
        assert values.tolist() == ref
        prefixes = [b"%d:%d:%d:" % (e.run, e.luminosityBlock, e.event) for e in ids]
        fired = smeared_fired(seed, Resolution(), values, prefixes, b"L1_X")
        assert fired.tolist() == [smear(v, Resolution(), p + b"L1_X") >= seed.threshold for v, p in zip(ref, prefixes)]


def _edge(fires, lo: float = 1.0, hi: float = 1e5) -> float:
    """The smallest float value for which ``fires`` (monotonic) is true, by bisection on floats."""
    while True:
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            return hi
        lo, hi = (lo, mid) if fires(mid) else (mid, hi)


def test_a_value_at_the_threshold_is_decided_by_smear_itself(monkeypatch):
    """numpy's normals may differ from libm's in the last bits: a smeared value that close to the
    threshold is decided by ``smear`` (simulated here by numpy normals off by 1e-13)."""
    import hltrun.modules.l1_seeds as l1

    exact = l1._normals
    monkeypatch.setattr(l1, "_normals", lambda u1, u2: exact(u1, u2) * (1.0 + 1e-13))
    seed = SeedDefinition("single_jet", 180.0)
    res = Resolution()
    prefixes = [b"1:1:%d:" % i for i in range(200)]
    values = np.array([_edge(lambda v: smear(v, res, p + b"L1_T") >= 180.0) for p in prefixes])
    # the last value below the edge and the first at it, for every draw
    prefixes = [p for p in prefixes for _ in (0, 1)]
    values = np.stack([np.nextafter(values, 0.0), values], axis=1).ravel()
    want = [smear(v, res, p + b"L1_T") >= 180.0 for v, p in zip(values.tolist(), prefixes)]
    assert 0 < sum(want) < len(want)
    assert smeared_fired(seed, res, values, prefixes, b"L1_T").tolist() == want


def _seeds_config(tmp_path: Path, chunk_size: int, streams: int) -> Path:
    config = {
        "process": "SEEDS",
        "options": {"numberOfThreads": streams, "wantSummary": False},
        "source": {"type": "RootJetSource", "files": [str(p) for p in SAMPLES], "tree": "Events",
                   "layout": "counts", "chunk_size": chunk_size},
        "modules": {**{label: {"type": "L1SeedFilter", "expression": e} for label, e in EXPRESSIONS.items()},
                    "out": {"type": "RootOutputModule", "file": str(tmp_path / f"out_{chunk_size}_{streams}.root")}},
        "paths": {f"HLT_{label}": [label] for label in EXPRESSIONS},
        "endpaths": {"outputPath": ["out"]},
        "services": {"Timing": {"calibrate": False}},
    }
    path = tmp_path / f"seeds_{chunk_size}_{streams}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _shipped_reference() -> tuple[list[tuple[int, int, int]], dict[str, list[bool]], dict[str, dict]]:
    """Every shipped sample read with uproot alone, jets sorted by decreasing pT, decided per event."""
    ids, jets = [], []
    for path in SAMPLES:
        with uproot.open(path) as f:
            tree = f["Events"]
            run, lumi, evt = (tree[b].array(library="np") for b in ("run", "luminosityBlock", "event"))
            pts, etas = tree["FatJet_pt"].array(library="np"), tree["FatJet_eta"].array(library="np")
        for r, lu, e, pt, eta in zip(run, lumi, evt, pts, etas):
            order = np.argsort(-pt, kind="stable")
            ids.append(EventID(int(r), int(lu), int(e)))
            jets.append((pt[order], eta[order]))
    out, summaries = {}, {}
    for label, expression in EXPRESSIONS.items():
        out[label], summaries[label] = _reference(L1SeedFilter(label, _params(expression)), ids, jets)
    return [(e.run, e.luminosityBlock, e.event) for e in ids], out, summaries


@pytest.mark.slow
def test_shipped_samples_decide_as_per_event_for_any_chunk_size_and_streams(tmp_path):
    keys, want, want_summaries = _shipped_reference()
    for chunk_size, streams in ((10_000, 1), (333, 1), (97, 2)):
        _, process = run_config(_seeds_config(tmp_path, chunk_size, streams))
        with uproot.open(tmp_path / f"out_{chunk_size}_{streams}.root") as f:
            tree = f["Events"]
            got_keys = list(zip(*(tree[b].array(library="np").tolist() for b in ("run", "luminosityBlock", "event"))))
            bits = {label: tree[f"HLT_{label}"].array(library="np").astype(bool).tolist() for label in EXPRESSIONS}
        assert got_keys == keys
        for label in EXPRESSIONS:
            assert bits[label] == want[label], (label, chunk_size, streams)
            merged = [inst.summary() for inst in process.instances[label]]
            total = {k: sum(m.get(k, 0) for m in merged) for k in {k for m in merged for k in m} if k != "expression"}
            assert total == {k: v for k, v in want_summaries[label].items() if k != "expression"}
    assert 0 < sum(want["sj"]) < len(keys) and 0 < sum(want["mix"]) < len(keys)
