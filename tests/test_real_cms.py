"""Real CMS files, not files written like them: CMS Open Data NanoAOD as a TTree and as an RNTuple
(tests/data/README.md says where they come from). Standard NanoAOD keeps no jet constituents, so the
jets are read with a link table the file does have (``Muon_jetIdx``... into ``Muon_*``: layout jet_index)
and compared, event by event, with uproot's reading of the same columns done here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import SourceError
from hltrun.modules.rootio import write_nanoaod
from hltrun.tools.hltdiff import main as hltdiff
from tests.test_source import assert_same_events, read_all

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).with_name("data")
NANO = DATA / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
RNTUPLE = DATA / "cmsopendata2015_ttbar_19980_NANOAOD_RNTupleImporter_rntuple_v1-0-0-1.root"
SHA256 = {NANO: "c14a29b25b15b837226f396e920b5d9fb134f3558bef5b0a9db5d6d9606c5f3a",
          RNTUPLE: "80782b7d1baa5fe6c7c9746a300245b410d71ddcea506389798bb2d42645e2a6"}
IDS = ("run", "luminosityBlock", "event")
NO_CONSTITUENTS = ("source: branch 'FatJetPFCand_pt', 'FatJetPFCand_eta', 'FatJetPFCand_phi' not found in tree "
                   "'Events' of {path}: the file holds no jet constituents (no '*PFCand*' branch); NanoAOD keeps them "
                   "only with PFNano or a constituent table: give hltrun such a file, or set source.branches.* to "
                   "your names")


def linked(cands: str) -> dict:
    """The source's settings reading NanoAOD's AK4 jets with ``cands`` (Muon, Electron...) as constituents."""
    return {"layout": "jet_index", "branches": {
        "jet_pt": "Jet_pt", "jet_eta": "Jet_eta", "jet_phi": "Jet_phi", "jet_mass": "Jet_mass",
        "cand_jet_index": f"{cands}_jetIdx", "cand_pt": f"{cands}_pt", "cand_eta": f"{cands}_eta",
        "cand_phi": f"{cands}_phi"}}


def columns(path: Path, names: list[str]) -> dict[str, ak.Array]:
    """uproot's reading of ``names``, apart from the source. ROOT's RNTuple importer keeps each NanoAOD
    collection as a record ``_collectionN`` (with top-level projections of its fields): read here from the
    records, field by field (uproot's ``arrays`` on a 1679-field RNTuple takes seconds)."""
    with uproot.open(path) as f:
        events = f["Events"]
        if f.classname_of("Events") != "ROOT::RNTuple":
            return dict(zip(names, ak.unzip(events.arrays(names))))
        record = {inner: top for top in events.keys(recursive=False) if top.startswith("_collection")
                  for inner in events[top].keys(recursive=False)}
        return {n: (events[record[n]][n] if n in record else events[n]).array() for n in names}


def independent(path: Path, cands: str) -> list[tuple[tuple[int, ...], list[tuple]]]:
    """Each event's ids and jets by decreasing pT: (pt, eta, phi, mass, [(eta, phi, pt) of the candidates
    linked to it, by decreasing pT]); a candidate of jet index -1 is in no jet."""
    jet = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"]
    cand = [f"{cands}_eta", f"{cands}_phi", f"{cands}_pt"]
    c = columns(path, [*IDS, *jet, *cand, f"{cands}_jetIdx"])
    out = []
    for i in range(len(c["event"])):
        pt = np.asarray(c["Jet_pt"][i], np.float32)
        link = np.asarray(c[f"{cands}_jetIdx"][i])
        kin = np.stack([np.asarray(c[k][i], np.float32) for k in cand], axis=1).reshape(-1, 3)
        jets = []
        for j in np.argsort(-pt, kind="stable"):
            mine = kin[link == j]
            jets.append((*(np.float32(c[k][i][j]) for k in jet), mine[np.argsort(-mine[:, 2], kind="stable")]))
        out.append((tuple(int(c[k][i]) for k in IDS), jets))
    return out


def assert_jets_equal(events: list, expected: list) -> None:
    """The source's events are the expected ones, in order: ids, jets (count, pT order, kinematics) and each
    jet's constituents (count, pT order, values, zero padding after them)."""
    assert len(events) == len(expected)
    for (eid, products), (ids, jets) in zip(events, expected):
        assert (eid.run, eid.luminosityBlock, eid.event) == ids
        got = products[""]
        assert len(got.pt) == len(jets), ids
        for k, name in enumerate(("pt", "eta", "phi", "mass")):
            np.testing.assert_array_equal(getattr(got, name), np.array([j[k] for j in jets], np.float32), err_msg=name)
        for n, j in enumerate(jets):
            kept = min(len(j[4]), got.constituents.shape[1])
            assert got.n_constituents[n] == len(j[4]), (ids, n)
            np.testing.assert_array_equal(got.constituents[n, :kept], j[4][:kept])
            assert not got.constituents[n, kept:].any()


def links(path: Path, cands: str) -> np.ndarray:
    return np.asarray(ak.flatten(columns(path, [f"{cands}_jetIdx"])[f"{cands}_jetIdx"]))


@pytest.mark.parametrize("path", [NANO, RNTUPLE], ids=["ttree", "rntuple"])
def test_the_files_are_the_ones_described(path):
    """What tests/data/README.md says of them: a changed file changes what every test below compares."""
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path]
    with uproot.open(path) as f:
        assert f.classname_of("Events") == ("ROOT::RNTuple" if path == RNTUPLE else "TTree")


