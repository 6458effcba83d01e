"""The source's lean conversion (only the jets a consumer declared, per chunk) against a
straightforward per-jet Python reference: bit for bit, on random layouts (hypothesis), on the three
file layouts (with indirection) and on the shipped samples."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hltrun.framework.schema import build
from hltrun.framework.context import SourceContext
from hltrun.modules.jets import InputSpec
from hltrun.modules.products import JetCollection
from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters, make_chunk
from hltrun.modules.rootio import write_nanoaod
from tests.conftest import make_events, write_counts, write_jet_index, write_nested

DATA = Path(__file__).resolve().parents[1] / "data"


def _f32(x: float) -> np.ndarray:
    return np.array([x], np.float32)


def _wrap(d: np.ndarray) -> np.ndarray:
    return (d + np.pi) % (2 * np.pi) - np.pi


def reference_event(jets: list[tuple], max_constituents: int, spec: InputSpec | None):
    """One event, jet by jet in plain Python: jets sorted by pT (stable), each jet's constituents by
    pT (stable), truncated to ``max_constituents``; then either the whole padded collection
    (``spec`` None: (constituents, relative, n_constituents)) or what ``spec`` selects
    ((inputs, mask, pt)). ``jets``: (pt, eta, phi, [(eta, phi, pt), ...]) as stored."""
    ordered = sorted(jets, key=lambda j: -j[0])
    if spec is None:
        width, rows, relative_too = max_constituents, ordered, True
    else:
        real = [j for j in ordered if len(j[3]) > 0]
        n = len(real) if spec.max_jets == 0 else min(len(real), spec.max_jets)
        if spec.min_jet_pt > 0:
            n = min(n, sum(1 for j in real if _f32(j[0])[0] >= np.float32(spec.min_jet_pt)))
        width, rows, relative_too = spec.n_constituents, real[:n], spec.relative
    absolute = np.zeros((len(rows), width, 3), np.float32)
    relative = np.zeros((len(rows), width, 3), np.float32)
    for r, (_, jeta, jphi, cands) in enumerate(rows):
        kept = sorted(cands, key=lambda c: -c[2])[:min(max_constituents, width)]
        for k, (ceta, cphi, cpt) in enumerate(kept):
            absolute[r, k] = (ceta, cphi, cpt)
            if cpt > 0:
                relative[r, k] = ((_f32(ceta) - _f32(jeta))[0], _wrap(_f32(cphi) - _f32(jphi))[0], cpt)
            else:
                relative[r, k, 2] = cpt
    if spec is None:
        return absolute, relative, np.array([len(j[3]) for j in ordered])
    inputs = relative if relative_too else absolute
    return inputs, inputs[..., 2] > 0, np.array([j[0] for j in rows], np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ random layouts (hypothesis)

PT = st.sampled_from([0.0, -0.0, -1.5, 0.25, 1.0, 1.0, 2.0, 7.5, 40.0])  # ties, zero and negative pT on purpose
ANGLE = st.floats(-3.5, 3.5, allow_nan=False, width=32)
JET = st.tuples(st.sampled_from([1.0, 2.0, 2.0, 3.0, 10.0]), ANGLE, ANGLE,
                st.lists(st.tuples(ANGLE, ANGLE, PT), max_size=7))
SPEC = st.builds(InputSpec, st.integers(0, 3), st.integers(1, 8), st.booleans(), st.sampled_from([0.0, 2.0, 2.5]))


@st.composite
def layouts(draw):
    events = draw(st.lists(st.lists(JET, max_size=4), max_size=6))
    shuffle = draw(st.booleans())  # constituents interleaved across jets (jet_index-like) or jet by jet
    seed = draw(st.integers(0, 2**16))
    return events, shuffle, seed


def chunk_of(events, shuffle: bool, seed: int, max_constituents: int, specs=()):
    jets = [j for e in events for j in e]
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in events])]).astype(np.int64)
    cands = [(i, c) for i, j in enumerate(jets) for c in j[3]]
    if shuffle and cands:
        cands = [cands[k] for k in np.random.default_rng(seed).permutation(len(cands))]
    col = lambda k: np.array([c[k] for _, c in cands], np.float32)  # noqa: E731
    flat = (np.array([i for i, _ in cands], np.int64), col(0), col(1), col(2))
    jet_col = lambda k: np.array([j[k] for j in jets], np.float32)  # noqa: E731
    chunk = make_chunk(offsets, jet_col(0), jet_col(1), jet_col(2), np.zeros(len(jets), np.float32), flat,
                       None, None, max_constituents, specs)
    stored = [(j[0], j[1], j[2], [c for i, c in cands if i == n]) for n, j in enumerate(jets)]  # ties: as stored
    return chunk, [stored[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.integers(1, 5), st.lists(SPEC, min_size=1, max_size=3))
def test_declared_inputs_match_the_reference_bit_for_bit(layout, max_constituents, specs):
    events, shuffle, seed = layout
    chunk, events = chunk_of(events, shuffle, seed, max_constituents, specs)
    for i, jets in enumerate(events):
        for spec in specs:
            want = reference_event(jets, max_constituents, spec)
            got = chunk.event(i).model_input(spec)
            for g, w in zip(got, want):
                assert same_bits(g, w), (i, spec)
            assert not got[0].flags.writeable  # events share the chunk's arrays


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.integers(1, 5), SPEC)
def test_full_padding_on_demand_and_hand_built_collections_match_the_reference(layout, max_constituents, spec):
    """Nobody declared anything: the padded arrays are built when asked, as the reference pads them;
    a collection built by hand from them selects the same inputs as the chunk does."""
    events, shuffle, seed = layout
    chunk, events = chunk_of(events, shuffle, seed, max_constituents)
    for i, jets in enumerate(events):
        absolute, relative, ncons = reference_event(jets, max_constituents, None)
        view = chunk.event(i)
        assert same_bits(view.constituents, absolute) and same_bits(view.relative, relative)
        assert view.n_constituents.tolist() == ncons.tolist()
        by_hand = JetCollection(view.pt, view.eta, view.phi, view.mass, view.n_constituents, absolute, relative)
        for g, w in zip(by_hand.model_input(spec), view.model_input(spec)):
            assert same_bits(np.ascontiguousarray(g), np.ascontiguousarray(w))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 2.5, float("inf"), float("-inf"), float("nan"), -float("nan"), 1e-45, 3.4e38])),
    max_size=40))
def test_one_key_sort_equals_the_two_key_lexsort(rows):
    """The constituent sort (one uint64 key, stable) orders exactly as np.lexsort((-pt, jet)) does,
    ties, signed zeros, infinities and NaNs included."""
    from hltrun.modules.jets import _jet_pt_key

    jet = np.array([r for r, _ in rows], np.int64)
    pt = np.array([p for _, p in rows], np.float32)
    assert np.argsort(_jet_pt_key(jet, pt), kind="stable").tolist() == np.lexsort((-pt, jet)).tolist()


# ------------------------------------------------------------------ files: the three layouts

def write_indirect(path: Path, events: list[dict]) -> Path:
    """PFNano with indirection: links (jetIdx, pFCandsIdx) into an event-level PFCands collection
    shuffled against the links, one candidate shared by two jets, and one broken link of each kind."""
    rng = np.random.default_rng(11)
    cols = {k: [] for k in ("pt", "eta", "phi")}
    links = {"jetIdx": [], "pFCandsIdx": []}
    for e in events:
        rows = [(j_i, c) for j_i, j in enumerate(e["jets"]) for c in range(len(j["c_pt"]))]
        perm = rng.permutation(len(rows))
        cands = [rows[p] for p in perm]
        position = {r: k for k, r in enumerate(cands)}
        for k in ("pt", "eta", "phi"):
            cols[k].append([float(e["jets"][j][f"c_{k}"][c]) for j, c in cands])
        jet_idx, cand_idx = [j for j, _ in rows], [position[r] for r in rows]
        if len(e["jets"]) >= 2:  # the hardest constituent of jet 0 also belongs to jet 1
            jet_idx.append(1)
            cand_idx.append(position[(0, int(np.argmax(e["jets"][0]["c_pt"])))])
        jet_idx += [len(e["jets"]), 0]  # a link to no jet, and a link to no candidate
        cand_idx += [0, len(rows) + 5]
        links["jetIdx"].append(jet_idx)
        links["pFCandsIdx"].append(cand_idx)
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            "run": np.array([e["run"] for e in events], np.uint32),
            "luminosityBlock": np.array([e["lumi"] for e in events], np.uint32),
            "event": np.array([e["event"] for e in events], np.uint64),
            "FatJet": ak.zip({k: ak.Array([[j[k] for j in e["jets"]] for e in events])
                              for k in ("pt", "eta", "phi", "mass")}),
            "FatJetPFCands": ak.zip({k: ak.Array(v) for k, v in links.items()}),
            "PFCands": ak.zip({k: ak.Array(v) for k, v in cols.items()})})
    return path


def truth_jets(event: dict, indirect: bool) -> list[tuple]:
    jets = [(np.float32(j["pt"]), np.float32(j["eta"]), np.float32(j["phi"]),
             list(zip(j["c_eta"], j["c_phi"], j["c_pt"]))) for j in event["jets"]]
    if indirect and len(jets) >= 2:
        j0 = event["jets"][0]
        k = int(np.argmax(j0["c_pt"]))
        jets[1][3].append((j0["c_eta"][k], j0["c_phi"][k], j0["c_pt"][k]))
    return jets


LAYOUTS = {
    "counts": (write_counts, {}),
    "jet_index": (write_jet_index, {"layout": "jet_index", "branches": {
        "cand_pt": "FatJetPFCands_pt", "cand_eta": "FatJetPFCands_eta", "cand_phi": "FatJetPFCands_phi",
        "cand_jet_index": "FatJetPFCands_jetIdx"}}),
    "indirect": (write_indirect, {"layout": "jet_index", "branches": {
        "cand_pt": "PFCands_pt", "cand_eta": "PFCands_eta", "cand_phi": "PFCands_phi",
        "cand_jet_index": "FatJetPFCands_jetIdx", "cand_index": "FatJetPFCands_pFCandsIdx"}}),
    "nested": (write_nested, {"layout": "nested", "branches": {
        "cand_pt": "Jet_cpt", "cand_eta": "Jet_ceta", "cand_phi": "Jet_cphi"}}),
}


def _Job(*specs: InputSpec) -> SourceContext:
    """The source's context with these consumer requests."""
    return SourceContext.standalone(*specs)


