"""Networks saved the ways CMSSW's own ML interfaces load them (TorchScript ``.pt``, ``torch.export`` ``.pt2``,
a TensorFlow SavedModel folder), imported into ONNX once (modules/inference/model_import.py); the formats not
imported (legacy Keras ``.h5``, frozen ``.pb``, a ``torch.save`` checkpoint) refused in one line with the command.

Every file is made here with the framework that saves it (torch 2.13, Keras 3 on TensorFlow: the ``test``
extra); a test is skipped, saying why, only where that framework is not installed. Until 2026-12-07 every such
file ended the job with exit 2 and "the onnxruntime backend reads .onnx files and net.onnx does not exist".
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.agreement import shipped_jets

REPO = Path(__file__).resolve().parents[1]
N, F = 100, 3


def _torch():
    return pytest.importorskip("torch", reason="torch (the test extra) is not installed: no TorchScript file to make")


def _tf():
    pytest.importorskip("tf2onnx", reason="tf2onnx (the cpu extra) is not installed: a SavedModel cannot be imported")
    pytest.importorskip("keras", reason="keras (the cpu extra) is not installed: no SavedModel to make")
    return pytest.importorskip("tensorflow", reason="tensorflow (the cpu extra) is not installed")


def _autoencoder(seed: int = 1, sample: bool = False):
    """A small (N, 100, 3) -> score autoencoder; ``sample``: a VAE that draws its latent at inference too
    (z = mu + eps: a common slip, which makes every run score differently)."""
    torch = _torch()

    class AE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            elu, lin = torch.nn.ELU, torch.nn.Linear
            self.pc = torch.nn.Sequential(lin(3, 8), elu(), lin(8, 2), elu())
            self.enc = torch.nn.Sequential(lin(200, 16), elu(), lin(16, 4))
            self.dec = torch.nn.Sequential(lin(4, 16), elu(), lin(16, 300))
            self.sample = sample

        def forward(self, x):
            z = self.enc(self.pc(x).flatten(1))
            if self.sample:
                z = z + torch.randn_like(z)
            rec = self.dec(z).reshape(-1, 100, 3)
            return (x - rec).square().mean(dim=(1, 2))

    torch.manual_seed(seed)
    return AE().eval()


def _save(kind: str, folder: Path, seed: int = 1) -> Path:
    torch = _torch()
    model = _autoencoder(seed)
    if kind == "scripted":
        path = folder / "net.pt"
        torch.jit.script(model).save(str(path))
    elif kind == "traced":
        path = folder / "net.pt"
        torch.jit.trace(model, torch.zeros(2, N, F)).save(str(path))
    else:
        path = folder / "net.pt2"
        ep = torch.export.export(model, (torch.zeros(2, N, F),),
                                 dynamic_shapes=({0: torch.export.Dim("n", min=1, max=65536)},))
        torch.export.save(ep, str(path))
    return path


def _saved_model(folder: Path, seed: int = 1) -> Path:
    _tf()
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((N, F), name="jets")
    h = keras.layers.Conv1D(8, 1, activation="elu")(x)
    h = keras.layers.Flatten()(keras.layers.Conv1D(2, 1, activation="elu")(h))
    z = keras.layers.Dense(4)(keras.layers.Dense(16, activation="elu")(h))
    rec = keras.layers.Reshape((N, F))(keras.layers.Dense(N * F)(keras.layers.Dense(16, activation="elu")(z)))
    model = keras.Model(x, keras.ops.mean(keras.ops.square(x - rec), axis=(1, 2)))
    path = folder / "net_savedmodel"
    model.export(str(path), verbose=False)
    return path


def _hltrun(tmp: Path, model: Path, *extra: str) -> tuple[int, str, dict]:
    """hltrun on the default path with ``model``, 20 events; (exit code, stderr, hltrun.json or {})."""
    from hltrun.framework.cli import main

    report = tmp / "rep"
    code = main([str(REPO / "configs" / "path.yaml"), f"modules.vae.model={model}", "modules.anomalyFilter.threshold=1",
                 "options.maxEvents=20", f"modules.out.file={tmp / 'o.root'}", "--report-dir", str(report), *extra])
    written = report / "hltrun.json"
    return code, "", json.loads(written.read_text()) if written.is_file() else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _imported_from(doc: dict) -> dict:
    return doc["job"]["facts"]["accelerators"]["vae"].get("imported_from") or {}


@pytest.fixture(autouse=True)
def _fresh_imports(monkeypatch, tmp_path):
    """Each test imports into its own cache folder, as a new process would (none of another test's imports)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        from hltrun.modules.inference import model_import
    except ImportError:  # before 2026-12-07: no import at all (the jobs' tests then fail on their exit code)
        return
    monkeypatch.setattr(model_import, "_KNOWN", {})


@pytest.mark.parametrize("kind", ["scripted", "traced", "exported"])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_a_torch_network_file_runs_and_the_report_names_its_origin(kind, backend, tmp_path, capfd):
    """A TorchScript ``.pt`` (scripted or traced) or an ExportedProgram ``.pt2`` runs on the ONNX engines; the
    report says which file it came from, by sha256, and with which converter."""
    torch = _torch()
    model = _save(kind, tmp_path)
    code, _, doc = _hltrun(tmp_path, model, f"modules.vae.backend={backend}")
    err = capfd.readouterr().err
    assert code == 0, err
    origin = _imported_from(doc)
    assert origin["file"] == str(model) and origin["sha256"] == _sha256(model), origin
    assert f"torch {torch.__version__}" in origin["converter"] and origin["max_rel_diff"] <= 1e-5, origin
    assert "imported into ONNX" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["traced", "exported"])
