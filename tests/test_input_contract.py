"""The declared input contract (issue 19 item 1, docs/your-model.md): models with other constituent
counts, other features (derived and read from file branches), jet-level inputs and several inputs run
through the shipped path, and their scores equal an independent computation of the same features
from the ROOT file (uproot + numpy here, ONNX Runtime on the same graph).

The models are linear in their inputs (a weight per feature, summed), so every score is known from
the features: a wrong feature, order, padding, layout or jet gives a different score.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
from onnx import TensorProto, helper  # noqa: E402

from hltrun.framework.cli import main as hltrun  # noqa: E402
from tests.independent import leading_jets  # noqa: E402
from tests.tiny_models import sum_of_squares_onnx  # noqa: E402
from hltrun.framework.errors import ConfigError, ModuleError  # noqa: E402
from hltrun.modules.contract import Contract, default_contract, match_model, parse  # noqa: E402

EVENTS = 120
SAMPLE = Path("data/qcd_dijet.root")


# ---------------------------------------------------------------------- a PFNano-like sample
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The first events of the shipped QCD sample with per-constituent charge and PUPPI weight and a
    per-jet tau21, as PFNano files carry them (values drawn at random: only their routing matters)."""
    import awkward as ak
    import uproot

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(SAMPLE) as f:
        a = f["Events"].arrays(entry_stop=EVENTS)
    rng = np.random.default_rng(7)
    ncand = ak.to_numpy(a["nFatJetPFCand"])
    njet = ak.to_numpy(a["nFatJet"])
    charge = ak.unflatten(rng.integers(-1, 2, int(ncand.sum())).astype(np.float32), ncand)
    puppi = ak.unflatten(rng.uniform(0, 1, int(ncand.sum())).astype(np.float32), ncand)
    tau21 = ak.unflatten(rng.uniform(0, 1, int(njet.sum())).astype(np.float32), njet)
    out = tmp_path_factory.mktemp("pfnano") / "pfnano.root"
    with uproot.recreate(out) as f:
        write_nanoaod(f, "Events", {
            "run": ak.to_numpy(a["run"]), "luminosityBlock": ak.to_numpy(a["luminosityBlock"]),
            "event": ak.to_numpy(a["event"]),
            "FatJet": ak.zip({"pt": a["FatJet_pt"], "eta": a["FatJet_eta"], "phi": a["FatJet_phi"],
                              "mass": a["FatJet_mass"], "nConstituents": a["FatJet_nConstituents"], "tau21": tau21}),
            "FatJetPFCand": ak.zip({"pt": a["FatJetPFCand_pt"], "eta": a["FatJetPFCand_eta"],
                                    "phi": a["FatJetPFCand_phi"], "charge": charge, "puppiWeight": puppi})})
    return out


def reference_features(path: Path) -> list[list[dict]]:
    """Per event, its two leading jets with constituents (tests/independent.py), with the PFNano extras."""
    return [jets for _, jets in leading_jets(path, ("eta", "phi", "charge", "puppiWeight"),
                                             ("pt", "eta", "phi", "mass", "tau21"))]


def feature(jet: dict, name: str) -> np.ndarray:
    c = jet["c"]
    deta = c["eta"] - jet["eta"]
    dphi = (c["phi"] - jet["phi"] + np.pi) % (2 * np.pi) - np.pi
    e = c["pt"] * np.cosh(c["eta"])
    jet_e = np.sqrt((jet["pt"] * np.cosh(jet["eta"])) ** 2 + jet["mass"] ** 2)
    return {"deta": deta, "dphi": dphi, "pt": c["pt"], "log_pt": np.log(c["pt"]), "e": e, "pt_rel": c["pt"] / jet["pt"],
            "px": c["pt"] * np.cos(c["phi"]), "py": c["pt"] * np.sin(c["phi"]), "pz": c["pt"] * np.sinh(c["eta"]),
            "log_e_rel": np.log(e / jet_e), "mask": np.ones_like(deta),
            "FatJetPFCand_charge": c["charge"], "FatJetPFCand_puppiWeight": c["puppiWeight"]}[name]


def padded(jet: dict, names: list[str], n: int, pad: float) -> np.ndarray:
    """(n, F) rows of the jet's leading constituents, padded with ``pad`` (the mask with 0)."""
    rows = np.full((n, len(names)), pad)
    for k, name in enumerate(names):
        values = feature(jet, name)[:n]
        rows[:len(values), k] = values
        if name == "mask":
            rows[len(values):, k] = 0.0
    return rows


