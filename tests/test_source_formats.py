"""Files as CMSSW and other users write them: NanoAOD/PFNano branch types and extra trees, every
codec uproot writes, RNTuple, a tree in a folder, something else called ``Events``."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import ConfigError, SourceError
from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod
from tests.conftest import make_events, write_counts, write_jet_index
from tests.test_source import assert_same_events, read_all

PFNANO = {"layout": "jet_index", "branches": {
    "cand_pt": "PFCands_pt", "cand_eta": "PFCands_eta", "cand_phi": "PFCands_phi",
    "cand_jet_index": "FatJetPFCands_jetIdx", "cand_index": "FatJetPFCands_pFCandsIdx"}}


def _f32(values: list) -> ak.Array:
    return ak.values_astype(ak.Array(values), np.float32)


def write_pfnano(path: Path, compression=uproot.ZLIB(4), other_branches: int = 300, link: str = "FatJetPFCands",
                 index: str = "pFCandsIdx", cands: str = "PFCands") -> Path:
    """Three events as PFNano writes them: run/lumi uint32, event uint64 (past 2**32), FatJet_* float32
    with nConstituents uint8, link table int32 (a -1 link: no jet), PFCands_* float32; hundreds of other
    branches; the Runs, LuminosityBlocks, MetaData and ParameterSets trees beside Events.
    Event 0 has no jet; event 1 two jets, the second without constituents; event 2 one jet. ``link``,
    ``index``, ``cands``: the names (JME/BTV NanoAOD: FatJetPFCand, pfCandIdx, PFCand)."""
    data = {
        "run": np.array([367100] * 3, np.uint32), "luminosityBlock": np.array([7, 7, 8], np.uint32),
        "event": np.array([2**40, 2**40 + 1, 2**40 + 2], np.uint64), "genWeight": np.ones(3, np.float32),
        "FatJet": ak.zip({"pt": _f32([[], [500, 300], [400]]), "eta": _f32([[], [0.5, -1], [0.1]]),
                          "phi": _f32([[], [1, 2], [-1]]), "mass": _f32([[], [90, 30], [170]]),
                          "nConstituents": ak.values_astype(ak.Array([[], [2, 0], [1]]), np.uint8)}),
        cands: ak.zip({"pt": _f32([[5], [10, 20, 30], [40, 50]]), "eta": _f32([[0], [0.4, 0.6, 2], [0.1, 0.2]]),
                           "phi": _f32([[0], [1.1, 0.9, 2], [-1, -1.1]])}),
        link: ak.zip({"jetIdx": ak.values_astype(ak.Array([[-1], [0, 0, -1], [0]]), np.int32),
                      index: ak.values_astype(ak.Array([[0], [1, 0, 2], [1]]), np.int32)}),
        **{f"HLT_Path{i}_v1": np.zeros(3, np.bool_) for i in range(other_branches)},
    }
    with uproot.recreate(path, compression=compression) as f:
        write_nanoaod(f, "Events", data)
        write_nanoaod(f, "Runs", {"run": np.array([367100], np.uint32), "genEventCount": np.array([3], np.int64)})
        write_nanoaod(f, "LuminosityBlocks", {"run": np.array([367100] * 2, np.uint32),
                                              "luminosityBlock": np.array([7, 8], np.uint32)})
        for tree, branch in (("MetaData", "FileFormatVersion"), ("ParameterSets", "ParameterSetID")):
            f.mktree(tree, {branch: np.int32})
            f[tree].extend({branch: np.zeros(1, np.int32)})
        f["tag"] = "untagged"
    return path


@pytest.mark.parametrize("codec", ["ZLIB", "LZMA", "LZ4", "ZSTD", None])
def test_pfnano_types_trees_and_codecs(tmp_path, codec):
    """Every codec uproot writes reads with the installed dependencies (uproot's cramjam and xxhash),
    and the NanoAOD types come out right: ids as written, -1 links ignored, empty jets kept."""
    path = write_pfnano(tmp_path / "pfnano.root", getattr(uproot, codec)(4) if codec else None)
    assert uproot.open(path)["Events"]["FatJet_nConstituents"].typename == "uint8_t[]"
    events, src = read_all([path], **PFNANO)
    ids = [(e.run, e.luminosityBlock, e.event) for e, _ in events]
    assert ids == [(367100, 7, 2**40), (367100, 7, 2**40 + 1), (367100, 8, 2**40 + 2)]
    jets = [products[""] for _, products in events]
    assert [len(j.pt) for j in jets] == [0, 2, 1]
    assert list(jets[1].n_constituents) == [2, 0] and list(jets[2].n_constituents) == [1]
    np.testing.assert_array_equal(jets[1].constituents[0, :3], np.array([[0.6, 0.9, 20], [0.4, 1.1, 10], [0, 0, 0]],
                                                                        np.float32))  # by decreasing pT, through the index
    np.testing.assert_array_equal(jets[2].constituents[0, 0], np.array([0.2, -1.1, 50], np.float32))
    assert src.data_quality()["jets_without_constituents"] == 1
    # NanoAOD's -1 (a candidate in no jet; events 0 and 1) is no invalid link: skipped, counted apart
    assert src.data_quality()["invalid_links"] == 0 and src.accounting()["links_to_no_jet"] == 2


def test_rntuple_events(tmp_path, sample_events):
    """An RNTuple ``Events`` (CMSSW's NanoAOD RNTuple output) reads as the TTree does."""
    tree = write_counts(tmp_path / "ttree.root", sample_events)
    arrays = uproot.open(tree)["Events"].arrays(library="ak")
    rntuple = tmp_path / "rntuple.root"
    with uproot.recreate(rntuple) as f:
        f.mkrntuple("Events", arrays)
    assert uproot.open(rntuple).classname_of("Events") == "ROOT::RNTuple"
    a, _ = read_all([tree], chunk_size=17)
    b, _ = read_all([rntuple], chunk_size=17)
    assert_same_events(a, b)


RECORD_FIELDS = {"jet_pt": "FatJet.pt", "jet_eta": "FatJet.eta", "jet_phi": "FatJet.phi", "jet_mass": "FatJet.mass",
                 "jet_n_constituents": "FatJet.nConstituents", "cand_pt": "FatJetPFCand.pt",
                 "cand_eta": "FatJetPFCand.eta", "cand_phi": "FatJetPFCand.phi"}


def test_rntuple_record_fields_read_as_branches(tmp_path, sample_events):
    """An RNTuple whose collections are records (``FatJet`` holding ``pt``, ``eta``...): the line for
    the missing NanoAOD names suggests ``FatJet.pt``, and reading ``FatJet.pt`` gives what the TTree
    gives (it was ``internal error: FieldNotFoundError``)."""
    tree = write_counts(tmp_path / "ttree.root", sample_events)
    flat = uproot.open(tree)["Events"]
    groups = regroup(flat.arrays(library="ak"), branch_groups(flat))
    rntuple = tmp_path / "records.root"
    with uproot.recreate(rntuple) as f:
        f["Events"] = {k: v for k, v in groups.items() if not k.startswith("n")}
    assert "FatJet.pt" in uproot.open(rntuple)["Events"].keys()
    with pytest.raises(SourceError, match=r"branch 'FatJet_pt' \(did you mean 'FatJet.pt'\?\)"):
        read_all([rntuple])
    a, _ = read_all([tree], chunk_size=17)
    for chunk_size in (17, 10_000):  # several chunks, one
        b, src = read_all([rntuple], chunk_size=chunk_size, branches=RECORD_FIELDS)
        assert_same_events(a, b)
    assert src.accounting()["read"] == len(sample_events)
    # a sub-field by its own name is no branch: named by its path (it was "cannot read entries 0-...:
    # FieldNotFoundError", uproot's lookup finding it in the check but its ``arrays`` not reading it), and the
    # line points to the paths that end in it (it suggested none: 'mass' is too short to be near 'FatJet.mass')
    with pytest.raises(SourceError, match=r"^source: branch 'mass' \(did you mean 'FatJet.mass'\?\) not found "
                                          r"in tree 'Events' of .*records.root"):
        read_all([rntuple], branches={**RECORD_FIELDS, "jet_mass": "mass"})


@pytest.mark.parametrize("tree, objects", [("ntuplizer/Events", "ntuplizer"), ("events", "events")])
def test_a_tree_elsewhere_is_found_and_named(tmp_path, tree, objects):
    """A TFileService ntuple keeps its tree in the analyzer's folder; ntuples and uproot's own test files
    call it 'events': the error says which ``source.tree`` to set."""
    events = make_events(5, seed=2)
    flat = uproot.open(write_counts(tmp_path / "flat.root", events))["Events"]
    path = tmp_path / "elsewhere.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, tree, regroup(flat.arrays(library="ak"), branch_groups(flat)))
    with pytest.raises(SourceError, match=rf"no tree 'Events' in .*elsewhere.root \(objects: {objects}\); it has "
                                          rf"{tree}: set source.tree: {tree}$"):
        read_all([path])
    got, _ = read_all([path], tree=tree)
    assert [e.event for e, _ in got] == [e["event"] for e in events]


def test_events_that_is_not_a_tree_names_its_class(tmp_path):
    path = tmp_path / "hist.root"
    with uproot.recreate(path) as f:
        f["Events"] = np.histogram(np.arange(10.0))
    with pytest.raises(SourceError, match=r"'Events' in .*hist.root is a TH1D, not a TTree$"):
        read_all([path])


def _shift_one(values: list, at: int) -> ak.Array:
    """``values`` (per event, maybe per jet) with one value moved from event ``at`` to event ``at + 1``:
    the total stays the same, every later value is misplaced."""
    moved = [list(v) for v in values]
    moved[at + 1].insert(0, moved[at].pop())
    return ak.Array(moved)


def test_a_shifted_nested_constituent_list_is_named_with_its_entry(tmp_path):
    """layout nested: the per-jet lists of eta and pt must agree jet by jet, not only event by event."""
    events = make_events(10, seed=3)
    at = next(i for i, e in enumerate(events) if len(e["jets"]) >= 2)
    path = tmp_path / "nested.root"
    jets = [[j["c_eta"].tolist() for j in e["jets"]] for e in events]
    jets[at][1].insert(0, jets[at][0].pop())  # same count per event, not per jet
    with uproot.recreate(path) as f:
        f["Events"] = {"run": np.ones(10, np.uint32), "luminosityBlock": np.ones(10, np.uint32),
                       "event": np.arange(10, dtype=np.uint64),
                       **{f"Jet_{k}": ak.Array([[j[k] for j in e["jets"]] for e in events])
                          for k in ("pt", "eta", "phi", "mass")},
                       **{f"Jet_c{k}": ak.Array([[j[f"c_{k}"].tolist() for j in e["jets"]] for e in events])
                          for k in ("pt", "phi")}, "Jet_ceta": ak.Array(jets)}
    branches = {"jet_pt": "Jet_pt", "jet_eta": "Jet_eta", "jet_phi": "Jet_phi", "jet_mass": "Jet_mass",
                "cand_pt": "Jet_cpt", "cand_eta": "Jet_ceta", "cand_phi": "Jet_cphi"}
    with pytest.raises(SourceError, match=rf"branches 'Jet_ceta' and 'Jet_cpt' differ in length at entry {at} of "
                                          rf".*nested.root: they must be one constituent collection \(as many values "
                                          r"in every event and jet\)"):
        read_all([path], layout="nested", branches=branches)


def test_a_pfnano_file_read_as_counts_gets_the_settings_it_needs(tmp_path):
    """JME/BTV NanoAOD spell the link table FatJetPFCand_jetIdx / _pfCandIdx into PFCand_*: with the
    defaults the user used to be asked "did you mean 'nFatJetPFCand'?" (a counter); now the settings."""
    path = write_pfnano(tmp_path / "jme.root", link="FatJetPFCand", index="pfCandIdx", cands="PFCand")
    settings = {"cand_jet_index": "FatJetPFCand_jetIdx", "cand_index": "FatJetPFCand_pfCandIdx",
                "cand_pt": "PFCand_pt", "cand_eta": "PFCand_eta", "cand_phi": "PFCand_phi"}
    with pytest.raises(SourceError) as err:
        read_all([path])
    assert str(err.value).endswith("(the file links constituents to jets by index: set source.layout: jet_index and "
                                   "source.branches: {" + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "})")
    assert "did you mean" not in str(err.value)
    events, _ = read_all([path], layout="jet_index", branches=settings)  # as told
    assert [len(products[""].pt) for _, products in events] == [0, 2, 1]


def test_an_ak4_only_pfnano_file_gets_its_jets_and_link_settings(tmp_path):
    """PFNano made for AK4 jets only (``Jet_*``, ``JetPFCands_jetIdx`` / ``_pFCandsIdx`` into ``PFCands_*``, no
    ``FatJet``) with the defaults: it said "did you mean 'Jet_pt'?", "'PFCands_pt'?" and to set the names, with
    which layout counts was then refused as a pool. Now the line gives the jets' and the link table's settings,
    which read it as the AK8 file of the same jets is read."""
    fat = write_pfnano(tmp_path / "fat.root")
    with uproot.open(fat) as f:
        groups = regroup(f["Events"].arrays(library="ak"), branch_groups(f["Events"]))
    ak4 = tmp_path / "ak4.root"
    with uproot.recreate(ak4) as f:
        write_nanoaod(f, "Events", {{"FatJet": "Jet", "FatJetPFCands": "JetPFCands"}.get(k, k): v
                                    for k, v in groups.items() if not k.startswith("n")})
    settings = {"jet_pt": "Jet_pt", "jet_eta": "Jet_eta", "jet_phi": "Jet_phi", "jet_mass": "Jet_mass",
                "cand_jet_index": "JetPFCands_jetIdx", "cand_index": "JetPFCands_pFCandsIdx", **{
                    k: v for k, v in PFNANO["branches"].items() if k.startswith("cand_") and "index" not in k}}
    with pytest.raises(SourceError) as err:
        read_all([ak4])
    assert str(err.value).endswith("(the file's jets with constituents are 'Jet', linked to them by index: set "
                                   "source.layout: jet_index and source.branches: {"
                                   + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "})"), str(err.value)
    assert "did you mean" not in str(err.value)
    assert_same_events(read_all([fat], **PFNANO)[0], read_all([ak4], layout="jet_index", branches=settings)[0])


def test_a_counter_is_never_suggested_for_a_value_branch(counts_file):
    """The collection's name for its pT: difflib's nearest name is the counter nFatJetPFCand."""
    with pytest.raises(SourceError, match=r"'FatJetPFCands' \(did you mean 'FatJetPFCand_pt'\?\)") as err:
        read_all([counts_file], branches={"cand_pt": "FatJetPFCands"})
    assert "nFatJetPFCand" not in str(err.value)


@pytest.mark.parametrize("collection, field, ref, at", [
    ("FatJet", "nConstituents", "FatJet_pt", 102),  # the counts are the jet collection's too, chunk by chunk
    ("FatJetPFCand", "eta", "FatJetPFCand_pt", 102),  # past begin_job's entries: used to misplace every later eta
    ("FatJetPFCand", "eta", "FatJetPFCand_pt", 3)])  # begin_job's first entries: the same line, with its entry
def test_a_shifted_branch_is_named_with_its_entry_wherever_it_is(tmp_path, collection, field, ref, at):
    """One check for begin_job's first entries and every chunk: the same line (exit 3) wherever the
    shift is; FatJet_nConstituents moved by one jet used to pass as long as the chunk's total held."""
    events = make_events(120, seed=1)
    tree = uproot.open(write_counts(tmp_path / "good.root", events))["Events"]
    columns = regroup(tree.arrays(library="ak"), branch_groups(tree))
    values = columns[collection][field]
    dtype = ak.to_numpy(ak.flatten(values)).dtype
    columns[f"{collection}_{field}"] = ak.values_astype(_shift_one(values.tolist(), at), dtype)
    columns[collection] = ak.zip({k: columns[collection][k] for k in columns[collection].fields if k != field})
    path = tmp_path / "shifted.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", columns)
    with pytest.raises(SourceError, match=rf"branches '{collection}_{field}' and '{ref}' differ in length at "
                                          rf"entry {at} of .*shifted.root: they must be one"):
        read_all([path], chunk_size=25)


def test_a_shifted_link_index_is_named_with_its_entry(tmp_path):
    """jet_index with indirection: the two link branches are one collection in every chunk, not only in
    begin_job's first entries (a later shift used to reach numpy as two arrays of different lengths)."""
    events = make_events(120, seed=1)
    cands = {k: [np.concatenate([j[f"c_{k}"] for j in e["jets"]] or [np.zeros(0, np.float32)]).tolist()
                 for e in events] for k in ("pt", "eta", "phi")}
    jet_idx = [[i for i, j in enumerate(e["jets"]) for _ in j["c_pt"]] for e in events]
    cand_idx = [list(range(len(c))) for c in cands["pt"]]
    columns = {"run": np.ones(120, np.uint32), "luminosityBlock": np.ones(120, np.uint32),
               "event": np.arange(120, dtype=np.uint64),
               "FatJet": ak.zip({k: _f32([[j[k] for j in e["jets"]] for e in events]) for k in ("pt", "eta", "phi")}),
               "PFCands": ak.zip({k: _f32(v) for k, v in cands.items()}),
               "FatJetPFCands_jetIdx": ak.values_astype(ak.Array(jet_idx), np.int32),
               "FatJetPFCands_pFCandsIdx": ak.values_astype(_shift_one(cand_idx, 102), np.int32)}
    path = tmp_path / "links.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", columns)
    with pytest.raises(SourceError, match=r"branches 'FatJetPFCands_pFCandsIdx' and 'FatJetPFCands_jetIdx' differ in "
                                          r"length at entry 102 of .*links.root: they must be one link collection"):
        read_all([path], chunk_size=25, layout="jet_index", branches={**PFNANO["branches"], "jet_mass": None})


