"""VAE anomaly scorer: one anomaly score per jet from a Conv-VAE or GCN-VAE on any backend.

Consumes the batcher's ``JetBatch`` and puts ``JetScores``. What the model reads is its declared input
contract (``modules/contract.py``): the ``inputs`` given here, else the model's ONNX metadata, else the
shipped (n_jets, 100, 3) float32 input of (Δη, Δφ, pT) with the batcher's ``n_constituents``; it is
checked against the model at begin_job and requested of the batcher, which has the source prepare it
per chunk. The backend is a parameter so the same path can be timed on every engine.

Defined behaviour for odd events (documented in docs/backends.md):

* no jets: empty ``JetScores`` (zero-length arrays), the backend is not called; counted as
  ``empty_events``;
* a jet with a NaN or inf anywhere in its (100, 3) input: its ``score`` and ``kl`` are NaN and its
  ``valid`` flag False (the other jets of the event are scored normally); counted as
  ``nonfinite_jets``. NaN fails every ``score > threshold`` cut, so such a jet never fires.

Outputs: ``outputs`` maps the roles kept in ``JetScores`` to the model's own output names
(``{score: output}``); unset, the score is the output named ``score`` (else the model's only output)
and ``kl`` is kept when the model has one. Every output must give one value per jet, checked at the
warm-up in begin_job (docs/your-model.md).

Model files: ``model`` is a path (``data/models/conv_vae.onnx``) or a name (``conv_vae``) resolved
in ``models_dir`` with the backend's suffix (``.keras`` for TensorFlow, ``.onnx`` otherwise;
``_int8.onnx`` for ONNX Runtime with ``precision: int8``). A TorchScript ``.pt``, a torch.export ``.pt2`` or a
SavedModel folder is imported into ONNX once (``inference/model_import.py``) for the engines that read ONNX.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from hltrun.framework.context import AcceleratorChoice, StreamActivity
from hltrun.framework.destinations import reading
from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.event import Event
from hltrun.framework.module import Producer
from hltrun.framework.schema import InputTag, limited, limits, one_of

from hltrun.framework.resources import NotRegularFile, broken_link, find_file, read_regular_text

from .inference import (BackendOptions, InferenceBackend, autoselect, backend_class, backend_names, create_backend,
                        fidelity, model_suffix)
from .inference import model_import
from .inference.accelerator import auto_next, choose_backend, first_clause
from .contract import Contract, InputDeclaration, default_contract, freeze
from .inference.base import (MAX_BATCH, N_CONSTITUENTS, OUTPUT_NAMES, check_model_file, ort_format_line,
                             per_call_quant_ops)
from .jets import batch_key
from .inference.dynamic_batching import BatchingParameters, DynamicBatcher
from .inference.machine import ModelChanged, cpu_key, dist_version, loaded_digest
from .finite import few_finite
from .products import JetBatch, JetScores, JetScoresWithExtras, is_all_valid
from .working_point import PT_BINNED_KEY, PtCuts, parse_pt_cuts

if TYPE_CHECKING:
    from hltrun.framework.context import ModuleContext

log = logging.getLogger("hltrun.vae")
# tflite: on the .tflite file beside the .onnx one; tensorflow, torch, jax: seconds to import (or compile) before timing
AUTO_CPU_ENGINES = ("onnxruntime", "iree", "tflite")
AUTO_BUDGET_S = 2.0  # the whole timing table, at begin_job
TYPICAL_JETS_PER_EVENT = 9  # a path that sends every jet: the HLT's typical multiplicity


def _version_of(cls: type) -> str:
    """The engine's distribution version (the auto decision cache is invalid across versions)."""
    dist = {"onnxruntime": "onnxruntime", "iree": "iree-base-runtime", "jax": "jaxlib",
            "tensorflow": "tensorflow", "tflite": "ai-edge-litert"}.get(getattr(cls, "name", ""), "")
    return dist_version(dist) if dist else "?"