# ---------------------------------------------------------------------- linear models
def linear_model(path: Path, inputs: list[tuple[str, list[int], np.ndarray]]) -> Path:
    """score = sum over inputs of sum(input * weights): ``weights`` broadcast over the input's shape."""
    nodes, inits, graph_inputs, terms = [], [], [], []
    for name, shape, weights in inputs:
        inits.append(helper.make_tensor(f"{name}_w", TensorProto.FLOAT, list(weights.shape), weights.ravel().tolist()))
        inits.append(helper.make_tensor(f"{name}_axes", TensorProto.INT64, [len(shape)], list(range(1, len(shape) + 1))))
        nodes.append(helper.make_node("Mul", [name, f"{name}_w"], [f"{name}_m"]))
        nodes.append(helper.make_node("ReduceSum", [f"{name}_m", f"{name}_axes"], [f"{name}_s"], keepdims=0))
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape]))
        terms.append(f"{name}_s")
    nodes.append(helper.make_node("Sum", terms, ["score"]))
    graph = helper.make_graph(nodes, "linear", graph_inputs,
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run(tmp: Path, model: Path, sample: Path, *overrides: str) -> int:
    return hltrun(["configs/path.yaml", f"modules.vae.model={model}", "modules.vae.backend=onnxruntime",
                   f"source.files=[{sample}]", "modules.anomalyFilter.threshold=-1.0e+30",
                   f"modules.out.file={tmp / 'out.root'}", "--report-dir", str(tmp / "report"), *overrides])


def scores_written(tmp: Path) -> dict[int, np.ndarray]:
    import uproot

    with uproot.open(tmp / "out.root") as f:
        t = f["Events"]
        return dict(zip(t["event"].array(library="np").tolist(), t["vae_score"].array(library="np")))


# ---------------------------------------------------------------------- the tests
W4 = np.array([0.5, -2.0, 3.0, 7.0], np.float32)  # log_pt, deta, dphi, charge


def test_other_count_and_branch_feature_from_the_configuration(tmp_path, sample) -> None:
    """(N, 50, 4) of [log_pt, deta, dphi, charge] padded with -1: declared in the configuration."""
    model = linear_model(tmp_path / "m50.onnx", [("x", [50, 4], W4.reshape(1, 1, 4))])
    inputs = ("modules.vae.inputs=[{features: [log_pt, deta, dphi, FatJetPFCand_charge], n_constituents: 50, "
              "pad_value: -1.0}]")
    assert run(tmp_path, model, sample, inputs) == 0
    got = scores_written(tmp_path)
    ref = reference_features(sample)
    assert len(got) == EVENTS  # every event read is written (threshold -1.0e+30)
    names = ["log_pt", "deta", "dphi", "FatJetPFCand_charge"]
    for i, jets in enumerate(ref):
        want = [float((padded(j, names, 50, -1.0) * W4).sum()) for j in jets]
        np.testing.assert_allclose(got[i + 1], want, rtol=2e-5, atol=1e-3)
    report = json.loads((tmp_path / "report" / "hltrun.json").read_text())
    assert "jets (N, 50, 4)" in json.dumps(report) or "x (N, 50, 4)" in json.dumps(report)


@pytest.mark.parametrize("backend", ["onnxruntime", "jax", "torch", "iree"])
def test_several_inputs_channels_first_with_jet_features_from_metadata(tmp_path, sample, backend) -> None:
    """ParticleNet-like: points (N, 2, 30), features (N, 3, 30), mask (N, 1, 30), all channels first,
    and jet-level (N, 3); declared in the model's own metadata (hltinputs), nothing in the configuration.
    JAX, PyTorch and IREE (engines with buckets up to 4 jets) refused it at begin_job until 2026-12-07; every
    engine's scores are the independent computation's."""
    from hltrun.tools.declare_inputs import main as hltinputs

    if backend != "onnxruntime":
        pytest.importorskip({"iree": "iree.compiler"}.get(backend, backend))

    rng = np.random.default_rng(3)
    w_points, w_feat = rng.normal(size=(1, 2, 1)).astype(np.float32), rng.normal(size=(1, 3, 1)).astype(np.float32)
    w_mask, w_jet = np.float32(0.25) * np.ones((1, 1, 1), np.float32), np.array([[1e-3, 2e-3, 5.0]], np.float32)
    model = linear_model(tmp_path / "pn.onnx", [("points", [2, 30], w_points), ("features", [3, 30], w_feat),
                                                ("mask", [1, 30], w_mask), ("jet", [3], w_jet)])
    declaration = json.dumps([
        {"name": "points", "features": ["deta", "dphi"], "n_constituents": 30, "layout": "NFC"},
        {"name": "features", "features": ["pt_rel", "log_e_rel", "FatJetPFCand_puppiWeight"], "n_constituents": 30,
         "layout": "NFC"},
        {"name": "mask", "features": ["mask"], "n_constituents": 30, "layout": "NFC"},
        {"name": "jet", "kind": "jet", "features": ["pt", "mass", "FatJet_tau21"]}])
    assert hltinputs([str(model), "--write", declaration]) == 0
    engine = [f"modules.vae.backend={backend}", "modules.vae.max_batch=4"] if backend != "onnxruntime" else []
    assert run(tmp_path, model, sample, *engine) == 0
    job = json.loads((tmp_path / "report" / "hltrun.json").read_text())["job"]
    assert job["module_summaries"]["vae"]["backend"]["backend"] == backend
    got = scores_written(tmp_path)
    for i, jets in enumerate(reference_features(sample)):
        want = []
        for j in jets:
            s = (padded(j, ["deta", "dphi"], 30, 0.0) * w_points[0, :, 0]).sum()
            s += (padded(j, ["pt_rel", "log_e_rel", "FatJetPFCand_puppiWeight"], 30, 0.0) * w_feat[0, :, 0]).sum()
            s += (padded(j, ["mask"], 30, 0.0) * 0.25).sum()
            s += float(np.dot([j["pt"], j["mass"], j["tau21"]], w_jet[0]))
            want.append(s)
        np.testing.assert_allclose(got[i + 1], want, rtol=2e-5, atol=1e-3)


def test_part_style_four_vectors_are_derived_features(tmp_path, sample) -> None:
    """ParT's inputs as weaver exports them: pf_features, pf_vectors (px, py, pz, E per constituent) and
    pf_mask, channels first. Until 2026-12-07 px, py, pz were no derived feature: such a declaration was
    refused as 'neither a derived feature nor a branch', and a ParT network could not be fed."""
    from hltrun.tools.declare_inputs import main as hltinputs

    rng = np.random.default_rng(5)
    w_feat, w_vec = rng.normal(size=(1, 2, 1)).astype(np.float32), rng.normal(size=(1, 4, 1)).astype(np.float32)
    model = linear_model(tmp_path / "part.onnx", [("pf_features", [2, 40], w_feat), ("pf_vectors", [4, 40], w_vec),
                                                  ("pf_mask", [1, 40], np.full((1, 1, 1), 0.5, np.float32))])
    vectors = ["px", "py", "pz", "e"]
    declaration = json.dumps([
        {"name": "pf_features", "features": ["log_pt_rel", "dphi"], "n_constituents": 40, "layout": "NFC"},
        {"name": "pf_vectors", "features": vectors, "n_constituents": 40, "layout": "NFC"},
        {"name": "pf_mask", "features": ["mask"], "n_constituents": 40, "layout": "NFC"}])
    assert hltinputs([str(model), "--write", declaration]) == 0
    assert run(tmp_path, model, sample) == 0
    got = scores_written(tmp_path)
    for i, jets in enumerate(reference_features(sample)):
        want = []
        for j in jets:
            rel = padded(j, ["pt_rel", "dphi"], 40, 0.0)
            rel[:, 0] = np.log(rel[:, 0], where=rel[:, 0] > 0, out=np.zeros(40))  # log_pt_rel, padding stays 0
            s = (rel * w_feat[0, :, 0]).sum() + (padded(j, vectors, 40, 0.0) * w_vec[0, :, 0]).sum()
            want.append(s + 0.5 * min(len(j["c"]["pt"]), 40))
        np.testing.assert_allclose(got[i + 1], want, rtol=2e-5, atol=1e-2)


def test_shipped_models_declare_the_shipped_input() -> None:
    from hltrun.modules.contract import from_metadata, read_onnx_metadata

    for name in ("conv_vae", "gcn_vae", "conv_vae_int8", "gcn_vae_int8"):
        path = Path("data/models") / f"{name}.onnx"
        assert from_metadata(read_onnx_metadata(path), path) == default_contract(100, True)


def test_batcher_n_constituents_feeds_a_model_without_declaration(tmp_path, sample) -> None:
    """(N, 50, 3) of the shipped features and no declaration: the batcher's n_constituents is enough."""
    w = np.array([1.0, -1.0, 0.01], np.float32)
    model = linear_model(tmp_path / "s50.onnx", [("jets", [50, 3], w.reshape(1, 1, 3))])
    assert run(tmp_path, model, sample, "modules.batcher.n_constituents=50", "-n", "20") == 0
    got = scores_written(tmp_path)
    for i, jets in enumerate(reference_features(sample)[:20]):
        want = [float((padded(j, ["deta", "dphi", "pt"], 50, 0.0) * w).sum()) for j in jets]
        np.testing.assert_allclose(got[i + 1], want, rtol=2e-5, atol=1e-3)


@pytest.mark.parametrize("override, code, fragment", [
    ("modules.vae.inputs=[{features: [deta, dphi, FatJetPFCand_d0, pt], n_constituents: 50}]", 2,
     "is neither a derived feature nor a branch of tree 'Events'"),
    # a derived feature misspelt: no branch is near it, the derived one is (the line suggested nothing)
    ("modules.vae.inputs=[{features: [deta, dphi, erel, pt], n_constituents: 50}]", 2,
     "feature 'erel' (did you mean the derived feature 'e_rel'?) of a model's declared inputs is neither"),
    # two of them: one line naming both, in the plural (it said "feature 'a', 'b' ... is")
    ("modules.vae.inputs=[{features: [deta, FatJetPFCand_d0, FatJetPFCand_dz, pt], n_constituents: 50}]", 2,
     "of a model's declared inputs are neither a derived feature nor a branch of tree 'Events'"),
    ("modules.vae.inputs=[{features: [deta, dphi, pt, log_pt], n_constituents: 50}]", 4,
     "takes input 'x' of shape (N, 50, 4); the configuration's inputs declare constituents (N, 50, 4)"),
    ("modules.vae.inputs=[{name: y, features: [deta, dphi, pt, log_pt], n_constituents: 50}]", 4,
     "has no input 'y' (declared in config); its inputs are ['x']"),
    ("modules.vae.inputs=[{features: [deta, deta, pt]}]", 2, "lists one twice"),
    ("modules.vae.inputs=[{features: [pt]}, {features: [eta]}]", 2, "each needs its own name"),
])
def test_bad_declarations_are_one_line(tmp_path, sample, capfd, override, code, fragment) -> None:
    model = linear_model(tmp_path / "m.onnx", [("x", [50, 4], W4.reshape(1, 1, 4))])
    if "(N, 50, 4); the configuration" in fragment:  # a model that takes 40 rows, declared as 50
        model = linear_model(tmp_path / "m.onnx", [("x", [40, 4], W4.reshape(1, 1, 4))])
        fragment = fragment.replace("(N, 50, 4); the", "(N, 40, 4); the")
    capfd.readouterr()
    assert run(tmp_path, model, sample, override, "-n", "5") == code
    err = capfd.readouterr().err
    assert fragment in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1, err


def test_a_wider_shipped_input_is_told_both_settings_it_needs(tmp_path, sample, capfd) -> None:
    """A (N, 128, 3) model of the shipped features: the line told to set the batcher's n_constituents: 128, and the
    run that did so stopped on source.max_constituents, a second error for a second setting. Both are named now,
    and the run with both goes through."""
    model = linear_model(tmp_path / "m128.onnx", [("x", [128, 3], np.ones((1, 1, 3), np.float32))])
    capfd.readouterr()
    assert run(tmp_path, model, sample, "-n", "5") == 4
    err = capfd.readouterr().err
    assert ("set the batcher's n_constituents: 128, and source.max_constituents: 128 (the source keeps 100 per jet "
            "unless told)") in err, err
    assert run(tmp_path, model, sample, "-n", "5", "modules.batcher.n_constituents=128",
               "source.max_constituents=128") == 0, capfd.readouterr().err


def test_contract_parsing_and_matching() -> None:
    c = parse([{"features": ["deta", "dphi", "pt"]}], "inputs", "config")
    assert c == default_contract(100, True) and c.is_shipped()
    matched = match_model(c, [("jets", ("N", 100, 3))], Path("m.onnx"))
    assert matched.inputs[0].name == "jets"
    with pytest.raises(ModuleError, match="fixed batch of 1"):
        match_model(c, [("jets", (1, 100, 3))], Path("m.onnx"))
    with pytest.raises(ModuleError, match=r"set the batcher's n_constituents: 60"):
        match_model(default_contract(), [("jets", ("N", 60, 3))], Path("m.onnx"))
    with pytest.raises(ConfigError, match=r"inputs\[0\]: features: mask is a constituent feature"):
        parse([{"kind": "jet", "features": ["pt", "mask"]}], "inputs", "config")
    with pytest.raises(ConfigError, match=r"inputs\[0\]\.layout: expected one of"):
        parse([{"layout": "NHWC"}], "inputs", "config")
    jet = parse([{"name": "j", "kind": "jet", "features": ["pt", "eta"]}], "inputs", "config")
    assert isinstance(jet, Contract) and jet.n_constituents == 0 and jet.inputs[0].shape(4) == (4, 2)


def test_engine_timing_feeds_a_declared_several_input_model(tmp_path) -> None:
    """hltbench's per-jet timing (what the verdict prints) runs a several-input model on its declared
    inputs, not on the shipped (N, 100, 3) jets."""
    from hltrun.tools.bench.backends import _batches
    from hltrun.modules.inference import BackendOptions, create_backend

    model = linear_model(tmp_path / "two.onnx", [("a", [4, 20], np.ones((1, 4, 1), np.float32)),
                                                 ("b", [2], np.ones((1, 2), np.float32))])
    declared = parse([{"name": "a", "features": ["deta", "dphi", "log_pt", "mask"], "n_constituents": 20,
                       "layout": "NFC"}, {"name": "b", "kind": "jet", "features": ["pt", "mass"]}], "inputs", "config")
    backend = create_backend("onnxruntime", model, BackendOptions(inputs=declared)).load()
    x_of = _batches(backend, np.zeros((64, 100, 3), np.float32), 64)
    xs = x_of(8)
    assert [x.shape for x in xs] == [(8, 4, 20), (8, 2)]
    out = backend.run(xs)
    np.testing.assert_allclose(out["score"], xs[0].sum(axis=(1, 2)) + xs[1].sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("shape, override", [
    ([50, 4], "modules.vae.inputs=[{features: [log_pt, deta, dphi, mask], n_constituents: 50}]"),
    ([50, 3], "modules.batcher.n_constituents=50"),
])
def test_verdict_times_the_engine_on_inputs_given_on_the_command_line(tmp_path, shape, override) -> None:
    """``hltbench verdict --set`` with the inputs (or the batcher's count) for a model without metadata:
    the µs-per-jet sweep feeds the model as the path's scorer does, instead of skipping it."""
    from hltrun.tools.bench.cli import main as hltbench

    model = linear_model(tmp_path / "plain.onnx", [("x", shape, np.ones((1, 1, shape[1]), np.float32))])
    out = tmp_path / "verdict"
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "20", "--batches", "1", "4",
                     "--min-time", "0.02", "--out-dir", str(out), "--set", override]) == 0
    report = json.loads((out / "verdict.json").read_text())
    assert sorted(c["batch"] for c in report["cells"]) == [1, 4]
    assert not any("not measured" in note for note in report["notes"])