def test_a_shifted_jet_index_is_named_with_its_entry(tmp_path):
    """jet_index without indirection: the jet index is a field of the constituent collection in every
    chunk (only the chunk's total was compared: a shifted index gave constituents to the wrong jets)."""
    events = make_events(120, seed=1)
    tree = uproot.open(write_jet_index(tmp_path / "good.root", events))["Events"]
    columns = regroup(tree.arrays(library="ak"), branch_groups(tree))
    links = columns["FatJetPFCands"]
    columns["FatJetPFCands_jetIdx"] = ak.values_astype(_shift_one(links["jetIdx"].tolist(), 102), np.int32)
    columns["FatJetPFCands"] = ak.zip({k: links[k] for k in links.fields if k != "jetIdx"})
    path = tmp_path / "shifted.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", columns)
    with pytest.raises(SourceError, match=r"branches 'FatJetPFCands_jetIdx' and 'FatJetPFCands_pt' differ in length "
                                          r"at entry 102 of .*shifted.root: they must be one constituent collection"):
        read_all([path], chunk_size=25, layout="jet_index",
                 branches={"cand_pt": "FatJetPFCands_pt", "cand_eta": "FatJetPFCands_eta",
                           "cand_phi": "FatJetPFCands_phi"})


def write_ak4_ak8(path: Path) -> Path:
    """PFNano with both jet collections and their link tables into one PFCands: AK8 ``FatJet`` +
    ``FatJetPFCands``, AK4 ``Jet`` + ``JetPFCands`` (two AK4 jets where there is one AK8 jet)."""
    data = {
        "run": np.array([1, 1], np.uint32), "luminosityBlock": np.array([1, 1], np.uint32),
        "event": np.array([1, 2], np.uint64),
        "FatJet": ak.zip({"pt": _f32([[500], [400]]), "eta": _f32([[0.5], [0.1]]), "phi": _f32([[1], [-1]]),
                          "mass": _f32([[90], [170]])}),
        "Jet": ak.zip({"pt": _f32([[300, 200], [250, 150]]), "eta": _f32([[0.4, 0.6], [0.1, 0.2]]),
                       "phi": _f32([[1.1, 0.9], [-1, -1.1]]), "mass": _f32([[10, 5], [20, 8]])}),
        "PFCands": ak.zip({"pt": _f32([[10, 20], [40, 50]]), "eta": _f32([[0.4, 0.6], [0.1, 0.2]]),
                           "phi": _f32([[1.1, 0.9], [-1, -1.1]])}),
        "FatJetPFCands": ak.zip({"jetIdx": ak.values_astype(ak.Array([[0, 0], [0, 0]]), np.int32),
                                 "pFCandsIdx": ak.values_astype(ak.Array([[0, 1], [0, 1]]), np.int32)}),
        "JetPFCands": ak.zip({"jetIdx": ak.values_astype(ak.Array([[0, 1], [0, 1]]), np.int32),
                              "pFCandsIdx": ak.values_astype(ak.Array([[0, 1], [0, 1]]), np.int32)}),
    }
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", data)
    return path


