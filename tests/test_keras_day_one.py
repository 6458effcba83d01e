"""A Keras user's own ``.keras`` file on ``backend: tensorflow`` (modules/inference/tensorflow_backend.py): what it
is fed, what is refused in one line, and scores equal to the same model run by Keras itself.

Keras casts what it is fed to each ``keras.Input``'s dtype without a word: an int32 or bool input of features ran
with hltrun's float32 values truncated or turned into ones, and a ``.keras`` file that was no zip archive (a Git
LFS pointer, a copy cut short) was "File not found" for a file that is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")

from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.contract import parse  # noqa: E402
from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402

P = 8  # constituents per jet
DECLARED = parse([{"name": "points", "features": ["deta", "dphi"], "n_constituents": P},
                  {"name": "features", "features": ["log_pt_rel", "log_e_rel"], "n_constituents": P},
                  {"name": "mask", "features": ["mask"], "n_constituents": P}], "modules.vae.inputs", "test")


def one_input(path: Path, dtype: str) -> Path:
    """(N, 100, 3) of ``dtype``, score: the sum of the values (as float32), so a cast that changes them shows."""
    import keras

    x = keras.Input((100, 3), dtype=dtype, name="jets")
    keras.Model(x, keras.ops.sum(keras.ops.cast(x, "float32"), axis=(1, 2))).save(path)
    return path


def three_inputs(path: Path, dtypes: dict[str, str]) -> Path:
    """ParticleNet's points, features and mask, each of its dtype (float32 unless given); score: a masked sum."""
    import keras

    given = [keras.Input((P, f), dtype=dtypes.get(n, "float32"), name=n)
             for n, f in (("points", 2), ("features", 2), ("mask", 1))]
    points, features, mask = (keras.ops.cast(t, "float32") for t in given)
    score = keras.ops.sum((points * 3.0 + features) * mask, axis=(1, 2))
    keras.Model(given, score).save(path)
    return path


def inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-integer points and features, a 0/1 mask with padded rows."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(P)[None, :, None] < rng.integers(1, P + 1, (n, 1, 1))).astype(np.float32)
    return (rng.normal(0, 0.4, (n, P, 2)).astype(np.float32) * mask,
            rng.normal(0, 3.0, (n, P, 2)).astype(np.float32) * mask, mask)


@pytest.mark.parametrize("dtype, how", [("int32", "truncating them to whole numbers"),
                                        ("int64", "truncating them to whole numbers"),
                                        ("bool", "turning every non-zero value into 1"),
                                        ("float16", "rounding them to 11 significant bits")])
def test_an_input_of_features_that_the_cast_changes_is_refused_naming_it(tmp_path, dtype, how):
    """Fed anyway, int32 scored a jet -16 where its values sum to -32.2, and bool scored every jet 300."""
    model = one_input(tmp_path / f"{dtype}.keras", dtype)
    with pytest.raises(ModuleError, match=rf"^tensorflow: model .*{dtype}.keras input 'jets' is {dtype}: Keras would "
                                          rf"cast hltrun's float32 values \['deta', 'dphi', 'pt'\] to it, {how}"):
        create_backend("tensorflow", model).load()