@pytest.mark.slow  # hltrun in a subprocess
def test_the_default_path_says_the_file_holds_no_jet_constituents(tmp_path):
    """The shipped path on real NanoAOD: one line saying what the file lacks, exit 3, no traceback."""
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(ROOT / "configs" / "path.yaml"),
                          f"source.files=[{NANO}]", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 3, res.stderr
    assert res.stderr.splitlines() == ["hltrun: error: " + NO_CONSTITUENTS.format(path=NANO)]
    with pytest.raises(SourceError) as err:  # the source alone, on the RNTuple too
        read_all([RNTUPLE])
    assert str(err.value) == NO_CONSTITUENTS.format(path=RNTUPLE)


@pytest.mark.parametrize("cands", ["Muon", "Electron", "Photon", "Tau"])
def test_jets_and_linked_objects_equal_uproots_reading(cands):
    """Every event's jets and the objects linked to them, as uproot reads the same columns; the -1 links
    (in no jet) left out and counted apart; every entry of the file accounted for."""
    events, src = read_all([NANO], chunk_size=37, **linked(cands))  # chunks ending inside the file
    expected = independent(NANO, cands)
    assert len(expected) == 200
    assert_jets_equal(events, expected)
    link = links(NANO, cands)
    jets = [j for _, js in expected for j in js]
    acc = src.accounting()
    assert {k: acc[k] for k in ("files", "entries_in_files", "read", "skipped", "bad_entries", "duplicates",
                                "not_selected", "invalid_links", "links_to_no_jet", "zero_constituent_jets")} == {
        "files": 1, "entries_in_files": 200, "read": 200, "skipped": 0, "bad_entries": 0, "duplicates": 0,
        "not_selected": 0, "invalid_links": 0, "links_to_no_jet": int(np.count_nonzero(link == -1)),
        "zero_constituent_jets": sum(len(j[4]) == 0 for j in jets)}
    assert acc["files_read"] == {str(NANO): 200}
    # every linked object is in exactly one jet, none of the -1 links is
    assert sum(int(p[""].n_constituents.sum()) for _, p in events) == np.count_nonzero(link >= 0)


def test_the_files_have_links_to_no_jet():
    """The comparisons above see -1 links: without them, dropping the -1 filter would go unnoticed."""
    assert (links(NANO, "Muon") == -1).any() and (links(NANO, "Electron") == -1).any()
    assert (links(RNTUPLE, "Muon") == -1).any()


def test_the_rntuple_gives_the_jets_a_ttree_of_its_columns_gives(tmp_path, cands="Muon"):
    """The RNTuple (ROOT's importer: NanoAOD's names under ``_collectionN.``) read with the TTree file's
    settings gives uproot's reading of it, and the same events as a TTree written from its columns. It holds
    other events than the TTree file (run 1, events 44727241-50), so it is compared with itself as a TTree."""
    events, src = read_all([RNTUPLE], chunk_size=4, **linked(cands))
    expected = independent(RNTUPLE, cands)
    assert len(expected) == 10
    assert_jets_equal(events, expected)
    assert src.accounting()["read"] == 10 and src.accounting()["links_to_no_jet"] == np.count_nonzero(
        links(RNTUPLE, cands) == -1)
    cols = columns(RNTUPLE, [*IDS, "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", f"{cands}_pt", f"{cands}_eta",
                             f"{cands}_phi", f"{cands}_jetIdx"])
    tree = tmp_path / "ttree.root"
    with uproot.recreate(tree) as f:
        records = {c: ak.zip({k.split("_", 1)[1]: v for k, v in cols.items() if k.startswith(c + "_")})
                   for c in ("Jet", cands)}  # NanoAOD's names again: Jet_pt, nJet, Muon_jetIdx...
        write_nanoaod(f, "Events", {**{k: ak.to_numpy(cols[k]) for k in IDS}, **records})
    as_ttree, _ = read_all([tree], chunk_size=4, **linked(cands))
    assert_same_events(events, as_ttree)
    assert_jets_equal(as_ttree, expected)