AK4 = {"jet_pt": "Jet_pt", "jet_eta": "Jet_eta", "jet_phi": "Jet_phi", "jet_mass": "Jet_mass"}


def test_a_link_table_of_another_jet_collection_is_refused(tmp_path):
    """AK4 jets read with the AK8 link table (``jet_pt: Jet_pt`` but ``FatJetPFCands_jetIdx`` left as it
    was): its jet indices are FatJet's, valid as AK4 indices too, so every constituent went to the wrong
    AK4 jet without a word. The link table's name says which jets it indexes: a configuration error."""
    path = write_ak4_ak8(tmp_path / "ak4ak8.root")
    wrong = {**PFNANO["branches"], **AK4}
    with pytest.raises(ConfigError, match=r"source.branches.cand_jet_index: 'FatJetPFCands_jetIdx' links constituents "
                                          r"to the 'FatJet' jets of .*ak4ak8.root, not to 'Jet' \(source.branches."
                                          r"jet_pt: Jet_pt\); set source.branches: \{cand_jet_index: JetPFCands_jetIdx, "
                                          r"cand_index: JetPFCands_pFCandsIdx"):
        read_all([path], layout="jet_index", branches=wrong)
    right = {**wrong, "cand_jet_index": "JetPFCands_jetIdx", "cand_index": "JetPFCands_pFCandsIdx"}
    events, _ = read_all([path], layout="jet_index", branches=right)
    assert [list(p[""].n_constituents) for _, p in events] == [[1, 1], [1, 1]]
    events, _ = read_all([path], **PFNANO)  # the AK8 settings as they were
    assert [list(p[""].n_constituents) for _, p in events] == [[2], [2]]