@pytest.mark.parametrize("mode", ["function", "eager", "predict"])
def test_a_float64_input_runs_on_the_values_exactly(tmp_path, mode):
    model = one_input(tmp_path / "f64.keras", "float64")
    x = np.random.default_rng(1).normal(0, 30, (5, 100, 3)).astype(np.float32)
    got = create_backend("tensorflow", model, BackendOptions(mode=mode)).load().run(x)["score"]
    np.testing.assert_allclose(got, x.astype(np.float64).sum(axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool", "float16"])
@pytest.mark.parametrize("mode", ["function", "eager", "predict"])
def test_a_mask_of_another_dtype_is_fed_exactly(tmp_path, dtype, mode):
    """A 0/1 mask is exact as an integer, a bool or a half: ParticleNet's Keras mask is often one; the scores are
    the Keras model's own on the same values (points and features not whole numbers: a cast of them would show)."""
    import keras

    path = three_inputs(tmp_path / "pn.keras", {"mask": dtype})
    backend = create_backend("tensorflow", path, BackendOptions(mode=mode, inputs=DECLARED)).load()
    backend.warm_up()
    for n, seed in ((1, 0), (7, 1), (2, 2)):
        points, features, mask = inputs(n, seed)
        got = backend.run((points, features, mask))["score"]
        own = keras.saving.load_model(path, compile=False)([points, features, mask.astype(dtype)])
        np.testing.assert_allclose(got, np.asarray(own), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, ((points * 3.0 + features) * mask).sum(axis=(1, 2)), rtol=1e-5, atol=1e-5)


def test_an_integer_input_of_features_beside_a_mask_is_refused_naming_that_input(tmp_path):
    path = three_inputs(tmp_path / "pn.keras", {"features": "int32", "mask": "int32"})
    with pytest.raises(ModuleError, match=r"input 'features' is int32: Keras would cast hltrun's float32 values "
                                          r"\['log_pt_rel', 'log_e_rel'\] to it"):
        create_backend("tensorflow", path, BackendOptions(inputs=DECLARED)).load()


def test_a_mask_declared_among_other_features_of_an_integer_input_is_refused(tmp_path):
    """One (N, P, 3) input [deta, dphi, mask] as int32: the mask would be exact, deta and dphi are not."""
    import keras

    x = keras.Input((P, 3), dtype="int32", name="jets")
    keras.Model(x, keras.ops.sum(keras.ops.cast(x, "float32"), axis=(1, 2))).save(tmp_path / "m.keras")
    declared = parse([{"features": ["deta", "dphi", "mask"], "n_constituents": P}], "modules.vae.inputs", "test")
    with pytest.raises(ModuleError, match=r"input 'jets' is int32: .* values \['deta', 'dphi'\] to it"):
        create_backend("tensorflow", tmp_path / "m.keras", BackendOptions(inputs=declared)).load()


@pytest.mark.parametrize("content, said", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n", r"is a Git LFS pointer, not the model: "
                                                                          r"fetch it \(git lfs pull\)$"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), r"is an HDF5 file \(Keras' legacy .h5 format\) under a .keras name"),
    (b"PK\x03\x04" + bytes(100), r"is cut short \(104 bytes, a zip archive's start but not its end\)"),
    (b"hello\n", r"is not the zip archive Keras saves"),
], ids=["lfs-pointer", "hdf5", "cut-short", "other"])
def test_a_keras_file_that_is_no_zip_archive_says_what_it_is(tmp_path, content, said):
    """Keras' own words: "File not found: filepath=...", for a file that is there."""
    (tmp_path / "m.keras").write_bytes(content)
    with pytest.raises(ModuleError, match=rf"^tensorflow: cannot load model .*m.keras: it {said}"):
        create_backend("tensorflow", tmp_path / "m.keras").load()


def test_an_adapted_normalization_layer_scores_as_keras_does(tmp_path):
    """A Functional model with a Normalization layer adapted on data (its mean and variance are weights of the file)."""
    import keras

    x = np.random.default_rng(2).normal(0, 1, (32, 100, 3)).astype(np.float32) * np.float32([0.3, 0.3, 50])
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(x)
    given = keras.Input((100, 3), name="jets")
    h = keras.layers.Dense(4)(keras.layers.Flatten()(norm(given)))
    keras.Model(given, keras.ops.mean(keras.ops.square(h), axis=-1)).save(tmp_path / "norm.keras")
    own = keras.saving.load_model(tmp_path / "norm.keras", compile=False)
    for mode in ("function", "eager", "predict"):
        got = create_backend("tensorflow", tmp_path / "norm.keras", BackendOptions(mode=mode)).load().run(x[:5])
        np.testing.assert_allclose(got["score"], np.asarray(own(x[:5])), rtol=1e-6)