@dataclass
class VAEAnomalyScorerParameters:
    src: InputTag = InputTag("batcher")
    model: str = "conv_vae"  # a .onnx / .keras path, or a model name looked up in models_dir
    backend: str = one_of("auto", backend_names)  # an installed ``hltrun.backends`` entry point, or auto
    mode: Literal["predict", "eager", "function", "xla"] = "function"  # tensorflow only
    threads: int = limited(1, 1, 1024)  # intra-op threads per instance (one instance per stream)
    providers: list[str] = field(default_factory=lambda: ["cpu"])  # onnxruntime: cpu, cuda, tensorrt
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"  # onnxruntime
    io_binding: bool = False  # onnxruntime
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    # {score: <model output>, kl: <model output>}, or [score, kl] for outputs of those names; null: the
    # output named score (else the model's only output), and kl when the model has one
    outputs: dict[str, str] | list[str] | None = None
    # jet: the model gives one value per jet (the filter reduces them per event); event: one value per
    # call, the event's, which every jet of the event carries (the filter's max is then that value)
    score_per: Literal["jet", "event"] = "jet"
    # what the model reads, per input (name, kind, features, per_event, n_constituents, pad_value, order, layout;
    # docs/your-model.md); null: the model's ONNX metadata, else the shipped (N, 100, 3) input
    inputs: list[InputDeclaration] | None = None
    # batch sizes (jets) run once in begin_job
    warm_up: list[int] = field(default_factory=lambda: [1, 9], metadata=limits(1, MAX_BATCH))
    max_batch: int = limited(1024, 1, MAX_BATCH)  # tensorrt optimisation-profile maximum (jets)
    cuda_graphs: bool = True  # torch on a GPU: one captured CUDA graph per batch bucket (false: op by op)
    engine_cache: str | None = None  # tensorrt engines; default <model dir>/engines
    models_dir: str = "data/models"
    # cross-event dynamic batching (SONIC-style, opt-in): the jets of events in flight on all streams
    # in one backend call; null: one call per event (docs/inference.md)
    batching: BatchingParameters | None = None

    def __post_init__(self) -> None:
        if isinstance(self.outputs, dict):
            bad = [r for r in self.outputs if not _ROLE.fullmatch(r) or r in _RESERVED]
            if "score" not in self.outputs or bad:
                raise ValueError(f"outputs must map score (and optionally kl and extra outputs, each a name "
                                 f"written as <label>_<name>, not {sorted(_RESERVED)}) to model outputs: "
                                 f"{{score: <model output>, kl: ..., <name>: ...}}, got {self.outputs}")
        elif self.outputs is not None and ("score" not in self.outputs or any(o not in OUTPUT_NAMES for o in self.outputs)):
            raise ValueError(f"outputs must include 'score' and name only the roles {list(OUTPUT_NAMES)} "
                             f"(a list among {list(OUTPUT_NAMES)}; a mapping names any other), got {self.outputs}")
        if isinstance(self.outputs, dict) and not all(self.outputs.values()):
            raise ValueError(f"outputs: every role needs a model output name, got {self.outputs}")
        if self.inputs is not None:
            freeze(self.inputs, "config")  # several inputs without names: one line now
        if self.batching is not None and self.score_per == "event":
            raise ValueError("batching: a model scoring per event (score_per: event) must be called once per event; "
                             "set batching: null")
        if self.batching is not None and self.batching.max_batch > self.max_batch:
            raise ValueError(f"batching.max_batch ({self.batching.max_batch}) exceeds max_batch "
                             f"({self.max_batch}, the largest batch the backend is built for)")


def resolve_model(model: str, backend: str, precision: str, models_dir: str,
                  inputs: Contract | None = None) -> Path:
    """Path of the model file this backend reads (see the module docstring). A network saved the way
    CMSSW's own interfaces load it (TorchScript, ExportedProgram, SavedModel) is imported into ONNX once
    (``model_import``), its input ``inputs`` (one declared input; default: the shipped one)."""
    suffix = model_suffix(backend)
    given = find_file(model, "model file")
    not_a_savedmodel(given, models_dir)
    if given.suffix == ".ort" and not given.with_suffix(suffix).exists():
        raise ConfigError(ort_format_line(given))
    if model_import.is_native(given):
        return _imported(given, backend, suffix, inputs or default_contract())
    if names_a_file(given):
        if given.suffix != suffix:
            sibling = given.with_suffix(suffix)
            if not sibling.exists():
                raise ConfigError(f"model {given}: the {backend} backend reads {suffix} files and "
                                  f"{sibling} does not exist{keras_alone(given, suffix)}")
            log.info("vae: %s backend reads %s instead of %s", backend, sibling, given, extra={"once": True})
            given = sibling
        return given
    stem = f"{model}_int8" if precision == "int8" else model
    return find_file(Path(models_dir) / f"{stem}{suffix}")  # load() reports a missing one


def keras_alone(given: Path, suffix: str) -> str:
    """What runs a ``.keras`` file with no ``.onnx`` beside it (``backend: auto``, the default, reads ONNX): the
    line named only the missing .onnx file, not the engine that reads the file given."""
    if given.suffix != ".keras" or suffix != ".onnx":
        return ""
    return (f"; backend: tensorflow runs {given.name} itself, the other engines an ONNX export of it beside it "
            f"(tf2onnx, docs/your-model.md)")


READS = ".onnx, .keras, a TorchScript .pt, a torch.export .pt2, a SavedModel folder"  # what a model may be


def not_a_savedmodel(given: Path, models_dir: str) -> None:
    """One line for a folder given as the model that holds no saved_model.pb: it was named as a missing
    ``<folder>.onnx`` sibling, sending the user after a file they never meant to give. A bare name that
    ``models_dir`` holds a model of stays that model's name: a folder of that name in the working directory
    (a training run's output, say) is no model given, and the job ran before that line was added."""
    if not given.is_dir() or model_import.is_native(given):
        return
    if len(given.parts) == 1 and any(find_file(Path(models_dir) / f"{given}{s}").exists() for s in MODEL_FILE_SUFFIXES):
        return
    raise ConfigError(f"model {given} is a folder without saved_model.pb, so not a SavedModel; hltrun reads "
                          f"or imports {READS}")


