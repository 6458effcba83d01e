"""Input files as users outside NanoAOD bring them: flat ntuples, counts of other types, file lists and
folders in ``source.files``, and a machine missing one of uproot's codec libraries."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import ConfigError, SourceError
from tests.conftest import make_events
from tests.test_source import read_all

REPO = Path(__file__).resolve().parents[1]
FLAT = {"jet_pt": "jet_pt", "jet_eta": "jet_eta", "jet_phi": "jet_phi", "jet_mass": "jet_mass",
        "jet_n_constituents": "jet_ncons", "cand_pt": "pf_pt", "cand_eta": "pf_eta", "cand_phi": "pf_phi"}


def write_flat(path: Path, events: list[dict], count_dtype: type = np.int32, compression=uproot.ZLIB(4)) -> Path:
    """A flat ntuple as a CMSSW analyzer writes it: ``std::vector<float>`` branches without NanoAOD's
    counters, the constituents of each event's jets one after the other, a per-jet count of ``count_dtype``."""
    def jagged(values: list, dtype: type) -> ak.Array:
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int64)
        flat = np.concatenate([np.asarray(v, dtype) for v in values]) if offsets[-1] else np.zeros(0, dtype)
        return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(flat)))

    data = {"run": np.ones(len(events), np.uint32), "luminosityBlock": np.ones(len(events), np.uint32),
            "event": np.array([e["event"] for e in events], np.uint64)}
    for k in ("pt", "eta", "phi", "mass"):
        data[f"jet_{k}"] = jagged([[j[k] for j in e["jets"]] for e in events], np.float32)
    data["jet_ncons"] = jagged([[len(j["c_pt"]) for j in e["jets"]] for e in events], count_dtype)
    for k in ("pt", "eta", "phi"):
        data[f"pf_{k}"] = jagged([[x for j in e["jets"] for x in j[f"c_{k}"]] for e in events], np.float32)
    with uproot.recreate(path, compression=compression) as f:
        f["Events"] = data  # std::vector<...> branches (no counter branch)
    return path


def test_a_flat_vector_ntuple_reads_as_an_independent_read_gives(tmp_path):
    """``std::vector<float>`` jets and constituents with a ``std::vector<int64>`` count: every jet and
    constituent as uproot alone reads them."""
    path = write_flat(tmp_path / "flat.root", make_events(30, seed=4), np.int64)
    typename = uproot.open(path)["Events"]["jet_ncons"].typename
    assert typename.startswith("std::vector<") and "int64_t" in typename, typename  # Long64_t, no counter
    events, _ = read_all([path], branches=FLAT, chunk_size=7)
    raw = uproot.open(path)["Events"].arrays(library="ak")
    assert len(events) == len(raw)
    for (_, products), row in zip(events, raw):
        jets = products[""]
        order = np.argsort(-np.asarray(row.jet_pt), kind="stable")
        np.testing.assert_array_equal(jets.pt, np.asarray(row.jet_pt)[order])
        ends = np.cumsum(np.asarray(row.jet_ncons))
        for out, j in enumerate(order):
            cut = slice(ends[j] - row.jet_ncons[j], ends[j])
            cpt = np.asarray(row.pf_pt)[cut]
            by_pt = np.argsort(-cpt, kind="stable")[:100]
            np.testing.assert_array_equal(jets.constituents[out, :len(by_pt), 2], cpt[by_pt])
            np.testing.assert_array_equal(jets.constituents[out, :len(by_pt), 0], np.asarray(row.pf_eta)[cut][by_pt])


def test_a_missing_codec_library_is_one_line_naming_its_pip_package(tmp_path):
    """Without cramjam (or xxhash) uproot cannot be imported (or cannot decompress a basket): one line
    naming the package to install and exit 4 (no file is to blame, so skipBadFiles skips none), not
    an internal error."""
    path = write_flat(tmp_path / "flat.root", make_events(5, seed=1))
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "xxhash.py").write_text("raise ModuleNotFoundError(\"No module named 'xxhash'\", name='xxhash')\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        process: P
        source: {{type: RootJetSource, files: [{path}], skipBadFiles: true, branches: {FLAT}}}
        """).replace("'", ""))
    code = "import sys; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(REPO)])}
    res = subprocess.run([sys.executable, "-c", code, str(cfg)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 4, res.stderr
    assert res.stderr.strip().splitlines()[-1] == ("hltrun: error: source: reading ROOT files (uproot's compression "
                                                   "codecs) needs xxhash, which is not installed: pip install xxhash")
    assert "Traceback" not in res.stderr


def test_the_codec_libraries_are_declared():
    """uproot 5.3 (the oldest hltrun accepts) does not require xxhash, which every LZ4 basket needs."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = {line.split(">")[0].split("=")[0].strip() for line in cfg["options"]["install_requires"].splitlines()
                if line.strip() and not line.strip().startswith("#")}
    from hltrun.modules.rootio import CODEC_LIBRARIES

    assert set(CODEC_LIBRARIES) <= declared