def test_nanoaod_without_constituents_says_so(tmp_path):
    """Standard NanoAOD keeps no jet constituents: the line used to ask "did you mean 'FatJet_pt'?" for
    'FatJetPFCand_pt' (the jet's own pT, which then failed on the counts); now it says what the file lacks."""
    path = tmp_path / "nano.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            "run": np.array([1], np.uint32), "luminosityBlock": np.array([1], np.uint32),
            "event": np.array([1], np.uint64), "Muon_isPFcand": np.ones(1, np.bool_),
            "FatJet": ak.zip({"pt": _f32([[500]]), "eta": _f32([[0.5]]), "phi": _f32([[1]]), "mass": _f32([[90]]),
                              "nConstituents": ak.values_astype(ak.Array([[40]]), np.uint8)})})
    with pytest.raises(SourceError) as err:
        read_all([path])
    assert "did you mean" not in str(err.value)
    assert str(err.value).startswith("source: branch 'FatJetPFCand_pt', 'FatJetPFCand_eta', 'FatJetPFCand_phi' not "
                                     "found in tree 'Events' of ")
    assert str(err.value).endswith("nano.root: the file holds no jet constituents (no '*PFCand*' branch); NanoAOD "
                                   "keeps them only with PFNano or a constituent table: give hltrun such a file, or set "
                                   "source.branches.* to your names")