def test_a_file_without_a_declared_branch_is_a_bad_file(tmp_path, sample, capfd) -> None:
    """Some files lack a feature's branch: with skipBadFiles that file is named and skipped (the others
    run); without, exit 3 naming it. No file has it: the declaration is wrong, exit 2 (above)."""
    model = linear_model(tmp_path / "m.onnx", [("x", [50, 4], W4.reshape(1, 1, 4))])
    inputs = "modules.vae.inputs=[{features: [log_pt, deta, dphi, FatJetPFCand_charge], n_constituents: 50}]"
    files = f"source.files=[{sample}, {SAMPLE}]"  # the shipped sample has no charge branch
    capfd.readouterr()
    assert run(tmp_path, model, sample, inputs, files) == 3
    err = capfd.readouterr().err
    assert "feature 'FatJetPFCand_charge'" in err and str(SAMPLE) in err, err
    assert run(tmp_path, model, sample, inputs, files, "source.skipBadFiles=true") == 0
    assert len(scores_written(tmp_path)) == EVENTS  # the good file's events, all of them
    assert "bad file (skipBadFiles)" in capfd.readouterr().err


def test_jet_level_inputs_only_leave_no_constituent_out(tmp_path, sample) -> None:
    """A model on jet features alone: no jet counts as truncated (it reads no constituent)."""
    w = np.array([[1e-3, 2.0]], np.float32)
    model = linear_model(tmp_path / "jet.onnx", [("j", [2], w)])
    assert run(tmp_path, model, sample, "modules.vae.inputs=[{kind: jet, features: [pt, FatJet_tau21]}]") == 0
    report = json.loads((tmp_path / "report" / "hltrun.json").read_text())
    assert report["job"]["data_quality"]["batcher"]["jets_truncated"] == 0
    got = scores_written(tmp_path)
    for i, jets in enumerate(reference_features(sample)):
        np.testing.assert_allclose(got[i + 1], [1e-3 * j["pt"] + 2.0 * j["tau21"] for j in jets], rtol=1e-5)