def read(files, job, **params):
    src = RootJetSource("source", build(RootJetSourceParameters, {"files": [str(f) for f in files], **params},
                                        "source"))
    src.begin_job(job)
    return src, src.events(0, None)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_file_layouts_match_the_reference(tmp_path, layout):
    writer, params = LAYOUTS[layout]
    events = make_events(120, seed=5)
    for e in events[::7]:  # ties in jet pT across jets of one event
        if len(e["jets"]) >= 2:
            e["jets"][1]["pt"] = e["jets"][0]["pt"]
    path = writer(tmp_path / f"{layout}.root", events)
    specs = [InputSpec(2, 100, True), InputSpec(0, 30, False, 700.0), InputSpec(3, 120, True, 250.0)]
    src, stream = read([path], _Job(*specs[:2]), chunk_size=23, max_constituents=90, **params)
    n = 0
    for (eid, products), truth in zip(stream, events):
        jets = truth_jets(truth, layout == "indirect")
        for spec in specs:  # the third one was not declared: prepared on first use
            for g, w in zip(products[""].model_input(spec), reference_event(jets, 90, spec)):
                assert same_bits(g, w), (eid, spec)
        n += 1
    assert n == len(events)
    if layout == "indirect":
        assert src.accounting()["invalid_links"] == 2 * len(events)