def _cms_tutorial_tree(path: Path, pt: bool = False) -> Path:
    """The CMS HEP tutorial's open-data tree as its file (scikit-hep-testdata's uproot-HZZ.root) holds it: tree
    'events', jets as Cartesian momenta (NJet, Jet_Px, Jet_Py, Jet_Pz, Jet_E, Jet_btag, Jet_ID), muons alike, no
    run/lumi/event and no constituents. ``pt``: a Jet_pt branch too."""
    jets = {"Px": _f32([[30.0, -20.0], []]), "Py": _f32([[40.0, 5.0], []]), "Pz": _f32([[10.0, 80.0], []]),
            "E": _f32([[60.0, 90.0], []]), "btag": _f32([[0.1, 0.9], []]),
            "ID": ak.values_astype(ak.Array([[True, True], []]), np.bool_)}
    if pt:
        jets["pt"] = _f32([[50.0, 20.6], []])
    with uproot.recreate(path) as f:
        write_nanoaod(f, "events", {"Jet": ak.zip(jets), "Muon": ak.zip({k: _f32([[1.0], [2.0]]) for k in
                                                                         ("Px", "Py", "Pz", "E")}),
                                    "EventWeight": np.ones(2, np.float32)})
    return path


def test_jets_as_cartesian_momenta_say_so(tmp_path):
    """A CMS open-data flat tree with Jet_Px/Py/Pz/E (uproot-HZZ.root): the line asked "did you mean 'Jet_btag'?"
    for 'FatJet_eta' and sent the user to PFNano; no branch name can read a pT that is not stored. It names the
    Cartesian branches and what to write; with a pT branch beside them, a name is at fault: no such line."""
    path = _cms_tutorial_tree(tmp_path / "hzz.root")
    names = {"jet_pt": "Jet_pt", "jet_eta": "Jet_eta", "jet_phi": "Jet_phi", "jet_mass": "Jet_mass",
             "run": None, "luminosityBlock": None, "event": None}
    for branches in ({}, names):
        with pytest.raises(SourceError) as err:
            read_all([path], tree="events", branches=branches)
        line = str(err.value)
        assert "did you mean" not in line and "\n" not in line
        assert line.startswith(f"source: branch '{branches.get('jet_pt', 'FatJet_pt')}', ")
        assert line.endswith(f"of {path}: its jets are Cartesian momenta ('Jet_Px', 'Jet_Py', 'Jet_Pz', 'Jet_E'), and "
                             f"hltrun reads pT, eta, phi and mass: write those as branches first (e.g. with the vector "
                             f"package) and set source.branches.jet_* to them; the file holds no jet constituents "
                             f"either, which the path needs (README: Reading your own files)"), line
    with pytest.raises(SourceError) as err:
        read_all([_cms_tutorial_tree(tmp_path / "with_pt.root", pt=True)], tree="events", branches=names)
    assert "Cartesian" not in str(err.value) and "'Jet_eta'" in str(err.value)