def test_hltcard_on_a_torch_file_by_its_bare_name_makes_the_cut_the_path_reads(kind, tmp_path, monkeypatch, capfd):
    """``hltcard net.pt`` in the model's folder, then ``hltrun ... modules.vae.model=net.pt`` with no threshold: the
    card is the file stem's (``net``, as for ``net.onnx``) beside the model, and the path takes its cut. hltcard
    ended with "internal error: the scorer reads net.pt {} back", its entry written under 'net.pt', and the path
    looked for it in the shipped models' card."""
    from hltrun.framework.cli import main as hltrun
    from hltrun.tools.physics.card import main as hltcard

    model = _save(kind, tmp_path)
    monkeypatch.chdir(tmp_path)
    ort = ["--set", "modules.vae.backend=onnxruntime"]
    assert hltcard([model.name, "--background", str(REPO / "data" / "qcd_dijet.root"), "--bkg-eff", "1e-2",
                    "--max-events", "300", "--min-events-above", "0", "--no-plots", *ort]) == 0, capfd.readouterr().err
    card = json.loads((tmp_path / "thresholds.json").read_text())
    assert list(card) == ["net"] and (tmp_path / "net_card.json").is_file()
    code = hltrun([str(REPO / "configs" / "path.yaml"), f"modules.vae.model={model.name}", "modules.vae.backend=onnxruntime",
                   "options.maxEvents=300", f"modules.out.file={tmp_path / 'o.root'}", "--report-dir", "rep"])
    assert code == 0, capfd.readouterr().err
    doc = json.loads((tmp_path / "rep" / "hltrun.json").read_text())
    assert doc["job"]["module_summaries"]["anomalyFilter"]["threshold"] == card["net"]["bkg_eff_1e-2"]
    assert doc["job"]["facts"]["cuts"]["anomalyFilter"]["model"] == "net"


def test_auto_says_why_tflite_is_not_timed_on_an_imported_network_without_the_cache_file(tmp_path, capfd):
    """``backend: auto`` on a TorchScript file: the reason TFLite was not timed named the import cache's hashed file
    ("tflite has no net-<hash>.tflite beside the model"), a file the user never made; it names the user's file."""
    _torch()
    model = _save("traced", tmp_path)
    code, _, doc = _hltrun(tmp_path, model)
    assert code == 0, capfd.readouterr().err
    reason = doc["job"]["facts"]["accelerators"]["vae"]["reason"]
    assert "tflite reads .tflite files, and net.pt is a TorchScript network" in reason, reason
    assert "net-" not in reason, reason