def test_the_engine_never_sees_a_non_finite_value_and_orders_agree(tmp_path) -> None:
    from hltrun.modules.inference import BackendOptions, create_backend

    seen = []
    backend = create_backend("onnxruntime", linear_model(tmp_path / "s.onnx", [("x", [100, 3], np.ones((1, 1, 3),
                                                                                                  np.float32))]),
                             BackendOptions()).load()
    real = backend._run
    backend._run = lambda x: (seen.append(bool(np.isfinite(x).all())), real(x))[1]  # type: ignore[method-assign]
    x = np.ones((3, 100, 3), np.float32)
    x[1, 5, 0] = np.nan
    for given in (x, (x,), list(x)):
        out = backend.run(given)
        assert np.isnan(out["score"][1]) and np.isfinite(out["score"][[0, 2]]).all()
    assert seen == [True, True, True]
    with pytest.raises(ConfigError, match="share one order"):
        parse([{"name": "a", "order": "pt"}, {"name": "b", "order": "file"}], "inputs", "config")


def test_hltinputs_missing_model_is_one_line(tmp_path, capsys) -> None:
    """The shared sentence (framework.resources.unreadable_reason), exit 2, nothing on stdout."""
    from hltrun.tools.declare_inputs import main as hltinputs

    assert hltinputs([str(tmp_path / "nope.onnx")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"hltinputs: model file not found: {tmp_path / 'nope.onnx'}" and not captured.out


def test_an_input_of_unknown_rank_is_one_line(tmp_path, sample, capfd) -> None:
    """ONNX Runtime shows an input of unknown rank as []: refused in one line naming the model and the
    input (it was an IndexError in begin_job, and in hltinputs)."""
    from hltrun.tools.declare_inputs import main as hltinputs

    with pytest.raises(ModuleError, match=r"model m.onnx input 'x' has no shape \(unknown rank"):
        match_model(default_contract(), [("x", ())], Path("m.onnx"))
    model = sum_of_squares_onnx(tmp_path / "norank.onnx", None)
    want = f"model {model} input 'x' has no shape (unknown rank, or a scalar)"
    capfd.readouterr()
    assert run(tmp_path, model, sample, "-n", "5") == 4
    err = capfd.readouterr().err
    assert want in err and "(N, 100, 3) with a dynamic first axis" in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert hltinputs([str(model)]) != 0
    err = capfd.readouterr().err
    assert want in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_flat_input_is_told_its_two_ways_in() -> None:
    """(N, 300) declared as constituents: the line names both ways in, a per-jet input (``kind: jet``,
    which is (N, F): a dense autoencoder on jet features) or constituents flattened inside the model. It
    used to say that no declaration expresses a flat input, sending a jet-feature model's author to
    re-export a network that a ``kind: jet`` declaration runs as it is."""
    with pytest.raises(ModuleError) as err:
        match_model(default_contract(), [("x", ("N", 300))], Path("m.onnx"))
    text = str(err.value)
    assert text.startswith("model m.onnx takes input 'x' of shape (N, 300), a flat input") and \
        "no declaration" not in text, text
    assert "300 values per jet" in text and "kind: jet" in text and "flatten it inside" in text, text
    jet = parse([{"name": "j", "kind": "jet", "features": ["pt", "eta"]}], "inputs", "config")
    assert match_model(jet, [("j", ("N", 2))], Path("m.onnx")).inputs[0].name == "j"  # a jet-level (N, F) input fits


def test_a_flat_input_with_a_fixed_batch_is_told_the_batch_first() -> None:
    """(1, 6): a naive export of a jet-feature network; the fixed batch is said first (it blocks either
    way in), not a reshape to (1, 6)."""
    with pytest.raises(ModuleError, match=r"takes a fixed batch of 1 jet\(s\), input shape \(1, 6\)"):
        match_model(default_contract(), [("x", (1, 6))], Path("m.onnx"))
    jet = parse([{"name": "j", "kind": "jet", "features": ["pt", "eta"]}], "inputs", "config")
    assert match_model(jet, [("j", ("N", 2))], Path("m.onnx")).inputs[0].name == "j"  # a jet-level (N, F) input fits


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.onnx", b"", "hltinputs: model file {path} is empty"),
    ("garbage.onnx", b"this is not onnx" * 10, "hltinputs: model {path} is not an ONNX model (DecodeError: "),
    ("m.tflite", b"TFL3", "hltinputs: {path} is not an .onnx file: hltinputs reads ONNX models; the inputs of a "
                          ".tflite model are declared in the scorer's inputs: or in the metadata of the .onnx file beside it"),
    ("m.keras", b"PK", "hltinputs: {path} is not an .onnx file: hltinputs reads ONNX models"),
])
def test_hltinputs_on_a_file_that_is_no_onnx_model_says_so(tmp_path, capsys, name, content, fragment) -> None:
    """Was "has 0 inputs []" for an empty file, protobuf's DecodeError for a .tflite or .keras model."""
    from hltrun.tools.declare_inputs import main as hltinputs

    path = tmp_path / name
    path.write_bytes(content)
    assert hltinputs([str(path)]) != 0
    captured = capsys.readouterr()
    assert captured.err.startswith(fragment.format(path=path)) and len(captured.err.strip().splitlines()) == 1, captured.err
    assert not captured.out