def write_pooled(path: Path, link: str, index: str, cands: str, ak4: bool = False,
                 extra: dict | None = None) -> Path:
    """NanoAOD with jet constituents as CMSSW writes them: ``cands`` is a pool of candidates in the order
    of the packed candidates (CMSSW's UniqueMerger sorts them by key), not jet after jet, and the link
    table ``link`` (``jetIdx`` and ``index``, Int_t) gives each jet its constituents, jet after jet.
    ``FatJet_nConstituents`` (UChar_t) adds up to the pool, as it does where every FatJet's constituents
    are kept. Names: PhysicsTools/NanoAOD/python/jetConstituents_cff.py (FatJetPFCand, pfCandIdx, PFCand),
    cms-jet/PFNano python/addPFCands_cff.py (FatJetPFCands, pFCandsIdx, PFCands), CMSSW's older
    PhysicsTools/NanoAOD/python/addPFCands_cff.py (JetPFCandsAK8, candIdx, PFCands; with ``ak4`` its
    JetPFCandsAK4 table too, linking two AK4 jets); ``extra``: more collections by name."""
    data = {
        "run": np.array([1, 1], np.uint32), "luminosityBlock": np.array([1, 1], np.uint32),
        "event": np.array([1, 2], np.uint64),
        "FatJet": ak.zip({"pt": _f32([[900, 500], [400]]), "eta": _f32([[0.5, -1.0], [0.1]]),
                          "phi": _f32([[1.0, -2.0], [-1.0]]), "mass": _f32([[90, 30], [170]]),
                          "nConstituents": ak.values_astype(ak.Array([[2, 2], [2]]), np.uint8)}),
        cands: ak.zip({"pt": _f32([[40, 30, 20, 10], [7, 6]]), "eta": _f32([[0.6, -1.1, 0.4, -0.9], [0.1, 0.2]]),
                       "phi": _f32([[1.1, -2.1, 0.9, -1.9], [-1.0, -1.1]]),
                       "pdgId": ak.values_astype(ak.Array([[211, 22, -211, 130], [211, 22]]), np.int32)}),
        # jet 0 holds candidates 0 and 2, jet 1 candidates 1 and 3: in the pool they alternate
        link: ak.zip({"jetIdx": ak.values_astype(ak.Array([[0, 0, 1, 1], [0, 0]]), np.int32),
                      index: ak.values_astype(ak.Array([[0, 2, 1, 3], [0, 1]]), np.int32)}),
    }
    if ak4:
        data["Jet"] = ak.zip({"pt": _f32([[800, 600], [300]]), "eta": _f32([[0.5, -1.0], [0.1]]),
                              "phi": _f32([[1.0, -2.0], [-1.0]]), "mass": _f32([[9, 3], [17]])})
        data["JetPFCandsAK4"] = ak.zip({"jetIdx": ak.values_astype(ak.Array([[1, 1, 0, 0], [0, 0]]), np.int32),
                                        "candIdx": ak.values_astype(ak.Array([[0, 2, 1, 3], [0, 1]]), np.int32)})
    data.update(extra or {})
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", data)
    return path


POOLED = [("FatJetPFCand", "pfCandIdx", "PFCand"), ("FatJetPFCands", "pFCandsIdx", "PFCands"),
          ("JetPFCandsAK8", "candIdx", "PFCands"),
          ("GenJetAK8GenPartCand", "genPartCandIdx", "GenPartCand")]  # jetConstituents_cff's gen-level table


def _linked_jets(path: Path, link: str, index: str, cands: str) -> list[list[list[tuple]]]:
    """Each event's jets (in file order), each as its constituents' (eta, phi, pT) by decreasing pT, from
    the link table with numpy alone."""
    a = uproot.open(path)["Events"].arrays(library="np")
    events = []
    for e in range(len(a["event"])):
        jets = []
        for j in range(len(a["FatJet_pt"][e])):
            at = a[f"{link}_{index}"][e][a[f"{link}_jetIdx"][e] == j]
            rows = zip(a[f"{cands}_eta"][e][at], a[f"{cands}_phi"][e][at], a[f"{cands}_pt"][e][at])
            jets.append(sorted(((float(x), float(y), float(z)) for x, y, z in rows), key=lambda r: -r[2]))
        events.append(jets)
    return events