def test_a_bool_count_branch_is_named_as_no_count(tmp_path):
    """A flag (``std::vector<bool>``) set as the count branch was refused as counts that "do not add
    up": the line says what is wrong with the setting instead."""
    path = write_flat(tmp_path / "bool.root", make_events(10, seed=2), np.bool_)
    assert uproot.open(path)["Events"]["jet_ncons"].typename == "std::vector<bool>"
    with pytest.raises(SourceError, match=r"^source: 'jet_ncons' is a bool branch in .*bool.root, not a count: "
                                          r"set source.branches.jet_n_constituents to .*$"):
        read_all([path], branches=FLAT)


def test_floating_point_counts_are_read_when_whole_and_named_otherwise(tmp_path):
    """Counts stored as floats (whole numbers) read as integer ones do; a fractional or NaN count
    would be cut to another count (or garbage) by the cast: refused with its entry."""
    events = make_events(12, seed=3)
    as_int, _ = read_all([write_flat(tmp_path / "int.root", events)], branches=FLAT)
    as_float, _ = read_all([write_flat(tmp_path / "float.root", events, np.float32)], branches=FLAT)
    assert [e for e, _ in as_int] == [e for e, _ in as_float]
    for (_, a), (_, b) in zip(as_int, as_float):
        np.testing.assert_array_equal(a[""].constituents, b[""].constituents)
    for bad in (np.nan, 2.5):
        path = write_flat(tmp_path / "bad.root", events, np.float32)
        with uproot.open(path) as f:
            data = f["Events"].arrays(library="ak")
        counts = ak.to_list(data["jet_ncons"])
        at = next(i for i, c in enumerate(counts) if c)
        counts[at][0] = bad
        data["jet_ncons"] = ak.values_astype(ak.Array(counts), np.float32)
        with uproot.recreate(path) as f:
            f["Events"] = {name: data[name] for name in data.fields}
        with pytest.raises(SourceError, match=rf"^source: 'jet_ncons' holds {bad}, not a whole number of constituents "
                                              rf"\(jet 0\) at entry {at} of .*bad.root: set source.branches"):
            read_all([path], branches=FLAT)


def test_a_text_list_of_files_reads_the_files_it_lists(tmp_path, monkeypatch):
    """``files.txt`` (CMSSW's loadListFromFile): one name or glob per line, comments and blank lines
    skipped, relative names relative to the working directory; the same events as the files listed
    directly, and a file listed twice (in the list and beside it) is refused as any duplicate."""
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        events = make_events(4, seed=i + 10)
        for e in events:
            e["event"] += 100 * i  # three parts of one sample: no duplicate ids
        write_flat(tmp_path / f"part{i}.root", events)
    (tmp_path / "files.txt").write_text("# my sample\npart0.root\n\n  part[12].root   # the rest\n")
    listed, _ = read_all(["files.txt"], branches=FLAT)
    direct, _ = read_all([tmp_path / f"part{i}.root" for i in range(3)], branches=FLAT)
    assert len(listed) == 12 and [e for e, _ in listed] == [e for e, _ in direct]
    for (_, a), (_, b) in zip(listed, direct):
        np.testing.assert_array_equal(a[""].constituents, b[""].constituents)
    with pytest.raises(ConfigError, match=r"^source.files: .*part0.root is listed twice"):
        read_all(["files.txt", "part0.root"], branches=FLAT)
    (tmp_path / "windows.txt").write_bytes("\ufeffpart0.root\r\npart1.root\r\n".encode("utf-8"))  # BOM, CRLF
    assert [e for e, _ in read_all(["windows.txt"], branches=FLAT)[0]] == [e for e, _ in direct[:8]]
    (tmp_path / "empty.list").write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match=r"^source.files: empty.list lists no input file"):
        read_all(["empty.list"], branches=FLAT)
    (tmp_path / "typo.txt").write_text("part9.root\n")
    with pytest.raises(SourceError, match=r"^source: input file not found: part9.root$"):
        read_all(["typo.txt"], branches=FLAT)