# ------------------------------------------------------------------ the shipped samples

@pytest.mark.parametrize("sample", sorted(p.name for p in DATA.glob("*.root")))
def test_shipped_samples_match_the_full_conversion(sample):
    """On the shipped files the declared inputs equal today's full conversion (every jet padded,
    made relative, then sliced per event as the batcher did), bit for bit."""
    spec = InputSpec(2, 100, True)
    _, stream = read([DATA / sample], _Job(spec), chunk_size=700)
    n = 0
    for _, products in stream:
        jets = products[""]
        real = np.flatnonzero(jets.n_constituents)[:2]
        want = jets.relative[real]
        inputs, mask, pt = jets.model_input(spec)
        assert same_bits(inputs, want) and same_bits(mask, want[..., 2] > 0) and same_bits(pt, jets.pt[real])
        n += 1
    assert n > 1000


# ------------------------------------------------------------------ reading each basket once

def test_checked_files_are_decompressed_once_and_match_a_plain_read(tmp_path, monkeypatch):
    """One-basket files: the check's read is the loop's data (each basket decompressed once), and
    the chunks cut from it equal those TTree.iterate reads (the same file listed again is read again)."""
    import uproot.models.TBasket as tbasket

    a = write_counts(tmp_path / "a.root", make_events(60, seed=9))
    b = write_counts(tmp_path / "b.root", make_events(40, seed=8))
    calls = []
    real = tbasket.Model_TBasket.read_members

    def counting(self, *args, **kwargs):  # one basket read (and decompressed)
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tbasket.Model_TBasket, "read_members", counting)
    spec = InputSpec(2, 100, True)
    src, stream = read([a, b, a], _Job(spec), chunk_size=11, allowDuplicateFiles=True,
                       duplicateCheckMode="noDuplicateCheck")
    got = [products[""].model_input(spec) for _, products in stream]
    assert len(got) == 160
    for first, again in zip(got[:60], got[100:]):  # a from the check's arrays, then through iterate
        assert all(same_bits(x, y) for x, y in zip(first, again))
    with uproot.open(a) as f:
        baskets = sum(f["Events"][name].num_baskets for name in src._branch_names())
    assert len(calls) == 3 * baskets  # check a, check b, read a again; neither check is read twice
    assert not src._kept


def test_a_file_listed_twice_counts_its_entries_twice_as_it_is_read_twice(tmp_path):
    """``allowDuplicateFiles``: a file listed twice is read twice, but ``entries_in_files`` was keyed by path
    and counted it once (100 entries in files, 160 events read; a Dask plan of the same list said 160). Each
    listing counts, so events read never exceed the entries in the files, locally as on Dask."""
    a = write_counts(tmp_path / "a.root", make_events(60, seed=9))
    b = write_counts(tmp_path / "b.root", make_events(40, seed=8))
    src, stream = read([a, b, a], _Job(), allowDuplicateFiles=True, duplicateCheckMode="noDuplicateCheck")
    assert sum(1 for _ in stream) == 160
    counts = src.accounting()
    assert (counts["files"], counts["entries_in_files"], counts["read"]) == (3, 160, 160), counts
    planned = RootJetSource.plan_inputs(src.params, None)  # what the Dask client splits into units
    assert sum(n for _, n in planned) == counts["entries_in_files"]


def test_a_declared_branch_of_a_file_kept_whole_is_decompressed_once(tmp_path, monkeypatch):
    """A model's branch feature (``FatJetPFCand_charge``-like) of a file the check kept whole: its basket was
    decompressed twice at begin_job (the 50-entry check, then the whole branch for the loop); once now in
    the whole job (the check's, from the file it holds open until the consumers are known), and the loop's
    features are that branch's values."""
    import uproot.models.TBasket as tbasket

    from hltrun.modules.contract import parse

    path = write_counts(tmp_path / "a.root", make_events(60, seed=9))
    contract = parse([{"name": "c", "features": ["pt", "FatJetPFCand_pt", "mask"], "n_constituents": 40,
                       "order": "pt"}], "inputs", "config")
    spec = InputSpec(2, 40, True, 0.0, contract)
    read_baskets = []
    real = tbasket.Model_TBasket.read_members

    def counting(self, *args, **kwargs):
        read_baskets.append(self._parent.name if self._parent is not None else "?")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tbasket.Model_TBasket, "read_members", counting)
    src, _ = read([path], _Job(spec))
    assert src._kept
    src.consumers_known()
    rows = 0
    for _, products in src.events(0, None):
        c = products[""].batch(spec).inputs  # one declared input: the batch's inputs
        real_rows = c[..., 2] == 1.0
        assert np.array_equal(c[..., 0][real_rows], c[..., 1][real_rows])
        rows += int(real_rows.sum())
    assert rows > 500
    with uproot.open(path) as f:
        assert f["Events"]["FatJetPFCand_pt"].num_baskets == 1
    assert read_baskets.count("FatJetPFCand_pt") == 1


