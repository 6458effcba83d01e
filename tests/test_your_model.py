"""Bringing your own model (docs/your-model.md): outputs by mapping, the begin_job checks, hltbench.

The models are built here with the onnx helper API, each a few element-wise ops on the (N, 100, 3)
jets, so every score is known in numpy: ``score = sum over constituents and features``. Each runs
through the shipped path (``hltrun configs/path.yaml`` with overrides, as a user would type them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
from onnx import TensorProto, helper  # noqa: E402

from hltrun.framework.cli import main as hltrun  # noqa: E402
from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.tools.bench.cli import main as hltbench  # noqa: E402

# output kind -> (ReduceSum axes, then a shape op): what each output computes from the jets
KINDS = {
    "per_jet": ([1, 2], None),          # (N,): one value per jet, the score a model should give
    "per_feature": ([1], None),         # (N, 3): not a score
    "per_event": ([0, 1, 2], "Unsqueeze"),  # (1,): one value for the whole batch
}
SHAPES = {"per_jet": ["N"], "per_feature": ["N", 3], "per_event": [1]}


def make_model(path: Path, outputs: dict[str, str], batch: int | str = "N",
               inputs: Sequence[str] = ("jets",)) -> Path:
    """An ONNX model whose outputs (name -> kind in KINDS) are sums over its first input's jets."""
    nodes, inits = [], [helper.make_tensor("zero", TensorProto.INT64, [1], [0])]
    for name, kind in outputs.items():
        axes, then = KINDS[kind]
        inits.append(helper.make_tensor(f"{name}_axes", TensorProto.INT64, [len(axes)], axes))
        reduced = f"{name}_sum" if then else name
        nodes.append(helper.make_node("ReduceSum", [inputs[0], f"{name}_axes"], [reduced], keepdims=0))
        if then:
            nodes.append(helper.make_node(then, [reduced, "zero"], [name]))
    graph = helper.make_graph(
        nodes, "user_model",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, [batch, 100, 3]) for i in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[k]) for n, k in outputs.items()], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run_path(tmp: Path, model: Path, *overrides: str, events: int = 200,
             backend: str | None = "onnxruntime") -> tuple[int, dict]:
    """The shipped path on ``model``, output and report in tmp; ``backend=None`` keeps the shipped
    ``auto`` (what a user gets), else the engine is named so that error lines are the same everywhere."""
    engine = [f"modules.vae.backend={backend}"] if backend else []
    rc = hltrun(["configs/path.yaml", f"modules.vae.model={model}", *engine,
                 f"modules.out.file={tmp / 'out.root'}", "--report-dir", str(tmp / "report"), "-n", str(events),
                 *overrides])
    report = tmp / "report" / "hltrun.json"
    return rc, (json.loads(report.read_text()) if rc == 0 and report.exists() else {})


def written(tmp: Path) -> dict[str, np.ndarray]:
    import uproot

    with uproot.open(tmp / "out.root") as f:
        tree = f["Events"]
        return {k: tree[k].array(library="np") for k in tree.keys() if k.startswith("vae_")}


# ---------------------------------------------------------------------- (a) (b): it runs
def test_pytorch_output_name_mapped_runs_the_shipped_path(tmp_path, capfd) -> None:
    """Only an output named ``output``: ``outputs={score: output}`` and a threshold; nothing else."""
    model = make_model(tmp_path / "mymodel.onnx", {"output": "per_jet"})
    threshold = 900.0  # the sums run 200-1400 on the shipped samples: the cut keeps ~10% of events
    rc, report = run_path(tmp_path, model, "modules.vae.outputs={score: output}",
                          f"modules.anomalyFilter.threshold={threshold}", backend=None)
    assert rc == 0
    out = written(tmp_path)
    assert "vae_kl" not in out and 0 < len(out["vae_score"]) < 200  # the cut selects, not all or nothing
    assert all(np.max(s) > threshold for s in out["vae_score"])  # every written event has a jet above it
    assert "no 'kl' output" not in capfd.readouterr().err  # asked by mapping: no kl was wanted, nothing to say
    assert report["job"]["module_summaries"]["vae"]["jets"] > 0


