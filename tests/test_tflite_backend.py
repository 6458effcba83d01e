"""The ``tflite`` backend (modules/inference/tflite_backend.py): TensorFlow Lite with XNNPACK, one interpreter
per batch bucket. Runs in CI on the ``cpu`` extra's LiteRT (``ai_edge_litert``), and on TensorFlow's
``tf.lite`` where LiteRT is absent (forced below)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from hltrun.framework.errors import ModuleError
from hltrun.modules.inference import BackendOptions, create_backend
from tests.agreement import MODELS, assert_agree, assert_path_decides_as_on_onnxruntime, shipped_jets

tf = pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")

SHIPPED_TFLITE = MODELS / "conv_vae.tflite"


def loaded(name: str, path: Path, **options) -> object:
    backend = create_backend(name, path, BackendOptions(**options)).load()
    backend.warm_up()
    return backend


def convert(tmp_path: Path, fn, spec: tf.TensorSpec, signature: bool = True) -> Path:
    """A .tflite file of ``fn`` (a dict of outputs, named in its serving signature when ``signature``)."""
    holder = tf.Module()
    holder.fn = tf.function(fn, autograph=False, input_signature=[spec])
    concrete = holder.fn.get_concrete_function()
    converter = (tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder) if signature
                 else tf.lite.TFLiteConverter.from_concrete_functions([concrete]))
    path = tmp_path / "model.tflite"
    path.write_bytes(converter.convert())
    return path


def per_jet(x):
    """A small stand-in network: score and kl per jet, from every constituent."""
    return {"score": tf.reduce_sum(x * x, axis=[1, 2]), "kl": tf.reduce_max(x, axis=[1, 2])}


def test_shipped_conv_vae_agrees_with_onnxruntime_in_every_bucket_and_slice():
    """1, 2, 3 (padded to 4), 16 and 37 jets (slices of the largest bucket, 16 for opt_batch 9)."""
    ref = loaded("onnxruntime", MODELS / "conv_vae.onnx")
    engine = loaded("tflite", SHIPPED_TFLITE)
    assert engine.buckets == [1, 2, 4, 8, 16]
    x = np.ascontiguousarray(shipped_jets(20)[:37], dtype=np.float32)
    for n in (1, 2, 3, 16, 37):
        assert_agree("conv_vae", ref.run(x[:n]), engine.run(x[:n]), f"tflite vs onnxruntime, {n} jets")
    assert engine.counters["padded_jets"] == 1 + 3  # 3 -> 4; 37 = 16 + 16 + (5 -> 8)
    assert engine.describe()["delegate"] == "XNNPACK"


def test_a_result_is_its_own_memory_after_the_next_call():
    """One-chunk batches keep the interpreter's outputs without a copy (``fresh_outputs``): that holds only because
    ``get_tensor`` copies; an engine whose outputs were views of its buffers would change earlier results."""
    engine = loaded("tflite", SHIPPED_TFLITE)
    x = np.ascontiguousarray(shipped_jets(4)[:4], dtype=np.float32)
    first = engine.run(x[:2])
    kept = {k: v.copy() for k, v in first.items()}
    second = engine.run(x[2:4])
    for role in ("score", "kl"):
        np.testing.assert_array_equal(first[role], kept[role])
        assert not np.shares_memory(first[role], second[role]) and not np.array_equal(first[role], second[role])


@pytest.mark.slow
@pytest.mark.parametrize("model, bound", [("conv_vae", 1e-5), ("gcn_vae", 1e-4)])
def test_shipped_models_agree_on_every_sample_with_no_decision_change(model, bound):
    """The Conv-VAE rewrite: ~1e-6 measured, float32 rounding, not a different network. The GCN-VAE as Keras built
    it: ~4e-5, as the ONNX export itself against TensorFlow (data/models/onnx_check.json: its score is a small
    difference of sums)."""
    from hltrun.tools.physics.conv_tflite import backend_agreement

    res = backend_agreement(MODELS / f"{model}.onnx", MODELS / f"{model}.tflite", card=model)
    assert res["agrees"], res
    assert res["max_rel_score"] < bound


def test_without_litert_it_runs_on_tensorflows_interpreter(monkeypatch):
    """The fallback runtime, forced: ``ai_edge_litert`` made unimportable."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    ref = loaded("onnxruntime", MODELS / "conv_vae.onnx")
    engine = loaded("tflite", SHIPPED_TFLITE)
    assert engine.runtime == "tensorflow.lite" and engine.describe()["versions"] == {"tensorflow.lite": tf.__version__}
    x = np.ascontiguousarray(shipped_jets(4)[:5], dtype=np.float32)
    assert_agree("conv_vae", ref.run(x), engine.run(x), "tflite on tf.lite vs onnxruntime")