def test_a_savedmodel_folder_runs_and_the_report_names_its_origin(tmp_path, capfd):
    """A TensorFlow SavedModel folder (``model.export``) is imported with tf2onnx and runs; its sha256 covers
    the folder's files."""
    import tf2onnx

    model = _saved_model(tmp_path)
    code, _, doc = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    assert code == 0, err
    origin = _imported_from(doc)
    from hltrun.modules.inference.model_import import source_digest

    assert origin["format"] == "TensorFlow SavedModel" and origin["sha256"] == source_digest(model)
    assert f"tf2onnx {tf2onnx.__version__}" in origin["converter"], origin


def test_report_html_names_an_imported_networks_original_its_sha256_and_converter(tmp_path, capfd):
    """report.html's inference section gave only the cached ONNX file and its sha256 (the converter's bytes,
    not the network's identity; the line was only in the page's copy of the text report); it now says what
    the JobReport line says: the .pt given, its sha256 and the converter."""
    import html

    model = _save("scripted", tmp_path)
    code, _, doc = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    assert code == 0, capfd.readouterr().err
    origin = _imported_from(doc)
    page = (tmp_path / "rep" / "report.html").read_text()
    section = html.unescape(page.split("<h2>Inference engines and cuts</h2>", 1)[1].split("<h2>", 1)[0])
    said = f"imported into ONNX from {model} (TorchScript, sha256 {_sha256(model)}) with {origin['converter']}"
    assert said in section, section


@pytest.mark.parametrize("kind", ["scripted", "traced", "exported", "savedmodel"])
def test_the_imported_model_scores_real_jets_as_the_native_runtime_does(kind, tmp_path):
    """The ONNX file, on ONNX Runtime through hltrun's backend, against the framework that saved the network, on
    the leading jets of the shipped samples: the same scores within 1e-5 relative."""
    from hltrun.modules.inference import create_backend
    from hltrun.modules.inference.model_import import imported_onnx

    jets = shipped_jets(40)
    if kind == "savedmodel":
        tf = _tf()
        path = _saved_model(tmp_path)
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        native = next(iter(fn(jets=tf.constant(jets)).values())).numpy()
    else:
        torch = _torch()
        path = _save(kind, tmp_path)
        loaded = torch.export.load(str(path)).module() if kind == "exported" else torch.jit.load(str(path))
        with torch.inference_mode():
            native = loaded(torch.from_numpy(jets)).numpy()
    backend = create_backend("onnxruntime", imported_onnx(path, "jets", (N, F))).load()
    got = backend.run(jets)["score"]
    assert len(got) == len(jets) > 100
    rel = np.abs(got - native) / np.abs(native)
    assert rel.max() <= 1e-5, f"max relative difference {rel.max():.2e}"


def test_a_conversion_failure_is_one_line_naming_the_op_and_the_command(tmp_path, capfd):
    """An op ONNX has no form for (``torch.linalg.eigvalsh``): one line naming it and the command to convert by
    hand, exit 4, no traceback, nothing left in the cache."""
    torch = _torch()

    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvalsh(x.transpose(1, 2) @ x).sum(1)

    model = tmp_path / "spectrum.pt"
    torch.jit.script(Spectrum()).save(str(model))
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and len(errors) == 1, err
    assert "aten::linalg_eigvalsh" in errors[0] and f"torch.jit.load('{model}')" in errors[0], errors[0]
    assert "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("*.onnx")) and not list((tmp_path / "cache").rglob("*.tmp"))


def test_an_import_that_disagrees_with_the_native_runtime_is_refused(tmp_path, capfd):
    """A VAE that samples its latent at inference scores differently on every call, natively and in ONNX: the
    probe check refuses it, naming the output and the difference, rather than run a network that is not the
    file's."""
    torch = _torch()
    model = tmp_path / "sampling.pt"
    torch.jit.script(_autoencoder(sample=True)).save(str(model))
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    assert code == 4, err
    assert "disagrees with the native runtime: output 'score' differs by" in err and "Traceback" not in err, err


