"""The walkthrough of docs/your-model.md ("Walkthrough: your Keras (or PyTorch) model ..."), run as written.

The test reads that section of the page: the fenced blocks whose first line names a ``walk/`` file are
written to that file (the export scripts, the declaration), and every ``$`` command is run, in order, in
a temporary folder that holds the repository's ``configs/`` and ``data/`` (as the repository root does for
the reader): ``python`` in a subprocess, ``hltinputs``/``hltcard``/``hltbench``/``hltrun`` through their
console scripts' ``main(argv)``. The one change: the verdict runs with ``--engines onnxruntime`` (the
other engines' compilation takes a minute). It runs for the Keras model, and for the PyTorch one (the
same commands on ``walk/my_torch.onnx``) where torch is installed.

Then every decision is checked against an independent computation: the features written out here from
the ROOT files with uproot + numpy (data/README.md's layout, not hltrun's code), from what the page's
training scripts say the model reads (``FEATURES`` below, not the declaration the commands stored), and
the model run with ONNX Runtime directly. A wrong declaration in the page (features swapped, another
padding) therefore fails here.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("matplotlib", reason="matplotlib (extra 'cpu') not installed")  # hltcard's plots
import uproot  # noqa: E402
from tests.independent import leading_jets, longhand_cut  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "your-model.md"
HEADING = "## Walkthrough: "
# what the page's training scripts feed the network (their comment "per jet: ..."), written here again
FEATURES = ("log_pt_rel", "deta", "dphi", "log_e_rel")
N_CONSTITUENTS, PAD = 50, 0.0
BACKGROUND, SIGNAL = REPO / "data" / "qcd_dijet.root", REPO / "data" / "rsg_ww_3p5TeV.root"
PATH_FILES = (BACKGROUND, SIGNAL)  # configs/path.yaml's source.files, in order
VERDICT_ENGINES = ["--engines", "onnxruntime"]
CUT = "bkg_eff_1e-2"  # configs/path.yaml: background_efficiency "1e-2"


# ---------------------------------------------------------------------- the page
@dataclass
class Step:
    command: str  # as shown after "$ "
    shown: str  # the output the page shows under it
    exit_code: int  # 0, or the code the page shows with `|| echo "exit code $?"`


def walkthrough(text: str | None = None) -> tuple[dict[str, str], list[Step]]:
    """The section's files (name -> text) and its commands, in order."""
    text = DOC.read_text() if text is None else text
    start = text.index("\n" + HEADING)
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    files: dict[str, str] = {}
    steps: list[Step] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.M | re.S):
        named = re.match(r"#\s*(walk/[\w.]+)", body)
        if lang != "console" and named:
            files[named.group(1)] = body
        elif lang == "console":
            for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
                command, _, shown = chunk.partition("\n")
                code = 0
                failing = re.fullmatch(r'(.*?) \|\| echo "exit code \$\?"', command)
                if failing:
                    command = failing.group(1)
                    code = int(re.findall(r"^exit code (\d+)$", shown, flags=re.M)[-1])
                    shown = re.sub(r"^exit code \d+\n?", "", shown, flags=re.M)
                steps.append(Step(command, shown, code))
    return files, steps


def steps_for(flavour: str, steps: list[Step]) -> list[Step]:
    """The Keras model's commands as shown (the PyTorch export left out); for ``torch`` the same
    commands on walk/my_torch.onnx (export_keras -> export_torch)."""
    out: list[Step] = []
    for s in steps:
        if flavour == "keras" and "torch" in s.command:
            continue
        step = Step(s.command.replace("keras", flavour), s.shown.replace("keras", flavour), s.exit_code)
        if step.command not in [o.command for o in out]:
            out.append(step)
    return out


def console(name: str):
    if name == "hltinputs":
        from hltrun.tools.declare_inputs import main
    elif name == "hltcard":
        from hltrun.tools.physics.card import main
    elif name == "hltbench":
        from hltrun.tools.bench.cli import main
    elif name == "hltrun":
        from hltrun.framework.cli import main
    else:
        raise AssertionError(f"the walkthrough runs {name}: this test does not know that command")
    return main


def run_step(step: Step) -> tuple[int, str]:
    """One command in the current folder: its exit code and what it printed (stdout then stderr)."""
    argv = shlex.split(step.command)
    if argv[0] == "python":
        proc = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        return proc.returncode, proc.stdout + proc.stderr
    args = argv[1:]
    if argv[:2] == ["hltbench", "verdict"] and "--engines" not in args:
        args += VERDICT_ENGINES
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = console(argv[0])(args)
    return rc, out.getvalue() + err.getvalue()


# ---------------------------------------------------------------------- running it
@dataclass
class Walked:
    flavour: str
    folder: Path
    model: Path
    outputs: dict[str, str]  # command -> what it printed