def test_litert_is_preferred_where_installed():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (extra 'cpu' or 'tflite') not installed")
    assert loaded("tflite", SHIPPED_TFLITE).runtime == "ai-edge-litert"


def test_outputs_are_named_by_the_serving_signature_and_padding_never_reaches_a_result(tmp_path):
    """A model whose score mixes the whole batch (its sum over every jet of the call): the rows a bigger batch
    left in the bucket's buffer must be zeros when a smaller one runs, or every score of that call changes."""
    path = convert(tmp_path, lambda x: {"score": tf.reduce_sum(x * x, axis=[1, 2]) + tf.reduce_sum(x),
                                        "kl": tf.reduce_max(x, axis=[1, 2])},
                   tf.TensorSpec((None, 100, 3), tf.float32, name="jets"))
    engine = loaded("tflite", path, opt_batch=4)
    assert engine.buckets == [1, 2, 4]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 100, 3)).astype(np.float32) + 1.0
    engine.run(x)                                  # fills bucket 4
    out = engine.run(x[:3] * 0.5)                  # bucket 4 again: one padded row, where x[3] was
    y = x[:3] * 0.5
    np.testing.assert_allclose(out["score"], (y * y).sum(axis=(1, 2)) + y.sum(), rtol=1e-5)
    np.testing.assert_allclose(out["kl"], y.max(axis=(1, 2)), rtol=1e-6)
    assert engine.counters["padded_jets"] == 1
    engine.close()
    with pytest.raises(ModuleError, match=r"run\(\) before warm_up\(\)"):
        engine.run(x)


def test_unnamed_outputs_are_mapped_with_outputs(tmp_path):
    path = convert(tmp_path, lambda x: [tf.reduce_max(x, axis=[1, 2]), tf.reduce_sum(x, axis=[1, 2])],
                   tf.TensorSpec((None, 100, 3), tf.float32, name="jets"), signature=False)
    with pytest.raises(ModuleError, match=r"^tflite: model .*model.tflite has no output named 'score' and 2 outputs"):
        create_backend("tflite", path).load()
    names = create_backend("tflite", path, BackendOptions(outputs={"score": "Identity_1"})).load().output_names
    engine = loaded("tflite", path, outputs={"score": "Identity_1"})
    x = np.ones((3, 100, 3), np.float32)
    np.testing.assert_allclose(engine.run(x)["score"], [300.0] * 3)
    assert names == ["Identity_1"]


def test_a_fixed_batch_file_is_refused_in_one_line(tmp_path):
    path = convert(tmp_path, per_jet, tf.TensorSpec((4, 100, 3), tf.float32, name="jets"))
    with pytest.raises(ModuleError, match=r"takes a fixed batch of 4 jet\(s\)"):
        create_backend("tflite", path).load()


def test_a_float64_input_is_refused(tmp_path):
    path = convert(tmp_path, lambda x: per_jet(tf.cast(x, tf.float32)),   # TFLite has no float64 arithmetic
                   tf.TensorSpec((None, 100, 3), tf.float64, name="jets"))
    with pytest.raises(ModuleError, match=r"^tflite: model .* input 'jets' is float64, expected float32 \(hltrun feeds float32: .*\)$"):
        create_backend("tflite", path).load()


def test_a_file_that_is_not_a_flatbuffer_is_one_line(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"not a model" * 10)
    with pytest.raises(ModuleError, match=r"^tflite: cannot load model .*junk.tflite: ValueError"):
        create_backend("tflite", path).load()