def test_files_past_max_events_are_checked_only_if_reached(tmp_path):
    from hltrun.framework.errors import SourceError

    good = write_counts(tmp_path / "good.root", make_events(30, seed=1))
    bad = tmp_path / "bad.root"
    data = write_counts(tmp_path / "tmp.root", make_events(30, seed=2)).read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])  # header intact, baskets cut

    def Job(max_events: int) -> SourceContext:
        return SourceContext(max_events=max_events)

    params = {"duplicateCheckMode": "noDuplicateCheck"}
    src, _ = read([good, bad], Job(20), **params)  # the job ends inside good.root: bad.root only opened
    assert sum(1 for _ in src.events(0, 20)) == 20
    with pytest.raises(SourceError, match="bad.root"):  # a job that needs it checks it in begin_job
        read([good, bad], Job(40), **params)
    src, _ = read([good, bad], Job(20), **params)
    with pytest.raises(SourceError, match="bad.root is cut short: "):  # reached: the check's message
        list(src.events(0, 40))


def _opened(monkeypatch) -> list[str]:
    """The file names the source opens, in order (through its one way in, ``_open_tree``)."""
    opened: list[str] = []
    real = RootJetSource._open_tree

    def counting(self, path):
        opened.append(Path(path).name)
        return real(self, path)

    monkeypatch.setattr(RootJetSource, "_open_tree", counting)
    return opened


@pytest.mark.parametrize("max_events", [0, 20, 30])
def test_files_past_max_events_are_never_opened(tmp_path, monkeypatch, max_events):
    """cmsRun opens no file maxEvents does not reach; hltrun opened every later file at begin_job to count
    its entries (200 opens for -n 50 over 200 files, 10-100 ms each on EOS), and a file that is no ROOT file
    there failed a job that never needed it. Now they stay unopened, and the accounting says so."""
    good = write_counts(tmp_path / "good.root", make_events(30, seed=1))
    notes = tmp_path / "notes.root"
    notes.write_text("not a ROOT file")
    later = write_counts(tmp_path / "later.root", make_events(30, seed=2))
    opened = _opened(monkeypatch)
    src, _ = read([good, notes, later], SourceContext(max_events=max_events), duplicateCheckMode="noDuplicateCheck")
    assert sum(1 for _ in src.events(0, max_events)) == max_events
    src.end_job()
    reached = ["good.root"] if max_events else []
    assert opened == reached  # one basket per branch: the check keeps it whole, the loop opens it no more
    acct = src.accounting()
    opened_n = len(reached)
    assert (acct["files"], acct["files_not_opened"], acct["entries_in_files"]) == (3, 3 - opened_n, 30 * opened_n)
    assert list(acct["files_read"]) == ([str(good)] if max_events else [])  # not reached: not read, not "read 0"
    assert src.input_names() == [str(good), str(notes), str(later)]  # outputs are checked against all of them


def test_a_file_past_max_events_that_the_job_reaches_is_checked_then(tmp_path, monkeypatch):
    """Duplicates make the job read past skip + maxEvents: the next file is opened and checked when
    reached; a bad one is then skipped whole (skipBadFiles) as begin_job skips one, and the job goes on."""
    events = make_events(30, seed=1)
    first = write_counts(tmp_path / "first.root", events)
    again = write_counts(tmp_path / "again.root", events)  # the same 30 events: all duplicates
    notes = tmp_path / "notes.root"
    notes.write_text("not a ROOT file")
    others = [{**e, "event": e["event"] + 100} for e in make_events(30, seed=2)]
    last = write_counts(tmp_path / "last.root", others)
    opened = _opened(monkeypatch)
    src, _ = read([first, again, notes, last], SourceContext(max_events=30), skipBadFiles=True)
    assert opened == ["first.root"]
    assert sum(1 for _ in src.events(0, 40)) == 40  # 30 of first, 30 duplicates skipped, 10 of last
    src.end_job()
    assert opened == ["first.root", "again.root", "again.root", "notes.root", "last.root", "last.root"]
    acct = src.accounting()
    assert (acct["files"], acct["files_not_opened"], acct["entries_in_files"]) == (3, 0, 90)
    assert (acct["bad_files"], acct["duplicates"], acct["bad_entries_per_file"]) == (1, 30, {str(notes): 0})
    assert src.bad_files[0].startswith(f"{notes}: whole file skipped (source: cannot read {notes} as a ROOT file")


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_file_past_max_events_reached_and_bad_is_no_longer_counted_not_opened(tmp_path, skip_bad):
    """A file begin_job left unopened, reached by a lumi selection and found bad (here: gone since the job
    began) stops the job naming it; its report said "files not opened 2 of 3 (… the job never reached
    them)", counting the file that stopped it. Reached is opened: only the file after it is not."""
    from hltrun.framework.errors import FileOpenError

    first = write_counts(tmp_path / "first.root", make_events(30, seed=1))
    gone = write_counts(tmp_path / "gone.root", make_events(30, seed=2))
    last = write_counts(tmp_path / "last.root", make_events(30, seed=3))
    src, _ = read([first, gone, last], SourceContext(max_events=10), duplicateCheckMode="noDuplicateCheck",
                  lumisToProcess=["999:1"], skipBadFiles=skip_bad)  # selects nothing: the job reads on
    assert src.accounting()["files_not_opened"] == 2
    gone.unlink()
    if skip_bad:
        assert list(src.events(0, 10)) == []
    else:
        with pytest.raises(FileOpenError, match="gone.root"):
            list(src.events(0, 10))
    src.end_job()
    acct = src.accounting()
    assert acct["files_not_opened"] == (0 if skip_bad else 1)  # last.root: reached only when gone.root is skipped
    assert acct["bad_files"] == (1 if skip_bad else 0)
    assert acct["entries_in_files"] == (60 if skip_bad else 30)