def test_score_only_model_needs_no_outputs_override(tmp_path, capfd) -> None:
    model = make_model(tmp_path / "scoreonly.onnx", {"score": "per_jet"})
    rc, _ = run_path(tmp_path, model, "modules.anomalyFilter.threshold=900", "options.numberOfThreads=2", backend=None)
    assert rc == 0
    assert "vae_kl" not in written(tmp_path)
    assert capfd.readouterr().err.count("has no 'kl' output: kl is not written") == 1  # once, not per stream


def test_only_output_is_the_score_and_kl_is_kept_when_present(tmp_path) -> None:
    """Unset outputs: a single output of any name is the score; a model with score and kl keeps kl."""
    from tests.tiny_models import jets, loaded

    x = jets(5)
    only = loaded("onnxruntime", make_model(tmp_path / "only.onnx", {"output": "per_jet"}))
    assert only.outputs == {"score": "output"}
    np.testing.assert_allclose(only.run(x)["score"], x.sum(axis=(1, 2)), rtol=1e-5)
    both = loaded("onnxruntime", make_model(tmp_path / "both.onnx", {"score": "per_jet", "kl": "per_jet"}))
    assert set(both.run(x)) == {"score", "kl", "valid"}
    mapped = loaded("onnxruntime", make_model(tmp_path / "named.onnx", {"s": "per_jet", "d": "per_jet"}),
                    outputs={"score": "s", "kl": "d"})
    out = mapped.run(x)
    assert set(out) == {"score", "kl", "valid"}
    np.testing.assert_allclose(out["kl"], x.sum(axis=(1, 2)), rtol=1e-5)


def test_mapping_on_the_jax_engine(tmp_path) -> None:
    """The roles come back whatever the engine: JAX fetches outputs by the model's names too."""
    pytest.importorskip("jax", reason="jax (extra 'jax') not installed")
    from tests.tiny_models import jets, loaded

    x = jets(3)
    backend = loaded("jax", make_model(tmp_path / "named.onnx", {"s": "per_jet", "d": "per_feature"}),
                     outputs={"score": "s"}, device="cpu", max_batch=4)
    out = backend.run(x)
    assert set(out) == {"score", "valid"}
    np.testing.assert_allclose(out["score"], x.sum(axis=(1, 2)), rtol=1e-5)


def test_single_output_keras_model_is_the_score(tmp_path, tiny) -> None:
    """A Keras model with one output (named after its layer) needs no outputs setting on TensorFlow.
    (``tiny`` first: it sets TensorFlow's threads, which freeze at TensorFlow's first op.)"""
    keras = pytest.importorskip("keras", reason="keras (extra 'tf') not installed")
    from tests.tiny_models import jets, loaded

    inp = keras.Input((100, 3), name="jets")
    flat = keras.layers.Flatten()(inp)  # a (N, 1) output: one value per jet, as a Dense head gives it
    model = keras.Model(inp, keras.layers.Dense(1, kernel_initializer="ones", name="anomaly")(flat))
    model.save(tmp_path / "one.keras")
    backend = loaded("tensorflow", tmp_path / "one.keras")
    assert list(backend.outputs) == ["score"]
    x = jets(4)
    np.testing.assert_allclose(backend.run(x)["score"], x.sum(axis=(1, 2)), rtol=1e-5)