def test_several_inputs_are_fed_by_name_once_declared(tmp_path):
    """Two inputs of one shape, ``a`` + 2 ``b``: undeclared, one line saying to declare them (until 2026-12-07 TFLite
    refused any model with several: "the tflite backend feeds models with one input"); declared in another order
    than the file's, each fed by its name."""
    from hltrun.modules.contract import parse

    holder = tf.Module()
    holder.fn = tf.function(lambda a, b: {"score": tf.reduce_sum(a, axis=[1, 2]) + 2 * tf.reduce_sum(b, axis=[1, 2])},
                            input_signature=[tf.TensorSpec((None, 100, 3), tf.float32, name="a"),
                                             tf.TensorSpec((None, 100, 3), tf.float32, name="b")])
    path = tmp_path / "two.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([holder.fn.get_concrete_function()], holder)
                     .convert())
    with pytest.raises(ModuleError, match=r"^model .*two.tflite has 2 inputs \['a', 'b'\]; hltrun feeds its shipped "
                                          r"input, .* only: declare the model's inputs"):
        create_backend("tflite", path).load()
    declared = parse([{"name": "b"}, {"name": "a"}], "modules.vae.inputs", "config")
    engine = loaded("tflite", path, inputs=declared)
    a, b = np.ones((3, 100, 3), np.float32), np.full((3, 100, 3), 10.0, np.float32)
    xs = {"a": a, "b": b}
    got = engine.run(tuple(xs[i.name] for i in engine.contract.inputs))["score"]
    np.testing.assert_allclose(got, np.full(3, 300.0 + 2 * 3000.0), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_the_shipped_path_on_tflite_decides_as_on_onnxruntime(tmp_path, model):
    """The whole path, both backends, same events: the same decision and scores for every event."""
    assert_path_decides_as_on_onnxruntime(tmp_path, "tflite", 200, f"modules.vae.model={model}")


def test_the_writer_refuses_a_check_without_cuts_before_it_writes(tmp_path, capsys):
    """``--check`` on a user's ONNX file whose name is no model of thresholds.json: one line, exit 2, nothing written."""
    from hltrun.tools.physics.conv_tflite import main

    mine = tmp_path / "mine.onnx"
    mine.write_bytes((MODELS / "gcn_vae.onnx").read_bytes())
    with pytest.raises(SystemExit) as stopped:
        main(["--out", str(tmp_path / "mine.tflite"), "--keras", str(MODELS / "gcn_vae.keras"), "--model", str(mine),
              "--check"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == ("conv_tflite: --check: thresholds.json has no model 'mine' "
                                               "(it has conv_vae, gcn_vae): give --card")
    assert not (tmp_path / "mine.tflite").exists()


@contextmanager
def hltrun_records() -> Iterator[list]:
    """hltrun's INFO records of the block, from a handler on its logger itself: an in-process CLI run
    earlier in the session stops the logger's propagation, so caplog would see nothing."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("hltrun")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_warm_up_line_gives_the_time_the_timereport_gives():
    """The warm-up line said 'in 0.0 s' where the TimeReport says 'vae 0.01 s' for the same warm-up: both
    give it to 10 ms now."""
    with hltrun_records() as records:
        backend = loaded("tflite", SHIPPED_TFLITE)
    line = next(r.getMessage() for r in records if "prepared and warmed up" in r.getMessage())
    assert line.endswith(f" in {backend.warm_up_s:.2f} s")


def test_auto_times_a_candidate_without_announcing_it():
    """A backend auto only times says nothing at INFO: the log named TFLite 'prepared and warmed up' above
    the table that chose it. The job's own backend still does."""
    from hltrun.modules.inference import autoselect

    candidates = {"onnxruntime": lambda: create_backend("onnxruntime", MODELS / "conv_vae.onnx", BackendOptions()),
                  "tflite": lambda: create_backend("tflite", SHIPPED_TFLITE, BackendOptions())}
    with hltrun_records() as records:
        autoselect.choose(candidates, batch=2, reference="onnxruntime", budget_s=0.2)
    assert not [r for r in records if "prepared and warmed up" in r.getMessage()]
    with hltrun_records() as records:
        loaded("tflite", SHIPPED_TFLITE).close()
    assert [r for r in records if "prepared and warmed up" in r.getMessage()]


def test_the_onnx_declaration_fits_the_tflite_beside_it_whatever_its_input_name(tmp_path):
    """The declaration in the .onnx file's metadata names the ONNX graph's input ('constituents'); the
    .tflite beside it, converted from the same network, names its one input after the converter's function
    ('c'). One declared input fits one model input by position: the .tflite was refused ("has no input
    'constituents' (declared in model metadata); its inputs are ['c']") and ``auto`` never timed it."""
    from onnx import TensorProto, helper, numpy_helper, save

    from hltrun.modules.contract import parse
    from hltrun.tools.declare_inputs import write_contract

    path = convert(tmp_path, lambda c: {"score": tf.reduce_sum(c * c, axis=[1, 2])},
                   tf.TensorSpec((None, 50, 4), tf.float32, name="c"))
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    graph = helper.make_graph([helper.make_node("Mul", ["constituents", "constituents"], ["sq"]),
                               helper.make_node("ReduceSum", ["sq", "axes"], ["score"], keepdims=0)], "m",
                              [helper.make_tensor_value_info("constituents", TensorProto.FLOAT, ["N", 50, 4])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, path.with_suffix(".onnx"))
    declared = parse([{"name": "constituents", "features": ["log_pt_rel", "deta", "dphi", "log_e_rel"],
                       "n_constituents": 50}], "inputs", "model metadata")
    write_contract(path.with_suffix(".onnx"), declared)
    engine = loaded("tflite", path)
    assert engine.contract.origin == "model metadata"
    assert engine.contract.inputs[0].features == ("log_pt_rel", "deta", "dphi", "log_e_rel")
    x = np.full((3, 50, 4), 0.5, np.float32)
    np.testing.assert_allclose(engine.run(x)["score"], [50.0] * 3)
    engine.close()


def several_signatures_file(tmp_path: Path, names: tuple[str, str]) -> Path:
    """A .tflite file of two functions converted together (a SavedModel's serving function beside another, the
    way ``from_concrete_functions`` and ``signature_keys`` write them): ``names[0]`` the network (score = sum of
    squares), ``names[1]`` a function scoring -1 for every jet. The converter sorts signatures by name; the
    first subgraph is the first of them, the one ``invoke()`` runs."""
    def minus_one(x):
        zero = tf.reduce_sum(x, axis=[1, 2]) * 0.0
        return {"score": zero - 1.0, "kl": zero}

    spec = tf.TensorSpec([None, 100, 3], tf.float32, name="jets")
    # methods of a tf.Module class: the converter names each signature after its method
    def method(name, fn):
        def call(self, x):
            return fn(x)
        call.__name__ = name  # the signature's name (two of one name would be one signature)
        return tf.function(call, autograph=False, input_signature=[spec])

    methods = {name: method(name, fn) for name, fn in zip(names, (per_jet, minus_one))}
    holder = type("TwoFunctions", (tf.Module,), methods)()
    functions = [getattr(holder, name).get_concrete_function() for name in names]
    path = tmp_path / f"{'_'.join(names)}.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(functions, holder).convert())
    return path


def test_a_file_of_several_signatures_runs_its_serving_signature_or_is_refused(tmp_path):
    """Until 2026-12-07 the interpreter's first subgraph ran whatever its signature, read by its tensors'
    names ('PartitionedCall:1'): mapping ``outputs`` to them scored another function than the network
    (-1 for every jet here), silently. The serving signature when it is the first subgraph is run, by its
    names; otherwise the file is one line naming its signatures."""
    x = np.ascontiguousarray(shipped_jets(4)[:5], dtype=np.float32)
    served = several_signatures_file(tmp_path, ("serving_default", "validate"))  # sorted: serving_default first
    engine = loaded("tflite", served)
    assert engine.graph.input_names == ("jets",) and sorted(engine.graph.output_names) == ["kl", "score"]
    np.testing.assert_allclose(engine.run(x)["score"], (x.astype(np.float64) ** 2).sum(axis=(1, 2)), rtol=1e-5)
    for names, why in ((("serving_default", "aux"), "its 'serving_default' is not the one the interpreter runs "
                                                     "(the first, 'aux')"),
                       (("score", "calibrate"), "none is 'serving_default'")):
        path = several_signatures_file(tmp_path, names)
        with pytest.raises(ModuleError, match="holds 2 signatures") as err:
            loaded("tflite", path, outputs={"score": "PartitionedCall:1", "kl": "PartitionedCall:0"})
        assert why in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