def test_the_import_is_cached_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    """A second job finds the imported file (no conversion: the exporter is not called); a retrained network
    (same name, other weights) is imported again, and scores as the new one."""
    torch = _torch()
    from hltrun.modules.inference import model_import

    model = _save("scripted", tmp_path, seed=1)
    first = model_import.imported_onnx(model, "jets", (N, F))
    assert first.is_relative_to(tmp_path / "cache" / "hltrun" / "imported")
    monkeypatch.setattr(model_import, "_KNOWN", {})  # a new process

    def no_export(*args, **kwargs):
        raise AssertionError("converted again although the cached import is valid")

    with monkeypatch.context() as m:
        m.setattr(model_import.TorchScriptImporter, "export", no_export)
        assert model_import.imported_onnx(model, "jets", (N, F)) == first
    assert model_import.provenance(first).sha256 == _sha256(model)
    monkeypatch.setattr(model_import, "_KNOWN", {})
    _save("scripted", tmp_path, seed=2)  # retrained: the same file name, other weights
    second = model_import.imported_onnx(model, "jets", (N, F))
    assert second != first and model_import.provenance(second).sha256 == _sha256(model)
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(5, N, F)).astype(np.float32)
    with torch.inference_mode():
        want = torch.jit.load(str(model))(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(second), providers=["CPUExecutionProvider"]).run(None, {"jets": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_hltdiff_calls_one_network_imported_by_two_converters_one_network(tmp_path, monkeypatch, capfd):
    """The same net.pt run before and after a torch upgrade (its version is the import's cache key and is
    written into the ONNX file): two cached files of different sha256. hltdiff said "another file (a retrained
    or re-exported network)"; the original's sha256 is the network's identity, the converter change is said."""
    _torch()
    from hltrun.framework.provenance import differences
    from hltrun.modules.inference import model_import

    model = _save("scripted", tmp_path)
    code, _, old = _hltrun(tmp_path / "old", model, "modules.vae.backend=onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-upgraded"))
    monkeypatch.setattr(model_import, "_KNOWN", {})
    real = model_import.dist_version
    monkeypatch.setattr(model_import, "dist_version", lambda dist: "2.99.0" if dist == "torch" else real(dist))
    code_new, _, new = _hltrun(tmp_path / "new", model, "modules.vae.backend=onnxruntime")
    assert code == code_new == 0, capfd.readouterr().err
    old_vae, new_vae = (doc["job"]["facts"]["accelerators"]["vae"] for doc in (old, new))
    assert old_vae["model_sha256"] != new_vae["model_sha256"]  # two files of the same network
    lines = differences(old["job"]["facts"], new["job"]["facts"])
    assert len(lines) == 1 and "another file" not in lines[0] and "the same network" in lines[0], lines
    assert _sha256(model)[:12] in lines[0] and "torch 2.99.0 (new)" in lines[0], lines


def test_an_import_killed_half_way_leaves_a_temporary_the_next_job_removes(tmp_path, monkeypatch):
    """A job SIGKILLed while it imported net.pt (measured: hltrun killed once ``*.tmp`` appeared in the cache)
    left ``.net-<key>.onnx.<pid>.<thread>.tmp``, as large as the network, in ``~/.cache/hltrun/imported`` for
    ever. The export's temporary names its writer (framework/leftovers.py), so the next job importing into the
    folder removes a gone writer's."""
    _torch()
    import subprocess
    import sys

    from hltrun.framework import leftovers
    from hltrun.modules.inference import model_import

    model = _save("scripted", tmp_path)
    folder = tmp_path / "cache" / "hltrun" / "imported"
    folder.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    name = f".net-0123.onnx.hltrun-{leftovers.machine()}-{gone.pid}-1.abcd1234.tmp"  # a killed import's
    (folder / name).write_bytes(b"half an onnx file")
    os.utime(folder / name, (0, 0))
    monkeypatch.setattr(leftovers, "_swept", set())
    exported: list[Path] = []
    real = model_import.TorchScriptImporter.export

    def export(self, model, path, name, jet_shape, out):  # noqa: ANN001 - the importer's own signature
        exported.append(out)
        return real(self, model, path, name, jet_shape, out)

    monkeypatch.setattr(model_import.TorchScriptImporter, "export", export)
    onnx_file = model_import.imported_onnx(model, "jets", (N, F))
    assert not (folder / name).exists()
    assert [p.name for p in folder.iterdir()] == [onnx_file.name]
    here = f".hltrun-{leftovers.machine()}-{os.getpid()}-{leftovers.start_ticks()}."
    assert len(exported) == 1 and here in exported[0].name and leftovers._NAME.search(exported[0].name)
    mask = os.umask(0o022)
    os.umask(mask)
    assert onnx_file.stat().st_mode & 0o777 == 0o666 & ~mask  # as readable as the user's other files


def test_an_import_without_a_cache_folder_leaves_no_folder_behind(tmp_path):
    """No writable cache (XDG_CACHE_HOME names a file): the import goes to a folder "for this process only",
    which every such job left in /tmp, the network in it. It is removed when the process ends."""
    _torch()
    import subprocess
    import sys

    model = _save("scripted", tmp_path)
    (tmp_path / "not-a-folder").write_bytes(b"")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "hltrun.framework.cli", str(REPO / "configs" / "path.yaml"),
         f"modules.vae.model={model}", "modules.vae.backend=onnxruntime", "modules.anomalyFilter.threshold=1",
         "options.maxEvents=5", f"modules.out.file={tmp_path / 'o.root'}", "--report-dir", str(tmp_path / "rep")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "not-a-folder"), "TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stderr
    assert f"importing into {scratch}" in run.stderr, run.stderr  # the import went to a folder of its own
    assert list(scratch.iterdir()) == []