def test_keras_list_outputs_keep_their_own_names(tmp_path, tiny) -> None:
    """A Keras model with a list of outputs is read by its outputs' own names, as an ONNX file is: not
    renamed (score, kl) by position, so the first one is not taken as the score unasked, and
    ``outputs: {score: kl_div}`` names a real output."""
    keras = pytest.importorskip("keras", reason="keras (extra 'tf') not installed")
    from tests.tiny_models import jets, loaded

    inp = keras.Input((100, 3), name="jets")
    total = keras.layers.Dense(1, kernel_initializer="ones", name="anomaly")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, [total, keras.layers.Rescaling(2.0, name="kl_div")(total)])
    model.save(tmp_path / "two.keras")
    with pytest.raises(ModuleError, match=r"has no output named 'score' and 2 outputs \['anomaly', 'kl_div'\]"):
        loaded("tensorflow", tmp_path / "two.keras")
    backend = loaded("tensorflow", tmp_path / "two.keras", outputs={"score": "kl_div"})
    x = jets(4)
    np.testing.assert_allclose(backend.run(x)["score"], 2 * x.sum(axis=(1, 2)), rtol=1e-5)


# ---------------------------------------------------------------------- (c) (d): one line at begin_job
def _fails(tmp: Path, model: Path, *overrides: str, capfd: pytest.CaptureFixture[str],
           backend: str = "onnxruntime") -> tuple[int, str]:
    rc, _ = run_path(tmp, model, "modules.anomalyFilter.threshold=1", *overrides, backend=backend)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_wrong_output_shape_is_one_line_at_begin_job(tmp_path, capfd) -> None:
    model = make_model(tmp_path / "feat.onnx", {"output": "per_feature"})
    rc, err = _fails(tmp_path, model, "modules.vae.outputs={score: output}", capfd=capfd)
    assert rc == 4
    assert ("output 'output' (the score) has shape (1, 3) for 1 jet(s); expected one value per jet, shape (1,)"
            in err), err


def test_per_event_score_needs_score_per_event(tmp_path, capfd) -> None:
    """(1,) whatever the batch, undeclared: refused at begin_job by the default warm-up (1 and 9 jets),
    naming the setting; a warm-up of 1 jet only lets it through to the first event with two jets,
    which fails with the same line."""
    model = make_model(tmp_path / "event.onnx", {"score": "per_event"})
    rc, err = _fails(tmp_path, model, capfd=capfd)
    assert rc == 4
    assert "output 'score' has shape (1,) for 9 jet(s)" in err and "set the scorer's score_per: event" in err
    assert "failed its warm-up" not in err and "in module 'vae'" not in err  # begin_job, not an event
    rc, err = _fails(tmp_path, model, "modules.vae.warm_up=[1]", capfd=capfd)
    assert rc == 4
    assert "output 'score' has shape (1,) for 2 jet(s)" in err and "in module 'vae', run 1" in err


def test_a_score_per_event_runs_with_score_per_event(tmp_path, capfd) -> None:
    """``score_per: event``: one value per call (the event), carried by each of its jets; the filter's
    max is the event's score. A per-jet output, batching and padding engines are refused in one line."""
    import uproot

    model = make_model(tmp_path / "event.onnx", {"score": "per_event"})
    rc, _ = run_path(tmp_path, model, "modules.vae.score_per=event", "modules.anomalyFilter.threshold=1500",
                     "modules.out.select_events=[]")
    assert rc == 0
    out = written(tmp_path)
    with uproot.open(tmp_path / "out.root") as f:
        passed = f["Events"]["HLT_AnomalyDetection"].array(library="np")
    for scores, fired in zip(out["vae_score"], passed):
        assert len(set(scores.tolist())) <= 1  # every jet carries the event's value
        assert bool(fired) == bool(len(scores) and scores[0] > 1500)
    assert 0 < passed.sum() < len(passed)
    per_jet = make_model(tmp_path / "jet.onnx", {"score": "per_jet"})
    rc, _ = run_path(tmp_path, per_jet, "modules.anomalyFilter.threshold=1500", "modules.out.select_events=[]")
    assert rc == 0  # the same sums jet by jet: the event's value is their total
    for event_scores, jet_scores in zip(out["vae_score"], written(tmp_path)["vae_score"]):
        np.testing.assert_allclose(event_scores, np.full(len(jet_scores), jet_scores.sum()), rtol=1e-5)
    rc, err = _fails(tmp_path, per_jet, "modules.vae.score_per=event", capfd=capfd)
    assert rc == 4 and "score_per: event expects one value per call" in err, err
    rc, err = _fails(tmp_path, model, "modules.vae.score_per=event", "modules.vae.batching={max_batch: 8}",
                     capfd=capfd)
    assert rc == 2 and "must be called once per event" in err, err
    rc, err = _fails(tmp_path, model, "modules.vae.score_per=event", backend="iree", capfd=capfd)
    assert rc == 4 and "would score the padding too" in err, err


