"""The bad-input matrix: one parametrised suite, input -> exit code, one-line message, no leftovers,
every event accounted for.

Each case builds its inputs in a temporary folder and runs ``hltrun`` (in-process, or in a
subprocess where a signal is sent) on the real modules: ROOT source, jet batcher, VAE scorer on ONNX
Runtime, anomaly filter, ROOT output, Timing and Memory services. For every case:

* the exit code is the documented one (0 ok, 2 config, 3 input data, 4 module, 128+signal);
* stderr holds the expected fragment and no traceback;
* no temporary file (``*.tmp``) is left anywhere under the case's folder;
* when a report was written, its events add up: entries read from files = processed + duplicates
  skipped + read-but-not-processed, and processed = passed + failed + error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import uproot

from hltrun.framework.module import Analyzer
from hltrun.framework.registry import register_module
from tests.conftest import make_events, write_counts, write_jet_index
from tests.helpers import fifo_unblocked, wait_for_temporary

REPO = Path(__file__).resolve().parents[1]

PATH = """
process: BAD
options: {{TryToContinue: {continue_on}, numberOfThreads: {streams}}}
source: {{type: RootJetSource, files: {files}, chunk_size: 25{source_extra}}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
  vae: {{type: VAEAnomalyScorer, src: batcher, model: {model}, backend: onnxruntime, warm_up: [1]}}
  anomalyFilter: {{type: AnomalyScoreFilter, src: vae{filter_extra}}}
  out: {{type: RootOutputModule, file: {out}, select_events: [HLT_AD], keep: [vae]}}
paths:
  HLT_AD: [batcher, vae, anomalyFilter]
endpaths:
  o: [out]
services: {{Timing: {{}}, Memory: {{}}}}
"""


def _corrupt(path: Path, branch: str = "FatJetPFCand_eta") -> Path:
    """Overwrite compressed bytes inside one basket: the file opens, the branch cannot be read."""
    seek = int(uproot.open(path)["Events"][branch].member("fBasketSeek")[0])
    data = bytearray(path.read_bytes())
    at = data.index(b"ZL", seek)
    data[at + 30:at + 80] = b"\xff" * 50
    path.write_bytes(bytes(data))
    return path


def _failing_model(path: Path) -> Path:
    """An ONNX model that runs for one jet and fails inside ORT (Reshape) for two: a real
    per-event backend failure, with ONNX Runtime's own native error log."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])
    nodes = [helper.make_node("Reshape", ["jets", "shape"], ["flat"]),
             helper.make_node("ReduceSum", ["flat", "axes"], ["score"], keepdims=0),
             helper.make_node("Identity", ["score"], ["kl"])]
    graph = helper.make_graph(nodes, "fails_for_two_jets", [x],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"]) for n in ("score", "kl")],
                              initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [1, 300]),
                                           helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


@dataclass
class Case:
    name: str
    code: int
    fragment: str
    setup: Callable[[Path], dict] = lambda tmp: {}  # -> template fields / argv extras
    args: list[str] = field(default_factory=list)
    events_processed: int | None = None  # None: not checked; 0 with begin_job failures (no report)
    absent: str | None = None  # text that must not be in stderr (a flood, a native log)
    max_stderr_lines: int | None = None  # stderr's lines past the report files' "wrote ..." (a flood is what counts)
    signal: int | None = None  # run in a subprocess and send this signal once events flow
    prefix: str | None = None  # how the error line starts after "hltrun: error: " (the culprit named first)


def _files(tmp: Path, *specs: tuple[str, int, int]) -> list[str]:
    """(name, n_events, seed) -> counts-layout files in ``tmp``."""
    return [str(write_counts(tmp / name, make_events(n, seed=seed))) for name, n, seed in specs]


def _dup_ids(tmp: Path) -> dict:
    return {"files": _files(tmp, ("a.root", 60, 1), ("b.root", 60, 2))}  # same (run, lumi, event) ids


def _bad_among_good(tmp: Path) -> dict:
    good = _files(tmp, ("good.root", 60, 1))
    bad = _corrupt(write_counts(tmp / "bad.root", [dict(e, event=e["event"] + 10_000) for e in make_events(60, 2)]))
    return {"files": good + [str(bad)]}


def _not_root(tmp: Path) -> dict:
    (tmp / "notes.root").write_text("not a ROOT file\n")
    return {"files": _files(tmp, ("good.root", 60, 1)) + [str(tmp / "notes.root")]}


_ERROR_PAGE = "\ufeff\n<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>Sign in</body></html>\n"


def _web_page(tmp: Path, name: str) -> Path:
    """What ``wget`` of a link behind a login saves under the file's name: the server's HTML page."""
    (tmp / name).write_text(_ERROR_PAGE, encoding="utf-8")
    return tmp / name


def _web_page_model(name: str) -> Callable[[Path], dict]:
    return lambda tmp: {"model": str(_web_page(tmp, name)), "filter_extra": ", threshold: 1.0"}


def _web_page_among_good(tmp: Path) -> dict:
    return {"files": _files(tmp, ("good.root", 60, 1)) + [str(_web_page(tmp, "page.root"))]}


def _fifo_among_good(tmp: Path) -> dict:
    return {"files": _files(tmp, ("good.root", 60, 1)) + [str(fifo_unblocked(tmp / "pipe.root"))]}


def _fifo_model(tmp: Path) -> dict:
    return {"model": str(fifo_unblocked(tmp / "pipe.onnx")), "filter_extra": ", threshold: 1.0"}


def _link(tmp: Path, name: str, target: str) -> str:
    """A symbolic link ``tmp/name`` -> ``target`` (a folder on a disk not mounted, or the link itself: a loop)."""
    (tmp / name).symlink_to(target)
    return str(tmp / name)


def _input_link_loop(tmp: Path) -> dict:
    return {"files": _files(tmp, ("good.root", 60, 1)) + [_link(tmp, "loop.root", "loop.root")]}


def _indexed_without_cand_index(tmp: Path) -> dict:
    path = write_jet_index(tmp / "pfnano.root", make_events(40))
    # rename the constituents as if they were an event-level PFCands collection (indirection needed)
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(library="ak")
    import awkward as ak

    with uproot.recreate(tmp / "indirect.root") as f:
        from hltrun.modules.rootio import write_nanoaod

        extra = ak.Array([[1.0, 2.0, 3.0]] * len(arrays))  # 3 event-level candidates, links index into them
        write_nanoaod(f, "Events", {
            "run": arrays["run"], "luminosityBlock": arrays["luminosityBlock"], "event": arrays["event"],
            "FatJet": ak.zip({k: arrays[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass")}),
            "FatJetPFCands": ak.zip({"jetIdx": arrays["FatJetPFCands_jetIdx"],
                                     "pFCandsIdx": ak.zeros_like(arrays["FatJetPFCands_jetIdx"])}),
            "PFCands": ak.zip({"pt": extra, "eta": extra, "phi": extra})})
    return {"files": [str(tmp / "indirect.root")],
            "source_extra": ", layout: jet_index, branches: {cand_pt: PFCands_pt, cand_eta: PFCands_eta, "
                            "cand_phi: PFCands_phi, cand_jet_index: FatJetPFCands_jetIdx}"}


def _edm_file(tmp: Path) -> dict:
    """A MiniAOD-like file: TTrees with the EDM branch names (uproot writes them as plain columns; real
    ones hold C++ objects), the EDM file's other trees beside ``Events``."""
    import numpy as np

    path = tmp / "miniaod.root"
    trees = {"Events": ("EventAuxiliary", "EventProductProvenance", "EventSelections", "BranchListIndexes",
                        "edmTriggerResults_TriggerResults__HLT.", "patPackedCandidates_packedPFCandidates__PAT.",
                        "patJets_slimmedJetsAK8__PAT."),
             "MetaData": ("FileFormatVersion",), "ParameterSets": ("ParameterSetID",), "Parentage": ("Description",),
             "Runs": ("RunAuxiliary",)}
    with uproot.recreate(path) as f:
        for tree, branches in trees.items():  # mktree: a plain assignment would write an RNTuple
            f.mktree(tree, {name: np.int32 for name in branches})
            f[tree].extend({name: np.zeros(5, np.int32) for name in branches})
    return {"files": _files(tmp, ("good.root", 60, 1)) + [str(path)]}


def _zero_constituents(tmp: Path) -> dict:
    events = make_events(40, seed=4)
    for e in events:  # every second jet loses its constituents
        for j in e["jets"][1::2]:
            for k in ("c_pt", "c_eta", "c_phi"):
                j[k] = j[k][:0]
    return {"files": [str(write_counts(tmp / "empty_jets.root", events))]}


def _simple_model(path: Path, batch: int | str = "N", out_shape: tuple = ("N",)) -> Path:
    """An ONNX model summing each jet's inputs: ``batch`` fixes (int) or frees ("N") the first axis;
    ``out_shape`` is what its outputs declare and give ((N,) per jet; (N, 3) is not a score)."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("jets", TensorProto.FLOAT, [batch, 100, 3])
    axes = [2] if len(out_shape) == 2 else [1, 2]
    nodes = [helper.make_node("ReduceSum", ["jets", "axes"], ["score"], keepdims=0),
             helper.make_node("Identity", ["score"], ["kl"])]
    graph = helper.make_graph(nodes, "simple", [x],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(out_shape)) for n in ("score", "kl")],
                              initializer=[helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _fixed_batch_model(tmp: Path) -> dict:
    return {"model": str(_simple_model(tmp / "fixed2.onnx", batch=2, out_shape=(2,))), "filter_extra": ", threshold: 1.0"}


def _per_constituent_scores(tmp: Path) -> dict:
    return {"model": str(_simple_model(tmp / "wide.onnx", out_shape=("N", 100))), "filter_extra": ", threshold: 1.0"}


def _failing_backend(tmp: Path) -> dict:
    return {"files": _files(tmp, ("a.root", 120, 1)), "model": str(_failing_model(tmp / "fails.onnx")),
            "filter_extra": ", threshold: 1.0"}


CASES = [
    Case("model exported with a fixed batch of 2", 4, "takes a fixed batch of 2 jet(s), input shape (2, 100, 3)",
         _fixed_batch_model, max_stderr_lines=2, absent="INVALID_ARGUMENT", events_processed=0),
    Case("model that fails inside ONNX Runtime at its warm-up", 4, "failed its warm-up on a batch of 2 jet(s)",
         _failing_backend, args=["modules.vae.warm_up=[1, 2]"], max_stderr_lines=2, absent="[E:onnxruntime",
         events_processed=0),
    Case("model with a score per constituent", 4, "wide.onnx: output 'score' has shape (1, 100) for 1 jet(s); "
         "expected one value per jet", _per_constituent_scores, prefix="modules.vae: model ",
         max_stderr_lines=2, events_processed=0),
    # a mistyped model file is named as such, whether or not the filter has a cut of its own: it was
    # "no threshold given and .../thresholds.json has no absent.bkg_eff_1e-2 cut" without one
    Case("model file missing, no threshold", 4, "model file not found: ", lambda t: {"model": str(t / "absent.onnx")},
         prefix="modules.vae: ", max_stderr_lines=1, absent="threshold", events_processed=0),
    # a link into a disk not mounted (``m.onnx -> /eos/...``) or a loop of links: ls lists the name, "not found"
    # alone sent the user looking for a typo; the line says what the link is
    Case("model a link to nowhere", 4, "m.onnx is a symbolic link to /eos/x/m.onnx, which does not exist",
         lambda t: {"model": _link(t, "m.onnx", "/eos/x/m.onnx")},
         prefix="modules.vae: ", max_stderr_lines=1, events_processed=0),
    Case("model a link loop", 4, "m.onnx is a symbolic link in a loop", lambda t: {"model": _link(t, "m.onnx", "m.onnx")},
         prefix="modules.vae: ", max_stderr_lines=1, events_processed=0),
    Case("input a link loop", 3, "loop.root is a symbolic link in a loop", _input_link_loop, max_stderr_lines=1),
    # the same for a name the scorer looks up in models_dir (a misspelt shipped model, a file's name with a
    # suffix it does not read as a file) and for a bare TorchScript name: the shipped card's missing cut was named
    Case("model name misspelt, no threshold", 4, "model file not found: conv_vea (", lambda t: {"model": "conv_vea"},
         prefix="modules.vae: ", max_stderr_lines=1, absent="threshold", events_processed=0),
    Case("model suffix misspelt, no threshold", 4, "model file not found: absent.onx (",
         lambda t: {"model": "absent.onx"}, prefix="modules.vae: ", max_stderr_lines=1, absent="threshold",
         events_processed=0),
    Case("TorchScript file missing, no threshold", 4, "model file not found: absent.pt",
         lambda t: {"model": "absent.pt"}, prefix="modules.vae: ", max_stderr_lines=1, absent="threshold",
         events_processed=0),
    # a .keras file alone on an engine that reads ONNX (auto too): the line named only the missing .onnx
    Case("a .keras model with no .onnx beside it", 2, "alone.onnx does not exist; backend: tensorflow runs alone.keras",
         lambda t: (t / "alone.keras").write_bytes(b"PK") and {"model": str(t / "alone.keras"),
                                                                "filter_extra": ", threshold: 1.0"},
         max_stderr_lines=1, events_processed=0),
    Case("model file missing, threshold given", 4, "model file not found: ",
         lambda t: {"model": str(t / "absent.onnx"), "filter_extra": ", threshold: 1.0"}, prefix="modules.vae: ",
         max_stderr_lines=1, events_processed=0),
    Case("filter told another model's thresholds", 2, "thresholds belong to the model that made the scores",
         lambda t: {"model": "gcn_vae", "filter_extra": ", model: conv_vae"}),
    Case("output file is a folder", 4, "is a folder, not a file name",
         lambda t: (t / "outdir").mkdir() or {"out": str(t / "outdir")}),
    Case("report folder is a file", 4, "is a file, not a folder",
         lambda t: (t / "rep").write_text("x") and {}),
    Case("memray file is a folder", 4, "services.Memory.memray",
         lambda t: (t / "m").mkdir() or {}, args=[f"services.Memory.memray=__TMP__/m"]),
    Case("same file listed twice", 2, "listed twice",
         lambda t: {"files": _files(t, ("a.root", 60, 1)) * 2}),
    Case("duplicate event ids across files", 0, "duplicate events skipped 60", _dup_ids, events_processed=60),
    Case("corrupt file among good ones", 3, "bad.root", _bad_among_good, events_processed=0),
    Case("corrupt file, skipBadFiles", 0, "bad file (skipBadFiles): ", _bad_among_good,
         args=["source.skipBadFiles=true"], events_processed=60),
    Case("corrupt file, 4 decompression threads", 3, "bad.root", _bad_among_good, events_processed=0,
         args=["source.decompression_threads=4"]),
    Case("decompression_threads negative", 2, "decompression_threads", args=["source.decompression_threads=-2"]),
    Case("not a ROOT file among good ones", 3, "as a ROOT file", _not_root, events_processed=0),
    # a web page saved as the file: each library named it in its own words (ONNX Runtime "Protobuf parsing
    # failed", Keras "File not found" for a .keras that is there, torch.export a logged traceback), not the cause
    Case("model file is a web page, backend auto", 4, "page.onnx is a web page (HTML), not the file itself",
         _web_page_model("page.onnx"), args=["modules.vae.backend=auto"], max_stderr_lines=1,
         absent="Protobuf", events_processed=0),
    Case("torch.export model file is a web page", 4, "page.pt2 is a web page (HTML), not the file itself",
         _web_page_model("page.pt2"), max_stderr_lines=1, absent="Traceback", events_processed=0),
    Case("input file is a web page among good ones", 3, "page.root is a web page (HTML), not the file itself",
         _web_page_among_good, max_stderr_lines=1, events_processed=0),
    Case("file list is a web page", 2, "file list ", lambda t: {"files": [str(_web_page(t, "files.txt"))]},
         max_stderr_lines=1, absent="not found: <!DOCTYPE", events_processed=0),
    Case("input file is a FIFO among good ones", 3, "pipe.root is a FIFO, not a regular file", _fifo_among_good,
         events_processed=0),
    Case("input file is /dev/null", 3, "/dev/null is a character device, not a regular file",
         lambda t: {"files": ["/dev/null"]}, events_processed=0),
    Case("model file is a FIFO, backend auto", 4, "pipe.onnx is a FIFO, not a regular file", _fifo_model,
         args=["modules.vae.backend=auto"], events_processed=0),
    Case("jet_index with indirection, no cand_index", 2, "source.branches.cand_index: missing",
         _indexed_without_cand_index, events_processed=0),
    Case("EDM (MiniAOD) file among good ones", 3, "miniaod.root is a CMSSW EDM file (MiniAOD/AOD/RECO: tree "
         "'Events' holds C++ objects such as 'patJets_slimmedJetsAK8__PAT.')", _edm_file, max_stderr_lines=2,
         absent="not found in tree", events_processed=0),
    Case("jets without constituents", 0, "jets without constituents", _zero_constituents, events_processed=40),
    Case("override with a mistyped label", 2, "did you mean 'vae'", args=["modules.vea.backend=tensorflow"]),
    Case("bad -n", 2, "command line (-n -5)", args=["-n", "-5"]),
    Case("per-event backend failures, TryToContinue", 0, "failed events in module 'vae': ModuleError",
         lambda t: {**_failing_backend(t), "continue_on": "[StdException]"}, absent="[E:onnxruntime",
         max_stderr_lines=8),
    Case("per-event backend failure, stop", 4, "(in module 'vae', run 1, lumi 1, event 1000)",
         _failing_backend, absent="[E:onnxruntime", max_stderr_lines=8),
    Case("far more streams than cores", 0, "streams on", args=[f"options.numberOfThreads={8 * (os.cpu_count() or 1)}"]),
    Case("SIGTERM during the event loop", 128 + signal.SIGTERM, "stopped by SIGTERM",
         lambda t: {"files": _files(t, ("a.root", 60, 1)) * 400}, signal=signal.SIGTERM,
         args=["source.allowDuplicateFiles=true", "source.duplicateCheckMode=noDuplicateCheck"]),
    Case("SIGINT while decompression threads read", 130, "interrupted by the user",
         lambda t: {"files": _files(t, ("a.root", 60, 1)) * 400}, signal=signal.SIGINT,
         args=["source.allowDuplicateFiles=true", "source.duplicateCheckMode=noDuplicateCheck",
               "source.decompression_threads=4"]),
    Case("SIGINT, 2 streams, read-ahead 2", 130, "interrupted by the user",
         lambda t: {"files": _files(t, ("a.root", 60, 1)) * 400, "streams": 2}, signal=signal.SIGINT,
         args=["source.allowDuplicateFiles=true", "source.duplicateCheckMode=noDuplicateCheck",
               "source.read_ahead=2"]),
]


def _run(case: Case, tmp: Path) -> tuple[int, str, str, Path]:
    fields = {"continue_on": "[]", "streams": 1, "files": _files(tmp, ("a.root", 60, 1)), "model": "conv_vae",
              "out": str(tmp / "out" / "o.root"), "filter_extra": "", "source_extra": ""}
    fields.update(case.setup(tmp) or {})
    fields["files"] = "[" + ", ".join(fields["files"]) + "]"
    cfg = tmp / "cfg.yaml"
    cfg.write_text(textwrap.dedent(PATH.format(**fields)))
    report = tmp / "rep"
    argv = [str(cfg), "--report-dir", str(report), *[a.replace("__TMP__", str(tmp)) for a in case.args]]
    if case.signal is None:
        from hltrun.framework.cli import main

        return main(argv), "", "", report
    code = "import sys, tests.plugins; from hltrun.framework.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_temporary(Path(fields["out"]), proc)
    time.sleep(1.0)  # events are flowing
    proc.send_signal(case.signal)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, report


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err, report = _run(case, tmp_path)
    captured = capfd.readouterr()  # file-descriptor level: native (C++) logs too
    out, err = out + captured.out, err + captured.err
    assert code == case.code, f"exit {code}, stderr:\n{err}"
    assert case.fragment in err + out, err
    if case.prefix is not None:
        assert f"hltrun: error: {case.prefix}" in err, err
    assert "Traceback" not in err
    if case.code:
        assert err.strip().splitlines()[-1].startswith("hltrun:"), err
    if case.absent:
        assert case.absent not in err
    if case.max_stderr_lines is not None:
        said = [line for line in err.strip().splitlines() if not line.startswith("hltrun: wrote ")]
        assert len(said) <= case.max_stderr_lines, err
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    doc = report / "hltrun.json" if report.is_dir() else None
    if doc is None or not doc.exists():
        assert case.events_processed in (None, 0), "no report written"
        assert "TrigReport" not in out  # failed before the first event
        return
    job = json.loads(doc.read_text())["job"]
    from_files = job["source"].get("read", 0) + job["source"].get("duplicates", 0)
    assert from_files == job["events_processed"] + job["events_duplicate"] + job["events_not_processed"]
    assert job["events_processed"] == job["events_passed"] + job["events_failed"] + job["events_error"]
    assert job["events_read"] == job["source"].get("read", 0)
    if case.events_processed is not None:
        assert job["events_processed"] == case.events_processed
    if case.signal is not None:
        assert job["stopped_by_signal"] == signal.Signals(case.signal).name
        assert "Stopped by" in (report / "report.html").read_text()


# ------------------------------------------------------------------ an input changed while the job reads it

@dataclass
class TruncateParameters:
    path: str = ""
    keep_fraction: float = 0.3


@register_module("TestTruncateInput")
class TruncateInput(Analyzer):
    """At the first event, cuts the job's input file to a fraction of its bytes, as another process
    rewriting it (a copy started over it) does; the source has read only its first chunks by then."""

    Parameters = TruncateParameters

    def analyze(self, event) -> None:  # noqa: ANN001
        if event.index == 0:
            os.truncate(self.params.path, int(os.path.getsize(self.params.path) * self.params.keep_fraction))


CHANGED = """
process: CHANGED
source: {{type: RootJetSource, files: [{file}], chunk_size: 25}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
  cut: {{type: TestTruncateInput, path: {file}}}
  out: {{type: RootOutputModule, file: {out}}}
paths: {{p: [batcher, cut]}}
endpaths: {{o: [out]}}
services: {{Timing: {{}}}}
"""


def test_an_input_cut_short_while_the_job_reads_it_is_named_so(tmp_path, capfd):
    """An input truncated by another process while the job read it failed as a damaged file: ``failed to read
    … entries 125-150: OSError: expected Chunk of length …`` (or a DeserializationError of a TBasket). Now the
    line says the file shrank while the job read it, from how many bytes to how many; exit 3, every event read
    accounted for, no output under its name."""
    from hltrun.framework.cli import main

    data = write_counts(tmp_path / "copying.root", make_events(400), per_basket=25)  # 16 baskets a branch
    size = data.stat().st_size
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(textwrap.dedent(CHANGED.format(file=data, out=tmp_path / "o.root")))
    code = main([str(cfg), "--report-dir", str(tmp_path / "rep"), "-j", str(tmp_path / "fjr.xml")])
    err = capfd.readouterr().err
    assert code == 3, err
    errors = [line for line in err.splitlines() if line.startswith("hltrun: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"hltrun: error: source: failed to read {data} entries ") and \
        f"it shrank from {size} to {int(size * 0.3)} bytes while the job read it" in errors[0], err
    job = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]
    assert 0 < job["events_read"] == job["events_processed"] < 400
    assert f"<EventsRead>{job['events_read']}</EventsRead>" in (tmp_path / "fjr.xml").read_text()
    assert not (tmp_path / "o.root").exists() and not list(tmp_path.rglob("*.tmp"))


def test_how_an_input_changed_is_said_for_each_change(tmp_path):
    """The change a failed read reports: grown, shrunk, rewritten in place, replaced by another file, removed;
    nothing for a file as it was (its failure is its own: a damaged basket)."""
    from hltrun.modules.source.tree import changed_since, file_state

    path = tmp_path / "in.root"
    path.write_bytes(b"x" * 100)
    seen = file_state(str(path))
    assert changed_since(str(path), seen) is None
    path.write_bytes(b"x" * 150)
    assert "it grew from 100 to 150 bytes while the job read it" in changed_since(str(path), seen)
    path.write_bytes(b"y" * 100)
    os.utime(path, ns=(seen[2] + 10**9, seen[2] + 10**9))  # a second later, whatever the clock's resolution
    assert "it was rewritten (100 bytes as before, modified since)" in changed_since(str(path), seen)
    (tmp_path / "new.root").write_bytes(b"z" * 7)
    os.replace(tmp_path / "new.root", path)
    assert "it was replaced by another file (100 bytes when first opened, 7 now)" in changed_since(str(path), seen)
    path.unlink()
    assert changed_since(str(path), seen).startswith("it was removed while the job read it")