def test_a_stopping_job_stops_the_search_for_a_selected_event(tmp_path, monkeypatch):
    """A SIGTERM while the source looks for the next selected event (a lumi selection that keeps nothing
    further): the loop takes no new event (``draining``), but the source read on through every remaining
    file first, each opened and read to the end, before the job could stop (hours on a dataset). Now it
    stops after the chunk it is reading: the files after it are not opened."""
    from hltrun.framework.context import LoopState, StreamActivity

    first = write_counts(tmp_path / "first.root", make_events(30, seed=1))
    later = [write_counts(tmp_path / f"later{i}.root", [dict(e, run=2) for e in make_events(30, seed=i + 2)])
             for i in range(2)]
    loop = LoopState()
    opened = _opened(monkeypatch)
    real = RootJetSource._check_file

    def signal_while_checking(self, path, *args, **kwargs):  # the signal comes while a late file is checked
        if path.endswith("later0.root"):
            loop.draining = True
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(RootJetSource, "_check_file", signal_while_checking)
    src = RootJetSource("source", build(RootJetSourceParameters, {
        "files": [str(f) for f in [first, *later]], "lumisToProcess": ["1:1-1:1"], "chunk_size": 10,
        "duplicateCheckMode": "noDuplicateCheck"}, "source"))
    src.begin_job(SourceContext(max_events=20, activity=StreamActivity(loop)))
    assert sum(1 for _ in src.events(0, None)) == 30  # first.root's; then the search for another stops
    src.end_job()
    assert "later1.root" not in opened
    acct = src.accounting()
    assert (acct["read"], acct["not_selected"], acct["files_not_opened"]) == (30, 10, 1)


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_a_checked_file_gone_when_the_loop_opens_it_says_it_changed(tmp_path, change):
    """A file begin_job found and checked, removed (or replaced by a text file) by another process before the
    loop opens it: the line was "input file not found: …/b.root" (or "… does not start with ROOT's
    signature"), which reads as a typo in the file list for a file the job had read the header of. It now
    says how the file changed since the job first opened it, as a failed read does."""
    from hltrun.framework.errors import FileOpenError

    a, b = (write_counts(tmp_path / f"{n}.root", make_events(30, seed=i + 1), per_basket=10)
            for i, n in enumerate("ab"))
    src, stream = read([a, b], SourceContext(), chunk_size=10, duplicateCheckMode="noDuplicateCheck")
    assert sum(1 for _ in zip(range(30), stream)) == 30  # a.root read; b.root not yet opened by the loop
    if change == "removed":
        b.unlink()
    else:
        (tmp_path / "new").write_text("not a ROOT file")
        os.replace(tmp_path / "new", b)
    with pytest.raises(FileOpenError, match=f"{b}.*; it was {change} .*while the job read it"):
        next(stream)
    src.end_job()


def test_a_non_root_file_past_max_events_does_not_fail_the_job(tmp_path, write_config, capfd):
    """The command a physicist runs: -n 5 over a list whose second file is no ROOT file (exit 3 before)."""
    from hltrun.framework.cli import main as hltrun

    notes = tmp_path / "notes.root"
    notes.write_text("not a ROOT file")
    listed = tmp_path / "files.txt"
    listed.write_text(f"{DATA / 'qcd_dijet.root'}\n{notes}\n{DATA / 'rsg_ww_3p5TeV.root'}\n")
    cfg = write_config(f"""
        source: {{type: RootJetSource, files: [{listed}]}}
        modules:
          batcher: {{type: JetBatcher, src: source, max_jets: 2}}
        paths:
          p: [batcher]
        """)
    assert hltrun([str(cfg), "-n", "5", "--job-report", str(tmp_path / "fjr.xml")]) == 0
    out = capfd.readouterr().out
    assert "JobReport  files not opened 2 of 3 (past skipEvents + maxEvents: the job never reached them)" in out
    fjr = (tmp_path / "fjr.xml").read_text()
    assert fjr.count("<InputFile>") == 1 and str(notes) not in fjr


def _with_msd(path: Path, events: list[dict], per_basket: int) -> Path:
    """NanoAOD layout with one jet branch no setting names, ``FatJet_msd`` (0.5 x the mass): a model's own."""
    from tests.conftest import _counts_branches

    with uproot.recreate(path) as f:
        for at in range(0, len(events), per_basket):
            branches = _counts_branches(events[at:at + per_basket], 0)
            jets = branches["FatJet"]
            branches["FatJet"] = ak.zip({**{k: jets[k] for k in jets.fields}, "msd": jets["mass"] * 0.5})
            write_nanoaod(f, "Events", branches)
    return path