def test_unmappable_outputs_list_the_model_outputs(tmp_path, capfd) -> None:
    two = make_model(tmp_path / "two.onnx", {"recon_err": "per_jet", "latent": "per_jet"})
    rc, err = _fails(tmp_path, two, capfd=capfd)
    assert rc == 4
    assert ("has no output named 'score' and 2 outputs ['recon_err', 'latent']; set outputs: {score: <one of them>}"
            in err), err
    rc, err = _fails(tmp_path, make_model(tmp_path / "s.onnx", {"score": "per_jet"}),
                     "modules.vae.outputs={score: output}", capfd=capfd)
    assert rc == 4
    assert "modules.vae: onnxruntime: model" in err and "has no output 'output' (for score); its outputs are ['score']" in err


def test_several_inputs_and_fixed_batch_say_the_contract(tmp_path) -> None:
    from hltrun.modules.inference import BackendOptions, create_backend

    several = make_model(tmp_path / "pn.onnx", {"score": "per_jet"}, inputs=("points", "features", "mask"))
    with pytest.raises(ModuleError, match=r"has 3 inputs \['points', 'features', 'mask'\]; hltrun feeds its shipped "
                                          r"input, constituents \(N, 100, 3\) \[deta, dphi, pt\] only: declare"):
        create_backend("onnxruntime", several, BackendOptions()).load()
    fixed = make_model(tmp_path / "fixed1.onnx", {"score": "per_jet"}, batch=1)
    with pytest.raises(ModuleError, match=r"takes a fixed batch of 1 jet\(s\)"):
        create_backend("onnxruntime", fixed, BackendOptions()).load()


def test_nan_cut_in_the_card_is_a_configuration_error(tmp_path, capfd) -> None:
    model = make_model(tmp_path / "mine.onnx", {"score": "per_jet"})
    (tmp_path / "thresholds.json").write_text('{"mine": {"bkg_eff_1e-2": NaN}}')
    rc = hltrun(["configs/path.yaml", f"modules.vae.model={model}", "modules.vae.backend=onnxruntime",
                 f"modules.out.file={tmp_path / 'o.root'}", "-n", "5"])
    err = capfd.readouterr().err
    assert rc == 2 and "mine.bkg_eff_1e-2 is nan; a cut must be a finite number" in err, err


def test_outputs_setting_is_validated() -> None:
    from hltrun.framework.errors import ConfigError
    from hltrun.framework.schema import build
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters

    assert build(VAEAnomalyScorerParameters, {"outputs": {"score": "output"}}, "m").outputs == {"score": "output"}
    assert build(VAEAnomalyScorerParameters, {"outputs": ["score"]}, "m").outputs == ["score"]
    with pytest.raises(ConfigError, match=r"outputs must map score .*\{score: <model output>, kl: \.\.\., <name>"):
        build(VAEAnomalyScorerParameters, {"outputs": {"kl": "kl"}}, "modules.vae")
    extra = {"score": "s", "latent": "z"}  # an extra output, written as vae_latent
    assert build(VAEAnomalyScorerParameters, {"outputs": extra}, "modules.vae").outputs == extra
    for bad in ({"score": "s", "valid": "v"}, {"score": "s", "2x": "v"}):  # a JetScores field, not a column name
        with pytest.raises(ConfigError, match="outputs must map score"):
            build(VAEAnomalyScorerParameters, {"outputs": bad}, "modules.vae")
    with pytest.raises(ConfigError, match="outputs must include 'score'"):
        build(VAEAnomalyScorerParameters, {"outputs": ["score", "latent"]}, "modules.vae")