def _imported(given: Path, backend: str, suffix: str, inputs: Contract) -> Path:
    """The ONNX file imported from ``given`` for a backend that reads ONNX; one line for one that does not."""
    importer = model_import.native_format(given)
    if importer is None:
        raise ConfigError(f"model {given}: not a format hltrun reads or imports ({READS})")
    if suffix != ".onnx":
        raise ConfigError(f"model {given} is a {importer.format} network, which hltrun imports into ONNX for the "
                          f"engines that read ONNX; the {backend} backend reads {suffix} files: use backend: "
                          f"onnxruntime (or auto, iree, jax, torch)")
    model_import.refuse_unreadable(given)
    if len(inputs.inputs) != 1:
        declared = {i.name or f"input_{k}": i.shape(0)[1:] for k, i in enumerate(inputs.inputs)}
        raise ModuleError(f"model {given}: {len(inputs.inputs)} inputs declared; hltrun imports {importer.format} "
                          f"networks with one input: convert it by hand ({importer.manual(given, declared)}) and run "
                          f"the .onnx file")
    declared = inputs.inputs[0]
    return model_import.imported_onnx(given, declared.name, declared.shape(0)[1:])


MODEL_FILE_SUFFIXES = (".onnx", ".keras", ".tflite")  # what some backend reads, beside the file given


def names_a_file(given: Path) -> bool:
    """Whether the scorer's ``model`` names a file (or a SavedModel folder), read or imported from where it is,
    rather than a model of ``models_dir`` (``conv_vae``): resolve_model's rule, which the card's folder follows.
    A ``.tflite`` is a file too (``mine.tflite``, conv_tflite's export of ``mine.onnx``): as a name it was looked up
    as ``models_dir/mine.tflite.tflite``, and said to be "no file of that name here" beside the file."""
    return model_import.is_native(given) or given.suffix in MODEL_FILE_SUFFIXES or len(given.parts) > 1


def missing_model(params: "VAEAnomalyScorerParameters") -> str | None:
    """The model file given as a path when neither it nor a sibling any backend reads exists, else None:
    a filter without a cut of its own names the missing model, not the card's missing cut for it."""
    given = find_file(params.model, "model file")
    not_a_savedmodel(given, params.models_dir)  # the culprit, before the card's missing cut for a folder's name
    if names_a_file(given):  # the file, or a sibling some backend reads
        if given.exists() or any(given.with_suffix(s).exists() for s in MODEL_FILE_SUFFIXES):
            return None
        link = broken_link(given)
        return f"{given} ({given} {link})" if link else str(given)
    # a model's name (resolve_model: models_dir's <name>.onnx, ...): a misspelt one (conv_vea) or a file's name
    # with another suffix (mine.onx) named a missing cut in the shipped card, not the model
    folder = find_file(params.models_dir, "models_dir")
    if any((folder / f"{given}{s}").exists() for s in MODEL_FILE_SUFFIXES):
        return None
    return f"{given} (no file of that name here, nor a model of that name in {params.models_dir})"


def declared_inputs(params: "VAEAnomalyScorerParameters", n_constituents: int = N_CONSTITUENTS,
                    relative: bool = True) -> dict[str, Contract | None]:
    """``BackendOptions``' ``inputs`` and ``fallback_inputs`` for a scorer fed by a batcher with these
    settings: the configured declaration (else the model's metadata, read by the backend), and the
    shipped input at the batcher's constituent count. hltbench feeds a model the same way."""
    return {"inputs": freeze(params.inputs, "config") if params.inputs else None,
            "fallback_inputs": default_contract(n_constituents, relative)}


_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset({"valid", "model", "thresholds", "jet_pt", "extras"})  # JetScores' own fields

THRESHOLDS_CARD = "thresholds.json"  # beside the model files: {model: {"bkg_eff_1e-2": cut, ...}}
Thresholds = dict[str, float | PtCuts]  # scalar cuts, and the pT-dependent ones under PT_BINNED_KEY


def model_identity(model: str, precision: str = "auto") -> str:
    """The model's name as its card knows it: ``conv_vae``, ``data/models/gcn_vae.onnx`` -> ``gcn_vae``;
    an INT8 model is a different model (``conv_vae_int8``): its scores have their own scale."""
    path = Path(model)
    # a TorchScript .pt / .pt2 is named by its stem too: hltcard wrote its cut under 'net.pt' into the shipped card's
    # folder's name space, and the path never found it
    # so is a .tflite, conv_tflite's export of the .onnx whose cuts it checks under the stem
    stem = path.stem if path.suffix in (*MODEL_FILE_SUFFIXES, *model_import.NATIVE_SUFFIXES) else path.name
    if precision == "int8" and not stem.endswith("_int8"):
        stem += "_int8"
    return stem


def model_thresholds(params: "VAEAnomalyScorerParameters") -> tuple[str, Thresholds, Path]:
    """(model identity, its thresholds, the card read) for a scorer configured with ``params``.

    The card is ``thresholds.json`` in the model's folder (``thresholds_card``); its entry is read by
    ``card_thresholds``."""
    identity, table, card = card_table(params)
    return identity, card_thresholds(table, identity, card), card