@pytest.fixture(scope="module", params=["keras", "torch"])
def walked(request, tmp_path_factory) -> Walked:
    flavour = request.param
    if flavour == "torch":
        pytest.importorskip("torch", reason="torch not installed: the PyTorch half of the walkthrough is skipped")
    else:
        pytest.importorskip("tf2onnx", reason="tf2onnx (extra 'tf') not installed")
    folder = tmp_path_factory.mktemp(f"walk_{flavour}")
    for name in ("configs", "data"):
        (folder / name).symlink_to(REPO / name)
    files, steps = walkthrough()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    outputs: dict[str, str] = {}
    here = Path.cwd()
    os.chdir(folder)
    try:
        for step in steps_for(flavour, steps):
            rc, printed = run_step(step)
            outputs[step.command] = printed
            assert rc == step.exit_code, f"$ {step.command}\nexit {rc}, the page says {step.exit_code}\n{printed[-3000:]}"
    finally:
        os.chdir(here)
    dump = os.environ.get("HLTRUN_WALKTHROUGH_DUMP")  # the real outputs, to paste into the page
    if dump:
        Path(dump).write_text("".join(f"$ {c}\n{o}\n" for c, o in outputs.items()))
    return Walked(flavour, folder, folder / "walk" / f"my_{flavour}.onnx", outputs)


# ---------------------------------------------------------------------- the independent computation
def features(jet: dict, names=FEATURES, n: int = N_CONSTITUENTS, pad: float = PAD) -> np.ndarray:
    """(n, F) float32: the jet's leading ``n`` constituents, each feature written out, padded with ``pad``."""
    c = {k: v[:n] for k, v in jet["c"].items()}
    energy = c["pt"] * np.cosh(c["eta"])
    jet_energy = np.hypot(jet["pt"] * np.cosh(jet["eta"]), jet["mass"])
    column = {"log_pt_rel": np.log(c["pt"] / jet["pt"]), "deta": c["eta"] - jet["eta"],
              "dphi": (c["phi"] - jet["phi"] + np.pi) % (2 * np.pi) - np.pi,
              "log_e_rel": np.log(energy / jet_energy)}
    rows = np.full((n, len(names)), pad)
    for k, name in enumerate(names):
        rows[:len(c["pt"]), k] = column[name]
    return rows.astype(np.float32)


def independent_scores(model: Path, file: Path) -> dict[tuple[int, int, int], np.ndarray]:
    """Event id -> the scores of its leading jets, the model run by ONNX Runtime on ``features``."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    events = leading_jets(file)
    x = np.stack([features(j) for _, jets in events for j in jets])
    flat = session.run(None, {name: x})[0].reshape(-1)
    out, k = {}, 0
    for key, jets in events:
        out[key] = flat[k:k + len(jets)].astype(np.float64)
        k += len(jets)
    return out


def event_max(scores: np.ndarray) -> float:
    return float(np.max(scores)) if len(scores) else -np.inf


@pytest.fixture(scope="module")
def reference(walked) -> dict[Path, dict[tuple[int, int, int], np.ndarray]]:
    return {f: independent_scores(walked.model, f) for f in PATH_FILES}


def card_cuts(walked: Walked) -> dict:
    return json.loads((walked.model.parent / "thresholds.json").read_text())[walked.model.stem]


def written(path: Path) -> dict[tuple[int, int, int], tuple[bool, np.ndarray]]:
    """Event id -> (HLT_AnomalyDetection, vae_score) of an hltrun output file."""
    with uproot.open(path) as f:
        a = f["Events"].arrays(["run", "luminosityBlock", "event", "HLT_AnomalyDetection", "vae_score"],
                               library="np")
    return {(int(r), int(lb), int(e)): (bool(d), np.asarray(s, np.float64))
            for r, lb, e, d, s in zip(a["run"], a["luminosityBlock"], a["event"], a["HLT_AnomalyDetection"],
                                      a["vae_score"])}


# ---------------------------------------------------------------------- the checks
def test_the_declaration_is_in_the_model_and_the_page_shows_hltinputs_output(walked) -> None:
    from hltrun.modules.contract import from_metadata, read_onnx_metadata

    contract = from_metadata(read_onnx_metadata(walked.model), walked.model)
    (decl,) = contract.inputs
    assert (decl.name, decl.kind, tuple(decl.features), decl.n_constituents, decl.pad_value, decl.order,
            decl.layout) == ("constituents", "constituents", FEATURES, N_CONSTITUENTS, PAD, "pt", "NCF")
    for step in steps_for(walked.flavour, walkthrough()[1]):
        if step.command.startswith("hltinputs"):  # no path or clock in its output: the page shows it verbatim
            assert walked.outputs[step.command].strip() == step.shown.strip(), step.command


def test_the_card_cuts_are_the_weighted_quantile_of_independent_scores(walked, reference) -> None:
    with uproot.open(BACKGROUND) as f:  # every event weighs 1 (a regenerated sample carries genWeight = 1)
        events = f["Events"]
        assert "genWeight" not in events.keys() or np.all(events["genWeight"].array(library="np") == 1.0)
    bkg = reference[BACKGROUND]
    event = np.array([event_max(s) for s in bkg.values()])
    jets = np.concatenate(list(bkg.values()))
    cuts = card_cuts(walked)
    for key, scores in ((CUT, event), (f"jet_{CUT}", jets)):
        want = longhand_cut(scores, np.ones(len(scores)), 1e-2)
        assert cuts[key] == pytest.approx(want, rel=1e-4), key
        assert np.array_equal(scores > cuts[key], scores > want), key  # the same background events pass
        assert (scores > want).sum() == int(1e-2 * len(scores)), key


def test_every_decision_of_the_path_is_the_independent_one(walked, reference) -> None:
    """Both hltrun outputs of step 5: the shipped one (the accepted events only) and every event with
    its trigger bit. Each event: max jet score > the card's cut, as hltrun decided; scores to rtol 1e-4."""
    cut = card_cuts(walked)[CUT]
    want = {key: s for f in PATH_FILES for key, s in reference[f].items()}
    every = written(walked.folder / "walk" / "every_event.root")
    assert set(every) == set(want)  # every event of the path, 2500 + 1500
    margins = []
    for key, (fired, scores) in every.items():
        np.testing.assert_allclose(scores, want[key], rtol=1e-4, err_msg=str(key))
        assert fired == (event_max(want[key]) > cut), (key, scores, want[key], cut)
        margins.append(abs(event_max(want[key]) - cut) / abs(cut))
    accepted = written(walked.folder / "output" / "hltrun_output.root")
    assert set(accepted) == {key for key, s in want.items() if event_max(s) > cut}
    assert all(fired for fired, _ in accepted.values())
    for key, (_, scores) in accepted.items():
        np.testing.assert_allclose(scores, want[key], rtol=1e-4, err_msg=str(key))
    n_bkg = sum(event_max(s) > cut for s in reference[BACKGROUND].values())
    assert n_bkg == 25 and 0 < len(accepted) - n_bkg < 1500  # 1 % of 2500 QCD events, some gravitons
    assert min(margins) > 1e-6  # no event decided by rounding: the decisions say something


