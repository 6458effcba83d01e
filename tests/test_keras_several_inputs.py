"""Several-input networks on the TensorFlow (``.keras``) and TFLite backends: ParticleNet as first written, in Keras
(hqucms/ParticleNet: ``points``, ``features``, ``mask``), each input fed by its name (tests/particlenet.py
``particlenet_keras``). Until 2026-12-07 both engines refused such a model at begin_job in one line (``has 3 inputs
[...]; the tensorflow backend feeds models with one input``), and ``auto`` could not time its ``.tflite``.

Why by name: TFLite's converter orders the tensors of a Keras [points, features, mask] as points, mask, features and
its signature by name, a Keras dict model flattens its inputs sorted by key, and ``points`` and ``features`` have
one shape here: an engine, or a check, that fed them by position would run without a word and give other scores."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
pytest.importorskip("tf2onnx", reason="tf2onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")

from hltrun.framework.cli import main as hltrun  # noqa: E402
from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.contract import arranged  # noqa: E402
from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference.autoselect import CHECK_JETS, beyond_rounding, choose, sample_inputs  # noqa: E402
from hltrun.modules.inference.base import AGREEMENT_RTOL  # noqa: E402
from tests.agreement import assert_padded_with_zero_jets, assert_several_inputs_agree  # noqa: E402
from tests.particlenet import KERAS_DECLARED, particlenet_keras  # noqa: E402

MAX_BATCH = 8  # TFLite buckets 1, 2, 4, 8
BATCHES = (1, 2, 3, 5, 8, 11, 3, 1)  # 3, 5: padded; 11: a chunk of 8 and a padded one of 3; smaller after larger
NAMES = ["points", "features", "mask"]


@pytest.fixture(scope="module")
def pn(tmp_path_factory) -> SimpleNamespace:
    """A list-input model with its .onnx and .tflite beside it, and a dict-input one with its .onnx."""
    listed = particlenet_keras(tmp_path_factory.mktemp("pn_list"))
    keyed = particlenet_keras(tmp_path_factory.mktemp("pn_dict"), as_dict=True)
    return SimpleNamespace(keras=listed, onnx=listed.with_suffix(".onnx"), tflite=listed.with_suffix(".tflite"),
                           dict_keras=keyed, dict_onnx=keyed.with_suffix(".onnx"))


@pytest.fixture(scope="module")
def reference(pn):
    backend = create_backend("onnxruntime", pn.onnx).load()
    backend.warm_up()
    return backend


@pytest.fixture(scope="module")
def tflite(pn):
    backend = create_backend("tflite", pn.tflite, BackendOptions(max_batch=MAX_BATCH)).load()
    backend.warm_up()
    yield backend
    backend.close()


def _inputs(reference, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """The declared inputs as the source prepares them, in ONNX Runtime's order (points, features, mask): 1 to 16
    real constituents per jet, the rest 0 and masked 0 (``sample_inputs``)."""
    xs = sample_inputs(reference, n, seed=seed)
    assert [i.name for i in reference.contract.inputs] == NAMES and len(xs) == 3
    assert 0.0 < float(xs[2].mean()) < 1.0  # real and padded constituents: the mask matters
    return xs


def _agree(got: np.ndarray, want: np.ndarray) -> bool:
    return beyond_rounding({"score": got}, {"score": want}) <= AGREEMENT_RTOL


def test_tflite_orders_the_inputs_otherwise_than_onnx(tflite, reference):
    """What makes a feed by position wrong here: the file's own order is not the declaration's (nor Keras')."""
    assert tflite.describe()["inputs_from"] == "model metadata"  # the .onnx's beside it
    assert [i.name for i in tflite.contract.inputs] != NAMES
    assert sorted(i.name for i in tflite.contract.inputs) == sorted(NAMES)
    assert [tflite._jet_shapes[[i.name for i in tflite.contract.inputs].index(n)] for n in NAMES] == \
        [(16, 2), (16, 2), (16, 1)]


def test_tflite_scores_are_onnxruntimes_in_every_bucket(tflite, reference):
    """Every bucket, padded ones and a batch over max_batch included, each input handed by name: ONNX Runtime's
    scores within the agreement criterion. The same jets with ``points`` and ``features`` swapped give other scores
    (one shape: nothing else would tell), so an engine that fed the inputs by position fails here."""
    before = dict(tflite.counters)
    for n in BATCHES:
        xs = _inputs(reference, n, seed=n)
        want = reference.run(xs)["score"]
        got = tflite.run(arranged(xs, reference.contract, tflite.contract))["score"]
        assert _agree(got, want), (n, got, want)
        swapped = (xs[1], xs[0], xs[2])
        assert not _agree(tflite.run(arranged(swapped, reference.contract, tflite.contract))["score"], want), n
    assert tflite.counters["chunks"] - before["chunks"] == 2 * (len(BATCHES) + 1)  # each twice; 11 jets: two chunks
    assert tflite.counters["padded_jets"] - before["padded_jets"] > 0
    assert assert_several_inputs_agree(tflite, reference.model_path, "tflite several inputs") <= AGREEMENT_RTOL


def test_tflite_pads_every_input_with_zero_jets(tflite, reference, monkeypatch):
    """What the interpreters are handed for 5 jets after 7 in the bucket of 8: the 5 jets in every input, then zero
    jets in every input, the mask among them (a padded jet's mask is 0, never 1; no row of the earlier batch)."""
    seen: list[tuple[np.ndarray, ...]] = []
    real = tflite._execute

    def spy(bucket, bufs):
        seen.append(tuple(buf.copy() for buf in bufs))
        return real(bucket, bufs)

    monkeypatch.setattr(tflite, "_execute", spy)
    tflite.run(arranged(_inputs(reference, 7, seed=70), reference.contract, tflite.contract))
    xs = arranged(_inputs(reference, 5, seed=50), reference.contract, tflite.contract)
    tflite.run(xs)
    handed = seen[-1]
    names = [i.name for i in tflite.contract.inputs]
    assert [buf.shape for buf in handed] == [(8, *tflite._jet_shapes[k]) for k in range(3)]
    assert_padded_with_zero_jets(handed, xs, 8)
    assert handed[names.index("mask")][:5].any()  # the real jets' mask is there, the padding's is 0


@pytest.mark.parametrize("mode", ["function", "eager", "predict"])
@pytest.mark.parametrize("form", ["list", "dict"])
def test_tensorflow_scores_are_onnxruntimes(pn, form, mode):
    """The Keras model itself, each input fed by its name in every mode, against ONNX Runtime on the same jets; a
    dict model (Keras flattens it sorted by key: features, mask, points) too. Swapped ``points``/``features``: other
    scores, so a feed by position would fail."""
    keras_file, onnx_file = (pn.keras, pn.onnx) if form == "list" else (pn.dict_keras, pn.dict_onnx)
    reference = create_backend("onnxruntime", onnx_file).load()
    engine = create_backend("tensorflow", keras_file, BackendOptions(mode=mode)).load()
    engine.warm_up()
    assert sorted(i.name for i in engine.contract.inputs) == sorted(NAMES)
    for n in (1, 2, 5, 33):
        xs = _inputs(reference, n, seed=n)
        want = reference.run(xs)["score"]
        assert _agree(engine.run(arranged(xs, reference.contract, engine.contract))["score"], want), (form, mode, n)
        swapped = arranged((xs[1], xs[0], xs[2]), reference.contract, engine.contract)
        assert not _agree(engine.run(swapped)["score"], want), (form, mode, n)


@pytest.mark.parametrize("engine, model", [("tensorflow", "keras"), ("tflite", "tflite")])
def test_input_names_other_than_declared_are_one_line(tmp_path, pn, engine, model, capfd):
    """A declaration naming inputs the model does not have (weaver's pf_points, ...): the job is refused at
    begin_job in one line naming the input and the model's own (exit 4), never fed by position."""
    declared = "[" + ", ".join(f"{{name: pf_{d['name']}, features: [{', '.join(d['features'])}], n_constituents: 16}}"
                               for d in KERAS_DECLARED) + "]"
    rc = hltrun(["configs/path.yaml", "-q", "-n", "5", f"modules.vae.model={getattr(pn, model)}",
                 f"modules.vae.backend={engine}", f"modules.vae.inputs={declared}",
                 "modules.anomalyFilter.threshold=0.0", f"modules.out.file={tmp_path / 'out.root'}"])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hltrun: error:")]  # in-process: TF's thread
    # warning may come first (another test ran TensorFlow)
    assert rc == 4 and len(lines) == 1 and "Traceback" not in err, err
    assert "has no input 'pf_" in lines[0] and "(declared in config); its inputs are [" in lines[0], lines
    assert all(f"'{name}'" in lines[0] for name in NAMES), lines


def test_nested_keras_inputs_are_one_line(tmp_path):
    """A Keras model whose inputs nest ([[points, features], mask]) has no one name per input: one line naming the
    file (it was "cannot load model ...: AttributeError: 'list' object has no attribute 'name'")."""
    import keras

    from hltrun.modules.contract import parse

    a, b, m = (keras.Input((16, f), name=n) for n, f in (("points", 2), ("features", 2), ("mask", 1)))
    keras.Model([[a, b], m], {"score": keras.ops.sum((a + b) * m, axis=(1, 2))}).save(tmp_path / "nested.keras")
    declared = parse(KERAS_DECLARED, "modules.vae.inputs", "config")
    with pytest.raises(ModuleError, match=r"^tensorflow: model .*nested.keras takes nested inputs; hltrun feeds a Keras "
                                          r"model whose inputs are a list or a dict of keras.Input tensors"):
        create_backend("tensorflow", tmp_path / "nested.keras", BackendOptions(inputs=declared)).load()


def test_auto_times_the_tflite_file_on_the_same_jets_by_name(pn):
    """``auto`` checks every engine against ONNX Runtime on the same sample jets: each engine is handed them in
    its own order, by name. (Fed ONNX Runtime's order, the .tflite was "not usable: batch of shape (48, 16, 2),
    expected (N, 16, 1)".)"""
    candidates = {name: (lambda name=name, path=path: create_backend(name, path))
                  for name, path in (("onnxruntime", pn.onnx), ("tflite", pn.tflite))}
    choice = choose(candidates, 2, "onnxruntime", budget_s=0.2)
    row = next(t for t in choice.table if t.backend == "tflite")
    assert row.agrees and row.us_per_jet is not None, row


def test_sample_inputs_give_every_engine_the_same_values_by_name(pn, reference, tflite):
    """The agreement checks of ``auto``, the verdict and begin_job draw a sample per engine: the same values per
    input name whatever order the engine has its inputs in."""
    ours, theirs = sample_inputs(tflite, CHECK_JETS, seed=1), sample_inputs(reference, CHECK_JETS, seed=1)
    for decl, x in zip(tflite.contract.inputs, ours):
        np.testing.assert_array_equal(x, theirs[NAMES.index(decl.name)])


def test_the_onnx_reference_of_a_tflite_file_is_fed_by_name(tflite):
    """begin_job's measure of a reduced-precision file against ONNX Runtime (``fidelity``) hands ONNX Runtime the
    engine's jets by name."""
    from hltrun.modules.inference import fidelity

    x = sample_inputs(tflite, CHECK_JETS, seed=1)
    reference = fidelity._reference_outputs(tflite, x)
    assert reference is not None and _agree(tflite.run(x)["score"], reference["score"])


def test_a_signature_tensors_name_is_its_input(tmp_path):
    """A file without one serving signature names its inputs by tensor (``serving_default_points:0``): of several,
    read as ``points``, the name a declaration gives, where that leaves every input its own."""
    from hltrun.modules.inference.tflite_backend import io_indices

    class Interpreter:  # what io_indices reads of one
        def __init__(self, names):
            self.names = names

        def get_signature_list(self):
            return {}

        def get_input_details(self):
            return [{"name": name, "index": k} for k, name in enumerate(self.names)]

        def get_output_details(self):
            return [{"name": "StatefulPartitionedCall:0", "index": 9}]

    inputs, _ = io_indices(Interpreter(["serving_default_points:0", "serving_default_mask:0", "features"]))
    assert [(i["name"], i["index"]) for i in inputs] == [("points", 0), ("mask", 1), ("features", 2)]
    inputs, _ = io_indices(Interpreter(["serving_default_x:0", "x"]))  # the same bare name twice: kept whole
    assert [i["name"] for i in inputs] == ["serving_default_x:0", "x"]
    inputs, _ = io_indices(Interpreter(["serving_default_jets:0"]))  # one input: its tensor's name, as before
    assert [i["name"] for i in inputs] == ["serving_default_jets:0"]


@pytest.mark.slow
def test_the_shipped_sample_scores_as_on_onnxruntime(tmp_path, pn, capfd):
    """The whole path on the shipped QCD sample, its inputs declared in the .onnx beside each file: TensorFlow's and
    TFLite's score of every jet is ONNX Runtime's within float32 rounding (each of the three its own job)."""
    import uproot

    scores = {}
    for engine, model in (("onnxruntime", pn.onnx), ("tensorflow", pn.keras), ("tflite", pn.tflite)):
        out = tmp_path / f"{engine}.root"
        rc = hltrun(["configs/path.yaml", "-q", "-n", "200", f"modules.vae.model={model}",
                     f"modules.vae.backend={engine}", "source.files=[data/qcd_dijet.root]",
                     "modules.anomalyFilter.threshold=-1.0e+30", f"modules.out.file={out}",
                     "options.wantSummary=false"])
        assert rc == 0, capfd.readouterr().err
        with uproot.open(out) as f:
            scores[engine] = np.concatenate(list(f["Events"]["vae_score"].array(library="np")))
    want = scores["onnxruntime"]
    assert len(want) == 400 and np.isfinite(want).all()
    for engine in ("tensorflow", "tflite"):
        assert _agree(scores[engine], want), (engine, np.abs(scores[engine] - want).max())