def _msd_spec(kind: str = "jet") -> InputSpec:
    from hltrun.modules.contract import parse

    features = ["mass", "FatJet_msd"] if kind == "jet" else ["pt", "FatJet_msd", "mask"]
    contract = parse([{"name": "j", "kind": kind, "features": features, **({} if kind == "jet" else
                       {"n_constituents": 20})}], "inputs", "config")
    return InputSpec(2, 20, True, 0.0, contract)


@pytest.mark.parametrize("per_basket", [10, 1000])  # read chunk by chunk; kept whole by the check
def test_declared_branches_are_checked_without_opening_the_files_again(tmp_path, monkeypatch, per_basket):
    """A model reading a branch of its own (a jet's soft-drop mass): begin_job opened each input two times
    (a file kept whole) or three (the others: the check, the declared branches, their collection's first
    branch again), 10-100 ms each on EOS. Now once each: the declared branches are looked for among the
    branch names the check recorded, and checked on the first file, held open since its check; the loop
    reads them as it reads the file, and its features are their values."""
    files = [_with_msd(tmp_path / f"f{i}.root", make_events(30, seed=i + 1), per_basket) for i in range(3)]
    opened = _opened(monkeypatch)
    spec = _msd_spec()
    src, _ = read(files, _Job(spec), duplicateCheckMode="noDuplicateCheck")
    src.consumers_known()
    assert opened == ["f0.root", "f1.root", "f2.root"]  # begin_job: each file once
    n = 0
    for _, products in src.events(0, None):
        j = products[""].batch(spec).inputs  # (jets, [mass, FatJet_msd])
        np.testing.assert_allclose(j[:, 1], 0.5 * j[:, 0], rtol=1e-6)
        n += len(j)
    src.end_job()
    assert n > 100 and src.accounting()["read"] == 90
    # the loop: every file read chunk by chunk; of those kept whole, f0's branch was read from its open handle
    assert opened[3:] == (["f0.root", "f1.root", "f2.root"] if per_basket == 10 else ["f1.root", "f2.root"])


def test_a_declared_branch_in_another_collection_is_refused_before_the_first_event(tmp_path, monkeypatch):
    """A jet branch declared as a constituent feature: one line from the first file, read through the
    handle its check left open (no second open), before the first event."""
    from hltrun.framework.errors import SourceError

    files = [_with_msd(tmp_path / f"f{i}.root", make_events(30, seed=i + 1), 10) for i in range(2)]
    opened = _opened(monkeypatch)
    src, _ = read(files, _Job(_msd_spec("constituents")))
    with pytest.raises(SourceError, match=r"branch 'FatJet_msd' \(a constituent feature of a model's declared "
                                          r"inputs\) is not in the constituent collection of 'FatJetPFCand_pt' in "
                                          r".*f0\.root: it differs in length"):
        src.consumers_known()
    src.end_job()
    assert opened == ["f0.root", "f1.root"]


@pytest.mark.parametrize("per_basket", [10, 1000])
def test_a_later_file_whose_declared_branch_is_misaligned_fails_when_read(tmp_path, per_basket):
    """Past the first file the declared branches' lengths are checked on every chunk the loop reads (not by
    opening every file again at begin_job): a later file whose branch has other lengths is one line naming
    both branches, the file and the entry; with skipBadFiles its entries are skipped and the job goes on."""
    from hltrun.framework.errors import SourceError
    from tests.conftest import _counts_branches

    good = _with_msd(tmp_path / "good.root", make_events(30, seed=1), per_basket)
    bad = tmp_path / "bad.root"
    events = make_events(30, seed=2)
    with uproot.recreate(bad) as f:
        branches = _counts_branches(events, 0)
        branches["FatJet_msd"] = ak.Array([[1.0] * (len(e["jets"]) + 1) for e in events])  # one value too many
        write_nanoaod(f, "Events", branches)
    spec = _msd_spec()
    src, _ = read([good, bad], _Job(spec))
    src.consumers_known()  # the names are there; good.root's lengths agree
    with pytest.raises(SourceError, match=r"branches 'FatJet_msd' and 'FatJet_pt' differ in length at entry 0 of "
                                          r".*bad\.root: they must be one jet collection"):
        list(src.events(0, None))
    src.end_job()
    src, _ = read([good, bad], _Job(spec), skipBadFiles=True)
    src.consumers_known()
    assert sum(1 for _ in src.events(0, None)) == 30
    src.end_job()
    assert src.accounting()["bad_entries_per_file"] == {str(bad): 30}



def _with_event_rho(path: Path, events: list[dict]) -> Path:
    """A NanoAOD-like file with the pile-up density as NanoAOD keeps it: one value per event
    (``fixedGridRhoFastjetAll``), here under a jet-like name, ``FatJet_msd``, that a model declares."""
    from tests.conftest import _counts_branches

    with uproot.recreate(path) as f:
        branches = _counts_branches(events, 0)
        branches["FatJet_msd"] = np.linspace(10, 40, len(events)).astype(np.float32)
        write_nanoaod(f, "Events", branches)
    return path