@pytest.mark.parametrize("link, index, cands", POOLED)
def test_a_pool_of_candidates_is_never_read_as_counts(tmp_path, link, index, cands):
    """``FatJet_nConstituents`` with the candidate pool (``PFCand_pt``, as a user reading the branch list
    would set them, or as 'did you mean PFCands_pt?' told them): the counts added up, so the pool's
    candidates went two by two to the jets in pool order, every jet wrong, exit 0. Refused now, with
    the settings that read the link table; those give each jet the constituents the link table names."""
    path = write_pooled(tmp_path / "pooled.root", link, index, cands)
    guess = {"cand_pt": f"{cands}_pt", "cand_eta": f"{cands}_eta", "cand_phi": f"{cands}_phi"}
    right = {"cand_jet_index": f"{link}_jetIdx", "cand_index": f"{link}_{index}", **guess}
    with pytest.raises(ConfigError) as err:
        read_all([path], branches=guess)
    assert str(err.value).startswith(f"source.layout: counts reads '{cands}_pt' of ")
    assert str(err.value).endswith(f"is a pool of candidates indexed by the link table '{link}_{index}' (not in jet "
                                   f"order: 'FatJet_nConstituents' would give its candidates to the wrong jets); set "
                                   f"source.layout: jet_index and source.branches: {{"
                                   + ", ".join(f"{k}: {v}" for k, v in right.items()) + "}")
    events, _ = read_all([path], layout="jet_index", branches=right)
    got = [[[tuple(map(float, row)) for row in c[:n]] for c, n in zip(p[""].constituents, p[""].n_constituents)]
           for _, p in events]
    want = _linked_jets(path, link, index, cands)  # file order is pT order here: 900, 500 | 400
    assert got == want and want[0][0] == [(pytest.approx(0.6), pytest.approx(1.1), 40.0),
                                          (pytest.approx(0.4), pytest.approx(0.9), 20.0)]


def test_a_pool_of_candidates_in_an_rntuple_is_refused_without_listing_every_field(tmp_path, monkeypatch):
    """CMSSW's RNTuple NanoAOD keeps a collection as a record (``PFCand.pt``, ``FatJetPFCand.jetIdx``): the pool
    is refused as in a TTree. The check listed every field of the RNTuple to find the link table (uproot's
    ``keys()``: 4.6-6.8 s on the real 2015 NanoAOD RNTuple, paid at every file's check); it lists the top-level
    fields and the records' own now (0.2 s there)."""
    link, index, cands = POOLED[0]
    flat = uproot.open(write_pooled(tmp_path / "pooled.root", link, index, cands))["Events"]
    rntuple = tmp_path / "pooled_rntuple.root"
    with uproot.recreate(rntuple) as f:
        f["Events"] = regroup(flat.arrays(library="ak"), branch_groups(flat))
    assert f"{link}.jetIdx" in uproot.open(rntuple)["Events"].keys()
    listed_whole = []
    keys = uproot.behaviors.RNTuple.HasFields.keys

    def counting_keys(self, *args, recursive=True, **kwargs):
        if recursive and isinstance(self, uproot.behaviors.RNTuple.RNTuple):
            listed_whole.append(self.object_path)
        return keys(self, *args, recursive=recursive, **kwargs)

    monkeypatch.setattr(uproot.behaviors.RNTuple.HasFields, "keys", counting_keys)
    guess = {"jet_pt": "FatJet.pt", "jet_eta": "FatJet.eta", "jet_phi": "FatJet.phi", "jet_mass": "FatJet.mass",
             "jet_n_constituents": "FatJet.nConstituents",
             "cand_pt": f"{cands}.pt", "cand_eta": f"{cands}.eta", "cand_phi": f"{cands}.phi"}
    with pytest.raises(ConfigError) as err:
        read_all([rntuple], branches=guess)
    assert listed_whole == []
    assert f"is a pool of candidates indexed by the link table '{link}.{index}'" in str(err.value)
    right = {**guess, "cand_jet_index": f"{link}.jetIdx", "cand_index": f"{link}.{index}"}
    del right["jet_n_constituents"]
    assert f"set source.layout: jet_index and source.branches: {{cand_jet_index: {link}.jetIdx, " \
           f"cand_index: {link}.{index}," in str(err.value)
    events, _ = read_all([rntuple], layout="jet_index", branches=right)
    got = [[[tuple(map(float, row)) for row in c[:n]] for c, n in zip(p[""].constituents, p[""].n_constituents)]
           for _, p in events]
    assert got == _linked_jets(tmp_path / "pooled.root", link, index, cands)


@pytest.mark.parametrize("mine", ["AK8PFCand", "Cand"])
def test_a_jet_ordered_collection_beside_a_link_table_is_read_as_counts(tmp_path, mine):
    """The user's own constituents, jet after jet (``AK8PFCand_*`` or ``Cand_*``, their ntuplizer's), in a file
    that also holds CMSSW addPFCands' pool ``PFCands`` and its ``JetPFCandsAK8`` table: the job was refused,
    exit 2, calling 'AK8PFCand' the pool that ``JetPFCandsAK8_candIdx`` indexes (that index points into
    PFCands only). Read as counts now: each jet the constituents the link table gives it, in file order."""
    own = ak.zip({"pt": _f32([[40, 20, 30, 10], [7, 6]]), "eta": _f32([[0.6, 0.4, -1.1, -0.9], [0.1, 0.2]]),
                  "phi": _f32([[1.1, 0.9, -2.1, -1.9], [-1.0, -1.1]])})  # the pool's jets, jet after jet
    path = write_pooled(tmp_path / "own.root", "JetPFCandsAK8", "candIdx", "PFCands", extra={mine: own})
    events, _ = read_all([path], branches={f"cand_{k}": f"{mine}_{k}" for k in ("pt", "eta", "phi")})
    got = [[[tuple(map(float, row)) for row in c[:n]] for c, n in zip(p[""].constituents, p[""].n_constituents)]
           for _, p in events]
    assert got == _linked_jets(path, "JetPFCandsAK8", "candIdx", "PFCands")