def test_cmssw_file_prefix_names_the_local_file(tmp_path, monkeypatch):
    """A cmsRun configuration and its file lists name every local file ``file:/data/x.root`` (a bare
    ``/store/...`` is a logical name): such a list failed as "input file not found: file:/.../part0.root",
    and ``file:///...`` was refused as a remote URL. Each names the local file, in a list or in source.files."""
    monkeypatch.chdir(tmp_path)
    write_flat(tmp_path / "part0.root", make_events(4, seed=10))
    events = make_events(4, seed=11)
    for e in events:
        e["event"] += 100
    write_flat(tmp_path / "part1.root", events)
    direct, _ = read_all([tmp_path / "part0.root", tmp_path / "part1.root"], branches=FLAT)
    (tmp_path / "cmssw.txt").write_text(f"file:{tmp_path / 'part0.root'}\nfile://{tmp_path / 'part1.root'}\n")
    for files in (["cmssw.txt"], [f"file:{tmp_path / 'part0.root'}", "file:part1.root"]):
        assert [e for e, _ in read_all(files, branches=FLAT)[0]] == [e for e, _ in direct]


def test_a_file_literally_named_with_the_file_prefix(tmp_path, monkeypatch):
    """A file named ``file:foo.root``: ``./file:foo.root`` and a glob matching it read it (they failed, exit 3,
    "cannot read file:foo.root as a ROOT file (FileNotFoundError: ... foo.root)": the found name lost its
    ``./`` and uproot took ``file:`` as CMSSW's prefix); ``file:foo.root`` as written is CMSSW's name of
    ``foo.root``, and where that is missing the one line says how to name the literal file (exit 3)."""
    monkeypatch.chdir(tmp_path)
    write_flat(tmp_path / "file:foo.root", make_events(4, seed=10))
    direct, _ = read_all([tmp_path / "file:foo.root"], branches=FLAT)
    for files in (["./file:foo.root"], ["*.root"], ["file*.root"]):
        read, src = read_all(files, branches=FLAT)
        assert [e for e, _ in read] == [e for e, _ in direct] and len(src.files) == 1
        assert not src.files[0].startswith("file:") and os.path.samefile(src.files[0], tmp_path / "file:foo.root")
    with pytest.raises(SourceError, match=r"^source: input file not found: foo.root \('file:foo.root' is CMSSW's "
                                          r"file: prefix of a local path\); to read the file named 'file:foo.root', "
                                          r"write ./file:foo.root$"):
        read_all(["file:foo.root"], branches=FLAT)
    other = make_events(4, seed=11)
    for e in other:
        e["event"] += 100
    write_flat(tmp_path / "foo.root", other)  # CMSSW's meaning, when its file is there
    assert [e.event for e, _ in read_all(["file:foo.root"], branches=FLAT)[0]] == [e["event"] for e in other]


def test_a_folder_or_another_text_file_says_what_to_give(tmp_path):
    """A folder in source.files is refused with the glob of its files; a text file of another name is
    no damaged ROOT file: the line says so instead of uproot's chunk lengths."""
    write_flat(tmp_path / "part0.root", make_events(4, seed=1))
    with pytest.raises(ConfigError, match=rf"^source.files: {tmp_path} is a folder: give its files, as "
                                          rf"'{tmp_path}/\*.root'$"):
        read_all([tmp_path], branches=FLAT)
    listing = tmp_path / "files.dat"
    listing.write_text(f"{tmp_path / 'part0.root'}\n")
    with pytest.raises(SourceError, match=r"^source: cannot read .*files.dat as a ROOT file \(it does not start with "
                                          r"ROOT's signature 'root'; a text list of input files is read as one when "
                                          r"its name ends in .txt or .list\)$"):
        read_all([listing], branches=FLAT)


ROOT_WRITTEN = Path(__file__).with_name("data") / "root_written.root"  # written by ROOT: tests/data/make_root_written.py
DELPHES = {"run": None, "luminosityBlock": None, "event": None, "jet_pt": "Jet.PT", "jet_eta": "Jet.Eta",
           "jet_phi": "Jet.Phi", "jet_mass": "Jet.Mass", "jet_n_constituents": "Jet.NCons",
           "cand_pt": "EFlowTrack.PT", "cand_eta": "EFlowTrack.Eta", "cand_phi": "EFlowTrack.Phi"}