def test_the_declared_input_is_the_one_imported(tmp_path, capfd):
    """A network reading 50 constituents x 4 features is imported with the input the scorer declares, and
    runs; without the declaration, the shipped (N, 100, 3) is tried and the line says to declare it."""
    torch = _torch()

    class Linear50(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(200, 1)

        def forward(self, x):
            return self.lin(x.flatten(1)).squeeze(1)

    model = tmp_path / "m50.pt"
    torch.jit.script(Linear50().eval()).save(str(model))
    code, _, doc = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime",
                           "modules.vae.inputs=[{name: cands, features: [deta, dphi, pt, log_pt], n_constituents: 50}]")
    err = capfd.readouterr().err
    assert code == 0, err
    assert "cands (N, 50, 4)" in json.dumps(doc), err
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    assert code == 4 and "fails on a batch of 2 jet(s) of shape (100, 3)" in err and "declare the input" in err, err
    assert "Traceback" not in err


_TWO_INPUTS = ("modules.vae.inputs=[{name: cands, features: [deta, dphi, pt], n_constituents: 50},"
               " {name: scale, kind: jet, features: [log_pt]}]")


def _two_input_network(path: Path) -> Path:
    """A TorchScript network of two inputs, as a physicist adds a per-jet value beside the constituents:
    (N, 50, 3) and (N, 1)."""
    torch = _torch()

    class WithScale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(150, 1)

        def forward(self, cands, scale):
            return (self.lin(cands.flatten(1)) * scale).squeeze(1)

    torch.manual_seed(3)
    torch.jit.trace(WithScale().eval(), (torch.zeros(2, 50, 3), torch.ones(2, 1))).save(str(path))
    return path


def test_a_network_of_two_inputs_gets_the_command_that_converts_it(tmp_path, capfd):
    """A TorchScript file of two declared inputs is not imported; the line's command converts it: run as given,
    its ONNX file runs in the path with the same declaration. It fed one tensor of shape (2,) named 'jets'
    (``torch.zeros(2)``), which torch's exporter refused (``input_values.size() == param_count_list.size()
    INTERNAL ASSERT FAILED``): a dead end."""
    torch = _torch()
    model = _two_input_network(tmp_path / "scaled.pt")
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime", _TWO_INPUTS)
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and len(errors) == 1 and "2 inputs declared" in errors[0], err
    command = errors[0].split("convert it by hand (", 1)[1].rsplit(") and run the .onnx file", 1)[0]
    exec(command, {"torch": torch})  # the user's copy and paste
    converted = model.with_suffix(".onnx")
    assert converted.is_file(), command
    code, _, doc = _hltrun(tmp_path, converted, "modules.vae.backend=onnxruntime", _TWO_INPUTS)
    err = capfd.readouterr().err
    assert code == 0 and doc["job"]["events_processed"] == 20, err