def card_table(params: "VAEAnomalyScorerParameters") -> tuple[str, Any, Path]:
    """(model identity, the parsed ``thresholds.json`` or None where there is none, its path)."""
    import json

    identity, card = thresholds_card(params)
    try:
        table = json.loads(read_regular_text(card))
    except FileNotFoundError:
        return identity, None, card
    except NotRegularFile as exc:
        raise ConfigError(f"thresholds card {exc}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"thresholds card {card} is unreadable: {exc}") from None
    reading([card])  # the filter's cut comes from it: no output of the running job may replace it
    return identity, table, card


# the batcher's settings an hltcard entry records its cuts were made with (its ``selection``, beside the filter's
# ``reduce``): the jets scored and their coordinates. A cut made on the leading jet alone keeps 1 % of QCD events
# there, and 1.4 % of them where the path scores the two leading jets (the larger of two scores is higher)
CARD_SELECTION = ("max_jets", "min_jet_pt", "relative")


def card_selection(table: Any, identity: str) -> dict[str, Any]:
    """What the entry of a card's parsed ``table`` whose cuts ``identity`` takes (``card_entry``: an INT8 model's
    parent's, where it has none of its own) says they were made on (hltcard writes it since 2026-12-07); {} for an
    entry without it (the shipped cards: the shipped path's settings)."""
    entry, _ = card_entry(table, identity)
    selection = entry.get("selection") if isinstance(entry, dict) else None
    return dict(selection) if isinstance(selection, dict) else {}


def selection_mismatch(card: Mapping[str, Any], batcher: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The batcher settings of this path that differ from those a card's cuts were made with, as
    ``(key, the card's, the path's)``."""
    return [(k, card[k], batcher[k]) for k in CARD_SELECTION if k in card and k in batcher and card[k] != batcher[k]]


def thresholds_card(params: "VAEAnomalyScorerParameters") -> tuple[str, Path]:
    """(model identity, the card its cuts are read from): ``thresholds.json`` in the folder of the model as
    given (a symbolic link's folder, not its target's), or in ``models_dir`` for a model's name. Its own
    function so that hltcard writes its entry where this reads it, and checks it before writing."""
    identity = model_identity(params.model, params.precision)
    given = find_file(params.model, "model file")
    reading([given])  # as the card: an output of the job over it is refused at validation (a Dask client's too)
    folder = given.parent if names_a_file(given) else find_file(params.models_dir, "models_dir")
    return identity, folder / THRESHOLDS_CARD


def card_entry(table: Any, identity: str) -> tuple[Any, str | None]:
    """(the entry of a card's parsed ``table`` that ``identity``'s cuts come from, the fp32 parent's name where it
    is that parent's): an INT8 model without an entry of its own takes its parent's. One lookup for the cuts and
    for the ``selection`` they were made on: the selection was read under the INT8 name only, so an INT8 model cut
    on its parent's cuts was checked against none, and its filter told they were made for ``reduce: max``."""
    if not isinstance(table, dict):
        return None, None
    entry = table.get(identity)
    if entry is None and identity.endswith("_int8") and table.get(identity[:-5]) is not None:
        return table[identity[:-5]], identity[:-5]
    return entry, None


def card_thresholds(table: Any, identity: str, card: Path) -> Thresholds:
    """``identity``'s cuts in a card's parsed ``table`` (``card`` names it in errors). An INT8 model without its
    own entry falls back to its fp32 parent's cuts, loudly (data/models/README.md: re-derive them for INT8). The
    card's pT-dependent cuts (``vs_leading_jet_pt``, modules/working_point.py) are checked here, the one place a
    card's entry is read: a malformed entry is a configuration error naming the card."""
    entry, parent = card_entry(table, identity)
    if parent is not None:
        log.warning("thresholds: %s has no entry for %s; using the fp32 model's cuts "
                    "(re-derive them for INT8, see data/models/README.md)", card, identity, extra={"once": True})
    if not isinstance(entry, dict):
        return {}
    out: Thresholds = {str(k): float(v) for k, v in entry.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
    bad = sorted(k for k, v in out.items() if not math.isfinite(v))
    if bad:  # json reads NaN: a NaN cut passes nothing, silently
        raise ConfigError(f"thresholds card {card}: {identity}.{bad[0]} is {out[bad[0]]}; a cut must be a finite "
                          f"number (re-derive the card, or set the filter's threshold)")
    if PT_BINNED_KEY in entry:
        try:
            out[PT_BINNED_KEY] = parse_pt_cuts(entry[PT_BINNED_KEY])
        except ValueError as exc:
            raise ConfigError(f"thresholds card {card}: {identity}.{PT_BINNED_KEY}: {exc}") from None
    return out


def refuse_precision(where: str, p: "VAEAnomalyScorerParameters", name: str, reason: str) -> None:
    """A ``precision`` the engine ``name`` does not run: a configuration error (exit 2), before any file is read,
    the same for the engine ``auto`` chose first and for one it handed the model on to (that one was a module
    error, exit 4, raised by its load). With ``backend: auto``, the engine it chose and why follow."""
    refusal = backend_class(name).precision_refusal(p.precision)
    if refusal:  # the engine would run another precision than asked
        chosen = f" (backend: auto chose {name}: {reason.removeprefix('auto: ')})" if p.backend == "auto" else ""
        raise ConfigError(f"{where}.precision: {refusal}{chosen}")


def release(backend: InferenceBackend) -> None:
    """Close a backend that refused the model or failed to get ready: its engine's memory is free before another
    engine loads, and a failing close must not hide why it was left."""
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - the refusal is what the job says
        log.debug("closing the %s backend that was left failed", backend.name, exc_info=True)


@dataclass
class _LabelShared:
    """What one label's per-stream instances share (CMSSW's GlobalCache): ``auto``'s decision, taken
    (timed, or read from a cache) and logged by the first instance only, so the table is one block per
    job; and the cross-event batcher, reported by the instance that made it."""

    auto: tuple[str, str, tuple[dict[str, Any], ...]] | None = None
    batcher: DynamicBatcher | None = None
    caveats: tuple[str, ...] | None = None  # inference.fidelity's, measured by the first instance
    digests: dict[Path, str] = field(default_factory=dict)  # model file -> sha256 of the bytes the first instance loaded
    # (engine, its refusal at load or failed warm-up) the first instance's auto walk met; None until it ended there
    refused: tuple[tuple[str, str], ...] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def said_by(where: str) -> Iterator[None]:
    """The block's refusals name the module (``modules.vae: ...``), as its other begin_job errors do;
    the exit code (the error's class) is kept."""
    try:
        yield
    except (ModuleError, ConfigError) as exc:
        if str(exc).startswith(f"{where}"):
            raise
        raise type(exc)(f"{where}: {exc}") from exc


def _batcher_max_jets(ctx: "ModuleContext") -> int:
    """The leading jets per event the scorer's batcher sends (its ``max_jets``); 0: all, or it does not say."""
    info = ctx.inputs.get("src")
    return int(info.metadata.get("max_jets", 0)) if info is not None else 0


class VAEAnomalyScorer(Producer):
    """Runs the backend once per event on all its jets (the typical HLT batch is ~9 jets); with
    ``batching``, once per dynamic batch of the jets of several events in flight (dynamic_batching.py)."""

    end_job_releases_only = True  # end_job closes the backend: every result is in summary()

    Parameters = VAEAnomalyScorerParameters
    concurrency = "stream"  # one backend per stream: sessions/contexts are not shared
    produces = {"": JetScores}
    consumes = {"src": JetBatch}
    services = (StreamActivity.name,)  # cross-event batching waits on the events in flight

    def __init__(self, label: str, params: VAEAnomalyScorerParameters) -> None:
        super().__init__(label, params)
        self.backend: InferenceBackend | None = None
        self.backend_name = ""
        self.reason = ""
        self.counters = {"events": 0, "empty_events": 0, "jets": 0, "nonfinite_jets": 0, "nonfinite_scores": 0}
        self.model_id = ""
        self.contract: Contract = default_contract()
        self._key: Contract | None = None  # how the batcher files this model's arrays (None: its shipped input)
        self._extras: tuple[str, ...] = ()  # outputs mapped beyond score and kl
        self.thresholds: Thresholds = {}
        self._empty: JetScores | None = None
        self._batcher: DynamicBatcher | None = None
        self._owns_batcher = False  # the instance that made the shared batcher reports it, once

    @classmethod
    def product_metadata(cls, params: VAEAnomalyScorerParameters) -> Mapping[str, Any]:
        """What the scores will carry (model identity, thresholds, the card read): a filter checks its
        configuration against it before any event, without reading this module's parameters."""
        model_id, table, card = card_table(params)
        return {"model": model_id, "thresholds": card_thresholds(table, model_id, card), "card": card,
                "card_found": card.is_file(), "missing_model": missing_model(params),
                "card_selection": card_selection(table, model_id)}


    def begin_job(self, ctx: "ModuleContext") -> None:
        p: VAEAnomalyScorerParameters = self.params
        where = f"modules.{self.label}"
        shared, _ = ctx.global_cache(_LabelShared)
        name, reason = choose_backend(p.backend, ctx.accelerators, p.providers, f"{where}.backend")
        refuse_precision(where, p, name, reason)  # before any file is read
        meta = ctx.inputs["src"].metadata if "src" in ctx.inputs else {}
        n_constituents, relative = int(meta.get("n_constituents", N_CONSTITUENTS)), bool(meta.get("relative", True))
        declared = declared_inputs(p, n_constituents, relative)
        reads = declared["inputs"] or declared["fallback_inputs"]  # what a network imported into ONNX reads
        try:
            path = resolve_model(p.model, name, p.precision, p.models_dir, reads)
        except ModuleError as exc:
            raise ModuleError(f"{where}: {exc}") from None
        opts = BackendOptions(mode=p.mode, threads=p.threads, providers=list(p.providers),
                              graph_optimization=p.graph_optimization, io_binding=p.io_binding,
                              precision=p.precision, max_batch=p.max_batch, engine_cache=p.engine_cache,
                              cuda_graphs=p.cuda_graphs,
                              outputs=None if p.outputs is None else type(p.outputs)(p.outputs), score_per=p.score_per,
                              **declared)
        timings: tuple[dict[str, Any], ...] = ()
        if p.backend == "auto" and name == "onnxruntime" and p.precision in ("auto", "fp32") and p.score_per == "jet":
            try:  # before any engine's cache hashes the file (a FIFO would block there for ever)
                check_model_file(path, (), name)
            except ModuleError as exc:
                raise ModuleError(f"{where}: {exc}") from None
            with shared.lock, said_by(where):
                if shared.auto is None:
                    shared.auto = self._auto_by_measurement(ctx, p, opts, reason)
            name, reason, timings, path = shared.auto  # the very file that was timed and checked
        with shared.lock:  # None: this is the label's first instance, whose walk the others follow
            known = shared.refused
        warm = list(p.warm_up)
        if p.batching is not None and p.batching.max_batch not in warm:
            warm.append(p.batching.max_batch)  # the full batch's first call is not charged to an event
        backend, digest, name, reason, path, refused = self._load_first(
            where, p, ctx.accelerators, name, reason, path, opts, reads, known or (),
            lambda b: self._make_ready(b, warm, shared, self._jets_per_call(ctx, p), where), settled=known is not None)
        with shared.lock:  # the later streams start where this walk ended: each engine is offered the model once
            if shared.refused is None:
                shared.refused = refused
        with shared.lock:  # every stream must run the network the first one loaded
            first = shared.digests.setdefault(path, digest)
        if first != digest:
            raise ModelChanged(f"{where}: model file {path} changed between two streams' loads (sha256 {first[:12]}, "
                               f"then {digest[:12]}): the streams would run different networks; start the job again "
                               f"once the file is written")
        self._name_unread_settings(where, name, opts, p)
        if p.precision == "int8" and backend.describe().get("precision") != "int8":
            raise ConfigError(f"{where}.precision: int8 requested but {path} is not a quantised model "
                              f"(make one with tools/physics/quantize_models.py)")
        contract = backend.contract
        per_call = per_call_quant_ops(backend.model_path) if p.batching is not None else ()
        if per_call:  # named as the model has it: ONNX Runtime's optimiser fuses DynamicQuantizeLinear away
            raise ConfigError(f"{where}.batching: model {backend.model_path} quantises its activations per call "
                              f"({', '.join(per_call)}: one int8 scale from all the call's jets), so an event's scores "
                              f"would depend on the other events' jets in the batch: set batching: null, or quantise "
                              f"the model statically (QDQ: tools/physics/quantize_models.py --method static)")
        self.contract, self._key = contract, batch_key(contract, n_constituents, relative)
        if ctx.consumes:  # in a job (not a scorer built by hand): the batcher has the source prepare this, per chunk
            ctx.request(p.src.label, contract)
        log.debug("%s: inputs from %s: %s", where, contract.origin, "; ".join(i.describe() for i in contract.inputs),
                 extra={"once": True})
        self.backend, self.backend_name, self.reason = backend, name, reason
        try:
            self.model_id, table, card = card_table(p)
            self.thresholds = card_thresholds(table, self.model_id, card)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        differ = selection_mismatch(card_selection(table, self.model_id), meta)
        if differ and self.thresholds:
            log.warning("%s: the cuts of %s in %s were made with %s, and this path's modules.%s has %s: a cut taken "
                        "from the card does not keep the card's fraction of QCD here (make the card with this path's "
                        "settings: hltcard ... %s)", where, self.model_id, card,
                        ", ".join(f"{k} {made}" for k, made, _ in differ), p.src.label,
                        ", ".join(f"{k} {here}" for k, _, here in differ),
                        " ".join(f"--set modules.{p.src.label}.{k}={here}" for k, _, here in differ),
                        extra={"once": True})
        self._extras = tuple(r for r in backend.outputs if r not in OUTPUT_NAMES)  # written as vae_<role>
        empty = (np.zeros(0, np.float32), np.zeros(0, np.float32) if "kl" in backend.outputs else None,
                 np.zeros(0, bool), self.model_id, self.thresholds, np.zeros(0, np.float32))
        self._empty = (JetScoresWithExtras(*empty, {r: np.zeros(0, np.float32) for r in self._extras})
                       if self._extras else JetScores(*empty))
        log.info("%s: %s; model %s", where, reason, path, extra={"once": True})  # once, not per stream
        if p.batching is not None:  # one batcher for this label's per-stream instances
            b, activity = p.batching, ctx.service(StreamActivity.name)
            with shared.lock:
                self._owns_batcher = shared.batcher is None
                if self._owns_batcher:
                    shared.batcher = DynamicBatcher(b.max_batch, b.max_delay_ms, activity.in_flight, activity.draining)
            self._batcher = shared.batcher
        imported = model_import.provenance(path)  # said by model_import when imported or found in its cache
        ctx.record_accelerator(AcceleratorChoice(name, backend.describe()["device"], reason, str(path), self.model_id,
                                                 timings, digest, shared.caveats,
                                                 imported.as_dict() if imported is not None else None))

    @staticmethod
    def _load_first(where: str, p: VAEAnomalyScorerParameters, accelerators: Sequence[str], name: str, reason: str,
                    path: Path, opts: BackendOptions, reads: Contract, known: Sequence[tuple[str, str]] = (),
                    ready: Callable[[InferenceBackend], None] = lambda backend: None, settled: bool = False,
                    ) -> tuple[InferenceBackend, str, str, str, Path, tuple[tuple[str, str], ...]]:
        """(backend, digest of the file it loaded, engine, reason, model file, the refusals met): ``name`` loaded
        and made ``ready`` (warmed up: its buckets compiled or captured, the label's checks passed); with
        ``backend: auto``, an engine that refuses the model at load or fails to get ready hands it on, its
        resources released, to the next one ``accelerator.auto_next`` gives (TensorRT, PyTorch, JAX on a GPU,
        ONNX Runtime on the CPU), loudly. Why at warm-up too: a PyTorch CUDA-graph capture, an XLA compile or a
        translated branch that only a batch of several jets takes fail there, and ended the job where the next
        engine runs the model. ``known``: the refusals the label's first instance met, not asked again by the
        other streams (a TensorRT parse or a failed build per stream; a refusal one stream met must not leave
        another on another engine). ``settled``: the label's first instance ended its walk on the engine ``known``
        leads to, so this one fails rather than hand the model on (a later stream's warm-up can fail alone, a GPU's
        memory held by the streams before it: that stream ran another engine than the others, and the job's facts
        named the last stream's). An explicit engine is never replaced, and no other engine is tried on a file
        being written."""
        refused: list[tuple[str, str]] = list(known)
        choice = auto_next(accelerators, refused, path) if refused and p.backend == "auto" else None
        if choice is not None:  # where the first instance's walk ended
            name, reason = choice
            refuse_precision(where, p, name, reason)
            with said_by(where):
                path = resolve_model(p.model, name, p.precision, p.models_dir, reads)
        while True:
            backend = create_backend(name, path, opts)
            try:
                digest = loaded_digest(path, backend.load)
                ready(backend)
                return backend, digest, name, reason, path, tuple(refused)
            except ModelChanged as exc:
                release(backend)
                raise ModelChanged(f"{where}: {exc}") from exc
            except ModuleError as exc:
                release(backend)  # a GPU engine's memory, before the next engine takes its own
                refused.append((name, str(exc)))
                choice = auto_next(accelerators, refused, path) if p.backend == "auto" and not settled else None
                if choice is None:
                    tried = "; ".join(f"{e}: {first_clause(r, e, path)}" for e, r in refused[:-1])
                    tried = f" (auto tried before it: {tried})" if tried else ""
                    if settled and p.backend == "auto":  # the other streams run this engine: no other for this one
                        tried += f" (this label's first stream runs {name}, and every stream runs the same engine)"
                    raise type(exc)(f"{where}: {str(exc).removeprefix(f'{where}: ')}{tried}") from exc
            except ConfigError as exc:  # say which module, keep the exit code
                release(backend)
                raise type(exc)(f"{where}: {str(exc).removeprefix(f'{where}: ')}") from exc
            name, reason = choice
            refuse_precision(where, p, name, reason)  # the next engine's precision: a configuration error, as the first's
            log.warning("%s: %s", where, reason, extra={"once": True})
            with said_by(where):
                path = resolve_model(p.model, name, p.precision, p.models_dir, reads)

    @staticmethod
    def _make_ready(backend: InferenceBackend, warm: Sequence[int], shared: "_LabelShared", jets_per_call: int | None,
                    where: str) -> None:
        """Warm ``backend`` up on the ``warm`` batch sizes (a model whose outputs are not one value per jet is refused
        here) and, once per label (every stream runs the same engine on the same model), refuse a compilation that
        is not the model's network and measure the fidelity caveats, said once."""
        backend.warm_up(warm)
        with shared.lock:
            if shared.caveats is None:
                fidelity.refuse_sliced_quantiser(backend, jets_per_call)
                fidelity.refuse_unfaithful(backend)
                shared.caveats = tuple(fidelity.caveats(backend, jets_per_call))
                for note in shared.caveats:
                    log.warning("%s: %s", where, note, extra={"once": True})

    @staticmethod
    def _name_unread_settings(where: str, name: str, opts: BackendOptions, p: VAEAnomalyScorerParameters) -> None:
        """One warning for the engine settings that neither this job's engine nor, with ``backend: auto``,
        an engine auto weighed reads (``mode: xla`` on ONNX Runtime, ``cuda_graphs`` on TensorFlow): the job
        runs as if they had not been written, and must not pass for a measurement of them. ``max_batch``
        also bounds ``batching.max_batch``."""
        engines = [name] + [e for e in AUTO_CPU_ENGINES if p.backend == "auto" and e != name and e in backend_names()]
        unread = [s for s in backend_class(name).unread_settings(opts)
                  if all(s in backend_class(e).unread_settings(opts) for e in engines)
                  and not (p.batching is not None and s.startswith("max_batch:"))]
        if unread:
            log.warning("%s: %s: not read by %s, the engine this job runs%s; the job runs as without %s "
                        "(docs/backends.md: which engine reads which setting)", where, ", ".join(unread), name,
                        " (nor by the others auto weighed)" if len(engines) > 1 else "",
                        "it" if len(unread) == 1 else "them", extra={"once": True})

    def _auto_by_measurement(self, ctx: "ModuleContext", p: VAEAnomalyScorerParameters, opts: BackendOptions,
                             cpu_reason: str) -> tuple[str, str, tuple[dict[str, Any], ...], Path]:
        """On the CPU, ``auto`` times the engines that can run the model now (ONNX Runtime; IREE when
        its buckets are compiled for this model and CPU; TFLite on a ``.tflite`` beside the ``.onnx``, on
        LiteRT: each class's ``not_ready_for_auto``) at the path's typical batch and takes the fastest that
        agrees (``inference.autoselect``); the table is logged and reported. Returns (engine, reason, table,
        the model file it timed). Called by a label's first instance only (``_LabelShared``)."""
        batch = self._typical_batch(ctx, p)
        candidates: dict[str, Any] = {}
        skipped: list[str] = []
        reads = opts.inputs or opts.fallback_inputs
        reference = resolve_model(p.model, "onnxruntime", p.precision, p.models_dir, reads)
        files: dict[str, Path] = {}
        for engine in AUTO_CPU_ENGINES:
            if engine not in backend_names():
                continue
            path = reference.with_suffix(model_suffix(engine))  # beside the path's .onnx model
            why = backend_class(engine).not_ready_for_auto(path, opts)
            if why is not None:
                skipped.append(f"{engine} {why}")
                continue
            files[engine] = path
            candidates[engine] = (lambda e=engine, m=path: create_backend(e, m, opts))
        if len(candidates) < 2:
            return "onnxruntime", cpu_reason + (f"; {'; '.join(skipped)}" if skipped else ""), (), reference
        versions = {e: _version_of(backend_class(e)) for e in candidates}
        choice = autoselect.choose_cached(reference, candidates, batch, "onnxruntime", versions, cpu_key(),
                                          AUTO_BUDGET_S, others=[f for f in files.values() if f != reference],
                                          settings=autoselect.settings_key(opts))
        for line in choice.lines():
            log.info("modules.%s: %s", self.label, line, extra={"once": True})
        reason = f"auto: {choice.backend} on CPU, {choice.reason}" + (f"; {'; '.join(skipped)}" if skipped else "")
        rows = tuple({"backend": t.backend, "us_per_jet": t.us_per_jet, "diff_of_largest": t.of_largest,
                      "max_rel_diff": t.max_rel_diff, "agrees": t.agrees, "note": t.note} for t in choice.table)
        return choice.backend, reason, rows, files[choice.backend]

    @staticmethod
    def _typical_batch(ctx: "ModuleContext", p: VAEAnomalyScorerParameters) -> int:
        """Jets per backend call on this path: the dynamic batch, else the batcher's jets per event."""
        if p.batching is not None:
            return p.batching.max_batch
        return _batcher_max_jets(ctx) or TYPICAL_JETS_PER_EVENT

    @staticmethod
    def _jets_per_call(ctx: "ModuleContext", p: VAEAnomalyScorerParameters) -> int | None:
        """The most jets one backend call holds: the batcher's jets per event without dynamic batching;
        None where it is not bounded (``max_jets: 0``, a batcher that does not say, dynamic batching)."""
        return (_batcher_max_jets(ctx) or None) if p.batching is None else None

    def begin_unit(self, unit: Any) -> None:
        if self._batcher is not None:
            self._batcher.begin_unit()

    def produce(self, event: Event) -> None:
        batch: JetBatch = event.get(self.params.src)
        c = self.counters
        c["events"] += 1
        if len(batch.inputs) == 0:
            c["empty_events"] += 1
            event.put(self._empty)
            return
        if batch.contract is self._key and not batch.arrays:  # this model's single input: no tuple per event
            x = batch.inputs
        else:
            xs = batch.arrays_for(self._key)
            x = xs[0] if len(xs) == 1 else xs
        if self._batcher is None:
            out = self.backend.run(x)
        else:  # a malformed event fails alone, before it can spoil a batch
            xs = self.backend.check(x)  # one array per input of the model
            x = xs[0] if len(xs) == 1 else xs
            out = self._batcher.submit(event.stream, event.index, x, self.backend.run)
        valid = out["valid"]
        n = len(valid)
        c["jets"] += n
        if not is_all_valid(valid):  # the backends' shared all-True mask needs no count
            c["nonfinite_jets"] += n - int(np.count_nonzero(valid))
        if not few_finite(out["score"]):  # NaN by design for invalid jets; the model's own NaN/inf counted
            valid = self._count_nonfinite_scores(out["score"], valid)
        if self._extras:
            event.put(JetScoresWithExtras(out["score"], out.get("kl"), valid, self.model_id, self.thresholds,
                                          batch.jet_pt, {r: out[r] for r in self._extras}))
        else:
            event.put(JetScores(out["score"], out.get("kl"), valid, self.model_id, self.thresholds, batch.jet_pt))

    def _count_nonfinite_scores(self, score: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """A NaN or inf score for a jet with finite inputs is the model's doing: counted, and said once per job.
        Returns ``valid`` without the NaN-scored jets: a NaN orders with no cut, so such a jet has no score, as
        a jet with non-finite inputs has none, and the event is decided on its other jets (a NaN must not
        veto an event through the maximum); +inf stays a score and passes every cut."""
        mask = ~np.isfinite(score) & valid
        bad = int(np.count_nonzero(mask))
        if not bad:
            return valid
        if not self.counters["nonfinite_scores"]:  # once per job: the message names no event (streams differ)
            log.warning("modules.%s: model %s gives non-finite scores (%s) for jets with finite inputs; such "
                        "jets are counted in the JobReport's data quality (nonfinite scores)", self.label,
                        self.model_id, score[mask][0], extra={"once": True})
        self.counters["nonfinite_scores"] += bad
        nan = np.isnan(score)
        return valid & ~nan if nan.any() else valid

    def data_quality(self) -> dict[str, int]:
        return {"events_without_jets": self.counters["empty_events"], "nonfinite_jets": self.counters["nonfinite_jets"],
                "nonfinite_scores": self.counters["nonfinite_scores"]}

    def end_job(self) -> None:
        if self.backend is not None:
            self.backend.close()

    def summary(self) -> dict[str, Any]:
        """This instance's counters (the framework adds integer counters over the streams' instances)
        and the backend's self-description, including its own counters (TensorRT copies)."""
        if self.backend is None:
            return {}
        own = {k: v for k, v in self.backend.counters.items()
               if k not in ("calls", "jets", "nonfinite_jets", "empty_batches")}
        extra = {"batching": self._batcher.stats()} if self._owns_batcher and self._batcher is not None else {}
        return {"backend": self.backend.describe(), "choice": self.reason, **self.counters, **own, **extra}
