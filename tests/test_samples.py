"""The shipped samples in data/ hold what data/README.md says; the preprocessing does what the models expect."""
from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.modules.models.preprocess import jets_to_array, load_jets

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = {"qcd_dijet.root": 0, "rsg_ww_1p5TeV.root": 1, "rsg_ww_3p5TeV.root": 2, "zprime_tt_2TeV.root": 3}
BRANCHES = {
    "run": "uint32", "luminosityBlock": "uint32", "event": "uint64", "processId": "int32", "mjj": "float32",
    "nFatJet": "int32", "FatJet_pt": "float32", "FatJet_eta": "float32", "FatJet_phi": "float32",
    "FatJet_mass": "float32", "FatJet_nConstituents": "int32", "nFatJetPFCand": "int32",
    "FatJetPFCand_pt": "float32", "FatJetPFCand_eta": "float32", "FatJetPFCand_phi": "float32",
}
# written by tools/physics/generate_events.py (flat-pT samples carry real weights; these unweighted ones 1); older files lack them
OPTIONAL_BRANCHES = {"genWeight": "float32", "Generator_binvar": "float32"}


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def sample(request: pytest.FixtureRequest) -> tuple[str, ak.Array]:
    path = DATA / request.param
    with uproot.open(path) as fh:
        arrays = fh["Events"].arrays()
    types = {k: ak.to_numpy(ak.flatten(arrays[k], axis=None)).dtype for k in arrays.fields}
    return request.param, arrays, types


def test_branches_and_types(sample) -> None:
    name, arrays, types = sample
    assert set(BRANCHES) <= set(types) <= set(BRANCHES) | set(OPTIONAL_BRANCHES), f"{name}: branches {sorted(types)}"
    for branch, dtype in {**BRANCHES, **OPTIONAL_BRANCHES}.items():
        if branch in types:
            assert types[branch] == np.dtype(dtype), f"{name}: {branch} is {types[branch]}"
    if "genWeight" in types:  # these samples are generated unweighted: every event weighs 1
        assert np.all(ak.to_numpy(arrays.genWeight) == 1.0), name


def test_size_ids_and_process(sample) -> None:
    name, a, _ = sample
    assert (DATA / name).stat().st_size < 5e6
    assert len(a) >= 1000
    assert np.all(a.processId == SAMPLES[name])
    assert np.all(a.run == 1 + SAMPLES[name])  # one run number per sample: ids never collide
    assert len(np.unique(ak.to_numpy(a.event))) == len(a)


def test_selection_cuts(sample) -> None:
    name, a, _ = sample
    assert np.all(a.nFatJet >= 2)
    assert np.all(ak.num(a.FatJet_pt) == a.nFatJet)
    assert ak.all(a.FatJet_pt > 200.0)
    assert ak.all(abs(a.FatJet_eta) < 2.5)
    assert ak.all(abs(a.FatJet_phi) <= np.pi + 1e-6)
    assert ak.all(a.FatJet_pt[:, :-1] >= a.FatJet_pt[:, 1:]), "jets not pT-ordered"
    # mjj is the mass of the two leading jets
    pt, eta, phi, m = (ak.to_numpy(a[f"FatJet_{k}"][:, :2]).astype(np.float64) for k in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    mjj = np.sqrt(np.maximum(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2, 0))
    np.testing.assert_allclose(mjj, ak.to_numpy(a.mjj), rtol=2e-3)


def test_constituents_consistent_and_sorted(sample) -> None:
    name, a, _ = sample
    assert np.all(ak.sum(a.FatJet_nConstituents, axis=1) == a.nFatJetPFCand)
    assert np.all(ak.num(a.FatJetPFCand_pt) == a.nFatJetPFCand)
    assert ak.all(a.FatJetPFCand_pt > 0) and ak.all(abs(a.FatJetPFCand_eta) < 2.5)
    counts = ak.to_numpy(ak.flatten(a.FatJet_nConstituents))
    pt = ak.to_numpy(ak.flatten(a.FatJetPFCand_pt))
    jet = np.repeat(np.arange(len(counts)), counts)
    same = jet[1:] == jet[:-1]
    assert not np.any(same & (pt[1:] > pt[:-1])), "constituents not pT-sorted within a jet"
    # the constituents of each jet add up to (nearly) the jet's pT: the slices belong to the right jet
    phi = ak.to_numpy(ak.flatten(a.FatJetPFCand_phi)).astype(np.float64)
    px = np.bincount(jet, pt * np.cos(phi), len(counts))
    py = np.bincount(jet, pt * np.sin(phi), len(counts))
    np.testing.assert_allclose(np.hypot(px, py), ak.to_numpy(ak.flatten(a.FatJet_pt)), rtol=1e-3)


def test_load_jets_shape_and_padding() -> None:
    jets, evt = load_jets(DATA / "rsg_ww_3p5TeV.root", max_events=50)
    assert jets.shape == (100, 100, 3) and jets.dtype == np.float32
    assert np.array_equal(evt, np.repeat(np.arange(50), 2))
    real = jets[..., 2] > 0
    assert np.all(jets[~real] == 0.0), "padded rows must be all zeros"
    # anti-kT R=0.8 clusters in rapidity: dphi stays within ~R, deta can be larger for soft massive hadrons
    assert np.abs(jets[real][:, 1]).max() < 1.2 and np.median(np.abs(jets[real][:, 0])) < 0.2
    assert np.all(np.diff(jets[..., 2], axis=1) <= 0), "constituents sorted by pT"


def test_jets_to_array_pads_truncates_sorts_and_wraps() -> None:
    counts = np.array([3, 0, 102])
    rng = np.random.default_rng(0)
    pt = np.concatenate([[1.0, 5.0, 3.0], rng.uniform(1, 100, 102)])
    eta = np.concatenate([[0.1, 0.2, 0.3], rng.normal(0, 0.3, 102)])
    phi = np.concatenate([[3.1, -3.1, 3.0], rng.normal(0, 0.3, 102)])
    out = jets_to_array(pt, eta, phi, counts, jet_eta=np.array([0.0, 0.0, 1.0]), jet_phi=np.array([-3.1, 0.0, 0.0]))
    assert out.shape == (3, 100, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :3, 2], [5.0, 3.0, 1.0])
    np.testing.assert_allclose(out[0, :3, 0], [0.2, 0.3, 0.1], atol=1e-6)
    # 3.1 - (-3.1) = 6.2 wraps to 6.2 - 2 pi
    np.testing.assert_allclose(out[0, 2, 1], 6.2 - 2 * np.pi, atol=1e-6)
    assert np.all(out[0, 3:] == 0) and np.all(out[1] == 0)
    np.testing.assert_allclose(out[2, :, 2], np.sort(pt[3:])[::-1][:100], rtol=1e-6)
    with pytest.raises(ValueError):
        jets_to_array(pt[:4], eta[:4], phi[:4], counts, np.zeros(3), np.zeros(3))