def test_extra_outputs_are_written_beside_the_score(tmp_path) -> None:
    """``outputs: {score: s, latent: z}``: the model's ``z`` is written per jet as ``vae_latent``."""
    model = make_model(tmp_path / "extra.onnx", {"s": "per_jet", "z": "per_jet"})
    rc, _ = run_path(tmp_path, model, "modules.vae.outputs={score: s, latent: z}", "modules.anomalyFilter.threshold=900",
                     "modules.vae.batching={max_batch: 8, max_delay_ms: 1}", "options.numberOfThreads=2")
    assert rc == 0
    out = written(tmp_path)
    assert "vae_latent" in out and "vae_kl" not in out and len(out["vae_latent"]) > 0
    for s, z in zip(out["vae_score"], out["vae_latent"]):  # both are the jets' sums in this model
        np.testing.assert_array_equal(s, z)


# ---------------------------------------------------------------------- (e) hltbench
def test_hltbench_backends_and_profile_on_a_score_only_model(tmp_path, capsys) -> None:
    make_model(tmp_path / "mymodel.onnx", {"output": "per_jet"})
    rc = hltbench(["backends", "--models-dir", str(tmp_path), "--models", "mymodel", "--backends", "ort-fp32",
                   "ort-bare", "--batch-sizes", "1", "9", "--min-time", "0.01", "--min-calls", "2",
                   "--mem-calls", "1", "--mem-jets", "0", "--ghz", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| mymodel | ort-fp32 |" in out and "| mymodel | ort-bare |" in out
    assert "n/a (no matrix products)" in out
    rc = hltbench(["profile", str(tmp_path / "mymodel.onnx"), "--batch-sizes", "1", "4", "--profile-batch", "4",
                   "--profile-calls", "3", "--min-time", "0.02", "--repeat", "1",
                   "--sample", str(tmp_path / "none.root")])
    out = capsys.readouterr().out
    assert rc == 0 and "sgemm floor n/a: the model has no matrix products" in out


def test_hltbench_backends_fails_when_nothing_could_be_measured(tmp_path, capsys) -> None:
    make_model(tmp_path / "two.onnx", {"a": "per_jet", "b": "per_jet"})  # no 'score', two outputs
    rc = hltbench(["backends", "--models-dir", str(tmp_path), "--models", "two", "--backends", "ort-fp32",
                   "--batch-sizes", "1", "--min-time", "0.01", "--mem-jets", "0", "--ghz", "1"])
    assert rc == 2
    assert "nothing measured for two" in capsys.readouterr().err


def test_hltbench_backends_ort_bare_feeds_the_declared_inputs(tmp_path, capsys) -> None:
    """``ort-bare`` (the plain session beside the wrapper) on a model whose inputs are declared in its
    metadata, (N, 40, 5) constituents and (N, 3) jet values: it is fed the declared shapes, as ``ort-fp32``
    is. It fed every model the shipped (N, 100, 3) jets, and the study ended in ONNX Runtime's "Got invalid
    dimensions" traceback after ``ort-fp32`` had been timed."""
    from hltrun.tools.bench.backends import SPECS, _batches, make_backend
    from hltrun.tools.declare_inputs import main as hltinputs

    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    axis = helper.make_tensor("axis", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["cons", "axes"], ["c"], keepdims=0),
         helper.make_node("ReduceSum", ["jet", "axis"], ["j"], keepdims=0),
         helper.make_node("Add", ["c", "j"], ["score"])], "two_inputs",
        [helper.make_tensor_value_info("cons", TensorProto.FLOAT, ["N", 40, 5]),
         helper.make_tensor_value_info("jet", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], [axes, axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two_in.onnx"))
    assert hltinputs([str(tmp_path / "two_in.onnx"), "--write",
                      "[{name: cons, features: [log_pt_rel, deta, dphi, log_e_rel, dr], n_constituents: 40},"
                      " {name: jet, kind: jet, features: [log_pt, eta, mass]}]"]) == 0
    capsys.readouterr()
    rc = hltbench(["backends", "--models-dir", str(tmp_path), "--models", "two_in", "--backends", "ort-fp32",
                   "ort-bare", "--batch-sizes", "1", "3", "--min-time", "0.01", "--min-calls", "2",
                   "--mem-calls", "1", "--mem-jets", "0", "--ghz", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| two_in | ort-fp32 |" in out and "| two_in | ort-bare |" in out
    # the same jets in, the same scores out: the bare session is fed what the wrapper is fed
    bare, wrapped = (make_backend(spec, tmp_path, "two_in") for spec in ("ort-bare", "ort-fp32"))
    assert SPECS["ort-bare"].backend == "bare"
    xs = _batches(wrapped, np.zeros((3, 100, 3), np.float32), 3)(3)
    assert isinstance(xs, tuple) and [x.shape for x in xs] == [(3, 40, 5), (3, 3)]
    assert [x.shape for x in _batches(bare, np.zeros((3, 100, 3), np.float32), 3)(3)] == [(3, 40, 5), (3, 3)]
    expected = xs[0].astype(np.float64).sum(axis=(1, 2)) + xs[1].astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(bare.run(xs)[0], expected, rtol=1e-5)
    np.testing.assert_allclose(wrapped.run(xs)["score"], expected, rtol=1e-5)
    wrapped.close()


def make_sklearn_like(path: Path) -> Path:
    """What skl2onnx writes for a classifier (and, for its label, an IsolationForest): an int64 ``label`` first,
    the probabilities as a sequence of maps (``ZipMap``), beside a float output (``raw``): here each computed
    from the jets' sums per feature (N, 3), three "classes"."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("ReduceSum", ["jets", "axes"], ["per_feature"], keepdims=0),
             helper.make_node("ArgMax", ["per_feature"], ["label"], axis=1, keepdims=0),
             helper.make_node("ZipMap", ["per_feature"], ["probabilities"], domain="ai.onnx.ml",
                              classlabels_int64s=[0, 1, 2]),
             helper.make_node("ReduceMax", ["per_feature"], ["raw"], axes=[1], keepdims=0)]
    maps = helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.INT64,
                                                                      helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    graph = helper.make_graph(
        nodes, "sklearn_like", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]), helper.make_value_info("probabilities", maps),
         helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N"])], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_sequence_of_maps_or_an_integer_label_as_the_score_is_one_line(tmp_path, capfd) -> None:
    """skl2onnx's outputs mapped as the score: its ZipMap ended begin_job with numpy's ``TypeError: float()
    argument must be a string or a real number, not 'dict'``, and an int64 label ran as a score without a word;
    each is now one line naming the output, its type and the float output to map instead."""
    model = make_sklearn_like(tmp_path / "skl.onnx")
    rc, err = _fails(tmp_path, model, "modules.vae.outputs={score: probabilities}", capfd=capfd)
    assert rc == 4, err
    assert ("output 'probabilities' (the score) is seq(map(int64,tensor(float))), not a tensor of one value per jet"
            in err and "'zipmap': False" in err and "its floating-point outputs: ['raw']" in err), err
    assert "TypeError" not in err
    rc, err = _fails(tmp_path, model, "modules.vae.outputs={score: label}", capfd=capfd)
    assert rc == 4, err
    assert "output 'label' (the score) is int64, not a floating-point score" in err and "['raw']" in err, err
    rc, _ = run_path(tmp_path, model, "modules.vae.outputs={score: raw, n: label}", "modules.anomalyFilter.threshold=1",
                     "modules.out.select_events=[]")
    assert rc == 0  # the float output is the score; an integer extra output is written as it is
    out = written(tmp_path)
    assert all(len(s) == len(n) for s, n in zip(out["vae_score"], out["vae_n"]))
    assert {int(v) for n in out["vae_n"] for v in n} <= {0, 1, 2}
