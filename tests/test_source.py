"""The ROOT jet source: three layouts, chunking, skip/max across files, event ids, bad input."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import FileOpenError, SourceError
from hltrun.framework.schema import build
from hltrun.modules.jets import to_jet_relative
from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters
from hltrun.modules.rootio import write_nanoaod
from tests.conftest import make_events, write_counts, write_jet_index, write_nested

NESTED = {"cand_pt": "Jet_cpt", "cand_eta": "Jet_ceta", "cand_phi": "Jet_cphi"}
INDEXED = {"cand_pt": "FatJetPFCands_pt", "cand_eta": "FatJetPFCands_eta", "cand_phi": "FatJetPFCands_phi",
           "cand_jet_index": "FatJetPFCands_jetIdx"}


def read_all(files, skip=0, limit=None, **params):
    p = build(RootJetSourceParameters, {"files": [str(f) for f in files], **params}, "source")
    src = RootJetSource("source", p)
    src.begin_job(None)
    return list(src.events(skip, limit)), src


def assert_same_events(a, b) -> None:
    """Two ``read_all`` results hold the same events with the same constituents, in the same order."""
    assert [e for e, _ in a] == [e for e, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x[""].constituents, y[""].constituents)


def expected_jets(event, max_constituents=100):
    """Truth from the generator dicts: jets by pT, constituents by pT, padded."""
    jets = sorted(event["jets"], key=lambda j: -j["pt"])
    out = np.zeros((len(jets), max_constituents, 3), np.float32)
    for i, j in enumerate(jets):
        order = np.argsort(-j["c_pt"], kind="stable")[:max_constituents]
        out[i, :len(order)] = np.stack([j["c_eta"][order], j["c_phi"][order], j["c_pt"][order]], axis=1)
    return np.array([j["pt"] for j in jets], np.float32), out


@pytest.mark.parametrize("layout", ["counts", "jet_index", "nested"])
def test_layouts_match_truth(tmp_path, sample_events, layout):
    writer, branches = {"counts": (write_counts, {}), "jet_index": (write_jet_index, INDEXED),
                        "nested": (write_nested, NESTED)}[layout]
    path = writer(tmp_path / f"{layout}.root", sample_events)
    events, src = read_all([path], layout=layout, branches=branches, chunk_size=17)
    assert len(events) == len(sample_events)
    for (eid, products), truth in zip(events, sample_events):
        jets = products[""]
        assert (eid.run, eid.luminosityBlock, eid.event) == (truth["run"], truth["lumi"], truth["event"])
        pt, constituents = expected_jets(truth)
        np.testing.assert_allclose(jets.pt, pt, rtol=1e-6)
        np.testing.assert_allclose(jets.constituents, constituents, rtol=1e-6)
        np.testing.assert_array_equal(jets.relative, to_jet_relative(jets.constituents, jets.eta, jets.phi))
        assert not jets.relative.flags.writeable  # events share the chunk's arrays
        assert list(jets.n_constituents) == [len(j["c_pt"]) for j in sorted(truth["jets"], key=lambda j: -j["pt"])]
    assert src.accounting()["read"] == len(sample_events)
    assert any(len(j["c_pt"]) > 100 for e in sample_events for j in e["jets"])  # truncation is exercised


def test_chunk_size_does_not_change_events(counts_file):
    small, _ = read_all([counts_file], chunk_size=1)
    big, _ = read_all([counts_file], chunk_size=100000)
    assert_same_events(small, big)


def test_skip_and_max_across_files(tmp_path):
    files = [write_counts(tmp_path / f"f{i}.root", make_events(10, seed=i)) for i in range(3)]
    nodup = {"duplicateCheckMode": "noDuplicateCheck"}  # the three files share their event ids
    everything, _ = read_all(files, **nodup)
    assert len(everything) == 30
    part, src = read_all(files, skip=8, limit=15, chunk_size=4, **nodup)
    assert [e for e, _ in part] == [e for e, _ in everything[8:23]]
    acct = src.accounting()
    assert acct["skipped"] == 8 and acct["read"] == 15 and acct["entries_in_files"] == 30


def test_glob_and_null_event_ids(tmp_path):
    for i in range(2):
        write_counts(tmp_path / f"g{i}.root", make_events(4, seed=i))
    events, _ = read_all([tmp_path / "g*.root"], branches={"run": None, "luminosityBlock": None, "event": None})
    assert [(e.run, e.event) for e, _ in events] == [(1, n) for n in (1, 2, 3, 4, 1, 2, 3, 4)]


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match=r"input file not found: .*nope.root"):
        read_all([tmp_path / "nope.root"])


def test_missing_branch_names_it_and_suggests(counts_file):
    with pytest.raises(SourceError, match=r"branch 'FatJet_ptt' \(did you mean 'FatJet_pt'\?\) not found in tree 'Events'"):
        read_all([counts_file], branches={"jet_pt": "FatJet_ptt"})


def test_missing_tree(counts_file):
    with pytest.raises(SourceError, match=r"no tree 'Jets' in .* \(objects: Events\)"):
        read_all([counts_file], tree="Jets")


def test_corrupt_file(tmp_path, counts_file):
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(b"this is not a ROOT file" * 100)
    with pytest.raises(SourceError, match=r"cannot read .*corrupt.root as a ROOT file"):
        read_all([bad])


def test_truncated_file(tmp_path, counts_file):
    data = counts_file.read_bytes()
    cut = tmp_path / "truncated.root"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated.root"):
        read_all([cut])


def test_tree_that_cannot_be_read_is_not_called_missing(tmp_path):
    """A file damaged after its key table (zeros over the TTree's metadata, its length kept): the key 'Events'
    is there, the TTree is not readable. The line gives the read error, not "no tree 'Events' ... (objects:
    Events)"."""
    damaged = tmp_path / "damaged.root"
    data = bytearray((Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root").read_bytes())
    data[5000:10000] = bytes(5000)
    damaged.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"^source: cannot read TTree 'Events' of .*damaged.root: "
                                          r"DeserializationError: ") as err:
        read_all([damaged])
    assert "\n" not in str(err.value) and "no tree" not in str(err.value)


@pytest.mark.parametrize("missing", [10, 72, 73, 3_924_769], ids=["10 bytes", "72 bytes", "73 bytes", "all but 10000"])
def test_a_file_cut_short_is_said_so_wherever_it_was_cut(tmp_path, missing):
    """A copy of the shipped sample without its last bytes: its ROOT header says where it ends (fEND). Cut in
    its last 72 bytes (the free-segments record), every event was read, exit 0, nothing said; cut earlier, the
    line was uproot's ("cannot read TTree 'Events' ...: OSError: expected Chunk of length 8384, received 8324",
    or "cannot read entries 0-2500 ..."). Now one line says the file is cut short, by how much."""
    whole = (Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root").read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(whole[:len(whole) - missing])
    with pytest.raises(FileOpenError) as err:
        read_all([cut])
    assert str(err.value) == (f"source: input file {cut} is cut short: {len(whole) - missing} bytes, where its ROOT "
                              f"header says it ends at {len(whole)} (a copy or a write that did not finish: a full "
                              f"disk, an interrupted transfer); copy it again")


def test_inconsistent_counts(tmp_path, sample_events):
    path = write_counts(tmp_path / "bad.root", sample_events, count_offset=1)
    with pytest.raises(SourceError, match=r"'FatJet_nConstituents' does not add up .* \(first at entry 0 of"):
        read_all([path])


def test_nested_layout_needs_doubly_jagged(counts_file):
    with pytest.raises(SourceError, match="layout 'nested' needs per-jet constituent lists"):
        read_all([counts_file], layout="nested")


@pytest.mark.parametrize("skip_bad", [False, True])
def test_plan_duplicates_of_a_file_with_a_corrupt_id_basket(tmp_path, skip_bad):
    """The Dask client reads every id to find the job's duplicates: a corrupt basket of the event branch in
    the middle of a file (begin_job's check reads the first and the last) gave "internal error:
    DecompressionError: lzma data error", exit 1, naming no file, even with skipBadFiles (a local run skips
    the file). Now the event loop's line (exit 3), or with skipBadFiles the ids read before it."""
    from tests.test_source_decompression import _corrupt_basket, write_baskets

    bad = _corrupt_basket(write_baskets(tmp_path / "bad.root", make_events(200, seed=2), per_basket=40), "event", 2)
    p = build(RootJetSourceParameters, {"files": [str(bad)], "skipBadFiles": skip_bad, "chunk_size": 40}, "source")
    if not skip_bad:
        with pytest.raises(SourceError, match=rf"^source: failed to read {bad} entries 80-120: DecompressionError"):
            RootJetSource.plan_duplicates(p, [(str(bad), 200)], 0, None)
    else:
        assert RootJetSource.plan_duplicates(p, [(str(bad), 200)], 0, None) == [()]


def test_work_unit_skips_the_duplicates_planned_for_the_job_and_accounts_for_them(tmp_path):
    """read_range (a Dask work unit) skips and counts the duplicates the client found over the whole job
    (``plan_duplicates``), not those it sees itself: the second unit's entries repeat an event of the
    first, and were read as new there (a unit never saw another's ids), so Dask processed events a local
    run skips. Every entry is either read or a duplicate, as locally."""
    events = make_events(12, seed=4)
    for e in events[6:]:
        e["event"] = events[0]["event"]  # entries 6-11 repeat the id of entry 0
    f = write_counts(tmp_path / "dup.root", events)
    p = build(RootJetSourceParameters, {"files": [str(f)]}, "source")
    local, _ = read_all([f])
    assert RootJetSource.plan_duplicates(p, [(str(f), 12)], 0, None) == [((6, 12),)]
    assert RootJetSource.plan_duplicates(p, [(str(f), 12), (str(f), 12)], 0, 3)[1] == ()  # no further (maxEvents)
    src = RootJetSource("source", p)
    src.begin_job(None)
    first = [e for e, _ in src.read_range(str(f), 0, 8, ((6, 8),))]
    assert first == [e for e, _ in local][:6]  # entries 6 and 7 are duplicates of entry 0
    acct = src.accounting()
    assert acct["read"] == 6 and acct["duplicates"] == 2
    assert [e for e, _ in src.read_range(str(f), 8, 12, ((8, 12),))] == []  # entry 0's id again, from another unit
    acct = src.accounting()
    assert acct["read"] == len(local) == 6 and acct["duplicates"] == 6


def test_uint8_counts_that_wrap_are_named(tmp_path):
    """NanoAOD stores FatJet_nConstituents as UChar_t: a jet of 300 constituents reads as 44. The
    counts then fall short of the event's constituents by 256: one line says so and why, instead of
    giving the constituents to the wrong jets."""
    counts = [[300, 20], [5]]
    cands = ak.values_astype(ak.Array([np.linspace(1, 10, sum(c)).tolist() for c in counts]), np.float32)
    jets = ak.Array([[500.0, 300.0], [400.0]])
    with uproot.recreate(tmp_path / "wrapped.root") as f:
        write_nanoaod(f, "Events", {
            "run": np.ones(2, np.uint32), "luminosityBlock": np.ones(2, np.uint32),
            "event": np.arange(2, dtype=np.uint64),
            "FatJet": ak.zip({"pt": jets, "eta": jets * 0, "phi": jets * 0, "mass": jets / 10,
                              "nConstituents": ak.values_astype(ak.Array(counts) % 256, np.uint8)}),
            "FatJetPFCand": ak.zip({k: cands for k in ("pt", "eta", "phi")})})
    assert uproot.open(tmp_path / "wrapped.root")["Events"]["FatJet_nConstituents"].typename == "uint8_t[]"
    with pytest.raises(SourceError, match=r"^source: 'FatJet_nConstituents' does not add up to the number of "
                                          r"'FatJetPFCand_pt' entries \(first at entry 0 of .*wrapped.root: the jets "
                                          r"declare 64, the event has 320\); 'FatJet_nConstituents' is uint8, which "
                                          r"wraps above 255 constituents per jet: .*layout jet_index$"):
        source = RootJetSource("source", build(RootJetSourceParameters, {"files": [str(tmp_path / "wrapped.root")]},
                                               "source"))
        source.begin_job(None)  # before the first event: the file check reads the first entries


def test_an_existing_name_with_glob_characters_is_that_file(tmp_path):
    """``a[1].root`` that exists is read, not taken as a pattern (which matches ``a1.root`` or nothing)."""
    from hltrun.framework.resources import glob_files

    literal = write_counts(tmp_path / "a[1].root", make_events(3, seed=1))
    assert glob_files(str(literal)) == [str(literal)]
    events, _ = read_all([literal])
    assert len(events) == 3
    write_counts(tmp_path / "a1.root", make_events(5, seed=2))  # what the pattern a[1].root matches
    assert glob_files(str(literal)) == [str(literal)]
    events, _ = read_all([literal])
    assert len(events) == 3
    assert glob_files(str(tmp_path / "a[12].root")) == [str(tmp_path / "a1.root")]  # still a pattern when no such file


@pytest.mark.parametrize("url", ["root://eoscms.cern.ch//eos/cms/store/a.root", "https://host/x/a.root",
                                 "http://host//x/a.root", "root://host//data/run*.root"])
def test_a_remote_url_is_refused_naming_it_intact(url):
    """No remote reader is wired in (no XRootD, no fsspec-http): one line naming the URL as written,
    not ``input file not found: root:/host/...`` with each ``//`` halved."""
    from hltrun.framework.errors import FileOpenError

    with pytest.raises(FileOpenError) as info:
        read_all([url])
    assert str(info.value) == (f"source: input file {url} is a remote URL; hltrun reads local files only (no XRootD "
                               f"or HTTP reader): copy it to a local disk first (xrdcp, curl) and give that path")


def test_a_local_file_url_reads_the_file_as_uproot_does(tmp_path):
    """``file:///abs/a.root`` is the local file (uproot.open reads it so), also as a glob pattern."""
    write_counts(tmp_path / "a.root", make_events(4, seed=1))
    plain, _ = read_all([str(tmp_path / "a.root")])
    for given in (f"file://{tmp_path}/a.root", f"file://localhost{tmp_path}/a.root", f"file://{tmp_path}/a*.root"):
        events, _ = read_all([given])
        assert len(events) == len(plain) == 4
    assert uproot.open(f"file://{tmp_path}/a.root")["Events"].num_entries == 4