def test_a_missing_network_of_two_inputs_is_said_to_be_missing(tmp_path, capfd):
    """A ``.pt`` that is not there is "not found" whatever its declared inputs: with two it was refused as a
    network of two inputs, with the command to convert the file the user does not have."""
    code, _, _ = _hltrun(tmp_path, tmp_path / "typo.pt", "modules.vae.backend=onnxruntime", _TWO_INPUTS)
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and errors == [f"hltrun: error: modules.vae: model file not found: {tmp_path / 'typo.pt'}"], err


def _h5(folder: Path) -> Path:
    _tf()
    import keras

    x = keras.Input((N, F))
    path = folder / "legacy.h5"
    keras.Model(x, keras.layers.Dense(1)(keras.layers.Flatten()(x))).save(str(path))
    return path


def _frozen_pb(folder: Path) -> Path:
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    w = tf.Variable(tf.ones((N * F, 1)))
    fn = tf.function(lambda t: tf.reshape(tf.reshape(t, (-1, N * F)) @ w, (-1,)))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((None, N, F), tf.float32)))
    tf.io.write_graph(frozen.graph.as_graph_def(), str(folder), "frozen.pb", as_text=False)
    return folder / "frozen.pb"


def _checkpoint(folder: Path) -> Path:
    torch = _torch()
    path = folder / "weights.pt"
    torch.save(_autoencoder().state_dict(), str(path))
    return path


@pytest.mark.parametrize("make, says", [
    (_h5, ".export('legacy_savedmodel')"),
    (_frozen_pb, "python -m tf2onnx.convert --graphdef"),
    (_checkpoint, "torch.jit.script(model).save("),
], ids=["keras-h5", "frozen-pb", "torch-save"])
def test_a_format_not_imported_is_one_line_with_the_command(make, says, tmp_path, capfd):
    model = make(tmp_path)
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and len(errors) == 1, err
    assert str(model) in errors[0] and says in errors[0] and "Traceback" not in err, errors[0]


def _cut_short(folder: Path) -> Path:
    """A TorchScript file copied half-way (an interrupted scp): no zip file any more."""
    whole = _save("scripted", folder)
    path = folder / "cut.pt"
    path.write_bytes(whole.read_bytes()[:20_000])
    return path


def _legacy_checkpoint(folder: Path) -> Path:
    torch = _torch()
    path = folder / "legacy.pt"
    torch.save(_autoencoder().state_dict(), str(path), _use_new_zipfile_serialization=False)  # a bare pickle
    return path


@pytest.mark.parametrize("make, says", [
    (lambda folder: (folder / "empty.pt").write_bytes(b"") or folder / "empty.pt", "empty.pt is empty: "),
    (_cut_short, "cut.pt is no TorchScript archive (no zip file: a copy cut short, or another format): "),
    (_legacy_checkpoint, "legacy.pt is a PyTorch checkpoint (torch.save"),
    (_checkpoint, "weights.pt is a PyTorch checkpoint (torch.save"),
], ids=["empty", "cut-short", "legacy-torch-save", "torch-save"])
def test_a_pt_file_that_is_no_torchscript_is_named_for_what_it_is(make, says, tmp_path, capfd):
    """An empty .pt and a TorchScript file copied half-way were both "a PyTorch checkpoint (torch.save: a pickled
    module or state_dict)": the wrong culprit, sending the user to re-save a network they had saved right."""
    model = make(tmp_path)
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and len(errors) == 1 and "Traceback" not in err, err
    assert says in errors[0], errors[0]


def _pt2_cut_short(folder: Path) -> Path:
    """A torch.export archive copied half-way: no zip file any more."""
    whole = _save("exported", folder)
    path = folder / "cut.pt2"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def _pt2_checkpoint(folder: Path) -> Path:
    torch = _torch()
    path = folder / "weights.pt2"
    torch.save(_autoencoder().state_dict(), str(path))
    return path