def test_a_lambda_layer_of_a_python_lambda_is_one_line_with_a_way_on_hltrun_has(tmp_path):
    """Keras' line told the user to pass ``safe_mode=False`` "to the loading function", which hltrun's user cannot."""
    import keras

    given = keras.Input((100, 3), name="jets")
    h = keras.layers.Lambda(lambda t: t * 2.0)(given)
    keras.Model(given, keras.ops.mean(h, axis=(1, 2))).save(tmp_path / "lam.keras")
    with pytest.raises(ModuleError, match=r"^tensorflow: model .*lam.keras has a Lambda layer of a Python lambda, which "
                                          r"Keras loads only with safe_mode=False .*: write it with keras.ops in the "
                                          r"model itself and save again, or export it to ONNX") as err:
        create_backend("tensorflow", tmp_path / "lam.keras").load()
    assert "\n" not in str(err.value) and "loading function" not in str(err.value)


@pytest.mark.parametrize("kind", ["layer", "subclassed model"])
def test_a_class_registered_in_the_users_code_is_named_in_one_line(tmp_path, kind):
    """``register_keras_serializable`` registers in the process that trained; hltrun's is another."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import keras
        @keras.saving.register_keras_serializable(package="mine")
        class Twice(keras.layers.Layer):
            def call(self, a):
                return a * 2.0
        @keras.saving.register_keras_serializable(package="mine")
        class Net(keras.Model):
            def __init__(self, **kw):
                super().__init__(**kw)
                self.d = keras.layers.Dense(1)
            def call(self, a):
                return keras.ops.mean(self.d(a), axis=(1, 2))
        if {kind == "layer"!r}:
            given = keras.Input((100, 3), name="jets")
            keras.Model(given, keras.ops.mean(Twice()(given), axis=(1, 2))).save({str(tmp_path / "m.keras")!r})
        else:
            net = Net()
            net(keras.ops.zeros((1, 100, 3)))
            net.save({str(tmp_path / "m.keras")!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    with pytest.raises(ModuleError, match=rf"^tensorflow: model .*m.keras uses the custom Keras class "
                                          rf"'{'Twice' if kind == 'layer' else 'Net'}', .*export it to ONNX"):
        create_backend("tensorflow", tmp_path / "m.keras").load()


def branch_input(path: Path, dtype: str) -> Path:
    """One (N, P, 1) input of a file branch (a charge, a pdgId) of ``dtype``; score: the sum of its values."""
    import keras

    x = keras.Input((P, 1), dtype=dtype, name="pid")
    keras.Model(x, keras.ops.sum(keras.ops.cast(x, "float32"), axis=(1, 2))).save(path)
    return path


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_a_file_branch_in_an_integer_input_runs_while_its_values_survive_the_cast(tmp_path, dtype):
    """A particle-ID embedding reads an integer branch: whole values run exactly (as before the dtype check); a
    value the cast would change is one line at that call, naming the input and the branch (until 2026-12-07 it ran
    truncated: 2.5 scored as 2)."""
    declared = parse([{"name": "pid", "features": ["FatJetPFCand_charge"], "n_constituents": P}],
                     "modules.vae.inputs", "test")
    backend = create_backend("tensorflow", branch_input(tmp_path / "pid.keras", dtype),
                             BackendOptions(inputs=declared)).load()
    backend.warm_up()
    whole = np.random.default_rng(3).integers(0 if dtype == "bool" else -1, 2, (4, P, 1)).astype(np.float32)
    np.testing.assert_array_equal(backend.run(whole)["score"], whole.sum(axis=(1, 2)))
    off = whole.copy()
    off[2, 3, 0] = 2.5
    with pytest.raises(ModuleError, match=rf"^tensorflow: model .*pid.keras input 'pid' is {dtype}, and Keras would "
                                          rf"change hltrun's float32 values of \['FatJetPFCand_charge'\] in the cast "
                                          rf"to it \(2.5 became "):
        backend.run(off)


def test_a_file_branch_beside_other_inputs_is_checked_by_its_input_name(tmp_path):
    import keras

    given = [keras.Input((P, 2), name="points"), keras.Input((P, 1), dtype="int32", name="pid"),
             keras.Input((P, 1), dtype="bool", name="mask")]
    points, pid, mask = (keras.ops.cast(t, "float32") for t in given)
    keras.Model(given, keras.ops.sum((points + pid) * mask, axis=(1, 2))).save(tmp_path / "m.keras")
    declared = parse([{"name": "points", "features": ["deta", "dphi"], "n_constituents": P},
                      {"name": "pid", "features": ["FatJetPFCand_pdgId"], "n_constituents": P},
                      {"name": "mask", "features": ["mask"], "n_constituents": P}], "modules.vae.inputs", "test")
    backend = create_backend("tensorflow", tmp_path / "m.keras", BackendOptions(inputs=declared)).load()
    points, _, mask = inputs(3, 4)
    pid = np.float32([211, -211, 22, 130, 2112, 11, -13, 321])[None, :, None] * mask
    got = backend.run((points, pid, mask))["score"]
    np.testing.assert_allclose(got, ((points + pid) * mask).sum(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ModuleError, match=r"input 'pid' is int32, .* of \['FatJetPFCand_pdgId'\]"):
        backend.run((points, pid + np.float32(0.5) * mask, mask))


@pytest.mark.parametrize("declared", [
    {"name": "npv", "kind": "event", "features": ["PV_npvs"]},
    {"name": "npv", "kind": "jet", "features": ["PV_npvs"], "per_event": ["PV_npvs"]},
], ids=["kind-event", "jet-per-event"])
def test_a_per_event_branch_in_an_integer_input_runs_while_its_values_survive_the_cast(tmp_path, declared):
    """A vertex count read per event into an int32 input (an embedding's index) is a file branch as a constituent's
    charge is: it runs on its whole values and a value the cast would change is one line at that call (until
    2026-12-07 it was refused at load: "Keras would cast hltrun's float32 values ['PV_npvs'] to it, truncating them",
    a branch the message itself allowed)."""
    import keras

    given = [keras.Input((P, 2), name="points"), keras.Input((1,), dtype="int32", name="npv")]
    table = keras.layers.Embedding(100, 1, embeddings_initializer=keras.initializers.Constant(0.0))
    embedded = keras.layers.Flatten()(table(given[1]))
    keras.Model(given, keras.ops.sum(given[0], axis=(1, 2)) + keras.ops.sum(embedded, axis=1)).save(tmp_path / "m.keras")
    model = keras.saving.load_model(tmp_path / "m.keras")
    model.layers[[type(layer).__name__ for layer in model.layers].index("Embedding")].set_weights(
        [np.arange(100, dtype=np.float32)[:, None] * np.float32(0.5)])  # row k: 0.5 k, so each count shows
    model.save(tmp_path / "m.keras")
    contract = parse([{"name": "points", "features": ["deta", "dphi"], "n_constituents": P}, declared],
                     "modules.vae.inputs", "test")
    backend = create_backend("tensorflow", tmp_path / "m.keras", BackendOptions(inputs=contract)).load()
    points = inputs(4, 5)[0]
    npv = np.float32([[12], [40], [0], [63]])
    got = backend.run((points, npv))["score"]
    np.testing.assert_allclose(got, points.sum(axis=(1, 2)) + 0.5 * npv[:, 0], rtol=1e-6)
    with pytest.raises(ModuleError, match=r"input 'npv' is int32, and Keras would change hltrun's float32 values of "
                                          r"\['PV_npvs'\] in the cast to it \(40.5 became 40\)"):
        backend.run((points, npv + np.float32([[0], [0.5], [0], [0]])))