def test_cmssw_sized_link_tables_are_named_and_never_mixed_up(tmp_path):
    """CMSSW's own addPFCands_cff names its link tables JetPFCandsAK8 / JetPFCandsAK4 (not after the jets):
    the defaults' line said "did you mean 'PFCands_pt'?" (which read as counts builds wrong jets), and
    FatJet read through the AK4 table gave every constituent to the wrong jet without a word."""
    path = write_pooled(tmp_path / "cmssw.root", "JetPFCandsAK8", "candIdx", "PFCands", ak4=True)
    with pytest.raises(SourceError) as err:
        read_all([path])
    assert "did you mean" not in str(err.value)
    assert str(err.value).endswith("(the file links constituents to jets by index: set source.layout: jet_index and "
                                   "source.branches: {cand_jet_index: JetPFCandsAK8_jetIdx, cand_index: "
                                   "JetPFCandsAK8_candIdx, cand_pt: PFCands_pt, cand_eta: PFCands_eta, "
                                   "cand_phi: PFCands_phi})")
    ak4_table = {"cand_jet_index": "JetPFCandsAK4_jetIdx", "cand_index": "JetPFCandsAK4_candIdx",
                 "cand_pt": "PFCands_pt", "cand_eta": "PFCands_eta", "cand_phi": "PFCands_phi"}
    with pytest.raises(ConfigError, match=r"'JetPFCandsAK4_jetIdx' links constituents to the 'Jet' jets of "
                                          r".*cmssw.root, not to 'FatJet' .*set source.branches: \{cand_jet_index: "
                                          r"JetPFCandsAK8_jetIdx, cand_index: JetPFCandsAK8_candIdx"):
        read_all([path], layout="jet_index", branches=ak4_table)
    events, _ = read_all([path], layout="jet_index", branches={**ak4_table, **AK4})  # AK4 jets, their own table
    assert [list(p[""].n_constituents) for _, p in events] == [[2, 2], [2]]


def write_scouting(path: Path) -> Path:
    """Run-3 scouting NanoAOD (PhysicsTools/NanoAOD/python/run3scouting_cff.py): HLT jets ScoutingPFJet_*
    (mass as ``m``), particles ScoutingParticle_*, their reco::PFCandidate copies ScoutingPFCandidate_*,
    and the jets reclustered from them, ScoutingFatPFJetRecluster_* with nConstituents (UChar_t), which
    here add up to the event's candidates: no table says which candidate is in which jet."""
    particles = {"pt": _f32([[40, 30, 20, 10], [7, 6]]), "eta": _f32([[0.6, -1.1, 0.4, -0.9], [0.1, 0.2]]),
                 "phi": _f32([[1.1, -2.1, 0.9, -1.9], [-1.0, -1.1]]),
                 "pdgId": ak.values_astype(ak.Array([[211, 22, -211, 130], [211, 22]]), np.int32)}
    jets = {"pt": _f32([[900, 500], [400]]), "eta": _f32([[0.5, -1.0], [0.1]]), "phi": _f32([[1.0, -2.0], [-1.0]])}
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            "run": np.array([1, 1], np.uint32), "luminosityBlock": np.array([1, 1], np.uint32),
            "event": np.array([1, 2], np.uint64),
            "ScoutingPFJet": ak.zip({**jets, "m": _f32([[90, 30], [170]])}),
            "ScoutingParticle": ak.zip(particles), "ScoutingPFCandidate": ak.zip(particles),
            "ScoutingFatPFJetRecluster": ak.zip({**jets, "mass": _f32([[90, 30], [170]]), "nConstituents":
                                                 ak.values_astype(ak.Array([[2, 2], [2]]), np.uint8)})})
    return path


def test_run3_scouting_nanoaod_says_its_particles_are_in_no_jet(tmp_path):
    """The defaults' line suggested 'ScoutingFatPFJetRecluster_nConstituents'; with the scouting particles
    as constituents the counts added up and the job ran, exit 0, on jets built from whichever particles
    came next. Both now say what the file lacks: no link from a particle to its jet."""
    path = write_scouting(tmp_path / "scouting.root")
    with pytest.raises(SourceError) as err:
        read_all([path])
    assert "did you mean" not in str(err.value)
    assert "scouting.root, a Run-3 scouting NanoAOD file: 'ScoutingParticle' holds the whole event's scouting " \
           "particles, which Run-3 scouting NanoAOD links to no jet" in str(err.value)
    recluster = {f"jet_{k}": f"ScoutingFatPFJetRecluster_{k}" for k in ("pt", "eta", "phi", "mass")}
    for cands in ("ScoutingPFCandidate", "ScoutingParticle"):
        guess = {**recluster, "jet_n_constituents": "ScoutingFatPFJetRecluster_nConstituents",
                 **{f"cand_{k}": f"{cands}_{k}" for k in ("pt", "eta", "phi")}}
        said = (rf"^source.layout: counts reads '{cands}_pt' of .*scouting.root as the jets' constituents stored "
                rf"jet after jet, but '{cands}' holds the whole event's scouting particles.*hltrun cannot build the "
                r"jets' constituents")
        with pytest.raises(ConfigError, match=said):
            read_all([path], branches=guess)