def _pt2_other_zip(folder: Path) -> Path:
    import zipfile

    path = folder / "other.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other/notes.txt", "not a network")
    return path


@pytest.mark.parametrize("make, says", [
    (_pt2_cut_short, "cut.pt2 is no torch.export archive (no zip file: a copy cut short, or another format): "),
    (_pt2_checkpoint, "weights.pt2 is a PyTorch checkpoint (torch.save"),
    (_pt2_other_zip, "other.pt2 is a zip archive that torch "),
], ids=["cut-short", "torch-save", "other-zip"])
def test_a_pt2_file_that_is_no_exported_program_is_one_line_without_torchs_traceback(make, says, tmp_path, capfd):
    """torch.export.load logs a traceback at WARNING for a file that is no archive of its format, then raises
    "check the warnings above": a .pt2 copied half-way printed a page of torch's internals before the line."""
    model = make(tmp_path)
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=onnxruntime")
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 4 and len(errors) == 1 and "Traceback" not in err, err
    assert says in errors[0] and "warnings above" not in errors[0], errors[0]
    assert err.strip() == errors[0], err  # nothing else on stderr


def test_the_tensorflow_backend_on_an_imported_format_names_the_engines_that_run_it(tmp_path, capfd):
    model = _save("scripted", tmp_path)
    code, _, _ = _hltrun(tmp_path, model, "modules.vae.backend=tensorflow")
    err = capfd.readouterr().err
    assert code == 2 and "is a TorchScript network" in err and "use backend: onnxruntime" in err, err


def test_the_verdict_gives_the_command_that_converts_a_native_file(tmp_path, capfd):
    """``hltbench verdict`` times ONNX files: on a TorchScript file it said "hltrun reads .onnx ... files, not
    .pt" (a dead end); the line now gives the command that converts it, exit 2, before anything runs."""
    from hltrun.tools.bench.cli import main as hltbench

    model = _save("scripted", tmp_path)
    code = hltbench(["verdict", str(model), "--out-dir", str(tmp_path / "v")])
    err = capfd.readouterr().err
    assert code == 2 and "is a TorchScript network" in err and f"torch.jit.load('{model}')" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorflow"])
@pytest.mark.parametrize("threshold", [True, False], ids=["threshold", "card-cut"])
def test_a_folder_without_saved_model_pb_is_named_no_savedmodel(backend, threshold, tmp_path, capfd):
    """A folder holding no saved_model.pb (a SavedModel's parent, an unfinished export) was "the onnxruntime
    backend reads .onnx files and <folder>.onnx does not exist" (or, with no cut given, the card's missing cut
    for the folder's name): a file the user never meant. The line says the folder is no SavedModel."""
    folder = tmp_path / "my_model"
    (folder / "variables").mkdir(parents=True)
    from hltrun.framework.cli import main

    code = main([str(REPO / "configs" / "path.yaml"), f"modules.vae.model={folder}", f"modules.vae.backend={backend}",
                 "options.maxEvents=20", f"modules.out.file={tmp_path / 'o.root'}", "-q",
                 *(["modules.anomalyFilter.threshold=1"] if threshold else [])])
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"model {folder} is a folder without saved_model.pb, so not a SavedModel" in errors[0], errors[0]
    assert ".onnx" in errors[0] and "SavedModel folder" in errors[0] and "my_model.onnx" not in errors[0], errors[0]


def test_a_folder_named_as_a_shipped_model_in_the_working_directory_leaves_the_model_shipped(
        tmp_path, monkeypatch, capfd):
    """``model: conv_vae`` (the shipped model's name) run from a folder holding a ``conv_vae/`` folder (a
    training run's output, say) without saved_model.pb: the job ran the shipped model before the check for
    a folder that is no SavedModel, which then refused it (exit 2). The bare name stays the shipped model's."""
    (tmp_path / "conv_vae" / "variables").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    from hltrun.framework.cli import main

    code = main([str(REPO / "configs" / "path.yaml"), "modules.vae.backend=onnxruntime", "options.maxEvents=20",
                 f"modules.out.file={tmp_path / 'o.root'}", "-q"])
    err = capfd.readouterr().err
    assert code == 0 and "hltrun: error" not in err, err