@pytest.mark.slow
def test_generation_small(tmp_path: Path) -> None:
    """Optional: the generator runs end to end (needs the 'generate' extra)."""
    pytest.importorskip("pythia8mc", reason="PYTHIA 8 (extra 'generate') not installed")
    pytest.importorskip("fastjet", reason="FastJet (extra 'generate') not installed")
    from hltrun.tools.physics import generate_events as gen

    cfg = gen.load_config(gen.DEFAULT_CONFIG)
    cfg["chunk_size"] = 10
    out = tmp_path / "g.root"
    stats = gen.generate(cfg, "rsg_ww_3p5TeV", 20, workers=1, out=out, progress=False)
    assert stats["events"] == 20
    with uproot.open(out) as fh:
        a = fh["Events"].arrays()
    # generated files carry genWeight (issue 12) and the hard process's pTHat (issue 23); the shipped
    # ones predate both. genWeight is 1 for an unbiased process
    assert set(a.fields) == set(BRANCHES) | {"genWeight", "Generator_binvar"}, a.fields
    assert np.allclose(ak.to_numpy(a.genWeight), 1.0)
    assert len(a) == 20 and np.all(a.processId == 2) and np.all(a.nFatJet >= 2)
    assert np.array_equal(np.unique(ak.to_numpy(a.luminosityBlock)), [1, 2])
    # a QCD pTHat slice: every event above the slice's threshold, as tools/physics/qcd_slices.py stitches them
    gen.generate(cfg, "qcd_pthat1450", 10, workers=1, out=out, progress=False)
    with uproot.open(out) as fh:
        b = fh["Events"].arrays(["processId", "Generator_binvar"])
    assert np.all(b.processId == 8) and np.all(b.Generator_binvar >= 1450.0)


@pytest.mark.slow
def test_generation_reproduces_the_shipped_events_whatever_the_workers(tmp_path: Path) -> None:
    """The shipped files are what the generator makes today (data/README: a file depends only on the config and
    --events, and a shorter file is a prefix of a longer one): the first events of the shipped config's QCD are
    data/qcd_dijet.root's, branch for branch, numbered 1 ... N. The bytes are not (uproot writes a new UUID
    and time stamp each time), so arrays are compared. And two chunks on one or two workers give the same file."""
    pytest.importorskip("pythia8mc", reason="PYTHIA 8 (extra 'generate') not installed")
    pytest.importorskip("fastjet", reason="FastJet (extra 'generate') not installed")
    from hltrun.tools.physics import generate_events as gen

    cfg = gen.load_config(gen.DEFAULT_CONFIG)
    out = tmp_path / "again.root"
    gen.generate(cfg, "qcd", 6, workers=1, out=out, progress=False, first=gen.first_event(cfg, "qcd", 6))
    with uproot.open(out) as fh, uproot.open(DATA / "qcd_dijet.root") as shipped:
        again, first = fh["Events"].arrays(), shipped["Events"].arrays(entry_stop=6)
    for name in first.fields:
        assert ak.to_list(again[name]) == ak.to_list(first[name]), name
    cfg["chunk_size"] = 3
    arrays = []
    for workers in (1, 2):
        gen.generate(cfg, "rsg_ww_3p5TeV", 6, workers=workers, out=out, progress=False)
        with uproot.open(out) as fh:
            arrays.append(fh["Events"].arrays())
    assert arrays[0].fields == arrays[1].fields
    for name in arrays[0].fields:
        assert ak.to_list(arrays[0][name]) == ak.to_list(arrays[1][name]), name


def test_preprocess_import_is_light() -> None:
    """The batcher imports hltrun.modules.models.preprocess in ONNX-only jobs: it must not pull in TensorFlow."""
    import subprocess
    import sys

    code = "import sys, hltrun.modules.models.preprocess; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=DATA.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