def test_hltinputs_write_names_a_missing_declaration_file(tmp_path, capsys) -> None:
    """--write decl.yaml that does not exist was read as inline YAML: 'expected a list of inputs, got str'."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = tmp_path / "m.onnx"
    model.write_bytes((Path(__file__).resolve().parents[1] / "data" / "models" / "conv_vae.onnx").read_bytes())
    before = model.read_bytes()
    assert hltinputs([str(model), "--write", str(tmp_path / "decl.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"hltinputs: --write: declaration file not found: {tmp_path / 'decl.yaml'}"
    assert model.read_bytes() == before


def test_hltinputs_write_that_does_not_fit_names_the_declaration_given(tmp_path, capsys) -> None:
    """A --write naming an input the model lacks is refused before it is stored, and said to be the --write's: the
    line read "(declared in model metadata)", sending the user to a file that holds no declaration."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = linear_model(tmp_path / "m.onnx", [("x", [50, 4], W4.reshape(1, 1, 4))])
    before = model.read_bytes()
    assert hltinputs([str(model), "--write", "[{name: y, features: [log_pt, deta, dphi, pt], n_constituents: 50}]"]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"hltinputs: model {model} has no input 'y' (declared in hltinputs --write); its inputs are ['x']"
    assert hltinputs([str(model), "--write", "[{features: [log_pt, deta, dphi], n_constituents: 50}]"]) == 4
    assert "; hltinputs --write declares constituents (N, 50, 3) [log_pt, deta, dphi]:" in capsys.readouterr().err
    assert model.read_bytes() == before


@pytest.mark.parametrize("name", ["folder", "folder.onnx", ""])
def test_hltinputs_on_a_folder_says_so(tmp_path, capsys, monkeypatch, name) -> None:
    """A folder (or '', the current one) as the model: one line, exit 2. Without the .onnx suffix it was
    "hltinputs: .: ValueError: PosixPath('.') has an empty name" (exit 4), or "/tmp is not an .onnx file ...
    the metadata of the .onnx file beside it (/tmp.onnx)"."""
    from hltrun.tools.declare_inputs import main as hltinputs

    monkeypatch.chdir(tmp_path)
    if name:
        (tmp_path / name).mkdir()
    assert hltinputs([name]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"hltinputs: model file {name or '.'} is a folder, not a file" and not captured.out


@pytest.mark.parametrize("declaration", ["/dev/null", "."])
def test_hltinputs_write_names_a_declaration_that_is_no_file(tmp_path, capsys, declaration) -> None:
    """--write /dev/null or a folder was read as inline YAML text: "expected a list of inputs, got str"."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = tmp_path / "m.onnx"
    model.write_bytes((Path(__file__).resolve().parents[1] / "data" / "models" / "conv_vae.onnx").read_bytes())
    before = model.read_bytes()
    assert hltinputs([str(model), "--write", declaration]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hltinputs: --write: declaration file {declaration} is a ") and "\n" not in err, err
    assert model.read_bytes() == before


@pytest.mark.parametrize("backend", ["onnxruntime", "jax", "torch", "iree"])
def test_a_float64_model_is_the_same_line_with_the_way_out_on_every_engine(backend, tmp_path, sample, capfd) -> None:
    """A model exported in float64 (a PyTorch model left in .double()): one line naming the input, its type and how to
    export it, the same on every engine. ONNX Runtime said "is tensor(double), expected tensor(float)", the others
    "is float64, expected float32", and none said what to do."""
    import importlib.util

    if importlib.util.find_spec({"onnxruntime": "onnxruntime", "iree": "iree.runtime"}.get(backend, backend)) is None:
        pytest.skip(f"{backend} is not installed")
    f64 = sum_of_squares_onnx(tmp_path / "f64.onnx", ["N", 100, 3], TensorProto.DOUBLE)
    capfd.readouterr()
    assert run(tmp_path, f64, sample, f"modules.vae.backend={backend}", "-n", "5") == 4
    err = capfd.readouterr().err
    assert (f"{backend}: model {f64} input 'x' is float64, expected float32 (hltrun feeds float32: a mask too, as "
            "0/1); export the model with a float32 input (PyTorch: model.float() and a float32 example input; "
            "tf2onnx: a tf.float32 TensorSpec)") in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1, err


def test_hltinputs_refuses_what_every_engine_refuses(tmp_path, capsys) -> None:
    """A float64 input, or weights in an ONNX external-data file that is missing: hltinputs answered
    "inputs from default", exit 0, for a model every backend refuses at load."""
    import onnx

    from hltrun.tools.declare_inputs import main as hltinputs

    f64 = sum_of_squares_onnx(tmp_path / "f64.onnx", ["N", 100, 3], TensorProto.DOUBLE)
    assert hltinputs([str(f64)]) == 4
    captured = capsys.readouterr()
    assert not captured.out and captured.err.strip() == (
        f"hltinputs: model {f64} input 'x' is float64, expected float32 (hltrun feeds float32: a mask too, as 0/1); "
        "export the model with a float32 input (PyTorch: model.float() and a float32 example input; tf2onnx: a "
        "tf.float32 TensorSpec)")

    external = sum_of_squares_onnx(tmp_path / "ext.onnx", ["N", 100, 3])
    model = onnx.load(str(external))
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "ax"))  # raw data
    onnx.save(model, str(external), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.weights", size_threshold=0)
    assert hltinputs([str(external)]) == 0  # the side file beside it: fine
    capsys.readouterr()
    (tmp_path / "ext.weights").unlink()
    assert hltinputs([str(external)]) == 4
    assert capsys.readouterr().err.strip() == (
        f"hltinputs: model {external} keeps its weights in 'ext.weights' beside it (ONNX external data), which is "
        "not there: copy it next to the model")


class _GonePipe:
    """stdout whose reader is gone (``hltinputs m.onnx | head -c0``): every write is EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("stdout", [_GonePipe(), None], ids=["reader gone", "closed"])
def test_hltinputs_stdout_that_cannot_take_the_answer_is_said_as_stdout(stdout, capsys, monkeypatch) -> None:
    """``hltinputs m.onnx | head -c0`` said ``hltinputs: m.onnx: BrokenPipeError: [Errno 32] Broken pipe``:
    the model blamed for stdout's failure; ``>&-`` printed nothing and exited 0. As hltrun and hltdiff say it."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = Path(__file__).resolve().parents[1] / "data" / "models" / "conv_vae.onnx"
    monkeypatch.setattr(sys, "stdout", stdout)
    assert hltinputs([str(model)]) == 4
    reason = "Broken pipe" if stdout is not None else "stdout is closed"
    assert capsys.readouterr().err == f"hltinputs: stdout: cannot print the model's inputs ({reason})\n"


@pytest.mark.parametrize("kind, features, shape", [("jet", ["pt", "mass"], [2]),
                                                   ("constituents", ["pt_rel", "log_e_rel"], [2, 30])])
def test_declared_features_of_the_jet_mass_need_a_jet_mass_branch(tmp_path, sample, capsys, kind, features, shape):
    """``source.branches.jet_mass: null`` (a file without one) reads every jet mass as 0: a model declaring the
    jet mass, or a constituent's share of the jet energy, ran on those zeros, exit 0, without a word. Now a
    configuration error naming the features; a model that needs no jet mass still runs without one."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = linear_model(tmp_path / "m.onnx", [("x", shape, np.ones([1, *shape[:1], 1][:len(shape) + 1], np.float32))])
    declared = {"name": "x", "kind": kind, "features": features} | ({"n_constituents": 30, "layout": "NFC"}
                                                                     if kind == "constituents" else {})
    assert hltinputs([str(model), "--write", json.dumps([declared])]) == 0
    capsys.readouterr()
    assert run(tmp_path, model, sample, "source.branches.jet_mass=null") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"hltrun: error: source.branches.jet_mass: null, but a model's declared inputs read {features[1]}, "
                       f"which need the jet mass (0 for every jet without it): set it to the file's jet-mass branch, or "
                       f"declare features that do not need it (docs/your-model.md)")
    declared["features"] = features[:1]
    model = linear_model(tmp_path / "n.onnx", [("x", [1, *shape[1:]], np.ones([1, 1, 1][:len(shape) + 1], np.float32))])
    assert hltinputs([str(model), "--write", json.dumps([declared])]) == 0
    assert run(tmp_path, model, sample, "source.branches.jet_mass=null") == 0
