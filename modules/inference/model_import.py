"""Networks saved the ways CMSSW's own ML interfaces load them, imported into ONNX once.

A physicist's network often exists first as a TorchScript file (``torch.jit.script(m).save("net.pt")``:
CMSSW's PyTorch interface), a ``torch.export`` program (``torch.export.save(ep, "net.pt2")``: the AOT
path) or a TensorFlow SavedModel folder (``model.export("net")``: PhysicsTools/TensorFlow). Every engine
but ``tensorflow`` reads ONNX, and every check of the model (its input contract, its outputs, training
mode, the engines' agreement) is written against ONNX: so such a file is converted once, with the
framework's own exporter (``torch.onnx.export``; tf2onnx), and the ONNX file runs as any other.

Why import rather than run the native file: one graph for every engine keeps the checks and the timing
comparable, and the conversion is checked, not trusted: the ONNX file must agree with the native
runtime on probe batches (1 and 7 jets: a trace that baked its batch size in fails the second) within
``IMPORT_RTOL`` relatively, else the import is refused naming the output and the difference. The result
is cached under ``$XDG_CACHE_HOME/hltrun/imported``, keyed by the original's sha256, the converter's
version and the input shape, so a second job costs a hash and a changed file is imported again.

Formats imported unsoundly are refused with the exact command instead: a legacy Keras ``.h5`` (Keras 3
cannot rebuild every model Keras 2 or 3 saved so: measured, Keras 3.15 refused an ``.h5`` it had written
itself, "Unknown layer: 'Square'"), a frozen graph ``.pb`` (its inputs and outputs have no names to find
them by), a PyTorch checkpoint (``torch.save``: Python pickles, not a network).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import warnings
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from hltrun.framework.atomic import writing
from hltrun.framework.errors import ModuleError, one_line
from hltrun.framework.extras import need
from hltrun.framework.interrupt import reraise_interrupt
from hltrun.framework.resources import unreadable_reason

from .machine import cache_root, dist_version, folder_or_none
from .tf_import import import_tensorflow

log = logging.getLogger("hltrun.inference")

IMPORT_RTOL = 1e-5  # the ONNX file against the native runtime: the converter must not change the network
PROBE_BATCHES = (1, 7)  # jets; 7 is not the export's example batch (2): a baked-in batch size fails here
EXAMPLE_BATCH = 2
OPSET = 17
_PROVENANCE_KEY = "hltrun.imported_from"


@dataclass(frozen=True)
class Provenance:
    """Where an imported ONNX file came from: said in the log and written to hltrun.json."""

    source: str
    sha256: str
    format: str
    converter: str
    max_rel_diff: float

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.source, "sha256": self.sha256, "format": self.format, "converter": self.converter,
                "max_rel_diff": self.max_rel_diff}


class Importer(ABC):
    """One native format: how to recognise it, load it, run it and export it. The checks, the cache and
    the lines are the module's, once."""

    format: ClassVar[str]
    dist: ClassVar[str]  # the converter's distribution (its version is a cache key and is reported)
    converter: ClassVar[str]

    @staticmethod
    @abstractmethod
    def matches(path: Path) -> bool:
        """Whether ``path`` is in this format (by its name; the load says when it is not)."""

    @abstractmethod
    def manual(self, path: Path, inputs: Mapping[str, tuple[int, ...]]) -> str:
        """The command that converts the file by hand (said when the import fails, or is refused): ``inputs``
        are the network's inputs, each name with its shape per jet, as declared (several, where it has several:
        a command that feeds one tensor to a network of two fails in torch's exporter)."""

    @abstractmethod
    def load(self, path: Path) -> Any:
        """The native model."""

    @abstractmethod
    def run(self, model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        """The native runtime's outputs by the names the ONNX file will give them."""

    @abstractmethod
    def export(self, model: Any, path: Path, name: str, jet_shape: tuple[int, ...], out: Path) -> None:
        """Write the ONNX file ``out`` with one input ``name`` of shape (N, *jet_shape)."""


def _torch_outputs(raw: Any) -> dict[str, np.ndarray]:
    """A torch module's result by the names ``_TorchImporter.export`` gives: ``score``, or ``output_<i>``."""
    if isinstance(raw, dict):
        raw = tuple(raw.values())
    if not isinstance(raw, (list, tuple)):
        return {"score": raw.detach().cpu().numpy()}
    return {f"output_{i}": r.detach().cpu().numpy() for i, r in enumerate(raw)}


class _TorchImporter(Importer):
    dist = "torch"

    def run(self, model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = need("torch", "importing a PyTorch model")
        with torch.inference_mode():
            return _torch_outputs(model(torch.from_numpy(x)))

    def output_names(self, model: Any, name: str, jet_shape: tuple[int, ...]) -> list[str]:
        return list(self.run(model, np.zeros((EXAMPLE_BATCH, *jet_shape), np.float32)))


class TorchScriptImporter(_TorchImporter):
    """``torch.jit.script(m).save`` / ``torch.jit.trace(m, x).save``: exported by torch.onnx's TorchScript
    exporter (``dynamo=False``; torch 2.13's dynamo exporter refuses a ScriptModule)."""

    format = "TorchScript"
    converter = "torch.onnx.export (TorchScript exporter, dynamo=False)"

    @staticmethod
    def matches(path: Path) -> bool:
        return path.suffix in (".pt", ".pth", ".ts", ".torchscript")

    def manual(self, path: Path, inputs: Mapping[str, tuple[int, ...]]) -> str:
        examples = "".join(f"torch.zeros({', '.join(map(str, (EXAMPLE_BATCH, *shape)))}), " for shape in inputs.values())
        axes = {name: {0: "N"} for name in (*inputs, "score")}
        return (f"torch.onnx.export(torch.jit.load('{path}'), ({examples.removesuffix(' ')}), "
                f"'{path.with_suffix('.onnx')}', dynamo=False, input_names={list(inputs)!r}, output_names=['score'], "
                f"dynamic_axes={axes!r}, opset_version={OPSET})")

    def load(self, path: Path) -> Any:
        why = _not_torchscript(path)
        if why is not None:
            raise ModuleError(f"model {path} {why}: save the network with "
                              f"torch.jit.script(model).save('{path.stem}.pt') or export it to ONNX "
                              f"(torch.onnx.export, docs/your-model.md)")
        torch = need("torch", f"importing the TorchScript model {path}")
        return torch.jit.load(str(path), map_location="cpu").eval()

    def export(self, model: Any, path: Path, name: str, jet_shape: tuple[int, ...], out: Path) -> None:
        torch = need("torch", f"importing the TorchScript model {path}")
        outputs = self.output_names(model, name, jet_shape)
        axes = {n: {0: "N"} for n in (name, *outputs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (torch.zeros((EXAMPLE_BATCH, *jet_shape)),), str(out), dynamo=False,
                              input_names=[name], output_names=outputs, dynamic_axes=axes, opset_version=OPSET)


_CHECKPOINT = "is a PyTorch checkpoint (torch.save: a pickled module or state_dict), not a network file"


def _not_torchscript(path: Path) -> str | None:
    """Why ``path`` is no TorchScript archive, None where it is one. A TorchScript archive is a zip holding its
    code (``<name>/code/``); ``torch.save`` writes a zip of pickles (a bare pickle before torch 1.6). Anything
    else (an empty file, a copy cut short) is no checkpoint either: calling it one named the wrong culprit."""
    names = _archive_names(path, "TorchScript archive")
    if isinstance(names, str):
        return names
    return None if any("/code/" in n for n in names) else _CHECKPOINT


def _not_exported_program(path: Path) -> str | None:
    """Why ``path`` is no ``torch.export.save`` archive, None where it may be one (torch says the rest). Asked
    before ``torch.export.load``, which logs a traceback at WARNING for a file that is no archive of its
    format, then raises "check the warnings above": a copy cut short printed a page of torch's internals."""
    names = _archive_names(path, "torch.export archive")
    if isinstance(names, str):
        return names
    if any(n.endswith("archive_format") for n in names):
        return None
    if any("/code/" in n for n in names):
        return "is a TorchScript archive (torch.jit.save), not a torch.export one: name it .pt"
    return _CHECKPOINT if any(n.rsplit("/", 1)[-1] == "data.pkl" for n in names) else None


def _archive_names(path: Path, kind: str) -> list[str] | str:
    """The names in the zip archive ``path``, or why it is no ``kind`` (not a zip: empty, a bare pickle, a copy
    cut short or another format)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except zipfile.BadZipFile:
        pass
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not head:
        return "is empty"
    if head[:1] == b"\x80":  # a pickle's PROTO opcode: the legacy torch.save format
        return _CHECKPOINT
    return f"is no {kind} (no zip file: a copy cut short, or another format)"


class ExportedProgramImporter(_TorchImporter):
    """``torch.export.save(torch.export.export(m, ...), "net.pt2")``: exported by torch.onnx's dynamo
    exporter, which reads the program's own dynamic shapes."""

    format = "torch.export ExportedProgram"
    converter = "torch.onnx.export (dynamo exporter)"

    @staticmethod
    def matches(path: Path) -> bool:
        return path.suffix == ".pt2"

    def manual(self, path: Path, inputs: Mapping[str, tuple[int, ...]]) -> str:
        return (f"torch.onnx.export(torch.export.load('{path}'), (), '{path.with_suffix('.onnx')}', dynamo=True, "
                f"external_data=False)  (the program exported with dynamic_shapes on its batch axis)")

    def load(self, path: Path) -> Any:
        why = _not_exported_program(path)
        if why is not None:
            raise ModuleError(f"model {path} {why}: save the network with torch.export.save(torch.export.export("
                              f"model, ...), '{path.stem}.pt2') or export it to ONNX (torch.onnx.export, "
                              f"docs/your-model.md)")
        torch = need("torch", f"importing the ExportedProgram {path}")
        try:
            with _quiet("torch.export"):  # its load logs a traceback for an archive it cannot read, then raises
                return torch.export.load(str(path))
        except RuntimeError as exc:  # "... check the warnings above": those said the archive is not of its format
            raise ModuleError(f"model {path} is a zip archive that torch {torch.__version__}'s torch.export.load "
                              f"cannot read (another format, or saved by a newer torch): save the network again with "
                              f"torch.export.save, or export it to ONNX (torch.onnx.export, docs/your-model.md)") from exc

    def run(self, model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        return super().run(model.module(), x)

    def export(self, model: Any, path: Path, name: str, jet_shape: tuple[int, ...], out: Path) -> None:
        torch = need("torch", f"importing the ExportedProgram {path}")
        need("onnxscript", f"importing the ExportedProgram {path} (torch.onnx's dynamo exporter)")
        outputs = self.output_names(model, name, jet_shape)
        with warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (), str(out), dynamo=True, input_names=[name], output_names=outputs,
                              external_data=False, verbose=False, report=False, optimize=True)


class SavedModelImporter(Importer):
    """A TensorFlow SavedModel folder (``model.export(dir)``, ``tf.saved_model.save``): its
    ``serving_default`` signature, frozen and converted by tf2onnx, its outputs keeping the signature's names."""

    format = "TensorFlow SavedModel"
    dist = "tf2onnx"
    converter = "tf2onnx"
    SIGNATURE = "serving_default"

    @staticmethod
    def matches(path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def manual(self, path: Path, inputs: Mapping[str, tuple[int, ...]]) -> str:
        return (f"python -m tf2onnx.convert --saved-model {path} --signature_def {self.SIGNATURE} --opset {OPSET} "
                f"--output {path.name}.onnx")

    def load(self, path: Path) -> Any:
        tf = import_tensorflow(f"importing the SavedModel {path}")  # its start-up log, as the tensorflow backend
        loaded = tf.saved_model.load(str(path))
        if self.SIGNATURE not in loaded.signatures:
            raise ModuleError(f"model {path}: SavedModel without a {self.SIGNATURE!r} signature (it has "
                              f"{sorted(loaded.signatures) or 'none'}): save it with model.export('{path}')")
        fn = loaded.signatures[self.SIGNATURE]
        inputs = fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise ModuleError(f"model {path}: its {self.SIGNATURE} signature has {len(inputs)} inputs "
                              f"{sorted(inputs)}; hltrun imports networks with one input: convert it by hand "
                              f"({self.manual(path, {})}) and run the .onnx file")
        return loaded, fn, next(iter(inputs))

    def run(self, model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        _, fn, name = model
        return {k: np.asarray(v) for k, v in fn(**{name: tf.constant(x)}).items()}

    def export(self, model: Any, path: Path, name: str, jet_shape: tuple[int, ...], out: Path) -> None:
        need("tf2onnx", f"importing the SavedModel {path}")
        from tf2onnx import convert, tf_loader

        with _quiet("tf2onnx", "tensorflow"):
            graph, inputs, outputs, rename = tf_loader.from_saved_model(
                str(path), None, None, "serve", [self.SIGNATURE], return_tensors_to_rename=True)
            rename = {**rename, inputs[0]: name}
            convert.from_graph_def(graph, input_names=inputs, output_names=outputs, opset=OPSET,
                                   tensors_to_rename=rename, output_path=str(out))


class _quiet:
    """A converter's progress (tf2onnx logs it at INFO, torch.onnx's exporter its steps) and TF's warnings of the
    deprecated v1 calls tf2onnx makes are not the job's news: these loggers say errors only, for the import."""

    def __init__(self, *names: str) -> None:
        self._names = names

    def __enter__(self) -> None:
        self._levels = {n: logging.getLogger(n).level for n in self._names}
        for n in self._levels:
            logging.getLogger(n).setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)


IMPORTERS: tuple[Importer, ...] = (TorchScriptImporter(), ExportedProgramImporter(), SavedModelImporter())

# formats refused with the way on (module docstring): suffix -> the line after "model <path> is ..."
_REFUSED = {
    ".h5": "a legacy Keras HDF5 file, which Keras 3 cannot always rebuild: in the Keras that trained it, "
           "keras.models.load_model('{path}').export('{stem}_savedmodel') and give hltrun that folder "
           "(or export it to ONNX with tf2onnx, docs/your-model.md)",
    ".pb": "a frozen TensorFlow graph, whose input and output tensors have no names to find them by: "
           "python -m tf2onnx.convert --graphdef {path} --inputs <input>:0 --outputs <output>:0 --opset 17 "
           "--output {stem}.onnx, and give hltrun the .onnx file",
}
_REFUSED[".hdf5"] = _REFUSED[".h5"]

NATIVE_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".pt2", ".h5", ".hdf5", ".pb")


def native_format(path: Path) -> Importer | None:
    """The importer for a model file that hltrun imports into ONNX, or None for any other file.
    A refused format is one ModuleError line with the command to convert it."""
    if path.suffix in _REFUSED and path.name != "saved_model.pb":
        raise ModuleError(f"model {path} is " + _REFUSED[path.suffix].format(path=path, stem=path.stem))
    if path.name == "saved_model.pb":
        path = path.parent
    return next((i for i in IMPORTERS if i.matches(path)), None)


def is_native(path: Path) -> bool:
    """Whether the model given is one that hltrun imports (or refuses with the way on) rather than reads."""
    return path.suffix in NATIVE_SUFFIXES or path.name == "saved_model.pb" or SavedModelImporter.matches(path)


def source_digest(path: Path) -> str:
    """sha256 of the original: of the file, or of a SavedModel folder's files (their relative names too)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f"\0{f.relative_to(path)}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


_LOCK = threading.Lock()  # one import at a time in this process (the scorer's streams all ask for it)
_KNOWN: dict[Path, Provenance] = {}  # imported file -> where it came from
_SCRATCH: list[Path] = []  # the process's folder where no cache folder can be written


def provenance(onnx_path: Path) -> Provenance | None:
    """Where an ONNX file this process imported (or found in the cache) came from; None for any other."""
    return _KNOWN.get(onnx_path)


def refuse_unreadable(path: Path) -> None:
    """ModuleError naming why the network file ``path`` cannot be read (missing, a folder's file unreadable); a
    folder (a SavedModel) is read by its importer. Asked before any other refusal of the file: a network that is
    not there was refused for its declared inputs, sending the user to convert a file they do not have."""
    if not path.is_dir():
        unreadable = unreadable_reason(path, "model file")
        if unreadable is not None:
            raise ModuleError(unreadable)


def imported_onnx(path: Path, name: str | None, jet_shape: Sequence[int]) -> Path:
    """The ONNX file for the native model ``path`` (``native_format``), converted now or found in the cache,
    with one input ``name`` (else ``jets``) of shape (N, *jet_shape). Every failure is one ModuleError line
    naming the file, the reason and the command to convert it by hand."""
    if path.name == "saved_model.pb":
        path = path.parent
    importer = native_format(path)
    assert importer is not None, f"{path} is not a format hltrun imports"
    refuse_unreadable(path)
    name, shape = name or "jets", tuple(int(d) for d in jet_shape)
    version = dist_version(importer.dist)
    digest = source_digest(path)
    key = hashlib.sha256(f"{digest}|{importer.format}|{version}|{name}|{shape}|{OPSET}".encode()).hexdigest()[:24]
    with _LOCK:
        out = _cache_folder() / f"{path.stem[:100]}-{key}.onnx"
        made = Provenance(str(path), digest, importer.format, f"{importer.converter}, {importer.dist} {version}", 0.0)
        if out in _KNOWN and out.is_file():  # this process's import (the scorer's streams, auto's reference)
            return out
        if out.is_file():
            found = _read_provenance(out, made)
            _KNOWN[out] = found
            log.info("model %s (%s, sha256 %s) imported into ONNX before: %s", path, importer.format, digest[:12], out,
                     extra={"once": True})
            return out
        _KNOWN[out] = _convert(importer, path, name, shape, out, made)
        return out


def _cache_folder() -> Path:
    """``$XDG_CACHE_HOME/hltrun/imported``, else (no home, a read-only cache) a folder of this process."""
    folder = folder_or_none(lambda: cache_root("imported"))
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            pass
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="hltrun-imported-")))
        # "for this process only": each job with no cache left a folder holding the network in /tmp otherwise
        atexit.register(shutil.rmtree, _SCRATCH[0], ignore_errors=True)
        log.warning("no writable cache folder for imported models (%s): importing into %s for this process only",
                    folder, _SCRATCH[0], extra={"once": True})
    return _SCRATCH[0]


def _convert(importer: Importer, path: Path, name: str, shape: tuple[int, ...], out: Path,
             made: Provenance) -> Provenance:
    """Export, check against the native runtime, then move into place (a failed import leaves nothing)."""
    where = f"model {path} ({importer.format})"
    how = f"convert it by hand: {importer.manual(path, {name: shape})}"
    try:
        model = importer.load(path)
    except ModuleError:
        raise
    except Exception as exc:
        reraise_interrupt(exc)
        raise ModuleError(f"{where}: cannot load it: {type(exc).__name__}: {one_line(exc)}") from exc
    _native(importer, model, np.zeros((EXAMPLE_BATCH, *shape), np.float32), where)  # the input it reads, said first
    # staged as every output (framework/atomic.py): a temporary named after its writer, which the next import
    # into the folder removes if a kill left it (it was ``.<name>.<pid>.<thread>.tmp``, for ever, as large as
    # the network), made as readable as the user's other files, renamed into place once checked
    with writing(out, "the cache of imported models") as staged:
        try:
            importer.export(model, path, name, shape, staged.tmp)
        except ModuleError:
            raise
        except Exception as exc:
            reraise_interrupt(exc)
            raise ModuleError(f"{where}: the import into ONNX failed ({made.converter}): {type(exc).__name__}: "
                              f"{_reason(exc)}; {how}") from exc
        worst = _agreement(importer, model, staged.tmp, name, shape, where, how)
        done = Provenance(made.source, made.sha256, made.format, made.converter, worst)
        _write_provenance(staged.tmp, done)
    log.info("model %s (%s, sha256 %s) imported into ONNX with %s: %s; it agrees with the native runtime within "
             "%.1e (relative) on %d probe jets", path, importer.format, made.sha256[:12], made.converter, out, worst,
             sum(PROBE_BATCHES), extra={"once": True})
    return done


def _agreement(importer: Importer, model: Any, onnx_file: Path, name: str, shape: tuple[int, ...], where: str,
               how: str) -> float:
    """The largest relative difference between the ONNX file on ONNX Runtime and the native runtime over
    every output and probe batch; above ``IMPORT_RTOL``, or an output missing, the import is refused."""
    ort = need("onnxruntime", f"checking the import of {where}")
    from .autoselect import max_relative_difference

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(12345)
    worst = 0.0
    for n in PROBE_BATCHES:
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        native = _native(importer, model, x, where)
        try:
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: x})))
        except Exception as exc:
            reraise_interrupt(exc)
            raise ModuleError(f"{where}: the imported ONNX file fails on a batch of {n} jet(s) (a batch size fixed "
                              f"in the export?): {type(exc).__name__}: {one_line(exc)[:300]}; {how}") from exc
        for out_name, ref in native.items():
            if out_name not in got:
                raise ModuleError(f"{where}: the imported ONNX file has no output {out_name!r} (it has "
                                  f"{sorted(got)}); {how}")
            diff = max_relative_difference(np.asarray(got[out_name]).reshape(-1), np.asarray(ref).reshape(-1)) \
                if np.shape(got[out_name]) == np.shape(ref) else float("inf")
            if diff > IMPORT_RTOL:
                raise ModuleError(f"{where}: the imported ONNX file disagrees with the native runtime: output "
                                  f"{out_name!r} differs by {diff:.2e} (relative; at most {IMPORT_RTOL:.0e} allowed) "
                                  f"on {n} probe jet(s); {how}")
            worst = max(worst, diff)
    return worst


def _native(importer: Importer, model: Any, x: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """The native runtime's outputs on ``x``; a network that does not read (N, *shape) is one line saying to
    declare its input (the shipped (N, 100, 3) is assumed otherwise)."""
    try:
        return importer.run(model, x)
    except Exception as exc:
        reraise_interrupt(exc)
        raise ModuleError(f"{where}: it fails on a batch of {len(x)} jet(s) of shape {x.shape[1:]}: "
                          f"{type(exc).__name__}: {_reason(exc)} (declare the input it reads: the scorer's inputs, "
                          f"docs/your-model.md)") from exc


def _reason(exc: BaseException) -> str:
    """The exception's own words in one line: a TorchScript interpreter's error ends with them, after its
    serialized code."""
    text = str(exc)
    if "Traceback of TorchScript" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1].removeprefix(f"{type(exc).__name__}: ")[:300] if lines else type(exc).__name__
    return one_line(exc)[:300]


def _write_provenance(path: Path, made: Provenance) -> None:
    import json

    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = _PROVENANCE_KEY, json.dumps(made.as_dict())
    onnx.save(model, str(path))


def _read_provenance(path: Path, made: Provenance) -> Provenance:
    """The provenance written into a cached file (its probe agreement included); ``made`` if unreadable."""
    import json

    from ..contract import read_onnx_metadata

    try:
        d = json.loads(read_onnx_metadata(path).get(_PROVENANCE_KEY, "{}"))
        return Provenance(made.source, made.sha256, made.format, made.converter, float(d["max_rel_diff"]))
    except (ValueError, KeyError, TypeError, OSError):
        return made