def _by_pt(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """One jet's constituents (eta, phi, pt) by decreasing pT, as the source pads them."""
    order = np.argsort(-pt, kind="stable")
    return np.stack([eta[order], phi[order], pt[order]], axis=1)


def test_a_root_written_ntuple_in_a_folder_reads_its_last_cycle_as_uproot_does():
    """ROOT's own ``std::vector<std::vector<float>>`` TTree (layout nested) in a TFileService folder, with
    an older cycle (``Events;1``, half the entries) beside the last: the last cycle is read, every jet and
    constituent as uproot alone reads them."""
    with uproot.open(ROOT_WRITTEN) as f:
        assert f["ntuple/Events;1"].num_entries < f["ntuple/Events"].num_entries
        raw = f["ntuple/Events"].arrays(library="np")
    branches = {"run": None, "luminosityBlock": None, "event": "event", "jet_pt": "jet_pt", "jet_eta": "jet_eta",
                "jet_phi": "jet_phi", "jet_mass": "jet_mass", "cand_pt": "jet_pf_pt", "cand_eta": "jet_pf_eta",
                "cand_phi": "jet_pf_phi"}
    events, _ = read_all([ROOT_WRITTEN], tree="ntuple/Events", layout="nested", branches=branches)
    assert [e.event for e, _ in events] == list(raw["event"])
    for i, (_, products) in enumerate(events):
        jets = products[""]
        order = np.argsort(-raw["jet_pt"][i], kind="stable")
        np.testing.assert_array_equal(jets.pt, raw["jet_pt"][i][order])
        for out, j in enumerate(order):
            want = _by_pt(*(np.asarray(raw[f"jet_pf_{k}"][i][j], np.float32) for k in ("pt", "eta", "phi")))
            np.testing.assert_array_equal(jets.constituents[out, :len(want)], want)
            assert not jets.constituents[out, len(want):].any()


def test_delphes_object_branches_read_by_their_field_names():
    """Delphes-like TClonesArray branches split into fields (``Jet.PT``), a per-jet count and the
    constituents as their own collection: read as uproot alone reads them."""
    events, _ = read_all([ROOT_WRITTEN], tree="Delphes", branches=DELPHES)
    with uproot.open(ROOT_WRITTEN) as f:
        raw = f["Delphes"].arrays(["Jet.PT", "Jet.NCons", "EFlowTrack.PT", "EFlowTrack.Eta", "EFlowTrack.Phi"])
    assert len(events) == len(raw) and sum(len(p[""].pt) for _, p in events) > 0
    for (_, products), row in zip(events, raw):
        jets = products[""]
        pt, ncons = np.asarray(row["Jet.PT"]), np.asarray(row["Jet.NCons"])
        order = np.argsort(-pt, kind="stable")
        np.testing.assert_array_equal(jets.pt, pt[order])
        ends = np.cumsum(ncons)
        for out, j in enumerate(order):
            cut = slice(ends[j] - ncons[j], ends[j])
            want = _by_pt(*(np.asarray(row[f"EFlowTrack.{k}"])[cut] for k in ("PT", "Eta", "Phi")))
            np.testing.assert_array_equal(jets.constituents[out, :len(want)], want)


def test_a_delphes_tree_read_with_nanoaod_names_says_which_names_it_has():
    """NanoAOD's default names on a Delphes tree: the line names the object fields to set, not "no
    '*PFCand*' branch; NanoAOD keeps them only with PFNano", which sent the user to make another file."""
    with pytest.raises(SourceError, match=r"^source: branch 'FatJet_pt', .* not found in tree 'Delphes' of "
                                          r".*root_written.root: its branches are fields of objects, as Delphes "
                                          r"writes them \(Jet.PT, EFlowTrack.PT, .*\): set source.branches.\* to "
                                          r"those names, .*hltrun cannot follow$"):
        read_all([ROOT_WRITTEN], tree="Delphes")


def test_an_ntuple_without_its_own_constituent_branches_is_not_sent_to_pfnano(tmp_path):
    """A user's ntuple whose constituents (``pf_*``) are elsewhere (a friend tree, another file): the
    line names the missing branches and the setting, not NanoAOD's "keeps them only with PFNano"."""
    path = write_flat(tmp_path / "jets_only.root", make_events(5, seed=6))
    with uproot.open(path) as f:
        data = f["Events"].arrays(library="ak")
    with uproot.recreate(path) as f:
        f["Events"] = {name: data[name] for name in data.fields if not name.startswith("pf_")}
    with pytest.raises(SourceError) as info:
        read_all([path], branches=FLAT)
    assert str(info.value) == (f"source: branch 'pf_pt', 'pf_eta', 'pf_phi' not found in tree 'Events' of {path} "
                               f"(set source.branches.* to your names)")


@pytest.mark.skipif(os.path.exists("/store"), reason="a machine with /store mounted reads LFNs as local paths")
def test_a_cms_logical_file_name_says_how_to_get_the_file(tmp_path, monkeypatch):
    """A file list from DAS holds LFNs (/store/...): "not found" alone does not say they need a site."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "files.txt").write_text("/store/mc/Run3/QCD/NANOAODSIM/1.root\n")
    with pytest.raises(SourceError) as info:
        read_all(["files.txt"])
    assert str(info.value) == ("source: input file not found: /store/mc/Run3/QCD/NANOAODSIM/1.root (a CMS logical "
                               "file name, read through a site: copy it to a local disk first, e.g. xrdcp "
                               "root://cms-xrd-global.cern.ch//store/mc/Run3/QCD/NANOAODSIM/1.root ., and give "
                               "that path)")


NESTED_HINT = (r"the file keeps each jet's constituents as a list per jet "
               r"\('{pt}' is std::vector<std::vector<float>>\): "
               r"set source.layout: nested and source.branches: \{{cand_pt: {pt}, cand_eta: {eta}, cand_phi: {phi}\}} "
               r"\(layout nested reads no per-jet count\)$")
ROOT_NESTED = {"run": None, "luminosityBlock": None, "jet_pt": "jet_pt", "jet_eta": "jet_eta", "jet_phi": "jet_phi",
               "jet_mass": "jet_mass", "cand_pt": "jet_pf_pt", "cand_eta": "jet_pf_eta", "cand_phi": "jet_pf_phi"}


def test_root_written_per_jet_lists_are_named_with_the_nested_settings():
    """ROOT's own ``std::vector<std::vector<float>>`` constituents: NanoAOD's names were told "the file holds no
    jet constituents ... NanoAOD keeps them only with PFNano", and the user's names with layout counts to set a
    per-jet count branch the file has no need of; both lines now name layout nested and the branches."""
    hint = NESTED_HINT.format(pt="jet_pf_pt", eta="jet_pf_eta", phi="jet_pf_phi")
    with pytest.raises(SourceError, match=r"^source: branch 'FatJet_pt' \(did you mean 'jet_pt'\?\), .* not found in "
                                          r"tree 'ntuple/Events' of .*root_written.root: " + hint):
        read_all([ROOT_WRITTEN], tree="ntuple/Events")
    with pytest.raises(SourceError, match=r"^source: branch 'FatJet_nConstituents' not found in tree 'ntuple/Events' "
                                          r"of .*root_written.root: " + hint):
        read_all([ROOT_WRITTEN], tree="ntuple/Events", branches=ROOT_NESTED)
    events, _ = read_all([ROOT_WRITTEN], tree="ntuple/Events", layout="nested", branches=ROOT_NESTED)
    assert len(events) == uproot.open(ROOT_WRITTEN)["ntuple/Events"].num_entries


def test_an_analyzer_tree_of_per_jet_lists_is_found_and_read_as_the_lines_say(tmp_path):
    """An EDAnalyzer's TFileService tree ``demo/tree`` of ``jet_*`` and per-jet ``jet_const_*`` lists (uproot
    writes those as an RNTuple: it cannot write ``std::vector<std::vector<float>>`` into a TTree). The first
    line listed the folder only ("objects: demo"); each line now names what to set, and the settings it names
    read every jet and constituent as uproot alone reads them."""
    events = make_events(12, seed=9)
    jets = {k: ak.Array([[j[k] for j in e["jets"]] for e in events]) for k in ("pt", "eta", "phi", "mass")}
    consts = {k: ak.Array([[j[f"c_{k}"].tolist() for j in e["jets"]] for e in events]) for k in ("pt", "eta", "phi")}
    path = tmp_path / "analyzer.root"
    with uproot.recreate(path) as f:
        f.mkdir("demo")
        f["demo/tree"] = {"eventNumber": np.array([e["event"] for e in events], np.uint64),
                          **{f"jet_{k}": ak.values_astype(v, np.float32) for k, v in jets.items()},
                          **{f"jet_const_{k}": ak.values_astype(v, np.float32) for k, v in consts.items()}}
    with pytest.raises(SourceError, match=r"^source: no tree 'Events' in .*analyzer.root \(objects: demo\); its tree "
                                          r"is demo/tree: set source.tree: demo/tree$"):
        read_all([path])
    with pytest.raises(SourceError, match=r" not found in tree 'demo/tree' of .*analyzer.root: "
                                          + NESTED_HINT.format(pt="jet_const_pt", eta="jet_const_eta",
                                                               phi="jet_const_phi")):
        read_all([path], tree="demo/tree")
    branches = {"run": None, "luminosityBlock": None, "event": "eventNumber", "jet_pt": "jet_pt", "jet_eta": "jet_eta",
                "jet_phi": "jet_phi", "jet_mass": "jet_mass", "cand_pt": "jet_const_pt", "cand_eta": "jet_const_eta",
                "cand_phi": "jet_const_phi"}
    got, _ = read_all([path], tree="demo/tree", layout="nested", branches=branches, chunk_size=5)
    raw = uproot.open(path)["demo/tree"].arrays(library="ak")
    assert [e.event for e, _ in got] == [e["event"] for e in events]
    for (_, products), row in zip(got, raw):
        order = np.argsort(-np.asarray(row.jet_pt), kind="stable")
        np.testing.assert_array_equal(products[""].pt, np.asarray(row.jet_pt)[order])
        for out, j in enumerate(order):
            want = _by_pt(*(np.asarray(row[f"jet_const_{k}"][j], np.float32) for k in ("pt", "eta", "phi")))[:100]
            np.testing.assert_array_equal(products[""].constituents[out, :len(want)], want)


def test_missing_event_ids_name_the_null_setting():
    """An analyzer's ntuple without run and lumi branches: "set source.branches.* to your names" named nothing
    the user could set; the line says that null reads without them (a jet mass: test_one_file_of_several_...)."""
    branches = {k: v for k, v in ROOT_NESTED.items() if k not in ("run", "luminosityBlock")}
    with pytest.raises(SourceError, match=r"^source: branch 'run', 'luminosityBlock' not found in tree 'ntuple/Events' "
                                          r"of .*root_written.root \(set source.branches.\* to your names; or, where "
                                          r"the file has none, source.branches: \{run: null, luminosityBlock: "
                                          r"null\} \(a null id reads as run 1, lumi 1, event entry \+ 1\)\)$"):
        read_all([ROOT_WRITTEN], tree="ntuple/Events", layout="nested", branches=branches)


def test_one_file_of_several_without_a_branch_names_the_file_that_has_it(tmp_path):
    """A sample whose files differ (one made by an older production without the jet mass): the line named the
    file and said "set source.branches.* to your names", which the files before it were read with. It names the
    earlier file that has the branch and the ways out; with skipBadFiles the file is skipped with that line."""
    events = make_events(6, seed=11)
    full = write_flat(tmp_path / "full.root", events)
    later = [e | {"event": e["event"] + 100} for e in make_events(4, seed=12)]
    with uproot.open(write_flat(tmp_path / "later.root", later)) as f:
        data = f["Events"].arrays(library="ak")
    lacking = tmp_path / "lacking.root"
    with uproot.recreate(lacking) as f:
        f["Events"] = {name: data[name] for name in data.fields if name != "jet_mass"}
    hint = (r"\(set source.branches.\* to your names; or, where the file has none, source.branches: \{jet_mass: null\} "
            r"\(no jet mass read\)\)")
    head = rf"^source: branch 'jet_mass' not found in tree 'Events' of {lacking} {hint}"
    with pytest.raises(SourceError, match=rf"{head}; {full}, read before it, has it: the input files differ in their branches "
                                          r"\(drop this file from source.files, or set source.skipBadFiles: true to "
                                          r"skip the files that lack it\)$"):
        read_all([full, lacking], branches=FLAT)
    with pytest.raises(SourceError, match=rf"{head}$"):
        read_all([lacking], branches=FLAT)  # alone: no other file to name
    got, src = read_all([full, lacking], branches=FLAT, skipBadFiles=True)
    assert len(got) == len(events) and src.bad_files[0].endswith("the input files differ in their branches)")
    got, _ = read_all([full, lacking], branches={**FLAT, "jet_mass": None})
    assert [e.event for e, _ in got] == [e["event"] for e in events + later]