@pytest.mark.parametrize("kind", ["jet", "constituents"])
def test_a_declared_branch_of_one_value_per_event_is_named_so(tmp_path, kind):
    """A model reading a per-event value (ρ) beside its jets, declared as a jet (or constituent) feature: the
    branch holds one value per event, and the line says so, and how to declare it per event (per_event, kind:
    event; until 2026-12-07 "not ... yet"). It said the branch "is not in the jet collection ... it differs in
    length", of a branch that is no list at all."""
    from hltrun.framework.errors import SourceError

    files = [_with_event_rho(tmp_path / "f0.root", make_events(30, seed=1))]
    src, _ = read(files, _Job(_msd_spec(kind)))
    ref, what = ("FatJet_pt", "jet") if kind == "jet" else ("FatJetPFCand_pt", "constituent")
    with pytest.raises(SourceError, match=rf"branch 'FatJet_msd' holds one value per event, not one per {what} as "
                                          rf"'{ref}' does, in .*f0\.root: declare it per event, in a jet-level "
                                          rf"input's per_event \(kind: jet, features: \[\.\.\., FatJet_msd\], "
                                          rf"per_event: \[FatJet_msd\]\) or in an input of kind: event"):
        src.consumers_known()
    src.end_job()


def test_a_later_file_whose_declared_branch_is_one_value_per_event_is_named_so(tmp_path):
    """The same branch per jet in the first file and per event in a later one: the loop's check of the later
    file's chunk names it for what it is, with the entry (it said the two branches "differ in length")."""
    from hltrun.framework.errors import SourceError

    good = _with_msd(tmp_path / "good.root", make_events(30, seed=1), 10)
    bad = _with_event_rho(tmp_path / "bad.root", make_events(30, seed=2))
    src, _ = read([good, bad], _Job(_msd_spec()))
    src.consumers_known()
    with pytest.raises(SourceError, match=r"branch 'FatJet_msd' holds one value per event, not one per jet as "
                                          r"'FatJet_pt' does, in .*bad\.root") as raised:
        list(src.events(0, None))
    src.end_job()
    assert raised.value.first_entry == 0


def test_output_module_writes_the_source_jets(tmp_path, counts_file, write_config):
    """keep: [source] writes the per-jet columns of the jet collection (it is no dataclass any more)."""
    from hltrun.modules.root_output import product_columns

    _, stream = read([counts_file], _Job())
    _, products = next(stream)
    jets = products[""]
    cols = product_columns("source", jets)
    assert sorted(cols) == ["source_eta", "source_mass", "source_n_constituents", "source_phi", "source_pt"]
    assert same_bits(cols["source_pt"], jets.pt) and len(cols["source_pt"]) == len(jets)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_branch_features_follow_their_constituents_in_every_layout(tmp_path, layout):
    """A declared feature read from a file branch (modules/contract.py) follows its constituent through
    the layout's links, shuffles and sorting: reading the pT/eta branches again as features gives the
    derived pt/eta column for column; jet branches likewise; also for a file the check kept whole."""
    from hltrun.modules.contract import parse

    writer, params = LAYOUTS[layout]
    b = {"cand_pt": "FatJetPFCand_pt", "cand_eta": "FatJetPFCand_eta", **params.get("branches", {})}
    contract = parse([{"name": "c", "features": ["pt", b["cand_pt"], "eta", b["cand_eta"], "mask"],
                       "n_constituents": 40, "order": "pt"},
                      {"name": "j", "kind": "jet", "features": ["pt", "FatJet_pt", "mass", "FatJet_mass"]}],
                     "inputs", "config")
    spec = InputSpec(3, 40, True, 0.0, contract)
    path = writer(tmp_path / f"{layout}.root", make_events(80, seed=4))
    for chunk_size in (17, 10_000):  # read chunk by chunk, and kept whole by the check
        src, stream = read([path], _Job(spec), chunk_size=chunk_size, **params)
        src.consumers_known()
        stream = src.events(0, None)
        n = rows = 0
        for _, products in stream:
            c, j = products[""].batch(spec).arrays
            real = c[..., 4] == 1.0
            assert np.array_equal(c[..., 0][real], c[..., 1][real]) and np.array_equal(c[..., 2][real], c[..., 3][real])
            assert not c[~real].any()  # padding: every feature 0, the mask too
            assert np.array_equal(j[:, 0], j[:, 1]) and np.array_equal(j[:, 2], j[:, 3])
            n, rows = n + 1, rows + int(real.sum())
        assert n == 80 and rows > 1000


def test_an_input_wider_than_the_sources_constituents_is_refused(tmp_path):
    """A model declaring 128 constituents per jet got the source's 100 and 28 rows of zero padding,
    with only a 'jets truncated' count to show it: now one configuration line before the first event."""
    from hltrun.framework.errors import ConfigError

    path = write_counts(tmp_path / "c.root", make_events(20, seed=3))
    src, _ = read([path], _Job(InputSpec(2, 128, True), InputSpec(2, 30, True)))
    with pytest.raises(ConfigError, match=r"source\.max_constituents: 100, but a consumer's input holds 128 "
                                          r"constituents per jet .* set source\.max_constituents=128$"):
        src.consumers_known()
    src, _ = read([path], _Job(InputSpec(2, 128, True)), max_constituents=128)
    src.consumers_known()  # wide enough: accepted


