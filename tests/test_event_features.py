"""Per-event quantities as model inputs (docs/your-model.md, "Per-event quantities"): a branch of one value per
event (NanoAOD's ``Rho_fixedGridRhoFastjetAll``, ``PV_npvs``) declared per event (``kind: event``, or a jet-level
input's ``per_event``) reaches every scored jet of its event, on every engine, through cross-event batching, several
streams and Dask; the scores are those of an independent computation (uproot + numpy features, the model run with
ONNX Runtime directly). Until 2026-12-07 such a branch was refused in one line (exit 3).

The model is linear in its inputs with a different weight per feature: the wrong event's value, two features
swapped or a jet value in place of the event's give other scores.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
from onnx import TensorProto, helper  # noqa: E402

from hltrun.framework.cli import main as hltrun  # noqa: E402
from hltrun.framework.errors import ConfigError  # noqa: E402
from hltrun.modules.contract import match_model, parse  # noqa: E402
from tests.independent import leading_jets  # noqa: E402

EVENTS = 120
SAMPLE = Path("data/qcd_dijet.root")
RHO, NPV = "Rho_fixedGridRhoFastjetAll", "PV_npvs"
EVENT_INPUT = "{name: constituents, features: [deta, dphi, pt], n_constituents: 30}"


def nanoaod_with_rho(path: Path, per_basket: int) -> Path:
    """The first events of the shipped QCD sample with the pile-up density and the number of primary vertices as
    NanoAOD keeps them: one value per event, a float and an int (drawn at random: only their routing matters),
    ``per_basket`` entries per basket (all in one: the file check keeps the file for the loop; fewer: the loop
    reads it chunk by chunk)."""
    import awkward as ak
    import uproot

    from hltrun.modules.rootio import write_nanoaod

    with uproot.open(SAMPLE) as f:
        a = f["Events"].arrays(entry_stop=EVENTS)
    rng = np.random.default_rng(5)
    rho, npv = rng.uniform(10, 45, EVENTS).astype(np.float32), rng.poisson(40, EVENTS).astype(np.int32)
    with uproot.recreate(path) as f:
        for at in range(0, EVENTS, per_basket):
            s = slice(at, at + per_basket)
            write_nanoaod(f, "Events", {
                "run": ak.to_numpy(a["run"][s]), "luminosityBlock": ak.to_numpy(a["luminosityBlock"][s]),
                "event": ak.to_numpy(a["event"][s]), RHO: rho[s], NPV: npv[s],
                "FatJet": ak.zip({k: a[f"FatJet_{k}"][s] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
                "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"][s] for k in ("pt", "eta", "phi")})})
    return path


@pytest.fixture(scope="module")
def nano(tmp_path_factory) -> Path:
    return nanoaod_with_rho(tmp_path_factory.mktemp("nano") / "nano_rho.root", EVENTS)


@pytest.fixture(scope="module")
def nano_baskets(tmp_path_factory) -> Path:
    return nanoaod_with_rho(tmp_path_factory.mktemp("nano") / "nano_rho_baskets.root", 40)


def linear_model(path: Path, second: int, w_second: np.ndarray) -> Path:
    """score = sum(constituents (N, 30, 3) * w_c) + sum(x (N, second) * w_second)."""
    w_c = np.array([0.5, -2.0, 1e-2], np.float32).reshape(1, 1, 3)
    nodes = [helper.make_node("Mul", ["constituents", "w_c"], ["mc"]),
             helper.make_node("ReduceSum", ["mc", "axes_c"], ["sc"], keepdims=0),
             helper.make_node("Mul", ["x", "w_x"], ["mx"]),
             helper.make_node("ReduceSum", ["mx", "axes_x"], ["sx"], keepdims=0),
             helper.make_node("Add", ["sc", "sx"], ["score"])]
    inits = [helper.make_tensor("w_c", TensorProto.FLOAT, [1, 1, 3], w_c.ravel().tolist()),
             helper.make_tensor("axes_c", TensorProto.INT64, [2], [1, 2]),
             helper.make_tensor("w_x", TensorProto.FLOAT, [1, second], w_second.ravel().tolist()),
             helper.make_tensor("axes_x", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "linear", [
        helper.make_tensor_value_info("constituents", TensorProto.FLOAT, ["N", 30, 3]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", second])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def independent_scores(nano: Path, model: Path, second: list[str]) -> dict[int, np.ndarray]:
    """Per event number, the scores ONNX Runtime gives the model on features computed here from the file: the two
    leading jets with constituents (tests/independent.py), their 30 leading constituents' [Δη, Δφ, pT], and per
    jet ``second``: a jet's own value (pt, mass) or the event's branch."""
    import uproot

    with uproot.open(nano) as f:
        per_event = f["Events"].arrays([RHO, NPV], library="np")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = {}
    for i, ((_, _, event), jets) in enumerate(leading_jets(nano)):
        if not jets:
            continue
        c = np.zeros((len(jets), 30, 3), np.float32)
        x = np.zeros((len(jets), len(second)), np.float32)
        for r, j in enumerate(jets):
            k = min(30, len(j["c"]["pt"]))
            c[r, :k, 0] = (j["c"]["eta"] - j["eta"])[:k]
            c[r, :k, 1] = ((j["c"]["phi"] - j["phi"] + np.pi) % (2 * np.pi) - np.pi)[:k]
            c[r, :k, 2] = j["c"]["pt"][:k]
            x[r] = [per_event[name][i] if name in (RHO, NPV) else j[name] for name in second]
        out[event] = session.run(["score"], {"constituents": c, "x": x})[0]
    return out


def run(tmp: Path, model: Path, nano: Path, *overrides: str) -> int:
    return hltrun(["configs/path.yaml", f"modules.vae.model={model}", f"source.files=[{nano}]",
                   "modules.anomalyFilter.threshold=-1.0e+30", "modules.out.select_events=[]",
                   f"modules.out.file={tmp / 'out.root'}", "-q", *overrides])


def scores_written(tmp: Path) -> dict[int, np.ndarray]:
    import uproot

    with uproot.open(tmp / "out.root") as f:
        t = f["Events"]
        return dict(zip(t["event"].array(library="np").tolist(), t["vae_score"].array(library="np")))


def assert_scores(got: dict[int, np.ndarray], want: dict[int, np.ndarray]) -> None:
    assert set(got) >= set(want) and len(want) > 100
    for event, scores in want.items():
        np.testing.assert_allclose(got[event], scores, rtol=1e-5, err_msg=f"event {event}")


W2 = np.array([0.7, -0.3], np.float32)  # rho, npv


# ---------------------------------------------------------------------- the path, engine by engine
@pytest.mark.parametrize("backend, declared, batched, file", [
    ("onnxruntime", f"{{name: x, kind: event, features: [{RHO}, {NPV}]}}", False, "nano"),
    ("onnxruntime", f"{{name: x, kind: event, features: [{RHO}, {NPV}]}}", False, "nano_baskets"),
    ("torch", f"{{name: x, kind: jet, features: [{RHO}, {NPV}], per_event: [{RHO}, {NPV}]}}", True, "nano"),
    ("jax", f"{{name: x, kind: event, features: [{RHO}, {NPV}]}}", True, "nano_baskets"),
], ids=["onnxruntime", "onnxruntime-baskets", "torch-batched", "jax-batched-baskets"])
def test_an_event_input_of_two_branches_is_each_jets_event_values(tmp_path, request, backend, declared, batched,
                                                                   file) -> None:
    """(N, 30, 3) constituents and (N, 2) [ρ, nPV] of the jet's event: declared in the configuration, on ONNX
    Runtime and on the bucketed engines (PyTorch, JAX) with cross-event batching over two streams and chunks of 25
    events (a batch holds jets of several events, of two chunks: each keeps its own event's values); from a file
    the check kept whole and from one the loop reads chunk by chunk."""
    if backend != "onnxruntime":
        pytest.importorskip(backend)
    nano = request.getfixturevalue(file)
    model = linear_model(tmp_path / "m.onnx", 2, W2)
    engine = [f"modules.vae.backend={backend}"] + (["modules.vae.max_batch=16"] if backend != "onnxruntime" else [])
    if batched:
        engine += ["options.numberOfThreads=2", "options.numberOfStreams=2", "source.chunk_size=25",
                   "modules.vae.batching={max_batch: 16, max_delay_ms: 5}", "--report-dir", str(tmp_path / "report")]
    assert run(tmp_path, model, nano, f"modules.vae.inputs=[{EVENT_INPUT}, {declared}]", *engine) == 0
    assert_scores(scores_written(tmp_path), independent_scores(nano, model, [RHO, NPV]))
    if batched:  # the batches did hold several events' jets
        job = json.loads((tmp_path / "report" / "hltrun.json").read_text())["job"]
        batching = job["module_summaries"]["vae"]["batching"]
        assert batching["events"] > batching["batches"], batching


def test_a_jet_input_mixes_jet_features_and_per_event_ones_from_the_models_metadata(tmp_path, nano) -> None:
    """(N, 4) [pT, ρ, mass, nPV]: two jet features and two per-event ones in the model's order, declared once
    with hltinputs --write (stored in the model, read back with its per_event), nothing in the configuration."""
    from hltrun.tools.declare_inputs import main as hltinputs

    model = linear_model(tmp_path / "mixed.onnx", 4, np.array([1e-3, 0.7, 2e-2, -0.3], np.float32))
    declaration = json.dumps([{"name": "constituents", "features": ["deta", "dphi", "pt"], "n_constituents": 30},
                              {"name": "x", "kind": "jet", "features": ["pt", RHO, "mass", NPV],
                               "per_event": [RHO, NPV]}])
    assert hltinputs([str(model), "--write", declaration]) == 0
    assert run(tmp_path, model, nano, "modules.vae.backend=onnxruntime") == 0
    assert_scores(scores_written(tmp_path), independent_scores(nano, model, ["pt", RHO, "mass", NPV]))


def test_per_event_values_travel_with_the_jets_on_dask(tmp_path, nano) -> None:
    """Dask, two workers, work units of 40 events read in chunks of 25: every worker reads the per-event branches
    with the jets of its units."""
    pytest.importorskip("distributed", reason="Dask tests need the dist extra")
    model = linear_model(tmp_path / "m.onnx", 2, W2)
    assert run(tmp_path, model, nano, "--dask", "2", "options.executor.eventsPerTask=40", "source.chunk_size=25",
               "modules.vae.backend=onnxruntime",
               f"modules.vae.inputs=[{EVENT_INPUT}, {{name: x, kind: event, features: [{RHO}, {NPV}]}}]") == 0
    assert_scores(scores_written(tmp_path), independent_scores(nano, model, [RHO, NPV]))


# ---------------------------------------------------------------------- what is refused, in one line
@pytest.mark.parametrize("declared, code, fragment", [
    (f"{{name: x, kind: jet, features: [{RHO}, {NPV}]}}", 3,
     f"source: branch '{NPV}' holds one value per event, not one per jet as 'FatJet_pt' does, in "),
    (f"{{name: x, kind: event, features: [FatJet_mass, {NPV}]}}", 3,
     "source: branch 'FatJet_mass' holds a list of values per event, in "),
    (f"{{name: x, kind: event, features: [Rho, {NPV}]}}", 2,
     "feature 'Rho' of a model's declared inputs is neither a derived feature nor a branch"),
    (f"{{name: x, kind: event, features: [pt, {NPV}]}}", 2, "features: 'pt' is a jet feature (kind: jet)"),
    (f"{{name: x, kind: jet, features: [pt, {NPV}], per_event: [PV_npv]}}", 2,
     "per_event: 'PV_npv' is not one of the input's features"),
    (f"{{name: x, kind: jet, features: [mass, {NPV}], per_event: [mass]}}", 2,
     "per_event: 'mass' is a derived jet feature, one value per jet"),
    (f"{{name: x, kind: event, features: [{RHO}, {NPV}], per_event: [{NPV}]}}", 2,
     "per_event: every feature of kind: event is per event"),
    (f"{{name: x, kind: constituents, features: [pt, {NPV}], per_event: [{NPV}]}}", 2,
     "per_event: per-event values are features of a jet-level input"),
    (f"{{name: x, kind: event, features: [{RHO}]}}", 4,
     "takes input 'x' of shape (N, 2); the configuration's inputs declare event (N, 1)"),
])
def test_a_per_event_declaration_that_cannot_be_read_is_one_line(tmp_path, nano, capfd, declared, code,
                                                                  fragment) -> None:
    """A per-event branch given as a jet feature keeps its refusal, now naming the two ways to declare it; a
    per-jet branch declared per event, a missing branch and a declaration that contradicts itself are one line."""
    model = linear_model(tmp_path / "m.onnx", 2, W2)
    capfd.readouterr()
    assert run(tmp_path, model, nano, "modules.vae.backend=onnxruntime", "-n", "5",
               f"modules.vae.inputs=[{EVENT_INPUT}, {declared}]") == code
    err = capfd.readouterr().err
    assert fragment in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    if code == 3 and "not one per jet" in fragment:
        assert f"per_event: [{NPV}]" in err and "kind: event" in err, err


def test_the_declaration_reads_back_and_describes_its_per_event_features() -> None:
    """The stored form keeps per_event (a model's metadata read back is the declaration written); the
    description marks the per-event features; the source reads them as per-event branches, not jet ones."""
    declared = parse([{"name": "x", "kind": "jet", "features": ["pt", RHO, "FatJet_tau21", NPV],
                       "per_event": [RHO, NPV]},
                      {"name": "e", "kind": "event", "features": ["MET_pt"]}], "inputs", "config")
    again = parse(json.loads(declared.to_json()), "metadata", "model metadata")
    assert again == declared and again.inputs[0].per_event == (RHO, NPV)
    assert declared.jet_branches() == ("FatJet_tau21",)
    assert declared.event_branches() == (RHO, NPV, "MET_pt")
    matched = match_model(declared, [("e", ["N", 1]), ("x", ["N", 4])], Path("m.onnx"))
    assert [i.describe() for i in matched.inputs] == [
        "e (N, 1): event [MET_pt]", f"x (N, 4): jet [pt, {RHO} (per event), FatJet_tau21, {NPV} (per event)]"]
    with pytest.raises(ConfigError, match="per_event: 'pt' is a derived jet feature"):
        parse([{"name": "x", "kind": "jet", "features": ["pt"], "per_event": ["pt"]}], "inputs", "config")


def test_the_chunk_gives_each_selected_jet_its_events_value() -> None:
    """The source's chunk: each selected jet (max_jets, min_jet_pt, events without a jet between) gets its own
    event's value, as the jets are sorted and selected."""
    from hltrun.modules.jets import InputSpec
    from hltrun.modules.root_source import make_chunk

    jets_per_event = [2, 0, 3, 1, 0, 2]
    offsets = np.concatenate([[0], np.cumsum(jets_per_event)]).astype(np.int64)
    n = int(offsets[-1])
    pt = np.array([300, 900, 500, 100, 800, 700, 50, 400], np.float32)  # unsorted within events
    flat = (np.arange(n).repeat(2), np.zeros(2 * n, np.float32), np.zeros(2 * n, np.float32),
            np.ones(2 * n, np.float32))
    rho = np.array([10, 20, 30, 40, 50, 60], np.float32)
    contract = parse([{"name": "x", "kind": "jet", "features": ["pt", RHO], "per_event": [RHO]}], "inputs", "config")
    spec = InputSpec(2, 4, True, 150.0, contract)
    chunk = make_chunk(offsets, pt, np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32), flat,
                       None, None, 4, [spec], event_branches={RHO: rho})
    got = chunk.prepare(spec)
    rows = [got.event_arrays(i)[0] for i in range(len(jets_per_event))]
    assert [r.tolist() for r in rows] == [[[900, 10], [300, 10]], [], [[800, 30], [500, 30]], [[700, 40]], [],
                                          [[400, 60]]]


@pytest.mark.parametrize("per_basket", [40, EVENTS])  # read chunk by chunk; kept whole by the check
def test_a_later_file_whose_per_event_branch_is_a_list_fails_when_read(tmp_path, nano, per_basket) -> None:
    """Past the first file a per-event branch is checked on every chunk the loop reads: a later file that stores
    it as a list per event (one value per jet) is one line naming the branch and the file; with skipBadFiles its
    entries are skipped and the job goes on, the good file's jets carrying their events' values."""
    import awkward as ak
    import uproot

    from hltrun.framework.context import SourceContext
    from hltrun.framework.errors import SourceError
    from hltrun.framework.schema import build
    from hltrun.modules.jets import InputSpec
    from hltrun.modules.root_source import RootJetSource, RootJetSourceParameters
    from hltrun.modules.rootio import write_nanoaod

    good = nanoaod_with_rho(tmp_path / "good.root", per_basket)
    bad = tmp_path / "bad.root"
    with uproot.open(nano) as f:
        a = f["Events"].arrays()
    with uproot.recreate(bad) as f:  # the same events, ρ written once per jet
        write_nanoaod(f, "Events", {k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", NPV)}
                      | {"event": ak.to_numpy(a["event"]) + 10**6, RHO: a["FatJet_pt"] * 0 + 20,
                         "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
                         "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    contract = parse([{"name": "x", "kind": "event", "features": [RHO, NPV]}], "inputs", "config")
    spec = InputSpec(2, 30, True, 0.0, contract)

    def source(**params):
        src = RootJetSource("source", build(RootJetSourceParameters, {
            "files": [str(good), str(bad)], "chunk_size": 25, **params}, "source"))
        src.begin_job(SourceContext.standalone(spec))
        src.consumers_known()  # the first file's branches are one value per event
        return src

    src = source()
    with pytest.raises(SourceError, match=rf"branch '{RHO}' holds a list of values per event, in .*bad\.root"):
        list(src.events(0, None))
    src.end_job()
    src = source(skipBadFiles=True)
    with uproot.open(good) as f:
        want = f["Events"].arrays([RHO, NPV], library="np")
    seen = 0
    for i, (_, products) in enumerate(src.events(0, None)):
        x = products[""].batch(spec).inputs
        assert len(x) and (x == [want[RHO][i], want[NPV][i]]).all(), (i, x)
        seen += 1
    src.end_job()
    assert seen == EVENTS and src.accounting()["bad_entries_per_file"] == {str(bad): EVENTS}