def test_the_verdict_fits_with_the_card_cut(walked, reference) -> None:
    """The verdict's path run (data/qcd_dijet.root) used the card's cut: it passed the QCD events the
    independent scores put above it, not every event (its permissive cut when there is no card)."""
    (command,) = [c for c in walked.outputs if c.startswith("hltbench verdict")]
    printed = walked.outputs[command]
    lines = [line for line in printed.splitlines() if line.startswith("verdict: ")]
    assert lines and lines[-1].startswith(f"verdict: fits — my_{walked.flavour} on onnxruntime costs "), printed[-2000:]
    report = json.loads((walked.folder / f"verdict-my_{walked.flavour}" / "verdict.json").read_text())
    assert report["verdict"]["fits"] is True and report["best"] == "onnxruntime"
    (run,) = report["engines"]
    assert "anomalyFilter.threshold" not in run["hltrun_command"]
    assert not any("no cut" in note for note in report["notes"])
    cut = card_cuts(walked)[CUT]
    assert run["events"] == 2500
    assert run["passed"] == sum(event_max(s) > cut for s in reference[BACKGROUND].values())


def test_the_pages_tflite_file_is_the_same_network(walked) -> None:
    """The Keras export also writes walk/my_keras.tflite (TFLite reads no ONNX): the page's conversion must keep the
    trained weights (``from_concrete_functions`` with a Keras 3 model wrote a file that scores NaN), so its scores on
    the independent features are ONNX Runtime's."""
    if walked.flavour != "keras":
        pytest.skip("the PyTorch export writes no .tflite file")
    from hltrun.modules.inference.base import AGREEMENT_RTOL
    from hltrun.modules.inference.tflite_backend import interpreter_class, io_indices, open_interpreter

    x = np.stack([features(j) for _, jets in leading_jets(BACKGROUND)[:200] for j in jets])
    interp = open_interpreter(interpreter_class()[0], walked.model.with_suffix(".tflite").read_bytes(), 1)
    inputs, outputs = io_indices(interp)
    interp.resize_tensor_input(inputs[0]["index"], list(x.shape), strict=True)
    interp.allocate_tensors()
    interp.set_tensor(inputs[0]["index"], x)
    interp.invoke()
    (name, index), = outputs.items()
    session = ort.InferenceSession(str(walked.model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
    np.testing.assert_allclose(interp.get_tensor(index).reshape(-1), expected, rtol=AGREEMENT_RTOL, err_msg=name)


def test_the_page_parses_into_the_walkthrough() -> None:
    """What the test runs is what the page shows: the files and the commands, in order."""
    files, steps = walkthrough()
    assert set(files) == {"walk/export_keras.py", "walk/export_torch.py", "walk/inputs.yaml"}
    assert [s.command.split()[0] for s in steps_for("keras", steps)] == [
        "python", "hltinputs", "hltinputs", "hltcard", "hltbench", "hltrun", "hltrun"]
    assert steps_for("keras", steps)[1].exit_code == 4  # the model refused before its declaration
    assert [s.command for s in steps_for("torch", steps)][0] == "python walk/export_torch.py"