@pytest.mark.parametrize("streams", [1, 2])
def test_a_search_that_finds_nothing_further_reads_every_file_when_nothing_stops_the_job(tmp_path, write_config,
                                                                                          streams):
    """The other side of the stopping search: with no signal, a selection that keeps nothing in the files after
    the first (past maxEvents, not opened at begin_job) still reads every one to the end and counts its events
    as not selected, at one stream and at two (whose lumi transitions drain the loop for a moment)."""
    from tests.helpers import run_config

    first = write_counts(tmp_path / "first.root", [dict(e, lumi=1 + i // 10) for i, e in
                                                   enumerate(make_events(30, seed=1))], per_basket=10)
    later = [write_counts(tmp_path / f"later{i}.root", [dict(e, run=2, event=e["event"] + 100 * i)
                                                        for e in make_events(30, seed=i + 2)], per_basket=10)
             for i in range(3)]
    files = ", ".join(f'"{f}"' for f in [first, *later])
    cfg = write_config(f"""
        process: T
        options: {{numberOfThreads: {streams}, maxEvents: 40}}
        source: {{type: RootJetSource, files: [{files}], lumisToProcess: ["1:1-1:max"], chunk_size: 10}}
        modules: {{rec: {{type: TestRecorder}}}}
        paths: {{p: [rec]}}
    """)
    summary, _ = run_config(cfg)
    assert summary.events_processed == 30 and summary.stopped_by_signal is None
    src = summary.source
    assert (src["not_selected"], src["duplicates"], src["files_not_opened"], src["entries_in_files"]) == (90, 0, 0, 120)
    assert sorted(src["files_read"]) == sorted(str(f) for f in [first, *later])


@pytest.mark.parametrize("how", ["corrupt", "missing"])
def test_a_bad_file_listed_twice_is_skipped_and_reported_once_per_listing(tmp_path, write_config, capfd, how):
    """``allowDuplicateFiles`` with a bad file listed twice and ``skipBadFiles``: each listing is an open attempt,
    as each ``fileNames`` entry is for cmsRun (RootInputFileSequence skips and reports every failed one), and
    hltrun counts a file listed twice as two files. The counter, the reports' list and the warnings said it
    twice, the job report's ``<SkippedFile>`` once. Now all say it once per listing."""
    import json
    import xml.etree.ElementTree as ET

    from hltrun.framework.cli import main as hltrun

    good = write_counts(tmp_path / "good.root", make_events(40, seed=3))
    bad = tmp_path / "bad.root"
    if how == "corrupt":
        bad.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])  # cut: its baskets end in nothing
    cfg = write_config(f"""
        source: {{type: RootJetSource, files: [{bad}, {good}, {bad}], skipBadFiles: true, allowDuplicateFiles: true}}
        modules:
          batcher: {{type: JetBatcher, src: source, max_jets: 2}}
        paths:
          p: [batcher]
        """)
    fjr, rep = tmp_path / "fjr.xml", tmp_path / "rep"
    assert hltrun([str(cfg), "-q", "--job-report", str(fjr), "--report-dir", str(rep)]) == 0
    err = capfd.readouterr().err
    assert sum(f"bad file (skipBadFiles): {bad}: whole file skipped" in line for line in err.splitlines()) == 2, err
    job = json.loads((rep / "hltrun.json").read_text())["job"]
    assert job["source"]["bad_files"] == 2 and [b.split(": ")[0] for b in job["bad_files"]] == [str(bad)] * 2
    assert job["events_processed"] == 40
    assert [el.get("Pfn") for el in ET.parse(fjr).getroot().iter("SkippedFile")] == [str(bad)] * 2


def test_a_file_without_a_declared_branch_listed_twice_is_skipped_once_per_listing(tmp_path):
    """A model's own branch (``FatJet_msd``) that one file lacks, that file listed twice: the declared-inputs
    check kept its bad files by path, so the file counted once as bad (begin_job counts each listing) while
    both its listings were dropped. Each listing is skipped and counted; the file is opened once for both."""
    plain = write_counts(tmp_path / "plain.root", make_events(30, seed=1))
    msd = _with_msd(tmp_path / "msd.root", make_events(30, seed=2), 10)
    src, _ = read([plain, msd, plain], _Job(_msd_spec()), allowDuplicateFiles=True, skipBadFiles=True,
                  duplicateCheckMode="noDuplicateCheck")
    src.consumers_known()
    counts = src.accounting()
    assert (counts["bad_files"], counts["files"]) == (2, 1)
    assert [b.split(": ")[0] for b in src.bad_files] == [str(plain)] * 2 and src.files == [str(msd)]
    assert sum(1 for _ in src.events(0, None)) == 30
    src.end_job()


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_declared_branch_no_file_has_is_a_configuration_error_with_the_file_listed_twice(tmp_path, skip_bad):
    """A misspelt feature, the only file listed twice: its problem was compared per path (1) with the files
    checked per listing (2), so "no input file has it" (a configuration error, exit 2) became a bad file:
    exit 3, or with ``skipBadFiles`` a job that read nothing, exit 0."""
    from hltrun.framework.errors import ConfigError

    plain = write_counts(tmp_path / "plain.root", make_events(30, seed=1))
    src, _ = read([plain, plain], _Job(_msd_spec()), allowDuplicateFiles=True, skipBadFiles=skip_bad,
                  duplicateCheckMode="noDuplicateCheck")
    with pytest.raises(ConfigError, match=r"'FatJet_msd'.* no input file has it: fix the feature name"):
        src.consumers_known()
    src.end_job()