@pytest.mark.parametrize("weight", ["genWeight", "noSuchWeight"], ids=["weighted", "unweighted"])
def test_the_rntuple_is_read_without_listing_its_fields(monkeypatch, weight):
    """uproot 5.7 lists an RNTuple's fields (``keys``, ``name in``, ``arrays``, ``iterate``) in time growing
    with the square of their number: seconds for this file's 1679, at the file check and again at the
    loop's open. The source looks its fields up by name, the weight too (a data file has none: uproot's
    lookup of a name it lacks lists them all), and reads what uproot reads."""
    listings = []
    iteritems = uproot.behaviors.RNTuple.HasFields.iteritems

    def spy(self, *args, **kwargs):
        if isinstance(self, uproot.behaviors.RNTuple.RNTuple) and kwargs.get("recursive", True):
            listings.append(kwargs)  # every field of the RNTuple, not its top-level ones
        return iteritems(self, *args, **kwargs)

    settings = linked("Muon")
    settings["branches"]["weight"] = weight
    monkeypatch.setattr(uproot.behaviors.RNTuple.HasFields, "iteritems", spy)
    events, src = read_all([RNTUPLE], chunk_size=4, **settings)
    monkeypatch.undo()
    assert listings == []
    assert_jets_equal(events, independent(RNTUPLE, "Muon"))
    assert src.accounting()["read"] == 10


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A whole hltrun job on the TTree file, its AK4 jets with their muons as constituents."""
    pytest.importorskip("onnxruntime")
    where = tmp_path_factory.mktemp("job")
    cfg = where / "nano.yaml"
    cfg.write_text(json.dumps({  # YAML is a superset of JSON
        "process": "HLTAD", "source": {"type": "RootJetSource", "files": [str(NANO)], **linked("Muon")},
        "modules": {"batcher": {"type": "JetBatcher", "src": "source", "max_jets": 2, "relative": True},
                    "vae": {"type": "VAEAnomalyScorer", "src": "batcher", "model": "conv_vae",
                            "backend": "onnxruntime"},
                    "anomalyFilter": {"type": "AnomalyScoreFilter", "src": "vae", "reduce": "max",
                                      "background_efficiency": "1e-2"},
                    "out": {"type": "RootOutputModule", "file": str(where / "out.root"),
                            "select_events": ["HLT_AnomalyDetection"], "keep": ["vae"]}},
        "paths": {"HLT_AnomalyDetection": ["batcher", "vae", "anomalyFilter"]}, "endpaths": {"outputPath": ["out"]}}))
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(cfg), "-q", "--report-dir",
                          str(where / "reports")], cwd=where, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return where, res


@pytest.mark.slow
def test_a_whole_job_on_real_nanoaod_accounts_for_every_entry(job):
    where, res = job
    assert res.returncode == 0, res.stderr
    with uproot.open(NANO) as f:
        entries = f["Events"].num_entries
    passed = int(res.stdout.split("TrigReport Events total = ")[1].split()[3])
    assert f"TrigReport Events total = {entries} passed = {passed} failed = {entries - passed}" in res.stdout
    assert f"JobReport  events read {entries}, skipped (skipEvents) 0, processed {entries} " in res.stdout
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("TrigReport ")]
    for name in ("HLT_AnomalyDetection", "outputPath", "batcher", "vae", "anomalyFilter", "out"):
        # its first row: the path's (bit, index, Executed, ...) or the module's in its path (bit, index, Visited, ...)
        assert int(next(r for r in rows if r[-1] == name)[3]) == entries, name
    no_jet = int(np.count_nonzero(links(NANO, "Muon") == -1))
    assert f"JobReport  links to no jet {no_jet} (source: a jet index of -1" in res.stdout
    doc = json.loads((where / "reports" / "hltrun.json").read_text())["job"]
    assert doc["events_read"] == doc["events_processed"] == entries
    assert doc["source"]["links_to_no_jet"] == no_jet and doc["data_quality"]["source"]["invalid_links"] == 0
    with uproot.open(where / "out.root") as out:
        assert out["Events"].num_entries == passed


@pytest.mark.slow
def test_hltdiff_says_the_real_file_is_cmssw_nanoaod(job, capsys):
    """The job's input given to hltdiff for an output: one line, exit 2."""
    where, res = job
    assert res.returncode == 0, res.stderr
    assert hltdiff([str(NANO), str(where / "out.root")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hltdiff: error: {NANO} is a CMSSW NanoAOD file (")
    assert err[0].endswith(", not an hltrun output: hltdiff compares the outputs of two hltrun jobs; run hltrun on "
                           "it (modules.out.file) and give hltdiff that job's output")
