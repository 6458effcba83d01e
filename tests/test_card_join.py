"""hltcard's per-event numbers (tools/physics/card_run.py): each event's weight joined by its id, and the
events' scores, over all events at once.

The weights are read from the scored file again and matched to the processed events by (run, lumi,
event). The behaviour test runs the card's path over a file whose entries are in shuffled id order, with
ids twice (the later copy with another weight), zero and negative weights and events without jets, and
checks every event's weight against the weight its id has in the file, written out here longhand. The
event arrays are checked against the per-event loop card_run ran before, written out here (scores of
several dtypes, ``valid`` flags, NaN scores, events the path stopped before the scorer).
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hltrun.framework.errors import SourceError
from hltrun.framework.event import EventID
from hltrun.modules.anomaly_filter import REDUCERS, SEGMENT_REDUCERS
from hltrun.modules.duplicates import keys
from hltrun.tools.physics.card_run import WeightTable, event_arrays

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"
ORT = ["modules.vae.backend=onnxruntime"]


def _table(run, lumi, event, weight) -> WeightTable:
    return WeightTable.of(*(np.asarray(x) for x in (run, lumi, event, weight)))


def _lookup(table: WeightTable, ids: list[tuple[int, int, int]]) -> tuple[list[float], list[bool]]:
    a = np.array(ids, np.uint64).reshape(-1, 3)
    w, found = table.lookup(keys(a[:, 0], a[:, 1], a[:, 2]))
    return w.tolist(), found.tolist()


def test_each_id_gets_its_own_weight_in_any_order():
    rng = np.random.default_rng(3)
    run = rng.integers(1, 4, 500)
    lumi = rng.integers(1, 30, 500)
    event = rng.permutation(10_000)[:500] + 1  # distinct, in no order
    weight = rng.normal(size=500)
    table = _table(run, lumi, event, weight)
    ask = rng.permutation(500)
    got, found = _lookup(table, [(run[i], lumi[i], event[i]) for i in ask])
    assert all(found)
    assert got == [float(weight[i]) for i in ask]


def test_an_id_twice_weighs_its_first_entry_and_zero_or_negative_weights_are_kept():
    table = _table([1, 1, 1, 1, 2], [5, 5, 5, 6, 5], [9, 3, 9, 9, 9], [0.0, -2.5, 7.0, 1.5, -0.0])
    got, found = _lookup(table, [(1, 5, 9), (1, 5, 3), (1, 6, 9), (2, 5, 9)])
    assert found == [True] * 4
    assert got == [0.0, -2.5, 1.5, 0.0]
    assert math.copysign(1, got[3]) == -1  # the weight itself, bit for bit


def test_ids_the_file_lacks_are_not_found():
    table = _table([1, 1], [1, 1], [10, 20], [2.0, 3.0])
    got, found = _lookup(table, [(1, 1, 15), (1, 1, 20), (1, 2, 10), (2, 1, 10), (1, 1, 21), (0, 0, 0)])
    assert found == [False, True, False, False, False, False]
    assert got[1] == 3.0
    empty = _table([], [], [], [])
    assert _lookup(empty, [(1, 1, 1)])[1] == [False]


def test_ids_no_event_can_have_match_nothing_and_hide_nothing():
    """A negative, fractional, NaN or out-of-range id in the file (entries the source refuses) is no key:
    it does not shadow a later entry of a real id, and float ids that are whole numbers match."""
    run = np.array([1, -1, 1, 1, 2**32, 1], np.int64)
    table = _table(run, [1, 1, 1, 1, 1, 1], [7, 7, 8, 9, 9, 9], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    got, found = _lookup(table, [(1, 1, 7), (1, 1, 8), (1, 1, 9)])
    assert found == [True] * 3 and got == [1.0, 3.0, 4.0]
    fl = _table([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [np.nan, 4.5, 4.0, 2.0**63], [1.0, 2.0, 3.0, 4.0])
    got, found = _lookup(fl, [(1, 1, 4), (1, 1, 2**63), (1, 1, 0)])
    assert found == [True, True, False] and got[:2] == [3.0, 4.0]
    top = _table(np.array([1], np.uint32), np.array([1], np.uint32), np.array([2**64 - 1], np.uint64), [9.0])
    assert _lookup(top, [(1, 1, 2**64 - 1)]) == ([9.0], [True])


@pytest.mark.parametrize("name", sorted(SEGMENT_REDUCERS))
def test_segment_reducers_are_the_per_event_ones(name):
    rng = np.random.default_rng(11)
    counts = rng.integers(1, 40, 400)
    for dtype in (np.float32, np.float64):
        flat = (rng.normal(size=counts.sum()) * 1e3).astype(dtype)
        flat[rng.random(len(flat)) < 0.01] = np.nan
        zero = rng.random(len(flat)) < 0.2  # ties of signed zeros: the same one picked
        flat[zero] = np.where(rng.random(np.count_nonzero(zero)) < 0.5, 0.0, -0.0)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        got = np.asarray(SEGMENT_REDUCERS[name](flat, starts), np.float64)
        want = np.array([float(REDUCERS[name](flat[a:a + c])) for a, c in zip(starts, counts)])
        np.testing.assert_array_equal(got, want)  # NaN where numpy's gives NaN, else the same value
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def _per_event(rows, reduce):
    """The per-event loop card_run ran before (session 39), without the weights."""
    n = len(rows)
    ev, lpt, ids = np.full(n, -np.inf), np.zeros(n), np.zeros((n, 3), np.uint64)
    jets, of_jet, counts = [], [], {"not_scored": 0, "no_jet": 0, "nan": 0}
    for i, (_, eid, sc) in enumerate(rows):
        ids[i] = (eid.run, eid.luminosityBlock, eid.event)
        if sc is None:
            counts["not_scored"] += 1
            continue
        s = np.asarray(sc.score)
        keep = np.ones(len(s), bool) if sc.valid is None else np.asarray(sc.valid, bool)
        s = s[keep]
        if len(s) == 0:
            counts["no_jet"] += 1
            continue
        jets.append(s.astype(np.float64))
        of_jet.append(np.full(len(s), i))
        value = float(REDUCERS[reduce](s))
        if value != value:
            counts["nan"] += 1
        else:
            ev[i] = value
        if sc.jet_pt is not None and len(sc.jet_pt) == len(keep):
            lpt[i] = float(np.max(np.asarray(sc.jet_pt)[keep]))
    return ev, lpt, ids, (np.concatenate(jets) if jets else np.zeros(0)), \
        (np.concatenate(of_jet) if of_jet else np.zeros(0, np.int64)), counts


def _rows(n: int, dtype, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        eid = EventID(int(rng.integers(1, 3)), int(rng.integers(1, 2**32)), int(rng.integers(0, 2**63)) * 2 + 1)
        kind = rng.random()
        if kind < 0.05:
            rows.append((i, eid, None))  # the path stopped before the scorer
            continue
        k = int(rng.integers(0, 12)) if kind < 0.5 else int(rng.integers(1, 3))
        score = (rng.normal(size=k) * 100).astype(dtype)
        if rng.random() < 0.03 and k:
            score[rng.integers(k)] = np.nan
        valid = None if rng.random() < 0.5 else rng.random(k) < 0.7
        pt = rng.uniform(200, 2000, k).astype(np.float32)
        jet_pt = None if rng.random() < 0.1 else (pt[:-1] if rng.random() < 0.05 and k else pt)
        rows.append((i, eid, SimpleNamespace(score=score, valid=valid, jet_pt=jet_pt)))
    return rows


@pytest.mark.parametrize("reduce", sorted(REDUCERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_event_arrays_are_the_per_event_loops(reduce, dtype):
    rows = _rows(3000, dtype, seed=len(reduce))
    out = event_arrays(Path("f.root"), rows, None, False, reduce, "genWeight")
    ev, lpt, ids, jets, of_jet, counts = _per_event(rows, reduce)
    np.testing.assert_array_equal(out.event_score, ev)
    np.testing.assert_array_equal(out.leading_pt, lpt)
    np.testing.assert_array_equal(out.ids, ids)
    np.testing.assert_array_equal(out.jet_score, jets)
    np.testing.assert_array_equal(out.event_of_jet, of_jet)
    assert out.event_of_jet.dtype == of_jet.dtype and out.jet_score.dtype == np.float64
    assert (out.not_scored, out.no_jet, out.nan_score) == (counts["not_scored"], counts["no_jet"], counts["nan"])
    assert counts["nan"] and counts["no_jet"] and counts["not_scored"]  # the sample has each case
    assert out.weight.tolist() == [1.0] * len(rows)


@pytest.mark.parametrize("scored", [False, True])
def test_event_arrays_without_a_scored_jet(scored):
    eids = [EventID(1, 1, e) for e in (3, 1, 2)]
    product = SimpleNamespace(score=np.zeros(0, np.float32), valid=None, jet_pt=None) if scored else None
    out = event_arrays(Path("f.root"), [(i, e, product) for i, e in enumerate(eids)], None, False, "max",
                       "genWeight")
    assert out.event_score.tolist() == [-math.inf] * 3 and out.leading_pt.tolist() == [0.0] * 3
    assert (out.not_scored, out.no_jet) == ((0, 3) if scored else (3, 0))
    assert out.jet_score.dtype == np.float64 and len(out.jet_score) == 0 and out.event_of_jet.dtype == np.int64


def test_an_event_the_weights_lack_is_named():
    table = _table([1, 1], [1, 1], [5, 6], [1.0, 2.0])
    rows = [(0, EventID(1, 1, 6), None), (1, EventID(1, 1, 7), None), (2, EventID(1, 1, 8), None)]
    with pytest.raises(SourceError, match=r"^f.root: event run 1, lumi 1, event 7 has no 'genWeight' entry"):
        event_arrays(Path("f.root"), rows, table, True, "max", "genWeight")


# --- through the path, on a real file -----------------------------------------------------------------------

def _shuffled_weighted_copy(dest: Path, n: int) -> dict[tuple[int, int, int], float]:
    """The first ``n`` events of data/qcd_dijet.root in shuffled order, renumbered in no order, with ids
    twice (the later copy with its own weight), zero and negative weights, and events without jets;
    returns the weight the source's event of each id must get (its first entry's)."""
    import awkward as ak
    import uproot

    from hltrun.modules.rootio import write_nanoaod

    rng = np.random.default_rng(40)
    with uproot.open(QCD) as f:
        a = f["Events"].arrays(entry_stop=n)[rng.permutation(n)]
    event = rng.permutation(10 * n)[:n].astype(np.uint64) + 1
    lumi = rng.integers(1, 4, n).astype(np.uint32)
    event[[20, 45, 90]] = event[[3, 10, 11]]
    lumi[[20, 45, 90]] = lumi[[3, 10, 11]]
    weight = rng.normal(1.0, 2.0, n).astype(np.float32)
    weight[rng.random(n) < 0.05] = 0.0
    jets = np.where(rng.random(n) < 0.03, 0, ak.to_numpy(ak.num(a["FatJet_pt"])))
    cut = (lambda x: x[ak.local_index(x) < jets])
    cands = np.where(jets == 0, 0, ak.to_numpy(ak.num(a["FatJetPFCand_pt"])))
    data = {"run": np.ones(n, np.uint32), "luminosityBlock": lumi, "event": event, "genWeight": weight,
            "FatJet": ak.zip({k: cut(a[f"FatJet_{k}"]) for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"][ak.local_index(a[f"FatJetPFCand_{k}"]) < cands]
                                    for k in ("pt", "eta", "phi")})}
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    first: dict[tuple[int, int, int], float] = {}
    for i in range(n):
        first.setdefault((1, int(lumi[i]), int(event[i])), float(weight[i]))
    return first


@pytest.mark.slow  # scores 400 events through the path (~3 s)
@pytest.mark.parametrize("dup_mode", ["checkAllFilesOpened", "noDuplicateCheck"])
def test_every_event_gets_its_own_ids_weight_through_the_path(dup_mode, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
    from tests.test_card_command import pt_sum_model

    from hltrun.tools.physics.card_run import score_file

    want = _shuffled_weighted_copy(tmp_path / "shuffled.root", 400)
    model = pt_sum_model(tmp_path / "ptsum.onnx")
    out, _ = score_file(REPO / "configs/path.yaml", ORT + [f"source.duplicateCheckMode={dup_mode}"], model,
                        tmp_path / "shuffled.root", None)
    assert out.has_gen_weight
    got = out.weight.tolist()
    # noDuplicateCheck processes both copies of an id: each weighs the first entry's weight, as the dict did
    # (the join is by id; the second copy's own weight is not reachable from it)
    assert got == [want[tuple(int(x) for x in row)] for row in out.ids.tolist()]
    assert out.n_events == (400 if dup_mode == "noDuplicateCheck" else 397)
    assert len(set(map(tuple, out.ids.tolist()))) == 397
    assert 0.0 in got and min(got) < 0 and out.no_jet > 0


@pytest.mark.parametrize("given, shown", [("median", "'median'"), ("5", "5")])
def test_a_reduce_the_filter_has_not_is_one_line_exit_2(tmp_path, capsys, given, shown):
    """The filter is dropped from a card run, so the configuration's validation never saw its reduce: a
    reduce it has not ended in 'internal error: KeyError', exit 1. Said as hltrun says it, by the schema's check
    of the filter's field (a number is no string: ``reduce: 5`` was "got '5'")."""
    pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
    from tests.test_card_command import pt_sum_model

    from hltrun.tools.physics.card import main as hltcard

    model = pt_sum_model(tmp_path / "ptsum.onnx")
    rc = hltcard([str(model), "--background", str(QCD), "--max-events", "20", "--out-dir", str(tmp_path / "out"),
                  "--set", *ORT, f"modules.anomalyFilter.reduce={given}"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("hltcard: background")]
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("hltcard: error: ")
    assert err[0].endswith("configs/path.yaml: modules.anomalyFilter.reduce: expected one of 'max' | 'min' | 'sum' | "
                           f"'leading', got {shown}")
    assert not (tmp_path / "out").exists()
